/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The header every event starts with; decoded in server/probes/mod.rs. */
#ifndef EUNOMIA_COMMON_H
#define EUNOMIA_COMMON_H

#define TASK_COMM_LEN 16

struct event_header {
	unsigned long long ts_ns; /* CLOCK_BOOTTIME */
	unsigned long long cgroup_id;
	unsigned int pid;
	unsigned int ppid;
	unsigned int user_ns;
	unsigned int pid_ns;
	unsigned int mnt_ns;
	char comm[TASK_COMM_LEN];
};

#endif
