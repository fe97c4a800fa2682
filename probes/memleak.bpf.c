// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The memleak tracker: a process's heap allocations that are not freed, by the stack that
 * made them, on uprobes of its allocator (malloc, calloc, realloc, posix_memalign, free;
 * user space attaches them to the library the process maps, for its pid only). Each live
 * block is remembered with its size and stack; per stack, allocations and the frees of its
 * blocks are counted per interval, so their difference summed over a session is what is
 * still outstanding at its end.
 */
#include "stacks.bpf.h"
#include "memleak.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct stack_key stack_key_layout = {};
struct memleak_row memleak_row_layout = {};

struct block {
	u64 size;
	struct stack_key key;
};

/* Live blocks by address. Allocated on use: most sessions see few. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 20);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, u64);
	__type(value, struct block);
} blocks SEC(".maps");

/* Sizes asked for, by thread, from the allocator's entry to its return. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, u32);
	__type(value, u64);
} pending SEC(".maps");

/* posix_memalign's out-parameter, by thread, from its entry to its return. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, u32);
	__type(value, u64);
} out_params SEC(".maps");

STACK_ROWS(struct memleak_row);

/* The current generation's row of `key`, made if new; NULL (counted) when the map is full. */
static __always_inline struct memleak_row *row_of(struct stack_key *key)
{
	u32 gen = generation;
	void *rows = generation_map(gen, rows_0, rows_1);
	struct memleak_row *row = generation_lookup(gen, rows_0, rows_1, key);

	if (!row) {
		struct memleak_row fresh = {};

		fill_header(&fresh.header, bpf_get_current_task_btf(), key->pid);
		bpf_map_update_elem(rows, key, &fresh, BPF_NOEXIST);
		row = bpf_map_lookup_elem(rows, key);
		if (!row)
			__sync_fetch_and_add(&ringbuf_dropped, 1);
	}
	return row;
}

static __always_inline int alloc_enter(u64 size)
{
	u32 tid = bpf_get_current_pid_tgid();

	bpf_map_update_elem(&pending, &tid, &size, BPF_ANY);
	return 0;
}

/* A block of the pending size at `address` (0: the allocation failed). */
static __always_inline int alloc_exit(void *ctx, u64 address)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tid = id;
	struct memleak_row *row;
	struct block block = {};
	u64 *size = bpf_map_lookup_elem(&pending, &tid);

	if (!size)
		return 0;
	block.size = *size;
	bpf_map_delete_elem(&pending, &tid);
	if (!address)
		return 0;
	block.key.pid = id >> 32;
	/* At the return the unwinder starts in the caller: the allocating function. */
	block.key.user_stack = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
	block.key.kernel_stack = -EFAULT;
	bpf_get_current_comm(block.key.comm, sizeof(block.key.comm));
	if (bpf_map_update_elem(&blocks, &address, &block, BPF_ANY)) {
		__sync_fetch_and_add(&ringbuf_dropped, 1);
		return 0;
	}
	row = row_of(&block.key);
	if (row) {
		__sync_fetch_and_add(&row->allocations, 1);
		__sync_fetch_and_add(&row->bytes, block.size);
	}
	return 0;
}

static __always_inline int free_enter(u64 address)
{
	struct memleak_row *row;
	struct block *block = bpf_map_lookup_elem(&blocks, &address);

	/* Unknown: allocated before the session, or not through the probed calls. */
	if (!block)
		return 0;
	row = row_of(&block->key);
	if (row) {
		__sync_fetch_and_add(&row->frees, 1);
		__sync_fetch_and_add(&row->freed_bytes, block->size);
	}
	bpf_map_delete_elem(&blocks, &address);
	return 0;
}

SEC("uprobe")
int BPF_UPROBE(malloc_enter, size_t size)
{
	return alloc_enter(size);
}

SEC("uretprobe")
int BPF_URETPROBE(malloc_exit, void *address)
{
	return alloc_exit(ctx, (u64)address);
}

SEC("uprobe")
int BPF_UPROBE(calloc_enter, size_t count, size_t size)
{
	return alloc_enter(count * size);
}

SEC("uretprobe")
int BPF_URETPROBE(calloc_exit, void *address)
{
	return alloc_exit(ctx, (u64)address);
}

/* realloc frees the old block (when it moves or shrinks to nothing) and makes a new one. */
SEC("uprobe")
int BPF_UPROBE(realloc_enter, void *old, size_t size)
{
	free_enter((u64)old);
	return alloc_enter(size);
}

SEC("uretprobe")
int BPF_URETPROBE(realloc_exit, void *address)
{
	return alloc_exit(ctx, (u64)address);
}

SEC("uprobe")
int BPF_UPROBE(posix_memalign_enter, void **out, size_t alignment, size_t size)
{
	u32 tid = bpf_get_current_pid_tgid();
	u64 out_param = (u64)out;

	bpf_map_update_elem(&out_params, &tid, &out_param, BPF_ANY);
	return alloc_enter(size);
}

SEC("uretprobe")
int BPF_URETPROBE(posix_memalign_exit, int error)
{
	u32 tid = bpf_get_current_pid_tgid();
	u64 *out = bpf_map_lookup_elem(&out_params, &tid);
	u64 address = 0;

	if (!out)
		return 0;
	if (!error)
		bpf_probe_read_user(&address, sizeof(address), (void *)*out);
	bpf_map_delete_elem(&out_params, &tid);
	return alloc_exit(ctx, address);
}

SEC("uprobe")
int BPF_UPROBE(free_hook, void *address)
{
	return free_enter((u64)address);
}
