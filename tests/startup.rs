//! Start-up tells the truth: tracefs mounted when missing, one-line errors for a missing
//! BTF or tracepoint. Each case runs in its own mount namespace, so the host is untouched.

mod common;

use std::process::{Command, Output};

use common::root_or_skip;

/// Runs `script` under `sh` in a private mount namespace; `$EUNOMIA` is the binary.
fn in_mount_namespace(script: &str) -> Output {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("EUNOMIA", env!("CARGO_BIN_EXE_eunomia"))
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
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
        stderr(&out).trim(),
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
        stderr(&out).trim(),
        "error: this kernel has no BTF (/sys/kernel/btf/vmlinux is missing); eunomia needs CONFIG_DEBUG_INFO_BTF=y"
    );
}

/// probes/vmlinux.h is generated; it must be what `make vmlinux` makes on this kernel.
#[test]
fn vmlinux_header_matches_the_running_kernel() {
    if !root_or_skip("vmlinux_header_matches_the_running_kernel") {
        return;
    }
    let out = Command::new("bpftool")
        .args([
            "btf",
            "dump",
            "file",
            "/sys/kernel/btf/vmlinux",
            "format",
            "c",
        ])
        .output()
        .expect("bpftool is installed (make deps)");
    assert!(out.status.success(), "{}", stderr(&out));
    let committed =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/probes/vmlinux.h")).unwrap();
    assert!(
        out.stdout == committed,
        "probes/vmlinux.h differs from this kernel's BTF: run `make vmlinux` and commit it"
    );
}
