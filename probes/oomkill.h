/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef EUNOMIA_OOMKILL_H
#define EUNOMIA_OOMKILL_H

#include "common.h"

/* A process the OOM killer chose, in the context of the task whose allocation failed. */
struct oomkill_event {
	struct event_header header; /* the triggering task */
	unsigned int victim_pid;
	unsigned int victim_uid;
	char victim_comm[TASK_COMM_LEN];
	/* As the tracepoint gives them: kB. */
	unsigned long long total_vm_kb;
	unsigned long long anon_rss_kb;
	unsigned long long file_rss_kb;
	unsigned long long shmem_rss_kb;
	/* The lowest memory limit from the trigger's memory cgroup up, in pages; 0 for none. */
	unsigned long long limit_pages;
	int oom_score_adj;
	unsigned int pad;
};

#endif
