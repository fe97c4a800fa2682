// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The cgroup tracker: cgroups made and removed, on `cgroup:cgroup_mkdir` and
 * `cgroup:cgroup_rmdir`. A container runtime makes the container's cgroup before the
 * container runs anything, so this is how the container manager adds a container to a
 * session's filter before its first instruction. Only the v2 hierarchy is reported: its
 * ids are the ones every probe's header carries.
 */
#include "common.bpf.h"
#include "cgroup.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct cgroup_event cgroup_event_layout = {};

/* The v2 (default) hierarchy is the first the kernel sets up: hierarchy id 0. The v1
 * hierarchies of a hybrid host number their cgroups on their own, so their ids would
 * collide with v2 ones. */
#define DEFAULT_HIERARCHY 0

static __always_inline int report(struct trace_event_raw_cgroup *ctx, unsigned int kind)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct cgroup_event *e;
	unsigned int path_off;

	if (ctx->root != DEFAULT_HIERARCHY || !task_selected(task, pid))
		return 0;
	e = reserve_event(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->header, task, pid);
	e->kind = kind;
	e->level = ctx->level;
	e->id = ctx->id;
	path_off = ctx->__data_loc_path & 0xFFFF;
	bpf_probe_read_kernel_str(e->path, sizeof(e->path), (void *)ctx + path_off);
	submit_event(e);
	return 0;
}

SEC("tp/cgroup/cgroup_mkdir")
int handle_cgroup_mkdir(struct trace_event_raw_cgroup *ctx)
{
	return report(ctx, CGROUP_MKDIR);
}

SEC("tp/cgroup/cgroup_rmdir")
int handle_cgroup_rmdir(struct trace_event_raw_cgroup *ctx)
{
	return report(ctx, CGROUP_RMDIR);
}
