//! Benchmark (root): events/s from nodes into the fleet's PostgreSQL, from one node and
//! from three at once, all on this machine with one private PostgreSQL (fsync off).
//!
//! Each round starts a syscall session in stream mode (one event per call) on the nodes,
//! runs `syscall_load` in each node's cgroup (CALLS getppid calls), stops the session
//! once the loads are done, and waits until every part has ended: by then every event is
//! in `fleet_events`. The load runs at full speed, faster than a node's SQLite store
//! takes events (see `sqlite_sink`): the excess is counted lost on the node, and the
//! rate counts the events that reached PostgreSQL. The rate is the events the fleet database holds over the time from
//! the loads' start to the parts' end: recording, the local store and the copy together.
//!
//! `cargo bench --bench fleet_ingest`

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::fleet::{nodes, wait_ended, wait_running};
use common::postgres::Postgres;
use common::{median, syscall_load};
use serde_json::json;

const CALLS: u64 = 300_000;
const ROUNDS: usize = 3;

fn main() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the benchmark loads BPF programs: run it as root"
    );
    let postgres = Postgres::start_or_skip("fleet_ingest").expect("PostgreSQL's server");
    let fleet = nodes(&postgres, &["one", "two", "three"]);
    let (load, _) = syscall_load("flbench");
    let origin = &fleet[0].server;
    for count in [1, 3] {
        let mut rates = Vec::new();
        let mut lost = 0;
        for _ in 0..ROUNDS {
            let names: Vec<&str> = fleet[..count].iter().map(|n| n.name).collect();
            let data = origin.query(
                "mutation($input: StartSessionInput!) { startSession(input: $input) { id } }",
                json!({ "input": {
                    "tracker": "syscall", "durationSecs": 120, "nodes": names,
                    "config": { "mode": "stream" },
                } }),
            );
            let id = data["startSession"]["id"].as_str().unwrap().to_string();
            wait_running(origin, &id, &names);
            let started = Instant::now();
            std::thread::scope(|s| {
                for node in &fleet[..count] {
                    let script = format!("{} {CALLS}", load.display());
                    s.spawn(move || node.cgroup.shell(&script));
                }
            });
            origin.stop_session(&id);
            let session = wait_ended(origin, &id, Duration::from_secs(300));
            let took = started.elapsed().as_secs_f64();
            let events = session["eventCount"].as_u64().unwrap();
            let round_lost = session["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["lostCount"].as_u64().unwrap())
                .sum::<u64>();
            // A burst outruns a node's own store: what it cannot take is counted lost
            // there, and everything it took reaches the fleet database.
            assert!(events + round_lost >= CALLS * count as u64, "{session}");
            lost += round_lost;
            rates.push(events as f64 / took);
        }
        println!(
            "{count} node(s): {:.0} events/s into PostgreSQL (median of {ROUNDS}: {:?}), {lost} lost",
            median(&mut rates.clone()),
            rates.iter().map(|r| r.round()).collect::<Vec<_>>()
        );
    }
    let size = postgres.psql("SELECT pg_size_pretty(pg_total_relation_size('fleet_events_p0') + pg_total_relation_size('fleet_events_p1') + pg_total_relation_size('fleet_events_p2') + pg_total_relation_size('fleet_events_p3')), (SELECT count(*) FROM fleet_events)");
    println!("fleet_events: {size} (size | rows)");
}
