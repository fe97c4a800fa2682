//! The files tracker against the truth (root): a Python child whose reads, writes and
//! opens are known exactly, traced by its pid from the moment it is told to start.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::server::Server;
use common::{root_or_skip, start_tracker, Collector, TempDir};
use eunomia::engine::{Mode, Stats, TrackerConfig};
use eunomia::model::{Record, Value};
use eunomia::trackers::files::{FileType, FilesOptions};
use eunomia::trackers::Event;
use serde_json::json;

/// The child: starts up, says "ready", waits for "go" on stdin (the tracker is attached by
/// then), does what `mode` says, and prints what the calls returned as JSON.
const CHILD: &str = r#"
import json, os, sys, time
mode, target = sys.argv[1], sys.argv[2]
print("ready", flush=True)
os.read(0, 3)
out = {}
if mode == "io":
    # 6 writes of 500 bytes: write, pwrite64, writev.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    wrote = [os.write(fd, b"a" * 500), os.write(fd, b"b" * 500),
             os.pwrite(fd, b"c" * 500, 1000), os.pwrite(fd, b"d" * 500, 1500)]
    os.lseek(fd, 2000, os.SEEK_SET)
    wrote += [os.writev(fd, [b"e" * 250, b"f" * 250]), os.writev(fd, [b"g" * 250, b"h" * 250])]
    os.close(fd)
    # Later intervals: the file's rows are summed across drains.
    time.sleep(0.5)
    # 5 reads: read, readv, pread64 (offset unchanged), read, read at the end.
    fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    got = [len(os.read(fd, 1000)), os.readv(fd, [bytearray(500), bytearray(500)]),
           len(os.pread(fd, 1000, 0)), len(os.read(fd, 1000)), len(os.read(fd, 1000))]
    os.close(fd)
    out = {"writes": len(wrote), "write_bytes": sum(wrote), "reads": len(got), "read_bytes": sum(got)}
