//! The syscall tracker against the truth (root): a program whose calls are known exactly,
//! counted in both modes and compared with `strace -f -c`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::server::Server;
use common::{root_or_skip, start_tracker, strace_counts, syscall_load, Collector};
use eunomia::engine::TrackerConfig;
use eunomia::model::{Record, Value};
use eunomia::trackers::syscall::{Mode, SyscallOptions};
use eunomia::trackers::Event;
use serde_json::json;

const GETPPIDS: u64 = 20_000;
const OPENS: u64 = 37;
const FAILED_OPENS: u64 = 5;
const SETTLE: Duration = Duration::from_secs(5);

/// Runs the load; returns how long it took, from before the fork to after the reap.
fn run_load(path: &std::path::Path) -> Duration {
    let started = Instant::now();
    let status = Command::new(path)
        .args([GETPPIDS, OPENS, FAILED_OPENS].map(|n| n.to_string()))
        .status()
        .unwrap();
    assert!(status.success());
    started.elapsed()
}

/// Per syscall name: (calls, errors, total latency) the tracker reported for `comm`, and
/// the load's wall time.
fn traced_counts(
    mode: Mode,
    latency: Option<bool>,
    path: &std::path::Path,
    comm: &str,
) -> (BTreeMap<String, (u64, u64, u64)>, Duration) {
    let collector = Collector::default();
    let config = TrackerConfig {
        comm: Some(comm.to_string()),
        ringbuf_bytes: 16 << 20,
        ..TrackerConfig::default()
    }
    .with_options(SyscallOptions {
        mode,
        latency,
        interval_ms: 100.try_into().unwrap(),
        ..SyscallOptions::default()
    });
    let handle = start_tracker("syscall", config, collector.clone());
    let wall = run_load(path);
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
    (counts, wall)
}

