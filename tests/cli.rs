//! The `eunomia` command line: bad input exits 2, and `run` prints what happened.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{eunomia, root_or_skip, stderr, unique_binary};

/// What `eunomia` printed while `binary` ran: its output, the binary's pids, and how long
/// the executions took from the first fork to the last reap.
struct Executed {
    out: Output,
    pids: Vec<u64>,
    executing: Duration,
}

/// Runs `eunomia args` and, once it says it is tracing, executes `binary` `times` times.
fn run_while_executing(args: &[&str], binary: &std::path::Path, times: usize) -> Executed {
    run_while_executing_in(&[], args, binary, times)
}

/// [`run_while_executing`] with `env` added to eunomia's environment.
fn run_while_executing_in(
    env: &[(&str, &str)],
    args: &[&str],
    binary: &std::path::Path,
    times: usize,
) -> Executed {
    let run = common::CliRun::start(args, env);
    let started = Instant::now();
    let pids = (0..times)
        .map(|_| {
            let mut child = Command::new(binary).spawn().unwrap();
            assert!(child.wait().unwrap().success());
            u64::from(child.id())
        })
        .collect();
    let executing = started.elapsed();
    let out = run.finish();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    Executed {
        out,
        pids,
        executing,
    }
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    // Pids are below pid_max: none has this one.
    let no_pid = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .to_string();
    let no_such_process = format!("--pid {no_pid}: no such process");
    let cases: &[(&[&str], &str)] = &[
        (&["run", "nosuch"], "invalid value 'nosuch'"),
        (
            &["run", "process", "--duration", "0"],
            "must be more than 0 and at most 31536000 s",
        ),
        (&["run", "process", "-d", "5x"], "unknown unit `x`: use ms, s, m or h"),
        (&["run", "process", "-p", &no_pid], &no_such_process),
        (
            &["run", "process", "--format", "json", "--columns", "pid"],
            "--columns chooses the text table's columns",
        ),
        (&["serve", "--listen", "localhost"], "not HOST:PORT"),
        (
            &["run", "process", "-o", "xml"],
            "-o takes json, csv, text or columns=F1,F2, got `xml`",
        ),
        (&["run", "process", "-o", "csv", "--format", "json"], "cannot be used with"),
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
            &["run", "process", "--op", "sum", "--field", "pid"],
            "the following required arguments were not provided",
        ),
        (
            &["run", "process", "--group-by", "comm", "--op", "p99"],
            "p99 needs a numeric field to apply to",
        ),
        (
            &["run", "process", "--group-by", "comm", "--op", "sum", "--field", "filename"],
            "cannot apply sum to `filename`: it is not a numeric field",
        ),
        (
            &["run", "syscall", "--group-by", "syscall", "--op", "p99", "--field", "latency_ns"],
            "would be one of interval sums, not of calls",
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
            &["run", "syscall", "--min-duration-ms", "5"],
            "option `min_duration_ns` does not apply to the syscall tracker (it takes: mode, interval_ms, latency, seccomp_only, first_args)",
        ),
        (
            &["run", "process", "--file-types", "tape"],
            "invalid value 'tape'",
        ),
        (&["fields", "nosuch"], "invalid value 'nosuch'"),
        (&["run", "syscall", "--opt", "mode"], "--opt takes KEY=VALUE, got `mode`"),
        (
            &["run", "syscall", "--opt", "mode=firehose"],
            "unknown variant `firehose`, expected `aggregate` or `stream`",
        ),
        (
            &["run", "syscall", "--mode", "stream", "--opt", "mode=aggregate"],
            "option `mode` is given twice",
        ),
        (
            &["run", "files", "--opt", "file_types=regular,tape"],
            "unknown variant `tape`",
        ),
        (
            &["run", "tcp", "--opt", "bogus=1"],
            "option `bogus` does not apply to the tcp tracker (it takes: none)",
        ),
        (
            &["run", "syscall", "--opt", "interval_ms=5"],
            "interval_ms must be between 10 and 3600000, got 5",
        ),
        (&["options", "nosuch"], "invalid value 'nosuch'"),
        (
            &["run", "process", "--duration", "9223372036854775000"],
            "invalid value '9223372036854775000' for '--duration <DURATION>': must be more than 0 and at most 31536000 s (a year)",
        ),
        (
            &["run", "process", "--where", "comm === sh"],
            "filter `comm === sh` has more than one operator",
        ),
        (
            &["run", "process", "--where", "comm = sh"],
            "filter `comm = sh` compares with `=`; equality is `==`",
        ),
        (
            &["run", "process", "--pipeline", r#"[{"type": "print", "format": "xml"}]"#],
            "--pipeline: unknown variant `xml`",
        ),
        (
            &["run", "process", "--pipeline", r#"[{"type": "aggregate", "group_by": ["nope"]}]"#],
            "cannot group by `nope`",
        ),
        (
            &[
                "run",
                "syscall",
                "--pipeline",
                r#"[{"type": "tee", "branches": [[{"type": "print", "format": "json"}],
                    [{"type": "aggregate", "group_by": ["syscall"], "op": "p99", "field": "latency_ns"},
                     {"type": "print", "format": "csv"}]]}]"#,
            ],
            "P99 of `latency_ns` is refused",
        ),
        (&["run", "process", "--interval", "5"], "--group-by"),
        (
            &["run", "process", "--group-by", "comm", "--interval", "0"],
            "must be more than 0",
        ),
        (
            &[
                "run",
                "process",
                "--pipeline",
                r#"[{"type": "aggregate", "group_by": ["comm"], "period_ms": 0}]"#,
            ],
            "period_ms must be at least 1",
        ),
        (
            &["run", "process", "--pipeline", "@/nonexistent/eunomia-pipeline.json"],
            "--pipeline @/nonexistent/eunomia-pipeline.json: No such file or directory",
        ),
        (
            &["run", "process", "--pipeline", "[]", "--group-by", "comm"],
            "cannot be used with",
        ),
        // `session` refuses before it asks any server.
        (
            &["session", "start", "process", "-d", "1.5"],
            "--duration: a session lasts whole seconds, got 1.5s",
        ),
        (
            &["session", "start", "process", "-d", "5", "--cgroup-id", "1", "--cgroup-id", "2"],
            "a session filters on one --cgroup-id",
        ),
        (&["session", "start", "process"], "--duration <DURATION>"),
        (
            &["session", "list", "--server", "ftp://127.0.0.1"],
            "--server takes an http:// or https:// URL, got `ftp://127.0.0.1`",
        ),
        (&["session", "list", "--token", "secret"], "unexpected argument '--token'"),
        (
            &["session", "list", "--token-file", "/nonexistent/eunomia-token"],
            "--token-file /nonexistent/eunomia-token: No such file or directory",
        ),
        (
            &["session", "list", "--ca-file", "/nonexistent/ca.pem"],
            "--ca-file /nonexistent/ca.pem: No such file or directory",
        ),
        (&["session", "list", "--status", "ended"], "invalid value 'ended'"),
        (
            &["session", "list", "--columns", "id,nope"],
            "unknown column `nope`; a session's: id, tracker, label, status, started,",
        ),
        (&["session", "list", "-o", "xml"], "-o takes json, csv, text or columns=F1,F2"),
        (&["session", "show", "x", "--limit", "3"], "--events"),
        (
            &["session", "show", "x", "--where", "kind == exec"],
            "--where chooses events: give --events or --group-by too",
        ),
    ];
    for (args, message) in cases {
        let out = eunomia(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).lines().count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(message),
            "{args:?}: expected `{message}` in: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    }
}

