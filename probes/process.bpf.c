// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The process tracker: exec and whole-process exit, on sched tracepoints; with
 * `failed_execs`, execve and execveat calls that failed, at their syscall exits.
 */
#include "common.bpf.h"
#include "process.h"
#include "full_path.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Gives user space the record layouts through the skeleton's generated types. */
struct process_event process_event_layout = {};
struct process_exec_details process_exec_details_layout = {};

/* The tracker's options: report only processes that lived at least this long; the
 * working directory of execs. */
const volatile u64 min_duration_ns = 0;
const volatile bool report_cwd = false;
/* Argument vector, parent comm and executable, terminal and login uid of execs. */
const volatile bool report_details = false;

/*
 * Whether the exec'd name is a link to an open file rather than the file's name: busybox
 * re-execs its applets through /proc/self/exe, fexecve goes through /dev/fd/N.
 */
static __always_inline bool names_a_link(const char *name)
{
	return (name[0] == '/' && name[1] == 'p' && name[2] == 'r' && name[3] == 'o' &&
		name[4] == 'c' && name[5] == '/') ||
	       (name[0] == '/' && name[1] == 'd' && name[2] == 'e' && name[3] == 'v' &&
		name[4] == '/' && name[5] == 'f' && name[6] == 'd' && name[7] == '/');
}

/*
 * Exec time per process, for exec-to-exit duration. Allocated per entry, not ahead (an LRU
 * map of 65,536 entries took 5 MiB and a millisecond of each start to create): every
 * whole-process exit deletes its entry, traced or not, so only an exit the kernel skipped
 * leaves one behind, and a full map makes durations count from the process's start.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, u32);
	__type(value, u64);
} exec_start SEC(".maps");

/* Who a record is about: the header and the effective ids. */
static __always_inline void fill_who(struct process_event *e, struct task_struct *task, u32 pid)
{
	const struct cred *cred = walkable(task)->cred;

	fill_header(&e->header, task, pid);
	e->uid = cred->euid.val;
	e->gid = cred->egid.val;
	e->error = 0;
	e->pad = 0;
}

/*
 * The exec's first MAX_ARGS arguments. The kernel has just laid the new image's stack out:
 * mm->start_stack points at argc, then the argv pointers, into the strings it copied
 * back to back (NUL-separated) from arg_start to arg_end; so each argument's whole length
 * is the distance to the next one.
 */
static __always_inline void fill_argv(struct process_exec_details *d, struct mm_struct *mm)
{
	unsigned long stack = mm->start_stack;
	/* One pointer more than kept: where the last kept argument ends. Past argv's NULL
	 * come envp and the auxiliary vector, so it is always there to read. */
	unsigned long argv[MAX_ARGS + 1];
	u64 argc = 0;
	u32 i;

	d->argc = 0;
	if (bpf_probe_read_user(&argc, sizeof(argc), (const void *)stack) ||
	    bpf_probe_read_user(argv, sizeof(argv), (const void *)(stack + sizeof(argc))))
		return;
	d->argc = argc;
	if (argc <= MAX_ARGS)
		argv[argc] = mm->arg_end;
	for (i = 0; i < MAX_ARGS && i < argc; i++) {
		d->arg_len[i] = argv[i + 1] - argv[i] - 1;
		if (bpf_probe_read_user_str(d->argv[i], MAX_ARG_LEN, (const void *)argv[i]) < 0)
			d->argv[i][0] = '\0';
	}
}

/* The exec's argument vector, parent comm and executable, controlling terminal and login
 * uid. */
static __always_inline void fill_details(struct process_exec_details *d,
					 struct task_struct *task)
{
	struct task_struct *t = walkable(task);
	struct tty_struct *tty = t->signal->tty;
	struct file *parent_exe = BPF_CORE_READ(task, real_parent, mm, exe_file);

	fill_argv(d, t->mm);
	BPF_CORE_READ_STR_INTO(&d->parent_comm, task, real_parent, comm);
	d->parent_exe[0] = '\0';
	if (parent_exe)
		full_path(BPF_CORE_READ(parent_exe, f_path.dentry),
			  BPF_CORE_READ(parent_exe, f_path.mnt), d->parent_exe);
	d->tty[0] = '\0';
	if (tty)
		bpf_probe_read_kernel_str(d->tty, sizeof(d->tty), tty->name);
	d->login_uid = (u32)-1;
	if (bpf_core_field_exists(task->loginuid))
		d->login_uid = t->loginuid.val;
}