fn counts_exactly(mode: Mode, latency: Option<bool>, tag: &str) {
    let (path, comm) = syscall_load(tag);
    let (traced, wall) = traced_counts(mode, latency, &path, &comm);
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
    let calls: u64 = traced.values().map(|row| row.0).sum();
    let in_calls = Duration::from_nanos(traced.values().map(|row| row.2).sum());
    if timed {
        // The calls ran one after another inside the load's wall time, and no call
        // takes less than 20 ns: a unit error either way fails here.
        assert!(
            in_calls < wall && in_calls > Duration::from_nanos(20 * calls),
            "{in_calls:?} in {calls} calls within {wall:?}: {traced:?}"
        );
    } else {
        assert_eq!(in_calls, Duration::ZERO, "{traced:?}");
    }

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
/// is the number of calls, and so is a bare COUNT (calls, not records: an aggregate-mode
/// record stands for an interval's calls), per syscall and per comm as strace counts them.
/// Per-call statistics of interval sums are refused in aggregate mode, not in stream mode.
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
        let all_calls = common::calls_made(&path, &[GETPPIDS, OPENS, FAILED_OPENS]);
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
                                 where: [{field: "syscall", value: "openat"}]) { keys value }
               counted: aggregate(groupBy: ["syscall"],
                                  where: [{field: "syscall", value: "getppid"}]) { keys value count }
               byComm: aggregate(groupBy: ["comm"]) { keys value count }"#,
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
        assert_eq!(
            session["counted"],
            json!([{ "keys": ["getppid"], "value": GETPPIDS as f64, "count": GETPPIDS }]),
            "{what}"
        );
        // SQLite answers this one from its per-comm counts, not the events.
        assert_eq!(
            session["byComm"],
            json!([{ "keys": [comm], "value": all_calls as f64, "count": all_calls }]),
            "{what}"
        );
        let p99 = format!(
            "{{ session(id: \"{id}\") {{ aggregate(groupBy: [\"syscall\"], op: P99, \
             field: \"latency_ns\") {{ keys value }} }} }}"
        );
        if mode == "aggregate" {
            let (code, message) = server.error(&p99, json!({}), None);
            assert_eq!(code, "BAD_QUERY", "{what}");
            assert!(message.contains("interval sums, not of calls"), "{message}");
        } else {
            let rows = server.query(&p99, json!({}));
            let getppid = rows["session"]["aggregate"]
                .as_array()
                .unwrap()
                .iter()
                .find(|row| row["keys"][0] == "getppid")
                .map(|row| row["value"].as_f64().unwrap());
            // A getppid takes well under a millisecond; an interval's sum would not.
            assert!(getppid.is_some_and(|ns| ns > 0.0 && ns < 1e6), "{rows}");
        }
        // The latency histogram counts every call once, in ascending buckets.
        let histogram = format!(
            "{{ session(id: \"{id}\") {{ histogram(field: \"latency_ns\", groupBy: [\"syscall\"], \
             where: [{{field: \"syscall\", value: \"getppid\"}}]) {{ keys count sum buckets {{ low high le count }} }} \
             total: aggregate(groupBy: [\"syscall\"], op: SUM, field: \"latency_ns\", \
             where: [{{field: \"syscall\", value: \"getppid\"}}]) {{ value }} }} }}"
        );
        if mode == "aggregate" {
            let (code, message) = server.error(&histogram, json!({}), None);
            assert_eq!(code, "BAD_QUERY", "{what}");
            assert!(
                message.starts_with("HISTOGRAM of `latency_ns` is refused"),
                "{message}"
            );
        } else {
            let answer = server.query(&histogram, json!({}));
            let rows = answer["session"]["histogram"].as_array().unwrap().clone();
            // The values added up are the latencies' SUM.
            assert_eq!(
                rows[0]["sum"], answer["session"]["total"][0]["value"],
                "{what}: {answer}"
            );
            assert_eq!(rows.len(), 1, "{what}: {rows:?}");
            assert_eq!(rows[0]["keys"], json!(["getppid"]));
            assert_eq!(rows[0]["count"], GETPPIDS, "{what}: {rows:?}");
            let buckets = rows[0]["buckets"].as_array().unwrap();
            let counted: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
            assert_eq!(counted, GETPPIDS, "{what}: {rows:?}");
            let highs: Vec<f64> = buckets
                .iter()
                .map(|b| b["high"].as_f64().unwrap())
                .collect();
            assert!(highs.windows(2).all(|w| w[0] < w[1]), "{what}: {rows:?}");
            assert!(
                buckets
                    .iter()
                    .all(|b| b["le"].as_f64() == Some(b["high"].as_f64().unwrap() - 1.0)),
                "{what}: {rows:?}"
            );
        }
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
/// The shell runs in a cgroup of its own that the session is filtered to: the other tests
/// of this binary run beside it, and a stream of every process on the machine would
/// measure their bursts rather than this.
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
    let cgroup = eunomia::container::v2_root()
        .expect("cgroup v2 is mounted")
        .join(format!("eunomia-test-exec-{}", std::process::id()));
    std::fs::create_dir_all(&cgroup).unwrap();
    let cgroup_id = std::os::linux::fs::MetadataExt::st_ino(&std::fs::metadata(&cgroup).unwrap());
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
            "filter": { "cgroupId": cgroup_id },
            "config": { "mode": mode, "interval_ms": 100, "ringbuf_bytes": 16 << 20 },
        }));
        // The shell moves itself into the cgroup, forks a child that execs the load, and
        // says the child's pid.
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}; {} {CALLS} & echo $!; wait $!",
                cgroup.join("cgroup.procs").display(),
                path.display()
            ))
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
    std::fs::remove_dir(&cgroup).unwrap();
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

/// The CPUs this test may run on, read at run time.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the set it is given; CPU_ISSET reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set),
            0
        );
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// `path args`, pinned to `cpu`; returns its pid once it has ended.
fn run_pinned(path: &std::path::Path, args: &[u64], cpu: usize) -> u32 {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(path);
    command.args(args.iter().map(|n| n.to_string()));
    // SAFETY: the closure only calls sched_setaffinity, which is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            match libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let mut child = command.spawn().unwrap();
    assert!(child.wait().unwrap().success());
    child.id()
}

/// Per pid, per syscall name: the calls in `events`.
fn calls_per_pid(events: &[eunomia::trackers::Event]) -> BTreeMap<u32, BTreeMap<String, u64>> {
    let mut calls: BTreeMap<u32, BTreeMap<String, u64>> = BTreeMap::new();
    for event in events {
        let (Some(Value::Str(name)), Some(Value::U64(n))) =
            (event.get("syscall"), event.get("count"))
        else {
            panic!("{event:?}")
        };
        *calls
            .entry(event.header.pid)
            .or_default()
            .entry(name.to_string())
            .or_default() += n;
    }
    calls
}