/// `trackers` lists every registered tracker with its description, in catalog order, and
/// `fields` each one's fields with their types, in order.
#[test]
fn trackers_and_fields_list_the_whole_registry() {
    let out = eunomia(&["trackers"]);
    assert!(out.status.success());
    let listed: Vec<(String, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (name, description) = line.split_once(' ').unwrap();
            (name.to_string(), description.trim().to_string())
        })
        .collect();
    let registry: Vec<(String, String)> = eunomia::trackers::TRACKERS
        .iter()
        .map(|t| (t.info().name.to_string(), t.info().description.to_string()))
        .collect();
    assert_eq!(listed, registry);

    for tracker in eunomia::trackers::TRACKERS {
        let info = tracker.info();
        let out = eunomia(&["fields", info.name]);
        assert!(out.status.success());
        let fields: Vec<(String, String)> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|line| {
                let mut words = line.split_whitespace();
                let (name, ty) = (words.next().unwrap(), words.next().unwrap());
                (name.to_string(), ty.to_string())
            })
            .collect();
        let expected: Vec<(String, String)> = info
            .all_fields()
            .map(|f| (f.name.to_string(), format!("{:?}", f.ty).to_lowercase()))
            .collect();
        assert_eq!(fields, expected, "{}", info.name);
    }
}

