/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * path.bpf.h's walk with a per-CPU scratch of its own, for probes that walk whole paths
 * into their events (exec's file and working directory, the directories of relative
 * paths).
 */
#ifndef EUNOMIA_FULL_PATH_BPF_H
#define EUNOMIA_FULL_PATH_BPF_H

#include "path.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct path_scratch);
} path_scratch_map SEC(".maps");

static __always_inline struct path_scratch *path_scratch(void)
{
	u32 zero = 0;

	return bpf_map_lookup_elem(&path_scratch_map, &zero);
}

/* Walks (dentry, vfsmnt) into out[PATH_LEN]; out is left alone when it cannot. */
static __always_inline void full_path(struct dentry *dentry, struct vfsmount *vfsmnt, char *out)
{
	struct path_scratch *s = path_scratch();
	struct walked_path walked;

	if (!s || !dentry || !vfsmnt)
		return;
	walked = walk_path(s, dentry, vfsmnt);
	bpf_probe_read_kernel_str(out, PATH_LEN, &s->path[walked.start & (PATH_LEN - 1)]);
}

#endif
