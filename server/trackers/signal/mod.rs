//! The signal tracker (libbpf-tools' sigsnoop): every signal generated, on
//! `signal:signal_generate`, in the sender's context: who sent it (the header: pid, comm,
//! cgroup of the sender, which the filters select), the signal, its si_code, the target
//! and the kernel's verdict. Signals the kernel raises itself (SIGCHLD to a parent,
//! SIGSEGV, SIGPIPE) come from the task whose action raised them. With `deliveries`,
//! each signal is also reported as its receiver takes it (`signal:signal_deliver`).

use super::{Event, Tracker};
use crate::engine::{with_record, Run, TrackerError, TrackerOptions};
use crate::model::{signal_name, EventBody, FieldInfo, FieldType, FixedStr, TrackerInfo, Value};
use crate::{decode_header, run_ring_buffer_probe};

/// The generated skeleton; its `types` give the raw record layout (for tests and benchmarks).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/signal.skel.rs"));
}
use skel::{types, SignalSkelBuilder};

static INFO: TrackerInfo = TrackerInfo {
    name: "signal",
    description: "signals generated (sigsnoop): sender (pid, comm), signal, si_code, \
                  target and whether it was delivered",
    fields: &[
        FieldInfo::new(
            "signal",
            FieldType::Str,
            "the signal, e.g. SIGTERM; SIGRTMIN+N for real-time ones",
        ),
        FieldInfo::new("sig", FieldType::U64, "the signal's number"),
        FieldInfo::new(
            "code",
            FieldType::Str,
            "si_code: SI_USER (kill), SI_TKILL (tkill, tgkill), SI_QUEUE (sigqueue), \
             SI_KERNEL, ...; a number for a signal's own codes (e.g. SIGCHLD's)",
        ),
        FieldInfo::new(
            "target_pid",
            FieldType::U64,
            "the receiving process (or thread)",
        ),
        FieldInfo::new("target_comm", FieldType::Str, "the receiver's command name"),
        FieldInfo::new(
            "group",
            FieldType::U64,
            "1 when sent to the whole process, 0 to one thread",
        ),
        FieldInfo::new(
            "result",
            FieldType::Str,
            "delivered, ignored (the action is to ignore it), already_pending (a standard \
             signal not yet handled: merged), overflow_fail or lose_info (the queue of \
             real-time signals was full) (signal events)",
        ),
        FieldInfo::new(
            "action",
            FieldType::Str,
            "what the receiver does with it: default, ignore or handler (deliver events)",
        ),
    ],
    weight: None,
    stacks: None,
};

pub struct SignalTracker;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SignalEvent {
    /// Taken by the receiver (signal_deliver) rather than generated.
    pub delivered: bool,
    pub sig: u32,
    pub name: FixedStr<16>,
    pub code: FixedStr<16>,
    pub target_pid: u32,
    pub target_comm: FixedStr<16>,
    pub group: bool,
    pub result: Option<&'static str>,
    /// The receiver's sa_handler at delivery: 0 default, 1 ignore, else a function.
    pub handler: u64,
}

/// `enum signal_event_kind` in probes/signal.h.
const DELIVER: u32 = 2;

/// glibc's SIGRTMIN: 32 and 33 are its own (threads, cancellation).
const SIGRTMIN: u32 = 34;

/// `SIGUSR1`, `SIGRTMIN+3`, or the number for 32 and 33.
fn signal_text(sig: u32) -> FixedStr<16> {
    match signal_name(sig) {
        Some(name) => FixedStr::from(name),
        None if sig >= SIGRTMIN => FixedStr::from(format!("SIGRTMIN+{}", sig - SIGRTMIN).as_str()),
        None => FixedStr::from(sig.to_string().as_str()),
    }
}

/// The generic si_codes (include/uapi/asm-generic/siginfo.h); others depend on the
/// signal and stay numbers.
fn code_text(code: i32) -> FixedStr<16> {
    let name = match code {
        0 => "SI_USER",
        0x80 => "SI_KERNEL",
        -1 => "SI_QUEUE",
        -2 => "SI_TIMER",
        -3 => "SI_MESGQ",
        -4 => "SI_ASYNCIO",
        -5 => "SI_SIGIO",
        -6 => "SI_TKILL",
        -7 => "SI_DETHREAD",
        -60 => "SI_ASYNCNL",
        other => return FixedStr::from(other.to_string().as_str()),
    };
    FixedStr::from(name)
}

/// The kernel's `enum trace_sig_result` (include/trace/events/signal.h).
fn result_text(result: i32) -> Option<&'static str> {
    [
        "delivered",
        "ignored",
        "already_pending",
        "overflow_fail",
        "lose_info",
    ]
    .get(usize::try_from(result).ok()?)
    .copied()
}

