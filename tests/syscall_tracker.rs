//! The syscall tracker against the truth (root): a program whose calls are known exactly,
//! counted in both modes and compared with `strace -f -c`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::server::Server;
use common::{root_or_skip, start_tracker, syscall_load, Collector};
use eunomia::event::{Record, Value};
use eunomia::tracker_manager::{Mode, TrackerConfig};
use serde_json::json;

const GETPPIDS: u64 = 20_000;
const OPENS: u64 = 37;
const FAILED_OPENS: u64 = 5;
const SETTLE: Duration = Duration::from_secs(5);

fn run_load(path: &std::path::Path) {
    let status = Command::new(path)
        .args([GETPPIDS, OPENS, FAILED_OPENS].map(|n| n.to_string()))
        .status()
        .unwrap();
    assert!(status.success());
}

/// Per syscall name: (calls, errors), from `strace -f -c` of one run of `path args`.
fn strace_counts(path: &std::path::Path, args: &[u64]) -> BTreeMap<String, (u64, u64)> {
    let out = std::env::temp_dir().join(format!("eunomia-strace-{}", std::process::id()));
    let status = Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(&out)
        .arg(path)
        .args(args.iter().map(|n| n.to_string()))
        .status()
        .expect("strace runs (make deps installs it)");
    assert!(status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    // Rows: % time, seconds, usecs/call, calls, [errors], syscall.
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let name = *cols.last()?;
            let calls = cols.get(3)?.parse().ok()?;
            let errors = if cols.len() == 6 {
                cols[4].parse().ok()?
            } else {
                0
            };
            (name != "total").then(|| (name.to_string(), (calls, errors)))
        })
        .collect()
}

/// Per syscall name: (calls, errors, total latency) the tracker reported for `comm`.
fn traced_counts(
    mode: Mode,
    latency: Option<bool>,
    path: &std::path::Path,
    comm: &str,
) -> BTreeMap<String, (u64, u64, u64)> {
    let collector = Collector::default();
    let config = TrackerConfig {
        comm: Some(comm.to_string()),
        mode: Some(mode),
        latency,
        interval_ms: (mode == Mode::Aggregate).then_some(100),
        ringbuf_bytes: 16 << 20,
        ..TrackerConfig::default()
    };
    let handle = start_tracker("syscall", config, collector.clone());
    run_load(path);
    if mode == Mode::Stream {
        collector.wait_for(SETTLE, |events| events.len() as u64 >= GETPPIDS + 2 * OPENS);
    } else {
        // Several intervals pass, so the sums below cover more than one drain.
        std::thread::sleep(Duration::from_millis(350));
    }
    let stats = handle.stop().unwrap();
    assert_eq!(stats.lost(), 0, "{stats:?}");

    let events = collector.events();
    assert_eq!(stats.seen, events.len() as u64);
    let expected_kind = if mode == Mode::Stream {
        "call"
    } else {
        "totals"
    };
    let timed = latency.unwrap_or(mode == Mode::Stream);
    let mut counts: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for event in &events {
        assert_eq!(event.get("comm"), Some(Value::Str(comm)), "{event:?}");
        assert_eq!(event.kind(), expected_kind);
        let Some(Value::Str(name)) = event.get("syscall") else {
            panic!("no syscall name: {event:?}")
        };
        let num = |field| match event.get(field) {
            Some(Value::U64(n)) => n,
            Some(Value::Null) if field == "latency_ns" && !timed => 0,
            other => panic!("{field}: {other:?}"),
        };
        let row = counts.entry(name.to_string()).or_default();
        row.0 += num("count");
        row.1 += num("errors");
        row.2 += num("latency_ns");
    }
    counts
}

