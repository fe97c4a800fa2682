//! The process tracker against the real kernel (root).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    assert_unloaded, loaded_prog_ids, root_or_skip, start_tracker, unique_binary, Collector,
};
use eunomia::engine::{Counters, TrackerConfig, TrackerHandle};
use eunomia::handler::{FanIn, Flow, Handler};
use eunomia::model::{Record, Value};
use eunomia::trackers::find_tracker;
use eunomia::trackers::process::ProcessOptions;
use eunomia::trackers::Event;

const SETTLE: Duration = Duration::from_secs(5);

fn start(config: TrackerConfig, chain: impl Handler<Event> + 'static) -> TrackerHandle {
    start_tracker("process", config, chain)
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::kind).collect()
}

#[test]
fn exit_7_gives_exec_and_exit_with_status_and_duration() {
    if !root_or_skip("exit_7_gives_exec_and_exit_with_status_and_duration") {
        return;
    }
    let collector = Collector::default();
    let handle = start(TrackerConfig::default(), collector.clone());
    let started = Instant::now();
    let mut child = Command::new("/bin/sh")
        .args(["-c", "exit 7"])
        .spawn()
        .unwrap();
    let pid = child.id();
    assert_eq!(child.wait().unwrap().code(), Some(7));
    let wall = started.elapsed();
    collector.wait_for(SETTLE, |_| collector.of_pid(pid).len() >= 2);
    let stats = handle.stop().unwrap();

    let events = collector.of_pid(pid);
    assert_eq!(
        kinds(&events),
        ["exec", "exit"],
        "events of pid {pid}: {events:?}"
    );
    let (exec, exit) = (&events[0], &events[1]);
    assert_eq!(exec.get("filename"), Some(Value::Str("/bin/sh")));
    assert_eq!(exec.header.ppid, std::process::id());
    assert_eq!(exec.get("comm"), Some(Value::Str("sh")));
    assert_eq!(exit.get("exit_code"), Some(Value::U64(7)));
    assert_eq!(exit.get("signal"), Some(Value::Null));
    assert_eq!(exit.header.ppid, std::process::id());
    let Some(Value::U64(duration)) = exit.get("duration_ns") else {
        panic!("exit has a duration")
    };
    // From exec to exit fits in fork-to-reap; loading and running sh takes 10 µs at least.
    assert!(
        duration >= 10_000 && duration < wall.as_nanos() as u64,
        "duration {duration} ns, fork to reap {wall:?}"
    );
    assert!(exit.header.ts_ns >= exec.header.ts_ns);
    // Namespaces are those of this test process.
    let own_pid_ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    assert_eq!(
        own_pid_ns.to_string_lossy(),
        format!("pid:[{}]", exec.header.pid_ns)
    );
    let own_mnt_ns = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    assert_eq!(
        own_mnt_ns.to_string_lossy(),
        format!("mnt:[{}]", exit.header.mnt_ns)
    );
    // Wall-clock time within a minute of now.
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(now_ns.abs_diff(exec.header.ts_ns) < 60_000_000_000);
    assert!(stats.seen >= 2);
    assert_eq!(stats.lost(), 0);
}