/// Generations switch every 10 ms while a process on each CPU in turn makes 2 M getppid
/// calls, then alternates openat and close (runs of one call each) and ends on single
/// calls: no call is lost or counted twice across the switches, whichever CPU's slots
/// hold it.
#[test]
fn aggregate_drains_mid_run_lose_nothing_on_any_cpu() {
    if !root_or_skip("aggregate_drains_mid_run_lose_nothing_on_any_cpu") {
        return;
    }
    const ARGS: [u64; 3] = [2_000_000, 30_000, 3];
    let (path, comm) = syscall_load("sd");
    // strace on 2 M calls would take minutes: it gives the start-up calls of a run that
    // makes none, and the load's own calls are added.
    let mut expected: BTreeMap<String, u64> = strace_counts(&path, &[0, 0, 0])
        .into_iter()
        .map(|(name, (calls, _))| (name, calls))
        .collect();
    for (name, calls) in [
        ("getppid", ARGS[0]),
        ("openat", ARGS[1] + ARGS[2]),
        ("close", ARGS[1]),
        ("exit_group", 1),
    ] {
        *expected.entry(name.into()).or_default() += calls;
    }
    let collector = Collector::default();
    let config = TrackerConfig {
        comm: Some(comm),
        ..TrackerConfig::default()
    }
    .with_options(SyscallOptions {
        interval_ms: 10.try_into().unwrap(),
        ..SyscallOptions::default()
    });
    let handle = start_tracker("syscall", config, collector.clone());
    let cpus = allowed_cpus();
    let pids: Vec<u32> = cpus
        .iter()
        .map(|&cpu| run_pinned(&path, &ARGS, cpu))
        .collect();
    let stats = handle.stop().unwrap();
    assert_eq!(stats.lost(), 0, "{stats:?}");
    let events = collector.events();
    let calls = calls_per_pid(&events);
    assert_eq!(calls.keys().copied().collect::<Vec<_>>(), {
        let mut sorted = pids.clone();
        sorted.sort();
        sorted
    });
    for (cpu, pid) in cpus.iter().zip(&pids) {
        assert_eq!(calls[pid], expected, "the load on CPU {cpu}");
        let rows = events
            .iter()
            .filter(|e| e.header.pid == *pid && e.get("syscall") == Some(Value::Str("getppid")))
            .count();
        assert!(
            rows >= 5,
            "the run on CPU {cpu} spans several drains: {rows} rows"
        );
    }
}

/// With a pid filter, only that process's calls are reported, though another process
/// with the same comm makes the same calls at the same time, in both modes.
#[test]
fn a_pid_filter_reports_only_that_process() {
    if !root_or_skip("a_pid_filter_reports_only_that_process") {
        return;
    }
    let (path, _) = syscall_load("sp");
    for mode in [Mode::Aggregate, Mode::Stream] {
        let chosen = common::Gated::spawn(&format!("{} 3000", path.display()));
        let pid = chosen.pid();
        let collector = Collector::default();
        let config = TrackerConfig {
            target_pid: Some(pid),
            ringbuf_bytes: 16 << 20,
            ..TrackerConfig::default()
        }
        .with_options(SyscallOptions {
            mode,
            ..SyscallOptions::default()
        });
        let handle = start_tracker("syscall", config, collector.clone());
        let other = Command::new(&path).arg("5000").spawn().unwrap();
        chosen.go();
        assert!(other.wait_with_output().unwrap().status.success());
        let stats = handle.stop().unwrap();
        assert_eq!(stats.lost(), 0, "{stats:?}");
        let events = collector.events();
        let calls = calls_per_pid(&events);
        assert_eq!(calls.keys().collect::<Vec<_>>(), [&pid], "{mode:?}");
        assert_eq!(calls[&pid]["getppid"], 3000, "{mode:?}: {calls:?}");
    }
}

