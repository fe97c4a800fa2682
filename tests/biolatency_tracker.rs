//! The biolatency tracker against the real kernel (root): direct I/O to a loop device
//! backed by a file. The requests reported equal what the device's own statistics
//! (/sys/block/<dev>/stat) counted over the same window, and their bytes what was written.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{root_or_skip, start_tracker, Collector, TempDir};
use eunomia::engine::TrackerConfig;
use eunomia::model::{Record, Value};
use eunomia::results::query::Log2Bucket;
use serde_json::json;

const SETTLE: Duration = Duration::from_secs(5);
const BLOCK: u64 = 4096;
const WRITES: u64 = 64;
const READS: u64 = 32;

/// A loop device over a file; detached when dropped.
struct LoopDevice(String);

impl LoopDevice {
    fn over(file: &std::path::Path) -> Self {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(String::from_utf8(out.stdout).unwrap().trim().to_string())
    }

    fn name(&self) -> &str {
        self.0.trim_start_matches("/dev/")
    }

    /// Completed (reads, writes), as the block layer counts them.
    fn completed(&self) -> (u64, u64) {
        let stat = std::fs::read_to_string(format!("/sys/block/{}/stat", self.name())).unwrap();
        let fields: Vec<u64> = stat
            .split_whitespace()
            .map(|f| f.parse().unwrap())
            .collect();
        (fields[0], fields[4])
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn dd(args: &[&str]) {
    let out = Command::new("dd").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Direct-I/O writes, then reads, of [`BLOCK`] bytes to a fresh loop device, traced by
/// one biolatency tracker per entry of `modes` at once. Returns the (reads, writes) the
/// device counted, and each tracker's events.
fn traced_io(test: &str, modes: &[&str]) -> ((u64, u64), Vec<Vec<eunomia::trackers::Event>>) {
    let dir = TempDir::new(test);
    let backing = dir.join("disk.img");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let device = LoopDevice::over(&backing);
    // Let whatever probes a new disk (udev, partition scan) finish first.
    std::thread::sleep(Duration::from_millis(500));
    let traced: Vec<_> = modes
        .iter()
        .map(|mode| {
            let collector = Collector::default();
            let mut config = TrackerConfig::default();
            config.options = json!({ "disk": device.name(), "mode": mode, "interval_ms": 100 })
                .as_object()
                .unwrap()
                .clone();
            let handle = start_tracker("biolatency", config, collector.clone());
            (collector, handle)
        })
        .collect();
    let before = device.completed();
    let count = |n: u64| format!("count={n}");
    let bs = format!("bs={BLOCK}");
    dd(&[
        "if=/dev/zero",
        &format!("of={}", device.0),
        &bs,
        &count(WRITES),
        "oflag=direct",
    ]);
    dd(&[
        &format!("if={}", device.0),
        "of=/dev/null",
        &bs,
        &count(READS),
        "iflag=direct",
    ]);
    let after = device.completed();
    let (reads, writes) = (after.0 - before.0, after.1 - before.1);
    assert!(writes >= 1 && reads >= 1, "{before:?} -> {after:?}");
    let events = traced
        .into_iter()
        .map(|(collector, handle)| {
            collector.wait_for(SETTLE, |events| requests(events.iter()) >= reads + writes);
            std::thread::sleep(Duration::from_millis(300));
            let stats = handle.stop().unwrap();
            assert_eq!(stats.lost(), 0);
            for event in &collector.events() {
                assert_eq!(event.get("disk"), Some(Value::Str(device.name())));
                assert_eq!(event.get("error"), Some(Value::U64(0)));
            }
            collector.events()
        })
        .collect();
    ((reads, writes), events)
}

fn u64_of(event: &eunomia::trackers::Event, field: &str) -> u64 {
    match event.get(field) {
        Some(Value::U64(v)) => v,
        other => panic!("{field}: {other:?}"),
    }
}

/// The requests some events stand for.
fn requests<'a>(events: impl Iterator<Item = &'a eunomia::trackers::Event>) -> u64 {
    events.map(|e| u64_of(e, "requests")).sum()
}

/// (requests, bytes) of one operation.
fn of_op(events: &[eunomia::trackers::Event], op: &str) -> (u64, u64) {
    let of = || {
        events
            .iter()
            .filter(|e| e.get("op") == Some(Value::Str(op)))
    };
    (requests(of()), of().map(|e| u64_of(e, "bytes")).sum())
}

#[test]
fn requests_match_the_devices_own_counts() {
    if !root_or_skip("requests_match_the_devices_own_counts") {
        return;
    }
    let ((reads, writes), traced) = traced_io("biolatency-stream", &["stream"]);
    let events = &traced[0];
    assert_eq!(
        (of_op(events, "read"), of_op(events, "write")),
        ((reads, READS * BLOCK), (writes, WRITES * BLOCK)),
        "the device counted {reads} reads and {writes} writes"
    );
    for event in events {
        assert_eq!(event.get("requests"), Some(Value::U64(1)));
        assert!(u64_of(event, "latency_ns") > 0);
        assert!(matches!(event.get("sector"), Some(Value::U64(_))));
    }
}

/// Aggregate mode counts the same requests in the kernel, per latency bucket: traced at
/// once with a stream-mode tracker, its rows hold as many requests and bytes, and give the
/// histogram that the stream's own events give. The two trackers time each request apart
/// (a few hundred ns), so a request near a power of two may land on either side of it:
/// loop-device latencies gather near 8 µs, and up to a tenth of them may move.
#[test]
fn kernel_buckets_match_the_streamed_requests() {
    if !root_or_skip("kernel_buckets_match_the_streamed_requests") {
        return;
    }
    let ((reads, writes), traced) = traced_io("biolatency-aggregate", &["aggregate", "stream"]);
    let (rows, stream) = (&traced[0], &traced[1]);
    assert_eq!(
        (of_op(rows, "read"), of_op(rows, "write")),
        ((reads, READS * BLOCK), (writes, WRITES * BLOCK)),
        "the device counted {reads} reads and {writes} writes"
    );
    assert!(rows.iter().all(|e| e.get("sector") == Some(Value::Null)));
    // Fewer rows than requests: they were counted in the kernel.
    assert!((rows.len() as u64) < reads + writes, "{} rows", rows.len());

    let histogram = |events: &[eunomia::trackers::Event]| {
        let mut buckets = std::collections::BTreeMap::<i32, i64>::new();
        for e in events {
            let n = u64_of(e, "requests");
            let mean = u64_of(e, "latency_ns") / n;
            *buckets
                .entry(Log2Bucket::index_of(mean.into()))
                .or_default() += n as i64;
        }
        buckets
    };
    let (kernel, streamed) = (histogram(rows), histogram(stream));
    // Both sessions time each request with programs of their own, a few hundred ns
    // apart, so a request near a bucket bound may land in the next bucket in one and
    // not in the other, but never further: counting from the bottom, the kernel's total
    // up to bucket i lies between the streamed totals up to i-1 and up to i+1.
    assert_eq!(
        kernel.values().sum::<i64>(),
        streamed.values().sum::<i64>(),
        "kernel {kernel:?}, streamed {streamed:?}"
    );
    let below = |h: &std::collections::BTreeMap<i32, i64>, i: i32| -> i64 {
        h.range(..=i).map(|(_, n)| n).sum()
    };
    let (low, high) = (
        *kernel.keys().chain(streamed.keys()).min().unwrap(),
        *kernel.keys().chain(streamed.keys()).max().unwrap(),
    );
    for i in low..=high {
        let (k, s) = (
            below(&kernel, i),
            (below(&streamed, i - 1), below(&streamed, i + 1)),
        );
        assert!(
            s.0 <= k && k <= s.1,
            "bucket {i}: kernel {kernel:?}, streamed {streamed:?}"
        );
    }
}
