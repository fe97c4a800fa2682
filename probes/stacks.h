/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What the stack trackers (profile, offcpu, memleak) share with user space: the depth of a
 * stored stack and the key of a count per stack. Stacks stay in the kernel's stack map;
 * only their ids and the counts cross, each interval (see server/engine/stacks.rs).
 */
#ifndef EUNOMIA_STACKS_H
#define EUNOMIA_STACKS_H

#include "common.h"

/* Frames kept per stack: the kernel's default perf_event_max_stack. */
#define STACK_DEPTH 127
/* Stacks a session keeps by default (the `max_stacks` option). */
#define STACKS_DEFAULT 16384

/* One process's count of one stack. An id below 0 is bpf_get_stackid's error. */
struct stack_key {
	unsigned int pid;
	int user_stack;
	int kernel_stack;
	unsigned int pad;
	char comm[TASK_COMM_LEN];
};

/* What profile and offcpu count per stack in an interval. */
struct stack_row {
	struct event_header header; /* the first task seen on the stack */
	unsigned long long count; /* samples, or off-CPU periods */
	unsigned long long total_ns; /* offcpu: their time */
};

#endif
