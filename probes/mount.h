/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef EUNOMIA_MOUNT_H
#define EUNOMIA_MOUNT_H

#include "common.h"

/* Sized so that a mount event is no bigger than the largest event already (an exec's
 * two paths): every event is copied at that size in user space. */
#define MOUNT_PATH_LEN 256
#define MOUNT_SOURCE_LEN 128
#define MOUNT_DATA_LEN 64
#define MOUNT_FSTYPE_LEN 32

enum mount_call {
	MOUNT_MOUNT = 1,
	MOUNT_UMOUNT = 2,
	MOUNT_FSOPEN = 3,
	MOUNT_FSCONFIG = 4,
	MOUNT_FSMOUNT = 5,
	MOUNT_MOVE_MOUNT = 6,
};

/* One call of the mount API, at its exit; which strings it fills depends on the call. */
struct mount_event {
	struct event_header header;
	long long ret;
	unsigned long long flags;
	unsigned int call; /* enum mount_call */
	int fd; /* fsconfig's and fsmount's filesystem context */
	char fstype[MOUNT_FSTYPE_LEN];
	char source[MOUNT_SOURCE_LEN];
	char target[MOUNT_PATH_LEN];
	char data[MOUNT_DATA_LEN];
};

#endif
