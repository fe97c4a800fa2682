//! Stacks for the stack trackers (profile, offcpu, memleak). Their probes keep stacks in
//! the kernel's stack map and count per (process, user stack, kernel stack); a drain
//! reads each counted stack once, symbolizes it with blazesym (user frames through
//! `/proc/<pid>/map_files`, so processes in containers too; kernel frames through kallsyms)
//! and folds it into one line, root first, as flame graph tools read: `main;work;spin`,
//! kernel frames marked `_[k]`.
//!
//! Events are plain `Copy` data, so a folded stack is interned once for the life of the
//! server and events carry a `&'static str`. The table is bounded ([`INTERNED_BYTES_MAX`]);
//! past it a stack reads as [`TABLE_FULL`], so the loss shows where the stack would.

use std::collections::{HashMap, HashSet};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::LazyLock;

use blazesym::symbolize::source::{Kernel, Process, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};
use blazesym::{MaybeDefault, Pid};
use libbpf_rs::{MapCore, MapFlags};
use parking_lot::Mutex;

use super::{take_rows, with_record, TrackerError};

/// probes/stacks.h's constants.
mod stacks_h {
    include!(concat!(env!("OUT_DIR"), "/stacks_h.rs"));
}
/// Stacks a session keeps unless its `max_stacks` option says otherwise.
pub const STACKS_DEFAULT: u32 = stacks_h::STACKS_DEFAULT as u32;

/// `bpf_get_stackid`'s "no such stack" (a kernel thread's user stack, or a stack the probe
/// did not ask for); any other negative id is a stack the map could not take.
const NO_STACK: i32 = -libc::EFAULT;
/// The text of a stack the stack map could not take (full, or a hash collision).
pub const LOST: &str = "[stack lost: the stack map was full]";
/// The text of a stack past the server's table of stacks.
pub const TABLE_FULL: &str = "[stack not kept: the server's table of stacks is full]";
/// The folded stack field of every stack tracker.
pub const STACK_FIELD: crate::model::FieldInfo = crate::model::FieldInfo::new(
    "stack",
    crate::model::FieldType::Str,
    "the stack, folded: frames root first, separated by `;`, kernel frames marked `_[k]`",
);

/// How the frames of the running BPF program and its tracepoint glue begin.
const BPF_FRAMES: [&str; 4] = [
    "bpf_prog_",
    "bpf_trace_run",
    "__bpf_trace_",
    "bpf_trampoline",
];
/// Bytes of folded stacks the server keeps, across sessions.
pub const INTERNED_BYTES_MAX: usize = 64 << 20;
/// The owner of kernel addresses in [`Stacks`]' names (no process has pid 0 with a user
/// stack).
const KERNEL: u32 = 0;
/// Stacks one tracker instance remembers it has symbolized, before it starts over.
const CACHE_MAX: usize = 1 << 16;

struct Interned {
    texts: HashSet<&'static str>,
    bytes: usize,
}

static INTERNED: LazyLock<Mutex<Interned>> = LazyLock::new(|| {
    Mutex::new(Interned {
        texts: HashSet::new(),
        bytes: 0,
    })
});

/// The one copy of `text` the server keeps, or [`TABLE_FULL`].
pub fn intern(text: String) -> &'static str {
    let mut interned = INTERNED.lock();
    if let Some(&kept) = interned.texts.get(text.as_str()) {
        return kept;
    }
    if interned.bytes + text.len() > INTERNED_BYTES_MAX {
        return TABLE_FULL;
    }
    interned.bytes += text.len();
    let kept: &'static str = Box::leak(text.into_boxed_str());
    interned.texts.insert(kept);
    kept
}

