//! Failure behaviour of the server (root): a full disk, clients that hang up, parallel
//! and racing mutations, a second server on one database, a crash and restart.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::server::{ws_next, ws_subscribe, Server};
use common::{root_or_skip, run_copies, syscall_load, unique_binary, TempDir, Tmpfs};
use eunomia::results::StoreOptions;
use serde_json::{json, Value};

fn stored_events(server: &Server, id: &str) -> u64 {
    let rows = server.session(id, r#"aggregate(groupBy: ["kind"]) { count }"#);
    rows["aggregate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count"].as_u64().unwrap())
        .sum()
}

/// The database on a 2 MiB tmpfs, a syscall stream session fills it: the batch that
/// does not fit is rolled back, its events are counted lost at stage `sqlite`, the
/// session ends FAILED with the error, health says so, and once there is room again
/// every write works at once (no "database is locked").
#[test]
fn a_full_disk_fails_the_session_and_writes_resume_with_room() {
    if !root_or_skip("a_full_disk_fails_the_session_and_writes_resume_with_room") {
        return;
    }
    let disk = Tmpfs::mount("full-disk", "2m");
    let server = Server::start_in(disk.dir.path(), None);
    let (load, comm) = syscall_load("fd");
    let id = server.start_session(json!({
        "tracker": "syscall", "durationSecs": 30, "filter": { "comm": comm },
        "config": { "mode": "stream", "latency": false },
    }));
    // Calls enough to fill 2 MiB many times over; killed once the session has failed.
    let mut child = Command::new(&*load).arg("20000000").spawn().unwrap();
    let status = server.wait_ended(&id, Duration::from_secs(25));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, "FAILED");
    let session = server.session(&id, "error eventCount lostCount");
    let error = session["error"].as_str().unwrap();
    assert!(
        error.starts_with("storing events failed: ") && error.contains("full"),
        "{error}"
    );
    // What the session says it stored is what it stored.
    let stored = session["eventCount"].as_u64().unwrap();
    assert_eq!(stored_events(&server, &id), stored);
    assert!(session["lostCount"].as_u64().unwrap() > 0, "{session}");
    assert!(server.metric("eunomia_events_lost_total", "stage=\"sqlite\"") > 0.0);
    // The store says what failed, and when; it may already be ok again if a small batch
    // fitted after the session ended.
    let health = server.query(
        "{ health { store { lastError lastErrorAt failedBatches } } }",
        json!({}),
    );
    let store = &health["health"]["store"];
    assert!(
        store["lastError"].as_str().unwrap().contains("full"),
        "{health}"
    );
    assert!(store["lastErrorAt"].as_str().unwrap().ends_with('Z'));
    assert!(store["failedBatches"].as_u64().unwrap() >= 1);

    // Room again: writes go through at once, and the next committed batch clears health.
    disk.resize("64m");
    let started = Instant::now();
    let (binary, comm) = unique_binary("fdok");
    let next = server.start_session(json!({
        "tracker": "process", "durationSecs": 30, "filter": { "comm": comm },
    }));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "startSession took {:?}",
        started.elapsed()
    );
    run_copies(&binary, 3);
    assert_eq!(server.stop_session(&next), "STOPPED");
    assert_eq!(server.session(&next, "eventCount")["eventCount"], 6);
    assert_eq!(stored_events(&server, &next), 6);
    let health = server.query("{ health { store { ok lastError } } }", json!({}));
    assert_eq!(health["health"]["store"]["ok"], true, "{health}");
    assert!(health["health"]["store"]["lastError"]
        .as_str()
        .unwrap()
        .contains("full"));
    // The failed session's final record is saved again every second once there is room;
    // until then a delete says so.
    let deadline = Instant::now() + Duration::from_secs(5);
    let deleted = loop {
        let (_, body) = server.post(
            "mutation($id: ID!) { deleteSession(id: $id) }",
            json!({ "id": id }),
            None,
        );
        if body["data"]["deleteSession"] == true || Instant::now() > deadline {
            break body;
        }
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "SESSION_RUNNING",
            "{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(deleted["data"]["deleteSession"], true, "{deleted}");
}

