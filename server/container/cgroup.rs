//! Containers as the cgroup v2 tree shows them: which cgroup paths are containers (and of
//! which runtime), where the tree is mounted, and what a cgroup or a process holds.
//!
//! The cgroup id BPF reports (`bpf_get_current_cgroup_id`) is the inode number of the
//! task's cgroup v2 directory, so a directory's inode is the id events carry.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::Runtime;

/// Deeper cgroup trees than this are not walked (Kubernetes nests containers at depth 4-5).
const MAX_DEPTH: usize = 12;

/// A cgroup path that names a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPath {
    pub runtime: Runtime,
    pub id: String,
    /// The Kubernetes pod's UID, when the path is under `kubepods`.
    pub pod_uid: Option<String>,
    /// The container's own cgroup: the path up to the component that names it. Cgroups
    /// below it (a container's own sub-cgroups) belong to the same container.
    pub path: String,
}

pub(super) fn is_container_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The runtime and id a path component names on its own, e.g. `docker-<id>.scope`.
fn named_component(component: &str) -> Option<(Runtime, &str)> {
    let stem = component.strip_suffix(".scope").unwrap_or(component);
    const PREFIXES: [(&str, Runtime); 4] = [
        ("docker-", Runtime::Docker),
        ("cri-containerd-", Runtime::Containerd),
        ("crio-", Runtime::Crio),
        ("libpod-", Runtime::Podman),
    ];
    // `crio-conmon-<id>` and `libpod-conmon-<id>` are the monitors, not the containers:
    // their remainder is not a bare id, so they fall through.
    PREFIXES.iter().find_map(|(prefix, runtime)| {
        stem.strip_prefix(prefix)
            .filter(|id| is_container_id(id))
            .map(|id| (*runtime, id))
    })
}

/// The pod UID a `kubepods` component carries: `pod<uid>` (cgroupfs) or
/// `kubepods-<qos>-pod<uid>.slice` (systemd, which writes the UID's dashes as `_`).
fn pod_uid(component: &str) -> Option<String> {
    let stem = component.strip_suffix(".slice").unwrap_or(component);
    let uid = match stem.rfind("pod") {
        Some(0) => &stem[3..],
        Some(at) if stem.starts_with("kubepods") && stem[..at].ends_with('-') => &stem[at + 3..],
        _ => return None,
    };
    (uid.len() >= 32
        && uid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_'))
    .then(|| uid.replace('_', "-"))
}

/// Reads a cgroup v2 path (`/docker/<id>`, `/system.slice/docker-<id>.scope`,
/// `/kubepods.slice/.../cri-containerd-<id>.scope`, `/kubepods/besteffort/pod<uid>/<id>`,
/// `crio-<id>`, `libpod-<id>`); `None` for a host cgroup. The outermost container wins.
pub fn parse_path(path: &str) -> Option<ContainerPath> {
    let mut pod = None;
    let mut parent = "";
    let mut end = 0;
    for component in path.split('/') {
        end += component.len() + 1;
        if component.is_empty() {
            continue;
        }
        let found = named_component(component).or_else(|| {
            // cgroupfs drivers name the container by its bare id under a known parent.
            if !is_container_id(component) {
                return None;
            }
            match parent {
                "docker" => Some((Runtime::Docker, component)),
                _ if pod.is_some() => Some((Runtime::Cri, component)),
                _ => None,
            }
        });
        if let Some((runtime, id)) = found {
            return Some(ContainerPath {
                runtime,
                id: id.to_string(),
                pod_uid: pod,
                path: path[..end - 1].to_string(),
            });
        }
        if let Some(uid) = pod_uid(component) {
            pod = Some(uid);
        }
        parent = component;
    }
    None
}

/// Where the cgroup v2 hierarchy is mounted: `/sys/fs/cgroup` on a unified host,
/// `/sys/fs/cgroup/unified` on a hybrid one; `None` without cgroup v2.
pub fn v2_root() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        // Fields: id parent major:minor root mount-point options ... - fstype source ...
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))
            .flatten()
    })
}

/// One cgroup directory: its path below the v2 root (`/` for the root) and its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupDir {
    pub path: String,
    pub id: u64,
}

/// Every cgroup at or below `path` (relative to `root`), parents before children.
pub fn walk(root: &Path, path: &str) -> Vec<CgroupDir> {
    let mut out = Vec::new();
    let mut stack = vec![(path.to_string(), 0usize)];
    while let Some((rel, depth)) = stack.pop() {
        let dir = root.join(rel.trim_start_matches('/'));
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        if depth < MAX_DEPTH {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        let name = entry.file_name();
                        let child =
                            format!("{}/{}", rel.trim_end_matches('/'), name.to_string_lossy());
                        stack.push((child, depth + 1));
                    }
                }
            }
        }
        out.push(CgroupDir {
            path: rel,
            id: meta.ino(),
        });
    }
    out
}

/// The id of the cgroup at `path` below `root`, if it exists.
pub fn cgroup_id(root: &Path, path: &str) -> Option<u64> {
    std::fs::metadata(root.join(path.trim_start_matches('/')))
        .ok()
        .map(|m| m.ino())
}

