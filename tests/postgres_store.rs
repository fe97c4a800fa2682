//! PostgreSQL as a server's own store (`--db postgres://...`), on a private PostgreSQL 15
//! (root): sessions, events, counts, the audit trail and alerts are in the server's
//! schema, survive a restart, and a database outage loses events only counted.

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use common::postgres::Postgres;
use common::server::Server;
use common::{root_or_skip, run_copies, unique_binary, TempDir};
use serde_json::{json, Value};

const WINDOW: Duration = Duration::from_secs(15);

fn database(test: &str) -> Option<Postgres> {
    match root_or_skip(test) {
        true => Postgres::start_or_skip(test),
        false => None,
    }
}

/// A server whose store is `postgres`, as node `node`.
fn server_on(postgres: &Postgres, dir: &TempDir, node: &str, config: Option<&str>) -> Server {
    let args = vec![OsString::from("--node"), OsString::from(node)];
    Server::launch_on(Path::new(&postgres.url), dir.path(), config, args, None)
}

fn exec_count(server: &Server, id: &str) -> Value {
    server.session(
        id,
        r#"status eventCount lostCount
           aggregate(groupBy: ["node", "kind"]) { keys count }"#,
    )
}

#[test]
fn a_server_on_postgresql_keeps_sessions_events_and_audit_there() {
    let Some(postgres) = database("a_server_on_postgresql_keeps_sessions_events_and_audit_there")
    else {
        return;
    };
    let dir = TempDir::new("pg-store");
    let mut server = server_on(&postgres, &dir, "pgone", None);
    let (binary, comm) = unique_binary("pg");
    let id = server.start_session(json!({
        "tracker": "process", "durationSecs": 2, "filter": { "comm": comm },
    }));
    run_copies(&binary, 20);
    assert_eq!(server.wait_ended(&id, WINDOW), "COMPLETED");
    let session = exec_count(&server, &id);
    assert_eq!(session["eventCount"], 40, "{session}");
    assert_eq!(server.session(&id, "node")["node"], "pgone");
    assert_eq!(session["lostCount"], 0, "{session}");
    assert_eq!(
        session["aggregate"],
        json!([
            { "keys": ["pgone", "exec"], "count": 20 },
            { "keys": ["pgone", "exit"], "count": 20 },
        ]),
        "{session}"
    );
    // The other questions, from the same rows.
    let asked = server.session(
        &id,
        r#"events(first: 50, where: [{field: "kind", value: "exec"}]) { edges { node { kind comm data } } }
           histogram(field: "duration_ns", where: [{field: "kind", value: "exit"}]) { count }
           timeseries(bucketSecs: 60, where: [{field: "kind", value: "exec"}]) { count }"#,
    );
    let edges = asked["events"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 20, "{asked}");
    assert!(edges
        .iter()
        .all(|e| e["node"]["comm"] == comm.as_str() && e["node"]["data"]["node"] == "pgone"));
    assert_eq!(asked["histogram"][0]["count"], 20, "{asked}");
    let buckets: u64 = asked["timeseries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(buckets, 20, "{asked}");
    // In PostgreSQL, in the node's own schema.
    let in_table = format!(
        "SELECT node, kind, count(*) FROM eunomia_pgone.events WHERE session_id = '{id}' \
         GROUP BY node, kind ORDER BY kind"
    );
    assert_eq!(postgres.psql(&in_table), "pgone|exec|20\npgone|exit|20");
    // A u64 value past i64's range falls in bucket 64, the last (its bit length).
    let row = format!(
        "INSERT INTO eunomia_pgone.events (node, session_id, ts, tracker, kind, pid, ppid, \
         comm, cgroup_id, data) VALUES ('pgone', '{id}', 1, 'process', 'exit', 1, 1, 'big', 0, \
         '{{\"duration_ns\": 18446744073709551615}}')"
    );
    postgres.psql(&row);
    let big = server.session(
        &id,
        r#"histogram(field: "duration_ns", where: [{field: "comm", value: "big"}]) { count buckets { low high count } }"#,
    );
    assert_eq!(
        big["histogram"],
        json!([{ "count": 1, "buckets": [{ "low": 2f64.powi(63), "high": 2f64.powi(64), "count": 1 }] }]),
        "{big}"
    );
    postgres.psql(&format!(
        "DELETE FROM eunomia_pgone.events WHERE session_id = '{id}' AND comm = 'big'"
    ));
    assert_eq!(
        postgres.psql(&format!(
            "SELECT status, event_count FROM eunomia_pgone.sessions WHERE id = '{id}'"
        )),
        "COMPLETED|40"
    );
    assert_eq!(
        postgres.psql(&format!(
            "SELECT action, outcome FROM eunomia_pgone.audit WHERE session_id = '{id}'"
        )),
        "startSession|ok"
    );
    // A second server of the same node name would write beside the first: refused.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eunomia"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--node",
            "pgone",
            "--db",
        ])
        .arg(&postgres.url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("schema eunomia_pgone"), "{said}");
    assert!(!said.contains("password"), "{said}");

    // Killed mid-session and started again: the session reads INTERRUPTED, counted from
    // what was stored; the finished one is as it was.
    let running = server.start_session(json!({
        "tracker": "process", "durationSecs": 60, "filter": { "comm": comm },
    }));
    run_copies(&binary, 5);
    // The writer commits within moments; wait until the rows are there.
    let stored =
        format!("SELECT count(*) FROM eunomia_pgone.events WHERE session_id = '{running}'");
    postgres.wait_for(&stored, "10", Duration::from_secs(10));
    server.kill();
    let server = server_on(&postgres, &dir, "pgone", None);
    let interrupted = server.session(&running, "status eventCount");
    assert_eq!(
        interrupted,
        json!({ "status": "INTERRUPTED", "eventCount": 10 })
    );
    assert_eq!(exec_count(&server, &id)["eventCount"], 40);
    let listed = server.query(
        "{ sessions(first: 10) { edges { node { id } } } }",
        json!({}),
    );
    assert_eq!(
        listed["sessions"]["edges"].as_array().unwrap().len(),
        2,
        "{listed}"
    );
    // Retention at start-up: past 45 stored events, the oldest ended session goes.
    drop(server);
    let server = server_on(
        &postgres,
        &dir,
        "pgone",
        Some("[retention]\nmax_events = 45\n"),
    );
    // It runs beside the start: wait for it.
    postgres.wait_for(
        "SELECT count(*) FROM eunomia_pgone.sessions",
        "1",
        Duration::from_secs(10),
    );
    let (code, _) = server.error(
        "query($id: ID!) { session(id: $id) { id } }",
        json!({ "id": id }),
        None,
    );
    assert_eq!(code, "NOT_FOUND");
    assert_eq!(
        postgres.psql("SELECT count(*) FROM eunomia_pgone.events"),
        "10"
    );
    assert_eq!(server.session(&running, "eventCount")["eventCount"], 10);
    // Another node on the same database has its own schema, and sees none of these.
    let other_dir = TempDir::new("pg-store-other");
    let other = server_on(&postgres, &other_dir, "pgtwo", None);
    let listed = other.query(
        "{ sessions(first: 10) { edges { node { id } } } }",
        json!({}),
    );
    assert_eq!(listed["sessions"]["edges"], json!([]), "{listed}");
    // Deleting a session deletes its events.
    let deleted = server.query(
        "mutation($id: ID!) { deleteSession(id: $id) }",
        json!({ "id": running }),
    );
    assert_eq!(deleted["deleteSession"], true);
    assert_eq!(postgres.psql(&stored), "0");
}

