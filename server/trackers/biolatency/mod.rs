//! The biolatency tracker (libbpf-tools' biolatency and biosnoop): block I/O requests from
//! issue to completion, with their device, operation, size and latency. In aggregate mode
//! (the default) the kernel counts them per process, device, operation, status and
//! power-of-two latency bucket, as biolatency does; histograms of `latency_ns` per `disk`
//! (`--histogram latency_ns --group-by disk`, or the API's `histogram`) answer its
//! question. Stream mode reports each request, as biosnoop does.

use super::{Event, Tracker};
use crate::engine::{with_record, IntervalMs, Mode, Run, TrackerError, TrackerOptions};
use crate::model::{EventBody, FieldFormat, FieldInfo, FieldType, FixedStr, TrackerInfo, Value};
use crate::{decode_header, run_bucket_probe};

/// The generated skeleton; its `types` give the raw record layout (for tests and benchmarks).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/biolatency.skel.rs"));
}
use skel::{types, BiolatencySkelBuilder};

static INFO: TrackerInfo = TrackerInfo {
    name: "biolatency",
    description: "block I/O requests from issue to completion: disk, operation, bytes, \
                  latency; pid and comm are the issuing task's",
    fields: &[
        FieldInfo::new("disk", FieldType::Str, "the disk, e.g. sda, nvme0n1, loop0"),
        FieldInfo::new("dev", FieldType::Str, "its device number, MAJOR:MINOR"),
        FieldInfo::new(
            "op",
            FieldType::Str,
            "read, write, flush, discard, ... (the request's REQ_OP)",
        ),
        FieldInfo::total(
            "requests",
            FieldType::U64,
            "requests: 1 in stream mode, per interval and latency bucket in aggregate mode",
        ),
        FieldInfo::total("bytes", FieldType::U64, "bytes the requests completed"),
        FieldInfo::new(
            "sector",
            FieldType::U64,
            "the request's first sector (stream mode)",
        ),
        FieldInfo::total(
            "latency_ns",
            FieldType::U64,
            "issue to completion (summed over the requests in aggregate mode)",
        )
        .shown_as(FieldFormat::Duration),
        FieldInfo::new(
            "error",
            FieldType::U64,
            "the block layer's status: 0 for success",
        ),
    ],
    weight: Some("requests"),
    stacks: None,
};

/// include/linux/blk_types.h's `enum req_op`, by number.
fn op_name(op: u32) -> Option<&'static str> {
    Some(match op {
        0 => "read",
        1 => "write",
        2 => "flush",
        3 => "discard",
        5 => "secure_erase",
        7 => "zone_append",
        9 => "write_zeroes",
        _ => return None,
    })
}

pub struct BiolatencyTracker;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BiolatencyEvent {
    pub disk: FixedStr<32>,
    /// MAJOR:MINOR.
    pub dev: FixedStr<16>,
    pub op: u32,
    /// 1 for one request (stream mode).
    pub requests: u64,
    pub bytes: u64,
    /// `None` for a row of requests (aggregate mode).
    pub sector: Option<u64>,
    pub latency_ns: u64,
    pub error: u32,
}

impl EventBody for BiolatencyEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        if self.sector.is_some() {
            "request"
        } else {
            "requests"
        }
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        Some(match name {
            "disk" => Value::Str(self.disk.as_str()),
            "dev" => Value::Str(self.dev.as_str()),
            "op" => op_name(self.op).map_or(Value::U64(self.op.into()), Value::Str),
            "requests" => Value::U64(self.requests),
            "bytes" => Value::U64(self.bytes),
            "sector" => self.sector.map_or(Value::Null, Value::U64),
            "latency_ns" => Value::U64(self.latency_ns),
            "error" => Value::U64(self.error.into()),
            _ => return None,
        })
    }
}

/// The kernel's dev_t (major << 20 | minor) as MAJOR:MINOR.
fn dev_text(dev: u32) -> FixedStr<16> {
    FixedStr::from(format!("{}:{}", dev >> 20, dev & 0xfffff).as_str())
}

