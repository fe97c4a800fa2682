//! The offcpu tracker (libbpf-tools' offcputime): where tasks wait off a CPU (sleeping,
//! blocked on I/O or locks, preempted), as the stacks they left the CPU on, with the time
//! they spent away. Counted in the kernel per (process, user stack, kernel stack) and
//! handed over each interval with the stack symbolized and folded.

use super::{Event, Tracker};
use crate::engine::stacks::{check_max_stacks, StackKinds, STACKS_DEFAULT, STACK_FIELD};
use crate::engine::{IntervalMs, Run, TrackerError, TrackerOptions};
use crate::model::{EventBody, FieldFormat, FieldInfo, FieldType, TrackerInfo, Value};
use crate::run_stack_probe;

/// The generated skeleton; its `types` give the raw record layout (for tests and benchmarks).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/offcpu.skel.rs"));
}
use skel::{types, OffcpuSkelBuilder};

static INFO: TrackerInfo = TrackerInfo {
    name: "offcpu",
    description: "time off CPU by stack: where tasks sleep, block or wait to run again",
    fields: &[
        STACK_FIELD,
        FieldInfo::total(
            "blocks",
            FieldType::U64,
            "times tasks left a CPU on this stack",
        ),
        FieldInfo::total(
            "offcpu_ns",
            FieldType::U64,
            "the time they then spent off it",
        )
        .shown_as(FieldFormat::Duration),
    ],
    weight: Some("blocks"),
    stacks: Some("offcpu_ns"),
};

pub struct OffcpuTracker;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OffcpuEvent {
    pub stack: &'static str,
    pub blocks: u64,
    pub offcpu_ns: u64,
}

impl EventBody for OffcpuEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        "offcpu"
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        Some(match name {
            "stack" => Value::Str(self.stack),
            "blocks" => Value::U64(self.blocks),
            "offcpu_ns" => Value::U64(self.offcpu_ns),
            _ => return None,
        })
    }
}

/// The offcpu tracker's options.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OffcpuOptions {
    /// Only times off CPU at least this long, in microseconds.
    pub min_block_us: u64,
    /// Only times off CPU shorter than this, in microseconds (none: no bound).
    pub max_block_us: Option<u64>,
    /// Which stacks to take: `both`, `user` or `kernel`.
    pub stacks: StackKinds,
    /// How often counts are handed over, in milliseconds.
    pub interval_ms: IntervalMs,
    /// Distinct stacks kept in the kernel (about 1 KiB each); past it a stack is lost,
    /// and shows as such.
    pub max_stacks: u32,
}

impl Default for OffcpuOptions {
    fn default() -> Self {
        Self {
            min_block_us: 1,
            max_block_us: None,
            stacks: StackKinds::Both,
            interval_ms: IntervalMs::default(),
            max_stacks: STACKS_DEFAULT,
        }
    }
}

impl TrackerOptions for OffcpuOptions {
    fn check(&self) -> Result<(), String> {
        if self
            .max_block_us
            .is_some_and(|max| max <= self.min_block_us)
        {
            return Err("max_block_us must be above min_block_us".to_string());
        }
        check_max_stacks(self.max_stacks)
    }

    fn reports_totals(&self) -> bool {
        true
    }
}

impl Tracker for OffcpuTracker {
    type Options = OffcpuOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, options: &OffcpuOptions) -> Result<(), TrackerError> {
        run_stack_probe!(
            run,
            OffcpuSkelBuilder,
            options,
            None,
            |open| {
                let rodata = open
                    .maps
                    .rodata_data
                    .as_deref_mut()
                    .expect("offcpu.bpf.c declares read-only globals");
                rodata.user_stacks = options.stacks.user();
                rodata.kernel_stacks = options.stacks.kernel();
                rodata.min_block_us = options.min_block_us;
                rodata.max_block_us = options.max_block_us.unwrap_or(0);
            },
            |row: types::stack_row, stack| OffcpuEvent {
                stack,
                blocks: row.count,
                offcpu_ns: row.total_ns,
            }
        )
    }
}
