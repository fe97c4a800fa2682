/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef EUNOMIA_PROCESS_H
#define EUNOMIA_PROCESS_H

#include "common.h"

#define MAX_FILENAME_LEN 256
/* Arguments of an exec kept, and bytes of each (with its NUL). */
#define MAX_ARGS 16
#define MAX_ARG_LEN 256

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
};

/*
 * An exec with the `exec_details` option: a record of its own, so that events without
 * details keep their size.
 */
struct process_exec_details {
	struct process_event base;
	/* The parent's comm and executable, the controlling terminal's name (empty: none),
	 * the login uid (audit; -1 unset). */
	char parent_comm[TASK_COMM_LEN];
	char parent_exe[MAX_FILENAME_LEN];
	char tty[TASK_COMM_LEN];
	unsigned int login_uid;
	/* The exec's whole argument count; the first MAX_ARGS arguments, each with its whole
	 * length (MAX_ARG_LEN or more: cut). */
	unsigned int argc;
	unsigned int arg_len[MAX_ARGS];
	char argv[MAX_ARGS][MAX_ARG_LEN];
};

#endif
