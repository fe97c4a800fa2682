//! The biolatency tracker against the real kernel (root): direct I/O to a loop device
//! backed by a file. The requests reported equal what the device's own statistics
//! (/sys/block/<dev>/stat) counted over the same window, and their bytes what was written.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{root_or_skip, start_tracker, Collector, TempDir};
use eunomia::engine::TrackerConfig;
use eunomia::model::{Record, Value};
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

#[test]
fn requests_match_the_devices_own_counts() {
    if !root_or_skip("requests_match_the_devices_own_counts") {
        return;
    }
    let dir = TempDir::new("biolatency");
    let backing = dir.join("disk.img");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let device = LoopDevice::over(&backing);
    // Let whatever probes a new disk (udev, partition scan) finish first.
    std::thread::sleep(Duration::from_millis(500));
    let collector = Collector::default();
    let mut config = TrackerConfig::default();
    config.options = json!({ "disk": device.name() })
        .as_object()
        .unwrap()
        .clone();
    let handle = start_tracker("biolatency", config, collector.clone());
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
    collector.wait_for(SETTLE, |events| events.len() as u64 >= reads + writes);
    std::thread::sleep(Duration::from_millis(300));
    handle.stop().unwrap();

    let events = collector.events();
    let of = |op: &str| -> Vec<_> {
        events
            .iter()
            .filter(|e| e.get("op") == Some(Value::Str(op)))
            .collect()
    };
    let (read_events, write_events) = (of("read"), of("write"));
    assert_eq!(
        (read_events.len() as u64, write_events.len() as u64),
        (reads, writes),
        "the device counted {reads} reads and {writes} writes"
    );
    let bytes = |list: &[&eunomia::trackers::Event]| -> u64 {
        list.iter()
            .map(|e| match e.get("bytes") {
                Some(Value::U64(b)) => b,
                other => panic!("{other:?}"),
            })
            .sum()
    };
    assert_eq!(bytes(&write_events), WRITES * BLOCK);
    assert_eq!(bytes(&read_events), READS * BLOCK);
    for event in &events {
        assert_eq!(event.get("disk"), Some(Value::Str(device.name())));
        assert_eq!(event.get("error"), Some(Value::U64(0)));
        assert!(matches!(event.get("latency_ns"), Some(Value::U64(ns)) if ns > 0));
    }
}
