/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef EUNOMIA_SIGNAL_H
#define EUNOMIA_SIGNAL_H

#include "common.h"

enum signal_event_kind {
	SIGNAL_GENERATE = 1,
	SIGNAL_DELIVER = 2,
};

/*
 * A signal generated (sent, or raised by the kernel), in the sender's context; or, with
 * deliveries, one the receiver takes, in its context.
 */
struct signal_event {
	struct event_header header; /* the sender; for a delivery, the receiver */
	unsigned int kind; /* enum signal_event_kind */
	int sig;
	int code; /* si_code: SI_USER for kill, SI_TKILL for tkill/tgkill, SI_KERNEL ... */
	int target_pid; /* the receiving thread group (or thread, with group 0) */
	int group; /* 1 for the whole process, 0 for one thread */
	int result; /* 0 delivered, 1 ignored, 2 already pending, 3 overflow, 4 info lost */
	unsigned long long handler; /* delivery: 0 the default action, 1 ignored, else a handler */
	char target_comm[TASK_COMM_LEN];
};

#endif