/// Sends a startSession and hangs up at once: the mutation still runs to its end, the
/// session ends at its deadline and the audit trail has it.
#[test]
fn a_client_that_hangs_up_mid_mutation_leaves_nothing_running() {
    if !root_or_skip("a_client_that_hangs_up_mid_mutation_leaves_nothing_running") {
        return;
    }
    let server = Server::start("hangup", None);
    let host = server.url.trim_start_matches("http://").to_string();
    let body = json!({
        "query": "mutation { startSession(input: {tracker: \"process\", durationSecs: 1}) { id } }"
    })
    .to_string();
    // Hanging up 0 to 25 ms after sending: a request the server did not read in time is
    // not a mutation at all; every one it read must run to its end.
    for hang_up_after in 0..6 {
        let mut stream = TcpStream::connect(&host).unwrap();
        write!(
            stream,
            "POST /graphql HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(hang_up_after * 5));
        drop(stream);
    }
    // Every start is recorded and every session ends on time.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (statuses, audited) = loop {
        let data = server.query(
            "{ sessions(first: 20) { edges { node { status } } } auditLog(first: 20) { action outcome } }",
            json!({}),
        );
        let statuses: Vec<Value> = data["sessions"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["status"].clone())
            .collect();
        let audited: Vec<Value> = data["auditLog"].as_array().unwrap().clone();
        let done = !statuses.is_empty() && statuses.iter().all(|s| s == "COMPLETED");
        if done || Instant::now() > deadline {
            break (statuses, audited);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!statuses.is_empty(), "no start got through");
    assert_eq!(statuses, vec![json!("COMPLETED"); statuses.len()]);
    assert_eq!(
        audited,
        vec![json!({ "action": "startSession", "outcome": "ok" }); statuses.len()]
    );
    let health = server.query("{ health { activeSessions } }", json!({}));
    assert_eq!(health["health"]["activeSessions"], 0);
    assert_eq!(server.metric("eunomia_sessions_active", ""), 0.0);
}

/// Twelve parallel starts with `max_concurrent = 2`: exactly two run.
#[test]
fn parallel_starts_cannot_exceed_max_concurrent() {
    if !root_or_skip("parallel_starts_cannot_exceed_max_concurrent") {
        return;
    }
    let server = Server::start("concurrent", Some("[sessions]\nmax_concurrent = 2\n"));
    let outcomes: Vec<Result<String, String>> = std::thread::scope(|scope| {
        let starts: Vec<_> = (0..12)
            .map(|_| {
                scope.spawn(|| {
                    let (_, body) = server.post(
                        "mutation { startSession(input: {tracker: \"tcp\", durationSecs: 30}) { id } }",
                        json!({}),
                        None,
                    );
                    match body["data"]["startSession"]["id"].as_str() {
                        Some(id) => Ok(id.to_string()),
                        None => Err(body["errors"][0]["extensions"]["code"]
                            .as_str()
                            .unwrap_or("")
                            .to_string()),
                    }
                })
            })
            .collect();
        starts.into_iter().map(|s| s.join().unwrap()).collect()
    });
    let started: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    let refused: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(started.len(), 2, "{outcomes:?}");
    assert_eq!(refused, vec!["TOO_MANY_SESSIONS"; 10]);
    for id in started {
        assert_eq!(server.stop_session(id), "STOPPED");
    }
    // The places are given back.
    let again = server.start_session(json!({ "tracker": "tcp", "durationSecs": 30 }));
    assert_eq!(server.stop_session(&again), "STOPPED");
}

/// Fifty parallel stops all answer the final state; a delete racing a stop is refused
/// until the stop has ended, and never leaves events behind.
#[test]
fn racing_stops_and_deletes_agree_on_one_end() {
    if !root_or_skip("racing_stops_and_deletes_agree_on_one_end") {
        return;
    }
    let server = Server::start("races", None);
    let (binary, comm) = unique_binary("race");
    let id = server.start_session(json!({
        "tracker": "process", "durationSecs": 30, "filter": { "comm": comm },
    }));
    run_copies(&binary, 5);
    let stop = "mutation($id: ID!) { stopSession(id: $id) { status eventCount } }";
    let delete = "mutation($id: ID!) { deleteSession(id: $id) }";
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let stops: Vec<_> = (0..50)
            .map(|_| scope.spawn(|| server.query(stop, json!({ "id": id }))["stopSession"].clone()))
            .collect();
        stops.into_iter().map(|s| s.join().unwrap()).collect()
    });
    assert_eq!(
        answers,
        vec![json!({ "status": "STOPPED", "eventCount": 10 }); 50]
    );

    let id = server.start_session(json!({
        "tracker": "process", "durationSecs": 30, "filter": { "comm": comm },
    }));
    run_copies(&binary, 5);
    let (stopped, deleted) = std::thread::scope(|scope| {
        let stopping = scope.spawn(|| server.query(stop, json!({ "id": id })));
        let deleting = scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            server.post(delete, json!({ "id": id }), None).1
        });
        (stopping.join().unwrap(), deleting.join().unwrap())
    });
    assert_eq!(
        stopped["stopSession"],
        json!({ "status": "STOPPED", "eventCount": 10 })
    );
    match deleted["data"]["deleteSession"].as_bool() {
        Some(true) => {}
        _ => assert_eq!(
            deleted["errors"][0]["extensions"]["code"], "SESSION_RUNNING",
            "{deleted}"
        ),
    }
    // Whichever way the race went, a delete now removes the session and all its events.
    let _ = server.post(delete, json!({ "id": id }), None);
    let (code, _) = server.error(
        "query($id: ID!) { session(id: $id) { id } }",
        json!({ "id": id }),
        None,
    );
    assert_eq!(code, "NOT_FOUND");
    assert_eq!(server.metric("eunomia_sessions_active", ""), 0.0);
}

