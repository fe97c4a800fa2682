//! Runs a workload in a cgroup of its own, with the syscall tracker's aggregate mode
//! filtered in the kernel to that cgroup's subtree: every call of the workload and of its
//! children from its first instruction, and nothing else's. A command joins the cgroup
//! between fork and exec; a container is started by Docker with the cgroup as its parent,
//! so runc's own calls in the container, those after it installs the profile included,
//! are recorded too. Under a profile, the calls it refused are those not in it.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxSeccomp;

use super::filter::Filter;
use super::profile::{advise, advise_narrowed, allowed, permits};
use super::SeccompError;
use crate::engine::{CgroupFilter, Counters, Mode, TrackerConfig, TrackerHandle};
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
    /// socket, clone and personality again, by name and first argument.
    pub by_first_arg: BTreeMap<String, BTreeMap<u64, Calls>>,
    /// How a workload started here ended; none for one watched.
    pub status: Option<ExitStatus>,
    /// Events the tracker lost (ring buffer full, channel, malformed): a profile advised
    /// from a run that lost some may lack calls.
    pub lost: u64,
}

impl Recording {
    /// The allow-list profile of every call made; with `narrow`, socket, clone and
    /// personality only with the first arguments they were given.
    pub fn profile(&self, narrow: bool) -> LinuxSeccomp {
        match narrow {
            false => advise(self.calls.keys()),
            true => {
                let first_args = self
                    .by_first_arg
                    .iter()
                    .map(|(name, values)| (name.clone(), values.keys().copied().collect()))
                    .collect();
                advise_narrowed(self.calls.keys(), &first_args)
            }
        }
    }

    /// The calls `profile` refused: made, not allowed by it (or not with the first
    /// argument they were given), and failed.
    pub fn denied(&self, profile: &LinuxSeccomp) -> BTreeMap<String, Calls> {
        let allowed = allowed(profile);
        let mut denied: BTreeMap<String, Calls> = self
            .calls
            .iter()
            .filter(|(name, calls)| !allowed.contains(*name) && calls.errors > 0)
            .map(|(name, calls)| (name.clone(), calls.clone()))
            .collect();
        for (name, values) in &self.by_first_arg {
            let refused = values
                .iter()
                .filter(|(&arg0, calls)| calls.errors > 0 && !permits(profile, name, arg0));
            for (_, calls) in refused.filter(|_| allowed.contains(name)) {
                denied.entry(name.clone()).or_default().add(calls);
            }
        }
        denied
    }
}

impl Calls {
    fn add(&mut self, other: &Calls) {
        self.count += other.count;
        self.errors += other.errors;
        self.comms.extend(other.comms.iter().cloned());
    }
}

/// What to run and record.
pub enum Workload {
    /// A command, run here.
    Command(Command),
    /// A fresh container of `image` running `command` (the image's own when empty),
    /// started with the Docker CLI and removed when it ends.
    Container { image: String, command: Vec<String> },
}

/// A profile to run a workload under: compiled for a command, a file for Docker.
pub struct Enforced<'a> {
    pub filter: &'a Filter,
    pub path: &'a Path,
}

/// Runs `workload` to its end, or until `limit` passes (then whatever runs in its cgroup
/// is killed), recording its calls; under `profile` when one is given.
pub fn record(
    workload: Workload,
    profile: Option<Enforced<'_>>,
    limit: Option<Duration>,
) -> Result<Recording, SeccompError> {
    let cgroup = OwnCgroup::create()?;
    // In a container, what runc does before it installs the filter (mounts, pivot_root)
    // needs no allowing; everything after, its own calls up to the exec included, does.
    let seccomp_only = matches!(workload, Workload::Container { .. });
    let mut command = match workload {
        Workload::Command(mut command) => {
            cgroup.join_before_exec(&mut command);
            if let Some(profile) = &profile {
                profile.filter.install(&mut command);
            }
            command
        }
        Workload::Container { image, command } => {
            docker_run(&cgroup, &image, &command, profile.as_ref().map(|p| p.path))?
        }
    };
    let tracing = Tracing::start(vec![cgroup.id], cgroup.level, seccomp_only)?;
    let deadline = limit.map(|l| Instant::now() + l);
    let status = command.spawn().and_then(|mut child| loop {
        if let Some(status) = child.try_wait()? {
            break Ok(status);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            cgroup.kill_rest();
        }
        std::thread::sleep(Duration::from_millis(10));
    });
    cgroup.kill_rest();
    let mut recording = tracing.finish()?;
    recording.status = Some(status?);
    Ok(recording)
}

