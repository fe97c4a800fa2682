/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef EUNOMIA_PROCESS_H
#define EUNOMIA_PROCESS_H

#include "common.h"

#define MAX_FILENAME_LEN 256
/* Bytes of an exec's argument vector kept (NUL-separated, as in the process's memory). */
#define MAX_ARGS_LEN 256

enum process_event_kind {
	PROCESS_EXEC = 1,
	PROCESS_EXIT = 2,
	PROCESS_EXEC_FAILED = 3,
};

struct process_event {
	struct event_header header;
	unsigned int kind; /* enum process_event_kind */
	unsigned int exit_code; /* raw wait status: (status << 8) | signal */
	unsigned long long duration_ns;
	unsigned int uid; /* effective user and group ids */
	unsigned int gid;
	int error; /* exec_failed: the errno execve returned */
	unsigned int pad;
	/*
	 * exec: the file executed, as the caller named it, or its full path when the name
	 * was a link to an open file (/proc/self/exe, /dev/fd/N); exec_failed: the path as
	 * the caller passed it
	 */
	char filename[MAX_FILENAME_LEN];
	/* exec, with the `cwd` option: the working directory */
	char cwd[MAX_FILENAME_LEN];
	/* exec, with the `exec_details` option: the argument vector's first bytes, its whole
	 * size (more than MAX_ARGS_LEN: cut), the parent's comm, the controlling terminal's
	 * name (empty: none) and the login uid (audit; -1 unset) */
	char args[MAX_ARGS_LEN];
	unsigned long long args_size;
	char parent_comm[TASK_COMM_LEN];
	char tty[TASK_COMM_LEN];
	unsigned int login_uid;
	unsigned int pad2;
};

#endif
