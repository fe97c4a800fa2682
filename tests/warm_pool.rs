//! The warm pool (root): sessions claim instances loaded ahead of them, which take each
//! session's own filters; a session with other options loads its own, and the next like
//! it starts warm; instances no session claims are unloaded; a tracker that cannot be
//! kept warm is refused at start-up.

mod common;

use std::time::{Duration, Instant};

use common::server::Server;
use common::{root_or_skip, run_copies, unique_binary};
use serde_json::{json, Value};

fn starts(server: &Server, instance: &str) -> f64 {
    server.metric(
        "eunomia_sessions_started_total",
        &format!("instance=\"{instance}\",tracker=\"process\""),
    )
}

/// An ended session's (kind, comm, count) rows, sorted.
fn counts(server: &Server, id: &str) -> Vec<(String, String, u64)> {
    let data = server.session(id, r#"aggregate(groupBy: ["kind", "comm"]) { keys count }"#);
    let mut rows: Vec<(String, String, u64)> = data["aggregate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["keys"][0].as_str().unwrap().to_string(),
                row["keys"][1].as_str().unwrap().to_string(),
                row["count"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// How many BPF programs `server` holds, once none has come or gone for half a second.
fn settled_program_count(server: &Server) -> usize {
    let held = || common::bpf_held(server.pid()).0;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut count = held();
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_millis(500) {
        assert!(
            Instant::now() < deadline,
            "programs kept loading and unloading"
        );
        std::thread::sleep(Duration::from_millis(50));
        let now = held();
        if now != count {
            (count, since) = (now, Instant::now());
        }
    }
    count
}

#[test]
fn sessions_claim_warm_instances_with_their_own_filters() {
    if !root_or_skip("sessions_claim_warm_instances_with_their_own_filters") {
        return;
    }
    let server = Server::start("warm", Some("[sessions]\nwarm = [\"process\"]\n"));
    let idle = settled_program_count(&server);
    let (one, one_comm) = unique_binary("wa");
    let (two, two_comm) = unique_binary("wb");
    // Each session runs both binaries (5 and 3 times) and, filtered by comm, sees its own.
    let session = |comm: &str, config: Value| {
        let id = server.start_session(json!({
            "tracker": "process", "durationSecs": 600, "store": "MEMORY",
            "filter": { "comm": comm }, "config": config,
        }));
        run_copies(&one, 5);
        run_copies(&two, 3);
        server.stop_session(&id);
        let runs = if comm == one_comm { 5 } else { 3 };
        assert_eq!(
            counts(&server, &id),
            vec![
                ("exec".to_string(), comm.to_string(), runs),
                ("exit".to_string(), comm.to_string(), runs)
            ],
            "{comm}"
        );
    };
    let defaults = json!({});
    let cwd = json!({ "cwd": true });
    let big_ring = json!({ "ringbuf_bytes": 8 << 20 });
    // (filter, options, warm starts after it, cold starts after it): the first two claim
    // the instance loaded at start-up and the one loaded after the first; other options
    // load their own, the next with them claims one loaded with them, and so on.
    let expected = [
        (&one_comm, &defaults, 1.0, 0.0),
        (&two_comm, &defaults, 2.0, 0.0),
        (&one_comm, &cwd, 2.0, 1.0),
        (&two_comm, &cwd, 3.0, 1.0),
        (&two_comm, &defaults, 3.0, 2.0),
        (&one_comm, &defaults, 4.0, 2.0),
        // A larger ring buffer than the defaults' loads its own, and the next instance
        // is loaded with the defaults again, not left idle with the large buffer.
        (&one_comm, &big_ring, 4.0, 3.0),
        (&one_comm, &big_ring, 4.0, 4.0),
        (&two_comm, &defaults, 5.0, 4.0),
    ];
    for (comm, options, warm, cold) in expected {
        session(comm, options.clone());
        assert_eq!(
            (starts(&server, "warm"), starts(&server, "cold")),
            (warm, cold),
            "after a session with {options}"
        );
    }
    // One warm instance again, as at start-up: those no session claimed were unloaded
    // (the server's own programs: other tests' servers come and go meanwhile).
    assert_eq!(settled_program_count(&server), idle);
}

#[test]
fn without_a_pool_every_start_is_cold() {
    if !root_or_skip("without_a_pool_every_start_is_cold") {
        return;
    }
    let server = Server::start("cold", Some("[sessions]\nwarm = []\n"));
    for _ in 0..2 {
        let id = server.start_session(json!({ "tracker": "process", "durationSecs": 600 }));
        server.stop_session(&id);
    }
    assert_eq!(
        (starts(&server, "warm"), starts(&server, "cold")),
        (0.0, 2.0)
    );
}

#[test]
fn trackers_that_cannot_be_kept_warm_are_refused() {
    // The server checks tracefs and BTF before it reads the pool.
    if !root_or_skip("trackers_that_cannot_be_kept_warm_are_refused") {
        return;
    }
    for (warm, said) in [
        (
            "\"memleak\"",
            "[sessions] warm: invalid tracker configuration: tracker `memleak` cannot be kept \
             warm: loading it needs its session's filters",
        ),
        ("\"nope\"", "[sessions] warm: unknown tracker `nope`"),
    ] {
        let (code, stderr) =
            common::server::serve_refused(&format!("[sessions]\nwarm = [{warm}]\n"));
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(said), "{stderr}");
    }
}
