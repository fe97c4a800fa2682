/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef EUNOMIA_BIOLATENCY_H
#define EUNOMIA_BIOLATENCY_H

#include "common.h"

#define DISK_NAME_LEN 32

/* One block I/O request, at its completion. */
struct biolatency_event {
	struct event_header header; /* the task that issued it */
	unsigned long long latency_ns; /* issue to completion */
	unsigned long long sector;
	unsigned int bytes;
	unsigned int dev; /* major << 20 | minor, as the kernel's dev_t */
	unsigned int op; /* REQ_OP_*: 0 read, 1 write, 2 flush, 3 discard ... */
	int error; /* blk_status_t: 0 for success */
	char disk[DISK_NAME_LEN];
};

/* Aggregate mode: one interval's requests of one process to one device, of one
 * operation and status, in one power-of-two latency bucket. */
struct biolatency_key {
	unsigned int pid;
	unsigned int dev;
	unsigned int op;
	int error;
	unsigned int bucket;
	unsigned int pad;
};

struct biolatency_row {
	struct event_header header; /* the task that issued the first of them */
	char disk[DISK_NAME_LEN];
	unsigned long long requests;
	unsigned long long latency_ns; /* summed */
	unsigned long long bytes; /* summed */
};

#endif
