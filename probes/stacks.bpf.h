/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The stack map and the per-stack counts of the stack trackers. Counts come in two
 * generations, as the syscall and files trackers' do: programs add to the one the low bit
 * of `generation` names while user space bumps it and drains the other.
 */
#ifndef EUNOMIA_STACKS_BPF_H
#define EUNOMIA_STACKS_BPF_H

#include "common.bpf.h"
#include "stacks.h"

#define EFAULT 14

u32 generation = 0;

/*
 * Sized by user space before load (the `max_stacks` option). A row keys its stacks by
 * bpf_get_stackid's id, or its error: -EFAULT when there is no such stack (a kernel
 * thread's user stack, or a stack not asked for), another when the map could not take it
 * (full, or a hash collision), which user space shows as a lost stack.
 */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, STACKS_DEFAULT);
	__uint(key_size, sizeof(u32));
	__uint(value_size, STACK_DEPTH * sizeof(u64));
} stacks SEC(".maps");

/*
 * The two generations of a stack tracker's counts per stack_key, `rows_0` and `rows_1`,
 * with rows of `row_type`; user space sizes them as the stack map.
 */
#define STACK_ROWS(row_type) \
	struct { \
		__uint(type, BPF_MAP_TYPE_HASH); \
		__uint(max_entries, STACKS_DEFAULT); \
		__type(key, struct stack_key); \
		__type(value, row_type); \
	} rows_0 SEC(".maps"), rows_1 SEC(".maps")

#endif
