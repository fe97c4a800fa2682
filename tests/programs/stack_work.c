/*
 * What the stack trackers' tests trace. `stack_work MODE` prints "ready", waits for a line
 * on stdin, does MODE's work, prints "done" and then waits to be killed: its stacks are
 * symbolized while it lives. Built with frame pointers, which the kernel unwinds user
 * stacks by.
 *   profile: 2 s on the CPU, 90% of it in spin_here and 10% in other_work.
 *   offcpu:  10 sleeps of 100 ms in sleep_here, and a little CPU work between them.
 *   leak:    37 blocks of 4,096 bytes from leak_blocks, never freed; 1,000 rounds of
 *            malloc, calloc, realloc and posix_memalign from churn, all freed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double cpu_seconds(void)
{
	struct timespec t;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void burn(double seconds)
{
	double end = cpu_seconds() + seconds;
	volatile unsigned long x = 0;

	while (cpu_seconds() < end)
		for (int i = 0; i < 10000; i++)
			x++;
}

__attribute__((noinline)) void spin_here(double seconds) { burn(seconds); }
__attribute__((noinline)) void other_work(double seconds) { burn(seconds); }

/* The sleep is a system call made right here: a libc wrapper keeps no frame pointer, and
 * the kernel's unwinder would skip its caller. */
__attribute__((noinline)) void sleep_here(long ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
	long ret;

	asm volatile("syscall"
		     : "=a"(ret)
		     : "0"(SYS_nanosleep), "D"(&t), "S"(0)
		     : "rcx", "r11", "memory");
}

static void *kept[37];

__attribute__((noinline)) void leak_blocks(void)
{
	for (int i = 0; i < 37; i++) {
		kept[i] = malloc(4096);
		memset(kept[i], i, 4096);
	}
}

__attribute__((noinline)) void churn(void)
{
	for (int i = 0; i < 1000; i++) {
		char *a = malloc(100 + i), *b = calloc(3, 50), *c = realloc(NULL, 10), *d;

		if (posix_memalign((void **)&d, 64, 256))
			exit(1);
		c = realloc(c, 5000);
		a[0] = b[0] = c[0] = d[0] = 1;
		free(a);
		free(b);
		free(c);
		free(d);
	}
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	char line[16];

	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	if (!strcmp(mode, "profile")) {
		for (int i = 0; i < 20; i++) {
			spin_here(0.09);
			other_work(0.01);
		}
	} else if (!strcmp(mode, "offcpu")) {
		for (int i = 0; i < 10; i++) {
			sleep_here(100);
			burn(0.001);
		}
	} else if (!strcmp(mode, "leak")) {
		leak_blocks();
		churn();
	} else {
		return 2;
	}
	printf("done\n");
	fflush(stdout);
	pause();
	return 0;
}