/// Execs carry the effective ids they run with (a shell started by `setpriv` as 65534), and
/// with `failed_execs` an exec that fails is an `exec_failed` event with the path as passed
/// and the error by name; without the option there is none.
#[test]
fn execs_have_ids_and_failed_execs_their_error() {
    if !root_or_skip("execs_have_ids_and_failed_execs_their_error") {
        return;
    }
    const NOBODY: u32 = 65534;
    let dir = common::TempDir::new("failed-exec");
    let missing = dir.join("missing");
    let not_executable = dir.join("not-executable");
    std::fs::write(&not_executable, b"#!/bin/sh\n").unwrap();
    let failed = |events: &[Event]| -> Vec<(String, String)> {
        events
            .iter()
            .filter(|e| e.kind() == "exec_failed")
            .filter_map(|e| match (e.get("filename"), e.get("error")) {
                (Some(Value::Str(f)), Some(Value::Str(err)))
                    if f.starts_with(dir.path().to_str().unwrap()) =>
                {
                    Some((f.to_string(), err.to_string()))
                }
                _ => None,
            })
            .collect()
    };
    for failed_execs in [true, false] {
        let collector = Collector::default();
        let config = TrackerConfig::default().with_options(ProcessOptions {
            failed_execs,
            ..ProcessOptions::default()
        });
        let handle = start(config, collector.clone());
        let mut child = Command::new("setpriv")
            .args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
                "/bin/sh",
                "-c",
                "exit 0",
            ])
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(child.wait().unwrap().success());
        for path in [&missing, &not_executable] {
            assert!(Command::new(path).status().is_err(), "{path:?} ran");
        }
        collector.wait_for(SETTLE, |_| {
            collector
                .of_pid(pid)
                .iter()
                .filter(|e| e.kind() == "exec")
                .count()
                >= 2
        });
        std::thread::sleep(Duration::from_millis(200));
        handle.stop().unwrap();
        let events = collector.events();
        let of_child = collector.of_pid(pid);
        let ids: Vec<(Option<Value>, Option<Value>, Option<Value>)> = of_child
            .iter()
            .filter(|e| e.kind() == "exec")
            .map(|e| (e.get("filename"), e.get("uid"), e.get("gid")))
            .collect();
        let root = Some(Value::U64(0));
        let nobody = Some(Value::U64(NOBODY.into()));
        assert!(
            ids.contains(&(Some(Value::Str("/bin/sh")), nobody, nobody)),
            "{ids:?}"
        );
        assert!(
            ids.iter()
                .any(|(f, uid, _)| *uid == root && *f != Some(Value::Str("/bin/sh"))),
            "{ids:?}"
        );
        if failed_execs {
            assert_eq!(
                failed(&events),
                [
                    (missing.display().to_string(), "ENOENT".to_string()),
                    (not_executable.display().to_string(), "EACCES".to_string()),
                ]
            );
        } else {
            assert!(
                events.iter().all(|e| e.kind() != "exec_failed"),
                "{events:?}"
            );
        }
    }
}

/// A shell that re-execs itself through /proc/self/exe, as busybox does for its applets:
/// the second exec names the file behind the link (the shell's real path, as
/// `realpath /bin/sh` says), not the link. With `cwd`, each exec gives the directory it
/// ran in; without, none.
#[test]
fn execs_name_the_file_behind_proc_self_exe_and_their_cwd() {
    if !root_or_skip("execs_name_the_file_behind_proc_self_exe_and_their_cwd") {
        return;
    }
    let dir = common::TempDir::new("cwd");
    let dir_path = std::fs::canonicalize(dir.path()).unwrap();
    let shell = std::fs::canonicalize("/bin/sh").unwrap();
    for cwd in [true, false] {
        let collector = Collector::default();
        let config = TrackerConfig::default().with_options(ProcessOptions {
            cwd,
            ..ProcessOptions::default()
        });
        let handle = start(config, collector.clone());
        let mut child = Command::new("/bin/sh")
            .args(["-c", "exec /proc/self/exe -c 'exit 3'"])
            .current_dir(&dir_path)
            .spawn()
            .unwrap();
        let pid = child.id();
        assert_eq!(child.wait().unwrap().code(), Some(3));
        collector.wait_for(SETTLE, |_| {
            collector.of_pid(pid).iter().any(|e| e.kind() == "exit")
        });
        handle.stop().unwrap();
        // Values as text; a field without one is None.
        let text = |e: &Event, field: &str| match e.get(field) {
            Some(Value::Null) | None => None,
            Some(value) => Some(value.to_string()),
        };
        let got: Vec<_> = collector
            .of_pid(pid)
            .iter()
            .map(|e| {
                (
                    e.kind(),
                    text(e, "filename"),
                    text(e, "cwd"),
                    text(e, "exit_code"),
                )
            })
            .collect();
        let in_dir = cwd.then(|| dir_path.display().to_string());
        let expected = vec![
            ("exec", Some("/bin/sh".to_string()), in_dir.clone(), None),
            ("exec", Some(shell.display().to_string()), in_dir, None),
            ("exit", None, None, Some("3".to_string())),
        ];
        assert_eq!(got, expected, "cwd option {cwd}");
    }
}

