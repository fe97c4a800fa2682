// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The security tracker: the security-relevant system calls, each at its exit with its
 * arguments (read from the task's saved registers, which the call leaves as they were)
 * and its result. One program per call, on its own tracepoint, so that calls no rule
 * needs cost nothing: user space loads only the programs of the calls asked for.
 */
#include "common.bpf.h"
#include "security.h"
#include "full_path.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct security_event security_event_layout = {};

#define AT_FDCWD -100
#define S_IFMT 0170000
#define S_IFSOCK 0140000
/* struct sockaddr_un, the largest address connect takes that rules read. */
#define SOCKADDR_MAX 110

/* A user string into `dst`, or empty when there is none or it cannot be read. */
static __always_inline void user_str(char *dst, u64 src)
{
	if (!src || bpf_probe_read_user_str(dst, SECURITY_PATH_LEN, (const void *)src) < 0)
		dst[0] = '\0';
}

/* The file open as `fd` in `task`, or NULL. */
static __always_inline struct file *fd_file(struct task_struct *task, u64 fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds, *file = NULL;

	if (fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd & 0xffff]))
		return NULL;
	return file;
}

/* The address family of the socket open as `fd`, or 0 when it is not a socket. */
static __always_inline u32 socket_family(struct task_struct *task, u64 fd)
{
	struct file *file = fd_file(task, fd);
	struct socket *sock;

	if (!file || (BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	return BPF_CORE_READ(sock, sk, __sk_common.skc_family);
}

/* The full path of the file open as `fd` into `out`. */
static __always_inline void fd_path(struct task_struct *task, u64 fd, char *out)
{
	struct file *file = fd_file(task, fd);

	if (file)
		full_path(BPF_CORE_READ(file, f_path.dentry), BPF_CORE_READ(file, f_path.mnt), out);
}

/*
 * When `path` is relative: the directory it starts from into `out`, the working
 * directory for AT_FDCWD, else the directory open as `dirfd`.
 */
static __always_inline void dir_of(struct task_struct *task, const char *path, u64 dirfd,
				   char *out)
{
	struct fs_struct *fs;

	if (path[0] == '/' || path[0] == '\0')
		return;
	if ((int)dirfd != AT_FDCWD) {
		fd_path(task, dirfd & 0xffffffff, out);
		return;
	}
	fs = BPF_CORE_READ(task, fs);
	full_path(BPF_CORE_READ(fs, pwd.dentry), BPF_CORE_READ(fs, pwd.mnt), out);
}

static __always_inline int exit_of(u32 call, long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct pt_regs *regs;
	struct security_event *e;
	u64 *a;

	if (!task_selected(task, pid))
		return 0;
	e = reserve_event(sizeof(*e));
	if (!e)
		return 0;
	fill_header(&e->header, task, pid);
	e->ret = ret;
	e->call = call;
	e->fd_family = 0;
	e->path[0] = '\0';
	e->path2[0] = '\0';
	e->dir[0] = '\0';
	e->dir2[0] = '\0';
	/* The x86_64 syscall ABI: arguments in rdi, rsi, rdx, r10, r8, r9. */
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	a = e->args;
	a[0] = BPF_CORE_READ(regs, di);
	a[1] = BPF_CORE_READ(regs, si);
	a[2] = BPF_CORE_READ(regs, dx);
	a[3] = BPF_CORE_READ(regs, r10);
	a[4] = BPF_CORE_READ(regs, r8);
	a[5] = BPF_CORE_READ(regs, r9);
	/* A symlink's target (path) is kept as written: it is relative to the link. */
	switch (call) {
	case SECURITY_CHMOD: /* path, mode */
	case SECURITY_UNLINK: /* path */
		user_str(e->path, a[0]);
		dir_of(task, e->path, AT_FDCWD, e->dir);
		break;
	case SECURITY_MEMFD_CREATE: /* name, flags */
	case SECURITY_DELETE_MODULE: /* name, flags */
		user_str(e->path, a[0]);
		break;
	case SECURITY_FCHMOD: /* fd, mode */
		fd_path(task, a[0] & 0xffffffff, e->path);
		break;
	case SECURITY_FCHMODAT: /* dirfd, path, mode */
	case SECURITY_FCHMODAT2:
	case SECURITY_UNLINKAT: /* dirfd, path, flags */
		user_str(e->path, a[1]);
		dir_of(task, e->path, a[0], e->dir);
		break;
	case SECURITY_RENAME: /* old, new */
	case SECURITY_LINK:
	case SECURITY_SYMLINK: /* target, link */
		user_str(e->path, a[0]);
		if (call != SECURITY_SYMLINK)
			dir_of(task, e->path, AT_FDCWD, e->dir);
		user_str(e->path2, a[1]);
		dir_of(task, e->path2, AT_FDCWD, e->dir2);
		break;
	case SECURITY_RENAMEAT: /* olddirfd, old, newdirfd, new (, flags) */
	case SECURITY_RENAMEAT2:
	case SECURITY_LINKAT:
		user_str(e->path, a[1]);
		dir_of(task, e->path, a[0], e->dir);
		user_str(e->path2, a[3]);
		dir_of(task, e->path2, a[2], e->dir2);
		break;
	case SECURITY_SYMLINKAT: /* target, newdirfd, link */
		user_str(e->path, a[0]);
		user_str(e->path2, a[2]);
		dir_of(task, e->path2, a[1], e->dir2);
		break;
	case SECURITY_CONNECT: /* fd, address, length */
		if (a[2] <= SOCKADDR_MAX)
			bpf_probe_read_user(e->path, a[2] & 0x7f, (const void *)a[1]);
		break;
	case SECURITY_DUP2: /* oldfd, newfd (, flags) */
	case SECURITY_DUP3:
		e->fd_family = socket_family(task, a[0] & 0xffff);
		break;
	}
	submit_event(e);
	return 0;
}

#define SECURITY_CALL(name, call)                                          \
	SEC("tp/syscalls/sys_exit_" #name)                                 \
	int exit_##name(struct trace_event_raw_sys_exit *ctx)              \
	{                                                                  \
		return exit_of(call, ctx->ret);                            \
	}

SECURITY_CALL(ptrace, SECURITY_PTRACE)
SECURITY_CALL(process_vm_writev, SECURITY_PROCESS_VM_WRITEV)
SECURITY_CALL(setuid, SECURITY_SETUID)
SECURITY_CALL(setgid, SECURITY_SETGID)
SECURITY_CALL(setreuid, SECURITY_SETREUID)
SECURITY_CALL(setregid, SECURITY_SETREGID)
SECURITY_CALL(setresuid, SECURITY_SETRESUID)
SECURITY_CALL(setresgid, SECURITY_SETRESGID)
SECURITY_CALL(setfsuid, SECURITY_SETFSUID)
SECURITY_CALL(setfsgid, SECURITY_SETFSGID)
SECURITY_CALL(capset, SECURITY_CAPSET)
SECURITY_CALL(unshare, SECURITY_UNSHARE)
SECURITY_CALL(setns, SECURITY_SETNS)
SECURITY_CALL(init_module, SECURITY_INIT_MODULE)
SECURITY_CALL(finit_module, SECURITY_FINIT_MODULE)
SECURITY_CALL(delete_module, SECURITY_DELETE_MODULE)
SECURITY_CALL(memfd_create, SECURITY_MEMFD_CREATE)
SECURITY_CALL(dup2, SECURITY_DUP2)
SECURITY_CALL(dup3, SECURITY_DUP3)
SECURITY_CALL(chmod, SECURITY_CHMOD)
SECURITY_CALL(fchmod, SECURITY_FCHMOD)
SECURITY_CALL(fchmodat, SECURITY_FCHMODAT)
SECURITY_CALL(fchmodat2, SECURITY_FCHMODAT2)
SECURITY_CALL(unlink, SECURITY_UNLINK)
SECURITY_CALL(unlinkat, SECURITY_UNLINKAT)
SECURITY_CALL(rename, SECURITY_RENAME)
SECURITY_CALL(renameat, SECURITY_RENAMEAT)
SECURITY_CALL(renameat2, SECURITY_RENAMEAT2)
SECURITY_CALL(symlink, SECURITY_SYMLINK)
SECURITY_CALL(symlinkat, SECURITY_SYMLINKAT)
SECURITY_CALL(link, SECURITY_LINK)
SECURITY_CALL(linkat, SECURITY_LINKAT)
SECURITY_CALL(bpf, SECURITY_BPF)
SECURITY_CALL(socket, SECURITY_SOCKET)
SECURITY_CALL(connect, SECURITY_CONNECT)
SECURITY_CALL(prctl, SECURITY_PRCTL)
SECURITY_CALL(personality, SECURITY_PERSONALITY)
SECURITY_CALL(kexec_load, SECURITY_KEXEC_LOAD)
SECURITY_CALL(kexec_file_load, SECURITY_KEXEC_FILE_LOAD)