/// A second server on a database in use exits at once, naming the first; the first is
/// untouched.
#[test]
fn a_second_server_on_one_database_is_refused() {
    if !root_or_skip("a_second_server_on_one_database_is_refused") {
        return;
    }
    let first = Server::start("twice", None);
    let id = first.start_session(json!({ "tracker": "tcp", "durationSecs": 30 }));
    let second = Command::new(env!("CARGO_BIN_EXE_eunomia"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(&first.db)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!(
            "{} is in use by another eunomia server (pid {})",
            first.db.display(),
            first.pid()
        )),
        "{stderr}"
    );
    assert_eq!(first.session(&id, "status")["status"], "RUNNING");
    assert_eq!(first.stop_session(&id), "STOPPED");
}

/// After SIGKILL and a restart, a session reads INTERRUPTED with the count of what is
/// stored, and says that its losses are unknown.
#[test]
fn a_killed_servers_sessions_keep_their_stored_counts() {
    if !root_or_skip("a_killed_servers_sessions_keep_their_stored_counts") {
        return;
    }
    let dir = TempDir::new("killed");
    let mut server = Server::start_in(dir.path(), None);
    let (binary, comm) = unique_binary("kill");
    let id = server.start_session(json!({
        "tracker": "process", "durationSecs": 60, "filter": { "comm": comm },
    }));
    run_copies(&binary, 7);
    let deadline = Instant::now() + Duration::from_secs(10);
    while stored_events(&server, &id) < 14 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill();
    let restarted = Server::start_in(dir.path(), None);
    let session = restarted.session(&id, "status eventCount error");
    assert_eq!(session["status"], "INTERRUPTED");
    assert_eq!(session["eventCount"], 14);
    assert!(
        session["error"]
            .as_str()
            .unwrap()
            .contains("how many were lost is unknown"),
        "{session}"
    );
}

