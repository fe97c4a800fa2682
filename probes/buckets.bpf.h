/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Aggregate mode of the latency trackers (biolatency, runqlat): as libbpf-tools do, the
 * kernel counts each interval's events per key and power-of-two latency bucket, and only
 * the counts cross. Rows come in two generations, as the syscall tracker's do: programs
 * add to the one the low bit of `generation` names while user space bumps it and drains
 * the other.
 */
#ifndef EUNOMIA_BUCKETS_BPF_H
#define EUNOMIA_BUCKETS_BPF_H

#include "common.bpf.h"

/* Rows per generation; user space shrinks the maps to one row in stream mode. */
#define BUCKET_ROWS_MAX 10240

u32 generation = 0;

/* Count per bucket in the kernel (aggregate mode) or report every event (stream mode). */
const volatile bool aggregate = true;

/* Latencies below this are neither counted nor reported (the min_latency_us option). */
const volatile u64 min_latency_ns = 0;

/*
 * The bucket of `v` as the stores number them: 0 holds 0, and k > 0 holds
 * [2^(k-1), 2^k). A binary search: BPF has no count-leading-zeros instruction.
 */
static __always_inline u32 log2_bucket(u64 v)
{
	u32 k = 0;

	if (v >> 32) {
		v >>= 32;
		k += 32;
	}
	if (v >> 16) {
		v >>= 16;
		k += 16;
	}
	if (v >> 8) {
		v >>= 8;
		k += 8;
	}
	if (v >> 4) {
		v >>= 4;
		k += 4;
	}
	if (v >> 2) {
		v >>= 2;
		k += 2;
	}
	if (v >> 1) {
		v >>= 1;
		k += 1;
	}
	return v ? k + 1 : 0;
}

/*
 * The two generations of rows, `rows_0` and `rows_1`, of `key_type` to `row_type`, with
 * current_rows() (the generation programs add to), current_row(key) (the row of `key`
 * there, or NULL) and insert_row(key, fresh) (inserts
 * `fresh` as the current generation's row of `key`; NULL, counted as a loss, when the map
 * is full).
 */
#define BUCKET_ROWS(key_type, row_type) \
	struct { \
		__uint(type, BPF_MAP_TYPE_HASH); \
		__uint(max_entries, BUCKET_ROWS_MAX); \
		__type(key, key_type); \
		__type(value, row_type); \
	} rows_0 SEC(".maps"), rows_1 SEC(".maps"); \
	static __always_inline void *current_rows(void) \
	{ \
		return generation_map(generation, rows_0, rows_1); \
	} \
	static __always_inline row_type *current_row(key_type *key) \
	{ \
		return generation_lookup(generation, rows_0, rows_1, key); \
	} \
	static __always_inline row_type *insert_row(key_type *key, row_type *fresh) \
	{ \
		void *rows = current_rows(); \
		row_type *row; \
		bpf_map_update_elem(rows, key, fresh, BPF_NOEXIST); \
		row = bpf_map_lookup_elem(rows, key); \
		if (!row) \
			__sync_fetch_and_add(&ringbuf_dropped, 1); \
		return row; \
	}

#endif
