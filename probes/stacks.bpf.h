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
/* Stacks the stack map could not take (full, or a hash collision): counted, not silent. */
u64 stacks_lost = 0;

/* Sized by user space before load (the `max_stacks` option). */
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

/*
 * The stack id of the current task's user (BPF_F_USER_STACK) or kernel stack. -EFAULT
 * means there is no such stack (a kernel thread's user stack); other errors mean it was
 * lost, and are counted.
 */
static __always_inline int stack_id(void *ctx, u64 flags)
{
	long id = bpf_get_stackid(ctx, &stacks, flags);

	if (id < 0 && id != -EFAULT)
		__sync_fetch_and_add(&stacks_lost, 1);
	return id;
}

#endif
