/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef EUNOMIA_SECURITY_H
#define EUNOMIA_SECURITY_H

#include "common.h"

#define SECURITY_PATH_LEN 256

/* The calls, counting from 1 in the order of server/trackers/security's CALLS. */
enum security_call {
	SECURITY_PTRACE = 1,
	SECURITY_PROCESS_VM_WRITEV,
	SECURITY_SETUID,
	SECURITY_SETGID,
	SECURITY_SETREUID,
	SECURITY_SETREGID,
	SECURITY_SETRESUID,
	SECURITY_SETRESGID,
	SECURITY_SETFSUID,
	SECURITY_SETFSGID,
	SECURITY_CAPSET,
	SECURITY_UNSHARE,
	SECURITY_SETNS,
	SECURITY_INIT_MODULE,
	SECURITY_FINIT_MODULE,
	SECURITY_DELETE_MODULE,
	SECURITY_MEMFD_CREATE,
	SECURITY_DUP2,
	SECURITY_DUP3,
	SECURITY_CHMOD,
	SECURITY_FCHMOD,
	SECURITY_FCHMODAT,
	SECURITY_FCHMODAT2,
	SECURITY_UNLINK,
	SECURITY_UNLINKAT,
	SECURITY_RENAME,
	SECURITY_RENAMEAT,
	SECURITY_RENAMEAT2,
	SECURITY_SYMLINK,
	SECURITY_SYMLINKAT,
	SECURITY_LINK,
	SECURITY_LINKAT,
	SECURITY_BPF,
	SECURITY_SOCKET,
	SECURITY_CONNECT,
	SECURITY_PRCTL,
	SECURITY_PERSONALITY,
	SECURITY_KEXEC_LOAD,
	SECURITY_KEXEC_FILE_LOAD,
};

/*
 * One call at its exit. The arguments stay raw (user space decodes them per call); the
 * kernel reads only what user space could not read afterwards: the strings the pointers
 * name, the directories relative paths start from, fchmod's file, connect's socket
 * address (in `path`), and the family of the socket dup2 and dup3 copy.
 */
struct security_event {
	struct event_header header;
	long long ret;
	unsigned long long args[6];
	unsigned int call; /* enum security_call */
	unsigned int fd_family; /* dup2, dup3: the address family of oldfd's socket, or 0 */
	char path[SECURITY_PATH_LEN];
	char path2[SECURITY_PATH_LEN];
	/* When path (path2) is relative: the directory it starts from, else empty. */
	char dir[SECURITY_PATH_LEN];
	char dir2[SECURITY_PATH_LEN];
};

#endif
