//! Start-up tells the truth: tracefs mounted when missing, one-line errors for a missing
//! BTF or tracepoint (each case in its own mount namespace, so the host is untouched), and
//! every tracker loads and attaches on the running kernel.

mod common;

use std::process::{Command, Output};

use common::{root_or_skip, stderr};

/// Runs `script` under `sh` in a private mount namespace; `$EUNOMIA` is the binary.
fn in_mount_namespace(script: &str) -> Output {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("EUNOMIA", env!("CARGO_BIN_EXE_eunomia"))
        .output()
        .unwrap()
}

/// The last line of stderr: what the command said last (warnings, such as a missing
/// Docker engine, may come before it).
fn last_said(out: &Output) -> String {
    stderr(out)
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn tracefs_is_mounted_when_missing() {
    if !root_or_skip("tracefs_is_mounted_when_missing") {
        return;
    }
    let out = in_mount_namespace(
        "umount /sys/kernel/tracing 2>/dev/null; \
         test -d /sys/kernel/tracing/events && { echo still mounted; exit 9; }; \
         $EUNOMIA run process --duration 1 --pid 1 || exit $?; \
         test -d /sys/kernel/tracing/events || { echo not mounted; exit 8; }",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {} stderr: {}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("process: 0 events seen, 0 lost"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_tracepoint_is_named() {
    if !root_or_skip("missing_tracepoint_is_named") {
        return;
    }
    // A tracefs stand-in whose events/ knows no sched tracepoints.
    let out = in_mount_namespace("mount -t tmpfs none /sys/kernel/tracing && mkdir /sys/kernel/tracing/events && exec $EUNOMIA run process --duration 1");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        last_said(&out),
        "error: tracepoint sched:sched_process_exec does not exist on this kernel (no /sys/kernel/tracing/events/sched/sched_process_exec)"
    );
}

#[test]
fn missing_btf_is_a_one_line_error() {
    if !root_or_skip("missing_btf_is_a_one_line_error") {
        return;
    }
    let out = in_mount_namespace(
        "mount -t tmpfs none /sys/kernel/btf && exec $EUNOMIA run process --duration 1",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        last_said(&out),
        "error: this kernel has no BTF (/sys/kernel/btf/vmlinux is missing); eunomia needs CONFIG_DEBUG_INFO_BTF=y"
    );
}

/// Every registered tracker, in every setting of its enum and boolean options, loads and
/// attaches on the running kernel, and leaves nothing behind when stopped. The list comes
/// from the registry and each tracker's declared options, so a new tracker or option is
/// covered without editing this test.
#[test]
fn every_tracker_loads_and_attaches_on_this_kernel() {
    if !root_or_skip("every_tracker_loads_and_attaches_on_this_kernel") {
        return;
    }
    use eunomia::engine::TrackerConfig;
    use serde_json::{json, Map, Value};
    let mut covered = Vec::new();
    for tracker in eunomia::trackers::TRACKERS {
        let name = tracker.info().name;
        // Every combination of the options that switch programs on and off.
        let mut settings = vec![Map::new()];
        for option in tracker.options() {
            let values: Vec<Value> = match option.type_name.as_str() {
                "boolean" => vec![json!(false), json!(true)],
                "enum" => option.values.iter().map(|v| json!(v)).collect(),
                _ => continue,
            };
            settings = settings
                .into_iter()
                .flat_map(|base| {
                    let name = &option.name;
                    values.iter().map(move |value| {
                        let mut with = base.clone();
                        with.insert(name.clone(), value.clone());
                        with
                    })
                })
                .collect();
        }
        for options in settings {
            let what = format!("{name} ({})", Value::Object(options.clone()));
            // This test's own process: memleak traces one process only.
            let config = TrackerConfig {
                options,
                target_pid: Some(std::process::id()),
                ..TrackerConfig::default()
            };
            let handle = common::start_tracker(name, config, common::Collector::default());
            let progs = handle.prog_ids().to_vec();
            assert!(!progs.is_empty(), "{what} loaded no program");
            let linked: Vec<u32> = libbpf_rs::query::LinkInfoIter::default()
                .map(|link| link.prog_id)
                .collect();
            for prog in &progs {
                assert!(
                    linked.contains(prog),
                    "{what}: program {prog} is loaded but not attached"
                );
            }
            handle
                .stop()
                .unwrap_or_else(|e| panic!("{what} stops: {e}"));
            common::assert_unloaded(&progs, &what);
            covered.push(what);
        }
    }
    eprintln!("loaded and attached: {}", covered.join(", "));
    assert!(covered.len() >= eunomia::trackers::TRACKERS.len());
}
