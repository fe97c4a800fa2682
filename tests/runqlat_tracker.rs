//! The runqlat tracker against the real kernel (root): two shells spinning on one CPU take
//! turns, each waiting about a time slice while the other runs. Every time one gets the
//! CPU is an event, as many as bpftrace counts switches to them over the same window.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{root_or_skip, start_tracker, Collector, TempDir};
use eunomia::engine::TrackerConfig;
use eunomia::model::{Record, Value};

const MS: u64 = 1_000_000;

#[test]
fn two_spinners_on_one_cpu_wait_a_time_slice_each_turn() {
    if !root_or_skip("two_spinners_on_one_cpu_wait_a_time_slice_each_turn") {
        return;
    }
    // A shell under a name of its own: its comm picks out the spinners.
    let comm = format!("eurq{}", std::process::id() % 100_000);
    let dir = TempDir::new("runqlat");
    let shell = dir.join(&comm);
    std::fs::copy("/bin/dash", &shell).unwrap();

    let collector = Collector::default();
    let handle = start_tracker(
        "runqlat",
        TrackerConfig {
            comm: Some(comm.clone()),
            ..TrackerConfig::default()
        },
        collector.clone(),
    );
    let script = format!(
        "tracepoint:sched:sched_switch /args->next_comm == \"{comm}\"/ {{ @switches = count(); }}"
    );
    // bpftrace runs the spinners itself (-c): it attaches, runs the command and prints
    // its count when the command ends, with no signal to time. Two shells spin on one CPU
    // for a second, then are killed.
    let spinner = format!("taskset -c 0 {} -c 'while :; do :; done'", shell.display());
    let script_file = dir.join("spin.sh");
    std::fs::write(
        &script_file,
        format!("{spinner} &\na=$!\n{spinner} &\nsleep 1\nkill $a $!\nwait\n"),
    )
    .unwrap();
    let spinners = format!("/bin/sh {}", script_file.display());
    let bpftrace = Command::new("bpftrace")
        .args(["-e", &script, "-c", &spinners])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Should bpftrace never end, the wait below ends anyway.
    let (pid, finished) = (bpftrace.id(), Arc::new(AtomicBool::new(false)));
    let watchdog = finished.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        if !watchdog.load(Ordering::Relaxed) {
            // SAFETY: kill on our own child's pid, which it keeps until reaped below.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let out = bpftrace.wait_with_output().unwrap();
    finished.store(true, Ordering::Relaxed);
    handle.stop().unwrap();
    let rest = String::from_utf8_lossy(&out.stdout);

    let switches: u64 = rest
        .lines()
        .find_map(|l| l.strip_prefix("@switches: "))
        .unwrap_or_else(|| {
            panic!(
                "no count from bpftrace: {rest} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .trim()
        .parse()
        .unwrap();
    let events = collector.events();
    assert_eq!(
        events.len() as u64,
        switches,
        "bpftrace counted {switches} switches"
    );
    // Taking turns on one CPU: most waits are the other's slice, a few ms, not µs.
    let mut preempted: Vec<u64> = events
        .iter()
        .filter(|e| e.get("reason") == Some(Value::Str("preempted")))
        .map(|e| match e.get("latency_ns") {
            Some(Value::U64(ns)) => ns,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(preempted.len() >= 20, "{} preemptions", preempted.len());
    preempted.sort_unstable();
    let median = preempted[preempted.len() / 2];
    assert!(
        (MS / 2..=50 * MS).contains(&median),
        "median wait {median} ns"
    );
    assert!(events
        .iter()
        .all(|e| e.get("cpu") == Some(Value::U64(0)) && e.get("comm") == Some(Value::Str(&comm))));
}