#[test]
fn alerts_and_guard_state_are_kept_in_postgresql() {
    use std::io::Write;

    let Some(postgres) = database("alerts_and_guard_state_are_kept_in_postgresql") else {
        return;
    };
    let dir = TempDir::new("pg-alerts");
    let server = server_on(&postgres, &dir, "pgalerts", None);
    // A python that reads /etc/shadow twice once told to, traced by a files session
    // with the rule: one alert, counted twice.
    let script = "import sys, time\nprint('ready', flush=True)\nsys.stdin.readline()\n\
                  for _ in range(2): open('/etc/shadow').read()\ntime.sleep(1)\n";
    let (mut child, _lines) =
        common::spawn_ready(std::process::Command::new("/usr/bin/python3").args(["-c", script]));
    let id = server.start_session(json!({
        "tracker": "files", "durationSecs": 30, "filter": { "pid": child.id() },
        "config": { "opens": "stream" }, "rules": ["read_sensitive_file"],
    }));
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(child.wait().unwrap().success());
    server.stop_session(&id);
    let query = r#"{ alerts(filter: {rule: "read_sensitive_file"}) { edges { node { rule pid count sessionId } } } }"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let alerts = loop {
        let edges = server.query(query, json!({}))["alerts"]["edges"].clone();
        if edges[0]["node"]["count"] == 2 || std::time::Instant::now() > deadline {
            break edges;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        alerts,
        json!([{ "node": { "rule": "read_sensitive_file", "pid": child.id(), "count": 2, "sessionId": id } }])
    );
    assert_eq!(
        postgres.psql("SELECT rule, count FROM eunomia_pgalerts.alerts"),
        "read_sensitive_file|2"
    );
}

#[test]
fn a_postgresql_outage_loses_events_only_counted() {
    let Some(postgres) = database("a_postgresql_outage_loses_events_only_counted") else {
        return;
    };
    let dir = TempDir::new("pg-outage");
    let server = server_on(&postgres, &dir, "pgout", None);
    let (binary, comm) = unique_binary("po");
    let id = server.start_session(json!({
        "tracker": "process", "durationSecs": 20, "filter": { "comm": comm },
    }));
    run_copies(&binary, 3);
    let stored = format!("SELECT count(*) FROM eunomia_pgout.events WHERE session_id = '{id}'");
    postgres.wait_for(&stored, "6", Duration::from_secs(10));
    // A short outage: the writer's connection waits for the database (up to 10 s), and
    // nothing is lost.
    postgres.stop();
    run_copies(&binary, 4);
    std::thread::sleep(Duration::from_secs(1));
    postgres.start();
    postgres.wait_for(&stored, "14", Duration::from_secs(15));
    // A long one: the batch fails, its events are counted lost, and the session FAILED.
    // The 14 events may reach the writer as one batch or as two: events that queued
    // behind the failed batch are stored once the database is back. Either way every event
    // is stored or counted lost, and the failed batch's are lost.
    postgres.stop();
    run_copies(&binary, 7);
    std::thread::sleep(Duration::from_secs(12));
    postgres.start();
    assert_eq!(server.wait_ended(&id, Duration::from_secs(30)), "FAILED");
    let session = server.session(&id, "status eventCount lostCount error");
    let (events, lost) = (
        session["eventCount"].as_u64().unwrap(),
        session["lostCount"].as_u64().unwrap(),
    );
    assert_eq!(events + lost, 28, "{session}");
    assert!(events >= 14 && lost > 0, "{session}");
    assert_eq!(postgres.psql(&stored), events.to_string());
    let error = session["error"].as_str().unwrap();
    assert!(error.starts_with("storing events failed: "), "{error}");
    let health = server.query("{ health { store { failedBatches } } }", json!({}));
    assert_eq!(health["health"]["store"]["failedBatches"], 1, "{health}");
}
