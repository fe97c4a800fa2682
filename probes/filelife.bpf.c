// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The filelife tracker: files created and deleted while traced, with how long they
 * lived. libbpf-tools' filelife uses kprobes on vfs_create and vfs_unlink, which give the
 * dentry; here creation is an openat that created its file (FMODE_CREATED on the opened
 * file), keyed by a hash of the file's full path, and deletion an unlink or unlinkat whose
 * full path (the directory's walked path and the name as passed) hashes the same.
 * Names with `.` or `..` components, or reached through a symlinked directory, are not
 * matched.
 */
#include "common.bpf.h"
#include "filelife.h"
#include "path.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct filelife_event filelife_event_layout = {};

#define O_CREAT 0100
#define AT_FDCWD -100
#define AT_REMOVEDIR 0x200
/* include/linux/fs.h: the open created its file. */
#define FMODE_CREATED (1U << 20)
#define FNV_OFFSET 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL

struct birth {
	u64 ts_ns;
	u32 pid;
	u16 path_start;
	char comm[TASK_COMM_LEN];
	char path[FILELIFE_PATH_LEN];
};

/* Files created and not yet deleted, by path hash. LRU: one never deleted ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, u64);
	__type(value, struct birth);
} births SEC(".maps");

/* The walk's state and the birth being built: too big for the stack. */
struct scratch {
	struct path_scratch walk;
	struct birth birth;
	char name[FILELIFE_PATH_LEN];
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

static __always_inline struct path_scratch *path_scratch(void)
{
	struct scratch *s = get_scratch();

	return s ? &s->walk : NULL;
}

/* FNV-1a of the walked path, path[start..] up to its NUL. */
static __always_inline u64 hash_walked(struct path_scratch *w, u32 start)
{
	u64 hash = FNV_OFFSET;

	for (u32 i = 0; i < PATH_LEN; i++) {
		u32 at = (start + i) & (2 * PATH_LEN - 1);
		char c = w->path[at];

		if (!c)
			break;
		hash = (hash ^ (u8)c) * FNV_PRIME;
	}
	return hash;
}

/* Continues `hash` over a NUL-terminated name. */
static __always_inline u64 hash_more(u64 hash, const char *name)
{
	for (u32 i = 0; i < FILELIFE_PATH_LEN; i++) {
		char c = name[i];

		if (!c)
			break;
		hash = (hash ^ (u8)c) * FNV_PRIME;
	}
	return hash;
}

SEC("tp/syscalls/sys_exit_openat")
int handle_openat_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct pt_regs *regs;
	struct walked_path walked;
	struct scratch *s;
	struct file *file;
	long ret = ctx->ret;
	u64 key;

	if (ret < 0 || !task_selected(task, pid))
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!(BPF_CORE_READ(regs, dx) & O_CREAT))
		return 0;
	file = file_of_fd(task, ret);
	if (!file || !(BPF_CORE_READ(file, f_mode) & FMODE_CREATED))
		return 0;
	s = get_scratch();
	if (!s)
		return 0;
	walked = walk_path(&s->walk, BPF_CORE_READ(file, f_path.dentry),
			   BPF_CORE_READ(file, f_path.mnt));
	key = hash_walked(&s->walk, walked.start);
	s->birth.ts_ns = bpf_ktime_get_boot_ns();
	s->birth.pid = pid;
	s->birth.path_start = walked.start;
	bpf_get_current_comm(s->birth.comm, sizeof(s->birth.comm));
	bpf_probe_read_kernel(s->birth.path, sizeof(s->birth.path), s->walk.path);
	bpf_map_update_elem(&births, &key, &s->birth, BPF_ANY);
	return 0;
}

/* An unlink of `name` relative to `dfd` succeeded: report the file if its birth was seen. */
static __always_inline int deleted(long dfd, const char *name)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct filelife_event *e;
	struct walked_path walked;
	struct birth *birth;
	struct scratch *s;
	u64 key;

	if (!task_selected(task, pid))
		return 0;
	s = get_scratch();
	if (!s || bpf_probe_read_user_str(s->name, sizeof(s->name), name) <= 0)
		return 0;
	if (s->name[0] == '/') {
		key = hash_more(FNV_OFFSET, s->name);
	} else {
		struct dentry *dentry;
		struct vfsmount *mnt;

		if (dfd == AT_FDCWD) {
			dentry = BPF_CORE_READ(task, fs, pwd.dentry);
			mnt = BPF_CORE_READ(task, fs, pwd.mnt);
		} else {
			struct file *dir = file_of_fd(task, dfd);

			dentry = BPF_CORE_READ(dir, f_path.dentry);
			mnt = BPF_CORE_READ(dir, f_path.mnt);
		}
		walked = walk_path(&s->walk, dentry, mnt);
		key = hash_walked(&s->walk, walked.start);
		/* The root is "/" already: no second slash. */
		if (walked.start != PATH_LEN - 2)
			key = (key ^ (u8)'/') * FNV_PRIME;
		key = hash_more(key, s->name);
	}
	birth = bpf_map_lookup_elem(&births, &key);
	if (!birth)
		return 0;
	e = reserve_event(sizeof(*e));
	if (e) {
		fill_header(&e->header, task, pid);
		e->lifetime_ns = e->header.ts_ns - birth->ts_ns;
		e->creator_pid = birth->pid;
		e->path_start = birth->path_start;
		e->pad = 0;
		__builtin_memcpy(e->creator_comm, birth->comm, sizeof(e->creator_comm));
		__builtin_memcpy(e->path, birth->path, sizeof(e->path));
		submit_event(e);
	}
	bpf_map_delete_elem(&births, &key);
	return 0;
}

SEC("tp/syscalls/sys_exit_unlinkat")
int handle_unlinkat_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());

	if (ctx->ret != 0 || (BPF_CORE_READ(regs, dx) & AT_REMOVEDIR))
		return 0;
	return deleted(BPF_CORE_READ(regs, di), (const char *)BPF_CORE_READ(regs, si));
}

SEC("tp/syscalls/sys_exit_unlink")
int handle_unlink_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());

	if (ctx->ret != 0)
		return 0;
	return deleted(AT_FDCWD, (const char *)BPF_CORE_READ(regs, di));
}
