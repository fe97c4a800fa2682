/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What the probes and user space share: the header every event starts with (decoded by
 * server/engine's decode_header!) and limits. build.rs turns each integer #define here
 * into a Rust constant, so both sides read one source.
 */
#ifndef EUNOMIA_COMMON_H
#define EUNOMIA_COMMON_H

#define TASK_COMM_LEN 16
/* Cgroup ids one probe can filter on (the cgroup_filter map). */
#define CGROUP_FILTER_MAX 1024

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
