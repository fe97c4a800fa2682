//! The syscall tracker on `raw_syscalls:sys_enter/sys_exit`. In aggregate mode (the
//! default) the kernel counts calls, errors and latency per (process, syscall) in per-CPU
//! maps that are drained every interval, which keeps the probe cheap; in stream mode every
//! call is an event.

use std::collections::BTreeMap;
use std::mem::MaybeUninit;

use libbpf_rs::skel::Skel;
use libbpf_rs::{MapCore, MapFlags};

use super::{Event, Tracker};
use crate::engine::{with_record, Drain, DrainContext, Run, TrackerError};
use crate::model::{
    Comm, EventBody, FieldFormat, FieldInfo, FieldType, Header, TrackerInfo, Value,
};
use crate::{bss_generations, decode_header, open_probe};

mod names;
mod options;

pub use crate::engine::Mode;
use names::NAMES;
pub use options::SyscallOptions;

pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/syscall.skel.rs"));
}
use skel::{types, SyscallSkelBuilder};

static INFO: TrackerInfo = TrackerInfo {
    name: "syscall",
    description: "system calls per process: calls, errors and latency (config mode: aggregate \
                  counts in the kernel per interval, stream reports every call)",
    fields: &[
        FieldInfo::new("syscall", FieldType::Str, "system call name (x86_64)"),
        FieldInfo::new("syscall_id", FieldType::U64, "system call number (x86_64)"),
        FieldInfo::total(
            "count",
            FieldType::U64,
            "calls: per interval in aggregate mode, 1 in stream mode",
        ),
        FieldInfo::total(
            "errors",
            FieldType::U64,
            "calls that returned an error (negative value)",
        ),
        FieldInfo::total(
            "latency_ns",
            FieldType::U64,
            "time in the call (total over the interval in aggregate mode); null unless \
             latency is on (the default in stream mode)",
        )
        .shown_as(FieldFormat::Duration),
        FieldInfo::measure(
            "ret",
            FieldType::I64,
            "return value, -errno on failure (stream mode)",
        )
        .shown_as(FieldFormat::Errno),
        FieldInfo::new(
            "arg0",
            FieldType::U64,
            "the first argument of socket (family), clone (flags) and personality \
             (persona), with option first_args; null for other calls",
        ),
    ],
    weight: Some("count"),
    stacks: None,
};

pub struct SyscallTracker;

/// How often stream mode looks for a CPU's batch that stopped filling (a CPU sends its
/// batch itself once full, or at its next call once 50 ms old).
const BATCH_LOOK: std::time::Duration = std::time::Duration::from_millis(100);

/// A stream-mode record (`struct syscall_event`), and how many a batch holds.
const RECORD_SIZE: usize = std::mem::size_of::<types::syscall_event>();
const BATCH_CAPACITY: usize = (std::mem::size_of::<types::syscall_batch>()
    - std::mem::offset_of!(types::syscall_batch, events))
    / RECORD_SIZE;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SyscallEvent {
    /// One interval's totals of one process's calls of one syscall (aggregate mode).
    Totals {
        syscall_id: u32,
        count: u64,
        errors: u64,
        /// `None` unless the tracker times calls (`latency`).
        latency_ns: Option<u64>,
        /// The first argument the calls were made with (see [`keeps_arg0`]).
        arg0: Option<u64>,
    },
    /// One call (stream mode).
    Call {
        syscall_id: u32,
        ret: i64,
        /// `None` unless the tracker times calls (`latency`).
        latency_ns: Option<u64>,
        arg0: Option<u64>,
    },
}

/// The calls whose first argument option `first_args` keeps (as `keeps_arg0` in
/// probes/syscall.bpf.c): those a seccomp profile narrows by it.
pub const NARROWED_BY_ARG0: [&str; 3] = ["socket", "clone", "personality"];

/// Whether the first argument of call `syscall_id` is kept with `first_args`.
pub fn keeps_arg0(syscall_id: u32) -> bool {
    syscall_name(syscall_id).is_some_and(|name| NARROWED_BY_ARG0.contains(&name))
}

/// The x86_64 name of a syscall number; `None` for numbers no syscall has.
pub fn syscall_name(id: u32) -> Option<&'static str> {
    NAMES
        .get(id as usize)
        .copied()
        .filter(|name| !name.is_empty())
}

/// The x86_64 number of a syscall by name.
pub fn syscall_number(name: &str) -> Option<u32> {
    NAMES
        .iter()
        .position(|n| !n.is_empty() && *n == name)
        .map(|id| id as u32)
}

/// Whether a return value is -errno (-4095..-1) rather than a result such as an address.
pub fn is_error(ret: i64) -> bool {
    (-4095..0).contains(&ret)
}

