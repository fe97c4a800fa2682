//! The GraphQL session server over real HTTP with real trackers (root).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::server::{ws_next, ws_subscribe, Server, Ws};
use common::{assert_unloaded, loaded_prog_ids, root_or_skip, run_copies, unique_binary};
use serde_json::{json, Value};

const WINDOW: Duration = Duration::from_secs(10);
const OPERATOR: &str = "operator-secret-0123456789";
const VIEWER: &str = "viewer-secret-0123456789";

fn auth_config() -> String {
    format!(
        "[[tokens]]\nname = \"alice\"\nrole = \"operator\"\ntoken = \"{OPERATOR}\"\n\n\
         [[tokens]]\nname = \"bob\"\nrole = \"viewer\"\ntoken = \"{VIEWER}\"\n"
    )
}

fn agg_count(rows: &Value, keys: &[&str]) -> Option<(f64, u64)> {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["keys"] == json!(keys))
        .map(|r| (r["value"].as_f64().unwrap(), r["count"].as_u64().unwrap()))
}

/// A 2 s process session filtered by comm sees exactly the 20 execs and exits of a
/// uniquely named binary and ends COMPLETED, with the same answer from the SQLite and the
/// memory store.
fn exact_counts(store: &str) {
    let server = Server::start(&format!("exact-{store}"), None);
    let (binary, comm) = unique_binary(&format!("x{}", &store[..1]));
    let id = server.start_session(json!({
        "tracker": "process", "durationSecs": 2, "store": store, "label": "exact",
        "filter": { "comm": comm },
    }));
    let started = Instant::now();
    run_copies(&binary, 20);
    let running = started.elapsed();
    assert_eq!(server.wait_ended(&id, WINDOW), "COMPLETED");
    let session = server.session(
        &id,
        r#"status store label eventCount lostCount completeness endedAt programIds
           aggregate(groupBy: ["kind", "comm"]) { keys value count }
           mine: aggregate(groupBy: ["kind"], where: [{field: "comm", value: $comm}]) { keys value count }"#
            .replace("$comm", &format!("{comm:?}"))
            .as_str(),
    );
    assert_eq!(session["store"], store);
    assert_eq!(session["label"], "exact");
    assert_eq!(session["lostCount"], 0);
    assert_eq!(session["completeness"], 1.0);
    assert_eq!(session["programIds"], json!([]));
    assert!(session["endedAt"].as_str().unwrap().ends_with('Z'));
    let rows = &session["aggregate"];
    assert_eq!(
        agg_count(rows, &["exec", &comm]),
        Some((20.0, 20)),
        "{rows}"
    );
    assert_eq!(
        agg_count(rows, &["exit", &comm]),
        Some((20.0, 20)),
        "{rows}"
    );
    assert_eq!(
        session["mine"],
        json!([{ "keys": ["exec"], "value": 20.0, "count": 20 }, { "keys": ["exit"], "value": 20.0, "count": 20 }])
    );
    assert_eq!(session["eventCount"], 40);

    // Each event is its tracker's type, with the catalog's fields typed.
    let typed = server.session(
        &id,
        r#"events(first: 2) { edges { node { __typename
             ... on ProcessEvent { filename exitCode uid } } } }"#,
    );
    assert_eq!(
        typed["events"]["edges"],
        json!([
            { "node": { "__typename": "ProcessEvent", "filename": binary.to_str().unwrap(),
                        "exitCode": null, "uid": 0 } },
            { "node": { "__typename": "ProcessEvent", "filename": null, "exitCode": 0,
                        "uid": 0 } },
        ])
    );

    // Keys named by their fields; a number where a condition takes its value.
    let named = server.session(
        &id,
        r#"aggregate(groupBy: ["kind", "comm"], where: [{field: "exit_code", value: 0}]) {
             groupKeys { field value } count }"#,
    );
    assert_eq!(
        named["aggregate"],
        json!([{ "groupKeys": [{ "field": "kind", "value": "exit" },
                               { "field": "comm", "value": comm }], "count": 20 }])
    );

    // A variable left out, or sent as null, takes the argument's default (COUNT), as
    // clients such as Grafana's GraphQL plugins expect.
    let by_variable = r#"query($id: ID!, $op: AggOp, $comm: ConditionValue!, $cmp: CmpOp) {
        session(id: $id) {
            aggregate(groupBy: ["kind"], op: $op, where: [{field: "comm", op: $cmp, value: $comm}]) { keys value count }
        } }"#;
    for variables in [
        json!({ "id": id, "comm": comm }),
        json!({ "id": id, "comm": comm, "op": null, "cmp": null }),
    ] {
        assert_eq!(
            server.query(by_variable, variables.clone())["session"]["aggregate"],
            session["mine"],
            "{variables}"
        );
    }

    // Exit durations: exec to exit takes 10 µs at least, and fits in the 20 runs' time.
    let durations = server.session(
        &id,
        r#"shortest: aggregate(groupBy: [], op: MIN, field: "duration_ns", where: [{field: "kind", value: "exit"}]) { value count }
           longest: aggregate(groupBy: [], op: MAX, field: "duration_ns", where: [{field: "kind", value: "exit"}]) { value count }"#,
    );
    let (shortest, longest) = (&durations["shortest"][0], &durations["longest"][0]);
    assert_eq!(
        (&shortest["count"], &longest["count"]),
        (&json!(20), &json!(20))
    );
    assert!(
        shortest["value"].as_f64().unwrap() >= 10_000.0
            && longest["value"].as_f64().unwrap() < running.as_nanos() as f64,
        "{durations} within {running:?}"
    );
}

#[test]
fn sqlite_session_counts_exactly() {
    if root_or_skip("sqlite_session_counts_exactly") {
        exact_counts("SQLITE");
    }
}

#[test]
fn memory_session_counts_exactly() {
    if root_or_skip("memory_session_counts_exactly") {
        exact_counts("MEMORY");
    }
}

#[test]
fn events_are_paged_and_filtered() {
    if !root_or_skip("events_are_paged_and_filtered") {
        return;
    }
    let server = Server::start("events", None);
    let (binary, comm) = unique_binary("ev");
    let id = server.start_session(
        json!({ "tracker": "process", "durationSecs": 30, "filter": { "comm": comm } }),
    );
    run_copies(&binary, 3);
    // stopSession detaches and drains: every event made before it is in.
    let stopped = server.query(
        "mutation($id: ID!) { stopSession(id: $id) { status eventCount } }",
        json!({ "id": id }),
    );
    assert_eq!(
        stopped["stopSession"],
        json!({ "status": "STOPPED", "eventCount": 6 })
    );
    let page = |after: Value| {
        server.session(&id, &format!(r#"events(first: 4, after: {after}, where: [{{field: "comm", value: {comm:?}}}]) {{ edges {{ cursor node {{ kind pid comm data }} }} pageInfo {{ hasNextPage endCursor }} }}"#))["events"].clone()
    };
    let first = page(Value::Null);
    assert_eq!(first["edges"].as_array().unwrap().len(), 4);
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    let second = page(first["pageInfo"]["endCursor"].clone());
    assert_eq!(second["edges"].as_array().unwrap().len(), 2);
    assert_eq!(second["pageInfo"]["hasNextPage"], false);
    let node = &first["edges"][0]["node"];
    assert_eq!(node["kind"], "exec");
    assert_eq!(node["comm"], comm);
    assert_eq!(node["data"]["filename"], binary.to_str().unwrap());
    assert_eq!(node["data"]["pid"], node["pid"]);
}

#[test]
fn stop_session_detaches_every_program() {
    if !root_or_skip("stop_session_detaches_every_program") {
        return;
    }
    let server = Server::start("stop", None);
    let id = server.start_session(json!({ "tracker": "process", "durationSecs": 600 }));
    let ids: Vec<u32> =
        serde_json::from_value(server.session(&id, "programIds")["programIds"].clone()).unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|id| loaded_prog_ids().contains(id)));
    let started = Instant::now();
    let data = server.query(
        "mutation($id: ID!) { stopSession(id: $id) { status endedAt programIds } }",
        json!({ "id": id }),
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        started.elapsed()
    );
    assert_eq!(data["stopSession"]["status"], "STOPPED");
    assert_eq!(data["stopSession"]["programIds"], json!([]));
    assert_unloaded(&ids, "stopSession");
    // Stopping again returns the ended session unchanged.
    let again = server.query(
        "mutation($id: ID!) { stopSession(id: $id) { status } }",
        json!({ "id": id }),
    );
    assert_eq!(again["stopSession"]["status"], "STOPPED");
}

