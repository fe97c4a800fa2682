/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Full paths from a dentry and a mount, as d_path gives them, for tracepoint programs
 * (bpf_d_path is for LSM and fentry programs, which this kernel does not run). The walk
 * keeps its state in a per-CPU area the including program hands out through
 * path_scratch(), which it defines.
 */
#ifndef EUNOMIA_PATH_BPF_H
#define EUNOMIA_PATH_BPF_H

/* Bytes of a path in an event: its end, behind "..." when it is longer. */
#define PATH_LEN 256
/* Steps of the walk: one per component, one per mount crossed. */
#define MAX_WALK 64
/* A component is at most NAME_MAX (255) bytes. */
#define NAME_MASK 255
#define TRUNCATED "..."

enum walk_state {
	WALK_ON,
	WALK_COMPLETE, /* reached the root, or named a file off any tree */
};

/* Where the walk is; the path so far is path[pos..]. */
struct path_scratch {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	u32 pos;
	u32 state; /* enum walk_state */
	u32 pseudo;
	char path[PATH_LEN + NAME_MASK + 1];
};

/* A walked path: the scratch's path[start..PATH_LEN), NUL-terminated at its end. */
struct walked_path {
	u16 start;
	/* 1 for files without a path (pipes, sockets, anonymous inodes): `path` is their name. */
	u16 pseudo;
};

static struct path_scratch *path_scratch(void);

/* Writes `name` (len bytes) in front of the path so far; false when it does not fit. */
static __always_inline bool prepend(struct path_scratch *s, const unsigned char *name, u32 len,
				    bool slash)
{
	/* Keeps room for the truncation mark in front of what is written. */
	u32 need = len + slash + sizeof(TRUNCATED) - 1;
	u32 pos = s->pos;

	if (len > NAME_MASK || need > pos)
		return false;
	pos -= len;
	/* Masks bound the offsets for the verifier; the checks above keep them exact. */
	bpf_probe_read_kernel(&s->path[pos & (PATH_LEN - 1)], len & NAME_MASK, name);
	if (slash) {
		pos -= 1;
		s->path[pos & (PATH_LEN - 1)] = '/';
	}
	s->pos = pos;
	return true;
}

/*
 * One step of the walk up from a file's dentry: a component, or a mount crossed. The
 * state lives in the per-CPU scratch rather than on the stack, so that the verifier sees
 * every step alike and checks it once.
 */
static long walk_step(u32 index, void *ctx)
{
	struct path_scratch *s = path_scratch();
	struct dentry *dentry, *parent;
	struct vfsmount *vfsmnt;
	struct qstr name;

	if (!s)
		return 1;
	/* Locals: CO-RE relocates kernel field accesses, not ones into the scratch. */
	dentry = s->dentry;
	vfsmnt = s->vfsmnt;
	if (dentry == BPF_CORE_READ(vfsmnt, mnt_root)) {
		struct mount *mnt = s->mnt;
		struct mount *up = BPF_CORE_READ(mnt, mnt_parent);

		if (up == mnt) {
			s->state = WALK_COMPLETE;
			return 1;
		}
		s->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		s->mnt = up;
		s->vfsmnt = &up->mnt;
		return 0;
	}
	parent = BPF_CORE_READ(dentry, d_parent);
	name = BPF_CORE_READ(dentry, d_name);
	if (parent == dentry) {
		/* A dentry of its own, off any tree: pipes, sockets, anonymous inodes. */
		s->pseudo = 1;
		if (prepend(s, name.name, name.len, false))
			s->state = WALK_COMPLETE;
		return 1;
	}
	if (!prepend(s, name.name, name.len, true))
		return 1;
	s->dentry = parent;
	return 0;
}

/*
 * The full path of (dentry, vfsmnt), left in the scratch: components up to the mount's
 * root, then on through the mount point into the parent mount, until the root of the
 * mount namespace. Paths longer than PATH_LEN or deeper than MAX_WALK keep their end
 * behind "...".
 */
static __always_inline struct walked_path walk_path(struct path_scratch *s, struct dentry *dentry,
						    struct vfsmount *vfsmnt)
{
	struct walked_path walked;
	u32 pos;

	s->dentry = dentry;
	s->vfsmnt = vfsmnt;
	s->mnt = container_of(vfsmnt, struct mount, mnt);
	s->pos = PATH_LEN - 1;
	s->state = WALK_ON;
	s->pseudo = 0;
	s->path[PATH_LEN - 1] = '\0';
	bpf_loop(MAX_WALK, walk_step, NULL, 0);

	pos = s->pos & (PATH_LEN - 1);
	/* Cut short; prepend always leaves room for the mark (the test is for the verifier). */
	if (s->state != WALK_COMPLETE && pos >= sizeof(TRUNCATED) - 1) {
		pos -= sizeof(TRUNCATED) - 1;
		__builtin_memcpy(&s->path[pos], TRUNCATED, sizeof(TRUNCATED) - 1);
	} else if (pos == PATH_LEN - 1 && !s->pseudo) {
		/* The root itself. */
		pos--;
		s->path[pos] = '/';
	}
	walked.start = pos;
	walked.pseudo = s->pseudo;
	return walked;
}

#endif
