//! Benchmark (root, Docker): container churn. 500 containers start and exit while the
//! server runs; the server's RSS afterwards must stay within 5 MB of before, and its
//! tables bounded (at most DEAD_KEEP exited containers remembered).
//!
//! `cargo bench --bench container_churn`

#[path = "../common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::docker::{docker_or_skip, IMAGE};
use common::server::Server;
use serde_json::json;

const CONTAINERS: usize = 500;
const WARM_UP: usize = 40;
const WORKERS: usize = 4;
const MAX_GROWTH_KB: u64 = 5 * 1024;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Starts `n` short-lived containers (`docker run --rm ... true`), `WORKERS` at a time.
fn churn(n: usize, tag: &str) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let name = format!("eu-churn-{tag}-{i}");
                let status = Command::new("docker")
                    .args([
                        "run",
                        "--rm",
                        "--network",
                        "none",
                        "--name",
                        &name,
                        IMAGE,
                        "true",
                    ])
                    .stdout(Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success(), "docker run {name}");
            });
        }
    });
}

fn main() {
    assert!(
        docker_or_skip("container_churn"),
        "the benchmark needs root and Docker"
    );
    let server = Server::start("bench-churn", None);
    let pid = server.pid();
    let exited = || {
        server.query("{ containers(exited: true) { id } }", json!({}))["containers"]
            .as_array()
            .unwrap()
            .len()
    };
    // Warm up: first-time allocations (tables, the Docker client, the process watch).
    churn(WARM_UP, "warm");
    std::thread::sleep(Duration::from_secs(3));
    let before = rss_kb(pid);

    let start = Instant::now();
    churn(CONTAINERS, "run");
    let elapsed = start.elapsed();
    // Let the last events and a rescan land.
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_kb(pid);
    let remembered = exited();

    println!(
        "container churn: {CONTAINERS} containers started and exited in {:.1} s ({:.1}/s)",
        elapsed.as_secs_f64(),
        CONTAINERS as f64 / elapsed.as_secs_f64()
    );
    println!(
        "server RSS: {before} kB before, {after} kB after ({:+} kB); {remembered} exited containers remembered (bound {})",
        after as i64 - before as i64,
        eunomia::container::DEAD_KEEP
    );
    assert!(
        after <= before + MAX_GROWTH_KB,
        "RSS grew by {} kB, more than {MAX_GROWTH_KB} kB",
        after - before
    );
    assert!(remembered <= eunomia::container::DEAD_KEEP);
}
