//! The bind tracker (libbpf-tools' bindsnoop): every bind() call, at its exit, with the
//! address and port asked for, the socket's protocol and the result.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Event, Tracker};
use crate::engine::{with_record, Run, TrackerError, TrackerOptions};
use crate::model::{EventBody, FieldFormat, FieldInfo, FieldType, FixedStr, TrackerInfo, Value};
use crate::{decode_header, run_ring_buffer_probe};

/// The generated skeleton; its `types` give the raw record layout (for tests and benchmarks).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/bind.skel.rs"));
}
use skel::{types, BindSkelBuilder};

static INFO: TrackerInfo = TrackerInfo {
    name: "bind",
    description: "bind() calls (bindsnoop): address and port asked for, protocol, result",
    fields: &[
        FieldInfo::new(
            "family",
            FieldType::Str,
            "ipv4, ipv6, unix, ... as the caller's address says",
        ),
        FieldInfo::new("addr", FieldType::Str, "the address asked for (ipv4, ipv6)"),
        FieldInfo::new(
            "port",
            FieldType::U64,
            "the port asked for; 0 lets the kernel pick",
        ),
        FieldInfo::new(
            "protocol",
            FieldType::Str,
            "the socket's protocol: tcp, udp, ... (a number for others)",
        ),
        FieldInfo::new("fd", FieldType::U64, "the socket's file descriptor"),
        FieldInfo::new(
            "ret",
            FieldType::I64,
            "0, or -errno: -98 (EADDRINUSE) for a port taken",
        )
        .shown_as(FieldFormat::Errno),
    ],
    weight: None,
    stacks: None,
};

const AF_UNIX: u16 = libc::AF_UNIX as u16;
const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

pub struct BindTracker;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BindEvent {
    pub family: u16,
    /// Text of the address for ipv4 and ipv6; empty otherwise.
    pub addr: FixedStr<48>,
    pub port: u16,
    pub protocol: u16,
    pub fd: i32,
    pub ret: i64,
}

fn family_name(family: u16) -> Option<&'static str> {
    Some(match family {
        AF_UNIX => "unix",
        AF_INET => "ipv4",
        AF_INET6 => "ipv6",
        _ => return None,
    })
}

fn protocol_name(protocol: u16) -> Option<&'static str> {
    Some(match i32::from(protocol) {
        libc::IPPROTO_TCP => "tcp",
        libc::IPPROTO_UDP => "udp",
        libc::IPPROTO_SCTP => "sctp",
        libc::IPPROTO_ICMP => "icmp",
        libc::IPPROTO_ICMPV6 => "icmpv6",
        libc::IPPROTO_RAW => "raw",
        _ => return None,
    })
}

impl EventBody for BindEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        "bind"
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        Some(match name {
            "family" => family_name(self.family).map_or(Value::U64(self.family.into()), Value::Str),
            "addr" if self.addr.as_str().is_empty() => Value::Null,
            "addr" => Value::Str(self.addr.as_str()),
            "port" => Value::U64(self.port.into()),
            "protocol" => match self.protocol {
                0 => Value::Null,
                p => protocol_name(p).map_or(Value::U64(p.into()), Value::Str),
            },
            "fd" => Value::U64(u64::try_from(self.fd).unwrap_or(0)),
            "ret" => Value::I64(self.ret),
            _ => return None,
        })
    }
}

/// Decodes one ring buffer record of `probes/bind.h`'s `struct bind_event`.
pub fn decode(bytes: &[u8], clock_offset: u64) -> Option<Event> {
    with_record(bytes, |raw: &types::bind_event| {
        let addr = match raw.family {
            AF_INET => {
                let [a, b, c, d, ..] = raw.addr;
                Ipv4Addr::new(a, b, c, d).to_string()
            }
            AF_INET6 => Ipv6Addr::from(raw.addr).to_string(),
            _ => String::new(),
        };
        Event {
            header: decode_header!(raw.header, clock_offset),
            body: BindEvent {
                family: raw.family,
                addr: FixedStr::from(addr.as_str()),
                port: raw.port,
                protocol: raw.protocol,
                fd: raw.fd,
                ret: raw.ret,
            }
            .into(),
        }
    })
}

/// The bind tracker's options.
#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct BindOptions {
    /// Report only the binds that failed (bindsnoop's -x shows them all, with errors).
    pub failed_only: bool,
}

impl TrackerOptions for BindOptions {}

impl Tracker for BindTracker {
    type Options = BindOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, options: &BindOptions) -> Result<(), TrackerError> {
        run_ring_buffer_probe!(run, BindSkelBuilder, decode, |open| {
            open.maps
                .rodata_data
                .as_deref_mut()
                .expect("bind.bpf.c declares read-only globals")
                .failed_only = options.failed_only;
        })
    }
}
