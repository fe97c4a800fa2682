/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The per-stack counts that profile and offcpu keep, in two generations. */
#ifndef EUNOMIA_STACK_ROWS_BPF_H
#define EUNOMIA_STACK_ROWS_BPF_H

#include "stacks.bpf.h"

STACK_ROWS(struct stack_row);

/*
 * Adds `count` and `total_ns` to the row of `key` in the current generation; `task` (a
 * BTF pointer) is who the row's header describes when the row is new. A full map loses
 * the count, and says so.
 */
static __always_inline void count_stack(struct stack_key *key, struct task_struct *task,
					u64 count, u64 total_ns)
{
	u32 gen = generation;
	void *rows = generation_map(gen, rows_0, rows_1);
	struct stack_row *row = generation_lookup(gen, rows_0, rows_1, key);

	if (!row) {
		struct stack_row fresh = {};

		fill_header_of(&fresh.header, task);
		bpf_map_update_elem(rows, key, &fresh, BPF_NOEXIST);
		row = bpf_map_lookup_elem(rows, key);
		if (!row) {
			__sync_fetch_and_add(&ringbuf_dropped, 1);
			return;
		}
	}
	__sync_fetch_and_add(&row->count, count);
	__sync_fetch_and_add(&row->total_ns, total_ns);
}

#endif
