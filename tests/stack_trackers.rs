//! The stack trackers (profile, offcpu, memleak) against the real kernel (root), on
//! `tests/programs/stack_work.c`, whose time, sleeps and allocations are known by the
//! function that makes them. Stacks must come back symbolized, with those functions in
//! them.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{build_program, root_or_skip, start_tracker, Collector};
use eunomia::model::{Record, Value};
use eunomia::trackers::Event;

/// The program under test, with frame pointers (the kernel unwinds user stacks by them).
const FLAGS: &[&str] = &["-O0", "-fno-omit-frame-pointer"];

/// What one traced run of `stack_work` left: the tracker's events of it and the CPU time
/// it used (from /proc, in seconds).
struct Traced {
    events: Vec<Event>,
    cpu_seconds: f64,
    /// Events the tracker lost (a full map in the kernel, say).
    lost: u64,
}

/// Runs `stack_work mode` under tracker `name` (on its pid, with `options`). The tracker
/// is stopped once the program says it is done, while it still lives (so that its
/// addresses can be named), and then the program is killed.
fn trace_stack_work(name: &str, mode: &str, options: serde_json::Value) -> Traced {
    let (binary, _comm) = build_program("stack_work.c", FLAGS, "sw");
    let mut command = Command::new(&*binary);
    command.arg(mode);
    trace_work(command, |child| child.id(), name, options)
}

/// [`trace_stack_work`] for a `stack_work` that `command` starts, whose pid on this host
/// `host_pid` finds once it said "ready".
fn trace_work(
    mut command: Command,
    host_pid: impl FnOnce(&std::process::Child) -> u32,
    name: &str,
    options: serde_json::Value,
) -> Traced {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let pid = host_pid(&child);
    let mut config = eunomia::engine::TrackerConfig {
        target_pid: Some(pid),
        ..Default::default()
    };
    config.options = options.as_object().cloned().unwrap_or_default();
    let collector = Collector::default();
    let handle = start_tracker(name, config, collector.clone());
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "done");
    let cpu_seconds = cpu_seconds_of(pid);
    let stats = handle.stop().unwrap();
    // SAFETY: kill(2) on the pid of the program this test started, still alive.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    child.wait().unwrap();
    Traced {
        events: collector.of_pid(pid),
        cpu_seconds,
        lost: stats.lost(),
    }
}

/// The user and system CPU time process `pid` has used, in seconds.
fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / per_second
}

fn u64_of(event: &Event, field: &str) -> u64 {
    match event.get(field) {
        Some(Value::U64(v)) => v,
        other => panic!("{field} is {other:?}"),
    }
}

fn i64_of(event: &Event, field: &str) -> i64 {
    match event.get(field) {
        Some(Value::I64(v)) => v,
        other => panic!("{field} is {other:?}"),
    }
}

fn stack_of(event: &Event) -> &str {
    match event.get("stack") {
        Some(Value::Str(stack)) => stack,
        other => panic!("stack is {other:?}"),
    }
}

/// The innermost user-space frame of a folded stack (kernel frames end in `_[k]`).
fn user_leaf(stack: &str) -> &str {
    stack
        .split(';')
        .rfind(|frame| !frame.ends_with("_[k]"))
        .unwrap_or("")
}

/// Samples, counted or lost, are one per 1/frequency of the program's CPU time, within
/// 10%. Returns the counted ones.
fn assert_samples_match_cpu(traced: &Traced, frequency: u64) -> u64 {
    let samples: u64 = traced.events.iter().map(|e| u64_of(e, "samples")).sum();
    let expected = traced.cpu_seconds * frequency as f64;
    assert!(
        ((samples + traced.lost) as f64 - expected).abs() <= expected * 0.1,
        "{samples} samples and {} lost for {:.2} s of CPU at {frequency} Hz",
        traced.lost,
        traced.cpu_seconds
    );
    samples
}

/// Nothing lost, samples as the CPU time says, and at least 85% of them with a
/// `spin_here` frame, below `main`.
fn assert_spin_here_dominates(traced: &Traced) {
    assert_eq!(traced.lost, 0);
    let samples = assert_samples_match_cpu(traced, PROFILE_HZ);
    let in_spin: u64 = traced
        .events
        .iter()
        .filter(|e| stack_of(e).split(';').any(|frame| frame == "spin_here"))
        .map(|e| u64_of(e, "samples"))
        .sum();
    let share = in_spin as f64 / samples as f64;
    assert!(
        share >= 0.85,
        "spin_here in {in_spin} of {samples} samples ({share:.2}): {:#?}",
        traced.events.iter().map(stack_of).collect::<Vec<_>>()
    );
    assert!(traced
        .events
        .iter()
        .any(|e| stack_of(e).contains("main;spin_here")));
}

