//! A fleet of real servers on one real PostgreSQL (root): three `eunomia serve`
//! processes with their own node names, ports and SQLite files, each kept to a cgroup of
//! its own (`[fleet] cgroup`, as nodes that share a host), run one fleet session.

mod common;

use std::time::Duration;

use common::fleet::{nodes, nodes_configured, wait_ended, wait_running};
use common::postgres::Postgres;
use common::root_or_skip;
use common::server::Server;
use serde_json::{json, Value};

/// A private PostgreSQL for a root test; skips (fails in CI) where either is missing.
fn database(test: &str) -> Option<Postgres> {
    match root_or_skip(test) {
        true => Postgres::start_or_skip(test),
        false => None,
    }
}

fn start_fleet_session(origin: &Server, secs: u64) -> String {
    let data = origin.query(
        "mutation($input: StartSessionInput!) { startSession(input: $input) { id status nodes { node status } } }",
        json!({ "input": { "tracker": "process", "durationSecs": secs, "nodes": ["*"] } }),
    );
    let session = &data["startSession"];
    assert_eq!(session["status"], "RUNNING", "{session}");
    session["id"].as_str().unwrap().to_string()
}

fn part<'a>(session: &'a Value, node: &str) -> &'a Value {
    session["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node"] == node)
        .unwrap_or_else(|| panic!("no part of {node}: {session}"))
}

/// Exec counts of the fleet session per (node, comm), asked of `server`.
fn exec_rows(server: &Server, id: &str) -> Value {
    let data = server.query(
        r#"query($id: ID!) { session(id: $id) {
             aggregate(groupBy: ["node", "comm"], where: [{field: "kind", value: "exec"}]) { keys count }
           } }"#,
        json!({ "id": id }),
    );
    data["session"]["aggregate"].clone()
}

fn execs_by_node(server: &Server, id: &str) -> Vec<(String, String, u64)> {
    let mut rows: Vec<(String, String, u64)> = exec_rows(server, id)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let key = |i: usize| r["keys"][i].as_str().unwrap().to_string();
            (key(0), key(1), r["count"].as_u64().unwrap())
        })
        .collect();
    rows.sort();
    rows
}

/// Rows' counts summed by their first key (the node), in node order.
fn by_node(rows: &Value) -> Vec<(String, u64)> {
    let mut sums = std::collections::BTreeMap::<String, u64>::new();
    for row in rows.as_array().unwrap() {
        *sums
            .entry(row["keys"][0].as_str().unwrap().into())
            .or_default() += row["count"].as_u64().unwrap();
    }
    sums.into_iter().collect()
}

