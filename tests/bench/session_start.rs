//! Benchmark (root): mutation-to-attached latency. `startSession` returns once the
//! tracker's BPF programs are loaded and attached, so its HTTP round trip is the time from
//! the mutation to tracing. Reports p50 and p99 over many sessions (each stopped after).
//!
//! `cargo bench --bench session_start`

#[path = "../common/mod.rs"]
mod common;

use std::time::Instant;

use common::server::Server;
use serde_json::json;

const SESSIONS: usize = 100;

fn main() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the benchmark loads BPF programs: run it as root"
    );
    let server = Server::start("bench-start", None);
    let start = "mutation { startSession(input: {tracker: \"process\", durationSecs: 60, store: MEMORY}) { id programIds } }";
    let stop = "mutation($id: ID!) { stopSession(id: $id) { status } }";
    // One warm-up session: the first load also reads the kernel's BTF.
    let warm = server.query(start, json!({}));
    server.query(stop, json!({ "id": warm["startSession"]["id"] }));

    let mut latencies = Vec::with_capacity(SESSIONS);
    let mut stops = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        let began = Instant::now();
        let data = server.query(start, json!({}));
        latencies.push(began.elapsed().as_secs_f64() * 1e3);
        assert_eq!(
            data["startSession"]["programIds"].as_array().unwrap().len(),
            2,
            "attached when it returns"
        );
        let began = Instant::now();
        server.query(stop, json!({ "id": data["startSession"]["id"] }));
        stops.push(began.elapsed().as_secs_f64() * 1e3);
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
    };
    println!(
        "startSession to attached over {SESSIONS} sessions: p50 {:.1} ms, p99 {:.1} ms (min {:.1}, max {:.1}); stopSession p50 {:.1} ms, p99 {:.1} ms",
        pct(&mut latencies, 50.0),
        pct(&mut latencies, 99.0),
        latencies[0],
        latencies[SESSIONS - 1],
        pct(&mut stops, 50.0),
        pct(&mut stops, 99.0)
    );
}
