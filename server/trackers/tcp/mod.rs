//! The tcp tracker: TCP connects (active opens), accepts (passive opens) and closes, on
//! `sock:inet_sock_set_state` and the exits of `accept`/`accept4`.
//!
//! Every event carries the identity of the task that opened the connection: the
//! connecting task, or the task whose `accept` returned the socket. State changes run in
//! softirq or in any task's context, so the probe remembers the opener per socket, and the
//! pid, comm and cgroup filters apply to the opener.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Event, Tracker};
use crate::engine::{with_record, NoOptions, Run, TrackerError};
use crate::model::{
    errno_name, EventBody, FieldFormat, FieldInfo, FieldType, FixedStr, TrackerInfo, Value,
};
use crate::{decode_header, run_ring_buffer_probe};

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
            "direction",
            FieldType::Str,
            "outbound (this host connected) or inbound (it accepted)",
        ),
        FieldInfo::new(
            "error",
            FieldType::Str,
            "close of a connect that never completed: why, e.g. ECONNREFUSED or ETIMEDOUT \
             (null when it was closed first, and for every other event)",
        ),
        FieldInfo::measure(
            "latency_ns",
            FieldType::U64,
            "SYN sent to established (connect events)",
        )
        .shown_as(FieldFormat::Duration),
        FieldInfo::measure(
            "lifetime_ns",
            FieldType::U64,
            "connect() or the passive open to close (close events)",
        )
        .shown_as(FieldFormat::Duration),
        FieldInfo::measure(
            "bytes_sent",
            FieldType::U64,
            "payload bytes sent, retransmissions not counted (close events)",
        ),
        FieldInfo::measure(
            "bytes_received",
            FieldType::U64,
            "payload bytes received (close events)",
        ),
        FieldInfo::measure(
            "srtt_us",
            FieldType::U64,
            "smoothed round-trip time at the event, microseconds",
        ),
    ],
    weight: None,
    stacks: None,
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
    pub outbound: bool,
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
        /// A connect that failed: the socket's errno.
        error: Option<i32>,
    },
}

impl EventBody for TcpEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        match self.what {
            TcpKind::Connect { .. } => "connect",
            TcpKind::Accept => "accept",
            TcpKind::Close { .. } => "close",
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
            (_, "direction") => Value::Str(if self.outbound { "outbound" } else { "inbound" }),
            (
                TcpKind::Close {
                    error: Some(errno), ..
                },
                "error",
                // Every Linux errno has a name (model::errno's test checks the table).
            ) => errno_name(errno).map_or(Value::Null, Value::Str),
            (_, "error") => Value::Null,
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
                error: (raw.error != 0).then_some(raw.error),
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
            outbound: raw.outbound != 0,
        };
        Some(Event {
            header: decode_header!(raw.header, clock_offset),
            body: body.into(),
        })
    })
    .flatten()
}

