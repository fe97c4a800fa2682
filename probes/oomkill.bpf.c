// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The oomkill tracker: each process the OOM killer chooses, on `oom:mark_victim`, which
 * runs in the context of the task whose allocation failed (libbpf-tools' oomkill uses a
 * kprobe on oom_kill_process instead). The filters select that triggering task.
 */
#include "common.bpf.h"
#include "oomkill.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct oomkill_event oomkill_event_layout = {};

/* Memory cgroups deep enough for any container runtime's tree. */
#define MAX_CGROUP_DEPTH 16
/* page_counter's "no limit" (PAGE_COUNTER_MAX, x86_64's 4 KiB pages). */
#define NO_LIMIT (0x7fffffffffffffffULL / 4096)

/* The lowest limit on the memory cgroups from `task`'s up to the root, in pages. */
static __always_inline u64 memory_limit(struct task_struct *task)
{
	int memory = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	struct cgroup_subsys_state *css = BPF_CORE_READ(task, cgroups, subsys[memory]);
	u64 lowest = 0;

	for (int i = 0; i < MAX_CGROUP_DEPTH && css; i++) {
		struct mem_cgroup *memcg = container_of(css, struct mem_cgroup, css);
		u64 max = BPF_CORE_READ(memcg, memory.max);

		if (max && max < NO_LIMIT && (!lowest || max < lowest))
			lowest = max;
		css = BPF_CORE_READ(css, parent);
	}
	return lowest;
}

SEC("tp/oom/mark_victim")
int handle_mark_victim(struct trace_event_raw_mark_victim *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct oomkill_event *e;
	unsigned int comm_off;

	if (!task_selected(task, pid))
		return 0;
	e = reserve_event(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->header, task, pid);
	e->victim_pid = ctx->pid;
	e->victim_uid = ctx->uid;
	comm_off = ctx->__data_loc_comm & 0xFFFF;
	bpf_probe_read_kernel_str(e->victim_comm, sizeof(e->victim_comm), (void *)ctx + comm_off);
	e->total_vm_kb = ctx->total_vm;
	e->anon_rss_kb = ctx->anon_rss;
	e->file_rss_kb = ctx->file_rss;
	e->shmem_rss_kb = ctx->shmem_rss;
	e->limit_pages = memory_limit(task);
	e->oom_score_adj = ctx->oom_score_adj;
	e->pad = 0;
	submit_event(e);
	return 0;
}