impl SyscallEvent {
    fn syscall_id(&self) -> u32 {
        match *self {
            SyscallEvent::Totals { syscall_id, .. } | SyscallEvent::Call { syscall_id, .. } => {
                syscall_id
            }
        }
    }

    fn arg0(&self) -> Option<u64> {
        match *self {
            SyscallEvent::Totals { arg0, .. } | SyscallEvent::Call { arg0, .. } => arg0,
        }
    }
}

impl EventBody for SyscallEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        match self {
            SyscallEvent::Totals { .. } => "totals",
            SyscallEvent::Call { .. } => "call",
        }
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        let (count, errors, latency_ns, ret) = match *self {
            SyscallEvent::Totals {
                count,
                errors,
                latency_ns,
                ..
            } => (count, errors, latency_ns, Value::Null),
            SyscallEvent::Call {
                ret, latency_ns, ..
            } => (1, u64::from(is_error(ret)), latency_ns, Value::I64(ret)),
        };
        Some(match name {
            "syscall" => syscall_name(self.syscall_id()).map_or(Value::Null, Value::Str),
            "syscall_id" => Value::U64(self.syscall_id().into()),
            "count" => Value::U64(count),
            "errors" => Value::U64(errors),
            "latency_ns" => latency_ns.map_or(Value::Null, Value::U64),
            "ret" => ret,
            "arg0" => self.arg0().map_or(Value::Null, Value::U64),
            _ => return None,
        })
    }
}

/// Decodes one stream-mode record (`probes/syscall.h`'s `struct syscall_event`) of a
/// tracker that keeps first arguments (`first_args`) or not.
pub fn decoder(first_args: bool) -> impl Fn(&[u8], u64) -> Option<Event> {
    move |bytes, clock_offset| {
        with_record(bytes, |raw: &types::syscall_event| Event {
            header: decode_header!(raw.header, clock_offset),
            body: SyscallEvent::Call {
                syscall_id: raw.syscall_id,
                ret: raw.ret,
                latency_ns: (raw.timed != 0).then_some(raw.latency_ns),
                arg0: (first_args && keeps_arg0(raw.syscall_id)).then_some(raw.arg0),
            }
            .into(),
        })
    }
}

fn accumulate(into: &mut types::syscall_totals, from: &types::syscall_totals) {
    into.count += from.count;
    into.errors += from.errors;
    into.latency_ns += from.latency_ns;
}

/// One generation of in-kernel aggregates (see probes/syscall.bpf.c).
struct Generation<'a> {
    /// Totals per (process, syscall), per CPU.
    rows: &'a dyn MapCore,
    /// Each CPU's current run of one thread's calls, not yet in `rows`: in entry `slot`.
    runs: &'a dyn MapCore,
    slot: u32,
}

/// Totals by (pid, comm, syscall id, first argument).
type Totals = BTreeMap<(u32, [i8; 16], u32, u64), types::syscall_totals>;

fn totals_key(key: &types::syscall_key) -> (u32, [i8; 16], u32, u64) {
    (key.pid, key.comm, key.syscall_id, key.arg0)
}

impl Generation<'_> {
    /// Reads and empties this generation, summing over CPUs per row. It must be
    /// inactive: no program adds to it while this runs.
    fn take(&self, totals: &mut Totals) -> Result<(), TrackerError> {
        let keys: Vec<Vec<u8>> = self.rows.keys().collect();
        for key in &keys {
            let per_cpu = self
                .rows
                .lookup_percpu(key, MapFlags::ANY)
                .map_err(TrackerError::Map)?;
            self.rows.delete(key).map_err(TrackerError::Map)?;
            let Some(key) = with_record(key, totals_key) else {
                continue;
            };
            for slot in per_cpu.iter().flatten() {
                with_record(slot, |t| accumulate(totals.entry(key).or_default(), t));
            }
        }
        let key = self.slot.to_ne_bytes();
        if let Some(per_cpu) = self
            .runs
            .lookup_percpu(&key, MapFlags::ANY)
            .map_err(TrackerError::Map)?
        {
            for cpu in &per_cpu {
                with_record(cpu, |run: &types::syscall_run| {
                    for &id in run.ids.iter().take(run.touched as usize) {
                        let key = (run.pid, run.comm, u32::from(id), 0);
                        if let Some(sum) = run.totals.get(usize::from(id)) {
                            accumulate(totals.entry(key).or_default(), sum);
                        }
                    }
                });
            }
            let empty: Vec<Vec<u8>> = per_cpu.iter().map(|cpu| vec![0; cpu.len()]).collect();
            self.runs
                .update_percpu(&key, &empty, MapFlags::ANY)
                .map_err(TrackerError::Map)?;
        }
        Ok(())
    }
}