#[test]
fn a_fleet_session_counts_every_nodes_execs_exactly() {
    let Some(postgres) = database("a_fleet_session_counts_every_nodes_execs_exactly") else {
        return;
    };
    let fleet = nodes(&postgres, &["alpha", "beta", "gamma"]);
    let runs: [usize; 3] = [20, 30, 40];
    // Any node may start it; another answers for it.
    let id = start_fleet_session(&fleet[1].server, 5);
    wait_running(&fleet[0].server, &id, &["alpha", "beta", "gamma"]);
    for (node, n) in fleet.iter().zip(runs) {
        node.cgroup.run(&node.workload.0, n);
    }
    let session = wait_ended(&fleet[0].server, &id, Duration::from_secs(30));
    assert_eq!(session["status"], "COMPLETED", "{session}");
    for (node, n) in fleet.iter().zip(runs) {
        let part = part(&session, node.name);
        assert_eq!(part["status"], "COMPLETED", "{part}");
        // n execs and n exits of the workload, and the shell's own exit.
        assert_eq!(part["eventCount"], 2 * n + 1, "{part}");
        assert_eq!(part["shippedCount"], 2 * n + 1, "{part}");
        assert_eq!(part["lostCount"], 0, "{part}");
        // The part is a session of its node, which answers for it alone.
        let local = part["localSessionId"].as_str().unwrap();
        let own = node.server.session(local, "status eventCount");
        assert_eq!(
            own,
            json!({ "status": "COMPLETED", "eventCount": 2 * n + 1 })
        );
    }
    assert_eq!(session["eventCount"], 2 * 90 + 3);
    let listed = fleet[2]
        .server
        .query("{ fleetSessions { id status } }", json!({}));
    assert_eq!(
        listed["fleetSessions"],
        json!([{ "id": id, "status": "COMPLETED" }])
    );
    let expected: Vec<(String, String, u64)> = fleet
        .iter()
        .zip(runs)
        .map(|(node, n)| (node.name.to_string(), node.workload.1.clone(), n as u64))
        .collect();
    assert_eq!(execs_by_node(&fleet[2].server, &id), expected);

    let totals = fleet[0].server.query(
        r#"query($id: ID!) { session(id: $id) {
             all: aggregate(groupBy: [], where: [{field: "kind", value: "exec"}]) { count }
             beta: aggregate(groupBy: ["comm"], where: [{field: "node", value: "beta"}, {field: "kind", value: "exec"}]) { keys count }
             perNode: timeseries(bucketSecs: 3600, groupBy: ["node"], where: [{field: "kind", value: "exec"}]) { keys count }
             slowest: aggregate(groupBy: ["node"], op: MAX, field: "duration_ns", where: [{field: "kind", value: "exit"}, {field: "comm", op: CONTAINS, value: "fl"}]) { keys count }
             events(first: 3, where: [{field: "node", value: "gamma"}, {field: "kind", value: "exec"}]) {
               edges { node { comm data } }
             }
           } }"#,
        json!({ "id": id }),
    );
    let totals = &totals["session"];
    assert_eq!(totals["all"], json!([{ "count": 90 }]));
    assert_eq!(
        totals["beta"],
        json!([{ "keys": [fleet[1].workload.1], "count": 30 }])
    );
    // One hour's bucket holds the whole window (or two, when it spans the hour).
    let per_node = [
        ("alpha".into(), 20),
        ("beta".into(), 30),
        ("gamma".into(), 40),
    ];
    assert_eq!(by_node(&totals["perNode"]), per_node);
    // MAX over each node's workload exits: as many as it ran, and no other comm's.
    assert_eq!(by_node(&totals["slowest"]), per_node);
    let events = totals["events"]["edges"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    for event in events {
        assert_eq!(event["node"]["comm"], fleet[2].workload.1.as_str());
        assert_eq!(event["node"]["data"]["node"], "gamma");
    }
    // Each node's histogram of its workload's run times, asked of the fleet, is the one
    // its node gives of its own part, bucket for bucket.
    let histogram =
        "histogram(field: \"duration_ns\", where: $where) { count sum buckets { low count } }";
    for (node, n) in fleet.iter().zip(runs) {
        let exits = json!([
            { "field": "kind", "value": "exit" },
            { "field": "comm", "value": node.workload.1 },
        ]);
        let ask = |server: &Server, id: &str, conditions: &Value| {
            server.query(
                &format!("query($id: ID!, $where: [Condition!]) {{ session(id: $id) {{ {histogram} }} }}"),
                json!({ "id": id, "where": conditions }),
            )["session"]["histogram"]
                .clone()
        };
        let mut of_node = exits.clone();
        of_node
            .as_array_mut()
            .unwrap()
            .push(json!({ "field": "node", "value": node.name }));
        let fleet_view = ask(&fleet[0].server, &id, &of_node);
        let local = part(&session, node.name)["localSessionId"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            fleet_view,
            ask(&node.server, &local, &exits),
            "{}",
            node.name
        );
        assert_eq!(fleet_view[0]["count"], n, "{fleet_view}");
    }
    // What the fleet database holds, asked of PostgreSQL itself.
    let rows = postgres.psql(&format!(
        "SELECT node, count(*) FROM fleet_events WHERE session_id = '{id}' AND kind = 'exec' \
         GROUP BY node ORDER BY node"
    ));
    assert_eq!(rows, "alpha|20\nbeta|30\ngamma|40");
}

