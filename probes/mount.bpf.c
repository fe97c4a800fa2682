// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The mount tracker (mountsnoop): mount, umount2 and the new mount API (fsopen,
 * fsconfig, fsmount, move_mount), each at its exit, with its arguments read from the
 * task's saved registers and memory, which the call leaves as they were.
 */
#include "common.bpf.h"
#include "mount.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct mount_event mount_event_layout = {};

/* The call's arguments as the x86_64 syscall ABI passes them. */
struct args {
	u64 a[5];
};

static __always_inline struct mount_event *start(struct task_struct *task, u32 pid, u32 call,
						 long ret, struct args *args)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	struct mount_event *e;

	args->a[0] = BPF_CORE_READ(regs, di);
	args->a[1] = BPF_CORE_READ(regs, si);
	args->a[2] = BPF_CORE_READ(regs, dx);
	args->a[3] = BPF_CORE_READ(regs, r10);
	args->a[4] = BPF_CORE_READ(regs, r8);
	e = reserve_event(sizeof(*e));
	if (!e)
		return NULL;
	fill_header(&e->header, task, pid);
	e->ret = ret;
	e->call = call;
	e->flags = 0;
	e->fd = -1;
	e->fstype[0] = '\0';
	e->source[0] = '\0';
	e->target[0] = '\0';
	e->data[0] = '\0';
	return e;
}

/* A user string into `dst`, or empty when there is none or it cannot be read. */
static __always_inline void user_str(char *dst, u32 size, u64 src)
{
	if (!src || bpf_probe_read_user_str(dst, size, (const void *)src) < 0)
		dst[0] = '\0';
}

static __always_inline int exit_of(u32 call, long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct mount_event *e;
	struct args args;

	if (!task_selected(task, pid))
		return 0;
	e = start(task, pid, call, ret, &args);
	if (!e)
		return 0;
	switch (call) {
	case MOUNT_MOUNT: /* source, target, fstype, flags, data */
		user_str(e->source, sizeof(e->source), args.a[0]);
		user_str(e->target, sizeof(e->target), args.a[1]);
		user_str(e->fstype, sizeof(e->fstype), args.a[2]);
		e->flags = args.a[3];
		user_str(e->data, sizeof(e->data), args.a[4]);
		break;
	case MOUNT_UMOUNT: /* target, flags */
		user_str(e->target, sizeof(e->target), args.a[0]);
		e->flags = args.a[1];
		break;
	case MOUNT_FSOPEN: /* fstype, flags */
		user_str(e->fstype, sizeof(e->fstype), args.a[0]);
		e->flags = args.a[1];
		break;
	case MOUNT_FSCONFIG: /* fd, cmd, key, value */
		e->fd = args.a[0];
		e->flags = args.a[1];
		user_str(e->source, sizeof(e->source), args.a[2]);
		user_str(e->data, sizeof(e->data), args.a[3]);
		break;
	case MOUNT_FSMOUNT: /* fd, flags, attribute flags */
		e->fd = args.a[0];
		e->flags = args.a[1];
		break;
	case MOUNT_MOVE_MOUNT: /* from dfd, from path, to dfd, to path, flags */
		e->fd = args.a[0];
		user_str(e->source, sizeof(e->source), args.a[1]);
		user_str(e->target, sizeof(e->target), args.a[3]);
		e->flags = args.a[4];
		break;
	}
	submit_event(e);
	return 0;
}

SEC("tp/syscalls/sys_exit_mount")
int handle_mount_exit(struct trace_event_raw_sys_exit *ctx)
{
	return exit_of(MOUNT_MOUNT, ctx->ret);
}

SEC("tp/syscalls/sys_exit_umount")
int handle_umount_exit(struct trace_event_raw_sys_exit *ctx)
{
	return exit_of(MOUNT_UMOUNT, ctx->ret);
}

SEC("tp/syscalls/sys_exit_fsopen")
int handle_fsopen_exit(struct trace_event_raw_sys_exit *ctx)
{
	return exit_of(MOUNT_FSOPEN, ctx->ret);
}

SEC("tp/syscalls/sys_exit_fsconfig")
int handle_fsconfig_exit(struct trace_event_raw_sys_exit *ctx)
{
	return exit_of(MOUNT_FSCONFIG, ctx->ret);
}

SEC("tp/syscalls/sys_exit_fsmount")
int handle_fsmount_exit(struct trace_event_raw_sys_exit *ctx)
{
	return exit_of(MOUNT_FSMOUNT, ctx->ret);
}

SEC("tp/syscalls/sys_exit_move_mount")
int handle_move_mount_exit(struct trace_event_raw_sys_exit *ctx)
{
	return exit_of(MOUNT_MOVE_MOUNT, ctx->ret);
}
