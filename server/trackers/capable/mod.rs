//! The capable tracker: every capability check and its verdict, on
//! `capability:cap_capable`, in the context of the task whose capability is checked (the
//! filters select it). libbpf-tools' capable gets the same from a kprobe on the function
//! the tracepoint sits in.

use super::{Event, Tracker};
use crate::engine::{with_record, Run, TrackerError, TrackerOptions};
use crate::model::{errno_name, EventBody, FieldInfo, FieldType, TrackerInfo, Value};
use crate::{decode_header, run_ring_buffer_probe};

/// The generated skeleton; its `types` give the raw record layout (for tests and benchmarks).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/capable.skel.rs"));
}
use skel::{types, CapableSkelBuilder};

static INFO: TrackerInfo = TrackerInfo {
    name: "capable",
    description: "capability checks (capable): which capability a task needed and \
                  whether it had it",
    fields: &[
        FieldInfo::new(
            "capability",
            FieldType::Str,
            "the capability checked, e.g. CAP_NET_BIND_SERVICE",
        ),
        FieldInfo::new("cap", FieldType::U64, "its number"),
        FieldInfo::new("verdict", FieldType::Str, "granted or denied"),
        FieldInfo::new(
            "error",
            FieldType::Str,
            "why it was denied, EPERM (denied checks)",
        ),
        FieldInfo::new(
            "target_user_ns",
            FieldType::U64,
            "the user namespace the capability was checked against (its inode number): a \
             container's root has its capabilities in its own",
        ),
    ],
    weight: None,
    stacks: None,
};

/// include/uapi/linux/capability.h, by number.
const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

pub struct CapableTracker;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CapableEvent {
    pub cap: u32,
    /// 0 when granted, else the -errno the check returned.
    pub ret: i32,
    pub target_user_ns: u32,
}

impl EventBody for CapableEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        "check"
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        Some(match name {
            "capability" => CAPABILITIES
                .get(self.cap as usize)
                .map_or(Value::Null, |n| Value::Str(n)),
            "cap" => Value::U64(self.cap.into()),
            "verdict" => Value::Str(if self.ret == 0 { "granted" } else { "denied" }),
            "error" => match self.ret {
                0 => Value::Null,
                ret => errno_name(-ret).map_or(Value::I64(ret.into()), Value::Str),
            },
            "target_user_ns" => Value::U64(self.target_user_ns.into()),
            _ => return None,
        })
    }
}

/// Decodes one ring buffer record of `probes/capable.h`'s `struct capable_event`.
pub fn decode(bytes: &[u8], clock_offset: u64) -> Option<Event> {
    with_record(bytes, |raw: &types::capable_event| {
        Some(Event {
            header: decode_header!(raw.header, clock_offset),
            body: CapableEvent {
                cap: u32::try_from(raw.cap).ok()?,
                ret: raw.ret,
                target_user_ns: raw.target_user_ns,
            }
            .into(),
        })
    })
    .flatten()
}

/// The capable tracker's options.
#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct CapableOptions {
    /// Report only these capabilities (`CAP_CHOWN`, `chown` or `0`; filtered in the
    /// kernel); empty for all.
    pub capabilities: Vec<String>,
    /// Report only the checks that were denied.
    pub denied_only: bool,
}

/// The capability a name or number means: `CAP_CHOWN`, `chown`, `0`.
fn parse_capability(text: &str) -> Option<u32> {
    if let Ok(number) = text.parse::<usize>() {
        return (number < CAPABILITIES.len()).then_some(number as u32);
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITIES
        .iter()
        .position(|c| c[4..] == *name)
        .map(|i| i as u32)
}

/// Bit cap for each capability; all bits for none.
pub fn cap_mask(capabilities: &[String]) -> Result<u64, String> {
    if capabilities.is_empty() {
        return Ok(u64::MAX);
    }
    capabilities.iter().try_fold(0u64, |mask, text| {
        parse_capability(text)
            .map(|cap| mask | 1 << cap)
            .ok_or_else(|| format!("`{text}` is not a capability (CAP_CHOWN, chown, 0)"))
    })
}

impl TrackerOptions for CapableOptions {
    fn check(&self) -> Result<(), String> {
        cap_mask(&self.capabilities).map(drop)
    }
}

impl Tracker for CapableTracker {
    type Options = CapableOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, options: &CapableOptions) -> Result<(), TrackerError> {
        let mask = cap_mask(&options.capabilities).map_err(TrackerError::Config)?;
        run_ring_buffer_probe!(run, CapableSkelBuilder, decode, |open| {
            let rodata = open
                .maps
                .rodata_data
                .as_deref_mut()
                .expect("capable.bpf.c declares read-only globals");
            rodata.cap_mask = mask;
            rodata.denied_only = options.denied_only;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_in_every_spelling() {
        let mask =
            |names: &[&str]| cap_mask(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>());
        assert_eq!(mask(&[]), Ok(u64::MAX));
        assert_eq!(
            mask(&["CAP_CHOWN", "net_bind_service", "21"]),
            Ok(1 | 1 << 10 | 1 << 21)
        );
        assert_eq!(mask(&["CAP_CHECKPOINT_RESTORE"]), Ok(1 << 40));
        assert_eq!(
            mask(&["CAP_NOPE"]),
            Err("`CAP_NOPE` is not a capability (CAP_CHOWN, chown, 0)".to_string())
        );
        assert!(mask(&["41"]).is_err());
    }

    #[test]
    fn verdicts_and_errors() {
        let granted = CapableEvent {
            cap: 10,
            ret: 0,
            target_user_ns: 1,
        };
        assert_eq!(
            granted.get("capability"),
            Some(Value::Str("CAP_NET_BIND_SERVICE"))
        );
        assert_eq!(granted.get("verdict"), Some(Value::Str("granted")));
        assert_eq!(granted.get("error"), Some(Value::Null));
        let denied = CapableEvent {
            cap: 0,
            ret: -1,
            target_user_ns: 1,
        };
        assert_eq!(denied.get("verdict"), Some(Value::Str("denied")));
        assert_eq!(denied.get("error"), Some(Value::Str("EPERM")));
    }
}