#[test]
fn a_node_killed_mid_window_reads_interrupted_and_the_others_complete() {
    let Some(postgres) =
        database("a_node_killed_mid_window_reads_interrupted_and_the_others_complete")
    else {
        return;
    };
    let mut fleet = nodes(&postgres, &["north", "south", "west"]);
    let id = start_fleet_session(&fleet[0].server, 6);
    wait_running(&fleet[0].server, &id, &["north", "south", "west"]);
    fleet[2].server.kill();
    for (node, n) in fleet.iter().zip([20, 30]) {
        node.cgroup.run(&node.workload.0, n);
    }
    let session = wait_ended(&fleet[0].server, &id, Duration::from_secs(40));
    assert_eq!(session["status"], "INTERRUPTED", "{session}");
    assert_eq!(part(&session, "north")["status"], "COMPLETED", "{session}");
    assert_eq!(part(&session, "south")["status"], "COMPLETED", "{session}");
    let west = part(&session, "west");
    assert_eq!(west["status"], "INTERRUPTED", "{session}");
    assert_eq!(
        west["error"], "the node stopped answering while its part ran",
        "{session}"
    );
    assert_eq!(
        by_node(&exec_rows(&fleet[1].server, &id)),
        [("north".to_string(), 20), ("south".to_string(), 30)]
    );

    // A restarted node marks the part it had been running INTERRUPTED at once, with the
    // reason, and takes part in the next fleet session.
    fleet[2].restart(&postgres);
    let next = start_fleet_session(&fleet[2].server, 3);
    wait_running(&fleet[2].server, &next, &["north", "south", "west"]);
    fleet[2].cgroup.run(&fleet[2].workload.0, 40);
    let session = wait_ended(&fleet[2].server, &next, Duration::from_secs(30));
    assert_eq!(session["status"], "COMPLETED", "{session}");
    assert_eq!(part(&session, "west")["eventCount"], 81, "{session}");

    // Retention: a node that joins with `max_age_secs = 1` deletes both ended fleet
    // sessions, with every node's events, at once (and every minute after).
    std::thread::sleep(Duration::from_millis(1500));
    let held = "SELECT (SELECT count(*) FROM fleet_sessions) || '/' || \
                (SELECT count(*) FROM fleet_parts) || '/' || (SELECT count(*) FROM fleet_events)";
    assert_ne!(postgres.psql(held), "0/0/0");
    fleet[0].config = "[retention]\nmax_age_secs = 1\n".to_string();
    fleet[0].server.stop();
    fleet[0].restart(&postgres);
    postgres.wait_for(held, "0/0/0", Duration::from_secs(10));
}

#[test]
fn fleet_input_errors_have_codes() {
    if !root_or_skip("fleet_input_errors_have_codes") {
        return;
    }
    // A server in no fleet refuses a fleet session with a code, and starts nothing.
    let alone = Server::start("fleet-alone", None);
    let (code, message) = alone.error(
        "mutation { startSession(input: {tracker: \"process\", durationSecs: 2, nodes: [\"*\"]}) { id } }",
        json!({}),
        None,
    );
    assert_eq!(code, "NO_FLEET", "{message}");
    let Some(postgres) = Postgres::start_or_skip("fleet_input_errors_have_codes") else {
        return;
    };
    let fleet = nodes(&postgres, &["solo"]);
    let server = &fleet[0].server;
    for (input, expected) in [
        (
            json!({"tracker": "process", "durationSecs": 2, "nodes": ["bad name"]}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"tracker": "process", "durationSecs": 2, "nodes": vec!["n"; 1025]}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"tracker": "nope", "durationSecs": 2, "nodes": ["*"]}),
            "UNKNOWN_TRACKER",
        ),
        (
            json!({"tracker": "process", "durationSecs": 0, "nodes": ["*"]}),
            "BAD_DURATION",
        ),
        (
            json!({"tracker": "process", "durationSecs": 2, "nodes": ["*"], "config": {"ringbuf_bytes": 3}}),
            "BAD_CONFIG",
        ),
    ] {
        let (code, message) = server.error(
            "mutation($input: StartSessionInput!) { startSession(input: $input) { id } }",
            json!({ "input": input }),
            None,
        );
        assert_eq!(code, expected, "{input}: {message}");
    }
    assert_eq!(postgres.psql("SELECT count(*) FROM fleet_sessions"), "0");
    let (code, _) = server.error(
        "query { session(id: \"fleet-0000\") { id } }",
        json!({}),
        None,
    );
    assert_eq!(code, "NOT_FOUND");
    // A node named but never heard from reads NO_ANSWER once the window has ended.
    let data = server.query(
        "mutation { startSession(input: {tracker: \"process\", durationSecs: 1, nodes: [\"solo\", \"ghost\"]}) { id } }",
        json!({}),
    );
    let id = data["startSession"]["id"].as_str().unwrap().to_string();
    let session = wait_ended(server, &id, Duration::from_secs(20));
    assert_eq!(part(&session, "solo")["status"], "COMPLETED", "{session}");
    assert_eq!(part(&session, "ghost")["status"], "NO_ANSWER", "{session}");
    assert_eq!(session["status"], "INTERRUPTED", "{session}");
    assert_eq!(
        server.query("{ health { node } }", json!({}))["health"]["node"],
        "solo"
    );
    assert_eq!(
        alone.query("{ health { node } }", json!({}))["health"]["node"],
        Value::Null
    );
    // A running fleet session is not deleted; stopped, it ends STOPPED within a look or
    // two of its node, with the events its part recorded, and is deleted with them.
    let long = start_fleet_session(server, 60);
    wait_running(server, &long, &["solo"]);
    let delete = "mutation($id: ID!) { deleteSession(id: $id) }";
    let (code, _) = server.error(delete, json!({ "id": long }), None);
    assert_eq!(code, "SESSION_RUNNING");
    fleet[0].cgroup.run(&fleet[0].workload.0, 5);
    assert_eq!(server.stop_session(&long), "RUNNING");
    let stopped = wait_ended(server, &long, Duration::from_secs(10));
    assert_eq!(stopped["status"], "STOPPED", "{stopped}");
    // A fleet session has no one node; its part, a session of the node's own, has.
    let local = part(&stopped, "solo")["localSessionId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(server.session(&long, "node")["node"], Value::Null);
    assert_eq!(server.session(&local, "node")["node"], "solo");
    assert_eq!(part(&stopped, "solo")["eventCount"], 11, "{stopped}");
    let held = format!("SELECT count(*) FROM fleet_events WHERE session_id = '{long}'");
    assert_eq!(postgres.psql(&held), "11");
    assert_eq!(
        server.query(delete, json!({ "id": long }))["deleteSession"],
        true
    );
    assert_eq!(
        server.query(delete, json!({ "id": long }))["deleteSession"],
        false
    );
    assert_eq!(postgres.psql(&held), "0");
    // The CLI starts a fleet session and prints each node's part.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eunomia"))
        .args([
            "session", "start", "process", "-d", "1s", "--nodes", "solo", "--wait",
        ])
        .env("EUNOMIA_SERVER", &server.url)
        .env_remove("EUNOMIA_TOKEN")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("status   COMPLETED"), "{printed}");
    assert!(
        printed.contains("node     solo COMPLETED events="),
        "{printed}"
    );
}