/// `options` lists each tracker's declared options in order, with type, default and
/// description, as the registry describes them.
#[test]
fn options_lists_each_trackers_own_options() {
    for tracker in eunomia::trackers::TRACKERS {
        let name = tracker.info().name;
        let out = eunomia(&["options", name]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let listed: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|line| line.split_whitespace().next().unwrap().to_string())
            .collect();
        let declared: Vec<String> = tracker.options().into_iter().map(|o| o.name).collect();
        assert_eq!(listed, declared, "{name}");
    }
    let lines = |tracker| -> Vec<Vec<String>> {
        String::from_utf8(eunomia(&["options", tracker]).stdout)
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().take(4).map(String::from).collect())
            .collect()
    };
    assert_eq!(
        lines("syscall"),
        [
            ["mode", "aggregate|stream", "default", "\"aggregate\""],
            ["interval_ms", "integer", "default", "1000"],
            ["latency", "boolean", "default", "null"],
            ["seccomp_only", "boolean", "default", "false"],
            ["first_args", "boolean", "default", "false"],
        ]
    );
    assert_eq!(
        lines("files"),
        [
            ["interval_ms", "integer", "default", "1000"],
            [
                "file_types",
                "[regular|socket|pipe|other]",
                "default",
                "[\"regular\"]"
            ],
            ["opens", "aggregate|stream", "default", "\"aggregate\""],
            ["io", "boolean", "default", "true"],
        ]
    );
    assert_eq!(
        lines("process"),
        [
            ["min_duration_ns", "integer", "default", "0"],
            ["failed_execs", "boolean", "default", "false"],
            ["cwd", "boolean", "default", "false"],
            ["exec_details", "boolean", "default", "false"],
        ]
    );
    assert!(lines("tcp").is_empty());
}

/// `--opt` reaches the tracker: stream mode without latency reports each call, untimed,
/// exactly one exit_group per run of the program.
#[test]
fn run_takes_tracker_options_generically() {
    if !root_or_skip("run_takes_tracker_options_generically") {
        return;
    }
    let (binary, comm) = unique_binary("opt");
    let Executed { out, .. } = run_while_executing(
        &[
            "run",
            "syscall",
            "--duration",
            "3",
            "--format",
            "json",
            "--comm",
            &comm,
            "--opt",
            "mode=stream",
            "--opt",
            "latency=false",
        ],
        &binary,
        3,
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.len() > 3 * 10,
        "a run of true makes dozens of calls: {lines:?}"
    );
    for line in &lines {
        assert_eq!(line["kind"], "call", "{line}");
        assert_eq!(line["count"], 1, "{line}");
        assert!(line["latency_ns"].is_null(), "{line}");
    }
    let exits = lines
        .iter()
        .filter(|l| l["syscall"] == "exit_group")
        .count();
    assert_eq!(exits, 3);
}

