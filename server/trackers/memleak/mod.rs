//! The memleak tracker (libbpf-tools' memleak, for user space): one process's heap blocks
//! that are allocated and not freed, by the stack that allocated them. Uprobes on its
//! allocator (malloc, calloc, realloc, posix_memalign and free, in the libc it maps unless
//! told another library) remember each live block; per allocating stack, allocations and
//! the frees of its blocks are counted in the kernel and handed over each interval. The
//! sum of `outstanding` over a session is what that stack still held when it ended.

use libbpf_rs::UprobeOpts;

use super::{Event, Tracker};
use crate::engine::stacks::{check_max_stacks, STACKS_DEFAULT, STACK_FIELD};
use crate::engine::{Attach, IntervalMs, Run, TrackerError, TrackerOptions};
use crate::model::{EventBody, FieldInfo, FieldType, TrackerInfo, Value};
use crate::run_stack_probe;

/// The generated skeleton; its `types` give the raw record layout (for tests and benchmarks).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/memleak.skel.rs"));
}
use skel::{types, MemleakSkelBuilder};

static INFO: TrackerInfo = TrackerInfo {
    name: "memleak",
    description: "one process's heap allocations by stack, and how many of them are still \
                  not freed (needs a pid filter)",
    fields: &[
        STACK_FIELD,
        FieldInfo::total(
            "allocations",
            FieldType::U64,
            "blocks allocated on this stack",
        ),
        FieldInfo::total("bytes", FieldType::U64, "their bytes"),
        FieldInfo::total(
            "outstanding",
            FieldType::I64,
            "blocks allocated on this stack less those of them freed; summed over a \
             session, the blocks still live at its end",
        ),
        FieldInfo::total("outstanding_bytes", FieldType::I64, "the same in bytes"),
    ],
    weight: Some("allocations"),
    stacks: Some("outstanding_bytes"),
};

pub struct MemleakTracker;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MemleakEvent {
    pub stack: &'static str,
    pub allocations: u64,
    pub bytes: u64,
    pub frees: u64,
    pub freed_bytes: u64,
}

fn difference(a: u64, b: u64) -> i64 {
    (i128::from(a) - i128::from(b)).clamp(i64::MIN.into(), i64::MAX.into()) as i64
}

impl EventBody for MemleakEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        "allocations"
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        Some(match name {
            "stack" => Value::Str(self.stack),
            "allocations" => Value::U64(self.allocations),
            "bytes" => Value::U64(self.bytes),
            "outstanding" => Value::I64(difference(self.allocations, self.frees)),
            "outstanding_bytes" => Value::I64(difference(self.bytes, self.freed_bytes)),
            _ => return None,
        })
    }
}

/// The memleak tracker's options.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MemleakOptions {
    /// The allocator to probe: a path, or the start of the name of a library the process
    /// maps (`libjemalloc.so`); the process's libc by default.
    pub library: Option<String>,
    /// How often counts are handed over, in milliseconds.
    pub interval_ms: IntervalMs,
    /// Distinct stacks kept in the kernel (about 1 KiB each); past it a stack is lost,
    /// and shows as such.
    pub max_stacks: u32,
}

impl Default for MemleakOptions {
    fn default() -> Self {
        Self {
            library: None,
            interval_ms: IntervalMs::default(),
            max_stacks: STACKS_DEFAULT,
        }
    }
}

impl TrackerOptions for MemleakOptions {
    fn check(&self) -> Result<(), String> {
        check_max_stacks(self.max_stacks)
    }

    fn reports_totals(&self) -> bool {
        true
    }
}

/// Each program's allocator function, and whether it runs at the function's return.
fn hook_of(program: &str) -> Option<(&'static str, bool)> {
    Some(match program {
        "malloc_enter" => ("malloc", false),
        "malloc_exit" => ("malloc", true),
        "calloc_enter" => ("calloc", false),
        "calloc_exit" => ("calloc", true),
        "realloc_enter" => ("realloc", false),
        "realloc_exit" => ("realloc", true),
        "posix_memalign_enter" => ("posix_memalign", false),
        "posix_memalign_exit" => ("posix_memalign", true),
        "free_hook" => ("free", false),
        _ => return None,
    })
}

/// The allocator library of process `pid`, as this server can open it: a path as given,
/// or the mapped library whose file name starts with `name`, through `/proc/<pid>/root`
/// (so a library inside a container is found).
pub fn allocator_library(pid: u32, name: &str) -> Result<String, TrackerError> {
    if name.contains('/') {
        return Ok(name.to_string());
    }
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|err| TrackerError::Config(format!("no process {pid}: {err}")))?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            path.rsplit('/')
                .next()
                .is_some_and(|file| file.starts_with(name))
        })
        .map(|path| format!("/proc/{pid}/root{path}"))
        .ok_or_else(|| {
            TrackerError::Config(format!(
                "process {pid} maps no library named {name}* (a static binary? see the \
                 memleak option `library`)"
            ))
        })
}

impl Tracker for MemleakTracker {
    type Options = MemleakOptions;
    // Its uprobes attach to the target process's libc, named by the filter.
    const PRELOADS: bool = false;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, options: &MemleakOptions) -> Result<(), TrackerError> {
        // Every allocation of every process would pay for a uprobe: one process at a time.
        let pid = run.config().target_pid.ok_or_else(|| {
            TrackerError::Config("memleak traces one process: give its pid".to_string())
        })?;
        let library = allocator_library(pid, options.library.as_deref().unwrap_or("libc.so"))?;
        let pid = libc::pid_t::try_from(pid)
            .map_err(|_| TrackerError::Config(format!("no process {pid}")))?;
        let attach: Attach = Box::new(move |prog| {
            let program = prog.name().to_string_lossy();
            let (function, retprobe) = hook_of(&program)
                .unwrap_or_else(|| panic!("memleak.bpf.c program {program} has a hook"));
            let opts = UprobeOpts {
                retprobe,
                func_name: Some(function.to_string()),
                ..UprobeOpts::default()
            };
            // For this pid only: no other process pays for the breakpoints.
            prog.attach_uprobe_with_opts(pid, &library, 0, opts)
                .map(|link| vec![link])
        });
        run_stack_probe!(
            run,
            MemleakSkelBuilder,
            options,
            Some(attach),
            |_open| {},
            |row: types::memleak_row, stack| MemleakEvent {
                stack,
                allocations: row.allocations,
                bytes: row.bytes,
                frees: row.frees,
                freed_bytes: row.freed_bytes,
            }
        )
    }
}