/// Ring buffers are locked kernel memory: running sessions share a budget, and one that
/// does not fit is refused until another ends.
#[test]
fn running_sessions_share_a_ring_buffer_budget() {
    if !root_or_skip("running_sessions_share_a_ring_buffer_budget") {
        return;
    }
    let server = Server::start(
        "budget",
        Some("[sessions]\nringbuf_budget_bytes = 12582912\n"),
    );
    let input = json!({
        "tracker": "tcp", "durationSecs": 30, "config": { "ringbuf_bytes": 8388608 },
    });
    let first = server.start_session(input.clone());
    let (code, message) = server.error(
        "mutation($input: StartSessionInput!) { startSession(input: $input) { id } }",
        json!({ "input": input }),
        None,
    );
    assert_eq!(code, "BAD_CONFIG");
    assert!(
        message.contains("ringbuf_bytes 8388608 does not fit: running sessions hold 8388608 of the server's 12582912"),
        "{message}"
    );
    let small = server.start_session(json!({ "tracker": "tcp", "durationSecs": 30 }));
    assert_eq!(server.stop_session(&first), "STOPPED");
    let again = server.start_session(input);
    for id in [small, again] {
        assert_eq!(server.stop_session(&id), "STOPPED");
    }
}

/// Websockets that never send `connection_init` are closed with 4408 once the init
/// timeout passes, and a client cannot hold more than its share open: the next upgrade
/// is refused (503) until one closes.
#[test]
fn idle_and_excess_websockets_are_closed() {
    if !root_or_skip("idle_and_excess_websockets_are_closed") {
        return;
    }
    let server = Server::start(
        "websockets",
        Some("[limits]\nwebsockets_per_client = 3\nwebsocket_init_timeout_secs = 1\n"),
    );
    let open = || server.ws_open();
    let mut idle: Vec<_> = (0..3).map(|_| open().expect("within the cap")).collect();
    match open() {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!(
            "a fourth websocket from one address: {:?}",
            other.map(|_| ())
        ),
    }
    for ws in &mut idle {
        match ws.read() {
            Ok(tungstenite::Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 4408);
                assert_eq!(frame.reason, "Connection initialisation timeout");
            }
            other => panic!("expected a 4408 close, got {other:?}"),
        }
    }
    drop(idle);
    // Their places are given back once the server has closed them.
    let deadline = Instant::now() + Duration::from_secs(5);
    let admitted = loop {
        match open() {
            Ok(_) => break true,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(_) => break false,
        }
    };
    assert!(
        admitted,
        "the closed websockets' places were not given back"
    );
}

/// getppid calls the websocket timeout test stores.
const STORED_CALLS: u64 = 20_000;

