//! The cgroup tracker: cgroups of the v2 hierarchy made and removed, on
//! `cgroup:cgroup_mkdir` and `cgroup:cgroup_rmdir`, with the task that did it (the header:
//! the filters select it). A container runtime makes a container's cgroup before the
//! container runs anything: the container manager follows new containers with it.

use super::{Event, Tracker};
use crate::engine::{with_record, NoOptions, Run, TrackerError};
use crate::model::{EventBody, FieldInfo, FieldType, FixedStr, TrackerInfo, Value};
use crate::{decode_header, run_ring_buffer_probe};

/// The generated skeleton; its `types` give the raw record layout (for tests and benchmarks).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/cgroup.skel.rs"));
}
use skel::{types, CgroupSkelBuilder};

static INFO: TrackerInfo = TrackerInfo {
    name: "cgroup",
    description: "cgroups (v2) made and removed: containers being created and torn down; \
                  pid and comm are the task that did it",
    fields: &[
        FieldInfo::new(
            "path",
            FieldType::Str,
            "the cgroup's path below the v2 mount, e.g. /docker/<container id>",
        ),
        FieldInfo::new(
            "target_cgroup_id",
            FieldType::U64,
            "the cgroup's id (its directory's inode): the cgroup_id its tasks' events carry",
        ),
        FieldInfo::new(
            "level",
            FieldType::U64,
            "its depth: 1 for a child of the root",
        ),
    ],
    weight: None,
    stacks: None,
};

/// `CGROUP_RMDIR` of `enum cgroup_event_kind` in probes/cgroup.h.
const RMDIR: u32 = 2;

pub struct CgroupTracker;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CgroupEvent {
    /// Removed rather than made.
    pub removed: bool,
    pub id: u64,
    pub level: u32,
    pub path: FixedStr<256>,
}

impl EventBody for CgroupEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        match self.removed {
            false => "mkdir",
            true => "rmdir",
        }
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        Some(match name {
            "path" => Value::Str(self.path.as_str()),
            "target_cgroup_id" => Value::U64(self.id),
            "level" => Value::U64(self.level.into()),
            _ => return None,
        })
    }
}

/// Decodes one ring buffer record of `probes/cgroup.h`'s `struct cgroup_event`.
pub fn decode(bytes: &[u8], clock_offset: u64) -> Option<Event> {
    with_record(bytes, |raw: &types::cgroup_event| Event {
        header: decode_header!(raw.header, clock_offset),
        body: CgroupEvent {
            removed: raw.kind == RMDIR,
            id: raw.id,
            level: raw.level.max(0) as u32,
            path: FixedStr::from_c_chars(&raw.path),
        }
        .into(),
    })
}

impl Tracker for CgroupTracker {
    type Options = NoOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, _: &NoOptions) -> Result<(), TrackerError> {
        run_ring_buffer_probe!(run, CgroupSkelBuilder, decode)
    }
}