/// A 4 KiB ring buffer in a stream session overflows on a burst: what was lost is
/// counted, and what was kept plus what was lost is exactly what the program made.
#[test]
fn a_session_counts_what_its_ring_buffer_lost() {
    if !root_or_skip("a_session_counts_what_its_ring_buffer_lost") {
        return;
    }
    let server = Server::start("syscall-lost", None);
    let (path, comm) = syscall_load("sl");
    let made = common::calls_made(&path, &[GETPPIDS, OPENS, FAILED_OPENS]);
    for store in ["SQLITE", "MEMORY"] {
        let id = server.start_session(json!({
            "tracker": "syscall",
            "durationSecs": 120,
            "store": store,
            "filter": { "comm": comm },
            "config": { "mode": "stream", "ringbuf_bytes": 4096 },
        }));
        run_load(&path);
        assert_eq!(server.stop_session(&id), "STOPPED");
        let session = server.session(&id, "eventCount lostCount completeness");
        let (events, lost) = (
            session["eventCount"].as_u64().unwrap(),
            session["lostCount"].as_u64().unwrap(),
        );
        assert_eq!(events + lost, made, "{store}: {session}");
        assert!(
            lost > 0,
            "{store}: a 4 KiB buffer cannot hold a burst: {session}"
        );
        // Exact up to JSON's float parsing (serde_json may be a unit in the last place off).
        let completeness = session["completeness"].as_f64().unwrap();
        let expected = events as f64 / made as f64;
        assert!(
            (completeness - expected).abs() <= expected * 1e-12,
            "{store}: completeness {completeness}, expected {expected}: {session}"
        );
    }
}

/// With `first_args`, socket calls carry their family, in stream mode each call and in
/// aggregate mode rows split by it; calls that are not narrowed carry none.
#[test]
fn first_args_split_socket_calls_by_family() {
    if !root_or_skip("first_args_split_socket_calls_by_family") {
        return;
    }
    let script = "import socket, sys\n\
        print('ready', flush=True)\n\
        sys.stdin.readline()\n\
        for _ in range(3): socket.socket(socket.AF_UNIX).close()\n\
        for _ in range(2): socket.socket(socket.AF_INET).close()\n";
    for mode in ["stream", "aggregate"] {
        let options = serde_json::json!({ "mode": mode, "first_args": true });
        let (_, events) = common::trace_python("syscall", options, script, &[], None, 5);
        let mut sockets: BTreeMap<u64, u64> = BTreeMap::new();
        for event in &events {
            let (Some(Value::Str(name)), Some(Value::U64(count))) =
                (event.get("syscall"), event.get("count"))
            else {
                panic!("{event:?}");
            };
            match (name, event.get("arg0")) {
                ("socket", Some(Value::U64(family))) => {
                    *sockets.entry(family).or_default() += count
                }
                ("clone" | "personality", _) => {}
                (_, arg0) => assert_eq!(arg0, Some(Value::Null), "{event:?}"),
            }
        }
        let (unix, inet) = (libc::AF_UNIX as u64, libc::AF_INET as u64);
        assert_eq!(sockets, BTreeMap::from([(unix, 3), (inet, 2)]), "{mode}");
    }
}

/// A thread that renames itself (prctl PR_SET_NAME) has its calls under the new comm from
/// the next one on, in both modes: stream mode keeps each thread's comm with the rest of
/// its header, and the rename must not wait for that cache to expire (100 ms).
#[test]
fn a_renamed_thread_s_calls_are_under_its_new_comm() {
    if !root_or_skip("a_renamed_thread_s_calls_are_under_its_new_comm") {
        return;
    }
    let script = "import ctypes, os, sys\n\
        libc = ctypes.CDLL(None, use_errno=True)\n\
        print('ready', flush=True)\n\
        sys.stdin.readline()\n\
        for _ in range(300): os.getppid()\n\
        assert libc.prctl(15, b'renamed', 0, 0, 0) == 0\n\
        for _ in range(700): os.getppid()\n";
    // Events to wait for: one per call in stream mode, a row per comm in aggregate mode.
    for (mode, at_least) in [("stream", 1000), ("aggregate", 2)] {
        let options = json!({ "mode": mode });
        let (_, events) = common::trace_python("syscall", options, script, &[], None, at_least);
        let expected = BTreeMap::from([("python3".to_string(), 300), ("renamed".to_string(), 700)]);
        assert_eq!(getppids_by_comm(&events), expected, "{mode}");
    }
}

/// getppid calls in `events`, per comm.
fn getppids_by_comm(events: &[Event]) -> BTreeMap<String, u64> {
    let mut getppids: BTreeMap<String, u64> = BTreeMap::new();
    for event in events {
        if event.get("syscall") != Some(Value::Str("getppid")) {
            continue;
        }
        let (Some(Value::Str(comm)), Some(Value::U64(count))) =
            (event.get("comm"), event.get("count"))
        else {
            panic!("{event:?}");
        };
        *getppids.entry(comm.to_string()).or_default() += count;
    }
    getppids
}

