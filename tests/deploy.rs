//! The deployment files: the Grafana dashboard names only metrics the server exports (and
//! shows every built-in exporter's), the Kubernetes DaemonSet is a valid DaemonSet to the
//! Kubernetes API's own models with what tracing needs, and the systemd unit runs the
//! server with options it has.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::eunomia;

fn deploy(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy")
            .join(path),
    )
    .unwrap()
}

/// The families `eunomia metrics` lists.
fn exported() -> BTreeSet<String> {
    let out = eunomia(&["metrics"]);
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_dashboard_names_only_exported_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy("grafana/eunomia.json")).unwrap();
    let families = exported();
    for family in [
        "eunomia_events_total",
        "eunomia_exporter_container_process_events_total",
    ] {
        assert!(families.contains(family), "{family} not in {families:?}");
    }
    let name = regex::Regex::new(r"\b(eunomia_[a-z0-9_]+|process_[a-z0-9_]+)\b").unwrap();
    let mut used = BTreeSet::new();
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for found in name.find_iter(expr) {
                let metric = found.as_str();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| metric.strip_suffix(s).filter(|b| families.contains(*b)))
                    .unwrap_or(metric);
                assert!(
                    families.contains(base),
                    "panel {:?} names {metric}, which the server does not export",
                    panel["title"]
                );
                used.insert(base.to_string());
            }
        }
    }
    let built_in: Vec<&String> = families
        .iter()
        .filter(|f| f.starts_with("eunomia_exporter_"))
        .collect();
    assert_eq!(built_in.len(), 7, "{built_in:?}");
    for family in built_in {
        assert!(used.contains(family), "no panel shows {family}");
    }
}

#[test]
fn the_daemonset_is_valid_and_has_what_tracing_needs() {
    let manifest = deploy("kubernetes/daemonset.yaml");
    // Debian's python3-kubernetes: the API's models read the manifest, and writing it
    // back must give the same object (a field the models do not know would be lost).
    let script = r#"
import json, sys, yaml
from kubernetes.client import ApiClient

class Response:
    def __init__(self, data):
        self.data = json.dumps(data)

given = yaml.safe_load(sys.stdin)
api = ApiClient()
daemonset = api.deserialize(Response(given), "V1DaemonSet")
back = api.sanitize_for_serialization(daemonset)
if back != given:
    sys.exit("not the same after the models read it:\n%s\n%s" % (given, back))
spec = daemonset.spec.template.spec
container = spec.containers[0]
print(json.dumps({
    "host_pid": spec.host_pid,
    "caps": container.security_context.capabilities.add,
    "privileged": container.security_context.privileged,
    "mounts": {m.mount_path: m.name for m in container.volume_mounts},
    "volumes": sorted(v.name for v in spec.volumes),
    "args": container.args,
}))
"#;
    let mut python = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("Debian's python3 (make deps)");
    use std::io::Write;
    python
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3-kubernetes (make deps): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found["host_pid"], true);
    assert_eq!(found["privileged"], false);
    let caps: BTreeSet<&str> = found["caps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for cap in ["BPF", "PERFMON", "SYS_ADMIN", "SYS_RESOURCE"] {
        assert!(caps.contains(cap), "{cap} missing: {caps:?}");
    }
    for path in [
        "/sys/kernel/btf",
        "/sys/kernel/tracing",
        "/sys/fs/cgroup",
        "/var/run/docker.sock",
        "/run/containerd/containerd.sock",
    ] {
        let volume = &found["mounts"][path];
        assert!(volume.is_string(), "nothing mounted at {path}");
        assert!(
            found["volumes"].as_array().unwrap().contains(volume),
            "{path}: no volume {volume}"
        );
    }
    // Each capability and each mount of the host says why, on the line before it.
    let lines: Vec<&str> = manifest.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let item = line.trim();
        let explained = || lines[i - 1].trim().starts_with('#');
        if caps.contains(item.trim_start_matches("- ")) && item.starts_with("- ") {
            assert!(explained(), "capability without a reason: {item}");
        }
        if let Some(path) = item
            .strip_prefix("mountPath: /sys")
            .or(item.strip_prefix("mountPath: /run"))
        {
            let name_line = lines[i - 1].trim();
            assert!(name_line.starts_with("- name:"), "{path}");
            assert!(
                lines[i - 2].trim().starts_with('#'),
                "mount without a reason: {path}"
            );
        }
    }
    check_serve_args(
        found["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap()),
    );
}

/// The `eunomia serve` options in `args` exist.
fn check_serve_args<'a>(args: impl Iterator<Item = &'a str>) {
    let help = String::from_utf8(eunomia(&["serve", "--help"]).stdout).unwrap();
    for option in args.filter(|a| a.starts_with("--")) {
        assert!(help.contains(option), "`eunomia serve` has no {option}");
    }
}

#[test]
fn the_systemd_unit_runs_the_server_with_options_it_has() {
    let unit = deploy("systemd/eunomia.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/eunomia"));
    assert_eq!(words.next(), Some("serve"));
    check_serve_args(words);
    for key in [
        "LimitMEMLOCK=infinity",
        "User=root",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == key), "{key}");
    }
}
