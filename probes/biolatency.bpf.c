// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The biolatency tracker: each block I/O request from issue to completion, on the
 * BTF-typed `block_rq_issue` and `block_rq_complete` tracepoints (the request pointer
 * pairs them). The issuing task is remembered with the start, since completion runs in
 * interrupt context; the pid, comm and cgroup filters select that task. In aggregate
 * mode completions are counted per key and latency bucket (buckets.bpf.h).
 */
#include "buckets.bpf.h"
#include "biolatency.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct biolatency_event biolatency_event_layout = {};
struct biolatency_key biolatency_key_layout = {};
struct biolatency_row biolatency_row_layout = {};

BUCKET_ROWS(struct biolatency_key, struct biolatency_row)

/* Only this device (dev_t, major << 20 | minor); 0 for all. Set before load. */
const volatile u32 target_dev = 0;

#define REQ_OP_MASK 0xff

struct issued {
	u64 ts_ns;
	struct event_header header;
};

/* Requests in flight. LRU: a request whose completion is never seen cannot leak. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, u64);
	__type(value, struct issued);
} inflight SEC(".maps");

static __always_inline u32 dev_of(struct gendisk *disk)
{
	return (BPF_CORE_READ(disk, major) << 20) | BPF_CORE_READ(disk, first_minor);
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(handle_rq_issue, struct request *rq)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct gendisk *disk = BPF_CORE_READ(rq, q, disk);
	struct issued issued = {};
	u64 key = (u64)rq;

	if (target_dev && dev_of(disk) != target_dev)
		return 0;
	if (!task_selected(task, pid))
		return 0;
	fill_header(&issued.header, task, pid);
	issued.ts_ns = issued.header.ts_ns;
	bpf_map_update_elem(&inflight, &key, &issued, BPF_ANY);
	return 0;
}

/* Adds the completed request to its row of the current generation. */
static __always_inline void count_request(struct issued *issued, struct gendisk *disk, u32 op,
					  int error, unsigned int nr_bytes, u64 latency_ns)
{
	struct biolatency_key key = {
		.pid = issued->header.pid,
		.dev = dev_of(disk),
		.op = op,
		.error = error,
		.bucket = log2_bucket(latency_ns),
	};
	struct biolatency_row *row = current_row(&key);

	if (!row) {
		struct biolatency_row fresh = {};

		__builtin_memcpy(&fresh.header, &issued->header, sizeof(fresh.header));
		BPF_CORE_READ_STR_INTO(&fresh.disk, disk, disk_name);
		row = insert_row(&key, &fresh);
		if (!row)
			return;
	}
	__sync_fetch_and_add(&row->requests, 1);
	__sync_fetch_and_add(&row->latency_ns, latency_ns);
	__sync_fetch_and_add(&row->bytes, nr_bytes);
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(handle_rq_complete, struct request *rq, int error, unsigned int nr_bytes)
{
	struct gendisk *disk = BPF_CORE_READ(rq, q, disk);
	u32 op = BPF_CORE_READ(rq, cmd_flags) & REQ_OP_MASK;
	struct biolatency_event *e;
	struct issued *issued;
	u64 key = (u64)rq, now;

	issued = bpf_map_lookup_elem(&inflight, &key);
	if (!issued)
		return 0;
	now = bpf_ktime_get_boot_ns();
	if (now - issued->ts_ns < min_latency_ns) {
		/* Too quick to report. */
	} else if (aggregate) {
		count_request(issued, disk, op, error, nr_bytes, now - issued->ts_ns);
	} else if ((e = reserve_event(sizeof(*e)))) {
		__builtin_memcpy(&e->header, &issued->header, sizeof(e->header));
		e->header.ts_ns = now;
		e->latency_ns = now - issued->ts_ns;
		e->sector = BPF_CORE_READ(rq, __sector);
		e->bytes = nr_bytes;
		e->dev = dev_of(disk);
		e->op = op;
		e->error = error;
		BPF_CORE_READ_STR_INTO(&e->disk, disk, disk_name);
		submit_event(e);
	}
	bpf_map_delete_elem(&inflight, &key);
	return 0;
}
