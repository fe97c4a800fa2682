/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The syscall tracker's records; decoded in server/trackers/syscall/. */
#ifndef EUNOMIA_SYSCALL_H
#define EUNOMIA_SYSCALL_H

#include "common.h"

/* Per-(process, syscall) totals, one slot per CPU in the aggregate maps. */
struct syscall_totals {
	unsigned long long count;
	unsigned long long errors;
	unsigned long long latency_ns;
};

/* A row: one process's calls of one syscall under one command name (an exec or a
 * rename starts another row, so calls are never given to the comm from before it). */
struct syscall_key {
	unsigned int pid;
	unsigned int syscall_id;
	char comm[TASK_COMM_LEN];
};

/* One CPU's current run of calls with the same key, not yet added to the rows. */
struct syscall_run {
	struct syscall_key key;
	struct syscall_totals totals;
	unsigned int tid; /* the run continues only for this thread */
	unsigned int renames; /* `renames` when the run began */
};

/* Who a process is, as of which generation (see syscall.bpf.c). */
struct syscall_identity {
	struct event_header header;
	unsigned int generation;
	unsigned int pad;
};

/* One call, stream mode. */
struct syscall_event {
	struct event_header header;
	long long ret;
	unsigned long long latency_ns;
	unsigned int syscall_id;
	unsigned int timed; /* latency_ns is measured */
};

#endif