#[test]
fn exec_details_give_each_argument_and_the_parent() {
    if !root_or_skip("exec_details_give_each_argument_and_the_parent") {
        return;
    }
    let long = "x".repeat(300);
    let mut args: Vec<String> = vec!["a b".into(), long.clone(), "plain".into(), "it's".into()];
    args.extend((1..=16).map(|i| format!("n{i}")));
    let collector = Collector::default();
    let config = TrackerConfig::default().with_options(ProcessOptions {
        exec_details: true,
        ..ProcessOptions::default()
    });
    let handle = start(config, collector.clone());
    let mut command = Command::new("/bin/true");
    command.args(&args);
    // A session of its own: no controlling terminal, whatever the test runs under.
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    let events = collector.wait_for(SETTLE, |_| {
        collector.of_pid(pid).iter().any(|e| e.kind() == "exec")
    });
    handle.stop().unwrap();
    let exec = events
        .iter()
        .find(|e| e.header.pid == pid && e.kind() == "exec")
        .expect("the exec is seen");

    // The first 16 arguments, the long one cut at 255 bytes, then a mark for the rest;
    // the line splits back into exactly those words.
    let Some(Value::Str(line)) = exec.get("args") else {
        panic!("no args: {:?}", exec.get("args"));
    };
    let mut expected = vec!["/bin/true".to_string()];
    expected.extend(args.iter().take(15).cloned());
    expected[2] = format!("{}...", &long[..255]);
    expected.push("...".into());
    assert_eq!(shlex::split(line), Some(expected), "{line}");
    assert!(line.starts_with("/bin/true 'a b' xxx"), "{line}");
    assert_eq!(exec.get("argc"), Some(Value::U64(21)));

    // The parent is this test's thread (it forked the child), read here at run time.
    let comm = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
    assert_eq!(exec.get("parent_comm"), Some(Value::Str(comm.trim_end())));
    let exe = std::env::current_exe().unwrap();
    assert_eq!(
        exec.get("parent_exe"),
        Some(Value::Str(exe.to_str().unwrap()))
    );
    assert_eq!(exec.get("tty"), Some(Value::Null));
    let login_uid: u32 = std::fs::read_to_string("/proc/self/loginuid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let expected_login = if login_uid == u32::MAX {
        Value::Null
    } else {
        Value::U64(login_uid.into())
    };
    assert_eq!(exec.get("login_uid"), Some(expected_login));
}

#[test]
fn signal_death_names_the_signal() {
    if !root_or_skip("signal_death_names_the_signal") {
        return;
    }
    let collector = Collector::default();
    let handle = start(TrackerConfig::default(), collector.clone());
    let mut child = Command::new("/bin/sh")
        .args(["-c", "kill -9 $$"])
        .spawn()
        .unwrap();
    let pid = child.id();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    collector.wait_for(SETTLE, |_| collector.of_pid(pid).len() >= 2);
    handle.stop().unwrap();

    let exit = collector
        .of_pid(pid)
        .into_iter()
        .find(|e| e.kind() == "exit")
        .expect("an exit event");
    assert_eq!(exit.get("signal"), Some(Value::Str("SIGKILL")));
    assert_eq!(exit.get("exit_code"), Some(Value::U64(137)));
}

#[test]
fn thread_exits_are_not_process_exits() {
    if !root_or_skip("thread_exits_are_not_process_exits") {
        return;
    }
    let collector = Collector::default();
    let handle = start(TrackerConfig::default(), collector.clone());
    // Four threads end before the process does, and the main thread ends last with 3.
    let script = "import threading, sys\n\
                  ts = [threading.Thread(target=lambda: None) for _ in range(4)]\n\
                  [t.start() for t in ts]\n[t.join() for t in ts]\nsys.exit(3)";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .spawn()
        .unwrap();
    let pid = child.id();
    assert_eq!(child.wait().unwrap().code(), Some(3));
    collector.wait_for(SETTLE, |_| {
        collector.of_pid(pid).iter().any(|e| e.kind() == "exit")
    });
    std::thread::sleep(Duration::from_millis(200));
    handle.stop().unwrap();

    let exits: Vec<Event> = collector
        .of_pid(pid)
        .into_iter()
        .filter(|e| e.kind() == "exit")
        .collect();
    assert_eq!(exits.len(), 1, "one exit for the whole process: {exits:?}");
    assert_eq!(exits[0].get("exit_code"), Some(Value::U64(3)));
}