#[test]
fn parts_run_through_an_outage_of_the_fleet_database_and_lose_nothing() {
    let Some(postgres) =
        database("parts_run_through_an_outage_of_the_fleet_database_and_lose_nothing")
    else {
        return;
    };
    let fleet = nodes(&postgres, &["east", "delta"]);
    let id = start_fleet_session(&fleet[0].server, 8);
    wait_running(&fleet[0].server, &id, &["east", "delta"]);
    // The database goes away mid-window; the nodes record on into their own stores.
    postgres.stop();
    for (node, n) in fleet.iter().zip([20, 30]) {
        node.cgroup.run(&node.workload.0, n);
    }
    // Longer than a node takes to be called silent, while every node is.
    std::thread::sleep(Duration::from_secs(6));
    postgres.start();
    let session = wait_ended(&fleet[1].server, &id, Duration::from_secs(40));
    assert_eq!(session["status"], "COMPLETED", "{session}");
    for (name, n) in [("east", 20), ("delta", 30)] {
        let part = part(&session, name);
        assert_eq!(part["status"], "COMPLETED", "{part}");
        assert_eq!(part["eventCount"], 2 * n + 1, "{part}");
        assert_eq!(part["lostCount"], 0, "{part}");
    }
    assert_eq!(
        by_node(&exec_rows(&fleet[0].server, &id)),
        [("delta".to_string(), 30), ("east".to_string(), 20)]
    );
}

#[test]
fn a_fleet_question_past_its_time_is_stopped_in_postgresql_too() {
    let Some(postgres) = database("a_fleet_question_past_its_time_is_stopped_in_postgresql_too")
    else {
        return;
    };
    let fleet = nodes_configured(&postgres, &["slow"], "[limits]\nrequest_timeout_secs = 2\n");
    let server = &fleet[0].server;
    let id = start_fleet_session(server, 1);
    let session = wait_ended(server, &id, Duration::from_secs(20));
    assert_eq!(session["status"], "COMPLETED", "{session}");
    // Three million events of another node: a P99 over them takes PostgreSQL seconds on
    // a small machine, past this server's request time of 2 s.
    postgres.psql(&format!(
        "INSERT INTO fleet_events (session_id, node, local_id, ts, tracker, kind, pid, ppid, \
         comm, cgroup_id, data) SELECT '{id}', 'synthetic', g, g, 'process', 'exit', 1, 1, \
         'synthetic', 0, jsonb_build_object('duration_ns', g % 1000003) \
         FROM generate_series(1, 3000000) g"
    ));
    let (code, message) = server.error(
        r#"query($id: ID!) { session(id: $id) { aggregate(op: P99, field: "duration_ns", groupBy: ["comm"]) { keys value } } }"#,
        json!({ "id": id }),
        None,
    );
    assert_eq!(code, "QUERY_TOO_COSTLY", "{message}");
    // PostgreSQL stopped it itself: nothing of it runs on once the caller has its answer.
    let active = "SELECT count(*) FROM pg_stat_activity \
                  WHERE state = 'active' AND query LIKE '%percentile_disc%' \
                  AND query NOT LIKE '%pg_stat_activity%'";
    assert_eq!(postgres.psql(active), "0");
}
