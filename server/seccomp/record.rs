//! Runs a command in a cgroup of its own, with the syscall tracker's aggregate mode
//! filtered to that cgroup in the kernel: every call of the command and of its children,
//! from its first instruction (the child joins the cgroup between fork and exec), and
//! nothing else's. Under a profile, the calls it refused are the ones that are not in it.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use oci_spec::runtime::LinuxSeccomp;

use super::filter::Filter;
use super::profile::{advise, allowed};
use super::SeccompError;
use crate::engine::{Counters, Mode, TrackerConfig};
use crate::handler::{Flow, Handler};
use crate::trackers::syscall::{syscall_name, SyscallEvent, SyscallOptions};
use crate::trackers::{find_tracker, Body, Event};

/// How often one call was made, how often it failed, and by which commands.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Calls {
    pub count: u64,
    pub errors: u64,
    pub comms: BTreeSet<String>,
}

/// What a run of a command called.
#[derive(Debug)]
pub struct Recording {
    /// By call name.
    pub calls: BTreeMap<String, Calls>,
    pub status: ExitStatus,
    /// Events the tracker lost (ring buffer full, channel, malformed): a profile advised
    /// from a run that lost some may lack calls.
    pub lost: u64,
}

impl Recording {
    /// The allow-list profile of every call made.
    pub fn profile(&self) -> LinuxSeccomp {
        advise(self.calls.keys())
    }

    /// The calls `profile` refused: made, not allowed by it, and failed.
    pub fn denied(&self, profile: &LinuxSeccomp) -> BTreeMap<String, Calls> {
        let allowed = allowed(profile);
        self.calls
            .iter()
            .filter(|(name, calls)| !allowed.contains(*name) && calls.errors > 0)
            .map(|(name, calls)| (name.clone(), calls.clone()))
            .collect()
    }
}

/// Runs `command` to its end, recording its calls; under `filter` when one is given.
pub fn record(command: &mut Command, filter: Option<&Filter>) -> Result<Recording, SeccompError> {
    let cgroup = OwnCgroup::create()?;
    let calls = Arc::new(Mutex::new(BTreeMap::new()));
    let config = TrackerConfig {
        cgroup_ids: vec![cgroup.id],
        ..TrackerConfig::default()
    }
    .with_options(SyscallOptions {
        mode: Mode::Aggregate,
        ..SyscallOptions::default()
    });
    let counters = Arc::new(Counters::default());
    let handle = find_tracker("syscall")?.start(
        config,
        Box::new(Collect(calls.clone())),
        counters.clone(),
    )?;
    cgroup.join_before_exec(command);
    if let Some(filter) = filter {
        filter.install(command);
    }
    let status = command.spawn().and_then(|mut child| child.wait());
    cgroup.kill_rest();
    let stats = handle.stop()?;
    let status = status?;
    let calls = std::mem::take(&mut *calls.lock().expect("no panic holds it"));
    Ok(Recording {
        calls,
        status,
        lost: stats.lost(),
    })
}

/// Sums the syscall tracker's interval totals per call.
struct Collect(Arc<Mutex<BTreeMap<String, Calls>>>);

impl Handler<Event> for Collect {
    fn handle(&mut self, event: &Event) -> Flow {
        if let Body::Syscall(SyscallEvent::Totals {
            syscall_id,
            count,
            errors,
            ..
        }) = event.body
        {
            let name = syscall_name(syscall_id)
                .map_or_else(|| format!("syscall_{syscall_id}"), str::to_owned);
            let mut calls = self.0.lock().expect("no panic holds it");
            let entry = calls.entry(name).or_default();
            entry.count += count;
            entry.errors += errors;
            entry.comms.insert(event.header.comm.as_str().to_owned());
        }
        Flow::Caught
    }
}

/// A cgroup v2 directory made for one run, removed (its processes killed) when dropped.
struct OwnCgroup {
    path: PathBuf,
    id: u64,
}

impl OwnCgroup {
    fn create() -> Result<OwnCgroup, SeccompError> {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let root = crate::container::v2_root().ok_or(SeccompError::NoCgroupV2)?;
        let path = root.join(format!(
            "eunomia-seccomp-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&path)?;
        let id = std::fs::metadata(&path)?.ino();
        Ok(OwnCgroup { path, id })
    }

    /// The child writes itself into the cgroup between fork and exec: the kernel filter
    /// sees it from then on, its exec included.
    fn join_before_exec(&self, command: &mut Command) {
        let procs = CString::new(self.path.join("cgroup.procs").as_os_str().as_bytes())
            .expect("a path made here has no NUL");
        // SAFETY: only open, write and close, which are async-signal-safe; nothing is
        // allocated in the child.
        unsafe {
            command.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
                Ok(())
            });
        }
    }

    /// Whatever the command left running (daemons it started) ends with the run.
    fn kill_rest(&self) {
        // cgroup.kill is there since Linux 5.14; without it a leftover keeps the
        // directory, which Drop then reports.
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
    }
}

impl Drop for OwnCgroup {
    fn drop(&mut self) {
        // The killed processes may take a moment to leave.
        for _ in 0..50 {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), "cgroup left behind: {e}");
                    return;
                }
            }
        }
        tracing::warn!(path = %self.path.display(), "cgroup left behind: still busy");
    }
}