const PROFILE_HZ: u64 = 499;

#[test]
fn profile_finds_the_function_that_spends_the_cpu() {
    if !root_or_skip("profile_finds_the_function_that_spends_the_cpu") {
        return;
    }
    let traced = trace_stack_work(
        "profile",
        "profile",
        serde_json::json!({ "frequency": PROFILE_HZ, "interval_ms": 200 }),
    );
    assert_spin_here_dominates(&traced);
}

/// A process in a container, its program at a path only the container has: its frames
/// are named from its own file, through /proc/<pid>/map_files.
#[test]
fn profile_names_the_frames_of_a_process_in_a_container() {
    use common::docker::{docker, docker_or_skip, Container};
    if !docker_or_skip("profile_names_the_frames_of_a_process_in_a_container") {
        return;
    }
    // Static: the busybox image has no C library.
    let flags = ["-static", "-O0", "-fno-omit-frame-pointer"];
    let (binary, comm) = build_program("stack_work.c", &flags, "sc");
    let container = Container::start("stacks");
    let inside = format!("/{comm}");
    docker(&[
        "cp",
        binary.to_str().unwrap(),
        &format!("{}:{inside}", container.name),
    ]);
    assert!(!std::path::Path::new(&inside).exists());
    let mut command = Command::new("docker");
    command.args(["exec", "-i", &container.name, &inside, "profile"]);
    let traced = trace_work(
        command,
        |_| {
            let pids: Vec<u32> = std::fs::read_dir("/proc")
                .unwrap()
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == comm)
                })
                .collect();
            assert_eq!(pids.len(), 1, "{pids:?}");
            pids[0]
        },
        "profile",
        serde_json::json!({ "frequency": PROFILE_HZ, "interval_ms": 200 }),
    );
    assert_spin_here_dominates(&traced);
}

/// With room for one stack and one count, the loss shows: samples whose count had no
/// room are counted lost, and those whose stack had none carry the lost-stack frame.
#[test]
fn profile_counts_what_a_full_stack_map_loses() {
    if !root_or_skip("profile_counts_what_a_full_stack_map_loses") {
        return;
    }
    let traced = trace_stack_work(
        "profile",
        "profile",
        serde_json::json!({ "frequency": PROFILE_HZ, "interval_ms": 100, "max_stacks": 1 }),
    );
    let samples = assert_samples_match_cpu(&traced, PROFILE_HZ);
    assert!(traced.lost > 0, "{samples} samples, none lost");
    assert!(
        traced
            .events
            .iter()
            .any(|e| stack_of(e).contains("[stack lost: the stack map was full]")),
        "{:#?}",
        traced.events.iter().map(stack_of).collect::<Vec<_>>()
    );
}

#[test]
fn offcpu_puts_the_sleeping_function_on_top() {
    if !root_or_skip("offcpu_puts_the_sleeping_function_on_top") {
        return;
    }
    let traced = trace_stack_work("offcpu", "offcpu", serde_json::json!({}));
    assert_eq!(traced.lost, 0);
    let mut by_leaf: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for event in &traced.events {
        let slot = by_leaf
            .entry(user_leaf(stack_of(event)).to_string())
            .or_default();
        slot.0 += u64_of(event, "blocks");
        slot.1 += u64_of(event, "offcpu_ns");
    }
    let (top, &(blocks, offcpu_ns)) = by_leaf.iter().max_by_key(|(_, v)| v.1).unwrap();
    assert_eq!(top, "sleep_here", "{by_leaf:#?}");
    // Ten sleeps of 100 ms, each one time off the CPU.
    assert_eq!(blocks, 10, "{by_leaf:#?}");
    let ms = offcpu_ns as f64 / 1e6;
    assert!(
        (1000.0..1100.0).contains(&ms),
        "{ms} ms off CPU in sleep_here"
    );
    // The kernel half of the stack says how it slept.
    let sleeping = traced
        .events
        .iter()
        .find(|e| user_leaf(stack_of(e)) == "sleep_here")
        .unwrap();
    assert!(
        stack_of(sleeping).contains("sleep_here;entry_SYSCALL_64"),
        "{}",
        stack_of(sleeping)
    );
    assert!(
        stack_of(sleeping).contains("do_nanosleep_[k]"),
        "{}",
        stack_of(sleeping)
    );
}