/// Each CPU's unsent stream-mode calls (`struct syscall_batch`), in two generations.
struct Batches<'a> {
    /// One entry per generation.
    map: &'a dyn MapCore,
    /// Each CPU's (count, sent) in the current generation at the last look.
    last_look: Vec<(u32, u32)>,
}

impl<'a> Batches<'a> {
    fn new(map: &'a dyn MapCore) -> Self {
        Self {
            map,
            last_look: Vec::new(),
        }
    }

    fn read(&self, generation: usize) -> Result<Vec<Vec<u8>>, TrackerError> {
        Ok(self
            .map
            .lookup_percpu(&(generation as u32).to_ne_bytes(), MapFlags::ANY)
            .map_err(TrackerError::Map)?
            .unwrap_or_default())
    }

    /// Whether a CPU's batch in `generation` stopped filling: calls in it, and none
    /// added or sent since the last look. A CPU that makes no more calls never sends it.
    fn stalled(&mut self, generation: usize) -> Result<bool, TrackerError> {
        let look: Vec<(u32, u32)> = self
            .read(generation)?
            .iter()
            .map(|slot| {
                with_record(slot, |b: &types::syscall_batch| (b.count, b.sent)).unwrap_or_default()
            })
            .collect();
        let stalled = look
            .iter()
            .zip(&self.last_look)
            .any(|(now, then)| now.0 > 0 && now == then);
        self.last_look = if stalled { Vec::new() } else { look };
        Ok(stalled)
    }

    /// Emits and empties the batches of `generation`, which no program adds to.
    fn take(
        &self,
        generation: usize,
        decode: &impl Fn(&[u8], u64) -> Option<Event>,
        context: &DrainContext,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), TrackerError> {
        let mut per_cpu = self.read(generation)?;
        let events = std::mem::offset_of!(types::syscall_batch, events);
        for slot in &mut per_cpu {
            let count =
                with_record(slot, |b: &types::syscall_batch| b.count as usize).unwrap_or_default();
            // The slot ends with the array: at most BATCH_CAPACITY whole records.
            for record in slot[events..].chunks(RECORD_SIZE).take(count) {
                if let Some(event) = decode(record, context.clock_offset) {
                    emit(event);
                }
            }
            slot[..4].copy_from_slice(&0u32.to_ne_bytes());
        }
        self.map
            .update_percpu(&(generation as u32).to_ne_bytes(), &per_cpu, MapFlags::ANY)
            .map_err(TrackerError::Map)
    }
}

/// Emits one `totals` event per row, stamped with the drain's time; the comm is the row's
/// own (the one the calls were made under), the rest of the header the process's.
fn emit_totals(
    totals: Totals,
    timed: bool,
    first_args: bool,
    identities: &dyn MapCore,
    context: &DrainContext,
    emit: &mut dyn FnMut(Event),
) -> Result<(), TrackerError> {
    for ((pid, comm, syscall_id, arg0), sum) in totals {
        let who = identities
            .lookup(&pid.to_ne_bytes(), MapFlags::ANY)
            .map_err(TrackerError::Map)?;
        let mut header = who
            .as_deref()
            .and_then(|bytes| {
                with_record(bytes, |raw: &types::syscall_identity| {
                    decode_header!(raw.header, context.clock_offset)
                })
            })
            // Evicted from the LRU: the pid is all that is known.
            .unwrap_or(Header {
                pid,
                ..Header::default()
            });
        header.ts_ns = context.now_ns;
        header.comm = Comm::from_c_chars(&comm);
        emit(Event {
            header,
            body: SyscallEvent::Totals {
                syscall_id,
                count: sum.count,
                errors: sum.errors,
                latency_ns: timed.then_some(sum.latency_ns),
                arg0: (first_args && keeps_arg0(syscall_id)).then_some(arg0),
            }
            .into(),
        });
    }
    Ok(())
}

