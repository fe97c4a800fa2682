//! The tcpretrans tracker (libbpf-tools' tcpretrans): every TCP retransmission, with the
//! connection, its state, the segments it carried and the socket's network namespace;
//! with `drops`, also the packets the kernel drops on a TCP socket's behalf, with the
//! kernel's reason (what bcc's tcpdrop reports).

use std::collections::HashMap;
use std::sync::LazyLock;

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Event, Tracker};
use crate::engine::{with_record, Run, TrackerError, TrackerOptions};
use crate::model::{errno_name, EventBody, FieldInfo, FieldType, FixedStr, TrackerInfo, Value};
use crate::{decode_header, run_ring_buffer_probe};

/// The generated skeleton; its `types` give the raw record layout (for tests and benchmarks).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/tcpretrans.skel.rs"));
}
use skel::{types, TcpretransSkelBuilder};

static INFO: TrackerInfo = TrackerInfo {
    name: "tcpretrans",
    description: "TCP retransmissions (and with `drops`, packets dropped on a TCP socket's \
                  behalf, with the reason): connection, state, segments and network \
                  namespace; pid and comm are whoever ran when it happened (often none)",
    fields: &[
        FieldInfo::new("family", FieldType::Str, "ipv4 or ipv6"),
        FieldInfo::new("saddr", FieldType::Str, "local address"),
        FieldInfo::new("daddr", FieldType::Str, "remote address"),
        FieldInfo::new("sport", FieldType::U64, "local port"),
        FieldInfo::new("dport", FieldType::U64, "remote port"),
        FieldInfo::new(
            "state",
            FieldType::Str,
            "the connection's state, e.g. ESTABLISHED",
        ),
        FieldInfo::measure(
            "segs",
            FieldType::U64,
            "segments retransmitted (as the kernel's RetransSegs counts them)",
        ),
        FieldInfo::new(
            "error",
            FieldType::Str,
            "why the retransmission could not be sent (kernels that say)",
        ),
        FieldInfo::new(
            "netns",
            FieldType::U64,
            "the socket's network namespace (inode number, as /proc/<pid>/ns/net)",
        ),
        FieldInfo::new(
            "reason",
            FieldType::Str,
            "a drop's reason, as the kernel names it (SOCKET_FILTER, TCP_OLD_DATA, ...)",
        ),
    ],
    weight: None,
    stacks: None,
};

/// include/net/tcp_states.h, by number.
const STATES: [&str; 13] = [
    "",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "NEW_SYN_RECV",
];

const AF_INET6: u16 = libc::AF_INET6 as u16;

pub struct TcpretransTracker;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TcpretransEvent {
    pub ipv6: bool,
    pub saddr: FixedStr<48>,
    pub daddr: FixedStr<48>,
    pub sport: u16,
    pub dport: u16,
    pub state: u8,
    pub segs: u16,
    pub err: i32,
    pub netns: u32,
    /// A drop's `enum skb_drop_reason`; 0 for a retransmission.
    pub reason: u32,
}

/// How many arguments the running kernel passes to the BTF-typed tracepoint `name`'s
/// programs (its trace function's, less the context); 0 when its BTF does not say.
fn tracepoint_arguments(name: &str) -> usize {
    use libbpf_rs::btf::{types::FuncProto, Btf, BtfType};
    let Ok(btf) = Btf::from_vmlinux() else {
        return 0;
    };
    btf.type_by_name::<BtfType<'_>>(&format!("btf_trace_{name}"))
        .map(|typedef| typedef.skip_mods_and_typedefs())
        .and_then(|pointer| pointer.next_type())
        .and_then(|proto| FuncProto::try_from(proto).ok())
        .map_or(0, |proto| proto.len().saturating_sub(1))
}

/// The running kernel's drop reasons by number, from its BTF (`enum skb_drop_reason`,
/// without the `SKB_DROP_REASON_` prefix): their numbers change between kernel builds.
static DROP_REASONS: LazyLock<HashMap<u32, String>> = LazyLock::new(|| {
    use libbpf_rs::btf::{types::Enum, Btf};
    let Ok(btf) = Btf::from_vmlinux() else {
        return HashMap::new();
    };
    let Some(reasons) = btf.type_by_name::<Enum<'_>>("skb_drop_reason") else {
        return HashMap::new();
    };
    reasons
        .iter()
        .filter_map(|member| {
            let name = member.name?.to_string_lossy();
            let name = name.strip_prefix("SKB_DROP_REASON_").unwrap_or(&name);
            Some((u32::try_from(member.value).ok()?, name.to_string()))
        })
        .collect()
});

