//! The built-in rules about containers, each against a real Docker container watched by
//! the server's standing guard: a trigger run with `docker exec` raises exactly one alert
//! naming the container; a lookalike run the same way raises none.

mod common;

use std::time::{Duration, Instant};

use common::docker::{docker, docker_or_skip, unique_name, IMAGE};
use common::server::Server;
use common::TempDir;
use serde_json::{json, Value};

/// A container running `sleep 600`, started with `run_args`, removed when dropped.
struct Sleeping {
    name: String,
    id: String,
}

impl Sleeping {
    fn start(run_args: &[&str]) -> Sleeping {
        let mut sleeping = Sleeping {
            name: unique_name("rule"),
            id: String::new(),
        };
        let mut args = vec!["run", "-d", "--network", "none", "--name", &sleeping.name];
        args.extend_from_slice(run_args);
        args.extend_from_slice(&[IMAGE, "sleep", "600"]);
        sleeping.id = docker(&args);
        sleeping
    }

    /// `docker exec [exec_args] <it> sh -c <command>`; the command's status is ignored
    /// (a refused call fails it, and that is the point).
    fn exec(&self, exec_args: &[&str], command: &str) {
        let mut args = vec!["exec"];
        args.extend_from_slice(exec_args);
        let command = format!("{command}; true");
        args.extend_from_slice(&[self.name.as_str(), "sh", "-c", &command]);
        docker(&args);
    }
}

impl Drop for Sleeping {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
    }
}

fn alerts(server: &Server, rule: &str, container: &str) -> Vec<Value> {
    let query = r#"query($r: String, $c: String) { alerts(filter: {rule: $r, container: $c}) {
        edges { node { rule pid comm tracker count containerId containerName containerImage output event } } } }"#;
    let found = server.query(query, json!({ "r": rule, "c": container }));
    found["alerts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

/// What a container rule case runs.
struct Case<'a> {
    rule: &'a str,
    /// `docker run` flags of the container.
    run_args: &'a [&'a str],
    /// `docker exec` flags of the trigger (the lookalike runs with none).
    exec_args: &'a [&'a str],
    trigger: &'a str,
    lookalike: &'a str,
    /// The alert's comm, and what its output says.
    comm: &'a str,
    says: &'a str,
}

/// Runs `case` under a guard of its rule alone; returns the one alert's event.
fn container_rule(case: Case<'_>) -> Value {
    let dir = TempDir::new(&format!("container-rule-{}", case.rule));
    let server = Server::start_in(dir.path(), None);
    let container = Sleeping::start(case.run_args);
    let started = server.query(
        "mutation($r: [String!]) { startGuard(rules: $r) { rules } }",
        json!({ "r": [case.rule] }),
    );
    assert_eq!(started["startGuard"]["rules"], json!([case.rule]));

    container.exec(&[], case.lookalike);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        alerts(&server, case.rule, &container.name),
        Vec::<Value>::new(),
        "the lookalike raised {}",
        case.rule
    );

    container.exec(case.exec_args, case.trigger);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alerts(&server, case.rule, &container.name).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Time for a second alert to show, if there were one.
    std::thread::sleep(Duration::from_millis(1500));
    let raised = alerts(&server, case.rule, &container.name);
    assert_eq!(raised.len(), 1, "{raised:#?}");
    let alert = &raised[0];
    assert_eq!(alert["rule"], case.rule);
    assert_eq!(alert["comm"], case.comm, "{alert}");
    assert_eq!(alert["count"], 1);
    assert_eq!(alert["containerId"], container.id.as_str());
    assert_eq!(alert["containerName"], container.name.as_str());
    assert_eq!(alert["containerImage"], IMAGE);
    let output = alert["output"].as_str().unwrap();
    assert!(output.contains(case.says), "{output}");
    assert!(
        output.contains(&format!("(pid {})", alert["pid"])),
        "{output}"
    );
    let event = alert["event"].clone();
    assert_eq!(event["container_id"], container.id.as_str());
    assert_eq!(event["pid"], alert["pid"]);
    server.query("mutation { stopGuard { running } }", json!({}));
    event
}

#[test]
fn terminal_shell_in_container() {
    if docker_or_skip("terminal_shell_in_container") {
        let event = container_rule(Case {
            rule: "terminal_shell_in_container",
            run_args: &[],
            exec_args: &["-t"],
            // The shell `exec` runs the command in, on a terminal...
            trigger: "true",
            // ...and the same with no terminal.
            lookalike: "true",
            comm: "sh",
            says: "started on terminal pts",
        });
        assert!(event["tty"].as_str().unwrap().starts_with("pts"), "{event}");
    }
}

#[test]
fn packet_socket_in_container() {
    if docker_or_skip("packet_socket_in_container") {
        let event = container_rule(Case {
            rule: "packet_socket_in_container",
            run_args: &[],
            exec_args: &[],
            trigger: "busybox arping -c 1 -w 1 -I lo 127.0.0.1",
            lookalike: "busybox nc 127.0.0.1 1",
            comm: "busybox",
            says: "opened a AF_PACKET ",
        });
        assert_eq!(event["family"], "AF_PACKET");
    }
}

#[test]
fn mount_in_container() {
    if docker_or_skip("mount_in_container") {
        let event = container_rule(Case {
            rule: "mount_in_container",
            run_args: &[],
            exec_args: &[],
            trigger: "busybox mount -t tmpfs eunomia-test /mnt",
            // Lists the mounts: reads /proc/mounts, mounts nothing.
            lookalike: "busybox mount",
            comm: "busybox",
            says: "called mount of eunomia-test on /mnt (tmpfs): ",
        });
        assert_eq!(event["kind"], "mount");
    }
}

#[test]
fn container_unneeded_capability() {
    if docker_or_skip("container_unneeded_capability") {
        let event = container_rule(Case {
            rule: "container_unneeded_capability",
            run_args: &[],
            exec_args: &[],
            // Taking lo down needs CAP_NET_ADMIN, which Docker does not give.
            trigger: "busybox ifconfig lo down",
            // Showing lo needs none.
            lookalike: "busybox ifconfig lo",
            comm: "busybox",
            says: "needed CAP_NET_ADMIN (denied)",
        });
        assert_eq!(event["capability"], "CAP_NET_ADMIN");
    }
}

#[test]
fn new_binary_exec_in_container() {
    if docker_or_skip("new_binary_exec_in_container") {
        let event = container_rule(Case {
            rule: "new_binary_exec_in_container",
            run_args: &[],
            exec_args: &[],
            // A copy of busybox written now, then run (the image has no /tmp).
            trigger:
                "busybox mkdir -p /tmp && busybox cp /bin/busybox /tmp/dropped && /tmp/dropped true",
            // The image's own busybox run, and a file written but not run.
            lookalike:
                "busybox mkdir -p /tmp && busybox cp /bin/busybox /tmp/kept && /bin/busybox true",
            comm: "dropped",
            says: "executed /tmp/dropped, written there while the guard ran",
        });
        assert_eq!(event["filename"], "/tmp/dropped");
    }
}
