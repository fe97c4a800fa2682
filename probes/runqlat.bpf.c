// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The runqlat tracker: how long each task waited on a run queue, from becoming runnable
 * (woken up, newly created, or preempted while running) to running, on the BTF-typed
 * sched_wakeup, sched_wakeup_new and sched_switch tracepoints. The filters select the
 * task that waits (not the task running when it is enqueued). In aggregate mode waits
 * are counted per process and latency bucket (buckets.bpf.h).
 */
#include "buckets.bpf.h"
#include "runqlat.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct runqlat_event runqlat_event_layout = {};
struct runqlat_key runqlat_key_layout = {};
struct runqlat_row runqlat_row_layout = {};

BUCKET_ROWS(struct runqlat_key, struct runqlat_row)

#define TASK_RUNNING 0

struct enqueued {
	u64 ts_ns;
	u32 preempted;
};

/* Runnable tasks by thread id. LRU: a task that exits while runnable cannot leak. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, u32);
	__type(value, struct enqueued);
} runnable SEC(".maps");

static __always_inline void enqueue(struct task_struct *task, u32 preempted)
{
	struct enqueued at = { .ts_ns = bpf_ktime_get_boot_ns(), .preempted = preempted };
	u32 tid = BPF_CORE_READ(task, pid);

	if (!tid || !other_task_selected(task))
		return;
	bpf_map_update_elem(&runnable, &tid, &at, BPF_ANY);
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(handle_sched_wakeup, struct task_struct *p)
{
	enqueue(p, 0);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(handle_sched_wakeup_new, struct task_struct *p)
{
	enqueue(p, 0);
	return 0;
}

/* Adds the wait of `task` to its row of the current generation. */
static __always_inline void count_wait(struct task_struct *task, struct enqueued *at,
				       u64 latency_ns)
{
	struct runqlat_key key = {
		.pid = BPF_CORE_READ(task, tgid),
		.preempted = at->preempted,
		.bucket = log2_bucket(latency_ns),
	};
	struct runqlat_row *row = current_row(&key);

	if (!row) {
		struct runqlat_row fresh = {};

		fill_header_of(&fresh.header, task);
		row = insert_row(&key, &fresh);
		if (!row)
			return;
	}
	__sync_fetch_and_add(&row->runs, 1);
	__sync_fetch_and_add(&row->latency_ns, latency_ns);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(handle_sched_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next)
{
	struct runqlat_event *e;
	struct enqueued *at;
	u64 now;
	u32 tid;

	/* Still runnable when it leaves the CPU: it waits on the run queue from now. */
	if (BPF_CORE_READ(prev, __state) == TASK_RUNNING)
		enqueue(prev, 1);
	tid = BPF_CORE_READ(next, pid);
	at = bpf_map_lookup_elem(&runnable, &tid);
	if (!at)
		return 0;
	now = bpf_ktime_get_boot_ns();
	if (now - at->ts_ns < min_latency_ns) {
		/* Too short a wait to report. */
	} else if (aggregate) {
		count_wait(next, at, now - at->ts_ns);
	} else if ((e = reserve_event(sizeof(*e)))) {
		fill_header_of(&e->header, next);
		e->latency_ns = e->header.ts_ns - at->ts_ns;
		e->cpu = bpf_get_smp_processor_id();
		e->tid = tid;
		e->preempted = at->preempted;
		e->pad = 0;
		submit_event(e);
	}
	bpf_map_delete_elem(&runnable, &tid);
	return 0;
}