impl Tracker for TcpTracker {
    type Options = NoOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, _: &NoOptions) -> Result<(), TrackerError> {
        run_ring_buffer_probe!(run, TcpSkelBuilder, decode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Record;

    fn raw_event(kind: u32, family: u16, saddr: &[u8], daddr: &[u8]) -> types::tcp_event {
        let mut raw = types::tcp_event::default();
        raw.header.ts_ns = 5;
        raw.header.pid = 42;
        raw.header.ppid = 1;
        for (dst, src) in raw.header.comm.iter_mut().zip(b"curl\0") {
            *dst = *src as i8;
        }
        raw.kind = kind;
        raw.family = family;
        raw.saddr[..saddr.len()].copy_from_slice(saddr);
        raw.daddr[..daddr.len()].copy_from_slice(daddr);
        raw.sport = 40000;
        raw.dport = 443;
        raw.srtt_us = 250;
        raw.latency_ns = 1_500;
        raw.lifetime_ns = 9_000;
        raw.bytes_sent = 100;
        raw.bytes_received = 2_000;
        raw.outbound = 1;
        raw
    }

    fn ipv4(kind: u32) -> types::tcp_event {
        raw_event(kind, AF_INET, &[10, 0, 0, 1], &[93, 184, 216, 34])
    }

    fn bytes_of(raw: &types::tcp_event) -> Vec<u8> {
        // SAFETY: tcp_event is plain old data; reading its bytes is always valid.
        unsafe {
            std::slice::from_raw_parts(
                (raw as *const types::tcp_event).cast::<u8>(),
                std::mem::size_of_val(raw),
            )
            .to_vec()
        }
    }

    fn field_values(event: &Event) -> Vec<(String, String)> {
        let mut out = Vec::new();
        event
            .body
            .visit(&mut |name, value| out.push((name.to_string(), value.to_string())));
        out
    }

    #[test]
    fn decodes_ipv4_connect() {
        let event = decode(&bytes_of(&ipv4(CONNECT)), 1_000).expect("decodes");
        assert_eq!(event.header.ts_ns, 1_005);
        assert_eq!(event.get("tracker"), Some(Value::Str("tcp")));
        assert_eq!(event.get("kind"), Some(Value::Str("connect")));
        assert_eq!(event.get("comm"), Some(Value::Str("curl")));
        assert_eq!(
            field_values(&event),
            [
                ("family", "ipv4"),
                ("saddr", "10.0.0.1"),
                ("daddr", "93.184.216.34"),
                ("sport", "40000"),
                ("dport", "443"),
                ("direction", "outbound"),
                ("error", ""),
                ("latency_ns", "1500"),
                ("lifetime_ns", ""),
                ("bytes_sent", ""),
                ("bytes_received", ""),
                ("srtt_us", "250"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(event.get("nonsense"), None);
    }

    #[test]
    fn decodes_close_and_accept() {
        let close = decode(&bytes_of(&ipv4(CLOSE)), 0).expect("decodes");
        assert_eq!(close.get("kind"), Some(Value::Str("close")));
        assert_eq!(close.get("lifetime_ns"), Some(Value::U64(9_000)));
        assert_eq!(close.get("bytes_sent"), Some(Value::U64(100)));
        assert_eq!(close.get("bytes_received"), Some(Value::U64(2_000)));
        assert_eq!(close.get("latency_ns"), Some(Value::Null));
        assert_eq!(close.get("error"), Some(Value::Null));
        let mut refused = ipv4(CLOSE);
        refused.error = libc::ECONNREFUSED;
        let refused = decode(&bytes_of(&refused), 0).expect("decodes");
        assert_eq!(refused.get("error"), Some(Value::Str("ECONNREFUSED")));

        let mut accepted = ipv4(ACCEPT);
        accepted.outbound = 0;
        let accept = decode(&bytes_of(&accepted), 0).expect("decodes");
        assert_eq!(accept.get("direction"), Some(Value::Str("inbound")));
        assert_eq!(accept.get("kind"), Some(Value::Str("accept")));
        assert_eq!(accept.get("latency_ns"), Some(Value::Null));
        assert_eq!(accept.get("bytes_sent"), Some(Value::Null));
        assert_eq!(accept.get("srtt_us"), Some(Value::U64(250)));
    }

    #[test]
    fn decodes_ipv6_and_mapped_ipv4_addresses() {
        let loopback = Ipv6Addr::LOCALHOST.octets();
        let event = decode(
            &bytes_of(&raw_event(CONNECT, AF_INET6, &loopback, &loopback)),
            0,
        )
        .expect("decodes");
        assert_eq!(event.get("family"), Some(Value::Str("ipv6")));
        assert_eq!(event.get("saddr"), Some(Value::Str("::1")));

        let mapped = Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped().octets();
        let event = decode(
            &bytes_of(&raw_event(CONNECT, AF_INET6, &mapped, &loopback)),
            0,
        )
        .expect("decodes");
        assert_eq!(event.get("saddr"), Some(Value::Str("::ffff:127.0.0.1")));
        assert_eq!(event.get("daddr"), Some(Value::Str("::1")));

        let widest = [0xff; 16];
        let event =
            decode(&bytes_of(&raw_event(CLOSE, AF_INET6, &widest, &widest)), 0).expect("decodes");
        assert_eq!(
            event.get("saddr"),
            Some(Value::Str("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
        );
    }

    #[test]
    fn rejects_short_unknown_and_foreign_records() {
        let bytes = bytes_of(&ipv4(CONNECT));
        assert!(decode(&bytes[..bytes.len() - 1], 0).is_none());
        assert!(decode(&bytes_of(&ipv4(99)), 0).is_none());
        let unix = raw_event(CONNECT, libc::AF_UNIX as u16, &[], &[]);
        assert!(decode(&bytes_of(&unix), 0).is_none());
    }
}