impl EventBody for SignalEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        if self.delivered {
            "deliver"
        } else {
            "signal"
        }
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        Some(match name {
            "signal" => Value::Str(self.name.as_str()),
            "sig" => Value::U64(self.sig.into()),
            "code" => Value::Str(self.code.as_str()),
            "target_pid" => Value::U64(self.target_pid.into()),
            "target_comm" => Value::Str(self.target_comm.as_str()),
            "group" => Value::U64(self.group.into()),
            "result" => match self.delivered {
                true => Value::Null,
                false => self.result.map_or(Value::Null, Value::Str),
            },
            "action" => match (self.delivered, self.handler) {
                (false, _) => Value::Null,
                (true, 0) => Value::Str("default"),
                (true, 1) => Value::Str("ignore"),
                (true, _) => Value::Str("handler"),
            },
            _ => return None,
        })
    }
}

/// Decodes one ring buffer record of `probes/signal.h`'s `struct signal_event`.
pub fn decode(bytes: &[u8], clock_offset: u64) -> Option<Event> {
    with_record(bytes, |raw: &types::signal_event| {
        let sig = u32::try_from(raw.sig).ok()?;
        Some(Event {
            header: decode_header!(raw.header, clock_offset),
            body: SignalEvent {
                delivered: raw.kind == DELIVER,
                sig,
                name: signal_text(sig),
                code: code_text(raw.code),
                target_pid: u32::try_from(raw.target_pid).ok()?,
                target_comm: FixedStr::from_c_chars(&raw.target_comm),
                group: raw.group != 0,
                result: result_text(raw.result),
                handler: raw.handler,
            }
            .into(),
        })
    })
    .flatten()
}

/// The signal tracker's options.
#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct SignalOptions {
    /// Report only these signals (`SIGTERM`, `TERM` or `15`; filtered in the kernel);
    /// empty for all.
    pub signals: Vec<String>,
    /// Report only signals sent to this process (thread group id); 0 for any.
    pub target_pid: u32,
    /// Also report each signal as its receiver takes it (kind deliver, with its action),
    /// as sigsnoop's signal_deliver mode; the pid, comm and cgroup filters then select
    /// the receiver for these.
    pub deliveries: bool,
}

/// The signal a name or number means: `SIGTERM`, `TERM`, `15`, `SIGRTMIN+2`.
fn parse_signal(text: &str) -> Option<u32> {
    if let Ok(number) = text.parse::<u32>() {
        return (1..=64).contains(&number).then_some(number);
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    (1..=64).find(|&sig| signal_text(sig).as_str() == name)
}

/// Bit sig-1 for each signal; all bits for none.
pub fn signal_mask(signals: &[String]) -> Result<u64, String> {
    if signals.is_empty() {
        return Ok(u64::MAX);
    }
    signals.iter().try_fold(0u64, |mask, text| {
        parse_signal(text)
            .map(|sig| mask | 1 << (sig - 1))
            .ok_or_else(|| format!("`{text}` is not a signal (SIGTERM, TERM, 15, SIGRTMIN+1)"))
    })
}

impl TrackerOptions for SignalOptions {
    fn check(&self) -> Result<(), String> {
        signal_mask(&self.signals).map(drop)
    }

    /// Only deliveries have an action.
    fn empty_fields(&self) -> Vec<&'static str> {
        if self.deliveries {
            Vec::new()
        } else {
            vec!["action"]
        }
    }
}

impl Tracker for SignalTracker {
    type Options = SignalOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, options: &SignalOptions) -> Result<(), TrackerError> {
        let mask = signal_mask(&options.signals).map_err(TrackerError::Config)?;
        run_ring_buffer_probe!(run, SignalSkelBuilder, decode, |open| {
            open.progs
                .handle_signal_deliver
                .set_autoload(options.deliveries);
            let rodata = open
                .maps
                .rodata_data
                .as_deref_mut()
                .expect("signal.bpf.c declares read-only globals");
            rodata.signal_mask = mask;
            rodata.target_tgid = options.target_pid;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_signals_codes_and_results() {
        assert_eq!(signal_text(10).as_str(), "SIGUSR1");
        assert_eq!(signal_text(36).as_str(), "SIGRTMIN+2");
        assert_eq!(signal_text(32).as_str(), "32");
        assert_eq!(code_text(0).as_str(), "SI_USER");
        assert_eq!(code_text(-6).as_str(), "SI_TKILL");
        assert_eq!(code_text(1).as_str(), "1");
        assert_eq!(result_text(2), Some("already_pending"));
        assert_eq!(result_text(9), None);
    }

    #[test]
    fn options_name_signals_in_every_spelling() {
        let mask =
            |names: &[&str]| signal_mask(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>());
        assert_eq!(mask(&[]), Ok(u64::MAX));
        assert_eq!(
            mask(&["SIGTERM", "usr1", "9"]),
            Ok(1 << 14 | 1 << 9 | 1 << 8)
        );
        assert_eq!(mask(&["SIGRTMIN+2"]), Ok(1 << 35));
        assert_eq!(
            mask(&["SIGNOPE"]),
            Err("`SIGNOPE` is not a signal (SIGTERM, TERM, 15, SIGRTMIN+1)".to_string())
        );
        assert_eq!(mask(&["0"]).is_err(), true);
    }
}
