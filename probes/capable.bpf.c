// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The capable tracker: every capability check, with its verdict, on
 * `capability:cap_capable` (libbpf-tools' capable uses a kprobe on cap_capable, which
 * this kernel cannot run; the tracepoint sits in the same function).
 */
#include "common.bpf.h"
#include "capable.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct capable_event capable_event_layout = {};

/* Capabilities to report, bit (1 << cap); all by default. Set before load. */
const volatile u64 cap_mask = ~0ULL;
/* Only the denied checks. */
const volatile bool denied_only = false;

SEC("tp/capability/cap_capable")
int handle_cap_capable(struct trace_event_raw_cap_capable *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	int cap = ctx->cap, ret = ctx->ret;
	struct capable_event *e;

	if (cap < 0 || cap > 63 || !(cap_mask & (1ULL << cap)))
		return 0;
	if (denied_only && ret == 0)
		return 0;
	if (!task_selected(task, pid))
		return 0;
	e = reserve_event(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->header, task, pid);
	e->cap = cap;
	e->ret = ret;
	e->target_user_ns = BPF_CORE_READ(ctx->target_ns, ns.inum);
	e->pad = 0;
	submit_event(e);
	return 0;
}
