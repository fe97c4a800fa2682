/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The files tracker's records; decoded in server/trackers/files/. */
#ifndef EUNOMIA_FILES_H
#define EUNOMIA_FILES_H

#include "common.h"

/* Room for a path; a longer one keeps its last part behind a leading "...". */
#define FILES_PATH_MAX 256

/* Bits of `file_type_mask`, by (1 << type). */
enum files_file_type {
	FILES_TYPE_UNKNOWN = 0, /* no file: a failed open */
	FILES_TYPE_REGULAR = 1,
	FILES_TYPE_SOCKET = 2,
	FILES_TYPE_PIPE = 3,
	FILES_TYPE_OTHER = 4,
};

/* One process's file under one command name: the in-kernel aggregation key (an exec
 * starts another row, so its reads are never given to the comm from before it). */
struct files_key {
	unsigned int pid;
	unsigned int dev;
	unsigned long long ino;
	char comm[TASK_COMM_LEN];
};

/* The aggregation key of opens (see struct files_open_event). */
struct files_open_key {
	unsigned int pid;
	unsigned int flags;
	long long ret; /* -errno, or 0 for success whatever the fd */
	unsigned long long file; /* the inode, or for a name without a file a hash of it */
	unsigned int dev; /* the inode's device; 0 for a name without a file */
	unsigned int pad;
	char comm[TASK_COMM_LEN];
};

/*
 * A path is written backwards from the end of `path`: it is path[path_start..] up to the
 * NUL, absolute when the walk reached the root.
 */
struct files_path {
	enum files_file_type file_type;
	unsigned short path_start;
	/* 1 for files without a path (pipes, sockets, anonymous inodes): `path` is their name. */
	unsigned short pseudo;
	char path[FILES_PATH_MAX];
};

/* One interval's reads and writes of one process on one file. */
struct files_io {
	struct event_header header; /* who, as of the interval's first call */
	unsigned long long reads;
	unsigned long long writes;
	unsigned long long read_bytes;
	unsigned long long write_bytes;
	unsigned long long ino;
	struct files_path file;
};

/*
 * One openat, sent through the ring buffer; or, when opens are aggregated, one interval's
 * opens of one file by one process with the same flags and result.
 */
struct files_open_event {
	struct event_header header; /* who, as of the (interval's first) call */
	long long ret; /* fd, or -errno; aggregated: 0 for any fd, or -errno */
	unsigned long long ino; /* 0 when the open failed */
	unsigned long long opens; /* the calls this record stands for: 1 unless aggregated */
	unsigned int flags;
	unsigned int pad;
	/* The opened file's full path, or on failure the name as passed (file_type 0). */
	struct files_path file;
};

#endif