fn counts_exactly(mode: Mode, latency: Option<bool>, tag: &str) {
    let (path, comm) = syscall_load(tag);
    let traced = traced_counts(mode, latency, &path, &comm);
    assert_eq!(traced["getppid"].0, GETPPIDS, "{traced:?}");
    assert_eq!(traced["getppid"].1, 0);
    assert_eq!(
        (traced["openat"].0, traced["openat"].1),
        (OPENS + FAILED_OPENS, FAILED_OPENS),
        "{traced:?}"
    );
    assert_eq!(traced["close"].0, OPENS);
    // Latency is measured by default in stream mode only, as syscount's -L.
    let timed = latency.unwrap_or(mode == Mode::Stream);
    assert_eq!(traced["getppid"].2 > 0, timed, "{traced:?}");

    // strace sees the same calls, the execve included (it belongs to the program it
    // starts, so the comm filter applies at its exit). Its -c table leaves out the
    // exit_group, which never returns; the tracker counts it, as the call was made.
    let mut strace = strace_counts(&path, &[GETPPIDS, OPENS, FAILED_OPENS]);
    assert_eq!(strace["getppid"], (GETPPIDS, 0), "{strace:?}");
    assert_eq!(strace["execve"], (1, 0), "{strace:?}");
    assert_eq!(
        strace.insert("exit_group".into(), (1, 0)),
        None,
        "{strace:?}"
    );
    let ours: BTreeMap<String, (u64, u64)> = traced
        .iter()
        .map(|(name, &(calls, errors, _))| (name.clone(), (calls, errors)))
        .collect();
    assert_eq!(ours, strace);
}

#[test]
fn aggregate_mode_counts_exactly_and_agrees_with_strace() {
    if root_or_skip("aggregate_mode_counts_exactly_and_agrees_with_strace") {
        counts_exactly(Mode::Aggregate, None, "sa");
    }
}

#[test]
fn aggregate_mode_with_latency_counts_exactly() {
    if root_or_skip("aggregate_mode_with_latency_counts_exactly") {
        counts_exactly(Mode::Aggregate, Some(true), "sl");
    }
}

#[test]
fn stream_mode_counts_exactly_and_agrees_with_strace() {
    if root_or_skip("stream_mode_counts_exactly_and_agrees_with_strace") {
        counts_exactly(Mode::Stream, None, "ss");
    }
}

/// In both modes and both stores, `aggregate(groupBy: ["syscall"], op: SUM, field: "count")`
/// is the number of calls.
#[test]
fn sessions_sum_counts_per_syscall() {
    if !root_or_skip("sessions_sum_counts_per_syscall") {
        return;
    }
    let server = Server::start("syscall", None);
    for (mode, store, tag) in [
        ("aggregate", "SQLITE", "qa"),
        ("stream", "SQLITE", "qs"),
        ("aggregate", "MEMORY", "ma"),
        ("stream", "MEMORY", "ms"),
    ] {
        let (path, comm) = syscall_load(tag);
        let id = server.start_session(json!({
            "tracker": "syscall",
            "durationSecs": 2,
            "store": store,
            "filter": { "comm": comm },
            "config": { "mode": mode, "interval_ms": 200 },
        }));
        run_load(&path);
        assert_eq!(server.wait_ended(&id, Duration::from_secs(10)), "COMPLETED");
        let session = server.session(
            &id,
            r#"lostCount
               calls: aggregate(groupBy: ["syscall"], op: SUM, field: "count",
                                where: [{field: "syscall", value: "getppid"}]) { keys value }
               errors: aggregate(groupBy: ["syscall"], op: SUM, field: "errors",
                                 where: [{field: "syscall", value: "openat"}]) { keys value }"#,
        );
        let what = format!("{mode} {store}: {session}");
        assert_eq!(session["lostCount"], 0, "{what}");
        assert_eq!(
            session["calls"],
            json!([{ "keys": ["getppid"], "value": GETPPIDS as f64 }]),
            "{what}"
        );
        assert_eq!(
            session["errors"],
            json!([{ "keys": ["openat"], "value": FAILED_OPENS as f64 }]),
            "{what}"
        );
    }
}

#[test]
fn stream_mode_without_latency_counts_exactly() {
    if root_or_skip("stream_mode_without_latency_counts_exactly") {
        counts_exactly(Mode::Stream, Some(false), "sn");
    }
}

