/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef EUNOMIA_FILELIFE_H
#define EUNOMIA_FILELIFE_H

#include "common.h"

#define FILELIFE_PATH_LEN 256

/* A file created and then deleted while traced, at its deletion. */
struct filelife_event {
	struct event_header header; /* the deleting task */
	unsigned long long lifetime_ns;
	unsigned int creator_pid;
	unsigned short path_start; /* the path is path[path_start..] */
	unsigned short pad;
	char creator_comm[TASK_COMM_LEN];
	char path[FILELIFE_PATH_LEN];
};

#endif
