//! The tcp tracker: TCP connects (active opens), accepts (passive opens) and closes, on
//! `sock:inet_sock_set_state` and the exits of `accept`/`accept4`.
//!
//! Every event carries the identity of the task that opened the connection: the
//! connecting task, or the task whose `accept` returned the socket. State changes run in
//! softirq or in any task's context, so the probe remembers the opener per socket, and the
//! pid, comm and cgroup filters apply to the opener.

use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libbpf_rs::skel::{Skel, SkelBuilder};

use crate::event::{Event, EventBody, FieldInfo, FieldType, FixedStr, Value};
use crate::tracker_manager::{with_record, Run, Tracker, TrackerError, TrackerInfo};
use crate::{apply_common_config, decode_header};

/// The generated skeleton; its `types` give the raw record layout (for tests and benchmarks).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/tcp.skel.rs"));
}
use skel::{types, TcpSkelBuilder};

const CONNECT: u32 = 1;
const ACCEPT: u32 = 2;
const CLOSE: u32 = 3;

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

static INFO: TrackerInfo = TrackerInfo {
    name: "tcp",
    description: "TCP connect, accept and close: addresses, ports, connect latency, \
                  lifetime, bytes and smoothed RTT; pid and comm are the opener's",
    fields: &[
        FieldInfo::new("family", FieldType::Str, "ipv4 or ipv6"),
        FieldInfo::new("saddr", FieldType::Str, "local address"),
        FieldInfo::new("daddr", FieldType::Str, "remote address"),
        FieldInfo::new("sport", FieldType::U64, "local port"),
        FieldInfo::new("dport", FieldType::U64, "remote port"),
        FieldInfo::new(
            "latency_ns",
            FieldType::U64,
            "SYN sent to established (connect events)",
        ),
        FieldInfo::new(
            "lifetime_ns",
            FieldType::U64,
            "connect() or the passive open to close (close events)",
        ),
        FieldInfo::new(
            "bytes_sent",
            FieldType::U64,
            "payload bytes sent, retransmissions not counted (close events)",
        ),
        FieldInfo::new(
            "bytes_received",
            FieldType::U64,
            "payload bytes received (close events)",
        ),
        FieldInfo::new(
            "srtt_us",
            FieldType::U64,
            "smoothed round-trip time at the event, microseconds",
        ),
    ],
};

pub struct TcpTracker;

/// The longest text form of an IPv6 address (`ffff:...:255.255.255.255`).
const ADDR_LEN: usize = 45;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TcpEvent {
    pub what: TcpKind,
    pub saddr: FixedStr<ADDR_LEN>,
    pub daddr: FixedStr<ADDR_LEN>,
    pub ipv6: bool,
    pub sport: u16,
    pub dport: u16,
    pub srtt_us: u32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TcpKind {
    Connect {
        latency_ns: u64,
    },
    Accept,
    Close {
        lifetime_ns: u64,
        bytes_sent: u64,
        bytes_received: u64,
    },
}

impl EventBody for TcpEvent {
    fn tracker(&self) -> &'static str {
        INFO.name
    }

    fn kind(&self) -> &'static str {
        match self.what {
            TcpKind::Connect { .. } => "connect",
            TcpKind::Accept => "accept",
            TcpKind::Close { .. } => "close",
        }
    }

    fn visit(&self, visit: &mut dyn FnMut(&str, Value<'_>)) {
        for field in INFO.fields {
            visit(field.name, self.get(field.name).unwrap_or(Value::Null));
        }
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        Some(match (self.what, name) {
            (_, "family") => Value::Str(if self.ipv6 { "ipv6" } else { "ipv4" }),
            (_, "saddr") => Value::Str(self.saddr.as_str()),
            (_, "daddr") => Value::Str(self.daddr.as_str()),
            (_, "sport") => Value::U64(self.sport.into()),
            (_, "dport") => Value::U64(self.dport.into()),
            (_, "srtt_us") => Value::U64(self.srtt_us.into()),
            (TcpKind::Connect { latency_ns }, "latency_ns") => Value::U64(latency_ns),
            (TcpKind::Close { lifetime_ns, .. }, "lifetime_ns") => Value::U64(lifetime_ns),
            (TcpKind::Close { bytes_sent, .. }, "bytes_sent") => Value::U64(bytes_sent),
            (TcpKind::Close { bytes_received, .. }, "bytes_received") => Value::U64(bytes_received),
            (_, "latency_ns" | "lifetime_ns" | "bytes_sent" | "bytes_received") => Value::Null,
            _ => return None,
        })
    }
}

/// An address as the probe stores it: IPv4 in the first 4 bytes. `None` for other families.
fn address(family: u16, raw: &[u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]).into()),
        AF_INET6 => Some(Ipv6Addr::from(*raw).into()),
        _ => None,
    }
}

fn address_text(addr: IpAddr) -> FixedStr<ADDR_LEN> {
    FixedStr::from(addr.to_string().as_str())
}

/// Decodes one ring buffer record of `probes/tcp.h`'s `struct tcp_event`.
pub fn decode(bytes: &[u8], clock_offset: u64) -> Option<Event> {
    with_record(bytes, |raw: &types::tcp_event| {
        let what = match raw.kind {
            CONNECT => TcpKind::Connect {
                latency_ns: raw.latency_ns,
            },
            ACCEPT => TcpKind::Accept,
            CLOSE => TcpKind::Close {
                lifetime_ns: raw.lifetime_ns,
                bytes_sent: raw.bytes_sent,
                bytes_received: raw.bytes_received,
            },
            _ => return None,
        };
        let body = TcpEvent {
            what,
            saddr: address_text(address(raw.family, &raw.saddr)?),
            daddr: address_text(address(raw.family, &raw.daddr)?),
            ipv6: raw.family == AF_INET6,
            sport: raw.sport,
            dport: raw.dport,
            srtt_us: raw.srtt_us,
        };
        Some(Event {
            header: decode_header!(raw.header, clock_offset),
            body: body.into(),
        })
    })
    .flatten()
}

impl Tracker for TcpTracker {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_>) -> Result<(), TrackerError> {
        let mut storage = MaybeUninit::uninit();
        let mut open = TcpSkelBuilder::default()
            .open(&mut storage)
            .map_err(TrackerError::Open)?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect("tcp.bpf.c declares read-only globals");
        apply_common_config!(rodata, run.config());
        open.maps
            .events
            .set_max_entries(run.config().ringbuf_bytes)
            .map_err(TrackerError::Map)?;
        let skel = run.load(open)?;
        run.fill_cgroup_filter(&skel.maps.cgroup_filter)?;
        let dropped = &skel
            .maps
            .bss_data
            .as_deref()
            .expect("tcp.bpf.c declares .bss")
            .ringbuf_dropped;
        run.serve(skel.object(), &skel.maps.events, dropped, decode)
    }
}
