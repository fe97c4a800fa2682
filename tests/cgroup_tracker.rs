//! The cgroup tracker against the real kernel (root): cgroups made and removed in the v2
//! tree, with their ids, paths and levels; and a running tracker's cgroup filter taking in
//! a cgroup made after it started, as sessions that follow containers use it.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{root_or_skip, start_tracker, unique_binary, Collector};
use eunomia::engine::TrackerConfig;
use eunomia::model::{Record, Value};

const SETTLE: Duration = Duration::from_secs(5);

fn v2_root() -> PathBuf {
    eunomia::container::v2_root().expect("cgroup v2 is mounted")
}

/// A cgroup below the v2 root, removed when dropped.
struct Cgroup(PathBuf);

impl Cgroup {
    fn make(path: &str) -> Self {
        let dir = v2_root().join(path);
        std::fs::create_dir(&dir).unwrap();
        Self(dir)
    }

    fn id(&self) -> u64 {
        std::fs::metadata(&self.0).unwrap().ino()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn cgroups_made_and_removed_are_reported_with_their_ids() {
    if !root_or_skip("cgroups_made_and_removed_are_reported_with_their_ids") {
        return;
    }
    let me = std::process::id();
    let collector = Collector::default();
    let handle = start_tracker(
        "cgroup",
        TrackerConfig {
            target_pid: Some(me),
            ..TrackerConfig::default()
        },
        collector.clone(),
    );
    let name = format!("eunomia-cgt-{me}");
    let parent = Cgroup::make(&name);
    let child = Cgroup::make(&format!("{name}/inner"));
    let ids = [parent.id(), child.id()];
    // A cgroup v1 hierarchy (a hybrid host has them) numbers its own cgroups: not reported.
    let v1 = std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f[2] == "cgroup")
        .map(|f| PathBuf::from(f[1]).join(&name));
    if let Some(dir) = &v1 {
        std::fs::create_dir(dir).unwrap();
        std::fs::remove_dir(dir).unwrap();
    }
    drop(child);
    drop(parent);
    collector.wait_for(SETTLE, |events| events.len() >= 4);
    std::thread::sleep(Duration::from_millis(200));
    handle.stop().unwrap();
    let events = collector.events();
    let seen: Vec<(String, String, u64, u64)> = events
        .iter()
        .map(|e| {
            let text = |f: &str| match e.get(f) {
                Some(Value::Str(s)) => s.to_string(),
                other => panic!("{f}: {other:?}"),
            };
            let number = |f: &str| match e.get(f) {
                Some(Value::U64(n)) => n,
                other => panic!("{f}: {other:?}"),
            };
            assert_eq!(e.header.pid, me);
            (
                text("kind"),
                text("path"),
                number("target_cgroup_id"),
                number("level"),
            )
        })
        .collect();
    let (outer, inner) = (format!("/{name}"), format!("/{name}/inner"));
    assert_eq!(
        seen,
        [
            ("mkdir".into(), outer.clone(), ids[0], 1),
            ("mkdir".into(), inner.clone(), ids[1], 2),
            ("rmdir".into(), inner, ids[1], 2),
            ("rmdir".into(), outer, ids[0], 1),
        ],
        "v1 hierarchy tried: {v1:?}"
    );
}

/// A tracker started to follow cgroups traces nothing until a cgroup is added to its
/// filter while it runs, and from then on exactly that cgroup's tasks.
#[test]
fn a_running_tracker_takes_in_a_cgroup_added_to_its_filter() {
    if !root_or_skip("a_running_tracker_takes_in_a_cgroup_added_to_its_filter") {
        return;
    }
    let (binary, comm) = unique_binary("cgf");
    let cgroup = Cgroup::make(&format!("eunomia-cgf-{}", std::process::id()));
    // Runs the binary `times` times, inside the cgroup or not.
    let run = |times: usize, inside: bool| {
        for _ in 0..times {
            let join = match inside {
                true => format!("echo $$ > {}/cgroup.procs && ", cgroup.0.display()),
                false => String::new(),
            };
            let script = format!("{join}exec {}", binary.display());
            assert!(Command::new("sh")
                .args(["-c", &script])
                .status()
                .unwrap()
                .success());
        }
    };
    let collector = Collector::default();
    let handle = start_tracker(
        "process",
        TrackerConfig {
            follow_cgroups: true,
            comm: Some(comm.clone()),
            ..TrackerConfig::default()
        },
        collector.clone(),
    );
    run(3, true);
    let filter = handle
        .cgroup_filter()
        .expect("a following tracker has a filter");
    filter.add(cgroup.id()).unwrap();
    run(2, false);
    run(4, true);
    let execs = |events: &[eunomia::trackers::Event]| {
        events
            .iter()
            .filter(|e| e.get("kind") == Some(Value::Str("exec")))
            .count()
    };
    collector.wait_for(SETTLE, |events| execs(events) >= 4);
    std::thread::sleep(Duration::from_millis(200));
    handle.stop().unwrap();
    let events = collector.events();
    assert_eq!(execs(&events), 4, "{events:?}");
    assert!(events.iter().all(|e| e.header.cgroup_id == cgroup.id()));
}
