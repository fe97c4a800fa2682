// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The files tracker. Reads and writes (read, write, pread64, pwrite64, readv, writev) are
 * counted in the kernel per (process, file), with the bytes the call returned, in hash
 * maps that user space drains every interval. openat calls are events in the ring buffer,
 * or, with `aggregate_opens`, counted the same way per (process, file, flags, result).
 *
 * One program on sys_exit does it all: the arguments are still in the task's saved
 * registers when the call returns, so no program runs at sys_enter and nothing is kept
 * per thread between the two (each would cost about as much as the counting itself).
 */
#include "common.bpf.h"
#include "files.h"
#include "path.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct files_io files_io_layout = {};
struct files_key files_key_layout = {};
struct files_open_event files_open_event_layout = {};
struct files_open_key files_open_key_layout = {};

/* Which file types to report, bit (1 << enum files_file_type); set by user space. */
const volatile u32 file_type_mask = 1 << FILES_TYPE_REGULAR;
/* Count opens in maps drained every interval instead of an event per call. */
const volatile bool aggregate_opens = false;

#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define S_IFREG 0100000
#define S_IFIFO 0010000

#define MAX_FILES 16384

/*
 * Aggregates come in two generations: programs add to the one the low bit of
 * `generation` names while user space bumps it and drains the other, so no increment
 * races with a read-and-delete.
 */
u32 generation = 0;

/* Allocated on demand: a row carries its path, and most sessions see few files. */
struct io_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_FILES);
	__type(key, struct files_key);
	__type(value, struct files_io);
};
struct io_map io_0 SEC(".maps");
struct io_map io_1 SEC(".maps");

struct open_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_FILES);
	__type(key, struct files_open_key);
	__type(value, struct files_open_event);
};
struct open_map opens_0 SEC(".maps");
struct open_map opens_1 SEC(".maps");

enum call {
	CALL_READ,
	CALL_WRITE,
};

/* x86_64 system call numbers. */
#define NR_READ 0
#define NR_WRITE 1
#define NR_PREAD64 17
#define NR_PWRITE64 18
#define NR_READV 19
#define NR_WRITEV 20
#define NR_OPENAT 257

/*
 * Paths already walked, by (dentry, mount): a file opened on every request is walked
 * once, not each time. An entry holds while the file keeps its name and directory
 * (checked on every use); a rename of a directory above it shows within PATH_CACHE_NS.
 */
#define PATH_CACHE_ENTRIES 4096
#define PATH_CACHE_NS 1000000000ULL

struct path_key {
	u64 dentry;
	u64 mnt;
};

struct cached_path {
	u64 at_ns;
	u64 parent; /* the dentry's d_parent, and its name's hash and length, when walked */
	u64 name_hash_len;
	struct files_path file;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PATH_CACHE_ENTRIES);
	__type(key, struct path_key);
	__type(value, struct cached_path);
} paths SEC(".maps");

/* Too big for the 512-byte stack: new rows, the path built backwards, a cache entry. */
struct scratch {
	struct files_io io;
	struct files_open_event open;
	struct cached_path cached;
	struct path_scratch walk;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

static __always_inline struct scratch *get_scratch(void)
{
	u32 zero = 0;

	return bpf_map_lookup_elem(&scratch_map, &zero);
}

/* The kernel's BTF type id of struct file, set by user space (see task_struct_id). */
const volatile u32 file_struct_id = 0;

static __always_inline struct path_scratch *path_scratch(void)
{
	struct scratch *s = get_scratch();

	return s ? &s->walk : NULL;
}

/*
 * The file behind `fd`, or NULL. Kernel structures are read by direct loads through BTF
 * pointers (a fault reads as 0) rather than helper calls: this runs on every read and
 * write, and each helper call costs about as much as the loads themselves.
 */
static __always_inline struct file *fd_file(struct task_struct *task, s64 fd)
{
	struct fdtable *fdt = walkable(task)->files->fdt;
	struct file *file = NULL;

	if (!fdt || fd < 0 || fd >= fdt->max_fds)
		return NULL;
	/* An indexed pointer array is the one read the verifier wants through a helper. */
	bpf_probe_read_kernel(&file, sizeof(file), (void *)((u64)fdt->fd + fd * sizeof(file)));
	return file ? bpf_rdonly_cast(file, file_struct_id) : NULL;
}

static __always_inline u32 file_type(struct inode *inode)
{
	switch (inode->i_mode & S_IFMT) {
	case S_IFREG:
		return FILES_TYPE_REGULAR;
	case S_IFSOCK:
		return FILES_TYPE_SOCKET;
	case S_IFIFO:
		return FILES_TYPE_PIPE;
	default:
		return FILES_TYPE_OTHER;
	}
}

static __always_inline bool type_selected(u32 type)
{
	return file_type_mask & (1 << type);
}

/* The file's path into `out` (file_type is the caller's): from the cache, or walked. */
static __always_inline void build_path(struct scratch *s, struct file *file,
				       struct files_path *out)
{
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
	struct vfsmount *vfsmnt = BPF_CORE_READ(file, f_path.mnt);
	struct path_key key = { .dentry = (u64)dentry, .mnt = (u64)vfsmnt };
	u64 parent = (u64)BPF_CORE_READ(dentry, d_parent);
	u64 name_hash_len = BPF_CORE_READ(dentry, d_name.hash_len);
	u64 now = bpf_ktime_get_boot_ns();
	struct cached_path *hit = bpf_map_lookup_elem(&paths, &key);
	u32 file_type = out->file_type;
	struct walked_path walked;

