/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef EUNOMIA_TCPRETRANS_H
#define EUNOMIA_TCPRETRANS_H

#include "common.h"

/* One TCP retransmission, or one packet a TCP socket dropped (reason is then set). */
struct tcpretrans_event {
	struct event_header header; /* whoever ran when it happened (often softirq) */
	unsigned char saddr[16]; /* IPv4 in the first 4 bytes */
	unsigned char daddr[16];
	unsigned short family;
	unsigned short sport;
	unsigned short dport;
	unsigned short segs; /* segments the retransmitted skb carries */
	int state; /* TCP_ESTABLISHED ... */
	int err; /* 0, or why it could not be sent (kernels that say) */
	unsigned int netns; /* the socket's network namespace (inode number) */
	unsigned int reason; /* a drop's enum skb_drop_reason; 0 for a retransmission */
};

#endif
