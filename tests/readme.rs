//! The README's examples run against the real binary and server (root), so that the
//! documentation and the program cannot drift apart: every GraphQL operation in it
//! validates against the schema (and the session queries answer without an error), every
//! `$ eunomia run` line and pipeline runs and exits 0, and the JSON Lines example has the
//! catalog's field names in the printer's order.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::root_or_skip;
use common::server::{ws_next, ws_subscribe, Server, Ws};
use eunomia::trackers::find_tracker;
use serde_json::{json, Value};

const README: &str = include_str!("../README.md");

/// The bodies of the README's code blocks in `language`.
fn blocks(language: &str) -> Vec<String> {
    let fence = format!("```{language}");
    let mut found = Vec::new();
    let mut current: Option<String> = None;
    for line in README.lines() {
        match &mut current {
            None if line.trim_end() == fence => current = Some(String::new()),
            Some(body) if line.starts_with("```") => {
                found.push(std::mem::take(body));
                current = None;
            }
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    found
}

/// A block's operations: each starts at the beginning of a line with an operation
/// keyword or `{`; the lines after it, indented or closing, belong to it.
fn operations(block: &str) -> Vec<String> {
    let mut ops: Vec<String> = Vec::new();
    for line in block.lines() {
        let starts = ["query", "mutation", "subscription", "{"]
            .iter()
            .any(|k| line.starts_with(k));
        if starts || ops.is_empty() {
            ops.push(String::new());
        }
        let op = ops.last_mut().unwrap();
        op.push_str(line);
        op.push('\n');
    }
    ops
}

/// Error codes that mean the document itself is wrong.
fn document_errors(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            let code = e["extensions"]["code"].as_str().unwrap_or("");
            code == "GRAPHQL_PARSE_FAILED" || code == "GRAPHQL_VALIDATION_FAILED"
        })
        .map(|e| e["message"].to_string())
        .collect()
}

/// Ends the operation `id` on the connection (a no-op for one that has ended).
fn ws_complete(ws: &mut Ws, id: &str) {
    ws.send(tungstenite::Message::text(
        json!({ "id": id, "type": "complete" }).to_string(),
    ))
    .unwrap();
}

#[test]
fn graphql_examples_validate_and_session_queries_answer() {
    if !root_or_skip("graphql_examples_validate_and_session_queries_answer") {
        return;
    }
    let server = Server::start("readme", None);
    // Finished sessions of each store, of the tracker a block starts (else process), for
    // the examples that read one.
    let mut sessions: HashMap<String, Vec<String>> = HashMap::new();
    let mut ended = |tracker: &str| -> Vec<String> {
        sessions
            .entry(tracker.to_string())
            .or_insert_with(|| {
                ["SQLITE", "MEMORY"]
                    .iter()
                    .map(|store| {
                        let id = server.start_session(
                            json!({ "tracker": tracker, "durationSecs": 1, "store": store }),
                        );
                        common::run_copies(std::path::Path::new("/bin/true"), 3);
                        assert_eq!(server.wait_ended(&id, Duration::from_secs(10)), "COMPLETED");
                        id
                    })
                    .collect()
            })
            .clone()
    };
    let ops: Vec<(Vec<String>, String)> = blocks("graphql")
        .iter()
        .flat_map(|b| {
            let tracker = b
                .split_once("tracker: \"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map_or("process", |(name, _)| name);
            let ids = ended(tracker);
            operations(b).into_iter().map(move |op| (ids.clone(), op))
        })
        .collect();
    assert!(ops.len() >= 10, "{ops:?}");
    let mut answered = 0;
    let mut ws = server.ws_connect(None).unwrap();
    for (ids, op) in &ops {
        for id in ids {
            let text = op.replace("\"...\"", &format!("\"{id}\""));
            if text.starts_with("subscription") {
                // Answered at once on an ended session; a trace gets its first exec.
                ws_subscribe(&mut ws, id, &text, json!({ "id": id }));
                common::run_copies(std::path::Path::new("/bin/true"), 1);
                let message = loop {
                    let message = ws_next(&mut ws);
                    if message["id"] == id.as_str() {
                        break message;
                    }
                };
                let payload = &message["payload"];
                let errors = if payload.is_array() {
                    json!({ "errors": payload })
                } else {
                    payload.clone()
                };
                assert_eq!(document_errors(&errors), Vec::<String>::new(), "{text}");
                ws_complete(&mut ws, id);
                continue;
            }
            let (_, body) = server.post(&text, json!({ "id": id }), None);
            assert_eq!(document_errors(&body), Vec::<String>::new(), "{text}");
            // A question about the session must be answered, not only well formed.
            let about_session = text.contains("session(id:")
                && !text.starts_with("mutation")
                && !text.starts_with("subscription");
            if about_session {
                assert!(body.get("errors").is_none(), "{text}: {body}");
                answered += 1;
            }
        }
    }
    assert!(answered >= 4, "only {answered} session queries ran");
}

/// The README's `$ eunomia run` lines (with their `\` continuations), each made to end
/// within a second: durations become 1 s, and a `--pid` names a live process.
fn run_examples(pid: u32) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    for block in blocks("sh") {
        let mut lines = block.lines();
        while let Some(line) = lines.next() {
            let Some(mut command) = line.strip_prefix("$ eunomia run ").map(str::to_string) else {
                continue;
            };
            while command.trim_end().ends_with('\\') {
                command = command.trim_end().trim_end_matches('\\').to_string();
                command.push_str(lines.next().unwrap_or(""));
            }
            let command = command.split(" # ").next().unwrap().to_string();
            commands.push(example_args(&command, pid));
        }
    }
    commands
}

