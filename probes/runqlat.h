/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef EUNOMIA_RUNQLAT_H
#define EUNOMIA_RUNQLAT_H

#include "common.h"

/* A task that waited on a run queue, when it got the CPU. */
struct runqlat_event {
	struct event_header header; /* the task that waited */
	unsigned long long latency_ns; /* runnable to running */
	unsigned int cpu;
	unsigned int tid;
	unsigned int preempted; /* 1: it had been preempted; 0: woken up */
	unsigned int pad;
};

/* Aggregate mode: one interval's waits of one process's tasks, woken or preempted, in
 * one power-of-two latency bucket. */
struct runqlat_key {
	unsigned int pid;
	unsigned int preempted;
	unsigned int bucket;
	unsigned int pad;
};

struct runqlat_row {
	struct event_header header; /* the task of the first of them */
	unsigned long long runs;
	unsigned long long latency_ns; /* summed */
};

#endif
