//! The capable tracker against the real kernel (root): a program that chowns a file to
//! another user and binds port 80 needs CAP_CHOWN and CAP_NET_BIND_SERVICE; as root it
//! has them, as nobody it is denied both, and the tracker says so, check by check.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{root_or_skip, start_tracker, Collector, TempDir};
use eunomia::engine::TrackerConfig;
use eunomia::model::Record;
use serde_json::json;

const SETTLE: Duration = Duration::from_secs(5);
const NOBODY: &str = "65534";

/// Waits for a line on stdin, then chowns the file (uid only: one check) and binds port
/// 80; prints what each did.
const SCRIPT: &str = "import os, socket, sys\n\
    sys.stdin.readline()\n\
    try:\n    os.chown(sys.argv[1], 1, -1); print('chown ok')\n\
    except PermissionError: print('chown refused')\n\
    s = socket.socket()\n\
    try:\n    s.bind(('0.0.0.0', 80)); print('bind ok')\n\
    except PermissionError: print('bind refused')\n";

#[test]
fn chown_and_a_low_port_need_their_capabilities() {
    if !root_or_skip("chown_and_a_low_port_need_their_capabilities") {
        return;
    }
    let dir = TempDir::new("capable");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.join("owned");
    std::fs::write(&file, b"x").unwrap();
    let file = file.to_str().unwrap().to_string();
    for (as_nobody, verdict, said) in [
        (false, "granted", "chown ok\nbind ok\n"),
        (true, "denied", "chown refused\nbind refused\n"),
    ] {
        std::os::unix::fs::chown(&file, Some(0), Some(0)).unwrap();
        // A network namespace of its own: port 80 is privileged there whatever this host's
        // net.ipv4.ip_unprivileged_port_start says.
        let mut command = Command::new("unshare");
        command.arg("--net");
        if as_nobody {
            command.args([
                "setpriv",
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
            ]);
        }
        // Debian's python (make deps): a python3 found on PATH may be a shim in root's
        // home that nobody cannot run.
        let mut child = command
            .args(["/usr/bin/python3", "-c", SCRIPT, &file])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let collector = Collector::default();
        let mut config = TrackerConfig {
            target_pid: Some(child.id()),
            ..TrackerConfig::default()
        };
        // unshare and setpriv check others (CAP_SYS_ADMIN, CAP_SETUID) on the way.
        config.options = json!({ "capabilities": ["CAP_CHOWN", "net_bind_service"] })
            .as_object()
            .unwrap()
            .clone();
        let handle = start_tracker("capable", config, collector.clone());
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), said);
        collector.wait_for(SETTLE, |events| events.len() >= 2);
        std::thread::sleep(Duration::from_millis(200));
        handle.stop().unwrap();
        let checks: Vec<[String; 4]> = collector
            .events()
            .iter()
            .map(|e| {
                ["comm", "capability", "verdict", "error"]
                    .map(|f| e.get(f).map_or("?".into(), |v| v.to_string()))
            })
            .collect();
        let error = if as_nobody { "EPERM" } else { "" };
        let want = |cap: &str| ["python3", cap, verdict, error].map(str::to_string);
        assert_eq!(
            checks,
            [want("CAP_CHOWN"), want("CAP_NET_BIND_SERVICE")],
            "as nobody: {as_nobody}"
        );
    }
}
