/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What every Eunomia probe shares: the filter configuration written by user space
 * (the seed's `env`), the in-kernel filters, the ring buffer and the counter of events
 * the ring buffer could not take.
 */
#ifndef EUNOMIA_COMMON_BPF_H
#define EUNOMIA_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "common.h"

/* Written by user space after load, before the programs are attached. */
struct filter_config filter SEC(".data.filter") = {};

/* Cgroup ids (v2) whose tasks are traced when filter_cgroup is set. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CGROUP_FILTER_MAX);
	__type(key, u64);
	__type(value, u8);
} cgroup_filter SEC(".maps");

/* Size is set by user space at open time. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

/* Events lost because the ring buffer was full; read by user space through mmap. */
u64 ringbuf_dropped = 0;

/*
 * Records waiting in the ring buffer past which submit_event wakes the reader; below it
 * the reader finds them at its next poll (at most 50 ms later). Set by user space.
 */
const volatile u64 wakeup_bytes = 1 << 20;

/*
 * The kernel's BTF type id of struct task_struct. Set by user space from the kernel's own
 * BTF, not by a CO-RE type-id relocation: that one would take its id from whatever BTF
 * libbpf relocates against, and the server relocates against a cached minimal BTF.
 */
const volatile u32 task_struct_id = 0;

/*
 * `map_0` or `map_1`, as the low bit of `gen` (a probe's current generation) says: for
 * updates, and for lookups off the hot path.
 */
#define generation_map(gen, map_0, map_1) (((gen) & 1) ? (void *)&(map_1) : (void *)&(map_0))

/*
 * The entry of `key` in generation_map(gen, map_0, map_1). One call site per map: the
 * verifier inlines a lookup in a map it knows, and a lookup in a map chosen at run time
 * is a helper call. The barrier keeps the compiler from merging the two calls into one
 * on a chosen map.
 */
#define generation_lookup(gen, map_0, map_1, key)                                          \
	({                                                                                 \
		void *entry_;                                                              \
		if ((gen) & 1) {                                                           \
			entry_ = bpf_map_lookup_elem(&(map_1), key);                       \
			barrier_var(entry_);                                               \
		} else {                                                                   \
			entry_ = bpf_map_lookup_elem(&(map_0), key);                       \
		}                                                                          \
		entry_;                                                                    \
	})

/*
 * `task` for direct loads, marked untrusted. Every pointer loaded from a trusted one makes
 * the verifier search the kernel's BTF by name for the field's trust annotations (a linear
 * search: it was 17% of a session's start); walking from an untrusted pointer skips that.
 * The cast costs nothing at run time, and a faulting load reads 0 either way.
 */
static __always_inline struct task_struct *walkable(struct task_struct *task)
{
	return bpf_rdonly_cast(task, task_struct_id);
}

/*
 * The task's comm by direct loads into `to` (TASK_COMM_LEN bytes). bpf_get_current_comm
 * costs a helper call and a padded string copy, 20 ns or more on every event of a hot
 * probe; the kernel keeps comm padded with NULs itself, so the bytes are the same.
 */
static __always_inline void read_comm(char *to, struct task_struct *task)
{
	__builtin_memcpy(to, walkable(task)->comm, TASK_COMM_LEN);
}

/* Byte by byte from the task itself: bpf_get_current_comm's padded copy cost more than the
 * rest of the filter, on every event of a filtered session. */
static __always_inline bool comm_matches(struct task_struct *task)
{
	const char *comm = walkable(task)->comm;

	if (!filter.filter_comm)
		return true;
#pragma unroll
	for (int i = 0; i < TASK_COMM_LEN; i++) {
		char c = comm[i];

		if (c != filter.target_comm[i])
			return false;
		if (c == '\0')
			break;
	}
	return true;
}

static __always_inline bool cgroup_matches(void)
{
	u64 cgid;

	if (!filter.filter_cgroup)
		return true;
	cgid = filter.cgroup_level ? bpf_get_current_ancestor_cgroup_id(filter.cgroup_level) :
			      bpf_get_current_cgroup_id();
	return bpf_map_lookup_elem(&cgroup_filter, &cgid) != NULL;
}

/* Every in-kernel filter; pid is the thread group id of the current task. */
static __always_inline bool task_selected(struct task_struct *task, u32 pid)
{
	if (filter.target_pid && pid != filter.target_pid)
		return false;
	if (filter.exclude_pid && pid == filter.exclude_pid)
		return false;
	if (filter.exclude_current_ppid &&
	    BPF_CORE_READ(task, real_parent, tgid) == filter.exclude_current_ppid)
		return false;
	return cgroup_matches() && comm_matches(task);
}

/*
 * The filters applied to `task` rather than the current task: for probes that report on
 * another task than the one running (the scheduler's next task, say).
 */
static __always_inline bool other_task_selected(struct task_struct *task)
{
	u32 pid = BPF_CORE_READ(task, tgid);
	char comm[TASK_COMM_LEN];

	if (filter.target_pid && pid != filter.target_pid)
		return false;
	if (filter.exclude_pid && pid == filter.exclude_pid)
		return false;
	if (filter.exclude_current_ppid &&
	    BPF_CORE_READ(task, real_parent, tgid) == filter.exclude_current_ppid)
		return false;
	if (filter.filter_cgroup) {
		struct cgroup *cgrp = BPF_CORE_READ(task, cgroups, dfl_cgrp);
		u64 cgid;

		/* Up to the ancestor at cgroup_level, when one is asked for; the hierarchy is at
		 * most this deep here. */
		for (int i = 0; filter.cgroup_level && i < 32 && cgrp &&
				BPF_CORE_READ(cgrp, level) > (int)filter.cgroup_level;
		     i++)
			cgrp = (void *)BPF_CORE_READ(cgrp, self.parent) -
			       bpf_core_field_offset(struct cgroup, self);
		cgid = BPF_CORE_READ(cgrp, kn, id);
		if (!bpf_map_lookup_elem(&cgroup_filter, &cgid))
			return false;
	}
	if (filter.filter_comm) {
		BPF_CORE_READ_STR_INTO(&comm, task, comm);
		for (int i = 0; i < TASK_COMM_LEN; i++) {
			if (comm[i] != filter.target_comm[i])
				return false;
			if (comm[i] == '\0')
				break;
		}
	}
	return true;
}

static __always_inline void *reserve_event(u64 size)
{
	void *e = bpf_ringbuf_reserve(&events, size, 0);

	if (!e)
		__sync_fetch_and_add(&ringbuf_dropped, 1);
	return e;
}

/*
 * A record goes in without a wake-up per record: a wake-up (waking the reader's thread,
 * which then reads one record) costs more than the event itself.
 */
static __always_inline u64 wakeup_flags(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP :
									  BPF_RB_NO_WAKEUP;
}

/* Submits a reserved record (see wakeup_flags). */
static __always_inline void submit_event(void *e)
{
	bpf_ringbuf_submit(e, wakeup_flags());
}

/* `task` must be a BTF pointer (bpf_get_current_task_btf()); pid and cgroup are the
 * current task's. */
static __always_inline void fill_header(struct event_header *h, struct task_struct *current,
					u32 pid)
{
	struct task_struct *task = walkable(current);
	struct pid *tpid;
	unsigned int level;

	h->ts_ns = bpf_ktime_get_boot_ns();
	h->pid = pid;
	/* Direct loads through BTF pointers: cheaper than a helper call per field. */
	h->ppid = task->real_parent->tgid;
	h->cgroup_id = bpf_get_current_cgroup_id();
	h->user_ns = task->cred->user_ns->ns.inum;
	tpid = task->thread_pid;
	level = tpid->level;
	/* A variable index into an array is the one read the verifier wants through a helper. */
	h->pid_ns = BPF_CORE_READ(tpid, numbers[level].ns, ns.inum);
	h->mnt_ns = task->nsproxy->mnt_ns->ns.inum;
	read_comm(h->comm, current);
}

/* fill_header for another task than the current one (the scheduler's next task, say). */
static __always_inline void fill_header_of(struct event_header *h, struct task_struct *task)
{
	fill_header(h, task, BPF_CORE_READ(task, tgid));
	h->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
}

/*
 * The slow part of a header (ppid and namespaces, a dozen dependent kernel reads, and the
 * comm) kept per CPU for the thread that last reported there, by probes that report every
 * call. Refreshed when another thread reports, when a task was renamed since (the probe
 * counts renames in tp_btf/task_rename), and at most this long after the last refresh.
 */
#define HEADER_CACHE_NS 100000000ULL

struct header_cache {
	u64 refreshed_ns;
	u32 tid;
	u32 renames;
	u32 ppid;
	u32 user_ns;
	u32 pid_ns;
	u32 mnt_ns;
	char comm[TASK_COMM_LEN];
};

/* fill_header for hot paths: pid and cgroup are always current. */
static __always_inline void fill_header_cached(struct event_header *h, struct task_struct *task,
					       u32 pid, u32 renames, struct header_cache *cache,
					       u64 now)
{
	u32 tid = task->pid;

	if (cache->tid != tid || cache->renames != renames ||
	    now - cache->refreshed_ns > HEADER_CACHE_NS) {
		fill_header(h, task, pid);
		cache->refreshed_ns = now;
		cache->tid = tid;
		cache->renames = renames;
		cache->ppid = h->ppid;
		cache->user_ns = h->user_ns;
		cache->pid_ns = h->pid_ns;
		cache->mnt_ns = h->mnt_ns;
		__builtin_memcpy(cache->comm, h->comm, sizeof(cache->comm));
	} else {
		h->pid = pid;
		h->ppid = cache->ppid;
		h->cgroup_id = bpf_get_current_cgroup_id();
		h->user_ns = cache->user_ns;
		h->pid_ns = cache->pid_ns;
		h->mnt_ns = cache->mnt_ns;
		__builtin_memcpy(h->comm, cache->comm, sizeof(h->comm));
	}
	h->ts_ns = now;
}

/* The file behind a file descriptor of `task`, or NULL. */
static __always_inline struct file *file_of_fd(struct task_struct *task, long fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;

	if (fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

/* The socket behind a file descriptor of `task`, or NULL when the fd is no socket. */
static __always_inline struct sock *sock_of_fd(struct task_struct *task, long fd)
{
	struct file *file = file_of_fd(task, fd);
	struct socket *sock;

	/* S_IFMT and S_IFSOCK: only a socket's private data is a struct socket. */
	if (!file || (BPF_CORE_READ(file, f_inode, i_mode) & 0170000) != 0140000)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	return BPF_CORE_READ(sock, sk);
}

#endif
