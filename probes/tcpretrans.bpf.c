// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The tcpretrans tracker: every TCP retransmission, on `tcp:tcp_retransmit_skb`, with the
 * connection, its state, the segments retransmitted and the socket's network namespace.
 * It runs in whatever context retransmits (a timer, a softirq), so the pid, comm and
 * cgroup filters do not apply; `netns` selects the namespace.
 */
#include "common.bpf.h"
#include "tcpretrans.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct tcpretrans_event tcpretrans_event_layout = {};

/* Only sockets of this network namespace (inode number); 0 for all. Set before load. */
const volatile u32 target_netns = 0;

SEC("tp/tcp/tcp_retransmit_skb")
int handle_retransmit(struct trace_event_raw_tcp_retransmit_skb *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct trace_event_raw_tcp_retransmit_skb args;
	struct skb_shared_info *shinfo;
	struct tcpretrans_event *e;
	const struct sock *sk;
	const struct sk_buff *skb;
	u32 netns;
	u16 segs;

	/* A copy: CO-RE offsets into the context make loads the verifier refuses there. */
	bpf_probe_read_kernel(&args, sizeof(args), ctx);
	sk = args.skaddr;
	skb = args.skbaddr;
	netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (target_netns && netns != target_netns)
		return 0;
	/* skb_shinfo(): the shared info sits at head + end. */
	shinfo = (struct skb_shared_info *)(BPF_CORE_READ(skb, head) + BPF_CORE_READ(skb, end));
	segs = BPF_CORE_READ(shinfo, gso_segs);
	e = reserve_event(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->header, task, bpf_get_current_pid_tgid() >> 32);
	e->family = args.family;
	e->sport = args.sport;
	e->dport = args.dport;
	e->segs = segs ? segs : 1;
	e->state = args.state;
	/* Kernels since 6.16 say whether it was sent; before, only sent ones are traced. */
	e->err = bpf_core_field_exists(args.err) ? args.err : 0;
	e->netns = netns;
	e->pad = 0;
	if (args.family == 10) {
		__builtin_memcpy(e->saddr, args.saddr_v6, 16);
		__builtin_memcpy(e->daddr, args.daddr_v6, 16);
	} else {
		__builtin_memset(e->saddr, 0, 16);
		__builtin_memset(e->daddr, 0, 16);
		__builtin_memcpy(e->saddr, args.saddr, 4);
		__builtin_memcpy(e->daddr, args.daddr, 4);
	}
	submit_event(e);
	return 0;
}
