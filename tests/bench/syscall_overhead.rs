//! Benchmark (root): what tracing every system call costs the traced program, side by side
//! in one run. A static C loop of 5,000,000 getppid calls runs with no tracing, with an
//! empty program attached to every call's exit (the floor: what attaching at all costs),
//! under the syscall tracker in aggregate mode (no filter: every process's calls are
//! counted), and under `bpftrace -e 'tracepoint:raw_syscalls:sys_enter { @[comm] =
//! count(); }'`; then
//! stream mode sends each of the loop's calls through the ring buffer into an in-memory
//! aggregator, and its rate and loss are reported (seen + lost must equal calls made).
//!
//! `cargo bench --bench syscall_overhead`

#[path = "../common/mod.rs"]
mod common;
#[path = "floor.rs"]
mod floor;

use common::median;
use floor::{build_bare, Bare};

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Counted;
use eunomia::engine::{Counters, TrackerConfig, TrackerHandle};
use eunomia::trackers::find_tracker;
use eunomia::trackers::syscall::{Mode, SyscallOptions};

const CALLS: u64 = 5_000_000;
const ROUNDS: usize = 5;
const BPFTRACE: &str = "tracepoint:raw_syscalls:sys_enter { @[comm] = count(); }";

fn start(config: TrackerConfig) -> (TrackerHandle, Arc<AtomicU64>) {
    let chain = Counted::new(&["syscall"]);
    let seen = chain.seen.clone();
    let handle = find_tracker("syscall")
        .unwrap()
        .start(config, Box::new(chain), Arc::new(Counters::default()))
        .expect("syscall tracker starts");
    (handle, seen)
}

/// The standing guard with every built-in rule, its alerts counted and dropped.
fn start_guard() -> eunomia::security::Guard {
    #[derive(Clone)]
    struct Drop;
    impl eunomia::security::AlertSink for Drop {
        fn raise(&self, _: eunomia::security::Raised) {}
    }
    let set = eunomia::security::RuleSet::builtin();
    let rules = set.select(&["*".to_string()]).unwrap();
    let containers =
        eunomia::container::ContainerManager::new(eunomia::container::ContainerOptions::default());
    eunomia::security::Guard::start(
        &set,
        &rules,
        Default::default(),
        Drop,
        containers,
        eunomia::metrics::Metrics::new(),
    )
    .expect("the guard starts")
}

/// One run of the loop: wall time and the loop process's own CPU time (user + system),
/// in seconds. CPU time is steadier when other work shares the machine.
#[derive(Clone, Copy)]
struct Timing {
    wall: f64,
    cpu: f64,
}

fn time_loop(path: &Path) -> Timing {
    let start = Instant::now();
    let child = Command::new(path).arg(CALLS.to_string()).spawn().unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointers; the pid is our child's, not yet reaped.
    let reaped = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(reaped, child.id() as i32);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Timing {
        wall: start.elapsed().as_secs_f64(),
        cpu: secs(usage.ru_utime) + secs(usage.ru_stime),
    }
}

fn with_bpftrace(path: &Path) -> Timing {
    let mut child = Command::new("bpftrace")
        .args(["-e", BPFTRACE])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bpftrace runs");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("Attaching"), "bpftrace said: {line}");
    // It prints before attaching; give it time to finish.
    std::thread::sleep(Duration::from_secs(1));
    let timing = time_loop(path);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    child.wait().unwrap();
    timing
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the syscall benchmark loads BPF programs: run it as root"
    );
    let (path, comm) = common::syscall_load("bench");
    let objects = common::TempDir::new("bare");
    let bare = build_bare(objects.path());
    let names = [
        "no tracing",
        "empty program on sys_exit (floor)",
        "eunomia syscall, aggregate",
        "eunomia syscall, aggregate + latency",
        "bpftrace count by comm",
        "eunomia guard, every built-in rule",
    ];
    let mut runs: Vec<Vec<Timing>> = vec![Vec::new(); names.len()];
    for round in 1..=ROUNDS {
        runs[0].push(time_loop(&path));
        let attached = Bare::attach(&bare);
        runs[1].push(time_loop(&path));
        drop(attached);
        for (column, latency) in [(2, None), (3, Some(true))] {
            let (handle, _) = start(TrackerConfig::default().with_options(SyscallOptions {
                latency,
                ..SyscallOptions::default()
            }));
            runs[column].push(time_loop(&path));
            let stats = handle.stop().unwrap();
            assert_eq!(stats.lost(), 0, "aggregate mode lost calls: {stats:?}");
        }
        runs[4].push(with_bpftrace(&path));
        let guard = start_guard();
        runs[5].push(time_loop(&path));
        guard.stop().unwrap();
        let line: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.3}", r[round - 1].wall))
            .collect();
        println!("round {round} wall seconds: {}", line.join(" / "));
    }
    let medians: Vec<(f64, f64)> = runs
        .iter()
        .map(|r| {
            let (mut wall, mut cpu): (Vec<f64>, Vec<f64>) =
                r.iter().map(|t| (t.wall, t.cpu)).unzip();
            (median(&mut wall), median(&mut cpu))
        })
        .collect();
    println!(
        "{CALLS} getppid calls, median of {ROUNDS} rounds (wall s, ratio to none, ratio to the floor; loop CPU s, ratio to none):"
    );
    for (name, (wall, cpu)) in names.iter().zip(&medians) {
        println!(
            "  {name:<38} {wall:.3}  {:.2}  {:.2}   {cpu:.3}  {:.2}",
            wall / medians[0].0,
            wall / medians[1].0,
            cpu / medians[0].1
        );
    }

    let made = common::calls_made(&path, &[CALLS]);
    for latency in [true, false] {
        let rates = stream_rates(&path, &comm, made, latency);
        println!(
            "stream mode (latency {latency}) into an in-memory aggregator: median {:.2} M events/s",
            median(&mut rates.clone()) / 1e6
        );
    }
}

/// Stream-mode rounds: every call of the loop through the ring buffer into an aggregator.
/// Returns events per second, from the loop's start until every call is seen or lost.
fn stream_rates(path: &Path, comm: &str, made: u64, latency: bool) -> Vec<f64> {
    let mut rates = Vec::new();
    for round in 1..=ROUNDS {
        let config = TrackerConfig {
            comm: Some(comm.to_string()),
            ringbuf_bytes: 64 << 20,
            ..TrackerConfig::default()
        }
        .with_options(SyscallOptions {
            mode: Mode::Stream,
            latency: Some(latency),
            ..SyscallOptions::default()
        });
        let (handle, seen) = start(config);
        let started = Instant::now();
        let loop_secs = time_loop(path).wall;
        // Done when every call is either seen or counted lost.
        let deadline = started + Duration::from_secs(30);
        while seen.load(Ordering::Relaxed) + handle.stats().lost() < made
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        let secs = started.elapsed().as_secs_f64();
        let stats = handle.stop().unwrap();
        assert_eq!(
            stats.seen + stats.lost(),
            made,
            "stream mode: seen + lost must be the calls made: {stats:?}"
        );
        let rate = stats.seen as f64 / secs;
        println!(
            "stream round {round}: {} seen, {} lost of {made} calls; loop {loop_secs:.3} s, all in after {secs:.3} s: {:.2} M events/s",
            stats.seen,
            stats.lost(),
            rate / 1e6
        );
        rates.push(rate);
    }
    rates
}
