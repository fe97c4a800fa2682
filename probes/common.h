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

/*
 * The in-kernel filters of one instance: in a writable global (section .data.filter) that
 * user space writes after load, so that an instance loaded and verified in advance (the
 * server's warm pool) takes any session's filters. 0 means "no filter".
 */
struct filter_config {
	unsigned int target_pid;
	unsigned int exclude_current_ppid;
	unsigned int exclude_pid;
	/* With filter_cgroup: compare the task's ancestor cgroup at this level of the
	 * hierarchy (0: its own cgroup), so that a cgroup's whole subtree is traced, those
	 * made later included. */
	unsigned int cgroup_level;
	unsigned char filter_cgroup;
	unsigned char filter_comm;
	char target_comm[TASK_COMM_LEN];
};

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
