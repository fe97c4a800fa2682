//! `eunomia session ...` against a real server with tokens (root): what the commands print
//! is what the API holds and what the programs did, and refusals exit as the CLI's do.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::server::Server;
use common::{root_or_skip, run_copies, stderr, unique_binary, TempDir};
use serde_json::{json, Value};

const OPERATOR: &str = "operator-secret-0123456789";
const VIEWER: &str = "viewer-secret-0123456789";

fn auth_config() -> String {
    format!(
        "[[tokens]]\nname = \"alice\"\nrole = \"operator\"\ntoken = \"{OPERATOR}\"\n\n\
         [[tokens]]\nname = \"bob\"\nrole = \"viewer\"\ntoken = \"{VIEWER}\"\n"
    )
}

/// `eunomia session <args>` against `server`, with `env` (EUNOMIA_TOKEN unless given
/// there is unset).
fn session_command(server: &Server, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eunomia"));
    command
        .arg("session")
        .args(args)
        .env("EUNOMIA_SERVER", &server.url)
        .env_remove("EUNOMIA_TOKEN")
        .envs(env.iter().copied());
    command
}

fn session(server: &Server, args: &[&str], env: &[(&str, &str)]) -> Output {
    session_command(server, args, env).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The command succeeded; its stdout.
fn ok(out: Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout(&out)
}

/// The command failed with `code` and one line on stderr, printing nothing; that line.
fn failed(out: Output, code: i32) -> String {
    assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    stderr(&out).trim_end().to_string()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// Waits until `id` has `n` live subscribers (a tail has subscribed).
fn wait_subscribers(server: &Server, id: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let data = server.query_as(
            "query($id: ID!) { session(id: $id) { subscribers } }",
            json!({ "id": id }),
            Some(OPERATOR),
        );
        if data["session"]["subscribers"] == n {
            return;
        }
        assert!(Instant::now() < deadline, "{n} subscribers never came");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a command to end by itself; its output (small: it stays in the pipe).
fn wait_ended(mut child: Child, within: Duration) -> Output {
    let deadline = Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the tail did not end within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A session's life from the command line: started, tailed, shown, listed, stopped and
/// deleted, every count what the programs did and every event as the API has it.
#[test]
fn sessions_from_the_command_line() {
    if !root_or_skip("sessions_from_the_command_line") {
        return;
    }
    let server = Server::start("remote-cli", Some(&auth_config()));
    let dir = TempDir::new("remote-cli-token");
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{OPERATOR}\n")).unwrap();
    let token_file = token_file.to_str().unwrap();
    let token_env = [("EUNOMIA_TOKEN", OPERATOR)];
    let (binary, comm) = unique_binary("rc");

    let started = ok(session(
        &server,
        &[
            "start",
            "process",
            "-c",
            &comm,
            "-d",
            "60",
            "--store",
            "sqlite",
            "--label",
            "remote",
            "--token-file",
            token_file,
        ],
        &[],
    ));
    let id = started.trim().to_string();
    assert_eq!(started, format!("{id}\n"), "one line: the id");
    let api = server.query_as(
        "query($id: ID!) { session(id: $id) { tracker status store label filter } }",
        json!({ "id": id }),
        Some(OPERATOR),
    );
    assert_eq!(
        api["session"],
        json!({ "tracker": "process", "status": "RUNNING", "store": "SQLITE", "label": "remote",
                "filter": { "pid": null, "comm": comm, "cgroupId": null, "container": null,
                            "containerId": null, "containerName": null, "image": null } })
    );

    // Two tails: one until the session ends, one until Ctrl-C.
    let spawn_tail = |format: &str| {
        session_command(
            &server,
            &["tail", &id, "--where", r#"kind == "exec""#, "-o", format],
            &token_env,
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let to_the_end = spawn_tail("json");
    let interrupted = spawn_tail("csv");
    wait_subscribers(&server, &id, 2);
    run_copies(&binary, 5);

    // The stored events, as JSON Lines: exactly the 5 execs and 5 exits, each the API's
    // event as it is, in order.
    let deadline = Instant::now() + Duration::from_secs(10);
    let printed = loop {
        let printed = json_lines(&ok(session(
            &server,
            &["show", &id, "--events", "-o", "json"],
            &token_env,
        )));
        if printed.len() >= 10 || Instant::now() > deadline {
            break printed;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stored = server.query_as(
        "query($id: ID!) { session(id: $id) { events(first: 100) { edges { node { data } } } } }",
        json!({ "id": id }),
        Some(OPERATOR),
    );
    let stored: Vec<Value> = stored["session"]["events"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["data"].clone())
        .collect();
    assert_eq!(printed, stored);
    let kinds: Vec<&str> = printed
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["exec", "exit"].repeat(5));
    assert!(printed.iter().all(|e| e["comm"] == comm.as_str()));
    let execs: Vec<&Value> = printed.iter().filter(|e| e["kind"] == "exec").collect();
    assert!(execs
        .iter()
        .all(|e| e["filename"] == binary.to_str().unwrap()));

    // The same events through --where and --limit, as CSV and as the text table.
    let csv = ok(session(
        &server,
        &[
            "show",
            &id,
            "--events",
            "--where",
            "kind == exit",
            "--limit",
            "3",
            "-o",
            "csv",
        ],
        &token_env,
    ));
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(
        rows[0].starts_with("tracker,kind,ts,pid,ppid,comm,"),
        "{csv}"
    );
    assert!(
        rows[1..].iter().all(|r| r.starts_with("process,exit,")),
        "{csv}"
    );
    let table = ok(session(
        &server,
        &["show", &id, "--events", "--utc"],
        &token_env,
    ));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 11, "{table}");
    assert_eq!(
        lines[0].split_whitespace().take(5).collect::<Vec<_>>(),
        ["TS", "KIND", "PID", "PPID", "COMM"]
    );
    // The time of day in UTC, as `run --utc` shows it.
    let ts = printed[0]["ts"].as_str().unwrap();
    assert!(lines[1].starts_with(&ts[11..26]), "{} vs {ts}", lines[1]);

    // Groups, computed by the server.
    let groups = ok(session(
        &server,
        &["show", &id, "--group-by", "kind", "-o", "csv"],
        &token_env,
    ));
    let mut groups: Vec<&str> = groups.lines().collect();
    assert_eq!(groups.remove(0), "kind,count");
    groups.sort();
    assert_eq!(groups, ["exec,5", "exit,5"]);
    let longest = ok(session(
        &server,
        &[
            "show",
            &id,
            "--group-by",
            "comm",
            "--op",
            "max",
            "--field",
            "duration_ns",
            "-o",
            "json",
        ],
        &token_env,
    ));
    let max = printed
        .iter()
        .filter_map(|e| e["duration_ns"].as_i64())
        .max()
        .unwrap();
    assert_eq!(
        json_lines(&longest),
        [json!({ "comm": comm, "count": 10, "max_duration_ns": max })]
    );

    // Ctrl-C ends a tail at once, with what it printed: the 5 execs.
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(interrupted.id() as i32, libc::SIGINT) };
    let out = wait_ended(interrupted, Duration::from_secs(5));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let csv = stdout(&out);
    assert_eq!(csv.lines().count(), 6, "{csv}");
    assert!(
        csv.lines().skip(1).all(|l| l.starts_with("process,exec,")),
        "{csv}"
    );

    // Stopping prints the final counts; the other tail then ends by itself with exactly
    // the 5 execs.
    let stopped = json_lines(&ok(session(
        &server,
        &["stop", &id, "-o", "json"],
        &token_env,
    )));
    assert_eq!(stopped.len(), 1);
    assert_eq!(
        (
            &stopped[0]["id"],
            &stopped[0]["status"],
            &stopped[0]["eventCount"],
            &stopped[0]["lostCount"]
        ),
        (&json!(id), &json!("STOPPED"), &json!(10), &json!(0))
    );
    let out = wait_ended(to_the_end, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let tailed = json_lines(&stdout(&out));
    let stored_execs: Vec<&Value> = stored.iter().filter(|e| e["kind"] == "exec").collect();
    assert_eq!(tailed.iter().collect::<Vec<_>>(), stored_execs);
    // With --from-start, an ended session's tail prints what it stored, and ends.
    let replayed = json_lines(&ok(session(
        &server,
        &[
            "tail",
            &id,
            "--from-start",
            "--where",
            r#"kind == "exec""#,
            "-o",
            "json",
        ],
        &token_env,
    )));
    assert_eq!(replayed.iter().collect::<Vec<_>>(), stored_execs);

    let shown = ok(session(&server, &["show", &id], &token_env));
    assert!(shown.lines().any(|l| l == "status   STOPPED"), "{shown}");
    assert!(shown.lines().any(|l| l == "events   10"), "{shown}");
    assert!(shown.lines().any(|l| l == "lost     0"), "{shown}");

    // The list: a text table, and the API's objects as JSON Lines.
    let listed = ok(session(&server, &["list"], &token_env));
    let mut lines = listed.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["ID", "TRACKER", "LABEL", "STATUS", "STARTED", "EVENTS", "LOST"]
    );
    let row: Vec<&str> = lines
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{listed}"))
        .split_whitespace()
        .collect();
    // The started column is a local date and time: two words.
    assert_eq!(
        (row[1], row[2], row[3], row[6], row[7]),
        ("process", "remote", "STOPPED", "10", "0"),
        "{listed}"
    );
    let listed = json_lines(&ok(session(&server, &["list", "-o", "json"], &token_env)));
    let mine = listed.iter().find(|s| s["id"] == id.as_str()).unwrap();
    assert_eq!(
        (&mine["status"], &mine["eventCount"]),
        (&json!("STOPPED"), &json!(10))
    );
    let running = ok(session(
        &server,
        &["list", "--status", "running", "-o", "json"],
        &token_env,
    ));
    assert_eq!(running, "");

    // Deleted, it is gone: show and delete say NOT_FOUND with exit code 2.
    assert_eq!(ok(session(&server, &["delete", &id], &token_env)), "");
    for args in [["show", id.as_str()], ["delete", id.as_str()]] {
        assert_eq!(
            failed(session(&server, &args, &token_env), 2),
            format!("error: no session with id `{id}` (NOT_FOUND)")
        );
    }

    // --wait: one command for a whole window, ending with its final counts.
    let waiting = session_command(
        &server,
        &[
            "start", "process", "-c", &comm, "-d", "2", "--store", "memory", "--wait", "-o", "json",
        ],
        &token_env,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // The programs run once it traces (a session is listed from before it attaches).
    let deadline = Instant::now() + Duration::from_secs(10);
    let attached = "{ sessions(status: RUNNING) { edges { node { programIds } } } }";
    while server.query_as(attached, json!({}), Some(OPERATOR))["sessions"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .all(|edge| edge["node"]["programIds"].as_array().unwrap().is_empty())
    {
        assert!(Instant::now() < deadline, "the --wait session never traced");
        std::thread::sleep(Duration::from_millis(10));
    }
    run_copies(&binary, 3);
    let out = wait_ended(waiting, Duration::from_secs(15));
    let ended = json_lines(&ok(out));
    assert_eq!(
        (
            &ended[0]["status"],
            &ended[0]["store"],
            &ended[0]["eventCount"],
            &ended[0]["lostCount"]
        ),
        (&json!("COMPLETED"), &json!("MEMORY"), &json!(6), &json!(0))
    );
}

/// Without a token, with a wrong one, or a viewer's for a mutation: one line and exit
/// code 2, over HTTP and the websocket alike; the server's limits are exit code 2 as
/// well, and a server that is not there exit code 1.
#[test]
fn refusals_and_failures_exit_as_the_cli_does() {
    if !root_or_skip("refusals_and_failures_exit_as_the_cli_does") {
        return;
    }
    let server = Server::start("remote-cli-refusals", Some(&auth_config()));
    let dir = TempDir::new("remote-cli-refusals");
    let wrong = dir.join("wrong");
    std::fs::write(&wrong, "not-the-token-0123456789").unwrap();
    let wrong = wrong.to_str().unwrap();
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").unwrap();

    assert_eq!(
        failed(session(&server, &["list"], &[]), 2),
        "error: no credentials: send `Authorization: Bearer <token>` (UNAUTHENTICATED); \
         give the token in EUNOMIA_TOKEN or a --token-file"
    );
    assert_eq!(
        failed(session(&server, &["list", "--token-file", wrong], &[]), 2),
        "error: the bearer token is not valid (UNAUTHENTICATED)"
    );
    assert_eq!(
        failed(
            session(
                &server,
                &["start", "process", "-d", "5"],
                &[("EUNOMIA_TOKEN", VIEWER)]
            ),
            2
        ),
        "error: this token is a viewer's: mutations need an operator token (FORBIDDEN)"
    );
    let line = failed(
        session(
            &server,
            &["list", "--token-file", empty.to_str().unwrap()],
            &[],
        ),
        2,
    );
    assert!(line.ends_with("holds no token"), "{line}");
    let line = failed(session(&server, &["list", "--token", OPERATOR], &[]), 2);
    assert!(line.contains("unexpected argument '--token'"), "{line}");

    // `tail` is refused before it opens a websocket.
    let id = server.query_as(
        r#"mutation { startSession(input: {tracker: "process", durationSecs: 30}) { id } }"#,
        json!({}),
        Some(OPERATOR),
    )["startSession"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let viewer = [("EUNOMIA_TOKEN", VIEWER)];
    assert_eq!(
        failed(
            session(&server, &["tail", &id, "--token-file", wrong], &[]),
            2
        ),
        "error: the bearer token is not valid (UNAUTHENTICATED)"
    );
    // Bad questions are the server's to judge, and exit 2 with its code.
    let operator = [("EUNOMIA_TOKEN", OPERATOR)];
    let line = failed(
        session(&server, &["start", "process", "-d", "2h"], &operator),
        2,
    );
    assert!(line.ends_with("(BAD_DURATION)"), "{line}");
    let line = failed(
        session(
            &server,
            &["start", "process", "-d", "5", "--opt", "nope=1"],
            &operator,
        ),
        2,
    );
    assert!(line.ends_with("(BAD_CONFIG)"), "{line}");
    let line = failed(
        session(
            &server,
            &[
                "show",
                &id,
                "--group-by",
                "comm",
                "--op",
                "p99",
                "--field",
                "comm",
            ],
            &operator,
        ),
        2,
    );
    assert!(line.contains("numeric"), "{line}");
    let line = failed(
        session(
            &server,
            &["show", &id, "--events", "--where", "nope == 1"],
            &operator,
        ),
        2,
    );
    assert!(line.starts_with("error: unknown field `nope`"), "{line}");
    // A viewer may watch.
    let tail = session_command(&server, &["tail", &id], &viewer)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_subscribers(&server, &id, 1);
    server.query_as(
        "mutation($id: ID!) { stopSession(id: $id) { status } }",
        json!({ "id": id }),
        Some(OPERATOR),
    );
    let out = wait_ended(tail, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // An ended session has nothing to tail.
    assert_eq!(
        failed(session(&server, &["tail", &id], &viewer), 2),
        format!("error: session `{id}` is not running (SESSION_ENDED)")
    );

    // Nobody listens on port 1.
    assert_eq!(
        failed(
            session(
                &server,
                &["list", "--server", "http://127.0.0.1:1"],
                &operator
            ),
            1
        ),
        "error: cannot reach http://127.0.0.1:1/graphql: Connection refused (os error 111)"
    );
}
