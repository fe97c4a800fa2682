// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The bind tracker (bindsnoop): every bind() call with the address asked for and the
 * result, on the exit of bind alone: the arguments are still in the task's saved
 * registers and the sockaddr in its memory when the call returns, so nothing is kept
 * between entry and exit (libbpf-tools' bindsnoop uses kprobes on inet_bind and
 * inet6_bind).
 */
#include "common.bpf.h"
#include <bpf/bpf_endian.h>

#include "bind.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct bind_event bind_event_layout = {};

#define AF_INET 2
#define AF_INET6 10

/* Only failed binds. Set before load. */
const volatile bool failed_only = false;

SEC("tp/syscalls/sys_exit_bind")
int handle_bind_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct sockaddr_in6 sa = {};
	struct bind_event *e;
	struct pt_regs *regs;
	struct sock *sk;
	long ret = ctx->ret;
	const void *uaddr;
	long fd;

	if (failed_only && ret >= 0)
		return 0;
	if (!task_selected(task, pid))
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	fd = BPF_CORE_READ(regs, di);
	uaddr = (const void *)BPF_CORE_READ(regs, si);
	/* sockaddr_in fits in sockaddr_in6's first bytes: one read serves both. */
	bpf_probe_read_user(&sa, sizeof(sa), uaddr);

	e = reserve_event(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->header, task, pid);
	e->ret = ret;
	e->fd = fd;
	e->family = sa.sin6_family;
	e->port = bpf_ntohs(sa.sin6_port);
	__builtin_memset(e->addr, 0, sizeof(e->addr));
	if (sa.sin6_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&sa;

		__builtin_memcpy(e->addr, &in->sin_addr, 4);
	} else if (sa.sin6_family == AF_INET6) {
		__builtin_memcpy(e->addr, &sa.sin6_addr, 16);
	}
	sk = sock_of_fd(task, fd);
	e->protocol = sk ? BPF_CORE_READ(sk, sk_protocol) : 0;
	e->type = sk ? BPF_CORE_READ(sk, sk_type) : 0;
	e->pad = 0;
	submit_event(e);
	return 0;
}