#[test]
fn stop_removes_every_program_from_the_kernel() {
    if !root_or_skip("stop_removes_every_program_from_the_kernel") {
        return;
    }
    let handle = start(TrackerConfig::default(), Collector::default());
    let ids = handle.prog_ids().to_vec();
    assert_eq!(ids.len(), 2, "exec and exit programs");
    let loaded = loaded_prog_ids();
    assert!(
        ids.iter().all(|id| loaded.contains(id)),
        "{ids:?} loaded while running"
    );
    handle.stop().unwrap();
    assert_unloaded(&ids, "process tracker");
}

/// Two instances with different pid filters each see only their own process; both also
/// feed one handler on another thread (fan-in).
#[test]
fn two_instances_with_pid_filters_see_only_their_own() {
    if !root_or_skip("two_instances_with_pid_filters_see_only_their_own") {
        return;
    }
    let spawn = |code: u32| {
        Command::new("/bin/sh")
            .args(["-c", &format!("sleep 0.5; exec /bin/sh -c 'exit {code}'")])
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn(3), spawn(4));
    let merged = Collector::default();
    let fan_in = FanIn::spawn("merged", 1024, merged.clone()).unwrap();
    let mut instances = Vec::new();
    for child in [&a, &b] {
        let own = Collector::default();
        let counters = Arc::new(Counters::default());
        let sender = fan_in.sender(counters.lost_channel.clone());
        let chain = eunomia::handler::FanOut::new(vec![Box::new(own.clone()), Box::new(sender)]);
        let config = TrackerConfig {
            target_pid: Some(child.id()),
            ..TrackerConfig::default()
        };
        let tracker = find_tracker("process").unwrap();
        let handle = tracker.start(config, Box::new(chain), counters).unwrap();
        instances.push((handle, own, child.id()));
    }
    assert_eq!(a.wait().unwrap().code(), Some(3));
    assert_eq!(b.wait().unwrap().code(), Some(4));
    for (_, own, pid) in &instances {
        own.wait_for(SETTLE, |e| e.len() >= 2);
        assert!(own.events().iter().all(|e| e.header.pid == *pid));
    }
    std::thread::sleep(Duration::from_millis(200));
    for ((handle, own, pid), code) in instances.into_iter().zip([3u64, 4]) {
        let stats = handle.stop().unwrap();
        let events = own.events();
        assert_eq!(
            kinds(&events),
            ["exec", "exit"],
            "instance for pid {pid}: {events:?}"
        );
        assert!(events.iter().all(|e| e.header.pid == pid));
        assert_eq!(events[0].get("filename"), Some(Value::Str("/bin/sh")));
        assert_eq!(events[1].get("exit_code"), Some(Value::U64(code)));
        assert_eq!((stats.seen, stats.lost()), (2, 0));
    }
    fan_in.join().unwrap();
    let mut merged_pids: Vec<u32> = merged.events().iter().map(|e| e.header.pid).collect();
    merged_pids.sort();
    let mut expected = vec![a.id(), a.id(), b.id(), b.id()];
    expected.sort();
    assert_eq!(merged_pids, expected);
}

