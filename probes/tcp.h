/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef EUNOMIA_TCP_H
#define EUNOMIA_TCP_H

#include "common.h"

enum tcp_event_kind {
	TCP_EVENT_CONNECT = 1,
	TCP_EVENT_ACCEPT = 2,
	TCP_EVENT_CLOSE = 3,
};

/* The header is the task that opened the connection, whatever task the event fired in. */
struct tcp_event {
	struct event_header header;
	unsigned int kind; /* enum tcp_event_kind */
	unsigned int srtt_us; /* smoothed RTT at the time of the event */
	unsigned short family; /* AF_INET or AF_INET6 */
	unsigned short sport; /* local port, host byte order */
	unsigned short dport; /* remote port, host byte order */
	unsigned char saddr[16]; /* IPv4 addresses use the first 4 bytes */
	unsigned char daddr[16];
	unsigned long long latency_ns; /* connect: SYN sent to established */
	unsigned long long lifetime_ns; /* close: open to close */
	unsigned long long bytes_sent; /* close: payload bytes sent, retransmissions not counted */
	unsigned long long bytes_received; /* close: payload bytes received */
	unsigned int outbound; /* 1: this host connected; 0: it accepted */
	/* close of a connect that never completed: the socket's error (ECONNREFUSED,
	 * ETIMEDOUT ...), or 0 */
	int error;
};

#endif