/// Records the calls made in the cgroups `follow` adds to the tracker's filter (a
/// container's, as they appear) until `done` says so: only those made under a seccomp
/// filter, as for a container started here.
pub fn watch(
    follow: impl FnOnce(&Arc<CgroupFilter>),
    done: impl Fn() -> bool,
) -> Result<Recording, SeccompError> {
    let tracing = Tracing::start(Vec::new(), 0, true)?;
    follow(
        &tracing
            .handle
            .cgroup_filter()
            .expect("the syscall tracker takes cgroups while it runs"),
    );
    while !done() && !tracing.handle.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing.finish()
}

/// What the tracker counted so far: per call, and per call and first argument.
#[derive(Default)]
struct Counted {
    calls: BTreeMap<String, Calls>,
    by_first_arg: BTreeMap<String, BTreeMap<u64, Calls>>,
}

/// The syscall tracker in aggregate mode, counting per call name.
struct Tracing {
    handle: TrackerHandle,
    counted: Arc<Mutex<Counted>>,
}

impl Tracing {
    fn start(cgroup_ids: Vec<u64>, level: u32, seccomp_only: bool) -> Result<Self, SeccompError> {
        let counted = Arc::new(Mutex::new(Counted::default()));
        let config = TrackerConfig {
            follow_cgroups: cgroup_ids.is_empty(),
            cgroup_ids,
            cgroup_level: level,
            ..TrackerConfig::default()
        }
        .with_options(SyscallOptions {
            mode: Mode::Aggregate,
            seccomp_only,
            first_args: true,
            ..SyscallOptions::default()
        });
        let handle = find_tracker("syscall")?.start(
            config,
            Box::new(Collect(counted.clone())),
            Arc::new(Counters::default()),
        )?;
        Ok(Tracing { handle, counted })
    }

    /// Stops the tracker (its last totals drained) and hands over what it counted.
    fn finish(self) -> Result<Recording, SeccompError> {
        let stats = self.handle.stop()?;
        let counted = std::mem::take(&mut *self.counted.lock().expect("no panic holds it"));
        Ok(Recording {
            calls: counted.calls,
            by_first_arg: counted.by_first_arg,
            status: None,
            lost: stats.lost(),
        })
    }
}

/// Sums the syscall tracker's interval totals per call (and first argument).
struct Collect(Arc<Mutex<Counted>>);

impl Handler<Event> for Collect {
    fn handle(&mut self, event: &Event) -> Flow {
        if let Body::Syscall(SyscallEvent::Totals {
            syscall_id,
            count,
            errors,
            arg0,
            ..
        }) = event.body
        {
            let name = syscall_name(syscall_id)
                .map_or_else(|| format!("syscall_{syscall_id}"), str::to_owned);
            let these = Calls {
                count,
                errors,
                comms: BTreeSet::from([event.header.comm.as_str().to_owned()]),
            };
            let mut counted = self.0.lock().expect("no panic holds it");
            if let Some(arg0) = arg0 {
                let by_arg = counted.by_first_arg.entry(name.clone()).or_default();
                by_arg.entry(arg0).or_default().add(&these);
            }
            counted.calls.entry(name).or_default().add(&these);
        }
        Flow::Caught
    }
}

/// `docker run` of a container whose cgroup Docker makes below `cgroup` (the cgroupfs
/// driver takes any parent path; the systemd driver only slices, which is not done yet).
fn docker_run(
    cgroup: &OwnCgroup,
    image: &str,
    command: &[String],
    profile: Option<&Path>,
) -> Result<Command, SeccompError> {
    let driver = Command::new("docker")
        .args(["info", "--format", "{{.CgroupDriver}}"])
        .output()
        .map_err(|e| SeccompError::Docker(format!("running the docker CLI: {e}")))?;
    let driver = String::from_utf8_lossy(&driver.stdout).trim().to_string();
    if driver != "cgroupfs" {
        return Err(SeccompError::Docker(format!(
            "the engine's cgroup driver is `{driver}`; recording a container needs cgroupfs"
        )));
    }
    let mut run = Command::new("docker");
    run.args(["run", "--rm", "--cgroup-parent"])
        .arg(format!("/{}", cgroup.name));
    if let Some(path) = profile {
        run.arg("--security-opt")
            .arg(format!("seccomp={}", path.display()));
    }
    run.arg(image).args(command);
    Ok(run)
}

/// A cgroup v2 directory made for one run, removed (its processes killed) when dropped.
struct OwnCgroup {
    path: PathBuf,
    name: String,
    id: u64,
    /// Its depth below the root (which is level 0).
    level: u32,
}

impl OwnCgroup {
    fn create() -> Result<OwnCgroup, SeccompError> {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let root = crate::container::v2_root().ok_or(SeccompError::NoCgroupV2)?;
        let name = format!(
            "eunomia-seccomp-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        );
        let path = root.join(&name);
        std::fs::create_dir(&path)?;
        let id = std::fs::metadata(&path)?.ino();
        Ok(OwnCgroup {
            path,
            name,
            id,
            level: 1,
        })
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
                    std::thread::sleep(Duration::from_millis(10))
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