SEC("tp/sched/sched_process_exec")
int handle_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct process_event *e;
	unsigned int fname_off;
	u64 ts;

	if (!task_selected(task, pid))
		return 0;

	ts = bpf_ktime_get_boot_ns();
	bpf_map_update_elem(&exec_start, &pid, &ts, BPF_ANY);

	/* With a minimum duration only exits are reported: an exec cannot know it yet. */
	if (min_duration_ns)
		return 0;

	e = reserve_event(report_details ? sizeof(struct process_exec_details) : sizeof(*e));
	if (!e)
		return 0;
	fill_who(e, task, pid);
	e->header.ts_ns = ts;
	e->kind = PROCESS_EXEC;
	e->exit_code = 0;
	e->duration_ns = 0;
	fname_off = ctx->__data_loc_filename & 0xFFFF;
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), (void *)ctx + fname_off);
	if (names_a_link(e->filename)) {
		/* The new image's file: the exec has replaced the mm by now. */
		struct file *exe = BPF_CORE_READ(task, mm, exe_file);

		full_path(BPF_CORE_READ(exe, f_path.dentry), BPF_CORE_READ(exe, f_path.mnt),
			  e->filename);
	}
	e->cwd[0] = '\0';
	if (report_cwd) {
		struct fs_struct *fs = BPF_CORE_READ(task, fs);

		full_path(BPF_CORE_READ(fs, pwd.dentry), BPF_CORE_READ(fs, pwd.mnt), e->cwd);
	}
	if (report_details)
		fill_details((struct process_exec_details *)e, task);
	submit_event(e);
	return 0;
}

static __always_inline bool whole_process_dead(struct trace_event_raw_sched_process_exit *ctx,
					       struct task_struct *task)
{
	/* Kernels since 6.16 say so in the tracepoint; older ones: no live thread left. */
	if (bpf_core_field_exists(ctx->group_dead))
		return BPF_CORE_READ(ctx, group_dead);
	return BPF_CORE_READ(task, signal, live.counter) == 0;
}

SEC("tp/sched/sched_process_exit")
int handle_exit(struct trace_event_raw_sched_process_exit *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u64 id = bpf_get_current_pid_tgid();
	u32 pid = id >> 32;
	struct process_event *e;
	u64 now, start, *exec_ts;

	if (!whole_process_dead(ctx, task))
		return 0;
	/* Before the filters: an exec traced under one comm may exit under another. */
	exec_ts = bpf_map_lookup_elem(&exec_start, &pid);
	start = exec_ts ? *exec_ts : 0;
	if (exec_ts)
		bpf_map_delete_elem(&exec_start, &pid);
	if (!task_selected(task, pid))
		return 0;

	now = bpf_ktime_get_boot_ns();
	/* Exec'd before tracing began: measure from the process's start instead. */
	if (!start)
		start = BPF_CORE_READ(task, group_leader, start_boottime);
	if (min_duration_ns && now - start < min_duration_ns)
		return 0;

	e = reserve_event(sizeof(*e));
	if (!e)
		return 0;
	fill_who(e, task, pid);
	e->header.ts_ns = now;
	e->kind = PROCESS_EXIT;
	e->exit_code = BPF_CORE_READ(task, exit_code);
	e->duration_ns = now - start;
	e->filename[0] = '\0';
	e->cwd[0] = '\0';
	submit_event(e);
	return 0;
}

/*
 * A failed execve or execveat: the caller goes on as it was, so its path argument is
 * still in its memory, and the register holding it still in its saved registers.
 */
static __always_inline int exec_failed(long ret, bool at)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct pt_regs *regs;
	struct process_event *e;
	const char *path;

	if (ret >= 0 || !task_selected(task, pid))
		return 0;
	e = reserve_event(sizeof(*e));
	if (!e)
		return 0;
	fill_who(e, task, pid);
	e->kind = PROCESS_EXEC_FAILED;
	e->exit_code = 0;
	e->duration_ns = 0;
	e->error = -ret;
	e->cwd[0] = '\0';
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	path = (const char *)(at ? BPF_CORE_READ(regs, si) : BPF_CORE_READ(regs, di));
	if (bpf_probe_read_user_str(e->filename, sizeof(e->filename), path) < 0)
		e->filename[0] = '\0';
	submit_event(e);
	return 0;
}

SEC("tp/syscalls/sys_exit_execve")
int handle_execve_exit(struct trace_event_raw_sys_exit *ctx)
{
	return exec_failed(ctx->ret, false);
}

SEC("tp/syscalls/sys_exit_execveat")
int handle_execveat_exit(struct trace_event_raw_sys_exit *ctx)
{
	return exec_failed(ctx->ret, true);
}
