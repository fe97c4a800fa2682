// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The offcpu tracker: time tasks spend off a CPU, by the stacks they left it on, on the
 * BTF-typed sched_switch tracepoint. When a task is switched out its stacks are taken (it
 * is still the current task); when it is switched back in, the time in between is added
 * to that (process, user stack, kernel stack) row. The filters select the task that
 * blocks.
 */
#include "stack_rows.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct stack_key stack_key_layout = {};
struct stack_row stack_row_layout = {};

/* Off-CPU periods counted: at least, and below (0: no bound), in microseconds. */
const volatile u64 min_block_us = 1;
const volatile u64 max_block_us = 0;
/* Which stacks to take; set before load. */
const volatile bool user_stacks = true;
const volatile bool kernel_stacks = true;

struct switched_out {
	u64 ts_ns;
	struct stack_key key;
};

/* Tasks off a CPU by thread id. LRU: a task that never returns cannot leak. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, u32);
	__type(value, struct switched_out);
} blocked SEC(".maps");

SEC("tp_btf/sched_switch")
int BPF_PROG(handle_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	u32 prev_tid = BPF_CORE_READ(prev, pid), next_tid = BPF_CORE_READ(next, pid);
	u64 now = bpf_ktime_get_boot_ns(), delta_us;
	struct switched_out *out;

	if (prev_tid && other_task_selected(prev)) {
		struct switched_out at = { .ts_ns = now };

		at.key.pid = BPF_CORE_READ(prev, tgid);
		at.key.user_stack = user_stacks ? bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK) : -EFAULT;
		at.key.kernel_stack = kernel_stacks ? bpf_get_stackid(ctx, &stacks, 0) : -EFAULT;
		BPF_CORE_READ_STR_INTO(&at.key.comm, prev, comm);
		/* Without its entry the period cannot be counted when the task returns. */
		if (bpf_map_update_elem(&blocked, &prev_tid, &at, BPF_ANY))
			__sync_fetch_and_add(&ringbuf_dropped, 1);
	}

	out = bpf_map_lookup_elem(&blocked, &next_tid);
	if (!out)
		return 0;
	delta_us = (now - out->ts_ns) / 1000;
	if (delta_us >= min_block_us && (!max_block_us || delta_us < max_block_us))
		count_stack(&out->key, next, 1, now - out->ts_ns);
	bpf_map_delete_elem(&blocked, &next_tid);
	return 0;
}
