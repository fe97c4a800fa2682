//! The profile tracker (libbpf-tools' profile): where processes spend CPU time, as stacks
//! sampled at a fixed frequency on every CPU. Samples are counted in the kernel per
//! (process, user stack, kernel stack) and handed over each interval with the stack
//! symbolized and folded; `foldedStacks` and `/sessions/<id>/flamegraph.svg` draw them.

use std::os::fd::IntoRawFd;

use super::{Event, Tracker};
use crate::engine::stacks::{
    check_max_stacks, cpu_clock_events, StackKinds, STACKS_DEFAULT, STACK_FIELD,
};
use crate::engine::{IntervalMs, Run, TrackerError, TrackerOptions};
use crate::model::{EventBody, FieldInfo, FieldType, TrackerInfo, Value};
use crate::run_stack_probe;

/// The generated skeleton; its `types` give the raw record layout (for tests and benchmarks).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/profile.skel.rs"));
}
use skel::{types, ProfileSkelBuilder};

static INFO: TrackerInfo = TrackerInfo {
    name: "profile",
    description: "CPU samples by stack: where processes spend CPU time, at a fixed \
                  frequency on every CPU",
    fields: &[
        STACK_FIELD,
        FieldInfo::total("samples", FieldType::U64, "samples taken on this stack"),
    ],
    weight: Some("samples"),
    stacks: Some("samples"),
};

pub struct ProfileTracker;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProfileEvent {
    pub stack: &'static str,
    pub samples: u64,
}

impl EventBody for ProfileEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        "samples"
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        Some(match name {
            "stack" => Value::Str(self.stack),
            "samples" => Value::U64(self.samples),
            _ => return None,
        })
    }
}

/// The profile tracker's options.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileOptions {
    /// Samples per second on each CPU (99 is perf's and bpftrace's usual choice: it does
    /// not beat in step with timers at round frequencies).
    pub frequency: u64,
    /// Which stacks to take: `both`, `user` or `kernel`.
    pub stacks: StackKinds,
    /// Sample the idle task (pid 0) too.
    pub idle: bool,
    /// How often counts are handed over, in milliseconds.
    pub interval_ms: IntervalMs,
    /// Distinct stacks kept in the kernel (about 1 KiB each); past it a stack is lost,
    /// and shows as such.
    pub max_stacks: u32,
}

/// perf's usual limit (kernel.perf_event_max_sample_rate may be lower).
const MAX_FREQUENCY: u64 = 10_000;

impl Default for ProfileOptions {
    fn default() -> Self {
        Self {
            frequency: 99,
            stacks: StackKinds::Both,
            idle: false,
            interval_ms: IntervalMs::default(),
            max_stacks: STACKS_DEFAULT,
        }
    }
}

impl TrackerOptions for ProfileOptions {
    fn check(&self) -> Result<(), String> {
        if !(1..=MAX_FREQUENCY).contains(&self.frequency) {
            return Err(format!(
                "frequency must be between 1 and {MAX_FREQUENCY} Hz, got {}",
                self.frequency
            ));
        }
        check_max_stacks(self.max_stacks)
    }

    fn reports_totals(&self) -> bool {
        true
    }
}

impl Tracker for ProfileTracker {
    type Options = ProfileOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, options: &ProfileOptions) -> Result<(), TrackerError> {
        let mut clocks = cpu_clock_events(options.frequency)?;
        // A perf event link owns its event: libbpf closes it with the link.
        let attach: crate::engine::Attach = Box::new(move |prog| {
            std::mem::take(&mut clocks)
                .into_iter()
                .map(|clock| prog.attach_perf_event(clock.into_raw_fd()))
                .collect()
        });
        run_stack_probe!(
            run,
            ProfileSkelBuilder,
            options,
            Some(attach),
            |open| {
                let rodata = open
                    .maps
                    .rodata_data
                    .as_deref_mut()
                    .expect("profile.bpf.c declares read-only globals");
                rodata.user_stacks = options.stacks.user();
                rodata.kernel_stacks = options.stacks.kernel();
                rodata.include_idle = options.idle;
            },
            |row: types::stack_row, stack| ProfileEvent {
                stack,
                samples: row.count,
            }
        )
    }
}