#[test]
fn comm_filter_and_min_duration_in_the_kernel() {
    if !root_or_skip("comm_filter_and_min_duration_in_the_kernel") {
        return;
    }
    let (binary, comm) = unique_binary("md");
    let collector = Collector::default();
    let config = TrackerConfig {
        comm: Some("sleep".into()),
        ..TrackerConfig::default()
    }
    .with_options(ProcessOptions {
        min_duration_ns: 300_000_000,
        ..ProcessOptions::default()
    });
    let handle = start(config, collector.clone());
    let short = Command::new("sleep").arg("0.05").status().unwrap();
    let long = Command::new("sleep").arg("0.4").spawn().unwrap();
    let long_pid = long.id();
    let other = Command::new(&binary).status().unwrap();
    assert!(short.success() && other.success());
    let mut long = long;
    long.wait().unwrap();
    collector.wait_for(SETTLE, |e| e.iter().any(|e| e.header.pid == long_pid));
    std::thread::sleep(Duration::from_millis(200));
    handle.stop().unwrap();

    // Only exits are reported with a minimum duration; other sleeps on the machine may
    // show up, but never a short one, and never another comm.
    let events = collector.events();
    assert!(
        events
            .iter()
            .all(|e| e.kind() == "exit" && e.header.comm.as_str() == "sleep"),
        "{events:?}"
    );
    assert!(events
        .iter()
        .all(|e| matches!(e.get("duration_ns"), Some(Value::U64(d)) if d >= 300_000_000)));
    assert_eq!(
        events.iter().filter(|e| e.header.pid == long_pid).count(),
        1
    );
    assert!(!events.iter().any(|e| e.header.comm.as_str() == comm));
}

#[test]
fn cgroup_filter_keeps_only_that_cgroup() {
    if !root_or_skip("cgroup_filter_keeps_only_that_cgroup") {
        return;
    }
    let dir = eunomia::container::v2_root()
        .expect("cgroup v2 is mounted")
        .join(format!("eunomia-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cgroup_id = std::os::linux::fs::MetadataExt::st_ino(&std::fs::metadata(&dir).unwrap());
    let collector = Collector::default();
    let handle = start(
        TrackerConfig {
            cgroup_ids: vec![cgroup_id],
            ..TrackerConfig::default()
        },
        collector.clone(),
    );
    let procs = dir.join("cgroup.procs");
    let script = format!("echo $$ > {}; exec /bin/sh -c 'exit 5'", procs.display());
    let mut inside = Command::new("/bin/sh")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let mut outside = Command::new("/bin/sh")
        .args(["-c", "exit 6"])
        .spawn()
        .unwrap();
    let (inside_pid, outside_pid) = (inside.id(), outside.id());
    assert_eq!(inside.wait().unwrap().code(), Some(5));
    assert_eq!(outside.wait().unwrap().code(), Some(6));
    collector.wait_for(SETTLE, |e| e.len() >= 2);
    std::thread::sleep(Duration::from_millis(200));
    handle.stop().unwrap();
    std::fs::remove_dir(&dir).unwrap();

    let events = collector.events();
    assert!(
        events.iter().all(|e| e.header.cgroup_id == cgroup_id),
        "{events:?}"
    );
    assert_eq!(kinds(&collector.of_pid(inside_pid)), ["exec", "exit"]);
    assert!(collector.of_pid(outside_pid).is_empty());
}

/// A handler too slow for the stream: the ring buffer overflows in the kernel, and every
/// lost event is counted, so seen + lost equals what happened.
struct Slow(Collector);

impl Handler<Event> for Slow {
    fn handle(&mut self, event: &Event) -> Flow {
        std::thread::sleep(Duration::from_millis(2));
        self.0.handle(event)
    }
}

#[test]
fn ring_buffer_overflow_is_counted_exactly() {
    if !root_or_skip("ring_buffer_overflow_is_counted_exactly") {
        return;
    }
    const RUNS: u64 = 300;
    let (binary, comm) = unique_binary("lo");
    let collector = Collector::default();
    let counters = Arc::new(Counters::default());
    // One page holds about 12 process events.
    let config = TrackerConfig {
        comm: Some(comm.clone()),
        ringbuf_bytes: 4096,
        ..TrackerConfig::default()
    };
    let handle = find_tracker("process")
        .unwrap()
        .start(config, Box::new(Slow(collector.clone())), counters.clone())
        .unwrap();
    for _ in 0..RUNS {
        assert!(Command::new(&binary).status().unwrap().success());
    }
    let stats = handle.stop().unwrap();
    assert!(
        stats.lost_kernel > 0,
        "the tiny ring buffer must overflow: {stats:?}"
    );
    assert_eq!(stats.seen + stats.lost_kernel, 2 * RUNS, "{stats:?}");
    assert_eq!(collector.events().len() as u64, stats.seen);
    assert_eq!(
        counters.lost_kernel.load(Ordering::Relaxed),
        stats.lost_kernel
    );
}