/// A probe's stack map and what has been read out of it. A stack id names the same
/// addresses for the life of the map, so each stack is read and symbolized once: a kernel
/// stack that many processes and user stacks share (a busy server's network path) costs
/// one symbolization, not one per combination.
pub struct Stacks<'a> {
    map: &'a dyn MapCore,
    symbolizer: Symbolizer,
    kernel: Source<'static>,
    folded: HashMap<(u32, i32, i32), &'static str>,
    /// Frames, root first, of each user stack (per process) and each kernel stack.
    user_frames: HashMap<(u32, i32), Vec<String>>,
    kernel_frames: HashMap<i32, Vec<String>>,
    /// The name of each address symbolized, per process (0: the kernel): a new stack
    /// mostly repeats addresses already named.
    names: HashMap<(u32, u64), String>,
}

impl<'a> Stacks<'a> {
    pub fn new(map: &'a dyn MapCore) -> Self {
        Self {
            map,
            symbolizer: Symbolizer::new(),
            // kallsyms names every kernel function; looking for a vmlinux image on disk
            // would only add a search.
            kernel: Source::Kernel(Kernel {
                vmlinux: MaybeDefault::None,
                ..Kernel::default()
            }),
            folded: HashMap::new(),
            user_frames: HashMap::new(),
            kernel_frames: HashMap::new(),
            names: HashMap::new(),
        }
    }

    /// Process `pid`'s stacks `user` and `kernel` (stack ids, or bpf_get_stackid's error)
    /// folded into one line, root first.
    pub fn folded(
        &mut self,
        pid: u32,
        user: i32,
        kernel: i32,
    ) -> Result<&'static str, TrackerError> {
        if let Some(&text) = self.folded.get(&(pid, user, kernel)) {
            return Ok(text);
        }
        let mut frames = Vec::new();
        if !self.user_frames.contains_key(&(pid, user)) {
            let named = self.frames(user, pid, |stacks, addrs| {
                let process = Source::Process(Process::new(Pid::from(pid)));
                stacks.symbolize(&process, addrs, "")
            })?;
            self.user_frames.insert((pid, user), named);
        }
        frames.extend_from_slice(&self.user_frames[&(pid, user)]);
        if !self.kernel_frames.contains_key(&kernel) {
            let named = self.frames(kernel, KERNEL, |stacks, addrs| {
                let kernel = stacks.kernel.clone();
                stacks.symbolize(&kernel, addrs, "_[k]")
            })?;
            self.kernel_frames.insert(kernel, named);
        }
        frames.extend_from_slice(&self.kernel_frames[&kernel]);
        let text = if frames.is_empty() {
            "[no stack]"
        } else {
            intern(frames.join(";"))
        };
        if self.folded.len() >= CACHE_MAX {
            self.folded.clear();
            self.user_frames.clear();
            self.kernel_frames.clear();
            self.names.clear();
        }
        self.folded.insert((pid, user, kernel), text);
        Ok(text)
    }

    /// Stack `id`'s frames, root first: addresses of `owner` (a pid, or [`KERNEL`]) not
    /// named before are named by `name`.
    fn frames(
        &mut self,
        id: i32,
        owner: u32,
        name: impl FnOnce(&Self, &[u64]) -> Vec<String>,
    ) -> Result<Vec<String>, TrackerError> {
        if id == NO_STACK {
            return Ok(Vec::new());
        }
        let Ok(key) = u32::try_from(id) else {
            return Ok(vec![LOST.to_string()]);
        };
        let Some(bytes) = self
            .map
            .lookup(&key.to_ne_bytes(), MapFlags::ANY)
            .map_err(TrackerError::Map)?
        else {
            return Ok(vec![LOST.to_string()]);
        };
        let mut addrs: Vec<u64> = bytes
            .chunks_exact(8)
            .take(stacks_h::STACK_DEPTH)
            .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
            .take_while(|&a| a != 0)
            .collect();
        // Every frame but the leaf is a return address, which may be the first byte of the
        // next function: one byte back is inside the call.
        addrs.iter_mut().skip(1).for_each(|a| *a -= 1);
        let mut missing: Vec<u64> = addrs
            .iter()
            .copied()
            .filter(|&a| !self.names.contains_key(&(owner, a)))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let named = name(self, &missing);
            for (addr, text) in missing.into_iter().zip(named) {
                self.names.insert((owner, addr), text);
            }
        }
        let mut names: Vec<String> = addrs
            .iter()
            .map(|a| {
                // blazesym names every address it is given; should one be missing, it
                // reads as unknown rather than failing the drain.
                self.names
                    .get(&(owner, *a))
                    .cloned()
                    .unwrap_or_else(|| "[unknown]".to_string())
            })
            .collect();
        // The probe itself, at the kernel stack's leaf, is no part of what was traced.
        let machinery = names
            .iter()
            .take_while(|frame| BPF_FRAMES.iter().any(|p| frame.starts_with(p)))
            .count();
        names.drain(..machinery);
        names.reverse();
        Ok(names)
    }

    /// The names of `addrs` in `source`, leaf first, each with `suffix`.
    fn symbolize(&self, source: &Source<'_>, addrs: &[u64], suffix: &str) -> Vec<String> {
        match self.symbolizer.symbolize(source, Input::AbsAddr(addrs)) {
            Ok(symbols) => symbols
                .iter()
                .map(|symbol| match symbol {
                    // `;` separates frames in the folded format.
                    Symbolized::Sym(sym) => format!("{}{suffix}", sym.name.replace(';', ":")),
                    Symbolized::Unknown(_) => format!("[unknown]{suffix}"),
                })
                .collect(),
            // The process has exited: its addresses can no longer be named.
            Err(_) => vec![format!("[unknown]{suffix}"); addrs.len()],
        }
    }
}

