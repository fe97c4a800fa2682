/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef EUNOMIA_BIND_H
#define EUNOMIA_BIND_H

#include "common.h"

/* One bind() call, at its exit. */
struct bind_event {
	struct event_header header;
	long long ret;
	int fd;
	unsigned short family; /* AF_INET, AF_INET6, ... as the caller's sockaddr says */
	unsigned short port; /* host order */
	unsigned char addr[16]; /* IPv4 in the first 4 bytes */
	unsigned short protocol; /* the socket's: IPPROTO_TCP, IPPROTO_UDP, ... */
	unsigned short type; /* SOCK_STREAM, SOCK_DGRAM, ... */
	unsigned int pad;
};

#endif
