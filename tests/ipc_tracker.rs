//! The ipc tracker against the real kernel (root): util-linux's ipcmk/ipcrm and a script
//! making every kind of call through the C library, checked against what they report.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::server::Server;
use common::{root_or_skip, start_tracker, Collector, TempDir};
use eunomia::engine::{TrackerConfig, TrackerHandle};
use eunomia::model::{Record, Value};
use eunomia::trackers::Event;
use serde_json::json;

const SETTLE: Duration = Duration::from_secs(5);
const IPC_CREAT: u64 = 0o1000;

fn start(collector: &Collector) -> TrackerHandle {
    start_tracker("ipc", TrackerConfig::default(), collector.clone())
}

/// Runs a command to success; returns its pid and standard output.
fn run(program: &str, args: &[&str]) -> (u32, String) {
    let child = Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{program} {args:?}: {output:?}");
    (pid, String::from_utf8(output.stdout).unwrap())
}

fn str_of<'a>(event: &'a Event, field: &str) -> &'a str {
    match event.get(field) {
        Some(Value::Str(s)) => s,
        other => panic!("{field} of {event:?} is {other:?}"),
    }
}

fn ops(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| str_of(e, "op")).collect()
}

/// The key of SysV object `id` as /proc/sysvipc/`table` shows it (signed decimal).
fn sysvipc_key(table: &str, id: i64) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/sysvipc/{table}")).unwrap();
    let key = text
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols[1].parse::<i64>() == Ok(id))
        .unwrap_or_else(|| panic!("id {id} in /proc/sysvipc/{table}"))[0];
    u64::from(key.parse::<i32>().unwrap() as u32)
}

#[test]
fn ipcmk_and_ipcrm_show_get_and_rmid_with_key_and_id() {
    if !root_or_skip("ipcmk_and_ipcrm_show_get_and_rmid_with_key_and_id") {
        return;
    }
    // (ipcmk option and argument, /proc/sysvipc table, ipcrm option, get op, ctl op)
    let kinds = [
        (["-Q", ""], "msg", "-q", "msgget", "msgctl"),
        (["-M", "4096"], "shm", "-m", "shmget", "shmctl"),
        (["-S", "1"], "sem", "-s", "semget", "semctl"),
    ];
    let collector = Collector::default();
    let handle = start(&collector);
    let mut runs = Vec::new();
    for (make, table, remove, get, ctl) in kinds {
        let args: Vec<&str> = make.into_iter().filter(|a| !a.is_empty()).collect();
        let (make_pid, out) = run("ipcmk", &args);
        // e.g. "Shared memory id: 3"
        let id: i64 = out.trim().rsplit(' ').next().unwrap().parse().unwrap();
        let key = sysvipc_key(table, id);
        let (remove_pid, _) = run("ipcrm", &[remove, &id.to_string()]);
        runs.push((make_pid, remove_pid, id, key, table, get, ctl));
    }
    let last_remover = runs.last().unwrap().1;
    collector.wait_for(SETTLE, |_| !collector.of_pid(last_remover).is_empty());
    let stats = handle.stop().unwrap();
    assert_eq!(stats.lost(), 0);

    for (make_pid, remove_pid, id, key, table, get, ctl) in runs {
        let made = collector.of_pid(make_pid);
        assert_eq!(ops(&made), [get], "ipcmk events: {made:?}");
        let made = &made[0];
        assert_eq!(made.kind(), table);
        assert_eq!(made.get("ret"), Some(Value::I64(id)));
        assert_eq!(made.get("id"), Some(Value::I64(id)));
        assert_eq!(made.get("key"), Some(Value::U64(key)));
        // ipcmk's default permissions.
        assert_eq!(made.get("flags"), Some(Value::U64(IPC_CREAT | 0o644)));
        assert_eq!(made.get("uid"), Some(Value::U64(0)));
        assert_eq!(made.get("gid"), Some(Value::U64(0)));
        assert_eq!(made.get("cmd"), Some(Value::Null));
        assert_eq!(made.get("name"), Some(Value::Null));
        let (size, nsems) = match table {
            "shm" => (Value::U64(4096), Value::Null),
            "sem" => (Value::Null, Value::U64(1)),
            _ => (Value::Null, Value::Null),
        };
        assert_eq!(made.get("size"), Some(size));
        assert_eq!(made.get("nsems"), Some(nsems));

        let removed = collector.of_pid(remove_pid);
        assert_eq!(ops(&removed), [ctl], "ipcrm events: {removed:?}");
        let removed = &removed[0];
        assert_eq!(removed.get("id"), Some(Value::I64(id)));
        assert_eq!(removed.get("cmd"), Some(Value::Str("IPC_RMID")));
        assert_eq!(removed.get("ret"), Some(Value::I64(0)));
        assert_eq!(removed.get("key"), Some(Value::Null));
    }
}

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs/ipc_calls.py");