/// The whole `Tracker::run` of a stack tracker (see probes/stacks.bpf.h): sizes its stack
/// map and its two generations of rows (`rows_0`, `rows_1`) to `options.max_stacks`, lets
/// `$configure` set the opened skeleton's own globals, loads, attaches with `$attach` (an
/// `Option<Attach>`), and every `options.interval_ms` turns each row into an event whose
/// body `$body` builds from the row and its folded stack. `types` is the caller's
/// skeleton's, with `stack_key` as the rows' key.
#[macro_export]
macro_rules! run_stack_probe {
    (
        $run:expr, $builder:ty, $options:expr, $attach:expr,
        |$open:ident| $configure:expr,
        |$row:ident: $row_ty:ty, $stack:ident| $body:expr
    ) => {{
        let run = $run;
        let options = $options;
        let mut storage = std::mem::MaybeUninit::uninit();
        let mut open = $crate::open_probe!(run, $builder, &mut storage)?;
        for map in [
            &mut open.maps.stacks,
            &mut open.maps.rows_0,
            &mut open.maps.rows_1,
        ] {
            map.set_max_entries(options.max_stacks)
                .map_err($crate::engine::TrackerError::Map)?;
        }
        let $open = &mut open;
        $configure;
        let mut skel = run.load(open)?;
        run.fill_cgroup_filter(&skel.maps.cgroup_filter)?;
        let (dropped, mut switch) = $crate::bss_generations!(skel);
        let maps = &skel.maps;
        let mut stacks = $crate::engine::stacks::Stacks::new(&maps.stacks);
        let generations = [&maps.rows_0, &maps.rows_1];
        let drain = $crate::engine::Drain {
            every: options.interval_ms.duration(),
            pull: Box::new(move |context: &$crate::engine::DrainContext, emit| {
                for &quiet in switch.quiet(context) {
                    $crate::engine::stacks::drain_stacks(
                        generations[quiet],
                        &mut stacks,
                        |key: &types::stack_key| (key.pid, key.user_stack, key.kernel_stack),
                        |$row: &$row_ty, $stack| {
                            emit(Event {
                                header: $crate::drained_header!($row.header, context),
                                body: $body.into(),
                            })
                        },
                    )?;
                }
                Ok(())
            }),
        };
        let run = match $attach {
            Some(attach) => run.attach_with(attach),
            None => run,
        };
        // The counts cross in the rows; nothing comes through the ring buffer.
        run.serve_draining(
            libbpf_rs::skel::Skel::object(&skel),
            &maps.events,
            dropped,
            |_, _| None,
            Some(drain),
        )
    }};
}

