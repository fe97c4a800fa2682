//! Benchmark (root): from a system call to its alert on a GraphQL subscription. A real
//! server runs the standing guard with one rule (`symlink_to_sensitive_file`); a client
//! subscribes to `alertRaised`; a program makes one symlink to /etc/shadow every 10 ms
//! (each with its own name, so that none is a repeat). Each alert's latency is the time it
//! arrives less the kernel event's time (both the wall clock of this machine). Prints
//! p50, p99 and the largest, over several rounds.
//!
//! `cargo bench --bench alert_latency`

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::server::{ws_next, ws_subscribe, Server};
use eunomia::model::{parse_rfc3339_nanos, wall_clock_ns};

const LINKS: usize = 200;
const ROUNDS: usize = 3;

fn main() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the guard loads BPF programs: run as root"
    );
    let server = Server::start("alert-latency", None);
    let started = server.query(
        r#"mutation { startGuard(rules: ["symlink_to_sensitive_file"]) { running } }"#,
        serde_json::json!({}),
    );
    assert_eq!(started["startGuard"]["running"], true);
    let mut ws = server.ws_connect(None).unwrap();
    ws_subscribe(
        &mut ws,
        "a",
        "subscription { alertRaised { ts output } }",
        serde_json::json!({}),
    );
    let dir = common::TempDir::new("alert-latency");
    let mut latencies = Vec::new();
    for round in 0..ROUNDS {
        let script = format!(
            "import os, time\nfor i in range({LINKS}):\n    \
             os.symlink('/etc/shadow', '{}/r{round}-' + str(i))\n    time.sleep(0.01)\n",
            dir.path().display()
        );
        let mut maker = std::process::Command::new("/usr/bin/python3")
            .args(["-c", &script])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut got = 0;
        while got < LINKS && Instant::now() < deadline {
            let message = ws_next(&mut ws);
            let arrived = wall_clock_ns();
            let alert = &message["payload"]["data"]["alertRaised"];
            let ts = parse_rfc3339_nanos(alert["ts"].as_str().unwrap()).unwrap();
            latencies.push(arrived.saturating_sub(ts) as f64 / 1e6);
            got += 1;
        }
        assert!(maker.wait().unwrap().success());
        assert_eq!(got, LINKS, "round {round}: {got} alerts of {LINKS} links");
    }
    latencies.sort_by(f64::total_cmp);
    let at =
        |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).min(latencies.len()) - 1];
    println!(
        "alert latency, syscall to subscription, {} alerts: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        at(0.5),
        at(0.99),
        latencies[latencies.len() - 1]
    );
}