/// Stream mode keeps each CPU's header for the thread that last made a call there: two
/// threads of one process, named apart and pinned to one CPU, take turns (every call
/// follows a switch from the other), and each call is under its own thread's comm.
#[test]
fn threads_taking_turns_on_one_cpu_keep_their_own_comms() {
    if !root_or_skip("threads_taking_turns_on_one_cpu_keep_their_own_comms") {
        return;
    }
    // alpha makes two calls a turn, beta one; each hands the turn over through a pipe.
    let script = "import ctypes, os, sys, threading\n\
        libc = ctypes.CDLL(None, use_errno=True)\n\
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n\
        turns = [os.pipe(), os.pipe()]\n\
        def player(name, me, calls):\n\
        \x20   assert libc.prctl(15, name, 0, 0, 0) == 0\n\
        \x20   for _ in range(250):\n\
        \x20       os.read(turns[me][0], 1)\n\
        \x20       for _ in range(calls): os.getppid()\n\
        \x20       os.write(turns[1 - me][1], b'x')\n\
        print('ready', flush=True)\n\
        sys.stdin.readline()\n\
        players = [threading.Thread(target=player, args=(b'alpha', 0, 2)),\n\
        \x20          threading.Thread(target=player, args=(b'beta', 1, 1))]\n\
        for p in players: p.start()\n\
        os.write(turns[0][1], b'x')\n\
        for p in players: p.join()\n";
    for latency in [false, true] {
        let options = json!({ "mode": "stream", "latency": latency });
        let (_, events) = common::trace_python("syscall", options, script, &[], None, 750);
        let expected = BTreeMap::from([("alpha".to_string(), 500), ("beta".to_string(), 250)]);
        assert_eq!(getppids_by_comm(&events), expected, "latency {latency}");
    }
}

/// Stream mode sends each CPU's calls in batches: a few calls, after which the process
/// makes no more (it waits in a read), reach the session while it runs, within the
/// batches' look interval, not only when it stops; and stopping then adds no call twice.
#[test]
fn a_stream_s_last_few_calls_arrive_while_the_session_runs() {
    use std::io::Write;

    if !root_or_skip("a_stream_s_last_few_calls_arrive_while_the_session_runs") {
        return;
    }
    let script = "import os, sys\n\
        print('ready', flush=True)\n\
        sys.stdin.readline()\n\
        for _ in range(7): os.getppid()\n\
        print('made', flush=True)\n\
        sys.stdin.readline()\n";
    let (mut child, mut lines) =
        common::spawn_ready(Command::new("/usr/bin/python3").args(["-c", script]));
    let collector = Collector::default();
    let config = TrackerConfig {
        target_pid: Some(child.id()),
        ..TrackerConfig::default()
    }
    .with_options(SyscallOptions {
        mode: Mode::Stream,
        ..SyscallOptions::default()
    });
    let handle = start_tracker("syscall", config, collector.clone());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "made");
    let getppids = |events: &[eunomia::trackers::Event]| {
        events
            .iter()
            .filter(|e| e.get("syscall") == Some(Value::Str("getppid")))
            .count()
    };
    let started = Instant::now();
    collector.wait_for(Duration::from_secs(2), |events| getppids(events) >= 7);
    let waited = started.elapsed();
    assert_eq!(getppids(&collector.events()), 7, "after {waited:?}");
    // The process is still blocked in its read: nothing but the look sent its calls.
    assert!(child.try_wait().unwrap().is_none());
    let before_stop = collector.events().len();
    stdin.write_all(b"end\n").unwrap();
    assert!(child.wait().unwrap().success());
    let stats = handle.stop().unwrap();
    assert_eq!(stats.lost(), 0, "{stats:?}");
    let events = collector.events();
    assert_eq!(getppids(&events), 7);
    // The read that was in flight, the exit's calls: each once, after the ones before.
    assert!(events.len() > before_stop, "{} events", events.len());
    let mut reads = events
        .iter()
        .filter(|e| e.get("syscall") == Some(Value::Str("read")));
    assert!(
        reads.any(|e| e.get("ret") == Some(Value::I64(4))),
        "the read of \"end\\n\""
    );
}
