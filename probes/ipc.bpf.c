// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The ipc tracker: SysV message queues, semaphores and shared memory and POSIX message
 * queues, on the syscalls tracepoints. Entry keeps the arguments per thread, exit
 * reports them with the result.
 */
#include "common.bpf.h"
#include "ipc.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Gives user space the event layout through the skeleton's generated types. */
struct ipc_event ipc_event_layout = {};

struct ipc_call {
	u32 op; /* 0: no call in flight */
	u64 args[IPC_ARGS];
};

/* Task storage: freed with the thread, so a call that never returns cannot leak or evict. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct ipc_call);
} calls SEC(".maps");

static __always_inline int ipc_enter(struct trace_event_raw_sys_enter *ctx, u32 op)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct ipc_call *call;

	if (!task_selected(task, bpf_get_current_pid_tgid() >> 32))
		return 0;
	call = bpf_task_storage_get(&calls, task, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!call) {
		/* No memory for the call: its event is lost, so count it as one. */
		__sync_fetch_and_add(&ringbuf_dropped, 1);
		return 0;
	}
	call->op = op;
	/* A copy, as the verifier allows no ctx access at a variable offset. */
	bpf_probe_read_kernel(call->args, sizeof(call->args), ctx->args);
	return 0;
}

static __always_inline bool has_name(u32 op)
{
	return op == IPC_OP_MQ_OPEN || op == IPC_OP_MQ_UNLINK;
}

static __always_inline int ipc_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	const struct cred *cred;
	struct ipc_call *call;
	struct ipc_event *e;

	/* Filtered at entry: only selected tasks have a call in flight. */
	call = bpf_task_storage_get(&calls, task, NULL, 0);
	if (!call || !call->op)
		return 0;

	e = reserve_event(sizeof(*e));
	if (!e) {
		call->op = 0;
		return 0;
	}
	fill_header(&e->header, task, bpf_get_current_pid_tgid() >> 32);
	e->op = call->op;
	cred = BPF_CORE_READ(task, cred);
	e->uid = BPF_CORE_READ(cred, euid.val);
	e->gid = BPF_CORE_READ(cred, egid.val);
	e->pad = 0;
	e->ret = ctx->ret;
	for (int i = 0; i < IPC_ARGS; i++)
		e->args[i] = call->args[i];
	/* The name is read on return: the caller's buffer is still there, and faulted in. */
	if (!has_name(call->op) ||
	    bpf_probe_read_user_str(e->name, sizeof(e->name), (void *)call->args[0]) < 0)
		e->name[0] = '\0';
	call->op = 0;
	submit_event(e);
	return 0;
}

/* The entry and exit programs of one syscall. */
#define IPC_PROBES(syscall, op)                                                   \
	SEC("tp/syscalls/sys_enter_" #syscall)                                    \
	int enter_##syscall(struct trace_event_raw_sys_enter *ctx)                \
	{                                                                         \
		return ipc_enter(ctx, op);                                        \
	}                                                                         \
	SEC("tp/syscalls/sys_exit_" #syscall)                                     \
	int exit_##syscall(struct trace_event_raw_sys_exit *ctx)                  \
	{                                                                         \
		return ipc_exit(ctx);                                             \
	}

IPC_PROBES(msgget, IPC_OP_MSGGET)
IPC_PROBES(msgsnd, IPC_OP_MSGSND)
IPC_PROBES(msgrcv, IPC_OP_MSGRCV)
IPC_PROBES(msgctl, IPC_OP_MSGCTL)
IPC_PROBES(semget, IPC_OP_SEMGET)
IPC_PROBES(semop, IPC_OP_SEMOP)
IPC_PROBES(semtimedop, IPC_OP_SEMTIMEDOP)
IPC_PROBES(semctl, IPC_OP_SEMCTL)
IPC_PROBES(shmget, IPC_OP_SHMGET)
IPC_PROBES(shmat, IPC_OP_SHMAT)
IPC_PROBES(shmdt, IPC_OP_SHMDT)
IPC_PROBES(shmctl, IPC_OP_SHMCTL)
IPC_PROBES(mq_open, IPC_OP_MQ_OPEN)
IPC_PROBES(mq_timedsend, IPC_OP_MQ_TIMEDSEND)
IPC_PROBES(mq_timedreceive, IPC_OP_MQ_TIMEDRECEIVE)
IPC_PROBES(mq_unlink, IPC_OP_MQ_UNLINK)