/// The processes in one cgroup (not its children).
pub fn procs(root: &Path, path: &str) -> Vec<u32> {
    std::fs::read_to_string(root.join(path.trim_start_matches('/')).join("cgroup.procs"))
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// A process's cgroup v2 path, from the `0::` line of /proc/<pid>/cgroup.
pub fn of_pid(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// The namespaces a container's processes share, as inode numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Namespaces {
    pub pid: Option<u64>,
    pub mnt: Option<u64>,
    pub user: Option<u64>,
    pub net: Option<u64>,
    pub uts: Option<u64>,
}

impl Namespaces {
    /// Reads /proc/<pid>/ns; `None` when the process is gone.
    pub fn of_pid(pid: u32) -> Option<Self> {
        let read = |kind: &str| {
            let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
            // `pid:[4026532180]`
            let text = link.to_string_lossy();
            text.split_once(":[")?.1.strip_suffix(']')?.parse().ok()
        };
        let ns = Self {
            pid: read("pid"),
            mnt: read("mnt"),
            user: read("user"),
            net: read("net"),
            uts: read("uts"),
        };
        (ns != Self::default()).then_some(ns)
    }
}

/// When a process started, in nanoseconds since the Unix epoch (to the clock tick).
pub fn process_start_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // starttime is field 22 overall, the 20th after the command.
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok()?;
    Some(boot_time_ns() + ticks * (1_000_000_000 / hz.max(1)))
}

/// The wall-clock time of boot (CLOCK_REALTIME minus CLOCK_BOOTTIME).
fn boot_time_ns() -> u64 {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-pointer; both clocks exist on every Linux kernel.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    };
    now(libc::CLOCK_REALTIME).saturating_sub(now(libc::CLOCK_BOOTTIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "7f2fbd817a9cc474e0d18af9dc4f405d42ffb32526ac4f8c1777dfd86d9deb77";

    fn parsed(path: &str) -> Option<(Runtime, String, Option<String>, String)> {
        parse_path(path).map(|p| (p.runtime, p.id, p.pod_uid, p.path))
    }

    #[test]
    fn recognises_each_runtime() {
        let cases = [
            (format!("/docker/{ID}"), Runtime::Docker),
            (format!("/system.slice/docker-{ID}.scope"), Runtime::Docker),
            (format!("/machine.slice/libpod-{ID}.scope"), Runtime::Podman),
            (format!("/libpod_parent/libpod-{ID}"), Runtime::Podman),
            (format!("/system.slice/crio-{ID}.scope"), Runtime::Crio),
            (
                format!("/system.slice/cri-containerd-{ID}.scope"),
                Runtime::Containerd,
            ),
        ];
        for (path, runtime) in cases {
            assert_eq!(
                parsed(&path),
                Some((runtime, ID.to_string(), None, path.clone())),
                "{path}"
            );
        }
    }

    #[test]
    fn reads_kubernetes_pods() {
        let uid = "0f3c1a5e-8f2b-4c7d-9e1a-2b3c4d5e6f70";
        let systemd = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            uid.replace('-', "_")
        );
        assert_eq!(
            parsed(&systemd),
            Some((
                Runtime::Containerd,
                ID.into(),
                Some(uid.into()),
                systemd.clone()
            ))
        );
        let cgroupfs = format!("/kubepods/besteffort/pod{uid}/{ID}");
        assert_eq!(
            parsed(&cgroupfs),
            Some((Runtime::Cri, ID.into(), Some(uid.into()), cgroupfs.clone()))
        );
        let crio = format!(
            "/kubepods.slice/kubepods-pod{}.slice/crio-{ID}.scope",
            uid.replace('-', "_")
        );
        assert_eq!(
            parsed(&crio).map(|p| (p.0, p.2)),
            Some((Runtime::Crio, Some(uid.into())))
        );
    }

    #[test]
    fn sub_cgroups_belong_to_the_outer_container() {
        let path = format!("/docker/{ID}/init.scope");
        assert_eq!(
            parsed(&path),
            Some((Runtime::Docker, ID.into(), None, format!("/docker/{ID}")))
        );
    }

    #[test]
    fn host_cgroups_and_monitors_are_not_containers() {
        for path in [
            "/".to_string(),
            "/system.slice/ssh.service".to_string(),
            format!("/system.slice/crio-conmon-{ID}.scope"),
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            format!("/docker/{}", &ID[..12]),
            format!("/somewhere/{ID}"),
            "/kubepods.slice/kubepods-besteffort.slice".to_string(),
        ] {
            assert_eq!(parsed(&path), None, "{path}");
        }
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        let ns = Namespaces::of_pid(pid).expect("own namespaces");
        assert!(ns.pid.is_some() && ns.mnt.is_some() && ns.net.is_some());
        let start = process_start_ns(pid).expect("own start time");
        let now = crate::model::wall_clock_ns();
        assert!(
            start <= now && now - start < 600_000_000_000,
            "{start} vs {now}"
        );
        assert!(of_pid(pid).is_some_and(|p| p.starts_with('/')));
    }
}
