//! Benchmark (root): the console's live event table at 0, 1,000 and 10,000 events/s.
//! A python loop makes getppid calls at a set rate, a syscall session in stream mode
//! follows that process, and `tests/console/live_bench.mjs` (headless Chromium) shows
//! the session's live events for 5 s and reports the events/s the page received and its
//! frame gaps: a page that keeps drawing every ~16 ms is responsive.
//!
//! `cargo bench --bench console_live`

#[path = "../common/mod.rs"]
mod common;

use std::process::Command;

use common::server::Server;
use serde_json::json;

/// getppid calls per second, in bursts every 10 ms, for 40 s.
const LOAD: &str = "import os, sys, time\n\
    rate = int(sys.argv[1]); end = time.time() + 40\n\
    while time.time() < end:\n\
    \x20   t = time.time()\n\
    \x20   for _ in range(rate // 100): os.getppid()\n\
    \x20   time.sleep(max(0.0, 0.01 - (time.time() - t)))\n";

fn main() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the benchmark loads BPF programs: run it as root"
    );
    let server = Server::start("bench-live", None);
    for rate in [0u32, 1_000, 10_000] {
        let mut load = Command::new("/usr/bin/python3")
            .args(["-c", LOAD, &rate.to_string()])
            .spawn()
            .unwrap();
        let id = server.start_session(json!({
            "tracker": "syscall", "durationSecs": 30, "store": "MEMORY",
            "filter": { "pid": load.id() }, "config": { "mode": "stream" },
        }));
        let out = Command::new("node")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/console/live_bench.mjs"
            ))
            .args([server.url.as_str(), &id])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "{rate:>6} calls/s: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
        server.stop_session(&id);
        let _ = load.kill();
        let _ = load.wait();
    }
}