/// The arguments of `run ARGS` as a shell would split them, with a 1 s duration and
/// `pid` for any `--pid`.
fn example_args(args: &str, pid: u32) -> Vec<String> {
    let mut words = vec!["run".to_string()];
    let mut quote = None;
    let mut word = String::new();
    let mut in_word = false;
    for c in args.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    let mut out: Vec<String> = Vec::new();
    let mut words = words.into_iter();
    while let Some(w) = words.next() {
        match w.as_str() {
            "--duration" | "-d" => {
                words.next();
            }
            "--pid" | "-p" => {
                words.next();
                out.extend([w, pid.to_string()]);
            }
            _ => out.push(w),
        }
    }
    out.extend(["--duration".to_string(), "1".to_string()]);
    out
}

fn run_ok(args: &[String]) {
    let out = Command::new(env!("CARGO_BIN_EXE_eunomia"))
        .args(args)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "eunomia {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn command_line_examples_run() {
    if !root_or_skip("command_line_examples_run") {
        return;
    }
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let examples = run_examples(sleeper.id());
    assert!(examples.len() >= 8, "{examples:?}");
    for args in &examples {
        run_ok(args);
    }
    // The pipelines: the sh block's --pipeline and the chain-spec JSON block.
    let pipelines: Vec<String> = blocks("sh")
        .iter()
        .filter_map(|b| {
            let (_, rest) = b.split_once("--pipeline '")?;
            Some(rest.split_once('\'')?.0.to_string())
        })
        .chain(blocks("json").into_iter().filter(|b| b.starts_with('[')))
        .collect();
    assert_eq!(pipelines.len(), 2, "{pipelines:?}");
    for pipeline in pipelines {
        run_ok(&[
            "run".into(),
            "process".into(),
            "--duration".into(),
            "1".into(),
            "--pipeline".into(),
            pipeline,
        ]);
    }
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
}

/// The keys of a flat JSON object, in the order written (serde_json's map sorts them).
fn object_keys(text: &str) -> Vec<String> {
    serde_json::from_str::<Value>(text).expect("valid JSON");
    let mut keys = Vec::new();
    let mut chars = text.chars().peekable();
    let mut string: Option<String> = None;
    while let Some(c) = chars.next() {
        match (&mut string, c) {
            (Some(s), '\\') => {
                s.push(c);
                s.extend(chars.next());
            }
            (Some(_), '"') => {
                let done = string.take().unwrap();
                if chars.peek() == Some(&':') {
                    keys.push(done);
                }
            }
            (Some(s), c) => s.push(c),
            (None, '"') => string = Some(String::new()),
            (None, _) => {}
        }
    }
    keys
}

#[test]
fn json_lines_example_has_the_catalog_fields() {
    let example = blocks("json")
        .into_iter()
        .find(|b| b.starts_with("{\"tracker\""))
        .expect("a JSON Lines example");
    let keys = object_keys(example.trim());
    let info = find_tracker("process").unwrap().info();
    let mut expected = vec!["tracker", "kind", "ts"];
    expected.extend(
        info.all_fields()
            .map(|f| f.name)
            .filter(|n| !["tracker", "kind", "ts"].contains(n)),
    );
    assert_eq!(keys, expected);
}