	if (hit && hit->parent == parent && hit->name_hash_len == name_hash_len &&
	    now - hit->at_ns < PATH_CACHE_NS) {
		__builtin_memcpy(out, &hit->file, sizeof(*out));
		out->file_type = file_type;
		return;
	}
	walked = walk_path(&s->walk, dentry, vfsmnt);
	bpf_probe_read_kernel(out->path, sizeof(out->path), s->walk.path);
	out->path_start = walked.start;
	out->pseudo = walked.pseudo;
	s->cached.at_ns = now;
	s->cached.parent = parent;
	s->cached.name_hash_len = name_hash_len;
	__builtin_memcpy(&s->cached.file, out, sizeof(*out));
	bpf_map_update_elem(&paths, &key, &s->cached, BPF_ANY);
}

/* A new row for (pid, file), or NULL when the map is full (counted as a drop). */
static __always_inline struct files_io *new_row(void *rows, struct files_key *key,
					       struct task_struct *task, struct file *file,
					       u32 type)
{
	struct scratch *s = get_scratch();
	struct files_io *row;

	if (!s)
		return NULL;
	fill_header(&s->io.header, task, key->pid);
	s->io.reads = 0;
	s->io.writes = 0;
	s->io.read_bytes = 0;
	s->io.write_bytes = 0;
	s->io.ino = key->ino;
	s->io.file.file_type = type;
	build_path(s, file, &s->io.file);
	/* Another CPU may have added the row meanwhile: then that one is used. */
	bpf_map_update_elem(rows, key, &s->io, BPF_NOEXIST);
	row = bpf_map_lookup_elem(rows, key);
	if (!row)
		__sync_fetch_and_add(&ringbuf_dropped, 1);
	return row;
}

/* A read or write of `fd` that returned `ret` bytes, by the selected `task`. */
static __always_inline void count_io(struct task_struct *task, u32 pid, s64 fd, long ret,
				     u32 call)
{
	struct files_key key = {};
	struct files_io *row;
	struct inode *inode;
	struct file *file;
	void *rows;
	u32 type, gen;

	/* Failed calls moved no data. */
	if (ret < 0)
		return;
	file = fd_file(task, fd);
	if (!file) {
		/* Another thread closed the fd meanwhile: the call cannot be placed. */
		__sync_fetch_and_add(&ringbuf_dropped, 1);
		return;
	}
	inode = file->f_inode;
	type = file_type(inode);
	if (!type_selected(type))
		return;
	key.pid = pid;
	key.dev = inode->i_sb->s_dev;
	key.ino = inode->i_ino;
	read_comm(key.comm, task);
	gen = generation;
	rows = generation_map(gen, io_0, io_1);
	row = generation_lookup(gen, io_0, io_1, &key);
	if (!row) {
		row = new_row(rows, &key, task, file, type);
		if (!row)
			return;
	}
	if (call == CALL_READ) {
		__sync_fetch_and_add(&row->reads, 1);
		__sync_fetch_and_add(&row->read_bytes, ret);
	} else {
		__sync_fetch_and_add(&row->writes, 1);
		__sync_fetch_and_add(&row->write_bytes, ret);
	}
}

/*
 * The open of `file` (NULL when there is none: a failed open, or another thread closed
 * the new fd first, which is then reported by name only) into `e`, for one call.
 */
static __always_inline void fill_open(struct files_open_event *e, struct scratch *s,
				      struct task_struct *task, u32 pid, struct file *file,
				      u32 type, const char *filename, u32 flags, long ret)
{
	fill_header(&e->header, task, pid);
	e->ret = ret;
	e->opens = 1;
	e->flags = flags;
	e->pad = 0;
	e->file.file_type = type;
	if (file) {
		e->ino = file->f_inode->i_ino;
		build_path(s, file, &e->file);
	} else {
		/* No file: the name as the caller passed it is all there is. */
		e->ino = 0;
		e->file.pseudo = 0;
		e->file.path_start = 0;
		bpf_probe_read_user_str(e->file.path, sizeof(e->file.path), filename);
	}
}

/* FNV-1a of the name the caller passed, which keys opens that have no file. */
static __always_inline u64 name_hash(struct scratch *s, const char *filename)
{
	long len = bpf_probe_read_user_str(s->walk.path, FILES_PATH_MAX, filename);
	u64 hash = 14695981039346656037ULL;

	for (u32 i = 0; i < FILES_PATH_MAX; i++) {
		if (i >= len)
			break;
		hash = (hash ^ (u8)s->walk.path[i]) * 1099511628211ULL;
	}
	return hash;
}

/* One openat counted in the current generation's row for its (process, file, flags, result). */
static __always_inline void count_open(struct scratch *s, struct task_struct *task, u32 pid,
				       struct file *file, u32 type, const char *filename,
				       u32 flags, long ret)
{
	struct files_open_key key = {};
	struct files_open_event *row;
	u32 gen = generation;
	void *rows = generation_map(gen, opens_0, opens_1);

	key.pid = pid;
	key.flags = flags;
	key.ret = ret < 0 ? ret : 0;
	if (file) {
		key.dev = file->f_inode->i_sb->s_dev;
		key.file = file->f_inode->i_ino;
	} else {
		key.file = name_hash(s, filename);
	}
	read_comm(key.comm, task);
	row = generation_lookup(gen, opens_0, opens_1, &key);
	if (row) {
		__sync_fetch_and_add(&row->opens, 1);
		return;
	}
	fill_open(&s->open, s, task, pid, file, type, filename, flags, key.ret);
	/* Another CPU may have added the row meanwhile: then this call is added to it. */
	if (bpf_map_update_elem(rows, &key, &s->open, BPF_NOEXIST) == 0)
		return;
	row = bpf_map_lookup_elem(rows, &key);
	if (row)
		__sync_fetch_and_add(&row->opens, 1);
	else
		__sync_fetch_and_add(&ringbuf_dropped, 1);
}

/* An openat(dfd, filename, flags, mode) that returned `ret`, by the selected `task`. */
static __always_inline void report_open(struct task_struct *task, u32 pid,
					const char *filename, u32 flags, long ret)
{
	struct files_open_event *e;
	struct scratch *s;
	struct file *file = NULL;
	u32 type = FILES_TYPE_UNKNOWN;

	if (ret >= 0)
		file = fd_file(task, ret);
	if (file) {
		type = file_type(file->f_inode);
		if (!type_selected(type))
			return;
	}
	s = get_scratch();
	if (!s)
		return;
	if (aggregate_opens) {
		count_open(s, task, pid, file, type, filename, flags, ret);
		return;
	}
	e = reserve_event(sizeof(*e));
	if (!e)
		return;
	fill_open(e, s, task, pid, file, type, filename, flags, ret);
	submit_event(e);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(files_sys_exit, struct pt_regs *regs, long ret)
{
	struct task_struct *task;
	long nr = regs->orig_ax;
	u32 pid;

	if (nr != NR_READ && nr != NR_WRITE && nr != NR_PREAD64 && nr != NR_PWRITE64 &&
	    nr != NR_READV && nr != NR_WRITEV && nr != NR_OPENAT)
		return 0;
	task = bpf_get_current_task_btf();
	pid = bpf_get_current_pid_tgid() >> 32;
	if (!task_selected(task, pid))
		return 0;
	/* The fd is the first argument of every call of the read and write families. */
	switch (nr) {
	case NR_READ:
	case NR_PREAD64:
	case NR_READV:
		count_io(task, pid, (int)regs->di, ret, CALL_READ);
		break;
	case NR_WRITE:
	case NR_PWRITE64:
	case NR_WRITEV:
		count_io(task, pid, (int)regs->di, ret, CALL_WRITE);
		break;
	default:
		report_open(task, pid, (const char *)regs->si, regs->dx, ret);
	}
	return 0;
}

/*
 * Without the `io` option: openat alone, on its own tracepoint, so that no other system
 * call runs a program of this tracker. The arguments come from the saved registers.
 */
SEC("tp/syscalls/sys_exit_openat")
int files_openat_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct pt_regs *regs;

	if (!task_selected(task, pid))
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	report_open(task, pid, (const char *)BPF_CORE_READ(regs, si), BPF_CORE_READ(regs, dx),
		    ctx->ret);
	return 0;
}
