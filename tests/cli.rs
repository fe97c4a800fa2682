//! The `eunomia` command line: bad input exits 2, and `run` prints what happened.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{root_or_skip, unique_binary};

fn eunomia(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eunomia"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `eunomia args` and, once it is tracing, executes `binary` `times` times.
fn run_while_executing(args: &[&str], binary: &std::path::Path, times: usize) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_eunomia"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..times {
        assert!(Command::new(binary).status().unwrap().success());
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    out
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["run", "nosuch"], "invalid value 'nosuch'"),
        (&["run", "process", "--duration", "0"], "0 is not in 1.."),
        (
            &["run", "process", "--duration", "-3"],
            "unexpected argument '-3'",
        ),
        (
            &["run", "process", "--duration", "soon"],
            "invalid value 'soon'",
        ),
        (&["run", "process", "--pid", "abc"], "invalid value 'abc'"),
        (
            &["run", "process", "--format", "xml"],
            "invalid value 'xml'",
        ),
        (
            &["run", "process", "--where", "nope == 1"],
            "unknown field `nope`",
        ),
        (
            &["run", "process", "--where", "pid == x"],
            "field `pid` is numeric but `x` is not a number",
        ),
        (
            &["run", "process", "--group-by", "comm,bogus"],
            "cannot group by `bogus`",
        ),
        (
            &["run", "process", "--comm", "a-name-longer-than-15"],
            "comm must be 1 to 15 bytes",
        ),
        (
            &["run", "process", "--mode", "stream"],
            "option `mode` does not apply to the process tracker",
        ),
        (
            &["run", "process", "--file-types", "tape"],
            "invalid value 'tape'",
        ),
        (&["fields", "nosuch"], "invalid value 'nosuch'"),
    ];
    for (args, message) in cases {
        let out = eunomia(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(message),
            "{args:?}: expected `{message}` in: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    }
}

#[test]
fn trackers_lists_each_with_a_description() {
    let out = eunomia(&["trackers"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("process "))
        .expect("process is listed");
    assert!(line.contains("exec and exit"), "{line}");

    let fields = String::from_utf8(eunomia(&["fields", "process"]).stdout).unwrap();
    let names: Vec<&str> = fields
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names[..6], ["tracker", "kind", "ts", "pid", "ppid", "comm"]);
    assert!(names.contains(&"exit_code") && names.contains(&"duration_ns"));
}

#[test]
fn run_prints_json_lines_and_a_summary() {
    if !root_or_skip("run_prints_json_lines_and_a_summary") {
        return;
    }
    let (binary, comm) = unique_binary("cli");
    let out = run_while_executing(
        &[
            "run",
            "process",
            "--duration",
            "3",
            "--format",
            "json",
            "--comm",
            &comm,
        ],
        &binary,
        5,
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 10, "{lines:?}");
    let execs: Vec<&serde_json::Value> = lines.iter().filter(|l| l["kind"] == "exec").collect();
    let exits: Vec<&serde_json::Value> = lines.iter().filter(|l| l["kind"] == "exit").collect();
    assert_eq!((execs.len(), exits.len()), (5, 5));
    for line in &lines {
        assert_eq!(line["tracker"], "process");
        assert_eq!(line["comm"], comm.as_str());
        assert_eq!(line["ppid"].as_u64(), Some(u64::from(std::process::id())));
        for key in [
            "ts",
            "pid",
            "ppid",
            "comm",
            "filename",
            "exit_code",
            "duration_ns",
            "cgroup_id",
            "user_ns",
            "pid_ns",
            "mnt_ns",
        ] {
            assert!(line.get(key).is_some(), "{key} missing in {line}");
        }
        assert!(line["ts"].as_str().unwrap().ends_with('Z'));
    }
    assert!(execs
        .iter()
        .all(|e| e["filename"] == binary.to_str().unwrap()));
    assert!(exits
        .iter()
        .all(|e| e["exit_code"] == 0 && e["duration_ns"].as_u64().unwrap() > 0));
    let summary = stderr(&out);
    assert!(
        summary.contains("process: 10 events seen, 0 lost (kernel 0, channel 0, malformed 0)"),
        "{summary}"
    );
}

#[test]
fn run_aggregates_and_prints_csv() {
    if !root_or_skip("run_aggregates_and_prints_csv") {
        return;
    }
    let (binary, comm) = unique_binary("agg");
    let filter = format!("comm == {comm}");
    let out = run_while_executing(
        &[
            "run",
            "process",
            "--duration",
            "3",
            "--format",
            "csv",
            "--where",
            &filter,
            "--group-by",
            "kind,comm",
        ],
        &binary,
        4,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.remove(0), "kind,comm,count");
    lines.sort();
    assert_eq!(lines, [format!("exec,{comm},4"), format!("exit,{comm},4")]);
}

#[test]
fn not_root_is_a_one_line_error() {
    if !root_or_skip("not_root_is_a_one_line_error") {
        return;
    }
    // Run as nobody from a copy nobody may execute.
    let copy = std::env::temp_dir().join(format!("eunomia-nobody-{}", std::process::id()));
    std::fs::copy(env!("CARGO_BIN_EXE_eunomia"), &copy).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&copy)
        .args(["run", "process", "--duration", "1"])
        .output()
        .unwrap();
    std::fs::remove_file(&copy).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        "error: eunomia must run as root: it loads eBPF programs (effective uid is 65534)"
    );
}
