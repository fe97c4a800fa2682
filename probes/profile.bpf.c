// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The profile tracker: CPU samples at a fixed frequency, on a software cpu-clock perf
 * event per CPU (user space opens them). Each sample adds one to its (process, user
 * stack, kernel stack) row; only the rows cross to user space.
 */
#include "stack_rows.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct stack_key stack_key_layout = {};
struct stack_row stack_row_layout = {};

/* Which stacks to take; set before load. */
const volatile bool user_stacks = true;
const volatile bool kernel_stacks = true;
/* Whether the idle task (pid 0) is sampled too. */
const volatile bool include_idle = false;

SEC("perf_event")
int handle_sample(struct bpf_perf_event_data *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct stack_key key = {};

	if (!pid && !include_idle)
		return 0;
	if (!task_selected(task, pid))
		return 0;
	key.pid = pid;
	key.user_stack = user_stacks ? bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK) : -EFAULT;
	key.kernel_stack = kernel_stacks ? bpf_get_stackid(ctx, &stacks, 0) : -EFAULT;
	bpf_get_current_comm(key.comm, sizeof(key.comm));
	count_stack(&key, task, 1, 0);
	return 0;
}
