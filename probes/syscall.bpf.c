// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The syscall tracker on raw_syscalls:sys_enter/sys_exit. Aggregate mode counts calls,
 * errors and latency per (process, syscall) in per-CPU maps that user space drains;
 * stream mode sends every call through the ring buffer.
 */
#include "common.bpf.h"
#include "syscall.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct syscall_event syscall_event_layout = {};
struct syscall_totals syscall_totals_layout = {};
struct syscall_key syscall_key_layout = {};
struct syscall_run syscall_run_layout = {};
struct syscall_identity syscall_identity_layout = {};
struct syscall_batch syscall_batch_layout = {};

const volatile bool stream_mode = false;
/* Latency needs sys_enter too; without it only sys_exit runs (user space skips loading). */
const volatile bool measure_latency = true;
/* Only calls of tasks under a seccomp filter: what a profile for a container must allow,
 * without the runtime's set-up before it installs one. */
const volatile bool seccomp_only = false;
/* Keep the first argument of socket, clone and personality (see struct syscall_key). */
const volatile bool first_args = false;

#define MAX_KEYS 65536

/* x86_64 numbers of the calls that need care (see finish_call and handle_task_exit). */
#define NR_rt_sigreturn 15
#define NR_socket 41
#define NR_personality 135
#define NR_clone 56
#define NR_fork 57
#define NR_vfork 58
#define NR_execve 59
#define NR_exit 60
#define NR_exit_group 231
#define NR_execveat 322
#define NR_clone3 435

#define PF_KTHREAD 0x00200000

/*
 * Bumped whenever any task is renamed (every exec, and prctl(PR_SET_NAME)): a per-CPU run
 * begun before a rename, or a per-CPU header cached before it, may carry the old comm, so
 * it is not continued.
 */
u32 renames = 0;

/*
 * Aggregates come in two generations: programs add to the one the low bit of
 * `generation` names while user space bumps it and drains the other, so no increment
 * races with a read-and-delete.
 */
u32 generation = 0;

/*
 * Totals per (process, syscall). Allocated on insert: preallocating 65,536 per-CPU
 * entries took 50 ms per map at every session start, and inserts are rare (a run's ids
 * are added when another thread runs on the CPU).
 */
struct rows_map {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_KEYS);
	__type(key, struct syscall_key);
	__type(value, struct syscall_totals);
};
struct rows_map rows_0 SEC(".maps");
struct rows_map rows_1 SEC(".maps");

/*
 * Each CPU's current run (struct syscall_run), one entry per generation. One map indexed
 * by generation rather than a map per generation: the verifier inlines a lookup only in a
 * map it knows, and the helper call cost as much as the rest of a stream event.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, u32);
	__type(value, struct syscall_run);
} runs SEC(".maps");

/*
 * Each CPU's unsent calls, stream mode, one entry per generation: user space takes a
 * batch that stopped filling from the quiet one. A record per call cost more in the ring
 * buffer's reserve and commit than the rest of the event.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, u32);
	__type(value, struct syscall_batch);
} batches SEC(".maps");

/* Each CPU's header for the thread that last made a call there, stream mode. Per CPU, not
 * per task: a task storage lookup on every call cost more than a refresh at each switch. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct header_cache);
} headers SEC(".maps");

/* Calls to a batch (at most SYSCALL_BATCH): user space keeps a batch to a quarter of the
 * ring buffer, which a small buffer could never take whole. */
const volatile u32 batch_size = SYSCALL_BATCH;

/* A batch this old goes out at its CPU's next call, full or not. */
#define SYSCALL_BATCH_AGE_NS 50000000ULL

/* Who each process is, for the drained rows; refreshed once per generation. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, u32);
	__type(value, struct syscall_identity);
} identities SEC(".maps");

/* Per thread: the call in flight (entry time and syscall id), when latency is measured. */
struct task_state {
	u64 start_ns;
	long id;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_state);
} tasks SEC(".maps");

static __always_inline bool is_exec(long id)
{
	return id == NR_execve || id == NR_execveat;
}

