// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The syscall tracker on raw_syscalls:sys_enter/sys_exit. Aggregate mode counts calls,
 * errors and latency per (process, syscall) in per-CPU maps that user space drains;
 * stream mode sends every call through the ring buffer.
 */
#include "common.bpf.h"
#include "syscall.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct syscall_event syscall_event_layout = {};
struct syscall_totals syscall_totals_layout = {};
struct syscall_key syscall_key_layout = {};

const volatile bool stream_mode = false;
/* Stream mode wakes the reader only once this much is pending (it also polls on a timer). */
const volatile u64 wakeup_bytes = 1 << 20;

#define MAX_KEYS 65536

/*
 * Two generations of totals: programs add to the one `active_slot` names while user
 * space flips it and drains the other, so no increment races with a read-and-delete.
 */
u32 active_slot = 0;

struct totals_map {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_KEYS);
	__type(key, struct syscall_key);
	__type(value, struct syscall_totals);
};
struct totals_map totals_0 SEC(".maps");
struct totals_map totals_1 SEC(".maps");

/* Who each process is, for the drained rows; refreshed when a process's row is created. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, u32);
	__type(value, struct event_header);
} identities SEC(".maps");

/* The call in flight on each thread: entry time and syscall id. */
struct call {
	u64 start_ns;
	long id;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct call);
} in_flight SEC(".maps");

SEC("raw_tp/sys_enter")
int handle_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct call *call;

	if (!task_selected(task, pid))
		return 0;
	call = bpf_task_storage_get(&in_flight, task, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!call)
		return 0;
	call->id = ctx->args[1];
	call->start_ns = bpf_ktime_get_boot_ns();
	return 0;
}

static __always_inline void stream_call(struct task_struct *task, u32 pid, long id, long ret,
					u64 now, u64 latency)
{
	struct syscall_event *e = reserve_event(sizeof(*e));

	if (!e)
		return;
	fill_header(&e->header, task, pid);
	e->header.ts_ns = now;
	e->ret = ret;
	e->latency_ns = latency;
	e->syscall_id = id;
	e->pad = 0;
	/* A wake-up per call would cost more than the call itself. */
	bpf_ringbuf_submit(e, bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ?
				      BPF_RB_FORCE_WAKEUP :
				      BPF_RB_NO_WAKEUP);
}

static __always_inline void count_call(struct task_struct *task, u32 pid, long id, long ret,
				       u64 latency)
{
	struct syscall_key key = { .pid = pid, .syscall_id = id };
	struct syscall_totals *totals, first = {};
	void *map = active_slot ? (void *)&totals_1 : (void *)&totals_0;

	totals = bpf_map_lookup_elem(map, &key);
	if (totals) {
		totals->count++;
		totals->errors += ret < 0;
		totals->latency_ns += latency;
		return;
	}
	first.count = 1;
	first.errors = ret < 0;
	first.latency_ns = latency;
	if (bpf_map_update_elem(map, &key, &first, BPF_NOEXIST)) {
		/* Full, or another CPU created the row meanwhile: add to it if it exists. */
		totals = bpf_map_lookup_elem(map, &key);
		if (!totals) {
			__sync_fetch_and_add(&ringbuf_dropped, 1);
			return;
		}
		totals->count++;
		totals->errors += ret < 0;
		totals->latency_ns += latency;
		return;
	}
	struct event_header who = {};
	fill_header(&who, task, pid);
	bpf_map_update_elem(&identities, &pid, &who, BPF_ANY);
}

SEC("raw_tp/sys_exit")
int handle_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct call *call;
	u64 now, latency;
	long id, ret = ctx->args[1];

	call = bpf_task_storage_get(&in_flight, task, NULL, 0);
	/* No entry seen (tracing began mid-call, or the task is filtered out). */
	if (!call || !call->start_ns)
		return 0;
	now = bpf_ktime_get_boot_ns();
	latency = now - call->start_ns;
	id = call->id;
	call->start_ns = 0;

	if (stream_mode)
		stream_call(task, pid, id, ret, now, latency);
	else
		count_call(task, pid, id, ret, latency);
	return 0;
}