/// Reads and empties one generation of a stack tracker's rows (no program adds to it while
/// this runs): for each, `ids` gives the key's (pid, user stack, kernel stack) and `emit`
/// gets the row with its folded stack.
pub fn drain_stacks<K: Copy, R: Copy>(
    rows: &dyn MapCore,
    stacks: &mut Stacks<'_>,
    ids: impl Fn(&K) -> (u32, i32, i32),
    mut emit: impl FnMut(&R, &'static str),
) -> Result<(), TrackerError> {
    take_rows(rows, |key, row| {
        let Some((pid, user, kernel)) = with_record(key, |key: &K| ids(key)) else {
            return Ok(());
        };
        let stack = stacks.folded(pid, user, kernel)?;
        with_record(row, |row: &R| emit(row, stack));
        Ok(())
    })
}

/// Which of a task's stacks a stack tracker takes.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum StackKinds {
    #[default]
    Both,
    User,
    Kernel,
}

impl StackKinds {
    pub fn user(self) -> bool {
        self != StackKinds::Kernel
    }

    pub fn kernel(self) -> bool {
        self != StackKinds::User
    }
}

/// Checks a stack tracker's `max_stacks` option.
pub fn check_max_stacks(max_stacks: u32) -> Result<(), String> {
    if (1..=MAX_STACKS_LIMIT).contains(&max_stacks) {
        Ok(())
    } else {
        Err(format!(
            "max_stacks must be between 1 and {MAX_STACKS_LIMIT}, got {max_stacks}"
        ))
    }
}

/// The most stacks a session may keep: a stack takes about 1 KiB of kernel memory.
pub const MAX_STACKS_LIMIT: u32 = 1 << 20;

/// Opens a software cpu-clock perf event sampling at `frequency` Hz on each online CPU,
/// for a `perf_event` program to attach to.
pub fn cpu_clock_events(frequency: u64) -> Result<Vec<OwnedFd>, TrackerError> {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .map_err(|err| TrackerError::Config(format!("reading the online CPUs: {err}")))?;
    let mut attr = libbpf_sys::perf_event_attr {
        type_: libbpf_sys::PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<libbpf_sys::perf_event_attr>() as u32,
        config: u64::from(libbpf_sys::PERF_COUNT_SW_CPU_CLOCK),
        ..Default::default()
    };
    attr.__bindgen_anon_1.sample_freq = frequency;
    attr.set_freq(1);
    cpu_list(&online)
        .into_iter()
        .map(|cpu| {
            // SAFETY: perf_event_open(2) with a valid attribute; a returned fd is ours.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_perf_event_open,
                    &raw const attr,
                    -1,
                    cpu,
                    -1,
                    libbpf_sys::PERF_FLAG_FD_CLOEXEC,
                )
            };
            if fd < 0 {
                let err = std::io::Error::last_os_error();
                return Err(TrackerError::Config(format!(
                    "opening a cpu-clock perf event on CPU {cpu}: {err}"
                )));
            }
            // SAFETY: a new fd nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
        })
        .collect()
}

/// The CPUs of a kernel CPU list such as `0-3,6`.
fn cpu_list(text: &str) -> Vec<i32> {
    text.trim()
        .split(',')
        .filter_map(|range| match range.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?..=b.parse().ok()?).collect::<Vec<i32>>()),
            None => range.parse().ok().map(|cpu| vec![cpu]),
        })
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_expand() {
        assert_eq!(cpu_list("0-3,6\n"), vec![0, 1, 2, 3, 6]);
        assert_eq!(cpu_list("0"), vec![0]);
    }

    #[test]
    fn interning_keeps_one_copy() {
        let a = intern("main;work".to_string());
        let b = intern(String::from("main;") + "work");
        assert!(std::ptr::eq(a, b));
    }
}