/* Whether the call's first argument is kept: the calls a seccomp profile narrows by it. */
static __always_inline bool keeps_arg0(long id)
{
	return first_args && (id == NR_socket || id == NR_clone || id == NR_personality);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(handle_sys_enter, struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 pid = task->tgid;
	struct task_state *state;

	/* An exec belongs to the program it starts: its filter is applied at exit. */
	if (!task_selected(task, pid) && !is_exec(id))
		return 0;
	state = bpf_task_storage_get(&tasks, task, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!state)
		return 0;
	state->id = id;
	state->start_ns = bpf_ktime_get_boot_ns();
	return 0;
}

static __always_inline void stream_call(struct task_struct *task, u32 pid, long id, long ret,
					u64 now, u64 latency, u64 arg0)
{
	u32 odd = generation & 1, zero = 0, count;
	struct syscall_batch *batch = bpf_map_lookup_elem(&batches, &odd);
	struct header_cache *header = bpf_map_lookup_elem(&headers, &zero);
	struct syscall_event *e;

	if (!batch || !header)
		return;
	count = batch->count;
	/* Never so (a full batch is sent at once): the bound the verifier needs. */
	if (count >= SYSCALL_BATCH) {
		__sync_fetch_and_add(&ringbuf_dropped, 1);
		return;
	}
	if (count == 0)
		batch->first_ns = now;
	e = &batch->events[count];
	fill_header_cached(&e->header, task, pid, renames, header, now);
	e->ret = ret;
	e->latency_ns = latency;
	e->syscall_id = id;
	e->timed = measure_latency;
	e->arg0 = keeps_arg0(id) ? arg0 : 0;
	count++;
	if (count >= batch_size || now - batch->first_ns >= SYSCALL_BATCH_AGE_NS) {
		if (bpf_ringbuf_output(&events, batch->events, count * sizeof(*e), wakeup_flags()))
			__sync_fetch_and_add(&ringbuf_dropped, count);
		batch->sent++;
		count = 0;
	}
	batch->count = count;
}

/* A failed call returns -errno (-4095..-1); anything else, an address included, is a result. */
static __always_inline u64 is_error(long ret)
{
	return ret < 0 && ret >= -4095;
}

/* Adds `add` to the row of `key` in generation `odd`. */
static __always_inline void add_to_row(u32 odd, struct syscall_key *key,
				       struct syscall_totals *add)
{
	struct syscall_totals *totals = generation_lookup(odd, rows_0, rows_1, key);
	void *rows = generation_map(odd, rows_0, rows_1);

	if (!totals) {
		if (!bpf_map_update_elem(rows, key, add, BPF_NOEXIST))
			return;
		/* Full, or another CPU created the row meanwhile: add to it if it exists. */
		totals = bpf_map_lookup_elem(rows, key);
		if (!totals) {
			__sync_fetch_and_add(&ringbuf_dropped, add->count);
			return;
		}
	}
	totals->count += add->count;
	totals->errors += add->errors;
	totals->latency_ns += add->latency_ns;
}

static __always_inline void note_identity(struct task_struct *task, u32 pid, u32 gen)
{
	struct syscall_identity *known = bpf_map_lookup_elem(&identities, &pid);
	struct syscall_identity who = { .generation = gen };

	if (known && known->generation == gen)
		return;
	fill_header(&who.header, task, pid);
	bpf_map_update_elem(&identities, &pid, &who, BPF_ANY);
}

static __always_inline struct syscall_run *current_run(u32 odd)
{
	return bpf_map_lookup_elem(&runs, &odd);
}

/* The key of the run's calls of `id`. */
static __always_inline void run_key(struct syscall_key *key, struct syscall_run *run, u32 id)
{
	key->pid = run->pid;
	key->syscall_id = id;
	__builtin_memcpy(key->comm, run->comm, sizeof(key->comm));
	key->arg0 = 0;
}

/* One of the run's ids into the rows (a bpf_loop step; `odd` names the generation). */
static long flush_step(u32 index, u32 *odd)
{
	struct syscall_run *run = current_run(*odd);
	struct syscall_key key;
	u32 id;

	if (!run)
		return 1;
	id = run->ids[index & (SYSCALL_RUN_SLOTS - 1)] & (SYSCALL_RUN_SLOTS - 1);
	run_key(&key, run, id);
	add_to_row(*odd, &key, &run->totals[id]);
	run->totals[id].count = 0;
	run->totals[id].errors = 0;
	run->totals[id].latency_ns = 0;
	return 0;
}

static __always_inline void count_call(struct task_struct *task, u32 pid, u32 tid, long id,
				       long ret, u64 latency, u64 arg0)
{
	u32 gen = generation, renamed = renames, odd = gen & 1;
	struct syscall_run *run = current_run(odd);
	struct syscall_totals *slot;

	if (!run)
		return;
	if (!run->touched || run->tid != tid || run->renames != renamed) {
		bool same_process = run->touched && run->pid == pid;

		if (run->touched)
			bpf_loop(run->touched, flush_step, &odd, 0);
		if (!same_process)
			note_identity(task, pid, gen);
		run->touched = 0;
		run->pid = pid;
		run->tid = tid;
		run->renames = renamed;
		read_comm(run->comm, task);
	}
	/* Rare calls, and those split by their argument, go to the rows at once. */
	if ((unsigned long)id >= SYSCALL_RUN_SLOTS || keeps_arg0(id)) {
		struct syscall_totals one = { 1, is_error(ret), latency };
		struct syscall_key key;

		run_key(&key, run, id);
		if (keeps_arg0(id))
			key.arg0 = arg0;
		add_to_row(odd, &key, &one);
		return;
	}
	slot = &run->totals[id];
	if (!slot->count) {
		run->ids[run->touched & (SYSCALL_RUN_SLOTS - 1)] = id;
		run->touched++;
	}
	slot->count++;
	slot->errors += is_error(ret);
	slot->latency_ns += latency;
}

/*
 * Ends a call of the current task: counts it, or reports it in stream mode. With latency
 * the call was filtered at entry and its id and start time kept; without, the filter runs
 * here and `id` is the one the caller read.
 */
static __always_inline void finish_call(struct task_struct *task, long id, long ret, u64 arg0)
{
	/* Direct loads: cheaper than bpf_get_current_pid_tgid on every call. */
	u32 pid = task->tgid, tid = task->pid;
	u64 now = 0, latency = 0;

	if (measure_latency) {
		struct task_state *state = bpf_task_storage_get(&tasks, task, NULL, 0);

		/* No entry seen (tracing began mid-call, the task is filtered out, or it is a
		 * fork child's first return, which its parent's call already counts). */
		if (!state || !state->start_ns)
			return;
		now = bpf_ktime_get_boot_ns();
		latency = now - state->start_ns;
		id = state->id;
		state->start_ns = 0;
		if (is_exec(id) && !task_selected(task, pid))
			return;
	} else {
		if (!task_selected(task, pid))
			return;
		/* rt_sigreturn restores the interrupted registers, orig_ax among them, which it
		 * sets to -1 (no restart): the only call that leaves this number behind. */
		if (id == -1)
			id = NR_rt_sigreturn;
		/* A fork child's first return: its parent's call is the one that counts. */
		if (ret == 0 && (id == NR_clone || id == NR_fork || id == NR_vfork || id == NR_clone3))
			return;
	}

	if (seccomp_only && task->seccomp.mode == 0)
		return;
	if (!stream_mode) {
		count_call(task, pid, tid, id, ret, latency, arg0);
		return;
	}
	/* Without latency nothing has read the clock yet. */
	if (!now)
		now = bpf_ktime_get_boot_ns();
	stream_call(task, pid, id, ret, now, latency, arg0);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(handle_sys_exit, struct pt_regs *regs, long ret)
{
	/* The saved user registers still hold the arguments: only ax takes the result. */
	finish_call(bpf_get_current_task_btf(), regs->orig_ax, ret, regs->di);
	return 0;
}

/*
 * exit and exit_group never return, so sys_exit never sees them; a thread leaving through
 * one of them still has its number in orig_ax here. Counted like strace -c and syscount
 * count them, with return value 0.
 */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle_task_exit, struct task_struct *p)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs;
	long id;

	/* A kernel thread made no system call. */
	if (task->flags & PF_KTHREAD)
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	id = BPF_CORE_READ(regs, orig_ax);
	if (id == NR_exit || id == NR_exit_group)
		finish_call(task, id, 0, 0);
	return 0;
}

/* Before the new comm is copied in: the renamed task's next call refreshes its header. */
SEC("tp_btf/task_rename")
int BPF_PROG(handle_task_rename, struct task_struct *task, const char *comm)
{
	__sync_fetch_and_add(&renames, 1);
	return 0;
}
