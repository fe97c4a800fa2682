//! The oomkill tracker against the real kernel (root): a process that allocates past its
//! memory cgroup's 32 MiB limit is killed, and the tracker reports exactly that kill.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{root_or_skip, start_tracker, Collector};
use eunomia::engine::TrackerConfig;
use eunomia::model::{Record, Value};

const SETTLE: Duration = Duration::from_secs(5);
const LIMIT: u64 = 32 << 20;

/// A memory cgroup of the test's own with a limit and no swap, on whichever hierarchy
/// has the memory controller on this machine (cgroup v2, or v1 on a hybrid host);
/// removed when dropped.
struct MemoryCgroup {
    path: PathBuf,
}

impl MemoryCgroup {
    fn new(name: &str, limit: u64) -> Self {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let mut v2 = None;
        let mut v1 = None;
        for line in mounts.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let (dir, fstype, options) = (fields[1], fields[2], fields[3]);
            if fstype == "cgroup2" {
                let controllers = std::fs::read_to_string(format!("{dir}/cgroup.controllers"))
                    .unwrap_or_default();
                if controllers.split_whitespace().any(|c| c == "memory") {
                    v2 = Some(PathBuf::from(dir));
                }
            } else if fstype == "cgroup" && options.split(',').any(|o| o == "memory") {
                v1 = Some(PathBuf::from(dir));
            }
        }
        let (root, limits): (PathBuf, &[&str]) = match (v2, v1) {
            (Some(root), _) => {
                std::fs::write(root.join("cgroup.subtree_control"), "+memory").unwrap();
                (root, &["memory.max", "memory.swap.max"])
            }
            (None, Some(root)) => (
                root,
                &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"],
            ),
            (None, None) => panic!("no cgroup hierarchy has the memory controller"),
        };
        let path = root.join(name);
        std::fs::create_dir(&path).unwrap();
        let (memory, swap) = (limits[0], limits[1]);
        std::fs::write(path.join(memory), limit.to_string()).unwrap();
        // Without swap accounting (or swap) the file is missing: nothing can be swapped.
        if path.join(swap).exists() {
            let no_swap = if swap == "memory.swap.max" { 0 } else { limit };
            std::fs::write(path.join(swap), no_swap.to_string()).unwrap();
        }
        Self { path }
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}

#[test]
fn a_process_over_its_memory_limit_is_reported_once_with_the_limit() {
    if !root_or_skip("a_process_over_its_memory_limit_is_reported_once_with_the_limit") {
        return;
    }
    let cgroup = MemoryCgroup::new(&format!("eunomia-oom-{}", std::process::id()), LIMIT);
    // Waits to be moved into the cgroup, then writes 64 MiB.
    let mut child = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys\nprint('ready', flush=True)\nsys.stdin.readline()\nb = b'x' * (64 << 20)\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let victim = child.id();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready, "ready\n");
    // What it holds before it joins the cgroup: a v1 memory cgroup (a hybrid host) does
    // not take over charges made elsewhere, so this comes on top of the limit.
    let anon_before: u64 = std::fs::read_to_string(format!("/proc/{victim}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("RssAnon in /proc/<pid>/status")
        * 1024;
    cgroup.add(victim);
    let collector = Collector::default();
    let handle = start_tracker(
        "oomkill",
        TrackerConfig {
            target_pid: Some(victim),
            ..TrackerConfig::default()
        },
        collector.clone(),
    );
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let status = child.wait().unwrap();
    // Killed by the OOM killer's SIGKILL: a shell's $? would be 137.
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    collector.wait_for(SETTLE, |events| !events.is_empty());
    std::thread::sleep(Duration::from_millis(200));
    handle.stop().unwrap();

    let events = collector.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let kill = &events[0];
    assert_eq!(kill.get("kind"), Some(Value::Str("kill")));
    assert_eq!(kill.get("victim_pid"), Some(Value::U64(victim.into())));
    assert_eq!(kill.get("victim_comm"), Some(Value::Str("python3")));
    assert_eq!(kill.get("pid"), Some(Value::U64(victim.into())));
    assert_eq!(kill.get("limit_bytes"), Some(Value::U64(LIMIT)));
    let (Some(Value::U64(rss)), Some(Value::U64(anon))) =
        (kill.get("rss_bytes"), kill.get("anon_rss_bytes"))
    else {
        panic!("{kill:?}")
    };
    // Its anonymous memory since it joined is charged to the cgroup: most of the limit,
    // never more. Its file pages (python's libraries, however large here) come on top.
    let most = LIMIT + anon_before + (1 << 20);
    assert!(
        (LIMIT / 2..=most).contains(&anon),
        "anonymous rss {anon}, at most {most}"
    );
    assert!(rss >= anon, "rss {rss} < anonymous {anon}");
}
