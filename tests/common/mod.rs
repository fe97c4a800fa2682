//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eunomia::handler::{Flow, Handler};
use eunomia::trackers::Event;

/// True when the test may go on as root. Outside CI a non-root run skips, says so and
/// logs the skip for `make test` to count; in CI (`CI=true`) a root test that cannot run
/// fails.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    skip(test, "needs root");
    false
}

/// Where skipped tests are listed, one per line; `make test` counts them and fails
/// unless EUNOMIA_ALLOW_SKIP=1.
pub const SKIP_LOG: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/skipped-tests");

/// Skips `test` loudly: never in CI, and never silently elsewhere.
pub fn skip(test: &str, why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} {why}, and CI=true: every test must run in CI"
    );
    eprintln!("SKIPPED {test}: {why}");
    let logged = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(SKIP_LOG)
        .and_then(|mut log| {
            std::io::Write::write_all(&mut log, format!("{test}: {why}\n").as_bytes())
        });
    if let Err(err) = logged {
        eprintln!("(could not list it in {SKIP_LOG}: {err})");
    }
}

/// A chain end that keeps every event, readable from the test.
#[derive(Clone, Default)]
pub struct Collector(pub Arc<Mutex<Vec<Event>>>);

impl Collector {
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    pub fn of_pid(&self, pid: u32) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.header.pid == pid)
            .collect()
    }

    /// Waits until `done` holds for the collected events, or the timeout passes.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let start = Instant::now();
        loop {
            let events = self.events();
            if done(&events) || start.elapsed() > timeout {
                return events;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Handler<Event> for Collector {
    fn handle(&mut self, event: &Event) -> Flow {
        self.0.lock().unwrap().push(event.clone());
        Flow::Caught
    }
}

/// A process that waits for a word, then becomes `command` (a shell command line) under
/// the same pid: a tracker can be started on its pid before it does anything.
pub struct Gated(std::process::Child);

impl Gated {
    pub fn spawn(command: &str) -> Gated {
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("read go; exec {command}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        Gated(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Lets it run; returns its standard output once it succeeded.
    pub fn go(mut self) -> String {
        std::io::Write::write_all(&mut self.0.stdin.take().unwrap(), b"go\n").unwrap();
        let out = self.0.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }
}

/// Every call `path args` makes: what strace counts, and the exit_group its table leaves
/// out.
pub fn calls_made(path: &std::path::Path, args: &[u64]) -> u64 {
    strace_counts(path, args)
        .values()
        .map(|&(calls, _)| calls)
        .sum::<u64>()
        + 1
}

/// A fresh directory under the temp dir (`eunomia-<tag>-<pid>-<n>`), removed with all it
/// holds when dropped, so runs leave nothing behind.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        TempDir::new_in(&std::env::temp_dir(), tag)
    }

    /// In `base` (another file system, say); canonical, as trackers report paths. Each
    /// is new, even for one tag used by tests running at once.
    pub fn new_in(base: &std::path::Path, tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = base.join(format!("eunomia-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(std::fs::canonicalize(dir).unwrap())
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    pub fn join(&self, name: impl AsRef<std::path::Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A program copied to a path of its own; the copy goes when this is dropped.
pub struct TestBinary {
    path: PathBuf,
    _dir: TempDir,
}

impl std::ops::Deref for TestBinary {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for TestBinary {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

/// A copy of /bin/true under a name no other process on the machine has, so its comm
/// identifies exactly the processes a test started. Returns (binary, comm).
pub fn unique_binary(tag: &str) -> (TestBinary, String) {
    let comm = format!("eu{}{}", tag, std::process::id() % 100_000);
    assert!(comm.len() <= 15, "comm {comm} would be truncated");
    let dir = TempDir::new(&format!("test-{tag}"));
    let path = dir.join(&comm);
    std::fs::copy("/bin/true", &path).unwrap();
    (TestBinary { path, _dir: dir }, comm)
}

/// The middle value (the upper one of an even count), for benchmark rounds.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs `binary` `n` times, one after the other, each successfully.
pub fn run_copies(binary: &std::path::Path, n: usize) {
    for _ in 0..n {
        assert!(std::process::Command::new(binary)
            .status()
            .unwrap()
            .success());
    }
}

/// The BPF programs and maps process `pid` holds open, and the maps' locked kernel
/// memory, from its file descriptors' fdinfo.
pub fn bpf_held(pid: u32) -> (usize, usize, u64) {
    let mut programs = std::collections::BTreeSet::new();
    let mut maps = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let Ok(info) = std::fs::read_to_string(entry.unwrap().path()) else {
            continue;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|value| value.trim().parse::<u64>().ok())
        };
        if let Some(id) = field("prog_id:") {
            programs.insert(id);
        }
        if let (Some(id), Some(memlock)) = (field("map_id:"), field("memlock:")) {
            maps.insert(id, memlock);
        }
    }
    (programs.len(), maps.len(), maps.values().sum())
}

/// Kernel ids of every BPF program loaded right now.
pub fn loaded_prog_ids() -> Vec<u32> {
    libbpf_rs::query::ProgInfoIter::default()
        .map(|info| info.id)
        .collect()
}

/// Waits until none of `ids` is loaded (the kernel frees a detached program after an RCU
/// grace period); panics naming `what` and the programs left after 3 s.
pub fn assert_unloaded(ids: &[u32], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let loaded = loaded_prog_ids();
        let left: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|id| loaded.contains(id))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: programs {left:?} still loaded 3 s after stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
pub mod docker;
pub mod fleet;
pub mod postgres;
pub mod queries;
pub mod server;

/// The inode of this test process's `kind` namespace (`/proc/self/ns/<kind>`), which is
/// what the trackers report.
pub fn own_namespace(kind: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .ino()
}

/// The id of this test process's cgroup v2: its directory's inode.
pub fn own_cgroup_id() -> u64 {
    let root = eunomia::container::v2_root().expect("cgroup v2 is mounted");
    let path = eunomia::container::cgroup_of_pid(std::process::id()).unwrap();
    eunomia::container::cgroup_id(&root, &path).unwrap()
}

/// `eunomia args` started and tracing: its probes are attached.
/// Starts `eunomia args` with `stdout` and `env` added to its environment, and returns
/// once it logs `tracing` (its probes are attached): the child, its stderr, and what it
/// wrote there so far.
pub fn start_cli(
    args: &[&str],
    stdout: std::process::Stdio,
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
    String,
) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_eunomia"))
        .args(args)
        .env("RUST_LOG", "eunomia::app::cli=info")
        .envs(env.iter().copied())
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut logged = String::new();
    while !logged.contains("tracing") {
        let read = stderr.read_line(&mut logged).unwrap();
        assert!(read > 0, "eunomia {args:?} ended before tracing: {logged}");
    }
    (child, stderr, logged)
}

pub struct CliRun {
    child: std::process::Child,
    stderr: std::io::BufReader<std::process::ChildStderr>,
    /// What it wrote to stderr until it said it was tracing.
    logged: String,
}

impl CliRun {
    /// Starts `eunomia args` with `env` added to its environment, and returns once it
    /// logs `tracing` (its probes are attached).
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> CliRun {
        let (child, stderr, logged) = start_cli(args, std::process::Stdio::piped(), env);
        CliRun {
            child,
            stderr,
            logged,
        }
    }

    /// Waits for it to end; its whole stderr is in the output. Both pipes are read at
    /// once: output larger than a pipe would otherwise block it forever.
    pub fn finish(self) -> std::process::Output {
        use std::io::Read;
        let (mut stderr, mut logged) = (self.stderr, self.logged);
        let rest = std::thread::spawn(move || {
            stderr.read_to_string(&mut logged).unwrap();
            logged
        });
        let mut out = self.child.wait_with_output().unwrap();
        out.stderr = rest.join().unwrap().into_bytes();
        out
    }
}

/// Process events made up in user space, for tests that need no kernel.
pub mod synthetic {
    use eunomia::model::{Comm, FixedStr, Header};
    use eunomia::trackers::process::{Ids, ProcessEvent, WaitStatus};
    use eunomia::trackers::Event;

    pub fn header(ts_ns: u64, pid: u32, comm: &str) -> Header {
        Header {
            ts_ns,
            pid,
            ppid: 1,
            comm: Comm::from(comm),
            cgroup_id: 9,
            user_ns: 11,
            pid_ns: 12,
            mnt_ns: 13,
            container: None,
        }
    }

    pub fn exec(ts_ns: u64, pid: u32, comm: &str, filename: &str) -> Event {
        Event {
            header: header(ts_ns, pid, comm),
            body: ProcessEvent::Exec {
                filename: FixedStr::from(filename),
                cwd: FixedStr::default(),
                ids: Ids::default(),
                details: None,
            }
            .into(),
        }
    }

    /// `code` is the exit status, as `exit(code)` gives it.
    pub fn exit(ts_ns: u64, pid: u32, comm: &str, code: u32, duration_ns: u64) -> Event {
        Event {
            header: header(ts_ns, pid, comm),
            body: ProcessEvent::Exit {
                status: WaitStatus(code << 8),
                duration_ns,
                ids: Ids::default(),
            }
            .into(),
        }
    }
}

/// `tests/programs/syscall_load.c`, built statically under a unique name (its comm).
/// Returns (binary, comm).
pub fn syscall_load(tag: &str) -> (TestBinary, String) {
    build_program("syscall_load.c", &["-static", "-O2"], tag)
}

/// `tests/programs/<source>`, built with clang and `flags` under a unique name (its comm).
/// Returns (binary, comm).
pub fn build_program(source: &str, flags: &[&str], tag: &str) -> (TestBinary, String) {
    let (path, comm) = unique_binary(tag);
    let source = format!("{}/tests/programs/{source}", env!("CARGO_MANIFEST_DIR"));
    let built = std::process::Command::new("clang")
        .args(flags)
        .arg("-o")
        .arg(&*path)
        .arg(&source)
        .status()
        .expect("clang runs (make deps installs it)");
    assert!(built.success(), "building {source} failed");
    (path, comm)
}

/// Runs the `syscall_load` binary at `path` to make `calls` getppid calls, to its end.
pub fn run_load(path: &std::path::Path, calls: u64) {
    let status = std::process::Command::new(path)
        .arg(calls.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "{path:?} {calls}: {status}");
}

/// Per syscall name: (calls, errors), from `strace -f -c` of one run of `path args`.
/// Its table leaves out exit_group, which never returns (the syscall tracker counts it).
pub fn strace_counts(
    path: &std::path::Path,
    args: &[u64],
) -> std::collections::BTreeMap<String, (u64, u64)> {
    let dir = TempDir::new("strace");
    let out = dir.join("counts");
    let status = std::process::Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(&out)
        .arg(path)
        .args(args.iter().map(|n| n.to_string()))
        .status()
        .expect("strace runs (make deps installs it)");
    assert!(status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    // Rows: % time, seconds, usecs/call, calls, [errors], syscall.
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let name = *cols.last()?;
            let calls = cols.get(3)?.parse().ok()?;
            let errors = if cols.len() == 6 {
                cols[4].parse().ok()?
            } else {
                0
            };
            (name != "total").then(|| (name.to_string(), (calls, errors)))
        })
        .collect()
}

/// A chain end for benchmarks: a real aggregation (by `group_by`), and a count of what
/// reached it that other threads can read.
pub struct Counted {
    aggregate: eunomia::handler::Aggregator<eunomia::handler::Discard>,
    pub seen: Arc<std::sync::atomic::AtomicU64>,
}

impl Counted {
    pub fn new(group_by: &[&str]) -> Self {
        Self {
            aggregate: eunomia::handler::Aggregator::new(
                eunomia::handler::AggregateSpec::count(
                    group_by.iter().map(|f| f.to_string()).collect(),
                    None,
                ),
                eunomia::handler::Discard,
            ),
            seen: Arc::default(),
        }
    }
}

impl Handler<Event> for Counted {
    fn handle(&mut self, event: &Event) -> Flow {
        self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.aggregate.handle(event)
    }
}

/// Starts tracker `name` with `config`, feeding `chain`; panics when it cannot start.
pub fn start_tracker(
    name: &str,
    config: eunomia::engine::TrackerConfig,
    chain: impl Handler<Event> + 'static,
) -> eunomia::engine::TrackerHandle {
    eunomia::trackers::find_tracker(name)
        .unwrap()
        .start(
            config,
            Box::new(chain),
            Arc::new(eunomia::engine::Counters::default()),
        )
        .unwrap_or_else(|e| panic!("the {name} tracker starts: {e}"))
}

/// Starts `command` with its stdin and stdout piped and waits for it to print "ready";
/// returns it with the lines it prints next.
pub fn spawn_ready(
    command: &mut std::process::Command,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    use std::io::BufRead;

    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    (child, lines)
}

/// Runs Debian's python (`-c script args`, in `cwd`), which must print "ready" and then
/// wait for a line on stdin before the part under test; starts tracker `name` on its pid
/// with `options` meanwhile, lets it go, and waits for it to end well. Returns the lines
/// it printed after "ready", and the events the tracker saw of it (`expected` at least,
/// within 5 s), with the tracker stopped.
pub fn trace_python(
    name: &str,
    options: serde_json::Value,
    script: &str,
    args: &[&str],
    cwd: Option<&std::path::Path>,
    expected: usize,
) -> (Vec<String>, Vec<Event>) {
    trace_python_also(name, options, script, args, cwd, expected, Vec::new())
}

/// [`trace_python`], the events going to the handlers `also` too.
pub fn trace_python_also(
    name: &str,
    options: serde_json::Value,
    script: &str,
    args: &[&str],
    cwd: Option<&std::path::Path>,
    expected: usize,
    also: Vec<Box<dyn Handler<Event>>>,
) -> (Vec<String>, Vec<Event>) {
    use std::io::Write;

    let mut command = std::process::Command::new("/usr/bin/python3");
    command.args(["-c", script]).args(args);
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    let (mut child, lines) = spawn_ready(&mut command);
    let mut config = eunomia::engine::TrackerConfig {
        target_pid: Some(child.id()),
        ..Default::default()
    };
    config.options = options.as_object().cloned().unwrap_or_default();
    let collector = Collector::default();
    let mut handlers: Vec<Box<dyn Handler<Event>>> = vec![Box::new(collector.clone())];
    handlers.extend(also);
    let handle = start_tracker(name, config, eunomia::handler::FanOut::new(handlers));
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let printed: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(child.wait().unwrap().success());
    collector.wait_for(Duration::from_secs(5), |events| events.len() >= expected);
    std::thread::sleep(Duration::from_millis(200));
    handle.stop().unwrap();
    (printed, collector.events())
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
pub struct Tmpfs {
    pub dir: TempDir,
}

impl Tmpfs {
    pub fn mount(tag: &str, size: &str) -> Tmpfs {
        let dir = TempDir::new(tag);
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs on {:?}", dir.path());
        Tmpfs { dir }
    }

    pub fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// Runs the `eunomia` binary with `args` to its end.
pub fn eunomia(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_eunomia"))
        .args(args)
        .output()
        .unwrap()
}

/// What a command printed on stderr.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Checks /metrics text with `promtool check metrics` (its lint included).
pub fn promtool_accepts(text: &str) {
    use std::io::Write;
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed (make deps)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
