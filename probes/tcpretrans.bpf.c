// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The tcpretrans tracker: every TCP retransmission, on the BTF-typed
 * `tcp:tcp_retransmit_skb`, with the connection, its state, the segments retransmitted and
 * the socket's network namespace; with the `drops` option, also every packet the kernel
 * drops on a TCP socket's behalf, with its reason, on the BTF-typed `skb:kfree_skb`. Both run in whatever context they
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

/*
 * An event about `sk`, with its connection filled in; NULL when the socket is not one to
 * report (another namespace, not IP) or the ring buffer is full.
 */
static __always_inline struct tcpretrans_event *connection_event(const struct sock *sk)
{
	struct tcpretrans_event *e;
	u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	u32 netns;

	if (family != AF_INET && family != AF_INET6)
		return NULL;
	netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (target_netns && netns != target_netns)
		return NULL;
	e = reserve_event(sizeof(*e));
	if (!e)
		return NULL;
	fill_header(&e->header, bpf_get_current_task_btf(), bpf_get_current_pid_tgid() >> 32);
	e->family = family;
	e->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	e->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	e->netns = netns;
	e->err = 0;
	e->reason = 0;
	e->segs = 1;
	if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		__builtin_memset(e->saddr, 0, 16);
		__builtin_memset(e->daddr, 0, 16);
		BPF_CORE_READ_INTO((u32 *)e->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((u32 *)e->daddr, sk, __sk_common.skc_daddr);
	}
	return e;
}

/*
 * BTF-typed tracepoints (tp_btf), not classic ones: the kernel skips a classic tracepoint's
 * program while any other tracing program runs on that CPU (a retransmission in a softirq
 * that interrupts one is lost); a tp_btf program is skipped only when it interrupts itself.
 */
static __always_inline int report_retransmit(const struct sock *sk, const struct sk_buff *skb,
					     int err)
{
	struct tcpretrans_event *e = connection_event(sk);

	if (!e)
		return 0;
	/* tcp_skb_pcount(): what the kernel adds to RetransSegs for this skb. */
	e->segs = BPF_CORE_READ((struct tcp_skb_cb *)&skb->cb, tcp_gso_segs) ?: 1;
	e->err = err;
	submit_event(e);
	return 0;
}

/* Kernels before 6.16 trace sent retransmissions only, without a result. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(handle_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	return report_retransmit(sk, skb, 0);
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(handle_retransmit_err, const struct sock *sk, const struct sk_buff *skb, int err)
{
	return report_retransmit(sk, skb, err);
}

/*
 * A packet dropped with a reason, on a TCP socket's behalf: the socket that owns it, or on
 * the receive path the socket it was for (`rx_sk`, which kernels since 6.12 pass). Drops
 * before a socket is known (no listener, a bad checksum) are not a socket's: left out.
 */
static __always_inline int report_drop(struct sk_buff *skb, enum skb_drop_reason reason,
				       struct sock *rx_sk)
{
	struct tcpretrans_event *e;
	struct sock *sk = BPF_CORE_READ(skb, sk);

	if (reason <= SKB_CONSUMED)
		return 0;
	if (!sk)
		sk = rx_sk;
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	e = connection_event(sk);
	if (!e)
		return 0;
	e->reason = reason;
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