/// The real python3 binary (PATH may hold a wrapper such as a pyenv shim, which would not
/// run under another name).
fn python_interpreter() -> String {
    let (_, out) = run(
        "python3",
        &[
            "-c",
            "import os, sys; print(os.path.realpath(sys.executable))",
        ],
    );
    out.trim().to_string()
}

/// Runs tests/programs/ipc_calls.py with `python` on POSIX queue `/queue`; returns the
/// script's pid and its `name=value` results.
fn run_script(python: &str, queue: &str) -> (u32, HashMap<String, i64>) {
    let (pid, out) = run(python, &[SCRIPT, &format!("/{queue}")]);
    let results = out
        .lines()
        .map(|line| {
            let (name, value) = line.split_once('=').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect();
    (pid, results)
}

#[test]
fn every_call_of_a_script_is_reported_with_its_arguments_and_result() {
    if !root_or_skip("every_call_of_a_script_is_reported_with_its_arguments_and_result") {
        return;
    }
    let queue = format!("eunomia-ipc-{}", std::process::id());
    let collector = Collector::default();
    let handle = start(&collector);
    let (pid, results) = run_script("python3", &queue);
    collector.wait_for(SETTLE, |_| {
        collector
            .of_pid(pid)
            .iter()
            .any(|e| e.get("op") == Some(Value::Str("shmctl")))
    });
    let stats = handle.stop().unwrap();
    assert_eq!(stats.lost(), 0);

    let events = collector.of_pid(pid);
    assert_eq!(
        ops(&events),
        [
            "mq_open",
            "mq_timedsend",
            "mq_timedreceive",
            "mq_unlink",
            "mq_unlink",
            "msgget",
            "msgsnd",
            "msgrcv",
            "msgctl",
            "semget",
            // glibc implements semop with semtimedop.
            "semtimedop",
            "semctl",
            "shmget",
            "shmat",
            "shmdt",
            "shmctl",
        ],
        "events of pid {pid}: {events:?}"
    );
    let field = |i: usize, name: &str| events[i].get(name).unwrap();
    let result = |name: &str| results[name];

    // POSIX queue; the C library drops the name's leading slash.
    let mqd = result("mqd");
    assert_eq!(field(0, "kind"), Value::Str("mq"));
    assert_eq!(field(0, "name"), Value::Str(&queue));
    let (o_rdwr, o_creat, o_excl) = (0o2, 0o100, 0o200);
    assert_eq!(field(0, "flags"), Value::U64(o_rdwr | o_creat | o_excl));
    assert_eq!(field(0, "ret"), Value::I64(mqd));
    assert_eq!(field(0, "id"), Value::I64(mqd));
    assert_eq!(
        (field(1, "id"), field(1, "size")),
        (Value::I64(mqd), Value::U64(5))
    );
    assert_eq!(field(1, "ret"), Value::I64(result("send")));
    assert_eq!(
        (field(2, "id"), field(2, "size")),
        (Value::I64(mqd), Value::U64(64))
    );
    assert_eq!(field(2, "ret"), Value::I64(5));
    assert_eq!(field(3, "name"), Value::Str(&queue));
    assert_eq!(field(3, "ret"), Value::I64(0));
    assert_eq!(field(3, "id"), Value::Null);
    assert_eq!(field(4, "ret"), Value::I64(-i64::from(libc::ENOENT)));

    // Message queue.
    let msqid = result("msqid");
    assert_eq!(field(5, "key"), Value::U64(0));
    assert_eq!(field(5, "flags"), Value::U64(IPC_CREAT | 0o600));
    assert_eq!(field(5, "id"), Value::I64(msqid));
    for i in 6..=8 {
        assert_eq!(field(i, "id"), Value::I64(msqid), "{:?}", events[i]);
    }
    assert_eq!(
        (field(6, "size"), field(6, "ret")),
        (Value::U64(10), Value::I64(0))
    );
    assert_eq!(
        (field(7, "size"), field(7, "ret")),
        (Value::U64(32), Value::I64(10))
    );
    assert_eq!(field(8, "cmd"), Value::Str("IPC_RMID"));

    // Semaphore set.
    let semid = result("semid");
    assert_eq!(
        (field(9, "id"), field(9, "nsems")),
        (Value::I64(semid), Value::U64(2))
    );
    assert_eq!(
        (field(10, "id"), field(10, "nsops")),
        (Value::I64(semid), Value::U64(1))
    );
    assert_eq!(
        (field(11, "id"), field(11, "cmd")),
        (Value::I64(semid), Value::Str("IPC_RMID"))
    );

    // Shared memory: shmat keeps the shmid and reports the address it attached at.
    let shmid = result("shmid");
    let addr = result("shmat") as u64;
    assert_eq!(
        (field(12, "id"), field(12, "size")),
        (Value::I64(shmid), Value::U64(8192))
    );
    assert_eq!(
        (field(13, "id"), field(13, "addr")),
        (Value::I64(shmid), Value::U64(addr))
    );
    assert_eq!(field(13, "ret"), Value::I64(addr as i64));
    assert_eq!(
        (field(14, "id"), field(14, "addr")),
        (Value::Null, Value::U64(addr))
    );
    assert_eq!(
        (field(15, "id"), field(15, "cmd")),
        (Value::I64(shmid), Value::Str("IPC_RMID"))
    );
    for event in &events {
        assert_eq!(event.get("uid"), Some(Value::U64(0)));
    }
}

/// Through the server, both stores: the calls per op, and bytes summed over the
/// message queue calls (msgsnd's 10 and msgrcv's 32).
#[test]
fn sessions_count_calls_per_op_and_sum_sizes() {
    if !root_or_skip("sessions_count_calls_per_op_and_sum_sizes") {
        return;
    }
    // A python3 under a name no other process has: its comm selects our calls only.
    let comm = format!("euipc{}", std::process::id() % 100_000);
    let dir = TempDir::new("ipc");
    let python = dir.join(&comm);
    std::os::unix::fs::symlink(python_interpreter(), &python).unwrap();

    let server = Server::start("ipc", None);
    for store in ["SQLITE", "MEMORY"] {
        let id = server.start_session(json!({
            "tracker": "ipc",
            "durationSecs": 120,
            "store": store,
            "filter": { "comm": comm },
        }));
        let queue = format!("eunomia-ipc-{}-{store}", std::process::id());
        run_script(python.to_str().unwrap(), &queue);
        assert_eq!(server.stop_session(&id), "STOPPED");
        let session = server.session(
            &id,
            r#"lostCount
               calls: aggregate(groupBy: ["op"]) { keys count }
               bytes: aggregate(groupBy: ["kind"], op: SUM, field: "size",
                                where: [{field: "kind", value: "msg"}]) { keys value }"#,
        );
        let what = format!("{store}: {session}");
        assert_eq!(session["lostCount"], 0, "{what}");
        let mut calls: Vec<(String, u64)> = session["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row["keys"][0].as_str().unwrap().to_string(),
                    row["count"].as_u64().unwrap(),
                )
            })
            .collect();
        calls.sort();
        let expected: Vec<(String, u64)> = [
            ("mq_open", 1),
            ("mq_timedreceive", 1),
            ("mq_timedsend", 1),
            ("mq_unlink", 2),
            ("msgctl", 1),
            ("msgget", 1),
            ("msgrcv", 1),
            ("msgsnd", 1),
            ("semctl", 1),
            ("semget", 1),
            ("semtimedop", 1),
            ("shmat", 1),
            ("shmctl", 1),
            ("shmdt", 1),
            ("shmget", 1),
        ]
        .into_iter()
        .map(|(op, n)| (op.to_string(), n))
        .collect();
        assert_eq!(calls, expected, "{what}");
        assert_eq!(
            session["bytes"],
            json!([{ "keys": ["msg"], "value": 42.0 }]),
            "{what}"
        );
    }
}

/// With a pid filter, only that process's calls are reported, though another process
/// makes the same call while the tracker runs.
#[test]
fn a_pid_filter_reports_only_that_process() {
    if !root_or_skip("a_pid_filter_reports_only_that_process") {
        return;
    }
    let chosen = common::Gated::spawn("ipcmk -Q");
    let pid = chosen.pid();
    let collector = Collector::default();
    let config = TrackerConfig {
        target_pid: Some(pid),
        ..TrackerConfig::default()
    };
    let handle = start_tracker("ipc", config, collector.clone());
    let (_, other) = run("ipcmk", &["-Q"]);
    let output = chosen.go();
    let stats = handle.stop().unwrap();
    assert_eq!(stats.lost(), 0);
    let ids: Vec<i64> = [output, other]
        .iter()
        .map(|out| out.trim().rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    for id in &ids {
        run("ipcrm", &["-q", &id.to_string()]);
    }
    let events = collector.events();
    assert_eq!(ops(&events), ["msgget"], "{events:?}");
    assert_eq!(events[0].header.pid, pid);
    assert_eq!(events[0].get("ret"), Some(Value::I64(ids[0])));
}
