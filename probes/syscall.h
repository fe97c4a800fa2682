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
	/* With first_args, the first argument of the calls a seccomp profile can narrow by
	 * it (socket, clone, personality): their rows are split by it. 0 otherwise. */
	unsigned long long arg0;
};

/* x86_64 system call numbers are below this; a call with another number (a bad one) is
 * added to the rows at once. */
#define SYSCALL_RUN_SLOTS 512

/*
 * One CPU's current run: the calls of one thread under one command name since it last
 * began, totalled per syscall id and not yet added to the rows. A call only adds to its
 * slot here (an array index, as cheap as a bare counter); the hash rows are updated when
 * another thread runs on the CPU or a task is renamed.
 */
struct syscall_run {
	unsigned int pid;
	unsigned int tid; /* the run continues only for this thread */
	unsigned int renames; /* `renames` when the run began */
	unsigned int touched; /* entries of `ids` in use; 0 for no run */
	char comm[TASK_COMM_LEN];
	unsigned short ids[SYSCALL_RUN_SLOTS]; /* the ids with calls, in first-call order */
	struct syscall_totals totals[SYSCALL_RUN_SLOTS]; /* by syscall id */
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
	unsigned long long arg0; /* as in struct syscall_key */
};

/* Calls a CPU gathers before it sends them through the ring buffer as one record. */
#define SYSCALL_BATCH 64

/*
 * One CPU's calls not yet sent, stream mode: a full batch (or one older than
 * SYSCALL_BATCH_AGE_NS at the CPU's next call) goes out as one record of `count` events;
 * user space takes a batch that stopped filling from the map (see syscall.bpf.c).
 */
struct syscall_batch {
	unsigned int count;
	unsigned int sent; /* batches this CPU has sent, so user space sees one stop filling */
	unsigned long long first_ns; /* when the first of them was made */
	struct syscall_event events[SYSCALL_BATCH];
};

#endif
