// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The tcpretrans tracker: every TCP retransmission, on `tcp:tcp_retransmit_skb`, with the
 * connection, its state, the segments retransmitted and the socket's network namespace;
 * with the `drops` option, also every packet the kernel drops on a TCP socket's behalf,
 * with its reason, on the BTF-typed `skb:kfree_skb`. Both run in whatever context they
 * happen (a timer, a softirq), so the pid, comm and cgroup filters do not apply; `netns`
 * selects the namespace.
 */
#include "common.bpf.h"
#include <bpf/bpf_endian.h>
#include "tcpretrans.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct tcpretrans_event tcpretrans_event_layout = {};

/* Only sockets of this network namespace (inode number); 0 for all. Set before load. */
const volatile u32 target_netns = 0;

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
/* enum skb_drop_reason: not a drop (freed normally). */
#define SKB_CONSUMED 1

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
	e->reason = 0;
	if (args.family == AF_INET6) {
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

/*
 * A packet dropped with a reason, on a TCP socket's behalf: the socket that owns it, or on
 * the receive path the socket it was for (`rx_sk`, which kernels since 6.12 pass). Drops
 * before a socket is known (no listener, a bad checksum) are not a socket's: left out.
 */
static __always_inline int report_drop(struct sk_buff *skb, enum skb_drop_reason reason,
				       struct sock *rx_sk)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct tcpretrans_event *e;
	struct sock *sk = BPF_CORE_READ(skb, sk);
	u16 family;
	u32 netns;

	if (reason <= SKB_CONSUMED)
		return 0;
	if (!sk)
		sk = rx_sk;
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (target_netns && netns != target_netns)
		return 0;
	e = reserve_event(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->header, task, bpf_get_current_pid_tgid() >> 32);
	e->family = family;
	e->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	e->segs = 1;
	e->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	e->err = 0;
	e->netns = netns;
	e->reason = reason;
	if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		__builtin_memset(e->saddr, 0, 16);
		__builtin_memset(e->daddr, 0, 16);
		BPF_CORE_READ_INTO((u32 *)e->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((u32 *)e->daddr, sk, __sk_common.skc_daddr);
	}
	submit_event(e);
	return 0;
}

/* Kernels before 6.12: the tracepoint passes no socket. User space loads one of the two. */
SEC("tp_btf/kfree_skb")
int BPF_PROG(handle_drop, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	return report_drop(skb, reason, NULL);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(handle_drop_rx_sk, struct sk_buff *skb, void *location,
	     enum skb_drop_reason reason, struct sock *rx_sk)
{
	return report_drop(skb, reason, rx_sk);
}
