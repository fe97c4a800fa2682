/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef EUNOMIA_CAPABLE_H
#define EUNOMIA_CAPABLE_H

#include "common.h"

/* One capability check, in the checking task's context. */
struct capable_event {
	struct event_header header;
	int cap;
	int ret; /* 0 granted, -EPERM denied */
	unsigned int target_user_ns; /* inode number of the user namespace checked against */
	unsigned int pad;
};

#endif
