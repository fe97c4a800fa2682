//! The filelife tracker (libbpf-tools' filelife): files created and deleted while traced,
//! with how long each lived, reported at the deletion. See `probes/filelife.bpf.c` for how
//! a deletion is matched to its creation without kprobes.

use super::{Event, Tracker};
use crate::engine::{with_record, NoOptions, Run, TrackerError};
use crate::model::{EventBody, FieldFormat, FieldInfo, FieldType, FixedStr, TrackerInfo, Value};
use crate::{decode_header, run_ring_buffer_probe};

/// The generated skeleton; its `types` give the raw record layout (for tests and benchmarks).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/filelife.skel.rs"));
}
use skel::{types, FilelifeSkelBuilder};

static INFO: TrackerInfo = TrackerInfo {
    name: "filelife",
    description: "short-lived files (filelife): created by openat, deleted by unlink or \
                  unlinkat, with their lifetime; pid and comm are the deleting task's",
    fields: &[
        FieldInfo::new(
            "path",
            FieldType::Str,
            "the file's full path when it was created",
        )
        .shown_as(FieldFormat::Path),
        FieldInfo::measure("lifetime_ns", FieldType::U64, "creation to deletion")
            .shown_as(FieldFormat::Duration),
        FieldInfo::new("creator_pid", FieldType::U64, "the process that created it"),
        FieldInfo::new("creator_comm", FieldType::Str, "its command name"),
    ],
    weight: None,
    stacks: None,
};

pub struct FilelifeTracker;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FilelifeEvent {
    pub path: FixedStr<256>,
    pub lifetime_ns: u64,
    pub creator_pid: u32,
    pub creator_comm: FixedStr<16>,
}

impl EventBody for FilelifeEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        "deleted"
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        Some(match name {
            "path" => Value::Str(self.path.as_str()),
            "lifetime_ns" => Value::U64(self.lifetime_ns),
            "creator_pid" => Value::U64(self.creator_pid.into()),
            "creator_comm" => Value::Str(self.creator_comm.as_str()),
            _ => return None,
        })
    }
}

/// Decodes one ring buffer record of `probes/filelife.h`'s `struct filelife_event`.
pub fn decode(bytes: &[u8], clock_offset: u64) -> Option<Event> {
    with_record(bytes, |raw: &types::filelife_event| {
        let path = raw.path.get(usize::from(raw.path_start)..)?;
        Some(Event {
            header: decode_header!(raw.header, clock_offset),
            body: FilelifeEvent {
                path: FixedStr::from_c_chars(path),
                lifetime_ns: raw.lifetime_ns,
                creator_pid: raw.creator_pid,
                creator_comm: FixedStr::from_c_chars(&raw.creator_comm),
            }
            .into(),
        })
    })
    .flatten()
}

impl Tracker for FilelifeTracker {
    type Options = NoOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, _: &NoOptions) -> Result<(), TrackerError> {
        run_ring_buffer_probe!(run, FilelifeSkelBuilder, decode)
    }
}