impl Tracker for SyscallTracker {
    type Options = SyscallOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, options: &SyscallOptions) -> Result<(), TrackerError> {
        let stream = options.stream();
        let mut storage = MaybeUninit::uninit();
        let mut open = open_probe!(run, SyscallSkelBuilder, &mut storage)?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect("syscall.bpf.c declares read-only globals");
        rodata.stream_mode = stream;
        // Timing calls needs sys_enter as well.
        let latency = options.latency();
        rodata.measure_latency = latency;
        rodata.seccomp_only = options.seccomp_only;
        let first_args = options.first_args;
        rodata.first_args = first_args;
        rodata.batch_size =
            (run.config().ringbuf_bytes as usize / 4 / RECORD_SIZE).clamp(1, BATCH_CAPACITY) as u32;
        open.progs.handle_sys_enter.set_autoload(latency);
        let mut skel = run.load(open)?;
        run.fill_cgroup_filter(&skel.maps.cgroup_filter)?;
        let (dropped, mut switch) = bss_generations!(skel);
        let maps = &skel.maps;
        let generations = [
            Generation {
                rows: &maps.rows_0,
                runs: &maps.runs,
                slot: 0,
            },
            Generation {
                rows: &maps.rows_1,
                runs: &maps.runs,
                slot: 1,
            },
        ];
        let (run, drain) = if stream {
            let mut batches = Batches::new(&maps.batches);
            let drain = Drain {
                every: BATCH_LOOK,
                pull: Box::new(move |context: &DrainContext, emit| {
                    if !context.last && !batches.stalled(switch.current())? {
                        return Ok(());
                    }
                    for &quiet in switch.quiet(context) {
                        batches.take(quiet, &decoder(first_args), context, emit)?;
                    }
                    Ok(())
                }),
            };
            (run.batched(RECORD_SIZE), drain)
        } else {
            let drain = Drain {
                every: options.interval_ms.duration(),
                pull: Box::new(move |context: &DrainContext, emit| {
                    let mut totals = Totals::new();
                    for &quiet in switch.quiet(context) {
                        generations[quiet].take(&mut totals)?;
                    }
                    emit_totals(totals, latency, first_args, &maps.identities, context, emit)
                }),
            };
            (run, drain)
        };
        let decode = decoder(first_args);
        run.serve_draining(skel.object(), &maps.events, dropped, decode, Some(drain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Record;

    #[test]
    fn names_follow_the_x86_64_table() {
        assert_eq!(syscall_name(0), Some("read"));
        assert_eq!(syscall_name(110), Some("getppid"));
        assert_eq!(syscall_name(257), Some("openat"));
        assert_eq!(syscall_name(400), None);
        assert_eq!(syscall_name(100_000), None);
    }

    /// The table agrees with the installed kernel headers on every number they name (as
    /// the C compiler finds them, wherever this machine keeps them).
    #[test]
    fn names_match_the_installed_unistd_header() {
        let mut cc = std::process::Command::new("cc")
            .args(["-E", "-dM", "-x", "c", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("a C compiler (make deps installs clang)");
        std::io::Write::write_all(&mut cc.stdin.take().unwrap(), b"#include <asm/unistd.h>\n")
            .unwrap();
        let out = cc.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "asm/unistd.h (package linux-libc-dev)"
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut checked = 0;
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if let (Some("#define"), Some(name), Some(nr)) =
                (words.next(), words.next(), words.next())
            {
                let (Some(name), Ok(nr)) = (name.strip_prefix("__NR_"), nr.parse::<u32>()) else {
                    continue;
                };
                assert_eq!(syscall_name(nr), Some(name), "syscall {nr}");
                checked += 1;
            }
        }
        assert!(checked > 300, "only {checked} syscalls in asm/unistd.h");
    }

    #[test]
    fn decodes_a_call() {
        let mut raw = types::syscall_event::default();
        raw.header.pid = 42;
        raw.header.ts_ns = 10;
        raw.syscall_id = 257;
        raw.ret = -2;
        raw.latency_ns = 900;
        raw.timed = 1;
        // SAFETY: syscall_event is plain old data.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&raw as *const types::syscall_event).cast::<u8>(),
                std::mem::size_of_val(&raw),
            )
        };
        let event = decoder(false)(bytes, 5).expect("decodes");
        assert_eq!(event.header.ts_ns, 15);
        assert_eq!(event.kind(), "call");
        assert_eq!(event.get("syscall"), Some(Value::Str("openat")));
        assert_eq!(event.get("syscall_id"), Some(Value::U64(257)));
        assert_eq!(event.get("ret"), Some(Value::I64(-2)));
        assert_eq!(event.get("count"), Some(Value::U64(1)));
        assert_eq!(event.get("errors"), Some(Value::U64(1)));
        assert_eq!(event.get("latency_ns"), Some(Value::U64(900)));
        assert!(decoder(false)(&bytes[..bytes.len() - 1], 0).is_none());
        assert_eq!(event.get("arg0"), Some(Value::Null));
    }

    #[test]
    fn totals_have_no_return_value_and_errors_are_errno_range() {
        assert!(is_error(-2) && is_error(-4095));
        assert!(!is_error(-4096) && !is_error(0) && !is_error(3));
        let totals = SyscallEvent::Totals {
            syscall_id: 0,
            count: 7,
            errors: 1,
            latency_ns: None,
            arg0: None,
        };
        assert_eq!(totals.kind(), "totals");
        assert_eq!(totals.get("ret"), Some(Value::Null));
        assert_eq!(totals.get("count"), Some(Value::U64(7)));
        assert_eq!(totals.get("latency_ns"), Some(Value::Null));
    }
}