/// Decodes one ring buffer record of `probes/biolatency.h`'s `struct biolatency_event`.
pub fn decode(bytes: &[u8], clock_offset: u64) -> Option<Event> {
    with_record(bytes, |raw: &types::biolatency_event| Event {
        header: decode_header!(raw.header, clock_offset),
        body: BiolatencyEvent {
            disk: FixedStr::from_c_chars(&raw.disk),
            dev: dev_text(raw.dev),
            op: raw.op,
            requests: 1,
            bytes: raw.bytes.into(),
            sector: Some(raw.sector),
            latency_ns: raw.latency_ns,
            error: status(raw.error),
        }
        .into(),
    })
}

/// A blk_status_t as the event shows it.
fn status(error: i32) -> u32 {
    u32::try_from(error).unwrap_or(u32::MAX)
}

/// One aggregate-mode row of `probes/biolatency.h`.
fn requests_of(key: &types::biolatency_key, row: &types::biolatency_row) -> BiolatencyEvent {
    BiolatencyEvent {
        disk: FixedStr::from_c_chars(&row.disk),
        dev: dev_text(key.dev),
        op: key.op,
        requests: row.requests,
        bytes: row.bytes,
        sector: None,
        latency_ns: row.latency_ns,
        error: status(key.error),
    }
}

/// The biolatency tracker's options.
#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct BiolatencyOptions {
    /// Only this disk: its name (`sda`, `loop0`) or MAJOR:MINOR; filtered in the kernel.
    pub disk: Option<String>,
    /// `aggregate` counts requests in the kernel per process, disk, operation, status and
    /// power-of-two latency bucket and reports rows every interval (cheapest, as
    /// biolatency); `stream` reports every request with its sector (as biosnoop).
    pub mode: Mode,
    /// How often aggregate mode reports, in milliseconds.
    pub interval_ms: IntervalMs,
    /// Leave out latencies below this many microseconds (in the kernel).
    pub min_latency_us: u64,
}

/// The kernel's dev_t of a disk named as `sda` (read from /sys/class/block) or `7:0`.
pub fn disk_dev(disk: &str) -> Result<u32, String> {
    let text = if disk.contains(':') {
        disk.to_string()
    } else {
        std::fs::read_to_string(format!("/sys/class/block/{disk}/dev"))
            .map_err(|_| format!("no block device `{disk}` (see /sys/class/block)"))?
    };
    let (major, minor) = text
        .trim()
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        .filter(|&(major, minor)| major < 1 << 12 && minor < 1 << 20)
        .ok_or_else(|| format!("`{disk}` is not MAJOR:MINOR"))?;
    Ok(major << 20 | minor)
}

impl TrackerOptions for BiolatencyOptions {
    fn check(&self) -> Result<(), String> {
        self.disk
            .as_deref()
            .map_or(Ok(()), |d| disk_dev(d).map(drop))
    }

    fn reports_totals(&self) -> bool {
        self.mode == Mode::Aggregate
    }

    fn totals_per_log2_bucket(&self) -> &'static [&'static str] {
        &["latency_ns"]
    }

    fn empty_fields(&self) -> Vec<&'static str> {
        match self.mode {
            Mode::Aggregate => vec!["sector"],
            Mode::Stream => Vec::new(),
        }
    }
}

impl Tracker for BiolatencyTracker {
    type Options = BiolatencyOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, options: &BiolatencyOptions) -> Result<(), TrackerError> {
        let dev = match &options.disk {
            Some(disk) => disk_dev(disk).map_err(TrackerError::Config)?,
            None => 0,
        };
        let settings = crate::engine::buckets::BucketSettings::new(
            options.mode,
            options.interval_ms,
            options.min_latency_us,
        );
        run_bucket_probe!(
            run,
            BiolatencySkelBuilder,
            decode,
            settings,
            |open| {
                open.maps
                    .rodata_data
                    .as_deref_mut()
                    .expect("biolatency.bpf.c declares read-only globals")
                    .target_dev = dev
            },
            |key: types::biolatency_key, row: types::biolatency_row| requests_of(key, row)
        )
    }
}