#[test]
fn results_survive_a_restart_and_interrupted_sessions_are_marked() {
    if !root_or_skip("results_survive_a_restart_and_interrupted_sessions_are_marked") {
        return;
    }
    let (binary, comm) = unique_binary("rs");
    let mut server = Server::start("restart", None);
    let dir = server.dir.clone();
    let done = server.start_session(
        json!({ "tracker": "process", "durationSecs": 600, "filter": { "comm": comm } }),
    );
    let memory = server.start_session(json!({ "tracker": "process", "durationSecs": 600, "store": "MEMORY", "filter": { "comm": comm } }));
    run_copies(&binary, 5);
    assert_eq!(server.stop_session(&done), "STOPPED");
    assert_eq!(server.stop_session(&memory), "STOPPED");
    // One still running at a graceful stop (which drains it), one at a crash.
    let graceful = server.start_session(
        json!({ "tracker": "process", "durationSecs": 600, "filter": { "comm": comm } }),
    );
    run_copies(&binary, 2);
    assert!(server.stop().success());

    let mut server = Server::start_in(&dir, None);
    let crashed = server.start_session(json!({ "tracker": "process", "durationSecs": 600 }));
    server.kill();

    let server = Server::start_in(&dir, None);
    let fields = format!(
        r#"status eventCount lostCount aggregate(groupBy: ["kind", "comm"], where: [{{field: "comm", value: {comm:?}}}]) {{ keys count }}"#
    );
    for id in [&done, &memory] {
        let session = server.session(id, &fields);
        assert_eq!(session["status"], "STOPPED");
        assert_eq!(session["eventCount"], 10, "{session}");
        assert_eq!(
            session["aggregate"],
            json!([{ "keys": ["exec", comm], "count": 5 }, { "keys": ["exit", comm], "count": 5 }])
        );
    }
    let session = server.session(&graceful, &fields);
    assert_eq!(session["status"], "INTERRUPTED");
    assert_eq!(session["eventCount"], 4);
    assert_eq!(server.session(&crashed, "status")["status"], "INTERRUPTED");
    let list = server.query(
        "{ sessions(status: INTERRUPTED) { edges { node { id } } } }",
        json!({}),
    );
    assert_eq!(list["sessions"]["edges"].as_array().unwrap().len(), 2);
}

