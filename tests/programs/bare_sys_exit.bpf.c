// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The overhead floor for the syscall benchmark: a program that does nothing, attached
 * where the syscall tracker attaches (every system call's exit). Whatever a tracker does
 * costs this much more than attaching at all.
 */
__attribute__((section("tp_btf/sys_exit"), used)) int bare_sys_exit(void *ctx)
{
	return 0;
}

__attribute__((section("license"), used)) char LICENSE[] = "Dual BSD/GPL";
