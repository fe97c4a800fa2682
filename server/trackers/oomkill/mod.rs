//! The oomkill tracker: each process the OOM killer chooses, on `oom:mark_victim`, with
//! the task whose allocation failed (the header: the filters select it), the victim's
//! memory at the kill and the memory cgroup limit that was hit.

use super::{Event, Tracker};
use crate::engine::{with_record, NoOptions, Run, TrackerError};
use crate::model::{EventBody, FieldInfo, FieldType, FixedStr, TrackerInfo, Value};
use crate::{decode_header, run_ring_buffer_probe};

/// The generated skeleton; its `types` give the raw record layout (for tests and benchmarks).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/oomkill.skel.rs"));
}
use skel::{types, OomkillSkelBuilder};

/// x86_64's page size, in which the kernel counts memory cgroup limits.
const PAGE_BYTES: u64 = 4096;

static INFO: TrackerInfo = TrackerInfo {
    name: "oomkill",
    description: "processes the OOM killer chose: the victim, its memory, the memory \
                  cgroup limit; pid and comm are the task whose allocation failed",
    fields: &[
        FieldInfo::new("victim_pid", FieldType::U64, "the process killed"),
        FieldInfo::new("victim_comm", FieldType::Str, "its command name"),
        FieldInfo::new("victim_uid", FieldType::U64, "its user id"),
        FieldInfo::measure(
            "rss_bytes",
            FieldType::U64,
            "its resident memory at the kill: anonymous, file and shared",
        ),
        FieldInfo::measure(
            "anon_rss_bytes",
            FieldType::U64,
            "its anonymous resident memory",
        ),
        FieldInfo::measure("total_vm_bytes", FieldType::U64, "its virtual memory"),
        FieldInfo::new(
            "limit_bytes",
            FieldType::U64,
            "the lowest memory limit from the triggering task's memory cgroup up to the \
             root; null when none is set (a system-wide OOM)",
        ),
        FieldInfo::new(
            "oom_score_adj",
            FieldType::I64,
            "the victim's oom_score_adj, -1000..1000",
        ),
    ],
    weight: None,
    stacks: None,
};

pub struct OomkillTracker;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OomkillEvent {
    pub victim_pid: u32,
    pub victim_comm: FixedStr<16>,
    pub victim_uid: u32,
    pub rss_kb: u64,
    pub anon_rss_kb: u64,
    pub total_vm_kb: u64,
    pub limit_pages: Option<u64>,
    pub oom_score_adj: i32,
}

impl EventBody for OomkillEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        "kill"
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        Some(match name {
            "victim_pid" => Value::U64(self.victim_pid.into()),
            "victim_comm" => Value::Str(self.victim_comm.as_str()),
            "victim_uid" => Value::U64(self.victim_uid.into()),
            "rss_bytes" => Value::U64(self.rss_kb * 1024),
            "anon_rss_bytes" => Value::U64(self.anon_rss_kb * 1024),
            "total_vm_bytes" => Value::U64(self.total_vm_kb * 1024),
            "limit_bytes" => self
                .limit_pages
                .map_or(Value::Null, |pages| Value::U64(pages * PAGE_BYTES)),
            "oom_score_adj" => Value::I64(self.oom_score_adj.into()),
            _ => return None,
        })
    }
}

/// Decodes one ring buffer record of `probes/oomkill.h`'s `struct oomkill_event`.
pub fn decode(bytes: &[u8], clock_offset: u64) -> Option<Event> {
    with_record(bytes, |raw: &types::oomkill_event| Event {
        header: decode_header!(raw.header, clock_offset),
        body: OomkillEvent {
            victim_pid: raw.victim_pid,
            victim_comm: FixedStr::from_c_chars(&raw.victim_comm),
            victim_uid: raw.victim_uid,
            rss_kb: raw.anon_rss_kb + raw.file_rss_kb + raw.shmem_rss_kb,
            anon_rss_kb: raw.anon_rss_kb,
            total_vm_kb: raw.total_vm_kb,
            limit_pages: (raw.limit_pages != 0).then_some(raw.limit_pages),
            oom_score_adj: raw.oom_score_adj,
        }
        .into(),
    })
}

impl Tracker for OomkillTracker {
    type Options = NoOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, _: &NoOptions) -> Result<(), TrackerError> {
        run_ring_buffer_probe!(run, OomkillSkelBuilder, decode)
    }
}
