//! Containers started by runc without an engine (and by containerd's `ctr`), from the
//! state runc keeps per container: `<root>/<id>/state.json` names its cgroups and init
//! process. Their cgroup paths are whatever the user chose, so the path alone cannot say.

use std::path::Path;

use super::Runtime;

/// runc's default state root, and containerd's (one directory per containerd namespace).
const RUNC_ROOT: &str = "/run/runc";
const CONTAINERD_ROOT: &str = "/run/containerd/runc";

/// What a runc state file says about a live container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuncContainer {
    pub id: String,
    pub runtime: Runtime,
    pub init_pid: u32,
    /// Its cgroup v2 directory, absolute (under the v2 mount).
    pub unified_path: String,
}

#[derive(serde::Deserialize)]
struct State {
    id: String,
    init_process_pid: u32,
    #[serde(default)]
    cgroup_paths: std::collections::HashMap<String, String>,
}

/// Every container runc and containerd keep state for.
pub fn containers() -> Vec<RuncContainer> {
    let mut out = in_root(Path::new(RUNC_ROOT), Runtime::Runc);
    if let Ok(namespaces) = std::fs::read_dir(CONTAINERD_ROOT) {
        for ns in namespaces.flatten() {
            out.extend(in_root(&ns.path(), Runtime::Containerd));
        }
    }
    out
}

fn in_root(root: &Path, runtime: Runtime) -> Vec<RuncContainer> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let text = std::fs::read(entry.path().join("state.json")).ok()?;
            parse_state(&text, runtime)
        })
        .collect()
}

fn parse_state(text: &[u8], runtime: Runtime) -> Option<RuncContainer> {
    let state: State = serde_json::from_slice(text).ok()?;
    // The unified hierarchy's path is keyed by the empty controller name.
    let unified_path = state.cgroup_paths.get("")?.clone();
    Some(RuncContainer {
        id: state.id,
        runtime,
        init_pid: state.init_process_pid,
        unified_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_unified_cgroup_of_a_state_file() {
        let text = br#"{"id":"web","init_process_pid":9546,"created":"2026-11-29T00:28:32Z",
            "cgroup_paths":{"":"/sys/fs/cgroup/unified/eu/x1","memory":"/sys/fs/cgroup/memory/eu/x1"},
            "config":{"cgroups":{"path":"/eu/x1"}}}"#;
        assert_eq!(
            parse_state(text, Runtime::Runc),
            Some(RuncContainer {
                id: "web".into(),
                runtime: Runtime::Runc,
                init_pid: 9546,
                unified_path: "/sys/fs/cgroup/unified/eu/x1".into(),
            })
        );
        assert_eq!(
            parse_state(br#"{"id":"web","init_process_pid":1}"#, Runtime::Runc),
            None
        );
    }
}
