// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The tcp tracker: active opens (connect), passive opens (accept) and closes of TCP
 * sockets, on sock:inet_sock_set_state and the accept syscalls' exits.
 */
#include "common.bpf.h"
#include <bpf/bpf_endian.h>
#include "tcp.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10

/* Gives user space the event layout through the skeleton's generated types. */
struct tcp_event tcp_event_layout = {};

/*
 * What a tracked socket remembers: state changes after the open run in softirq or in
 * any task's context, so the opener's identity is kept here, and the filters are applied
 * to it once, when it is known.
 */
struct sock_owner {
	struct event_header header; /* valid once `known` */
	u64 open_ns;
	bool known;
	bool outbound; /* opened by connect(), not accepted */
	bool established; /* an outbound one got there */
};

/*
 * Keyed by the `struct sock` address. A plain hash rather than an LRU: an eviction would
 * silently lose a close, while a failed insert is counted. Every TCP socket passes
 * through TCP_CLOSE before it is freed, which removes its entry, and the map goes away
 * with the tracker.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, u64);
	__type(value, struct sock_owner);
} socks SEC(".maps");

/* A socket that cannot be tracked loses its events: counted with the ring buffer drops. */
static __always_inline void track(struct sock *sk, const struct sock_owner *owner)
{
	u64 key = (u64)sk;

	if (bpf_map_update_elem(&socks, &key, owner, BPF_ANY))
		__sync_fetch_and_add(&ringbuf_dropped, 1);
}

static __always_inline struct sock_owner *owner_of(struct sock *sk)
{
	u64 key = (u64)sk;

	return bpf_map_lookup_elem(&socks, &key);
}

static __always_inline void untrack(struct sock *sk)
{
	u64 key = (u64)sk;

	bpf_map_delete_elem(&socks, &key);
}

/* Reserves an event with the socket's addresses, ports and RTT; the caller submits it. */
static __always_inline struct tcp_event *new_event(struct sock *sk, const struct sock_owner *owner,
						  u32 kind, u64 now)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	struct tcp_event *e;

	e = reserve_event(sizeof(*e));
	if (!e)
		return NULL;
	e->header = owner->header;
	e->header.ts_ns = now;
	e->kind = kind;
	e->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	/* Not skc_num: closing releases the local port before the state change is traced. */
	e->sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	__builtin_memset(e->saddr, 0, sizeof(e->saddr));
	__builtin_memset(e->daddr, 0, sizeof(e->daddr));
	if (e->family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		BPF_CORE_READ_INTO((u32 *)e->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((u32 *)e->daddr, sk, __sk_common.skc_daddr);
	}
	e->latency_ns = 0;
	e->lifetime_ns = 0;
	e->bytes_sent = 0;
	e->bytes_received = 0;
	e->outbound = owner->outbound;
	e->error = 0;
	return e;
}

/* CLOSE -> SYN_SENT runs in connect(): the current task is the one connecting. */
static __always_inline void connecting(struct sock *sk)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct sock_owner owner = {};

	if (!task_selected(task, pid))
		return;
	fill_header(&owner.header, task, pid);
	owner.open_ns = bpf_ktime_get_boot_ns();
	owner.known = true;
	owner.outbound = true;
	track(sk, &owner);
}

static __always_inline void connected(struct sock *sk)
{
	struct sock_owner *owner = owner_of(sk);
	struct tcp_event *e;
	u64 now;

	if (!owner)
		return;
	owner->established = true;
	now = bpf_ktime_get_boot_ns();
	e = new_event(sk, owner, TCP_EVENT_CONNECT, now);
	if (!e)
		return;
	e->latency_ns = now - owner->open_ns;
	submit_event(e);
}

/* LISTEN -> SYN_RECV creates the passive socket in softirq: its owner is whoever accepts it. */
static __always_inline void passive_open(struct sock *sk)
{
	struct sock_owner owner = {};

	owner.open_ns = bpf_ktime_get_boot_ns();
	track(sk, &owner);
}

/*
 * tcp_sock's bytes_acked and bytes_received count sequence space, where SYN and FIN take
 * one each; bytes_sent counts payload only, but every transmission of it.
 */
static __always_inline u64 payload_sent(struct tcp_sock *tp)
{
	return BPF_CORE_READ(tp, bytes_sent) - BPF_CORE_READ(tp, bytes_retrans);
}

/* SOCK_DONE is set when the peer's FIN arrives, whose sequence number bytes_received counts. */
static __always_inline u64 payload_received(struct sock *sk)
{
	u64 flags = BPF_CORE_READ(sk, __sk_common.skc_flags);
	u64 fin = (flags >> bpf_core_enum_value(enum sock_flags, SOCK_DONE)) & 1;

	return BPF_CORE_READ((struct tcp_sock *)sk, bytes_received) - fin;
}

static __always_inline void closed(struct sock *sk)
{
	struct sock_owner *owner = owner_of(sk);
	struct tcp_event *e;
	u64 now;

	if (!owner)
		return;
	if (owner->known) {
		now = bpf_ktime_get_boot_ns();
		e = new_event(sk, owner, TCP_EVENT_CLOSE, now);
		if (e) {
			e->lifetime_ns = now - owner->open_ns;
			e->bytes_sent = payload_sent((struct tcp_sock *)sk);
			e->bytes_received = payload_received(sk);
			/* A reset or timeout sets sk_err before the state goes to CLOSE. */
			if (owner->outbound && !owner->established)
				e->error = BPF_CORE_READ(sk, sk_err);
			submit_event(e);
		}
	}
	untrack(sk);
}

SEC("tp/sock/inet_sock_set_state")
int handle_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct sock *sk = (struct sock *)ctx->skaddr;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	switch (ctx->newstate) {
	case TCP_SYN_SENT:
		connecting(sk);
		break;
	case TCP_SYN_RECV:
		if (ctx->oldstate == TCP_LISTEN)
			passive_open(sk);
		break;
	case TCP_ESTABLISHED:
		if (ctx->oldstate == TCP_SYN_SENT)
			connected(sk);
		break;
	case TCP_CLOSE:
		closed(sk);
		break;
	}
	return 0;
}

/*
 * accept() returning is the first time the passive socket's owner is known. Only a
 * socket tracked since its passive open is looked at, which also rules out fds that are
 * not TCP sockets.
 */
static __always_inline int accepted(long fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct sock_owner *owner;
	struct tcp_event *e;
	struct sock *sk;

	sk = sock_of_fd(task, fd);
	if (!sk)
		return 0;
	owner = owner_of(sk);
	if (!owner || owner->known)
		return 0;
	if (!task_selected(task, pid)) {
		untrack(sk);
		return 0;
	}
	fill_header(&owner->header, task, pid);
	owner->known = true;
	e = new_event(sk, owner, TCP_EVENT_ACCEPT, owner->header.ts_ns);
	if (e)
		submit_event(e);
	return 0;
}

SEC("tp/syscalls/sys_exit_accept4")
int handle_accept4_exit(struct trace_event_raw_sys_exit *ctx)
{
	return accepted(ctx->ret);
}

SEC("tp/syscalls/sys_exit_accept")
int handle_accept_exit(struct trace_event_raw_sys_exit *ctx)
{
	return accepted(ctx->ret);
}
