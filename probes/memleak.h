/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef EUNOMIA_MEMLEAK_H
#define EUNOMIA_MEMLEAK_H

#include "stacks.h"

/* What memleak counts per allocating stack in an interval. */
struct memleak_row {
	struct event_header header;
	unsigned long long allocations;
	unsigned long long bytes; /* allocated */
	unsigned long long frees; /* of blocks this stack allocated */
	unsigned long long freed_bytes;
};

#endif