/// A program exec'd by a forked shell, traced with no comm filter: from its execve on,
/// its calls are under its own comm, never the shell's, in both modes and both stores.
#[test]
fn an_exec_d_program_s_calls_are_under_its_own_comm() {
    if !root_or_skip("an_exec_d_program_s_calls_are_under_its_own_comm") {
        return;
    }
    const CALLS: u64 = 4321;
    let server = Server::start("syscall-exec", None);
    let (path, comm) = syscall_load("sx");
    let mut expected = strace_counts(&path, &[CALLS]);
    assert_eq!(expected["getppid"], (CALLS, 0));
    expected.insert("exit_group".into(), (1, 0));
    for (mode, store) in [
        ("aggregate", "SQLITE"),
        ("aggregate", "MEMORY"),
        ("stream", "SQLITE"),
        ("stream", "MEMORY"),
    ] {
        let id = server.start_session(json!({
            "tracker": "syscall",
            "durationSecs": 120,
            "store": store,
            "config": { "mode": mode, "interval_ms": 100, "ringbuf_bytes": 16 << 20 },
        }));
        // The shell forks a child that execs the load, and says the child's pid.
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{} {CALLS} & echo $!; wait $!", path.display()))
            .output()
            .unwrap();
        assert!(out.status.success());
        let child: u32 = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(server.stop_session(&id), "STOPPED");
        let session = server.session(
            &id,
            &format!(
                r#"lostCount
                   aggregate(groupBy: ["comm", "syscall"], op: SUM, field: "count",
                             where: [{{field: "pid", value: "{child}"}}]) {{ keys value }}"#
            ),
        );
        let what = format!("{mode} {store}: {session}");
        assert_eq!(session["lostCount"], 0, "{what}");
        let calls: BTreeMap<(String, String), u64> = session["aggregate"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                let key = |i: usize| row["keys"][i].as_str().unwrap().to_string();
                ((key(0), key(1)), row["value"].as_f64().unwrap() as u64)
            })
            .collect();
        // From its execve on, the child's calls are the program's: what strace sees of
        // it, and the exit_group that strace's table leaves out.
        let ours: BTreeMap<String, (u64, u64)> = calls
            .iter()
            .filter(|((row_comm, _), _)| *row_comm == comm)
            .map(|((_, syscall), &n)| (syscall.clone(), (n, 0)))
            .collect();
        assert_eq!(ours, expected, "{what}");
        // Before the exec the child was the shell (its redirections, its signal set-up),
        // and nothing else is: none of the program's own calls is under the shell's comm.
        for ((row_comm, syscall), n) in &calls {
            assert!(
                *row_comm == comm
                    || (row_comm == "sh"
                        && !["getppid", "execve", "exit_group"].contains(&syscall.as_str())),
                "{row_comm} {syscall} = {n}: {what}"
            );
        }
    }
}

#[test]
fn mode_is_checked() {
    if !root_or_skip("mode_is_checked") {
        return;
    }
    let server = Server::start("syscall-mode", None);
    let (code, message) = server.error(
        "mutation($input: StartSessionInput!) { startSession(input: $input) { id } }",
        json!({ "input": { "tracker": "syscall", "durationSecs": 1, "config": { "mode": "firehose" } } }),
        None,
    );
    assert_eq!(code, "BAD_CONFIG");
    assert!(message.contains("unknown variant `firehose`"), "{message}");
}

/// Generations switch every 10 ms while a process makes 2 M calls: no call is lost or
/// counted twice across the switches.
#[test]
fn aggregate_drains_mid_run_lose_nothing() {
    if !root_or_skip("aggregate_drains_mid_run_lose_nothing") {
        return;
    }
    const CALLS: u64 = 2_000_000;
    let (path, comm) = syscall_load("sd");
    let collector = Collector::default();
    let config = TrackerConfig {
        comm: Some(comm),
        interval_ms: Some(10),
        ..TrackerConfig::default()
    };
    let handle = start_tracker("syscall", config, collector.clone());
    let status = Command::new(&path).arg(CALLS.to_string()).status().unwrap();
    assert!(status.success());
    let stats = handle.stop().unwrap();
    assert_eq!(stats.lost(), 0, "{stats:?}");
    let getppid: Vec<_> = collector
        .events()
        .into_iter()
        .filter(|e| e.get("syscall") == Some(Value::Str("getppid")))
        .collect();
    let total: u64 = getppid
        .iter()
        .map(|e| match e.get("count") {
            Some(Value::U64(n)) => n,
            other => panic!("count: {other:?}"),
        })
        .sum();
    assert_eq!(total, CALLS);
    assert!(
        getppid.len() >= 5,
        "the run spans several drains: {} rows",
        getppid.len()
    );
}