#[test]
fn tokens_roles_and_audit() {
    if !root_or_skip("tokens_roles_and_audit") {
        return;
    }
    let server = Server::start("auth", Some(&auth_config()));
    let health = "{ health { version activeSessions } }";
    let (status, body) = server.post(health, json!({}), None);
    assert_eq!(
        (status, body["errors"][0]["extensions"]["code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    let (status, body) = server.post(health, json!({}), Some("not-the-token-at-all"));
    assert_eq!(
        (status, body["errors"][0]["extensions"]["code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    assert_eq!(
        server.query_as(health, json!({}), Some(VIEWER))["health"]["activeSessions"],
        0
    );

    let start = "mutation { startSession(input: {tracker: \"process\", durationSecs: 1}) { id } }";
    let (code, message) = server.error(start, json!({}), Some(VIEWER));
    assert_eq!(code, "FORBIDDEN", "{message}");
    let id = server.query_as(start, json!({}), Some(OPERATOR))["startSession"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, _) = server.error("{ auditLog { actor } }", json!({}), Some(VIEWER));
    assert_eq!(code, "FORBIDDEN");
    let audit = server.query_as(
        "{ auditLog { actor role action args outcome error sessionId } }",
        json!({}),
        Some(OPERATOR),
    )["auditLog"]
        .clone();
    assert_eq!(audit[0]["actor"], "alice");
    assert_eq!(audit[0]["action"], "startSession");
    assert_eq!(audit[0]["outcome"], "ok");
    assert_eq!(audit[0]["args"]["tracker"], "process");
    assert_eq!(audit[1]["actor"], "bob");
    assert_eq!(audit[1]["role"], "viewer");
    assert_eq!(audit[1]["outcome"], "error");
    assert!(audit[1]["error"].as_str().unwrap().contains("operator"));
    // The operator's session runs, and the audit log names it.
    assert_eq!(
        server.query_as(
            "query($id: ID!) { session(id: $id) { status } }",
            json!({ "id": id }),
            Some(VIEWER)
        )["session"]["status"],
        "RUNNING"
    );
    assert_eq!(audit[0]["sessionId"], id.as_str(), "{audit}");
    assert_eq!(audit[1]["sessionId"], Value::Null, "{audit}");
    // The refused requests are audited too: the first of them (at most one a second per
    // client address is written; the metric counts them all).
    assert_eq!(
        (
            &audit[2]["actor"],
            &audit[2]["role"],
            &audit[2]["action"],
            &audit[2]["outcome"]
        ),
        (
            &json!("127.0.0.1"),
            &json!("none"),
            &json!("graphql"),
            &json!("refused")
        ),
        "{audit}"
    );
    assert_eq!(audit.as_array().unwrap().len(), 3, "{audit}");
    // /metrics wants a token too; a viewer's will do.
    let (status, _) = server.get("/metrics");
    assert_eq!(status, 401);
    let metrics = server.get_as("/metrics", Some(VIEWER)).1;
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("eunomia_auth_refused_total "))
        .unwrap();
    assert_eq!(refused, "eunomia_auth_refused_total 3");

    // Subscriptions authenticate in connection_init: without a valid token the server
    // closes the connection with the protocol's 4403 and says why.
    let refused = |token| match server.ws_connect(token) {
        Ok(_) => panic!("a websocket with token {token:?} was accepted"),
        Err(refusal) => refusal,
    };
    let refusal = refused(None);
    assert_eq!(
        refusal,
        (
            4403,
            "Forbidden: no credentials: send `Authorization: Bearer <token>`".to_string()
        )
    );
    let refusal = refused(Some("not-the-token-at-all"));
    assert_eq!(refusal.0, 4403);
    assert!(refusal.1.contains("token"), "{refusal:?}");
    assert!(server.ws_connect(Some(VIEWER)).is_ok());
}

#[test]
fn non_loopback_without_tokens_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_eunomia"))
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--db",
            "/nonexistent/x.db",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 (not loopback) without any [[tokens]]"),
        "{stderr}"
    );
}

#[test]
fn subscriptions_receive_live_events_and_updates() {
    if !root_or_skip("subscriptions_receive_live_events_and_updates") {
        return;
    }
    let server = Server::start("subs", None);
    let (binary, comm) = unique_binary("su");
    let id = server.start_session(
        json!({ "tracker": "process", "durationSecs": 30, "filter": { "comm": comm } }),
    );
    let mut ws = server.ws_connect(None).unwrap();
    let subscribe = |ws: &mut Ws, sub_id: &str, query: &str| {
        ws_subscribe(ws, sub_id, query, json!({ "id": id }))
    };
    subscribe(
        &mut ws,
        "events",
        "subscription($id: ID!) { sessionEvents(id: $id) { kind pid comm data } }",
    );
    // The subscription counts once it listens: nothing made after that is missed.
    let deadline = Instant::now() + WINDOW;
    while server.session(&id, "subscribers")["subscribers"] != 1 {
        assert!(Instant::now() < deadline, "the subscription never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    run_copies(&binary, 2);
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let message = ws_next(&mut ws);
        assert_eq!(message["type"], "next", "{message}");
        let event = &message["payload"]["data"]["sessionEvents"];
        assert_eq!(event["comm"], comm);
        kinds.push(event["kind"].as_str().unwrap().to_string());
    }
    assert_eq!(kinds, ["exec", "exit", "exec", "exit"]);

    subscribe(
        &mut ws,
        "updates",
        "subscription($id: ID!) { sessionUpdated(id: $id) { status eventCount } }",
    );
    let first = ws_next(&mut ws);
    assert_eq!(
        first["payload"]["data"]["sessionUpdated"]["status"],
        "RUNNING"
    );
    server.query(
        "mutation($id: ID!) { stopSession(id: $id) { status } }",
        json!({ "id": id }),
    );
    let mut last = first;
    while last["type"] == "next" && last["payload"]["data"]["sessionUpdated"]["status"] == "RUNNING"
    {
        last = ws_next(&mut ws);
    }
    // The events subscription completes when the session ends; the updates one after its final update.
    let mut saw = vec![last.clone()];
    for _ in 0..3 {
        saw.push(ws_next(&mut ws));
        if saw.iter().filter(|m| m["type"] == "complete").count() == 2 {
            break;
        }
    }
    let final_update = saw
        .iter()
        .find(|m| m["type"] == "next" && m["id"] == "updates")
        .expect("a final update");
    assert_eq!(
        final_update["payload"]["data"]["sessionUpdated"],
        json!({ "status": "STOPPED", "eventCount": 4 })
    );
    assert_eq!(
        saw.iter().filter(|m| m["type"] == "complete").count(),
        2,
        "{saw:?}"
    );
}

/// A subscriber to a session of a million events a second gets a sample, at most 10,000
/// events a second, and every event it does not get is counted: delivered + counted
/// missed = the session's events, exactly.
/// "Which processes exec'd most in the window" is one request: `startSession(wait: true)`
/// returns when the window ends, with the session's final counts and its aggregate. A
/// window that would outlast the request timeout is refused up front.
#[test]
fn one_request_answers_a_question_over_a_window() {
    if !root_or_skip("one_request_answers_a_question_over_a_window") {
        return;
    }
    let server = Server::start("wait", None);
    let (binary, comm) = unique_binary("wait");
    let question = format!(
        "mutation {{ startSession(wait: true, input: {{tracker: \"process\", durationSecs: 3,
           store: MEMORY, label: \"waited\", filter: {{comm: \"{comm}\"}}}})
           {{ status lostCount execs: aggregate(groupBy: [\"comm\"],
              where: [{{field: \"kind\", value: \"exec\"}}]) {{ keys count }} }} }}"
    );
    let asking = {
        let server_url = server.url.clone();
        let question = question.clone();
        std::thread::spawn(move || {
            let client = common::server::http_client(None);
            let started = Instant::now();
            let answer: Value = client
                .post(format!("{server_url}/graphql"))
                .json(&json!({ "query": question }))
                .send()
                .unwrap()
                .json()
                .unwrap();
            (answer, started.elapsed())
        })
    };
    // Run the programs once the session traces (it is listed from before it attaches).
    let deadline = Instant::now() + WINDOW;
    let attached = "{ sessions(status: RUNNING) { edges { node { programIds } } } }";
    while server.query(attached, json!({}))["sessions"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .all(|edge| edge["node"]["programIds"].as_array().unwrap().is_empty())
    {
        assert!(Instant::now() < deadline, "the session never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    run_copies(&binary, 4);
    let (answer, took) = asking.join().unwrap();
    let session = &answer["data"]["startSession"];
    assert_eq!(session["status"], "COMPLETED", "{answer}");
    assert_eq!(session["lostCount"], 0, "{answer}");
    assert_eq!(
        session["execs"],
        json!([{ "keys": [comm], "count": 4 }]),
        "{answer}"
    );
    assert!(took >= Duration::from_secs(3), "{took:?}");

    let (code, message) = server.error(
        "mutation { startSession(wait: true, input: {tracker: \"process\", durationSecs: 600}) { id } }",
        json!({}),
        None,
    );
    assert_eq!(code, "BAD_DURATION");
    assert!(
        message.contains("durationSecs at most 27, got 600"),
        "{message}"
    );

    // A caller that hangs up while waiting leaves the session running to its end.
    let impatient = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let hung_up = impatient
        .post(format!("{}/graphql", server.url))
        .json(
            &json!({ "query": "mutation { startSession(wait: true, input: {tracker: \"process\",
            durationSecs: 2, store: MEMORY, label: \"abandoned\"}) { id } }" }),
        )
        .send();
    assert!(hung_up.is_err_and(|e| e.is_timeout()));
    let abandoned = |status: &str| {
        server.query(
            &format!("{{ sessions(status: {status}) {{ edges {{ node {{ label }} }} }} }}"),
            json!({}),
        )["sessions"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|edge| edge["node"]["label"] == "abandoned")
    };
    assert!(abandoned("RUNNING"));
    let deadline = Instant::now() + WINDOW;
    while !abandoned("COMPLETED") {
        assert!(
            Instant::now() < deadline,
            "the abandoned session never completed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server running a syscall stream session on a fresh load binary, watched by one
/// subscription that is listening.
struct Watched {
    server: Server,
    load: common::TestBinary,
    comm: String,
    id: String,
    ws: Ws,
}

fn watched_stream_session(tag: &str, ringbuf_bytes: u32, subscription: &str) -> Watched {
    let server = Server::start(tag, None);
    let (load, comm) = common::syscall_load(tag);
    let id = server.start_session(json!({
        "tracker": "syscall", "durationSecs": 60, "store": "MEMORY",
        "filter": { "comm": comm },
        "config": { "mode": "stream", "latency": false, "ringbuf_bytes": ringbuf_bytes },
    }));
    let mut ws = server.ws_connect(None).unwrap();
    ws_subscribe(&mut ws, "1", subscription, json!({ "id": id }));
    let deadline = Instant::now() + WINDOW;
    while server.session(&id, "subscribers")["subscribers"] != 1 {
        assert!(Instant::now() < deadline, "the subscription never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    Watched {
        server,
        load,
        comm,
        id,
        ws,
    }
}

/// A live view's `where` is applied on the server before the live sample: a tail of failed
/// opens among half a million getppid calls (50 times the sample's budget for a second)
/// gets exactly the 5 failures, nothing else.
#[test]
fn a_filtered_live_view_gets_every_match_among_a_flood() {
    if !root_or_skip("a_filtered_live_view_gets_every_match_among_a_flood") {
        return;
    }
    const CALLS: u64 = 500_000;
    const OPENS: u64 = 42;
    const FAILED: u64 = 5;
    let Watched {
        server,
        load,
        comm,
        id,
        mut ws,
    } = watched_stream_session(
        "flt",
        // Room for the whole burst: the test runs beside others on a small machine, and a
        // lost failure would be a wrong count.
        64 << 20,
        "subscription($id: ID!) { sessionEvents(id: $id, where: [
           {field: \"syscall\", value: \"openat\"}, {field: \"ret\", op: LT, value: \"0\"}])
           { kind comm data } }",
    );
    let status = Command::new(&*load)
        .args([CALLS, OPENS, FAILED].map(|n| n.to_string()))
        .status()
        .unwrap();
    assert!(status.success());
    server.stop_session(&id);
    let mut failures = Vec::new();
    loop {
        let message = ws_next(&mut ws);
        if message["type"] != "next" {
            break;
        }
        let event = &message["payload"]["data"]["sessionEvents"];
        failures.push((
            event["comm"].as_str().unwrap().to_string(),
            event["data"]["syscall"].as_str().unwrap().to_string(),
            event["data"]["ret"].as_i64().unwrap(),
        ));
    }
    let enoent = -i64::from(libc::ENOENT);
    assert_eq!(
        failures,
        vec![(comm.clone(), "openat".to_string(), enoent); FAILED as usize]
    );
    let seen = server.session(&id, "eventCount lostCount");
    assert_eq!(seen["lostCount"], 0, "{seen}");
    assert!(seen["eventCount"].as_u64().unwrap() >= CALLS, "{seen}");
    // A condition on a field the tracker does not have is refused when subscribing.
    ws_subscribe(
        &mut ws,
        "2",
        "subscription($id: ID!) { sessionEvents(id: $id, where: [{field: \"nope\", value: \"1\"}]) { kind } }",
        json!({ "id": id }),
    );
    let refused = ws_next(&mut ws);
    let error = &refused["payload"]["errors"][0];
    assert_eq!(error["extensions"]["code"], "BAD_QUERY", "{refused}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("unknown field `nope` for tracker `syscall`"),
        "{message}"
    );
}

#[test]
fn live_views_are_sampled_and_what_they_miss_is_counted() {
    if !root_or_skip("live_views_are_sampled_and_what_they_miss_is_counted") {
        return;
    }
    let Watched {
        server,
        load,
        id,
        mut ws,
        ..
    } = watched_stream_session(
        "samp",
        // Room for the whole burst (88 MB): a debug build's server takes the calls more
        // slowly than the probe makes them. What is tested is the live view's sampling,
        // and the session must lose nothing.
        128 << 20,
        "subscription($id: ID!) { sessionEvents(id: $id) { kind } }",
    );
    let started = Instant::now();
    common::run_load(&load, 1_000_000);
    server.stop_session(&id);
    let elapsed = started.elapsed().as_secs_f64();
    let mut delivered = 0u64;
    loop {
        let message = ws_next(&mut ws);
        match message["type"].as_str() {
            Some("next") => delivered += 1,
            _ => break,
        }
    }
    let seen = server.session(&id, "eventCount lostCount");
    assert_eq!(seen["lostCount"], 0, "{seen}");
    let seen = seen["eventCount"].as_u64().unwrap();
    assert!(seen >= 1_000_000, "{seen}");
    // The sample's windows are 100 ms: a window's worth more at each end at most.
    assert!(
        (delivered as f64) <= 10_000.0 * elapsed + 2_000.0,
        "{delivered} events in {elapsed:.2} s"
    );
    assert!(delivered >= 1_000, "{delivered}");
    let (_, metrics) = server.get("/metrics");
    let missed: u64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("eunomia_events_lost_total")
                && l.contains("stage=\"subscription\"")
                && l.contains("tracker=\"syscall\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(delivered + missed, seen);
    // Health says the same, per tracker and stage.
    let health = server.query("{ health { lost { tracker stage events } } }", json!({}));
    let lost = health["health"]["lost"].as_array().unwrap();
    assert!(
        lost.contains(&json!({ "tracker": "syscall", "stage": "subscription", "events": missed })),
        "{health}"
    );
}

/// A session is listed STARTING while its tracker loads and attaches, and RUNNING only
/// once it is attached (its programs loaded): a client that waits for RUNNING in the list
/// misses none of its workload's events.
#[test]
fn a_session_reads_starting_until_its_tracker_is_attached() {
    if !root_or_skip("a_session_reads_starting_until_its_tracker_is_attached") {
        return;
    }
    let server = std::sync::Arc::new(Server::start("starting", None));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (server, done) = (server.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let listed =
                    server.query("{ sessions { nodes { id status programIds } } }", json!({}));
                seen.extend(
                    listed["sessions"]["nodes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .cloned(),
                );
            }
            seen
        })
    };
    // The security tracker with every call loads some forty programs: a start that lasts.
    let id = server.start_session(json!({ "tracker": "security", "durationSecs": 30 }));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen: Vec<Value> = watcher
        .join()
        .unwrap()
        .into_iter()
        .filter(|s| s["id"] == id.as_str())
        .collect();
    let attached = |s: &Value| !s["programIds"].as_array().unwrap().is_empty();
    assert!(
        seen.iter().any(|s| s["status"] == "STARTING"),
        "never seen starting: {seen:?}"
    );
    // (A STARTING one may show programs: its fields are read one after the other, and it
    // can attach in between.)
    for s in &seen {
        match s["status"].as_str().unwrap() {
            "STARTING" => {}
            "RUNNING" => assert!(attached(s), "listed RUNNING before it was attached: {s}"),
            other => panic!("{other}: {s}"),
        }
    }
    assert_eq!(server.session(&id, "status")["status"], "RUNNING");
    // Once attached, it is in the RUNNING list and not in the STARTING one.
    let lists = server.query(
        "{ starting: sessions(status: STARTING) { nodes { id } } \
           running: sessions(status: RUNNING) { nodes { id } } }",
        json!({}),
    );
    assert_eq!(lists["starting"]["nodes"], json!([]), "{lists}");
    assert_eq!(lists["running"]["nodes"], json!([{ "id": id }]), "{lists}");
}

/// `sessionEventBatches` carries every event of a live view in a few messages, numbered
/// without a gap; `sessionUpdated` without an id follows every session to its end; bad
/// batch sizes are refused.
#[test]
fn live_batches_carry_every_event_and_updates_follow_all_sessions() {
    if !root_or_skip("live_batches_carry_every_event_and_updates_follow_all_sessions") {
        return;
    }
    // Below the live sample's budget of one 100 ms window, so that none is sampled away.
    const CALLS: u64 = 600;
    let Watched {
        server,
        load,
        id,
        mut ws,
        ..
    } = watched_stream_session(
        "batch",
        16 << 20,
        "subscription($id: ID!) { sessionEventBatches(id: $id, intervalMs: 200) { events { seq kind } } }",
    );
    let mut updates = server.ws_connect(None).unwrap();
    ws_subscribe(
        &mut updates,
        "u",
        "subscription { sessionUpdated { id status eventCount } }",
        json!({}),
    );
    // An update of the running session shows the subscription is live.
    let running = ws_next(&mut updates);
    assert_eq!(
        running["payload"]["data"]["sessionUpdated"]["id"], id,
        "{running}"
    );
    common::run_load(&load, CALLS);
    server.stop_session(&id);
    let (mut messages, mut seqs) = (0, Vec::new());
    loop {
        let message = ws_next(&mut ws);
        if message["type"] != "next" {
            assert_eq!(message["type"], "complete", "{message}");
            break;
        }
        messages += 1;
        for event in message["payload"]["data"]["sessionEventBatches"]["events"]
            .as_array()
            .unwrap()
        {
            seqs.push(event["seq"].as_u64().unwrap());
        }
    }
    let seen = server.session(&id, "eventCount lostCount");
    assert_eq!(seen["lostCount"], 0, "{seen}");
    let seen = seen["eventCount"].as_u64().unwrap();
    assert!(seen >= CALLS, "{seen}");
    assert_eq!(seqs, (1..=seen).collect::<Vec<_>>());
    assert!(messages <= 5, "{seen} events in {messages} messages");

    let last = loop {
        let update = ws_next(&mut updates)["payload"]["data"]["sessionUpdated"].clone();
        if update["id"] == id && update["status"] != "RUNNING" {
            break update;
        }
    };
    assert_eq!(last["status"], "STOPPED", "{last}");
    assert_eq!(last["eventCount"], seen);

    for (case, (interval, most)) in [(5, 10), (100, 0), (100, 10_001)].into_iter().enumerate() {
        let name = format!("bad{case}");
        ws_subscribe(
            &mut updates,
            &name,
            "subscription($id: ID!, $i: Int!, $m: Int!) { sessionEventBatches(id: $id, intervalMs: $i, maxEvents: $m) { events { seq } } }",
            json!({ "id": id, "i": interval, "m": most }),
        );
        let refused = loop {
            let message = ws_next(&mut updates);
            if message["id"] == name.as_str() {
                break message;
            }
        };
        assert_eq!(
            refused["payload"]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{refused}"
        );
    }
}

#[test]
fn bad_input_gets_coded_errors_and_loses_nothing() {
    if !root_or_skip("bad_input_gets_coded_errors_and_loses_nothing") {
        return;
    }
    let server = Server::start("bad", Some("[sessions]\nmax_duration_secs = 60\n"));
    let keep = server.start_session(json!({ "tracker": "process", "durationSecs": 60 }));
    let start = "mutation($input: StartSessionInput!) { startSession(input: $input) { id } }";
    let cases = [
        (
            json!({ "tracker": "nosuch", "durationSecs": 1 }),
            "UNKNOWN_TRACKER",
            "unknown tracker `nosuch`",
        ),
        (
            json!({ "tracker": "process", "durationSecs": 0 }),
            "BAD_DURATION",
            "durationSecs must be between 1 and 60, got 0",
        ),
        (
            json!({ "tracker": "process", "durationSecs": 61 }),
            "BAD_DURATION",
            "got 61",
        ),
        (
            json!({ "tracker": "process", "durationSecs": 1, "filter": { "container": "no-such-container-x" } }),
            "UNKNOWN_CONTAINER",
            "no container `no-such-container-x`",
        ),
        (
            json!({ "tracker": "process", "durationSecs": 1, "config": "{not json" }),
            "BAD_CONFIG",
            "config is not valid JSON",
        ),
        (
            json!({ "tracker": "process", "durationSecs": 1, "config": { "ringbuf_bytes": 3 } }),
            "BAD_CONFIG",
            "power of two",
        ),
        (
            json!({ "tracker": "process", "durationSecs": 1, "config": { "nonsense": 1 } }),
            "BAD_CONFIG",
            "option `nonsense` does not apply to the process tracker (it takes: min_duration_ns, failed_execs, cwd, exec_details)",
        ),
        (
            json!({ "tracker": "process", "durationSecs": 1, "config": { "mode": "stream" } }),
            "BAD_CONFIG",
            "option `mode` does not apply to the process tracker (it takes: min_duration_ns, failed_execs, cwd, exec_details)",
        ),
        (
            json!({ "tracker": "tcp", "durationSecs": 1, "config": { "min_duration_ns": 1000 } }),
            "BAD_CONFIG",
            "option `min_duration_ns` does not apply to the tcp tracker (it takes: none)",
        ),
        (
            json!({ "tracker": "syscall", "durationSecs": 1, "config": { "interval_ms": 1 } }),
            "BAD_CONFIG",
            "interval_ms must be between 10 and 3600000, got 1",
        ),
        (
            json!({ "tracker": "files", "durationSecs": 1, "config": { "file_types": [] } }),
            "BAD_CONFIG",
            "file_types must name at least one type",
        ),
        (
            json!({ "tracker": "syscall", "durationSecs": 1, "config": { "latency": "yes" } }),
            "BAD_CONFIG",
            "syscall tracker options: invalid type: string \"yes\", expected a boolean",
        ),
        (
            json!({ "tracker": "process", "durationSecs": 1, "filter": { "comm": "much-too-long-a-name" } }),
            "BAD_FILTER",
            "comm must be 1 to 15 bytes",
        ),
        (
            json!({ "tracker": "process", "durationSecs": 1, "filter": { "comm": "sh\u{0}x" } }),
            "BAD_FILTER",
            "comm must not contain NUL",
        ),
        (
            json!({ "tracker": "process", "durationSecs": 1, "filter": { "cgroupId": 0 } }),
            "BAD_FILTER",
            "cgroup id 0 is no cgroup",
        ),
        (
            json!({ "tracker": "process", "durationSecs": 1, "filter": { "containerName": "web1", "image": "bb" } }),
            "BAD_FILTER",
            "give one of cgroupId, container, containerName and image",
        ),
        (
            json!({ "tracker": "process", "durationSecs": 1, "filter": { "image": " " } }),
            "BAD_FILTER",
            "containerName and image must not be empty",
        ),
        (
            json!({ "tracker": "process", "durationSecs": 1, "config": { "ringbuf_bytes": 2147483648u64 } }),
            "BAD_CONFIG",
            "ringbuf_bytes must be at most 268435456 (256 MiB), got 2147483648",
        ),
    ];
    for (input, code, message) in cases {
        let (got_code, got_message) = server.error(start, json!({ "input": input }), None);
        assert_eq!(got_code, code, "{input}: {got_message}");
        assert!(got_message.contains(message), "{input}: {got_message}");
    }
    let (code, message) = server.error("{ session(id: \"nope\") { id } }", json!({}), None);
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("NOT_FOUND", "no session with id `nope`")
    );
    let (code, _) = server.error("{ session(id: \"nope\") { id ", json!({}), None);
    assert_eq!(code, "GRAPHQL_PARSE_FAILED");
    let (code, message) = server.error(
        &format!("{{ session(id: \"{keep}\") {{ aggregate(groupBy: [\"bogus\"]) {{ count }} }} }}"),
        json!({}),
        None,
    );
    assert_eq!(code, "BAD_QUERY", "{message}");
    let (code, _) = server.error(
        &format!("{{ session(id: \"{keep}\") {{ aggregate(groupBy: [], op: SUM) {{ count }} }} }}"),
        json!({}),
        None,
    );
    assert_eq!(code, "BAD_QUERY");
    // Still serving, and the good session was not disturbed.
    assert_eq!(server.session(&keep, "status")["status"], "RUNNING");
    assert_eq!(server.stop_session(&keep), "STOPPED");
    let list = server.query("{ sessions { edges { node { id status } } } }", json!({}));
    assert_eq!(list["sessions"]["edges"].as_array().unwrap().len(), 1);
}

#[test]
fn metrics_pass_promtool_and_count_events() {
    if !root_or_skip("metrics_pass_promtool_and_count_events") {
        return;
    }
    let server = Server::start("metrics", None);
    let (binary, comm) = unique_binary("me");
    let id = server.start_session(
        json!({ "tracker": "process", "durationSecs": 60, "filter": { "comm": comm } }),
    );
    run_copies(&binary, 3);
    assert_eq!(server.stop_session(&id), "STOPPED");
    let (status, text) = server.get("/metrics");
    assert_eq!(status, 200);
    let value = |line_start: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(value("eunomia_events_total{tracker=\"process\"}"), 6.0);
    assert_eq!(
        value("eunomia_sessions_total{status=\"STOPPED\",tracker=\"process\"}"),
        1.0
    );
    assert_eq!(value("eunomia_sessions_active "), 0.0);
    // The server's own resident memory, as the kernel counts it.
    let rss_kib: f64 = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let rss = value("process_resident_memory_bytes ");
    assert!(
        (rss - rss_kib * 1024.0).abs() < 0.5 * rss,
        "metric {rss} B, /proc says {rss_kib} kB"
    );
    assert!(text.contains("eunomia_sqlite_write_duration_seconds_bucket"));
    assert!(text.contains("eunomia_handler_duration_seconds_bucket"));
    assert!(!text.contains(&id), "no per-session labels");

    common::promtool_accepts(&text);
    assert_eq!(server.get("/healthz"), (200, "ok\n".to_string()));
}

#[test]
fn console_works_offline_in_a_real_browser() {
    if !common::docker::docker_or_skip("console_works_offline_in_a_real_browser") {
        return;
    }
    // For the containers panel: running before the server starts, so listed at once.
    let container = common::docker::Container::start("console");
    let server = Server::start("console", Some(&auth_config()));
    // For the alerts panel: a session whose rule alerts on each cat of /etc/shadow.
    server.query_as(
        r#"mutation { startSession(input: {tracker: "files", durationSecs: 120, store: MEMORY,
            filter: {comm: "cat"}, config: {opens: "stream"}, rules: ["read_sensitive_file"]}) { id } }"#,
        json!({}),
        Some(OPERATOR),
    );
    use std::io::Write;
    // For the flame graph: a profile session of a program that spends 90% of 2 s in
    // spin_here, ended before the browser looks.
    let (hot, _) =
        common::build_program("stack_work.c", &["-O0", "-fno-omit-frame-pointer"], "hot");
    let (mut child, mut lines) = common::spawn_ready(Command::new(&*hot).arg("profile"));
    let profiled = server.query_as(
        "mutation($pid: Int!) { startSession(input: {tracker: \"profile\", durationSecs: 120,
            store: MEMORY, filter: {pid: $pid}, config: {frequency: 499}}) { id programIds } }",
        json!({ "pid": child.id() }),
        Some(OPERATOR),
    );
    let profiled = profiled["startSession"]["id"].as_str().unwrap().to_string();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "done");
    child.kill().unwrap();
    child.wait().unwrap();
    server.query_as(
        "mutation($id: ID!) { stopSession(id: $id) { status } }",
        json!({ "id": profiled }),
        Some(OPERATOR),
    );
    // For the sessions panel, which a viewer sees without stop buttons: a process session
    // (listed first, being the newest).
    let started = server.query_as(
        r#"mutation { startSession(input: {tracker: "process", durationSecs: 120, store: MEMORY}) { id } }"#,
        json!({}),
        Some(OPERATOR),
    );
    assert!(started["startSession"]["id"].is_string());
    let me = server.query_as("{ me { name role } }", json!({}), Some(VIEWER));
    assert_eq!(me["me"]["role"], "VIEWER");
    let me = server.query_as("{ me { name role } }", json!({}), Some(OPERATOR));
    assert_eq!(me["me"]["role"], "OPERATOR");
    let (status, html) = server.get("/graphql");
    assert_eq!(status, 200);
    assert!(html.contains("/graphql/assets/console.js"));
    // Two stored profiles for the seccomp panel to download and diff.
    for (name, calls) in [
        ("console-a", ["read", "write", "exit_group"]),
        ("console-b", ["read", "openat", "exit_group"]),
    ] {
        let profile = json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{ "names": calls, "action": "SCMP_ACT_ALLOW" }],
        });
        server.query_as(
            "mutation($name: String!, $profile: JSON!) { saveSeccompProfile(name: $name, profile: $profile) { name } }",
            json!({ "name": name, "profile": profile }),
            Some(OPERATOR),
        );
    }
    // The program the operator's form session filters on: run exactly 20 times once
    // that session runs.
    let (program, program_comm) = common::syscall_load("form");
    // Processes for the live events view, and alerts for the alerts panel, while the
    // browser checks run.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let background = {
        let done = done.clone();
        let (url, program) = (server.url.clone(), program.to_path_buf());
        std::thread::spawn(move || {
            let mut ran_program = false;
            for round in 0u64.. {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let _ = Command::new("/bin/true").status();
                if round % 5 == 0 {
                    let _ = Command::new("/bin/cat")
                        .arg("/etc/shadow")
                        .stdout(std::process::Stdio::null())
                        .status();
                }
                if !ran_program && form_session_runs(&url) {
                    for _ in 0..20 {
                        common::run_load(&program, 1);
                    }
                    ran_program = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let shots = common::TempDir::new("console-shots");
    // A viewer sees; an operator also starts and stops sessions from the console.
    for token in [VIEWER, OPERATOR] {
        let out = Command::new("node")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/console/console_check.mjs"
            ))
            .args([server.url.as_str(), token])
            .env("CONSOLE_CHECK_PROFILES", "console-a,console-b")
            .env("CONSOLE_CHECK_CONTAINER", &container.name)
            .env("CONSOLE_CHECK_PROGRAM", &program_comm)
            .env("CONSOLE_CHECK_HOT", "spin_here")
            .env("CONSOLE_CHECK_SHOTS", shots.path())
            .output()
            .expect("node is installed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "console check failed: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!(
                "console ok: version {}",
                env!("CARGO_PKG_VERSION")
            )),
            "{stdout}"
        );
        // dt and dd texts run together in textContent.
        assert!(
            stdout.contains(
                "seccomp diff: only in console-awriteonly in console-bopenatin both2 calls"
            ),
            "{stdout}"
        );
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    background.join().unwrap();
    // The form's session: stopped from the page, 20 execs and 20 exits of the program.
    let sessions = server.query_as(
        r#"{ sessions { nodes { label status filter eventCount } } }"#,
        json!({}),
        Some(VIEWER),
    );
    let form = sessions["sessions"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["label"] == "from-console")
        .unwrap_or_else(|| panic!("{sessions}"))
        .clone();
    assert_eq!(form["status"], "STOPPED", "{form}");
    assert_eq!(form["filter"]["comm"], program_comm.as_str(), "{form}");
    assert_eq!(form["eventCount"], 40, "{form}");
    // A screenshot of every panel, for each role, as the check's artefacts.
    let mut taken: Vec<String> = std::fs::read_dir(shots.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    taken.sort();
    assert_eq!(taken.len(), 2 * CONSOLE_PAGES.len(), "{taken:?}");
    if let Some(keep) = std::env::var_os("EUNOMIA_CONSOLE_SHOTS") {
        for name in &taken {
            std::fs::copy(
                shots.path().join(name),
                std::path::Path::new(&keep).join(name),
            )
            .unwrap();
        }
    }
}

/// The pages the console check photographs for each role.
const CONSOLE_PAGES: [&str; 8] = [
    "catalog",
    "sessions",
    "chart",
    "flamegraph",
    "rules",
    "alerts",
    "containers",
    "health",
];

/// Whether the operator's form session (label `from-console`) runs on the server at `url`
/// with its programs attached (a session is listed RUNNING while its tracker loads).
fn form_session_runs(url: &str) -> bool {
    let answer = common::server::http_client(None)
        .post(format!("{url}/graphql"))
        .bearer_auth(OPERATOR)
        .json(&json!({ "query": "{ sessions(status: RUNNING) { nodes { label programIds } } }" }))
        .send()
        .and_then(|r| r.json::<serde_json::Value>());
    answer.is_ok_and(|body| {
        body["data"]["sessions"]["nodes"]
            .as_array()
            .is_some_and(|nodes| {
                nodes.iter().any(|n| {
                    n["label"] == "from-console"
                        && n["programIds"]
                            .as_array()
                            .is_some_and(|ids| !ids.is_empty())
                })
            })
    })
}

/// `trackers { options }` lists each tracker's own options as the console's session form
/// needs them: name, type, allowed values, default and description.
/// A session leaves the server's own process out (its threads would report their own
/// polling and storing) unless the filter's `includeSelf` asks for it.
#[test]
fn the_servers_own_process_is_left_out_unless_asked() {
    if !root_or_skip("the_servers_own_process_is_left_out_unless_asked") {
        return;
    }
    let server = Server::start("self", None);
    let pid = server.pid().to_string();
    for include_self in [false, true] {
        let id = server.start_session(json!({
            "tracker": "syscall",
            "durationSecs": 1,
            "store": "MEMORY",
            "filter": { "includeSelf": include_self },
            "config": { "interval_ms": 100 },
        }));
        assert_eq!(server.wait_ended(&id, Duration::from_secs(15)), "COMPLETED");
        let data = server.query(
            "query($id: ID!, $pid: ConditionValue!) { session(id: $id) {
               aggregate(groupBy: [\"syscall\"], where: [{field: \"pid\", value: $pid}]) { keys } } }",
            json!({ "id": id, "pid": pid }),
        );
        let own: Vec<&str> = data["session"]["aggregate"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["keys"][0].as_str().unwrap())
            .collect();
        if include_self {
            // Each drain reads the kernel's maps with bpf(2).
            assert!(own.contains(&"bpf"), "{own:?}");
        } else {
            assert!(own.is_empty(), "the server's own calls: {own:?}");
        }
    }
}

#[test]
fn trackers_list_their_options() {
    if !root_or_skip("trackers_list_their_options") {
        return;
    }
    let server = Server::start("options", None);
    let data = server.query(
        "{ trackers { name options { name type values default description } } }",
        json!({}),
    );
    let trackers = data["trackers"].as_array().unwrap();
    let names: Vec<&str> = trackers
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let registry: Vec<&str> = eunomia::trackers::TRACKERS
        .iter()
        .map(|t| t.info().name)
        .collect();
    assert_eq!(names, registry);
    let of = |name: &str| {
        trackers.iter().find(|t| t["name"] == name).unwrap()["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["name"].clone(),
                    o["type"].clone(),
                    o["values"].clone(),
                    o["default"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of("syscall"),
        [
            (
                json!("mode"),
                json!("enum"),
                json!(["aggregate", "stream"]),
                json!("aggregate")
            ),
            (
                json!("interval_ms"),
                json!("integer"),
                json!([]),
                json!(1000)
            ),
            (json!("latency"), json!("boolean"), json!([]), json!(null)),
            (
                json!("seccomp_only"),
                json!("boolean"),
                json!([]),
                json!(false)
            ),
            (
                json!("first_args"),
                json!("boolean"),
                json!([]),
                json!(false)
            ),
        ]
    );
    assert_eq!(
        of("files"),
        [
            (
                json!("interval_ms"),
                json!("integer"),
                json!([]),
                json!(1000)
            ),
            (
                json!("file_types"),
                json!("[enum]"),
                json!(["regular", "socket", "pipe", "other"]),
                json!(["regular"])
            ),
            (
                json!("opens"),
                json!("enum"),
                json!(["aggregate", "stream"]),
                json!("aggregate")
            ),
            (json!("io"), json!("boolean"), json!([]), json!(true)),
        ]
    );
    assert_eq!(
        of("process"),
        [
            (
                json!("min_duration_ns"),
                json!("integer"),
                json!([]),
                json!(0)
            ),
            (
                json!("failed_execs"),
                json!("boolean"),
                json!([]),
                json!(false)
            ),
            (json!("cwd"), json!("boolean"), json!([]), json!(false)),
            (
                json!("exec_details"),
                json!("boolean"),
                json!([]),
                json!(false)
            ),
        ]
    );
    assert!(of("tcp").is_empty() && of("ipc").is_empty());
    for tracker in trackers {
        for option in tracker["options"].as_array().unwrap() {
            assert!(
                option["description"].as_str().unwrap().len() > 20,
                "{} {option} explains itself",
                tracker["name"]
            );
        }
    }
}

#[test]
fn schema_sdl_has_not_drifted() {
    let out = Command::new(env!("CARGO_BIN_EXE_eunomia"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success());
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/schema.graphql"
    ))
    .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "schema/schema.graphql differs from the code: run `make schema` and commit it"
    );
}

/// Reads one subscription's events until it completes: their `seq` numbers and kinds.
fn subscription_events(ws: &mut Ws, sub_id: &str, field: &str) -> Vec<(i64, String)> {
    let mut events = Vec::new();
    loop {
        let message = ws_next(ws);
        assert_eq!(message["id"], sub_id, "{message}");
        match message["type"].as_str().unwrap() {
            "next" => {
                let event = &message["payload"]["data"][field];
                assert!(event.is_object(), "{message}");
                events.push((
                    event["seq"].as_i64().unwrap(),
                    event["kind"].as_str().unwrap().to_string(),
                ));
            }
            "complete" => return events,
            _ => panic!("{message}"),
        }
    }
}

/// `sessionEvents(fromStart: true)` subscribed while a program runs again and again: the
/// stored events, then the live ones, each exactly once. What it delivers equals what the
/// session stored (every seq, in order), and the execs equal the runs.
fn from_start_misses_nothing(store: &str) {
    let server = Server::start(&format!("replay-{store}"), None);
    let (binary, comm) = unique_binary(&format!("rp{}", &store[..1]));
    let id = server.start_session(json!({
        "tracker": "process", "durationSecs": 30, "store": store, "filter": { "comm": comm },
    }));
    run_copies(&binary, 5);
    // Runs go on while the subscription starts, so that some fall on its boundary.
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let runner = {
        let (binary, running) = (binary.to_path_buf(), running.clone());
        std::thread::spawn(move || {
            let mut runs = 0;
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                run_copies(&binary, 1);
                runs += 1;
            }
            runs
        })
    };
    let mut ws = server.ws_connect(None).unwrap();
    ws_subscribe(
        &mut ws,
        "replay",
        "subscription($id: ID!) { sessionEvents(id: $id, fromStart: true) { seq kind } }",
        json!({ "id": id }),
    );
    std::thread::sleep(Duration::from_millis(300));
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    let runs = 5 + runner.join().unwrap();
    assert_eq!(server.stop_session(&id), "STOPPED");
    let delivered = subscription_events(&mut ws, "replay", "sessionEvents");

    assert_eq!(server.session(&id, "lostCount")["lostCount"], 0);
    let mut stored: Vec<(i64, String)> = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = server.query(
            "query($id: ID!, $after: String) { session(id: $id) {
               events(first: 1000, after: $after) {
                 edges { node { seq kind } } pageInfo { hasNextPage endCursor } } } }",
            json!({ "id": id, "after": after }),
        )["session"]["events"]
            .clone();
        stored.extend(page["edges"].as_array().unwrap().iter().map(|e| {
            let node = &e["node"];
            (
                node["seq"].as_i64().unwrap(),
                node["kind"].as_str().unwrap().to_string(),
            )
        }));
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(stored.len(), 2 * runs, "{store}: {runs} runs");
    assert_eq!(delivered, stored, "{store}");
    let seqs: Vec<i64> = delivered.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=2 * runs as i64).collect::<Vec<_>>(), "{store}");
    let execs = delivered.iter().filter(|(_, kind)| kind == "exec").count();
    assert_eq!(execs, runs, "{store}");
}

#[test]
fn from_start_replays_stored_events_then_live_sqlite() {
    if !root_or_skip("from_start_replays_stored_events_then_live_sqlite") {
        return;
    }
    from_start_misses_nothing("SQLITE");
}

#[test]
fn from_start_replays_stored_events_then_live_memory() {
    if !root_or_skip("from_start_replays_stored_events_then_live_memory") {
        return;
    }
    from_start_misses_nothing("MEMORY");
}

/// The id of the running session labelled `label`, once its programs are attached.
fn running_session(server: &Server, label: &str) -> String {
    let deadline = Instant::now() + WINDOW;
    loop {
        let sessions = server.query(
            "{ sessions(status: RUNNING) { edges { node { id label programIds } } } }",
            json!({}),
        );
        if let Some(found) = sessions["sessions"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["node"]["label"] == label && s["node"]["programIds"] != json!([]))
        {
            return found["node"]["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no running session `{label}`");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `trace` is one request: it starts the session, streams its events from the first, and
/// ends with the final record, asked for its aggregate in the same selection.
#[test]
fn trace_streams_a_window_and_ends_with_the_answer() {
    if !root_or_skip("trace_streams_a_window_and_ends_with_the_answer") {
        return;
    }
    let server = Server::start("trace", None);
    let (binary, comm) = unique_binary("trc");
    let mut ws = server.ws_connect(None).unwrap();
    ws_subscribe(
        &mut ws,
        "trace",
        "subscription($comm: String!) {
           trace(input: {tracker: \"process\", durationSecs: 3, label: \"traced\",
                         filter: {comm: $comm}},
                 where: [{field: \"kind\", value: \"exec\"}]) {
             event { seq kind comm }
             session { status eventCount aggregate(groupBy: [\"kind\"]) { keys count } }
           }
         }",
        json!({ "comm": comm }),
    );
    running_session(&server, "traced");
    run_copies(&binary, 4);
    let mut items = Vec::new();
    loop {
        let message = ws_next(&mut ws);
        match message["type"].as_str().unwrap() {
            "next" => items.push(message["payload"]["data"]["trace"].clone()),
            "complete" => break,
            _ => panic!("{message}"),
        }
    }
    let (events, last) = items.split_at(items.len() - 1);
    assert_eq!(events.len(), 4, "{items:?}");
    for item in events {
        assert_eq!(item["session"], Value::Null);
        assert_eq!(item["event"]["kind"], "exec");
        assert_eq!(item["event"]["comm"], comm);
    }
    assert_eq!(
        last[0],
        json!({ "event": null, "session": { "status": "COMPLETED", "eventCount": 8,
                "aggregate": [{ "keys": ["exec"], "count": 4 }, { "keys": ["exit"], "count": 4 }] } })
    );
}

/// A trace whose subscriber goes away stops its session: nobody is left to read it.
#[test]
fn a_dropped_trace_stops_its_session() {
    if !root_or_skip("a_dropped_trace_stops_its_session") {
        return;
    }
    let server = Server::start("trace-drop", None);
    let mut ws = server.ws_connect(None).unwrap();
    ws_subscribe(
        &mut ws,
        "trace",
        "subscription { trace(input: {tracker: \"process\", durationSecs: 600, label: \"dropped\"}) {
           event { seq } } }",
        json!({}),
    );
    let id = running_session(&server, "dropped");
    drop(ws);
    assert_eq!(server.wait_ended(&id, WINDOW), "STOPPED");
    // A bad condition starts nothing.
    let mut ws = server.ws_connect(None).unwrap();
    ws_subscribe(
        &mut ws,
        "bad",
        "subscription { trace(input: {tracker: \"process\", durationSecs: 5, label: \"bad\"},
           where: [{field: \"nope\", value: \"1\"}]) { event { seq } } }",
        json!({}),
    );
    let refused = ws_next(&mut ws);
    let code = &refused["payload"]["errors"][0]["extensions"]["code"];
    assert_eq!(code, "BAD_QUERY", "{refused}");
    let sessions = server.query("{ sessions { edges { node { label } } } }", json!({}));
    assert_eq!(
        sessions["sessions"]["edges"],
        json!([{ "node": { "label": "dropped" } }])
    );
}

/// GraphQL over HTTP's GET: a query in the URL runs (with variables and operationName),
/// with the same token rules as POST; a mutation is 405 and starts nothing; a browser gets
/// the console; `/` leads to it.
#[test]
fn get_runs_queries_but_never_mutations() {
    if !root_or_skip("get_runs_queries_but_never_mutations") {
        return;
    }
    let server = Server::start("get", Some(&auth_config()));
    let get = |query: &str, extra: &str, token: Option<&str>| -> (u16, Value) {
        let path = format!(
            "/graphql?query={}{extra}",
            form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
        );
        let (status, body) = server.get_as(&path, token);
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    };
    let (status, body) = get("{ health { version } }", "", Some(VIEWER));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["health"]["version"], env!("CARGO_PKG_VERSION"));

    let variables = form_urlencoded::byte_serialize(br#"{"first":1}"#).collect::<String>();
    let (status, body) = get(
        "query A { health { version } } query B($first: Int) { sessions(first: $first) { nodes { id } } }",
        &format!("&operationName=B&variables={variables}"),
        Some(VIEWER),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!({ "sessions": { "nodes": [] } }));

    let (status, body) = get("{ health { version } }", "", None);
    assert_eq!(status, 401);
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let (status, body) = get("{ health { version } }", "&variables=[1]", Some(VIEWER));
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST");

    let start = r#"mutation { startSession(input: {tracker: "process", durationSecs: 5}) { id } }"#;
    for (query, extra) in [
        (start.to_string(), String::new()),
        // The mutation named by operationName in a document that also holds a query.
        (
            format!(
                "query Q {{ health {{ version }} }} mutation M {}",
                &start[9..]
            ),
            "&operationName=M".into(),
        ),
    ] {
        let (status, body) = get(&query, &extra, Some(OPERATOR));
        assert_eq!(status, 405, "{body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "METHOD_NOT_ALLOWED"
        );
    }
    let sessions = server.query_as("{ sessions { nodes { id } } }", json!({}), Some(VIEWER));
    assert_eq!(
        sessions["sessions"]["nodes"],
        json!([]),
        "a GET started nothing"
    );

    // A browser asking with a query gets the console, which fills its editor from the URL.
    let page = server
        .client
        .get(format!(
            "{}/graphql?query=%7Bhealth%7Bversion%7D%7D",
            server.url
        ))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().unwrap().contains("/graphql/assets/console.js"));
    let (status, html) = server.get("/");
    assert_eq!(status, 200);
    assert!(html.contains("/graphql/assets/console.js"));
}

/// `timeseries(fill: true)` returns every bucket of the session's window, empty ones with
/// count 0, for each group; without `fill` only buckets with events.
#[test]
fn timeseries_fill_returns_empty_buckets() {
    if !root_or_skip("timeseries_fill_returns_empty_buckets") {
        return;
    }
    let server = Server::start("fill", None);
    let (binary, comm) = unique_binary("fill");
    let id = server.start_session(json!({
        "tracker": "process", "durationSecs": 3, "store": "SQLITE", "filter": { "comm": comm },
    }));
    run_copies(&binary, 4);
    assert_eq!(server.wait_ended(&id, WINDOW), "COMPLETED");
    let session = server.session(
        &id,
        r#"startedAt endedAt
           sparse: timeseries(bucketSecs: 1) { start count }
           filled: timeseries(bucketSecs: 1, fill: true) { start keys count value }
           byKind: timeseries(bucketSecs: 1, groupBy: ["kind"], fill: true) { start keys count }"#,
    );
    let seconds = |rows: &Value| -> Vec<String> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| r["start"].as_str().unwrap()[..19].to_string())
            .collect()
    };
    let counts = |rows: &Value| -> u64 {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| r["count"].as_u64().unwrap())
            .sum()
    };
    let sparse = &session["sparse"];
    assert_eq!(counts(sparse), 8, "{sparse}");
    assert!(sparse
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["count"].as_u64() > Some(0)));

    // Every second from the start's to the end's, one after the other.
    let filled = &session["filled"];
    assert_eq!(counts(filled), 8, "{filled}");
    let filled_seconds = seconds(filled);
    assert_eq!(
        filled_seconds.first().unwrap(),
        &session["startedAt"].as_str().unwrap()[..19]
    );
    assert_eq!(
        filled_seconds.last().unwrap(),
        &session["endedAt"].as_str().unwrap()[..19]
    );
    let of_day = |s: &str| -> u64 {
        let hms: Vec<u64> = s[11..].split(':').map(|p| p.parse().unwrap()).collect();
        hms[0] * 3600 + hms[1] * 60 + hms[2]
    };
    for pair in filled_seconds.windows(2) {
        assert_eq!(of_day(&pair[1]) - of_day(&pair[0]), 1, "{filled_seconds:?}");
    }
    assert!(
        filled_seconds.len() >= 3,
        "a 3 s session spans 3 or 4 buckets"
    );
    let empty: Vec<&Value> = filled
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["count"] == 0)
        .collect();
    assert_eq!(
        empty.len(),
        filled_seconds.len() - sparse.as_array().unwrap().len()
    );
    assert!(empty
        .iter()
        .all(|r| r["value"] == 0.0 && r["keys"] == json!([])));

    // Grouped: both kinds in every bucket.
    let by_kind = &session["byKind"];
    assert_eq!(counts(by_kind), 8);
    assert_eq!(
        by_kind.as_array().unwrap().len(),
        2 * filled_seconds.len(),
        "{by_kind}"
    );
}
