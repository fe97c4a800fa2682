// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The signal tracker (sigsnoop): every signal generated, on `signal:signal_generate`,
 * which runs in the sender's context with the target and the kernel's verdict (the
 * filters select the sender); with `deliveries`, also each signal a receiver takes, on
 * `signal:signal_deliver`, with its action (the filters select the receiver).
 * `signal_mask` selects the signals.
 */
#include "common.bpf.h"
#include "signal.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct signal_event signal_event_layout = {};

/* Signals to report, bit (1 << (signal - 1)); all by default. Set before load. */
const volatile u64 signal_mask = ~0ULL;
/* Only signals to this thread group; 0 for any. */
const volatile u32 target_tgid = 0;

/* Whether `sig` is one of the signals asked for. */
static __always_inline bool signal_wanted(int sig)
{
	return sig >= 1 && sig <= 64 && (signal_mask & (1ULL << (sig - 1)));
}

SEC("tp/signal/signal_generate")
int handle_signal_generate(struct trace_event_raw_signal_generate *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	int sig = ctx->sig;
	struct signal_event *e;

	if (!signal_wanted(sig))
		return 0;
	if (target_tgid && ctx->pid != target_tgid)
		return 0;
	if (!task_selected(task, pid))
		return 0;
	e = reserve_event(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->header, task, pid);
	e->kind = SIGNAL_GENERATE;
	e->sig = sig;
	e->code = ctx->code;
	e->target_pid = ctx->pid;
	e->group = ctx->group;
	e->result = ctx->result;
	e->handler = 0;
	bpf_probe_read_kernel(e->target_comm, sizeof(e->target_comm), ctx->comm);
	submit_event(e);
	return 0;
}

/* With `deliveries`: the receiver takes a signal (its context; the filters select it). */
SEC("tp/signal/signal_deliver")
int handle_signal_deliver(struct trace_event_raw_signal_deliver *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	int sig = ctx->sig;
	struct signal_event *e;

	if (!signal_wanted(sig))
		return 0;
	if ((target_tgid && pid != target_tgid) || !task_selected(task, pid))
		return 0;
	e = reserve_event(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->header, task, pid);
	e->kind = SIGNAL_DELIVER;
	e->sig = sig;
	e->code = ctx->code;
	e->target_pid = pid;
	e->group = 1;
	e->result = 0;
	e->handler = ctx->sa_handler;
	bpf_get_current_comm(e->target_comm, sizeof(e->target_comm));
	submit_event(e);
	return 0;
}
