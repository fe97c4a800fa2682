//! The mount tracker (libbpf-tools' mountsnoop): mount, umount2 and the new mount API
//! (fsopen, fsconfig, fsmount, move_mount), each at its exit with its arguments and
//! result.

use super::{Event, Tracker};
use crate::engine::{with_record, NoOptions, Run, TrackerError};
use crate::model::{EventBody, FieldFormat, FieldInfo, FieldType, FixedStr, TrackerInfo, Value};
use crate::{decode_header, run_ring_buffer_probe};

/// The generated skeleton; its `types` give the raw record layout (for tests and benchmarks).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/mount.skel.rs"));
}
use skel::{types, MountSkelBuilder};

static INFO: TrackerInfo = TrackerInfo {
    name: "mount",
    description: "mount, umount and the new mount API (fsopen, fsconfig, fsmount, \
                  move_mount): what was mounted where, with flags and result",
    fields: &[
        FieldInfo::new("fstype", FieldType::Str, "filesystem type (mount, fsopen)"),
        FieldInfo::new(
            "source",
            FieldType::Str,
            "what is mounted (mount), the path moved from (move_mount), the key set \
             (fsconfig); its first 127 bytes",
        )
        .shown_as(FieldFormat::Path),
        FieldInfo::new(
            "target",
            FieldType::Str,
            "where (mount, umount, move_mount's destination)",
        )
        .shown_as(FieldFormat::Path),
        FieldInfo::new(
            "flags",
            FieldType::U64,
            "the call's flags: MS_* (mount), MNT_* (umount), fsconfig's command",
        )
        .shown_as(FieldFormat::Hex),
        FieldInfo::new(
            "data",
            FieldType::Str,
            "mount options (mount), the value set (fsconfig)",
        ),
        FieldInfo::new(
            "fd",
            FieldType::I64,
            "the filesystem context or mount descriptor (fsconfig, fsmount, move_mount's \
             from_dfd)",
        ),
        FieldInfo::new("ret", FieldType::I64, "0 or a descriptor, or -errno")
            .shown_as(FieldFormat::Errno),
    ],
    weight: None,
    stacks: None,
};

const KINDS: [&str; 6] = [
    "mount",
    "umount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "move_mount",
];

pub struct MountTracker;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MountEvent {
    /// The call, as an index of [`KINDS`].
    pub call: u8,
    pub fstype: FixedStr<32>,
    pub source: FixedStr<128>,
    pub target: FixedStr<256>,
    pub data: FixedStr<64>,
    pub flags: u64,
    pub fd: Option<i32>,
    pub ret: i64,
}

/// A string field: null when the call has none.
fn text(s: &str) -> Value<'_> {
    if s.is_empty() {
        Value::Null
    } else {
        Value::Str(s)
    }
}

impl EventBody for MountEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        KINDS
            .get(usize::from(self.call))
            .copied()
            .unwrap_or("unknown")
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        Some(match name {
            "fstype" => text(self.fstype.as_str()),
            "source" => text(self.source.as_str()),
            "target" => text(self.target.as_str()),
            "data" => text(self.data.as_str()),
            "flags" => Value::U64(self.flags),
            "fd" => self.fd.map_or(Value::Null, |fd| Value::I64(fd.into())),
            "ret" => Value::I64(self.ret),
            _ => return None,
        })
    }
}

/// Decodes one ring buffer record of `probes/mount.h`'s `struct mount_event`.
pub fn decode(bytes: &[u8], clock_offset: u64) -> Option<Event> {
    with_record(bytes, |raw: &types::mount_event| {
        // Calls count from 1 in probes/mount.h.
        let call = u8::try_from(raw.call.checked_sub(1)?).ok()?;
        KINDS.get(usize::from(call))?;
        Some(Event {
            header: decode_header!(raw.header, clock_offset),
            body: MountEvent {
                call,
                fstype: FixedStr::from_c_chars(&raw.fstype),
                source: FixedStr::from_c_chars(&raw.source),
                target: FixedStr::from_c_chars(&raw.target),
                data: FixedStr::from_c_chars(&raw.data),
                flags: raw.flags,
                fd: (raw.fd >= 0).then_some(raw.fd),
                ret: raw.ret,
            }
            .into(),
        })
    })
    .flatten()
}

impl Tracker for MountTracker {
    type Options = NoOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, _: &NoOptions) -> Result<(), TrackerError> {
        run_ring_buffer_probe!(run, MountSkelBuilder, decode)
    }
}
