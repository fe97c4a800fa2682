//! Benchmark (root): mutation-to-attached latency. `startSession` returns once the
//! tracker's BPF programs are loaded and attached, so its HTTP round trip is the time from
//! the mutation to tracing. Reports p50 and p99 over many sessions of each core tracker
//! (each stopped after), and of stopSession: loading against the kernel's full BTF and
//! against the cached minimal BTF, side by side.
//!
//! `cargo bench --bench session_start`

#[path = "../common/mod.rs"]
mod common;

use std::time::Instant;

use common::server::Server;
use serde_json::json;

const SESSIONS: usize = 50;
const TRACKERS: [&str; 5] = ["process", "syscall", "tcp", "files", "ipc"];

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the benchmark loads BPF programs: run it as root"
    );
    // Side by side: loading against the kernel's full BTF, against each probe's cached
    // minimal BTF (a fresh cache, made as the server starts), and the warm pool.
    let cache = common::TempDir::new("bench-btf");
    let cached = format!("btf_cache = \"{}\"\n", cache.path().display());
    let cold = "[sessions]\nwarm = []\n";
    let servers = [
        (
            "full BTF",
            Server::start(
                "bench-start-full",
                Some(&format!("btf_cache = \"\"\n{cold}")),
            ),
        ),
        (
            "cached minimal BTF",
            Server::start("bench-start-min", Some(&format!("{cached}{cold}"))),
        ),
        (
            "warm pool",
            Server::start("bench-start-warm", Some(&cached)),
        ),
    ];
    // Once the pool's instances are loaded: what they hold beyond a server without them.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (without, with) = (
        common::bpf_held(servers[1].1.pid()),
        common::bpf_held(servers[2].1.pid()),
    );
    println!(
        "warm pool, idle: {} programs loaded and not attached, {} maps, {:.1} MiB of kernel memory",
        with.0 - without.0,
        with.1 - without.1,
        (with.2 - without.2) as f64 / f64::from(1 << 20)
    );
    let start = "mutation($tracker: String!) { startSession(input: {tracker: $tracker, durationSecs: 60, store: MEMORY}) { id programIds } }";
    let stop = "mutation($id: ID!) { stopSession(id: $id) { status } }";
    for tracker in TRACKERS {
        let mut programs = 0;
        for (_, server) in &servers {
            // One warm-up session: the first load also pages in the kernel's BTF.
            let warm = server.query(start, json!({ "tracker": tracker }));
            programs = warm["startSession"]["programIds"].as_array().unwrap().len();
            assert!(programs > 0, "attached when it returns");
            server.query(stop, json!({ "id": warm["startSession"]["id"] }));
        }
        let mut latencies = vec![Vec::with_capacity(SESSIONS); servers.len()];
        let mut stops = vec![Vec::with_capacity(SESSIONS); servers.len()];
        // Interleaved, so that both see the same machine.
        for _ in 0..SESSIONS {
            for (i, (_, server)) in servers.iter().enumerate() {
                let began = Instant::now();
                let data = server.query(start, json!({ "tracker": tracker }));
                latencies[i].push(began.elapsed().as_secs_f64() * 1e3);
                assert_eq!(
                    data["startSession"]["programIds"].as_array().unwrap().len(),
                    programs,
                    "attached when it returns"
                );
                let began = Instant::now();
                server.query(stop, json!({ "id": data["startSession"]["id"] }));
                stops[i].push(began.elapsed().as_secs_f64() * 1e3);
            }
        }
        for (i, (name, _)) in servers.iter().enumerate() {
            println!(
                "{tracker:<8} {name:<18} startSession to attached over {SESSIONS} sessions: p50 {:.1} ms, p99 {:.1} ms; stopSession p50 {:.1} ms, p99 {:.1} ms",
                percentile(&mut latencies[i], 50.0),
                percentile(&mut latencies[i], 99.0),
                percentile(&mut stops[i], 50.0),
                percentile(&mut stops[i], 99.0)
            );
        }
    }
    let files: Vec<u64> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .collect();
    println!(
        "BTF cache: {} files, {} bytes in all",
        files.len(),
        files.iter().sum::<u64>()
    );
}
