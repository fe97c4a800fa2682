/*
 * A program whose system calls are known exactly: `syscall_load N M F` makes N getppid
 * calls, M openat calls that succeed (each followed by a close) and F that fail with
 * ENOENT. Linked statically, so no loader adds calls of its own. Exits 7 when a getppid
 * call was refused with EPERM (under a seccomp profile that lacks it).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long getppids = argc > 1 ? atol(argv[1]) : 0;
	long opens = argc > 2 ? atol(argv[2]) : 0;
	long failures = argc > 3 ? atol(argv[3]) : 0;

	int refused = 0;

	for (long i = 0; i < getppids; i++)
		if (syscall(SYS_getppid) < 0 && errno == EPERM)
			refused = 1;
	for (long i = 0; i < opens; i++) {
		int fd = openat(AT_FDCWD, "/dev/null", O_RDONLY);

		if (fd < 0)
			return 1;
		close(fd);
	}
	for (long i = 0; i < failures; i++)
		if (openat(AT_FDCWD, "/nonexistent/eunomia", O_RDONLY) >= 0)
			return 1;
	return refused ? 7 : 0;
}
