/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef EUNOMIA_IPC_H
#define EUNOMIA_IPC_H

#include "common.h"

#define IPC_NAME_LEN 256
/* The most arguments any traced call has that the tracker reports (msgrcv's msgflg is the 5th). */
#define IPC_ARGS 5

/* One per traced syscall; server/trackers/ipc/ maps each by the generated constants. */
enum ipc_op {
	IPC_OP_MSGGET = 1,
	IPC_OP_MSGSND,
	IPC_OP_MSGRCV,
	IPC_OP_MSGCTL,
	IPC_OP_SEMGET,
	IPC_OP_SEMOP,
	IPC_OP_SEMTIMEDOP,
	IPC_OP_SEMCTL,
	IPC_OP_SHMGET,
	IPC_OP_SHMAT,
	IPC_OP_SHMDT,
	IPC_OP_SHMCTL,
	IPC_OP_MQ_OPEN,
	IPC_OP_MQ_TIMEDSEND,
	IPC_OP_MQ_TIMEDRECEIVE,
	IPC_OP_MQ_UNLINK,
	IPC_OP_END, /* not an op: one past the last, so user space can check it maps them all */
};

/* One finished call: its raw arguments, which user space maps to fields per op. */
struct ipc_event {
	struct event_header header;
	enum ipc_op op;
	unsigned int uid; /* effective */
	unsigned int gid; /* effective */
	unsigned int pad;
	long long ret;
	unsigned long long args[IPC_ARGS];
	char name[IPC_NAME_LEN]; /* mq_open and mq_unlink: the queue name */
};

#endif