elif mode == "open":
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.open(target + ".missing", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        pass
    out = {"fd": fd}
elif mode == "opens":
    # 30 read-only and 20 write-only opens of target, two open at a time (so that the fds
    # differ), then 12 opens of a missing name and 5 of another.
    for flags, pairs in ((os.O_RDONLY, 15), (os.O_WRONLY, 10)):
        for _ in range(pairs):
            a = os.open(target, flags | os.O_CLOEXEC)
            b = os.open(target, flags | os.O_CLOEXEC)
            os.close(a)
            os.close(b)
    for name, times in ((".missing", 12), (".gone", 5)):
        for _ in range(times):
            try:
                os.open(target + name, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                pass
elif mode == "rename":
    # Opens target, renames it to target.moved and opens it again, then moves its
    # directory and opens it once more: three opens of one file under three paths.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.close(fd)
    os.rename(target, target + ".moved")
    fd = os.open(target + ".moved", os.O_RDONLY | os.O_CLOEXEC)
    os.close(fd)
    moved_dir = os.path.dirname(target) + ".dir"
    os.rename(os.path.dirname(target), moved_dir)
    time.sleep(1.1)
    fd = os.open(moved_dir + "/" + os.path.basename(target) + ".moved", os.O_RDONLY | os.O_CLOEXEC)
    os.close(fd)
    os.rename(moved_dir, os.path.dirname(target))
elif mode == "pipe":
    # 3 writes of 100 bytes into a pipe, 2 reads of 150 out of it; 1 write to a file.
    r, w = os.pipe()
    wrote = [os.write(w, b"p" * 100) for _ in range(3)]
    got = [len(os.read(r, 150)) for _ in range(2)]
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.write(fd, b"r" * 10)
    os.close(fd)
    out = {"pipe": os.fstat(r).st_ino, "write_bytes": sum(wrote), "read_bytes": sum(got)}
elif mode == "many":
    # One 1-byte write to each of int(target's last part) new files in target's directory.
    count = int(os.path.basename(target))
    for i in range(count):
        fd = os.open(f"{os.path.dirname(target)}/f{i}", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.write(fd, b"x")
        os.close(fd)
    out = {"files": count}
elif mode == "exec":
    # Writes a JSON report to target, reads 100 bytes of it, then becomes `cat target`,
    # which reads it all and prints it: the same process reads the same file under two
    # command names.
    report = json.dumps({"pad": "x" * 3000})
    with open(target, "w") as f:
        f.write(report)
    fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    os.read(fd, 100)
    os.close(fd)
    os.execvp("cat", ["cat", target])
print(json.dumps(out))
"#;

/// A fresh directory for one test in `base`: canonical, as the tracker reports paths;
/// removed when dropped.
fn test_dir(base: &Path, tag: &str) -> TempDir {
    TempDir::new_in(base, &format!("files-{tag}"))
}

/// What one child run gave: its report, the tracker's events (all of its pid) and counts.
struct Traced {
    report: serde_json::Value,
    events: Vec<Event>,
    stats: Stats,
}

impl Traced {
    fn of_kind(&self, kind: &str) -> impl Iterator<Item = &Event> + '_ {
        let kind = kind.to_string();
        self.events.iter().filter(move |e| e.kind() == kind)
    }

    fn io_rows(&self, path: &str) -> Vec<&Event> {
        self.of_kind("io")
            .filter(|e| e.get("path") == Some(Value::Str(path)))
            .collect()
    }

    /// (reads, writes, read_bytes, write_bytes) over every interval's row of `path`.
    fn io_sums(&self, path: &str) -> [u64; 4] {
        let mut sums = [0; 4];
        for row in self.io_rows(path) {
            for (sum, field) in
                sums.iter_mut()
                    .zip(["reads", "writes", "read_bytes", "write_bytes"])
            {
                let Some(Value::U64(n)) = row.get(field) else {
                    panic!("{field} of {row:?}")
                };
                *sum += n;
            }
        }
        sums
    }

    fn report(&self, key: &str) -> u64 {
        self.report[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {}", self.report))
    }
}

/// A started child, waiting for "go": its start-up (Python reading its modules) is over.
struct Child {
    process: std::process::Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Child {
    fn ready(mode: &str, target: &Path) -> Child {
        let mut process = Command::new("python3")
            .args(["-c", CHILD, mode])
            .arg(target)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut stdout = BufReader::new(process.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        Child { process, stdout }
    }

    fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Lets it run to the end; returns its report.
    fn go(mut self) -> serde_json::Value {
        self.process
            .stdin
            .take()
            .unwrap()
            .write_all(b"go\n")
            .unwrap();
        let mut report = String::new();
        self.stdout.read_to_string(&mut report).unwrap();
        let status = self.process.wait().unwrap();
        assert!(status.success(), "child failed: {status:?}");
        serde_json::from_str(&report).unwrap()
    }
}

/// Runs the child in `mode` on `target` with the tracker on its pid only, from "go" on;
/// opens are reported each (`opens: stream`) unless `config` says otherwise.
fn trace(mode: &str, target: &Path, mut config: TrackerConfig) -> Traced {
    let child = Child::ready(mode, target);
    let pid = child.pid();
    let collector = Collector::default();
    let handle = start_tracker(
        "files",
        {
            config.options.entry("interval_ms").or_insert(100.into());
            // Each call, unless the test asks for counts.
            config.options.entry("opens").or_insert("stream".into());
            TrackerConfig {
                target_pid: Some(pid),
                ..config
            }
        },
        collector.clone(),
    );
    let report = child.go();
    // Stopping drains the last interval: everything the child did is in.
    let stats = handle.stop().unwrap();
    let events = collector.events();
    assert_eq!(stats.seen, events.len() as u64);
    // The pid filter holds in the kernel: nothing of any other process.
    let others: Vec<&Event> = events.iter().filter(|e| e.header.pid != pid).collect();
    assert!(others.is_empty(), "not pid {pid}: {others:?}");
    Traced {
        report,
        events,
        stats,
    }
}

/// Six writes of 3000 bytes and five reads of 4000 (one at the end of the file), summed
/// over the intervals they fell in, on `file` under its full path.
fn io_is_exact(file: &Path) {
    let path = file.to_str().unwrap();
    let traced = trace("io", file, TrackerConfig::default());
    assert_eq!(traced.stats.lost(), 0, "{:?}", traced.stats);
    assert_eq!(
        [
            traced.report("reads"),
            traced.report("writes"),
            traced.report("read_bytes"),
            traced.report("write_bytes"),
        ],
        [5, 6, 4000, 3000],
        "what the child's calls returned"
    );
    assert_eq!(traced.io_sums(path), [5, 6, 4000, 3000]);
    let rows = traced.io_rows(path);
    // The writes and the reads, half a second apart, were drained in different intervals.
    assert!(rows.len() >= 2, "{rows:?}");
    for row in &rows {
        assert_eq!(row.get("file_type"), Some(Value::Str("regular")));
        assert_eq!(row.header.ppid, std::process::id());
        assert_eq!(row.get("flags"), Some(Value::Null));
        assert_eq!(row.get("ret"), Some(Value::Null));
    }
    // Regular files only by default, and the child touched no other after "go".
    let others: Vec<&Event> = traced
        .of_kind("io")
        .filter(|e| e.get("path") != Some(Value::Str(path)))
        .collect();
    assert!(others.is_empty(), "{others:?}");
}

#[test]
fn reads_and_writes_of_a_file_on_the_root_mount_are_exact() {
    if !root_or_skip("reads_and_writes_of_a_file_on_the_root_mount_are_exact") {
        return;
    }
    io_is_exact(&test_dir(&std::env::temp_dir(), "root").join("data"));
}

/// /dev/shm is a tmpfs mounted on devtmpfs' /dev: the path walk crosses both mounts.
#[test]
fn reads_and_writes_across_mounts_have_the_full_path() {
    if !root_or_skip("reads_and_writes_across_mounts_have_the_full_path") {
        return;
    }
    io_is_exact(&test_dir(Path::new("/dev/shm"), "mounts").join("data"));
}

#[test]
fn openat_reports_flags_and_the_fd_or_errno() {
    if !root_or_skip("openat_reports_flags_and_the_fd_or_errno") {
        return;
    }
    let dir = test_dir(&std::env::temp_dir(), "open");
    let file = dir.join("new");
    let traced = trace("open", &file, TrackerConfig::default());
    let opens: Vec<&Event> = traced.of_kind("open").collect();
    assert_eq!(opens.len(), 2, "{opens:?}");
    let (created, missing) = (opens[0], opens[1]);
    assert_eq!(
        created.get("path"),
        Some(Value::Str(file.to_str().unwrap()))
    );
    assert_eq!(created.get("file_type"), Some(Value::Str("regular")));
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC;
    assert_eq!(created.get("flags"), Some(Value::U64(flags as u64)));
    let fd = traced.report("fd");
    assert_eq!(created.get("ret"), Some(Value::I64(fd as i64)));
    // A failed open names the file as passed, and its error.
    let missing_path = format!("{}.missing", file.display());
    assert_eq!(missing.get("path"), Some(Value::Str(&missing_path)));
    assert_eq!(missing.get("file_type"), Some(Value::Null));
    let flags = libc::O_RDONLY | libc::O_CLOEXEC;
    assert_eq!(missing.get("flags"), Some(Value::U64(flags as u64)));
    assert_eq!(
        missing.get("ret"),
        Some(Value::I64(-i64::from(libc::ENOENT)))
    );
    assert_eq!(missing.get("reads"), Some(Value::Null));
    assert!(created.header.ts_ns <= missing.header.ts_ns);
}

/// With `io: false` only openat is traced (on its own tracepoint): the same open events,
/// and no read or write counts even when the child reads and writes.
#[test]
fn without_io_only_opens_are_traced() {
    if !root_or_skip("without_io_only_opens_are_traced") {
        return;
    }
    let dir = test_dir(&std::env::temp_dir(), "no-io");
    let mut config = TrackerConfig::default();
    config.options.insert("io".into(), false.into());
    let file = dir.join("new");
    let traced = trace("open", &file, config.clone());
    let opens: Vec<(Option<Value>, Option<Value>)> = traced
        .of_kind("open")
        .map(|e| (e.get("path"), e.get("ret")))
        .collect();
    let missing = format!("{}.missing", file.display());
    assert_eq!(
        opens,
        [
            (
                Some(Value::Str(file.to_str().unwrap())),
                Some(Value::I64(traced.report("fd") as i64))
            ),
            (
                Some(Value::Str(&missing)),
                Some(Value::I64(-i64::from(libc::ENOENT)))
            ),
        ]
    );
    let traced = trace("io", &dir.join("data"), config);
    assert_eq!(traced.report("writes"), 6);
    assert_eq!(traced.of_kind("io").count(), 0);
}

/// With `opens: aggregate`, opens are counted in the kernel per (process, file, flags,
/// result) and drained every interval: exact counts, whatever fd each call got.
#[test]
fn aggregated_opens_count_each_file_flags_and_result() {
    if !root_or_skip("aggregated_opens_count_each_file_flags_and_result") {
        return;
    }
    let dir = test_dir(&std::env::temp_dir(), "opens");
    let file = dir.join("f");
    std::fs::write(&file, b"").unwrap();
    let mut config = TrackerConfig::default();
    config.options.insert("opens".into(), "aggregate".into());
    let traced = trace("opens", &file, config);
    assert_eq!(traced.stats.lost(), 0, "{:?}", traced.stats);
    let mut counts = std::collections::BTreeMap::new();
    let mut rows = std::collections::HashSet::new();
    for row in traced.of_kind("open") {
        let (Some(Value::Str(path)), Some(Value::U64(flags)), Some(Value::I64(ret))) =
            (row.get("path"), row.get("flags"), row.get("ret"))
        else {
            panic!("{row:?}")
        };
        let Some(Value::U64(opens)) = row.get("opens") else {
            panic!("{row:?}")
        };
        let key = (path.to_string(), flags, ret);
        // One row per key in each drain.
        assert!(rows.insert((row.header.ts_ns, key.clone())), "{row:?}");
        *counts.entry(key).or_insert(0) += opens;
    }
    let path = |suffix: &str| format!("{}{suffix}", file.display());
    let read = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    let write = (libc::O_WRONLY | libc::O_CLOEXEC) as u64;
    let enoent = -i64::from(libc::ENOENT);
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        [
            ((path(""), read, 0), 30),
            ((path(""), write, 0), 20),
            ((path(".gone"), read, enoent), 5),
            ((path(".missing"), read, enoent), 12),
        ]
    );
}

/// Paths are cached per file in the kernel, but never outlive a rename: a file renamed is
/// reported under its new name at once, and one whose directory was renamed within the
/// cache's second.
#[test]
fn a_renamed_file_is_reported_under_its_new_path() {
    if !root_or_skip("a_renamed_file_is_reported_under_its_new_path") {
        return;
    }
    let dir = test_dir(&std::env::temp_dir(), "rename");
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let file = sub.join("f");
    let traced = trace("rename", &file, TrackerConfig::default());
    let paths: Vec<Option<Value>> = traced.of_kind("open").map(|e| e.get("path")).collect();
    let moved = format!("{}.moved", file.display());
    let moved_dir = format!("{}.dir/f.moved", sub.display());
    assert_eq!(
        paths,
        [
            Some(Value::Str(file.to_str().unwrap())),
            Some(Value::Str(&moved)),
            Some(Value::Str(&moved_dir)),
        ]
    );
}

#[test]
fn file_types_choose_what_is_reported() {
    if !root_or_skip("file_types_choose_what_is_reported") {
        return;
    }
    let dir = test_dir(&std::env::temp_dir(), "types");
    let file = dir.join("regular");
    let path = file.to_str().unwrap();
    let only = |file_types: Vec<FileType>| {
        TrackerConfig::default().with_options(FilesOptions {
            file_types,
            ..FilesOptions::default()
        })
    };

    let regular = trace("pipe", &file, only(vec![FileType::Regular]));
    assert_eq!(regular.io_sums(path), [0, 1, 0, 10]);
    let pipes: Vec<&Event> = regular
        .of_kind("io")
        .filter(|e| e.get("file_type") != Some(Value::Str("regular")))
        .collect();
    assert!(pipes.is_empty(), "{pipes:?}");

    let piped = trace("pipe", &file, only(vec![FileType::Pipe]));
    let pipe = format!("pipe:[{}]", piped.report("pipe"));
    assert_eq!(piped.report("write_bytes"), 300);
    assert_eq!(piped.report("read_bytes"), 300);
    assert_eq!(piped.io_sums(&pipe), [2, 3, 300, 300]);
    assert!(piped
        .io_rows(&pipe)
        .iter()
        .all(|row| row.get("file_type") == Some(Value::Str("pipe"))));
    // The file is not reported now; its open is not either (only failed opens always are).
    assert!(piped.io_rows(path).is_empty());
    assert_eq!(piped.of_kind("open").count(), 0);
}

/// A path longer than the probe's 256 bytes keeps its end, whole components only, behind
/// "...": here four 60-byte directories and the file (249 bytes); a fifth does not fit.
#[test]
fn long_paths_keep_their_end_behind_a_mark() {
    if !root_or_skip("long_paths_keep_their_end_behind_a_mark") {
        return;
    }
    let base = test_dir(&std::env::temp_dir(), "deep");
    let parts: Vec<String> = (0..5).map(|i| format!("{i}{}", "d".repeat(59))).collect();
    let dir = parts
        .iter()
        .fold(base.path().to_path_buf(), |dir, part| dir.join(part));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("data");
    let expected = format!(".../{}/data", parts[1..].join("/"));
    assert_eq!(expected.len(), 252);

    let traced = trace("open", &file, TrackerConfig::default());
    let opened: Vec<Option<Value>> = traced.of_kind("open").map(|e| e.get("path")).collect();
    assert_eq!(
        opened,
        [
            Some(Value::Str(&expected)),
            // The failed open's name is what was passed, cut at the buffer's end.
            Some(Value::Str(&format!("{}.missing", file.display())[..255])),
        ]
    );
}

/// More files than the in-kernel map holds in one interval: every write is either in a
/// row or counted as lost.
#[test]
fn a_full_map_counts_what_it_cannot_hold() {
    if !root_or_skip("a_full_map_counts_what_it_cannot_hold") {
        return;
    }
    const FILES: u64 = 17_000;
    let dir = test_dir(Path::new("/dev/shm"), "many");
    let traced = trace(
        "many",
        &dir.join(FILES.to_string()),
        // One interval for the whole run, and room for every open event (each reported,
        // so that only the io map fills).
        TrackerConfig {
            ringbuf_bytes: 16 << 20,
            ..TrackerConfig::default()
        }
        .with_options(FilesOptions {
            interval_ms: 60_000.try_into().unwrap(),
            opens: Mode::Stream,
            ..FilesOptions::default()
        }),
    );
    assert_eq!(traced.report("files"), FILES);
    let rows: Vec<&Event> = traced.of_kind("io").collect();
    let written: u64 = rows
        .iter()
        .map(|row| match row.get("write_bytes") {
            Some(Value::U64(n)) => n,
            other => panic!("{other:?}"),
        })
        .sum();
    assert_eq!(rows.len() as u64, written, "one write per file");
    assert_eq!(traced.of_kind("open").count() as u64, FILES);
    assert!(traced.stats.lost_kernel > 0, "{:?}", traced.stats);
    assert_eq!(
        written + traced.stats.lost_kernel,
        FILES,
        "{:?}",
        traced.stats
    );
}

/// Runs the child in `mode` on `target` under a files session of `server` on its pid, with
/// `config`, in `store`; returns the session's id once it has stopped.
fn traced_session(
    server: &Server,
    (mode, target): (&str, &Path),
    store: &str,
    config: serde_json::Value,
) -> String {
    let child = Child::ready(mode, target);
    let id = server.start_session(json!({
        "tracker": "files",
        "durationSecs": 60,
        "store": store,
        "filter": { "pid": child.pid() },
        "config": config,
    }));
    child.go();
    server.stop_session(&id);
    assert_eq!(server.wait_ended(&id, Duration::from_secs(10)), "STOPPED");
    id
}

/// A GraphQL session with the tracker's options: per-file sums over the stored rows.
/// A process that reads a file, execs and reads it again: each read is under the comm the
/// process had when it made it.
#[test]
fn reads_before_and_after_an_exec_are_under_each_comm() {
    if !root_or_skip("reads_before_and_after_an_exec_are_under_each_comm") {
        return;
    }
    let dir = test_dir(&std::env::temp_dir(), "exec");
    let file = dir.join("report");
    let path = file.to_str().unwrap();
    let traced = trace("exec", &file, TrackerConfig::default());
    assert_eq!(traced.stats.lost(), 0, "{:?}", traced.stats);
    let size = std::fs::metadata(&file).unwrap().len();
    let mut by_comm: std::collections::BTreeMap<String, [u64; 2]> = Default::default();
    for row in traced.io_rows(path) {
        let sums = by_comm
            .entry(row.header.comm.as_str().to_string())
            .or_default();
        for (sum, field) in sums.iter_mut().zip(["read_bytes", "write_bytes"]) {
            let Some(Value::U64(n)) = row.get(field) else {
                panic!("{field} of {row:?}")
            };
            *sum += n;
        }
    }
    assert_eq!(
        by_comm,
        [
            ("python3".to_string(), [100, size]),
            ("cat".to_string(), [size, 0])
        ]
        .into(),
        "{:?}",
        traced.io_rows(path)
    );
}

#[test]
fn a_session_sums_a_files_bytes_per_path() {
    if !root_or_skip("a_session_sums_a_files_bytes_per_path") {
        return;
    }
    let dir = test_dir(&std::env::temp_dir(), "session");
    let file = dir.join("data");
    let path = file.to_str().unwrap();
    let server = Server::start("files", None);
    let id = traced_session(
        &server,
        ("io", &file),
        "SQLITE",
        json!({ "interval_ms": 100, "file_types": ["regular"] }),
    );
    let session = server.session(
        &id,
        r#"lostCount
           written: aggregate(groupBy: ["path"], op: SUM, field: "write_bytes",
                              where: [{field: "kind", value: "io"}]) { keys value }
           reads: aggregate(groupBy: ["path", "file_type"], op: SUM, field: "reads",
                            where: [{field: "kind", value: "io"}]) { keys value }
           opens: aggregate(groupBy: ["path"], where: [{field: "kind", value: "open"}])
                  { keys value }"#,
    );
    assert_eq!(session["lostCount"], 0, "{session}");
    assert_eq!(
        session["written"],
        json!([{ "keys": [path], "value": 3000.0 }]),
        "{session}"
    );
    assert_eq!(
        session["reads"],
        json!([{ "keys": [path, "regular"], "value": 5.0 }]),
        "{session}"
    );
    assert_eq!(
        session["opens"],
        json!([{ "keys": [path], "value": 2.0 }]),
        "{session}"
    );
}

/// Opens counted in the kernel are counted as calls by a session's bare COUNT, in both
/// stores: 50 opens of the file and 12 and 5 of two missing names, not their rows.
#[test]
fn a_session_counts_aggregated_opens_as_calls() {
    if !root_or_skip("a_session_counts_aggregated_opens_as_calls") {
        return;
    }
    let server = Server::start("files-opens", None);
    for store in ["SQLITE", "MEMORY"] {
        let dir = test_dir(&std::env::temp_dir(), "session-opens");
        let file = dir.join("f");
        std::fs::write(&file, b"").unwrap();
        let id = traced_session(
            &server,
            ("opens", &file),
            store,
            json!({ "interval_ms": 100 }),
        );
        let session = server.session(
            &id,
            r#"lostCount
               opens: aggregate(groupBy: ["path"], where: [{field: "kind", value: "open"}])
                      { keys value count }"#,
        );
        assert_eq!(session["lostCount"], 0, "{store}: {session}");
        let path = |suffix: &str| format!("{}{suffix}", file.display());
        assert_eq!(
            session["opens"],
            json!([
                { "keys": [path("")], "value": 50.0, "count": 50 },
                { "keys": [path(".missing")], "value": 12.0, "count": 12 },
                { "keys": [path(".gone")], "value": 5.0, "count": 5 },
            ]),
            "{store}: {session}"
        );
    }
}
