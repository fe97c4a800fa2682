/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef EUNOMIA_CGROUP_H
#define EUNOMIA_CGROUP_H

#include "common.h"

/* Long enough for Kubernetes' pod and container paths (about 200 bytes). */
#define CGROUP_PATH_LEN 256

enum cgroup_event_kind {
	CGROUP_MKDIR = 1,
	CGROUP_RMDIR = 2,
};

/* A cgroup of the v2 hierarchy made or removed, in the context of the task that did it. */
struct cgroup_event {
	struct event_header header; /* the task that made or removed it */
	unsigned int kind; /* enum cgroup_event_kind */
	int level; /* depth below the root: 1 for /docker */
	unsigned long long id; /* the cgroup's own id (the inode of its directory) */
	char path[CGROUP_PATH_LEN]; /* below the v2 mount, from / */
};

#endif