impl EventBody for TcpretransEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        if self.reason == 0 {
            "retransmit"
        } else {
            "drop"
        }
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        Some(match name {
            "family" => Value::Str(if self.ipv6 { "ipv6" } else { "ipv4" }),
            "saddr" => Value::Str(self.saddr.as_str()),
            "daddr" => Value::Str(self.daddr.as_str()),
            "sport" => Value::U64(self.sport.into()),
            "dport" => Value::U64(self.dport.into()),
            "state" => STATES
                .get(usize::from(self.state))
                .filter(|s| !s.is_empty())
                .map_or(Value::U64(self.state.into()), |s| Value::Str(s)),
            "segs" => Value::U64(self.segs.into()),
            "error" => match self.err {
                0 => Value::Null,
                err => errno_name(-err).map_or(Value::I64(err.into()), Value::Str),
            },
            "netns" => Value::U64(self.netns.into()),
            "reason" => match self.reason {
                0 => Value::Null,
                reason => DROP_REASONS
                    .get(&reason)
                    .map_or(Value::U64(reason.into()), |name| Value::Str(name)),
            },
            _ => return None,
        })
    }
}

fn address(ipv6: bool, raw: &[u8; 16]) -> FixedStr<48> {
    let text = if ipv6 {
        Ipv6Addr::from(*raw).to_string()
    } else {
        Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]).to_string()
    };
    FixedStr::from(text.as_str())
}

/// Decodes one ring buffer record of `probes/tcpretrans.h`'s `struct tcpretrans_event`.
pub fn decode(bytes: &[u8], clock_offset: u64) -> Option<Event> {
    with_record(bytes, |raw: &types::tcpretrans_event| {
        let ipv6 = raw.family == AF_INET6;
        Event {
            header: decode_header!(raw.header, clock_offset),
            body: TcpretransEvent {
                ipv6,
                saddr: address(ipv6, &raw.saddr),
                daddr: address(ipv6, &raw.daddr),
                sport: raw.sport,
                dport: raw.dport,
                state: u8::try_from(raw.state).unwrap_or(u8::MAX),
                segs: raw.segs,
                err: raw.err,
                netns: raw.netns,
                reason: raw.reason,
            }
            .into(),
        }
    })
}

/// The tcpretrans tracker's options.
#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct TcpretransOptions {
    /// Only sockets of this network namespace (its inode number, as `ls -L -i
    /// /proc/<pid>/ns/net` gives it); 0 for all. Filtered in the kernel.
    pub netns: u32,
    /// Also report packets the kernel drops on a TCP socket's behalf (`drop`, with its
    /// `reason`; one more probe, on every freed packet).
    pub drops: bool,
}

impl TrackerOptions for TcpretransOptions {}

impl Tracker for TcpretransTracker {
    type Options = TcpretransOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, options: &TcpretransOptions) -> Result<(), TrackerError> {
        run_ring_buffer_probe!(run, TcpretransSkelBuilder, decode, |open| {
            open.maps
                .rodata_data
                .as_deref_mut()
                .expect("tcpretrans.bpf.c declares read-only globals")
                .target_netns = options.netns;
            // Since 6.16 retransmissions pass their result (and failed ones are traced too);
            // since 6.12 drops pass the receiving socket.
            let with_err = tracepoint_arguments("tcp_retransmit_skb") == 3;
            open.progs.handle_retransmit.set_autoload(!with_err);
            open.progs.handle_retransmit_err.set_autoload(with_err);
            let rx_sk = tracepoint_arguments("kfree_skb") == 4;
            open.progs.handle_drop.set_autoload(options.drops && !rx_sk);
            open.progs
                .handle_drop_rx_sk
                .set_autoload(options.drops && rx_sk);
        })
    }
}
