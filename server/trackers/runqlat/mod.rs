//! The runqlat tracker (libbpf-tools' runqlat): how long tasks waited on a run queue
//! before they ran. In aggregate mode (the default) the kernel counts the waits per
//! process, reason and power-of-two latency bucket, as runqlat does; stream mode reports
//! each time a task gets the CPU after waiting. runqlat's table is `--histogram
//! latency_ns` (per process with `--group-by pid`).

use super::{Event, Tracker};
use crate::engine::{with_record, IntervalMs, Mode, Run, TrackerError, TrackerOptions};
use crate::model::{EventBody, FieldFormat, FieldInfo, FieldType, TrackerInfo, Value};
use crate::{decode_header, run_bucket_probe};

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
        FieldInfo::total(
            "runs",
            FieldType::U64,
            "waits: 1 in stream mode, per interval and latency bucket in aggregate mode",
        ),
        FieldInfo::total(
            "latency_ns",
            FieldType::U64,
            "runnable to running (summed over the waits in aggregate mode)",
        )
        .shown_as(FieldFormat::Duration),
        FieldInfo::new(
            "tid",
            FieldType::U64,
            "the thread that waited (stream mode)",
        ),
        FieldInfo::new(
            "cpu",
            FieldType::U64,
            "the CPU it then ran on (stream mode)",
        ),
        FieldInfo::new(
            "reason",
            FieldType::Str,
            "woken (it had slept) or preempted (it was running and still runnable)",
        ),
    ],
    weight: Some("runs"),
    stacks: None,
};

pub struct RunqlatTracker;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunqlatEvent {
    /// 1 for one wait (stream mode).
    pub runs: u64,
    pub latency_ns: u64,
    /// The thread and the CPU it ran on; `None` for a row of waits (aggregate mode).
    pub ran: Option<(u32, u32)>,
    pub preempted: bool,
}

impl EventBody for RunqlatEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        if self.ran.is_some() {
            "run"
        } else {
            "runs"
        }
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        let ran =
            |f: fn((u32, u32)) -> u32| self.ran.map_or(Value::Null, |r| Value::U64(f(r).into()));
        Some(match name {
            "runs" => Value::U64(self.runs),
            "latency_ns" => Value::U64(self.latency_ns),
            "tid" => ran(|(tid, _)| tid),
            "cpu" => ran(|(_, cpu)| cpu),
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
            runs: 1,
            latency_ns: raw.latency_ns,
            ran: Some((raw.tid, raw.cpu)),
            preempted: raw.preempted != 0,
        }
        .into(),
    })
}

/// The runqlat tracker's options.
#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct RunqlatOptions {
    /// `aggregate` counts waits in the kernel per process, reason and power-of-two
    /// latency bucket and reports rows every interval (cheapest, as runqlat); `stream`
    /// reports every wait with its thread and CPU.
    pub mode: Mode,
    /// How often aggregate mode reports, in milliseconds.
    pub interval_ms: IntervalMs,
    /// Leave out latencies below this many microseconds (in the kernel).
    pub min_latency_us: u64,
}

impl TrackerOptions for RunqlatOptions {
    fn reports_totals(&self) -> bool {
        self.mode == Mode::Aggregate
    }

    fn totals_per_log2_bucket(&self) -> &'static [&'static str] {
        &["latency_ns"]
    }

    fn empty_fields(&self) -> Vec<&'static str> {
        match self.mode {
            Mode::Aggregate => vec!["tid", "cpu"],
            Mode::Stream => Vec::new(),
        }
    }
}

impl Tracker for RunqlatTracker {
    type Options = RunqlatOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, options: &RunqlatOptions) -> Result<(), TrackerError> {
        let settings = crate::engine::buckets::BucketSettings::new(
            options.mode,
            options.interval_ms,
            options.min_latency_us,
        );
        run_bucket_probe!(
            run,
            RunqlatSkelBuilder,
            decode,
            settings,
            |_open| {},
            |key: types::runqlat_key, row: types::runqlat_row| RunqlatEvent {
                runs: row.runs,
                latency_ns: row.latency_ns,
                ran: None,
                preempted: key.preempted != 0,
            }
        )
    }
}