/// Over a websocket, a query is bounded by `request_timeout_secs` as over HTTP: a
/// viewer's question of many percentiles is answered TIMEOUT on time, and the same
/// connection answers the next question.
#[test]
fn websocket_operations_time_out() {
    if !root_or_skip("websocket_operations_time_out") {
        return;
    }
    let server = Server::start("ws-timeout", Some("[limits]\nrequest_timeout_secs = 1\n"));
    let (load, comm) = syscall_load("wsto");
    let id = server.start_session(json!({
        "tracker": "syscall", "durationSecs": 60, "filter": { "comm": comm },
        "config": { "mode": "stream" },
    }));
    // A workload size, not a machine fact: enough rows that one percentile takes a
    // measurable time, few enough that it stays under the 1 s budget on a slow machine
    // (how many percentiles make the question long is measured below, at run time).
    common::run_load(&load, STORED_CALLS);
    assert_eq!(server.stop_session(&id), "STOPPED");
    let percentile = |alias: usize| {
        format!(
            "a{alias}: aggregate(groupBy: [\"pid\"], op: P99, field: \"latency_ns\") {{ value }}"
        )
    };
    // How long one percentile takes here sets how many make the question last 10 s at
    // least, even with every read connection at work.
    let started = Instant::now();
    let (status, body) = server.post(
        &format!(
            "query($id: ID!) {{ session(id: $id) {{ {} }} }}",
            percentile(0)
        ),
        json!({ "id": id }),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let one = started.elapsed().as_secs_f64();
    let aliases = (10.0 * 2.0 / one).ceil() as usize;
    let question = format!(
        "query($id: ID!) {{ session(id: $id) {{ {} }} }}",
        (0..aliases).map(percentile).collect::<Vec<_>>().join(" ")
    );

    let mut ws = server.ws_connect(None).unwrap();
    let started = Instant::now();
    ws_subscribe(&mut ws, "heavy", &question, json!({ "id": id }));
    let answer = ws_next(&mut ws);
    let waited = started.elapsed();
    assert_eq!(answer["type"], "next", "{answer}");
    assert_eq!(
        answer["payload"]["errors"][0]["extensions"]["code"], "TIMEOUT",
        "{answer}"
    );
    assert!(
        waited < Duration::from_secs(4),
        "{aliases} percentiles of {one:.3} s each were answered after {waited:?}"
    );
    assert_eq!(ws_next(&mut ws)["type"], "complete");
    ws_subscribe(&mut ws, "light", "{ health { store { ok } } }", json!({}));
    assert_eq!(
        ws_next(&mut ws)["payload"]["data"]["health"]["store"]["ok"],
        true
    );
}

/// A client that connects and never sends a request holds a socket only as long as a
/// request may last (`request_timeout_secs`).
#[test]
fn a_connection_that_never_asks_is_closed() {
    if !root_or_skip("a_connection_that_never_asks_is_closed") {
        return;
    }
    let server = Server::start("silent", Some("[limits]\nrequest_timeout_secs = 1\n"));
    let mut silent = TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let read = std::io::Read::read(&mut silent, &mut byte);
    assert!(matches!(read, Ok(0)), "{read:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        started.elapsed()
    );
    // Everyone else is still served.
    assert_eq!(server.get("/healthz").0, 200);
}

/// The server's resident memory (kB), from /proc.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Waits up to `within` for the server's RSS to come back to `limit_kb`; returns it.
fn rss_settles(server: &Server, limit_kb: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let rss = rss_kb(server.pid());
        if rss <= limit_kb || Instant::now() > deadline {
            return rss;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Memory comes back: after a stream session stores hundreds of thousands of events, and
/// after a question that reads them all, the server returns to within twice its idle RSS
/// within 30 s (the writer gives its cache and heap back when idle; idle pooled
/// connections, which hold the mapped database and a page cache, are closed).
#[test]
fn memory_comes_back_after_a_session_and_a_heavy_question() {
    if !root_or_skip("memory_comes_back_after_a_session_and_a_heavy_question") {
        return;
    }
    let server = Server::start("rss", None);
    let (load, comm) = syscall_load("rss");
    // Idle: what start-up made, with the first session's programs loaded once.
    let warm = server.start_session(json!({ "tracker": "process", "durationSecs": 30 }));
    assert_eq!(server.stop_session(&warm), "STOPPED");
    std::thread::sleep(Duration::from_secs(3));
    let idle = rss_kb(server.pid());
    let id = server.start_session(json!({
        "tracker": "syscall", "durationSecs": 120, "filter": { "comm": comm },
        "config": { "mode": "stream", "latency": false },
    }));
    // 400k calls in chunks of half the writer's queue, each stored before the next: the
    // loop outruns a debug build's writer, whose full queue would count the rest lost,
    // and this test is about memory, not loss.
    let chunk = StoreOptions::default().queue_capacity as u64 / 2;
    let rounds = 400_000 / chunk;
    for round in 1..=rounds {
        common::run_load(&load, chunk);
        let made = round * chunk;
        let deadline = Instant::now() + Duration::from_secs(60);
        while stored_events(&server, &id) < made && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    assert_eq!(server.stop_session(&id), "STOPPED");
    let stored = stored_events(&server, &id);
    assert!(stored >= rounds * chunk, "{stored} events stored");
    assert_eq!(server.session(&id, "lostCount")["lostCount"], 0);
    let after_session = rss_settles(&server, 2 * idle, Duration::from_secs(30));
    assert!(
        after_session <= 2 * idle,
        "{after_session} kB 30 s after the session; idle {idle} kB"
    );
    let grouped = server.query(
        "query($id: ID!) { session(id: $id) { aggregate(groupBy: [\"comm\"]) { count } } }",
        json!({ "id": id }),
    );
    assert_eq!(grouped["session"]["aggregate"][0]["count"], stored);
    let after_question = rss_settles(&server, 2 * idle, Duration::from_secs(30));
    assert!(
        after_question <= 2 * idle,
        "{after_question} kB 30 s after the question; idle {idle} kB"
    );
}
