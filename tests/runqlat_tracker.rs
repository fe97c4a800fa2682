//! The runqlat tracker against the real kernel (root): two shells spinning on one CPU take
//! turns, each waiting about a time slice while the other runs. Every time one gets the
//! CPU is an event, as many as bpftrace counts switches to them over the same window.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
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
    // Unbuffered: into a pipe, its "Attaching" line would otherwise wait for more.
    let mut command = Command::new("bpftrace");
    command
        .args(["-B", "none", "-e", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec. A shell starts
    // background jobs with SIGINT ignored, which exec keeps: bpftrace would then miss
    // the SIGINT that ends it, should it come before bpftrace sets its own handler.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut bpftrace = command.spawn().unwrap();
    // Should bpftrace never say it attached, or never end, the reads below end anyway.
    let (pid, finished) = (bpftrace.id(), Arc::new(AtomicBool::new(false)));
    let watchdog = finished.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        if !watchdog.load(Ordering::Relaxed) {
            // SAFETY: kill on our own child's pid, which it keeps until reaped below.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let mut out = BufReader::new(bpftrace.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("Attaching"), "{line}");

    let cpu = "0";
    let mut spinners: Vec<_> = (0..2)
        .map(|_| {
            Command::new("taskset")
                .args(["-c", cpu])
                .arg(&shell)
                .args(["-c", "while :; do :; done"])
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    for spinner in &mut spinners {
        spinner.kill().unwrap();
        spinner.wait().unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: SIGINT to our own child: bpftrace prints its map and exits.
    unsafe { libc::kill(bpftrace.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    finished.store(true, Ordering::Relaxed);
    bpftrace.wait().unwrap();
    handle.stop().unwrap();

    let switches: u64 = rest
        .lines()
        .find_map(|l| l.strip_prefix("@switches: "))
        .unwrap_or_else(|| panic!("no count from bpftrace: {rest}"))
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