#[test]
fn memleak_attributes_the_outstanding_blocks_to_the_leaking_function() {
    if !root_or_skip("memleak_attributes_the_outstanding_blocks_to_the_leaking_function") {
        return;
    }
    let traced = trace_stack_work("memleak", "leak", serde_json::json!({ "interval_ms": 100 }));
    assert_eq!(traced.lost, 0);
    let mut by_leaf: std::collections::BTreeMap<String, [i64; 3]> = Default::default();
    for event in &traced.events {
        let slot = by_leaf
            .entry(user_leaf(stack_of(event)).to_string())
            .or_default();
        slot[0] += u64_of(event, "allocations") as i64;
        slot[1] += i64_of(event, "outstanding");
        slot[2] += i64_of(event, "outstanding_bytes");
    }
    assert_eq!(by_leaf["leak_blocks"], [37, 37, 37 * 4096], "{by_leaf:#?}");
    // churn's 1,000 rounds: malloc, calloc, two reallocs and posix_memalign, all freed.
    assert_eq!(by_leaf["churn"], [5000, 0, 0], "{by_leaf:#?}");
    assert_eq!(by_leaf.len(), 2, "{by_leaf:#?}");
}

#[test]
fn memleak_needs_a_pid() {
    let err = eunomia::trackers::find_tracker("memleak")
        .unwrap()
        .start(
            eunomia::engine::TrackerConfig::default(),
            Box::new(Collector::default()),
            Default::default(),
        )
        .err()
        .expect("refused");
    assert!(err.to_string().contains("give its pid"), "{err}");
}

/// Through the server, in both stores: a profile session's `foldedStacks` weigh each stack
/// by its samples, as many as the session counted, spin_here's share as in the tracker
/// test; the flame graph is an SVG with those frames. Other trackers have no stacks.
#[test]
fn profile_sessions_fold_their_stacks_and_draw_a_flame_graph() {
    use common::server::Server;
    use serde_json::json;

    if !root_or_skip("profile_sessions_fold_their_stacks_and_draw_a_flame_graph") {
        return;
    }
    let server = Server::start("stacks", None);
    let (binary, comm) = build_program("stack_work.c", FLAGS, "fg");
    let mut child = Command::new(&*binary)
        .arg("profile")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let ids: Vec<String> = ["MEMORY", "SQLITE"]
        .iter()
        .map(|store| {
            server.start_session(json!({
                "tracker": "profile", "durationSecs": 60, "store": store,
                "filter": { "pid": child.id() },
                "config": { "frequency": 499, "interval_ms": 200 },
            }))
        })
        .collect();
    for id in &ids {
        while server.session(id, "programIds")["programIds"]
            .as_array()
            .unwrap()
            .is_empty()
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "done");
    for id in &ids {
        assert_eq!(server.stop_session(id), "STOPPED");
    }
    child.kill().unwrap();
    child.wait().unwrap();

    for id in &ids {
        let data = server.query(
            "query($id: ID!) { foldedStacks(sessionId: $id)
               session(id: $id) { lostCount aggregate(groupBy: []) { count } } }",
            json!({ "id": id }),
        );
        assert_eq!(data["session"]["lostCount"], 0, "{data}");
        let samples = data["session"]["aggregate"][0]["count"].as_u64().unwrap();
        let folded = data["foldedStacks"].as_str().unwrap();
        let (mut total, mut in_spin) = (0, 0);
        for line in folded.lines() {
            let (stack, weight) = line.rsplit_once(' ').unwrap();
            let weight: u64 = weight.parse().unwrap();
            assert!(stack.starts_with(&format!("{comm};")), "{line}");
            total += weight;
            if stack.split(';').any(|frame| frame == "spin_here") {
                in_spin += weight;
            }
        }
        assert_eq!(total, samples, "{folded}");
        assert!(
            in_spin as f64 >= 0.85 * total as f64,
            "{in_spin} of {total}: {folded}"
        );

        let (status, svg) = server.get(&format!("/sessions/{id}/flamegraph.svg"));
        assert_eq!(status, 200, "{svg}");
        assert!(
            svg.starts_with("<?xml") && svg.contains("<svg"),
            "{svg:.200}"
        );
        assert!(
            svg.contains("spin_here") && svg.contains(&comm),
            "{svg:.200}"
        );
    }

    let other = server.start_session(json!({ "tracker": "process", "durationSecs": 1 }));
    let (code, message) = server.error(
        "query($id: ID!) { foldedStacks(sessionId: $id) }",
        json!({ "id": other }),
        None,
    );
    assert_eq!(code, "BAD_QUERY", "{message}");
    assert!(message.contains("records no stacks"), "{message}");
    assert_eq!(
        server.get(&format!("/sessions/{other}/flamegraph.svg")).0,
        400
    );
    assert_eq!(
        server.get("/sessions/no-such-session/flamegraph.svg").0,
        404
    );
}
