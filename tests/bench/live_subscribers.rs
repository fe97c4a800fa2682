//! Benchmark (root): what live subscribers cost the traced workload. A syscall stream
//! session (MEMORY, no latency) traces a static loop of getppid calls while 0, 1 or 10
//! `sessionEvents` subscribers read over websockets; interleaved rounds, medians of the
//! loop's wall time, and the events the session and the subscribers saw or lost.
//!
//! `cargo bench --bench live_subscribers`

#[path = "../common/mod.rs"]
mod common;

use common::median;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::{ws_subscribe, Server, Ws};
use serde_json::{json, Value};

const CALLS: u64 = 2_000_000;
const ROUNDS: usize = 3;
const SUBSCRIBERS: [usize; 3] = [0, 1, 10];

/// A graphql-transport-ws client subscribed to the session's live events.
fn subscribe(server: &Server, id: &str) -> Ws {
    let mut ws = server.ws_connect(None).unwrap();
    ws_subscribe(
        &mut ws,
        "1",
        "subscription($id: ID!) { sessionEvents(id: $id) { ts kind pid comm data } }",
        json!({ "id": id }),
    );
    ws
}

struct Round {
    wall: f64,
    seen: u64,
    lost: u64,
    received: u64,
}

fn round(server: &Server, load: &std::path::Path, comm: &str, subscribers: usize) -> Round {
    let id = server.start_session(json!({
        "tracker": "syscall", "durationSecs": 120, "store": "MEMORY",
        "filter": { "comm": comm }, "config": { "mode": "stream", "latency": false },
    }));
    let received = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..subscribers)
        .map(|_| {
            let mut ws = subscribe(server, &id);
            let received = received.clone();
            std::thread::spawn(move || {
                // Until the subscription completes, when the session ends.
                while let Ok(tungstenite::Message::Text(text)) = ws.read() {
                    match serde_json::from_str::<Value>(&text).unwrap()["type"].as_str() {
                        Some("next") => {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        Some("complete" | "error") => break,
                        _ => {}
                    }
                }
            })
        })
        .collect();
    while server.session(&id, "subscribers")["subscribers"] != json!(subscribers) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    assert!(Command::new(load)
        .arg(CALLS.to_string())
        .status()
        .unwrap()
        .success());
    let wall = started.elapsed().as_secs_f64();
    let ended = server.query(
        "mutation($id: ID!) { stopSession(id: $id) { eventCount lostCount } }",
        json!({ "id": id }),
    )["stopSession"]
        .clone();
    for reader in readers {
        reader.join().unwrap();
    }
    Round {
        wall,
        seen: ended["eventCount"].as_u64().unwrap(),
        lost: ended["lostCount"].as_u64().unwrap(),
        received: received.load(Ordering::Relaxed),
    }
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the benchmark loads BPF programs: run it as root"
    );
    let server = Server::start("bench-live", None);
    let (load, comm) = common::syscall_load("live");
    let mut rounds: Vec<Vec<Round>> = SUBSCRIBERS.iter().map(|_| Vec::new()).collect();
    for r in 1..=ROUNDS {
        for (column, &subscribers) in SUBSCRIBERS.iter().enumerate() {
            let result = round(&server, &load, &comm, subscribers);
            eprintln!(
                "round {r}, {subscribers} subscribers: {:.3} s, {} stored, {} lost, {} delivered",
                result.wall, result.seen, result.lost, result.received
            );
            rounds[column].push(result);
        }
    }
    let base = median(&mut rounds[0].iter().map(|r| r.wall).collect::<Vec<_>>());
    println!("{CALLS} getppid calls traced in stream mode, median of {ROUNDS} interleaved rounds:");
    for (column, &subscribers) in SUBSCRIBERS.iter().enumerate() {
        let wall = median(&mut rounds[column].iter().map(|r| r.wall).collect::<Vec<_>>());
        let delivered = median(
            &mut rounds[column]
                .iter()
                .map(|r| r.received as f64 / (subscribers.max(1) as f64))
                .collect::<Vec<_>>(),
        );
        let lost = median(
            &mut rounds[column]
                .iter()
                .map(|r| r.lost as f64)
                .collect::<Vec<_>>(),
        );
        println!(
            "  {subscribers:>2} subscribers: {wall:.3} s ({:.2}x), session lost {lost:.0}, each subscriber got {delivered:.0} events",
            wall / base
        );
    }
}
