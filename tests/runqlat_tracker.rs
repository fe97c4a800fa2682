//! The runqlat tracker against the real kernel (root): two shells spinning on one CPU take
//! turns, each waiting about a time slice while the other runs. Every time one gets the
//! CPU is an event, as many as bpftrace counts switches to them over the same window.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{root_or_skip, start_tracker, Collector, TempDir};
use eunomia::engine::TrackerConfig;
use eunomia::model::{Record, Value};

const MS: u64 = 1_000_000;

/// Two shells spinning on CPU 0 for a second, traced by runqlat with `options` (by their
/// comm, which `tag` makes the test's own): the tracker's events, the comm, and how many
/// times bpftrace saw them get the CPU.
fn spinners(tag: &str, options: serde_json::Value) -> (Vec<eunomia::trackers::Event>, String, u64) {
    let (comm, dir) = spinner_shell(tag);
    let collector = Collector::default();
    let handle = start_tracker(
        "runqlat",
        TrackerConfig {
            comm: Some(comm.clone()),
            options: options.as_object().unwrap().clone(),
            ..TrackerConfig::default()
        },
        collector.clone(),
    );
    let switches = spin(&comm, &dir);
    assert_eq!(handle.stop().unwrap().lost(), 0);
    (collector.events(), comm, switches)
}

/// A shell under a name of its own (per `tag`, by its first letter), whose comm picks out the spinners, in a
/// directory of its own.
fn spinner_shell(tag: &str) -> (String, TempDir) {
    let comm = format!("eurq{}{}", std::process::id() % 100_000, &tag[..1]);
    let dir = TempDir::new(&format!("runqlat-{tag}"));
    std::fs::copy("/bin/dash", dir.join(&comm)).unwrap();
    (comm, dir)
}

