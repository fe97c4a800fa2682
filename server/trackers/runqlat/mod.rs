//! The runqlat tracker (libbpf-tools' runqlat): how long tasks waited on a run queue
//! before they ran, an event each time one gets the CPU after waiting. runqlat's table is
//! `--histogram latency_ns` (per process with `--group-by pid`).

use super::{Event, Tracker};
use crate::engine::{with_record, NoOptions, Run, TrackerError};
use crate::model::{EventBody, FieldFormat, FieldInfo, FieldType, TrackerInfo, Value};
use crate::{decode_header, run_ring_buffer_probe};

/// The generated skeleton; its `types` give the raw record layout (for tests and benchmarks).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/runqlat.skel.rs"));
}
use skel::{types, RunqlatSkelBuilder};

static INFO: TrackerInfo = TrackerInfo {
    name: "runqlat",
    description: "run queue latency: how long a task waited, runnable, before it ran; pid \
                  and comm are the waiting task's",
    fields: &[
        FieldInfo::measure("latency_ns", FieldType::U64, "runnable to running")
            .shown_as(FieldFormat::Duration),
        FieldInfo::new("tid", FieldType::U64, "the thread that waited"),
        FieldInfo::new("cpu", FieldType::U64, "the CPU it then ran on"),
        FieldInfo::new(
            "reason",
            FieldType::Str,
            "woken (it had slept) or preempted (it was running and still runnable)",
        ),
    ],
    weight: None,
    stacks: None,
};

pub struct RunqlatTracker;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunqlatEvent {
    pub latency_ns: u64,
    pub tid: u32,
    pub cpu: u32,
    pub preempted: bool,
}

impl EventBody for RunqlatEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        "run"
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        Some(match name {
            "latency_ns" => Value::U64(self.latency_ns),
            "tid" => Value::U64(self.tid.into()),
            "cpu" => Value::U64(self.cpu.into()),
            "reason" => Value::Str(if self.preempted { "preempted" } else { "woken" }),
            _ => return None,
        })
    }
}

/// Decodes one ring buffer record of `probes/runqlat.h`'s `struct runqlat_event`.
pub fn decode(bytes: &[u8], clock_offset: u64) -> Option<Event> {
    with_record(bytes, |raw: &types::runqlat_event| Event {
        header: decode_header!(raw.header, clock_offset),
        body: RunqlatEvent {
            latency_ns: raw.latency_ns,
            tid: raw.tid,
            cpu: raw.cpu,
            preempted: raw.preempted != 0,
        }
        .into(),
    })
}

impl Tracker for RunqlatTracker {
    type Options = NoOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, _: &NoOptions) -> Result<(), TrackerError> {
        run_ring_buffer_probe!(run, RunqlatSkelBuilder, decode)
    }
}
