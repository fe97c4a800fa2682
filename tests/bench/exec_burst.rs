//! Benchmark (root): an exec burst of 10,000 short processes while the process tracker
//! runs. Reports events captured and lost, the tracker's event rate, its thread's CPU
//! time, and the BPF programs' own run time per event (kernel.bpf_stats_enabled).
//!
//! `cargo bench --bench exec_burst`

#[path = "../common/mod.rs"]
mod common;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Counted;
use eunomia::engine::{Counters, TrackerConfig};
use eunomia::trackers::find_tracker;

const PROCESSES: u64 = 10_000;
const SPAWNERS: u64 = 2;
const RUNS: usize = 3;

/// User + system CPU seconds of this process's thread named `name`.
fn thread_cpu_secs(name: &str) -> f64 {
    let ticks = 100.0; // sysconf(_SC_CLK_TCK) on Linux
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        if std::fs::read_to_string(dir.join("comm"))
            .unwrap_or_default()
            .trim()
            == name
        {
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
            let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
            let (utime, stime): (f64, f64) =
                (fields[11].parse().unwrap(), fields[12].parse().unwrap());
            return (utime + stime) / ticks;
        }
    }
    panic!("no thread named {name}");
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the exec burst benchmark loads BPF programs: run it as root"
    );
    let dir = std::env::temp_dir().join(format!("eunomia-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let comm = "eunomia_burst";
    let binary = dir.join(comm);
    std::fs::copy("/bin/true", &binary).unwrap();
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1");

    let mut results = Vec::new();
    for run in 0..RUNS {
        let chain = Counted::new(&["kind", "comm"]);
        let seen = chain.seen.clone();
        let config = TrackerConfig {
            comm: Some(comm.into()),
            ..TrackerConfig::default()
        };
        let counters = Arc::new(Counters::default());
        let handle = find_tracker("process")
            .unwrap()
            .start(config, Box::new(chain), counters)
            .unwrap();
        let prog_ids = handle.prog_ids().to_vec();
        let cpu_before = thread_cpu_secs("tracker-process");
        let start = Instant::now();
        let spawners: Vec<_> = (0..SPAWNERS)
            .map(|_| {
                let binary = binary.clone();
                std::thread::spawn(move || {
                    for _ in 0..PROCESSES / SPAWNERS {
                        assert!(Command::new(&binary).status().unwrap().success());
                    }
                })
            })
            .collect();
        spawners.into_iter().for_each(|s| s.join().unwrap());
        let expected = 2 * PROCESSES;
        while handle.stats().seen + handle.stats().lost() < expected
            && start.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let wall = start.elapsed().as_secs_f64();
        let cpu = thread_cpu_secs("tracker-process") - cpu_before;
        let (run_ns, run_cnt) = libbpf_rs::query::ProgInfoIter::default()
            .filter(|p| prog_ids.contains(&p.id))
            .fold((0u64, 0u64), |(ns, cnt), p| {
                (ns + p.run_time_ns, cnt + p.run_cnt)
            });
        let stats = handle.stop().unwrap();
        println!(
            "run {}: {} events seen, {} lost, {} reached the chain end in {:.2} s: {:.0} events/s; tracker thread CPU {:.3} s ({:.1} us/event); BPF {:.0} ns/run over {} runs",
            run + 1,
            stats.seen,
            stats.lost(),
            seen.load(Ordering::Relaxed),
            wall,
            stats.seen as f64 / wall,
            cpu,
            cpu * 1e6 / stats.seen.max(1) as f64,
            run_ns as f64 / run_cnt.max(1) as f64,
            run_cnt
        );
        assert_eq!(
            (stats.seen, stats.lost()),
            (expected, 0),
            "every event captured"
        );
        results.push((stats.seen as f64 / wall, cpu));
    }
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0");
    std::fs::remove_dir_all(&dir).unwrap();
    results.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut cpus: Vec<f64> = results.iter().map(|r| r.1).collect();
    cpus.sort_by(f64::total_cmp);
    println!(
        "exec burst of {PROCESSES} processes: {} events each run, 0 lost; median {:.0} events/s, median tracker CPU {:.3} s over {RUNS} runs",
        2 * PROCESSES,
        results[RUNS / 2].0,
        cpus[RUNS / 2]
    );
}