/// Spins two of `comm`'s shells (in `dir`) on CPU 0 for a second; returns how many times
/// bpftrace saw them get the CPU.
fn spin(comm: &str, dir: &TempDir) -> u64 {
    let shell = dir.join(comm);
    let script = format!(
        "tracepoint:sched:sched_switch /args->next_comm == \"{comm}\"/ {{ @switches = count(); }}"
    );
    // bpftrace runs the spinners itself (-c): it attaches, runs the command and prints
    // its count when the command ends, with no signal to time. Two shells spin on one CPU
    // for a second, then are killed.
    let spinner = format!("taskset -c 0 {} -c 'while :; do :; done'", shell.display());
    let script_file = dir.join("spin.sh");
    std::fs::write(
        &script_file,
        format!("{spinner} &\na=$!\n{spinner} &\nsleep 1\nkill $a $!\nwait\n"),
    )
    .unwrap();
    let spinners = format!("/bin/sh {}", script_file.display());
    let bpftrace = Command::new("bpftrace")
        .args(["-e", &script, "-c", &spinners])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Should bpftrace never end, the wait below ends anyway.
    let (pid, finished) = (bpftrace.id(), Arc::new(AtomicBool::new(false)));
    let watchdog = finished.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        if !watchdog.load(Ordering::Relaxed) {
            // SAFETY: kill on our own child's pid, which it keeps until reaped below.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let out = bpftrace.wait_with_output().unwrap();
    finished.store(true, Ordering::Relaxed);
    let rest = String::from_utf8_lossy(&out.stdout);
    rest.lines()
        .find_map(|l| l.strip_prefix("@switches: "))
        .unwrap_or_else(|| {
            panic!(
                "no count from bpftrace: {rest} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .trim()
        .parse()
        .unwrap()
}

fn u64_of(event: &eunomia::trackers::Event, field: &str) -> u64 {
    match event.get(field) {
        Some(Value::U64(v)) => v,
        other => panic!("{field}: {other:?}"),
    }
}

/// As many waits as bpftrace counted switches to the spinners, all theirs; taking turns on
/// one CPU, most waits after a preemption are the other's slice, a few ms, not µs. Each
/// event counts at its mean wait, `runs` times.
fn assert_turns_taken(events: &[eunomia::trackers::Event], comm: &str, switches: u64) {
    let runs: u64 = events.iter().map(|e| u64_of(e, "runs")).sum();
    assert_eq!(runs, switches, "bpftrace counted {switches} switches");
    assert!(events
        .iter()
        .all(|e| e.get("comm") == Some(Value::Str(comm))));
    let mut preempted: Vec<u64> = events
        .iter()
        .filter(|e| e.get("reason") == Some(Value::Str("preempted")))
        .flat_map(|e| {
            let runs = u64_of(e, "runs");
            std::iter::repeat_n(u64_of(e, "latency_ns") / runs, runs as usize)
        })
        .collect();
    assert!(preempted.len() >= 20, "{} preemptions", preempted.len());
    preempted.sort_unstable();
    let median = preempted[preempted.len() / 2];
    assert!(
        (MS / 2..=50 * MS).contains(&median),
        "median wait {median} ns"
    );
}

#[test]
fn two_spinners_on_one_cpu_wait_a_time_slice_each_turn() {
    if !root_or_skip("two_spinners_on_one_cpu_wait_a_time_slice_each_turn") {
        return;
    }
    let (events, comm, switches) = spinners("stream", serde_json::json!({ "mode": "stream" }));
    assert_turns_taken(&events, &comm, switches);
    assert!(events.iter().all(|e| e.get("cpu") == Some(Value::U64(0))));
}

/// In aggregate mode the kernel counts the same waits in fewer rows, one per interval,
/// reason and power-of-two bucket, each within its bucket.
#[test]
fn waits_counted_in_the_kernel_are_the_switches_bpftrace_sees() {
    if !root_or_skip("waits_counted_in_the_kernel_are_the_switches_bpftrace_sees") {
        return;
    }
    let (rows, comm, switches) = spinners("aggregate", serde_json::json!({ "interval_ms": 100 }));
    assert_turns_taken(&rows, &comm, switches);
    assert!((rows.len() as u64) < switches, "{} rows", rows.len());
    assert!(rows.iter().all(|e| e.get("cpu") == Some(Value::Null)));
}

/// `min_latency_us` leaves the shorter waits out in the kernel: with 1 ms every wait
/// reported is at least that long; with 10 s none of the switches bpftrace saw is.
#[test]
fn waits_below_min_latency_us_are_left_out() {
    if !root_or_skip("waits_below_min_latency_us_are_left_out") {
        return;
    }
    let (events, _, _) = spinners(
        "minimum",
        serde_json::json!({ "mode": "stream", "min_latency_us": 1000 }),
    );
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| u64_of(e, "latency_ns") >= MS));
    let (events, _, switches) = spinners(
        "ceiling",
        serde_json::json!({ "mode": "stream", "min_latency_us": 10_000_000 }),
    );
    assert!(switches > 0);
    assert_eq!(events.len(), 0);
}

/// Through the server, in both stores: a histogram of an aggregate-mode session counts
/// every wait bpftrace saw, in ascending buckets, and adds up to the latencies' SUM.
#[test]
fn sessions_answer_the_kernels_histogram_in_both_stores() {
    if !root_or_skip("sessions_answer_the_kernels_histogram_in_both_stores") {
        return;
    }
    let server = common::server::Server::start("runqlat", None);
    let (comm, dir) = spinner_shell("http");
    let ids: Vec<(&str, String)> = ["SQLITE", "MEMORY"]
        .into_iter()
        .map(|store| {
            let id = server.start_session(serde_json::json!({
                "tracker": "runqlat",
                // Stopped once the spinners are done: bpftrace's own start-up, seconds on a
                // loaded machine, must not push the spinning past the window.
                "durationSecs": 60,
                "store": store,
                "filter": { "comm": comm },
                "config": { "interval_ms": 200 },
            }));
            (store, id)
        })
        .collect();
    let switches = spin(&comm, &dir);
    for (store, id) in ids {
        // Stopping drains the kernel's last interval into the session.
        assert_eq!(server.stop_session(&id), "STOPPED");
        let session = server.session(
            &id,
            r#"lostCount
               histogram(field: "latency_ns") { count sum buckets { high count } }
               total: aggregate(groupBy: [], op: SUM, field: "latency_ns") { value count }"#,
        );
        assert_eq!(session["lostCount"], 0, "{store}: {session}");
        let histogram = &session["histogram"][0];
        assert_eq!(histogram["count"], switches, "{store}: {session}");
        assert_eq!(session["total"][0]["count"], switches, "{store}: {session}");
        assert_eq!(
            histogram["sum"], session["total"][0]["value"],
            "{store}: {session}"
        );
        let buckets = histogram["buckets"].as_array().unwrap();
        let counted: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
        assert_eq!(counted, switches, "{store}: {session}");
        let highs: Vec<f64> = buckets
            .iter()
            .map(|b| b["high"].as_f64().unwrap())
            .collect();
        assert!(highs.windows(2).all(|w| w[0] < w[1]), "{store}: {session}");
    }
}

/// A cgroup filter picks the task that got the CPU by its own cgroup: a shell in a cgroup
/// of the test's, woken each time its `sleep` ends, is seen; one beside it is not. (No
/// spinning: the other tests here count CPU 0's switches.)
#[test]
fn the_cgroup_filter_keeps_the_tasks_of_that_cgroup() {
    if !root_or_skip("the_cgroup_filter_keeps_the_tasks_of_that_cgroup") {
        return;
    }
    let dir = eunomia::container::v2_root()
        .expect("cgroup v2 is mounted")
        .join(format!("eunomia-runqlat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cgroup_id = std::os::linux::fs::MetadataExt::st_ino(&std::fs::metadata(&dir).unwrap());
    let collector = Collector::default();
    let handle = start_tracker(
        "runqlat",
        TrackerConfig {
            cgroup_ids: vec![cgroup_id],
            ..TrackerConfig::default()
        },
        collector.clone(),
    );
    let spinner = "exec taskset -c 0 /bin/sh -c 'while :; do :; done'";
    let inside_script = format!(
        "echo $$ > {}; {spinner}",
        dir.join("cgroup.procs").display()
    );
    let mut inside = Command::new("/bin/sh")
        .args(["-c", &inside_script])
        .spawn()
        .unwrap();
    let mut beside = Command::new("/bin/sh")
        .args(["-c", spinner])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    for child in [&mut inside, &mut beside] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert_eq!(handle.stop().unwrap().lost(), 0);
    std::fs::remove_dir(&dir).unwrap();
    let events = collector.events();
    let of = |pid: u32| events.iter().filter(|e| e.header.pid == pid).count();
    assert!(of(inside.id()) > 0, "no event of the shell in the cgroup");
    assert_eq!(of(beside.id()), 0);
    assert!(events.iter().all(|e| e.header.cgroup_id == cgroup_id));
}