#[test]
fn run_prints_json_lines_and_a_summary() {
    if !root_or_skip("run_prints_json_lines_and_a_summary") {
        return;
    }
    let (binary, comm) = unique_binary("cli");
    let Executed {
        out,
        pids,
        executing,
    } = run_while_executing(
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
    // One exec and one exit per run, in order.
    let of = |events: &[&serde_json::Value]| -> Vec<u64> {
        events.iter().map(|e| e["pid"].as_u64().unwrap()).collect()
    };
    assert_eq!((of(&execs), of(&exits)), (pids.clone(), pids.clone()));
    for line in &lines {
        assert_eq!(line["tracker"], "process");
        assert_eq!(line["comm"], comm.as_str());
        assert_eq!(line["ppid"].as_u64(), Some(u64::from(std::process::id())));
        // The binary ran in this test's namespaces and cgroup.
        for ns in ["user", "pid", "mnt"] {
            assert_eq!(
                line[format!("{ns}_ns")].as_u64(),
                Some(common::own_namespace(ns)),
                "{ns} in {line}"
            );
        }
        assert_eq!(
            line["cgroup_id"].as_u64(),
            Some(common::own_cgroup_id()),
            "{line}"
        );
        assert!(pids.contains(&line["pid"].as_u64().unwrap()), "{line}");
        assert!(line["ts"].as_str().unwrap().ends_with('Z'));
    }
    assert!(execs
        .iter()
        .all(|e| e["filename"] == binary.to_str().unwrap()));
    // Exec to exit fits in the executions' wall time; an exec takes 10 µs at least.
    for exit in &exits {
        assert_eq!(exit["exit_code"], 0);
        let duration = exit["duration_ns"].as_u64().unwrap();
        assert!(
            duration >= 10_000 && duration < executing.as_nanos() as u64,
            "{duration} ns within {executing:?}"
        );
    }
    let summary = stderr(&out);
    assert!(
        summary.contains("process: 10 events seen, 0 lost (kernel 0, channel 0, malformed 0)"),
        "{summary}"
    );
    assert!(
        !summary.contains("Tracing"),
        "stdout is no terminal: {summary}"
    );
}

/// At a terminal, `run` says it is tracing and how to end it; the table follows.
#[test]
fn run_at_a_terminal_says_how_to_end_it() {
    if !root_or_skip("run_at_a_terminal_says_how_to_end_it") {
        return;
    }
    // util-linux's `script` runs the command on a pseudo-terminal and copies what it shows.
    let command = format!(
        "{} run process -d 1 --comm eunomia-nothing",
        env!("CARGO_BIN_EXE_eunomia")
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    let lines: Vec<&str> = shown.lines().map(str::trim_end).collect();
    assert!(
        lines.contains(&"Tracing process for 1.0 s... Ctrl-C to end."),
        "{shown}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("process: 0 events seen, 0 lost")),
        "{shown}"
    );
}

#[test]
fn run_aggregates_and_prints_csv() {
    if !root_or_skip("run_aggregates_and_prints_csv") {
        return;
    }
    let (binary, comm) = unique_binary("agg");
    let filter = format!("comm == {comm}");
    let Executed { out, .. } = run_while_executing(
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

/// `--histogram` prints libbpf-tools' power-of-two table when the run ends: one row per
/// bucket, consecutive from the lowest to the highest with a value, whose counts add up
/// to the exits.
#[test]
fn histogram_counts_every_value_in_its_power_of_two_row() {
    if !root_or_skip("histogram_counts_every_value_in_its_power_of_two_row") {
        return;
    }
    let (binary, comm) = unique_binary("hst");
    let filter = format!("comm == {comm}");
    let args = |extra: &[&'static str]| -> Vec<String> {
        [
            "run",
            "process",
            "--duration",
            "3",
            "--where",
            &filter,
            "--where",
            "kind == exit",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain(extra.iter().map(|a| a.to_string()))
        .collect()
    };
    let histogram_args = args(&["--histogram", "duration_ns"]);
    let histogram_args: Vec<&str> = histogram_args.iter().map(String::as_str).collect();
    let Executed { out, .. } = run_while_executing(&histogram_args, &binary, 6);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["duration_ns", ":", "count", "distribution"]
    );
    let rows: Vec<(u64, u64, u64)> = lines
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert_eq!((words[1], words[3]), ("->", ":"), "{line}");
            let n = |i: usize| words[i].parse::<u64>().unwrap();
            (n(0), n(2), n(4))
        })
        .collect();
    assert_eq!(rows.iter().map(|r| r.2).sum::<u64>(), 6, "{text}");
    // Consecutive powers of two, the first and last rows holding values.
    for pair in rows.windows(2) {
        assert_eq!(pair[1].0, pair[0].1 + 1, "{text}");
    }
    assert!(rows[0].2 > 0 && rows[rows.len() - 1].2 > 0, "{text}");
    for &(low, high, _) in &rows {
        assert!(
            low.is_power_of_two() && (high + 1).is_power_of_two(),
            "{text}"
        );
    }
}

/// A `--pipeline` assembles the seed's handler chain at run time: one branch prints every
/// exec as JSON, the other counts events per kind as CSV, both from one run.
#[test]
fn run_assembles_a_pipeline_from_stages() {
    if !root_or_skip("run_assembles_a_pipeline_from_stages") {
        return;
    }
    let (binary, comm) = unique_binary("pipe");
    let pipeline = format!(
        r#"[{{"type": "filter", "where": ["comm == {comm}"]}},
            {{"type": "tee", "branches": [
              [{{"type": "filter", "where": ["kind == exec"]}}, {{"type": "print", "format": "json"}}],
              [{{"type": "aggregate", "group_by": ["kind"]}}, {{"type": "print", "format": "csv"}}]]}}]"#
    );
    let Executed { out, pids, .. } = run_while_executing(
        &["run", "process", "--duration", "3", "--pipeline", &pipeline],
        &binary,
        3,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (json, csv): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| l.starts_with('{'));
    let exec_pids: Vec<u64> = json
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .inspect(|e| assert_eq!(e["kind"], "exec", "{e}"))
        .map(|e| e["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(exec_pids, pids);
    let mut csv = csv;
    csv.sort();
    assert_eq!(csv, ["exec,3", "exit,3", "kind,count"]);
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

/// `-o columns=F1,F2` prints a text table of those columns.
#[test]
fn dash_o_chooses_the_columns() {
    if !root_or_skip("dash_o_chooses_the_columns") {
        return;
    }
    let (binary, comm) = unique_binary("cols");
    let filter = format!("comm == {comm}");
    let Executed { out, .. } = run_while_executing(
        &[
            "run",
            "process",
            "-d",
            "2",
            "--where",
            &filter,
            "-o",
            "columns=kind,comm",
        ],
        &binary,
        2,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let (exec, exit) = (vec!["exec", comm.as_str()], vec!["exit", comm.as_str()]);
    assert_eq!(
        lines,
        [vec!["KIND", "COMM"], exec.clone(), exit.clone(), exec, exit],
        "{text}"
    );
}

/// `serve --listen` takes a host name: `localhost:0` listens on a loopback address.
#[test]
fn serve_listens_on_a_named_host() {
    use std::io::BufRead;
    let dir = common::TempDir::new("listen");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eunomia"))
        .args(["serve", "--listen", "localhost:0", "--db"])
        .arg(dir.join("eunomia.db"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Warnings (no Docker engine here) may come first.
    let line = std::io::BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .find(|line| line.starts_with("eunomia: listening on "))
        .expect("the server says where it listens");
    child.kill().unwrap();
    child.wait().unwrap();
    let url = line
        .strip_prefix("eunomia: listening on http://")
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        url.starts_with("127.0.0.1:") || url.starts_with("[::1]:"),
        "{line}"
    );
}

/// `run` leaves its own process out of what it traces (its threads would report their own
/// polling and printing) unless `--include-self` asks for it.
#[test]
fn run_leaves_its_own_process_out_unless_asked() {
    if !root_or_skip("run_leaves_its_own_process_out_unless_asked") {
        return;
    }
    for include_self in [false, true] {
        let mut args = vec![
            "run",
            "syscall",
            "-d",
            "1s",
            "--interval-ms",
            "100",
            "-o",
            "json",
        ];
        if include_self {
            args.push("--include-self");
        }
        let child = Command::new(env!("CARGO_BIN_EXE_eunomia"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = u64::from(child.id());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let own: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .filter(|event| event["pid"].as_u64() == Some(pid))
            .map(|event| event["syscall"].as_str().unwrap().to_string())
            .collect();
        if include_self {
            // Each drain reads the kernel's maps with bpf(2).
            assert!(own.iter().any(|s| s == "bpf"), "{own:?}");
        } else {
            assert!(own.is_empty(), "its own calls: {own:?}");
        }
    }
}

/// `--group-by` on syscall totals counts calls, not the per-interval rows they come in:
/// a program's 20,000 getppid calls read 20,000, as `strace -c` counts them; `--op sum
/// --field errors` gives its 5 failed openat of 42.
#[test]
fn group_by_counts_calls_not_rows() {
    if !root_or_skip("group_by_counts_calls_not_rows") {
        return;
    }
    const CALLS: u64 = 20_000;
    const OPENS: u64 = 42;
    const FAILED: u64 = 5;
    let load = [CALLS, OPENS, FAILED];
    let (binary, comm) = common::syscall_load("grp");
    let strace = common::strace_counts(&binary, &load);
    assert_eq!(strace["getppid"].0, CALLS);
    assert_eq!(strace["openat"].1, FAILED);
    let run = common::CliRun::start(
        &[
            "run",
            "syscall",
            "-d",
            "2.5",
            "--interval-ms",
            "100",
            "-c",
            &comm,
            "-o",
            "csv",
            "--group-by",
            "syscall",
            "--op",
            "sum",
            "--field",
            "errors",
        ],
        &[],
    );
    let status = Command::new(&*binary)
        .args(load.map(|n| n.to_string()))
        .status()
        .unwrap();
    assert!(status.success());
    let out = run.finish();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().next(),
        Some("syscall,count,sum_errors"),
        "{text}"
    );
    let row = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name},")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_string()
    };
    assert_eq!(row("getppid"), format!("getppid,{CALLS},0"));
    let opens = strace["openat"].0;
    assert_eq!(row("openat"), format!("openat,{opens},{FAILED}"));
}

/// The default text table leaves out the fields no event of the run has: a process run
/// without failed execs has no `error`, aggregate-mode syscall totals no `ret` and,
/// untimed, no `latency_ns`.
#[test]
fn default_columns_leave_out_fields_no_event_has() {
    if !root_or_skip("default_columns_leave_out_fields_no_event_has") {
        return;
    }
    let (binary, comm) = unique_binary("empty");
    let header = |tracker: &str, extra: &[&str]| -> Vec<String> {
        let mut args = vec!["run", tracker, "-d", "2", "--comm", &comm];
        args.extend_from_slice(extra);
        let Executed { out, .. } = run_while_executing(&args, &binary, 1);
        let text = String::from_utf8(out.stdout).unwrap();
        let first = text.lines().next().unwrap_or_default();
        first.split_whitespace().map(str::to_string).collect()
    };
    let who = ["TS", "KIND", "PID", "PPID", "COMM"];
    let with =
        |own: &[&str]| -> Vec<String> { who.iter().chain(own).map(|s| s.to_string()).collect() };
    let process = [
        "FILENAME",
        "UID",
        "GID",
        "EXIT_CODE",
        "SIGNAL",
        "CORE_DUMPED",
        "DURATION_NS",
    ];
    assert_eq!(header("process", &[]), with(&process));
    let mut failed = process.to_vec();
    failed.insert(3, "ERROR");
    assert_eq!(
        header("process", &["--opt", "failed_execs=true"]),
        with(&failed)
    );
    let totals = ["SYSCALL", "SYSCALL_ID", "COUNT", "ERRORS"];
    assert_eq!(header("syscall", &[]), with(&totals));
    let calls = [
        "SYSCALL",
        "SYSCALL_ID",
        "COUNT",
        "ERRORS",
        "LATENCY_NS",
        "RET",
    ];
    assert_eq!(header("syscall", &["--mode", "stream"]), with(&calls));
}

/// `--interval` prints a table per period, each after its time line: together they count
/// every event once.
#[test]
fn interval_prints_a_table_per_period() {
    if !root_or_skip("interval_prints_a_table_per_period") {
        return;
    }
    let (binary, comm) = unique_binary("period");
    let Executed { out, .. } = run_while_executing(
        &[
            "run",
            "process",
            "-d",
            "2.5",
            "--comm",
            &comm,
            "--group-by",
            "kind",
            "--interval",
            "1s",
        ],
        &binary,
        3,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let times = text
        .lines()
        .filter(|l| l.len() == 10 && l.starts_with('[') && l.ends_with(']'))
        .count();
    // Two periods end within the run, and the last, partial one when it stops.
    assert!(times >= 3, "{text}");
    let mut counts = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let [kind @ ("exec" | "exit"), n] = line.split_whitespace().collect::<Vec<_>>()[..] {
            *counts.entry(kind).or_insert(0) += n.parse::<u64>().unwrap();
        }
    }
    assert_eq!(counts, [("exec", 3), ("exit", 3)].into(), "{text}");
}

/// The text table's times are local: with the date when TZ names a zone (a POSIX zone
/// string here, UTC+9, which needs no tz database), the time of day otherwise; `--utc`
/// gives UTC. Checked against coreutils' `date` for the same event, whose JSON has its
/// UTC time.
#[test]
fn text_times_are_local_unless_utc() {
    if !root_or_skip("text_times_are_local_unless_utc") {
        return;
    }
    let (binary, comm) = unique_binary("clock");
    let zone = [("TZ", "XYZ-9")];
    let first_ts = |args: &[&str]| -> String {
        let mut all = vec!["run", "process", "-d", "2", "--comm", &comm];
        all.extend_from_slice(args);
        let Executed { out, .. } = run_while_executing_in(&zone, &all, &binary, 1);
        let text = String::from_utf8(out.stdout).unwrap();
        let line = text.lines().nth(1).unwrap_or_else(|| panic!("{text}"));
        line.rsplit_once(' ').unwrap().0.trim().to_string()
    };
    let date_time = first_ts(&["-o", "columns=ts,kind"]);
    assert_eq!(date_time.len(), 26, "{date_time}");
    let utc = first_ts(&["-o", "columns=ts,kind", "--utc"]);
    assert_eq!(utc.len(), 15, "{utc}");

    // One event, printed as JSON and as a text table in local time.
    let pipeline = r#"[{"type": "filter", "where": ["kind == exec"]},
        {"type": "tee", "branches": [[{"type": "print", "format": "json"}],
        [{"type": "print", "format": "text", "columns": ["ts"], "clock": "local_date"}]]}]"#;
    let Executed { out, .. } = run_while_executing_in(
        &zone,
        &[
            "run",
            "process",
            "-d",
            "2",
            "--comm",
            &comm,
            "--pipeline",
            pipeline,
        ],
        &binary,
        1,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let json: serde_json::Value = text
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{text}"));
    let utc_ts = json["ts"].as_str().unwrap();
    let shown = text
        .lines()
        .find(|l| l.len() == 26 && l.as_bytes()[4] == b'-')
        .unwrap_or_else(|| panic!("{text}"));
    let local = Command::new("date")
        .env("TZ", "XYZ-9")
        .args(["-d", utc_ts, "+%Y-%m-%d %H:%M:%S"])
        .output()
        .unwrap();
    let local = String::from_utf8(local.stdout).unwrap();
    assert_eq!(&shown[..19], local.trim(), "{text}");
    assert_eq!(&shown[20..], &utc_ts[20..26], "microseconds: {text}");
}
