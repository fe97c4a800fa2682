//! Root tests of the container manager against a real Docker engine and runc: discovery,
//! enrichment, sessions filtered by container, grouping by container, and how fast
//! starts and stops show.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::docker::{docker, docker_or_skip, Container};
use common::server::Server;
use common::unique_binary;
use serde_json::{json, Value};

const CONTAINER_FIELDS: &str =
    "id name image runtime state pids cgroupIds cgroupPath namespaces { pid mnt user net uts } startedAt endedAt";

fn v2_root() -> PathBuf {
    eunomia::container::v2_root().expect("cgroup v2 is mounted")
}

/// The id BPF reports for a cgroup: its directory's inode in the v2 tree.
fn cgroup_inode(path: &str) -> u64 {
    std::fs::metadata(v2_root().join(path.trim_start_matches('/')))
        .unwrap()
        .ino()
}

fn ns_inode(pid: u32, kind: &str) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .ino()
}

/// Polls `container(idOrName)` until it is known (or the timeout passes).
fn wait_container(server: &Server, query: &str, timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (_, body) = server.post(
            &format!("query($q: String!) {{ container(idOrName: $q) {{ {CONTAINER_FIELDS} }} }}"),
            json!({ "q": query }),
            None,
        );
        if body["errors"].is_null() || start.elapsed() > timeout {
            return body["data"]["container"].clone();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a session's work, stops it, and returns the chosen fields.
fn session_after(server: &Server, input: Value, work: impl FnOnce(), fields: &str) -> Value {
    let id = server.start_session(input);
    work();
    server.query(
        "mutation($id: ID!) { stopSession(id: $id) { status } }",
        json!({ "id": id }),
    );
    server.session(&id, fields)
}

/// Runs a host binary of a name no other call uses (tests run in parallel threads of one
/// process, and a shared name would count one test's runs in another's), `times` times.
fn run_host_binary(times: usize) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (binary, comm) = unique_binary(&format!("ch{n}"));
    for _ in 0..times {
        assert!(Command::new(&binary).status().unwrap().success());
    }
    comm
}

#[test]
fn session_filtered_by_container_sees_exactly_its_processes() {
    if !docker_or_skip("session_filtered_by_container_sees_exactly_its_processes") {
        return;
    }
    let web1 = Container::start("eu-web");
    let name = web1.name.as_str();
    let server = Server::start("containers-web1", None);
    let found = wait_container(&server, name, Duration::from_secs(2));
    let pid = web1.pid();
    assert_eq!(found["id"], web1.id.as_str());
    assert_eq!(found["name"], name);
    assert_eq!(found["image"], common::docker::IMAGE);
    assert_eq!(found["runtime"], "DOCKER");
    assert_eq!(found["state"], "RUNNING");
    assert_eq!(found["pids"], json!([pid]));
    assert_eq!(found["cgroupPath"], format!("/docker/{}", web1.id));
    assert_eq!(
        found["cgroupIds"],
        json!([cgroup_inode(&format!("/docker/{}", web1.id))])
    );
    for kind in ["pid", "mnt", "user", "net", "uts"] {
        assert_eq!(found["namespaces"][kind], ns_inode(pid, kind), "{kind}");
    }
    // By id prefix too, and by pid.
    assert_eq!(
        wait_container(&server, &web1.id[..8], Duration::ZERO)["name"],
        name
    );
    let by_pid = server.query(
        "query($pid: Int!, $me: Int!) { web: containerOfPid(pid: $pid) { name } host: containerOfPid(pid: $me) { name } }",
        json!({ "pid": pid, "me": std::process::id() }),
    );
    assert_eq!(by_pid, json!({ "web": { "name": name }, "host": null }));

    let mut host_comm = String::new();
    let session = session_after(
        &server,
        json!({ "tracker": "process", "durationSecs": 30, "filter": { "container": name } }),
        || {
            host_comm = run_host_binary(3);
            for _ in 0..3 {
                web1.exec(&["sleep", "0"]);
            }
        },
        r#"filter lostCount
           events(first: 100) { edges { node { kind pid comm container { id name image } data } } }
           aggregate(groupBy: ["container", "kind"]) { keys count }"#,
    );
    assert_eq!(session["filter"]["containerId"], web1.id.as_str());
    assert_eq!(session["lostCount"], 0);
    let events: Vec<&Value> = session["events"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .collect();
    assert_eq!(events.len(), 6, "three execs and three exits: {events:#?}");
    for event in &events {
        assert_eq!(
            event["container"],
            json!({ "id": web1.id, "name": name, "image": common::docker::IMAGE })
        );
        assert_eq!(event["comm"], "sleep");
        assert_ne!(event["comm"], host_comm.as_str());
        assert_eq!(event["data"]["pid_ns"], ns_inode(pid, "pid"));
    }
    let execs: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "exec")
        .map(|e| e["data"]["filename"].as_str().unwrap())
        .collect();
    assert_eq!(execs, ["/bin/sleep"; 3]);
    assert_eq!(
        session["aggregate"],
        json!([{ "keys": [name, "exec"], "count": 3 }, { "keys": [name, "exit"], "count": 3 }])
    );
}

#[test]
fn grouping_by_container_separates_two_containers() {
    if !docker_or_skip("grouping_by_container_separates_two_containers") {
        return;
    }
    let a = Container::start("eu-grp-a");
    let b = Container::start("eu-grp-b");
    // Container names end in this test process's pid and a counter (unique_name).
    let tag = std::process::id();
    let server = Server::start("containers-group", None);
    for c in [&a, &b] {
        assert_eq!(
            wait_container(&server, &c.name, Duration::from_secs(2))["id"],
            c.id.as_str()
        );
    }
    let fields = format!(
        r#"aggregate(groupBy: ["container", "container_image"], where: [{{field: "container", op: CONTAINS, value: "eu-grp-"}}, {{field: "container", op: CONTAINS, value: "-{tag}-"}}]) {{ keys count }}"#
    );
    for store in ["MEMORY", "SQLITE"] {
        let session = session_after(
            &server,
            json!({ "tracker": "process", "durationSecs": 30, "store": store }),
            || {
                run_host_binary(1);
                for _ in 0..2 {
                    a.exec(&["sleep", "0"]);
                }
                for _ in 0..3 {
                    b.exec(&["sleep", "0"]);
                }
            },
            &fields,
        );
        assert_eq!(
            session["aggregate"],
            json!([
                { "keys": [b.name, "bb:latest"], "count": 6 },
                { "keys": [a.name, "bb:latest"], "count": 4 },
            ]),
            "{store}"
        );
    }
    let mut host_comm = String::new();
    // Host processes have no container: their group key is null.
    let session = session_after(
        &server,
        json!({ "tracker": "process", "durationSecs": 30, "store": "MEMORY" }),
        || host_comm = run_host_binary(2),
        "id",
    );
    let host = server.session(
        session["id"].as_str().unwrap(),
        &format!(r#"aggregate(groupBy: ["container", "kind"], where: [{{field: "comm", value: {host_comm:?}}}]) {{ keys count }}"#),
    );
    assert_eq!(
        host["aggregate"],
        json!([{ "keys": ["null", "exec"], "count": 2 }, { "keys": ["null", "exit"], "count": 2 }])
    );
}

#[test]
fn container_start_and_stop_show_within_a_second() {
    if !docker_or_skip("container_start_and_stop_show_within_a_second") {
        return;
    }
    let server = Server::start("containers-life", None);
    let list = |exited: bool| {
        server.query(
            "query($exited: Boolean!) { containers(exited: $exited) { id name state endedAt } }",
            json!({ "exited": exited }),
        )["containers"]
            .as_array()
            .unwrap()
            .clone()
    };
    let until = |what: &str, done: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "{what} did not show within a second"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    };
    let c = Container::start("eu-life");
    let name = c.name.clone();
    let started = until("the start", &|| {
        list(false).iter().any(|x| {
            x["id"] == c.id.as_str() && x["name"] == name.as_str() && x["state"] == "RUNNING"
        })
    });
    docker(&["kill", &c.id]);
    let stopped = until("the stop", &|| {
        !list(false).iter().any(|x| x["id"] == c.id.as_str())
            && list(true).iter().any(|x| {
                x["id"] == c.id.as_str() && x["state"] == "EXITED" && x["endedAt"].is_string()
            })
    });
    eprintln!("start shown after {started:?}, stop after {stopped:?}");
}

/// A runc container started without any engine; killed and deleted when dropped.
struct RuncContainer {
    id: String,
    bundle: PathBuf,
    cgroup_parent: String,
}

impl RuncContainer {
    fn start() -> RuncContainer {
        let tag = std::process::id();
        let id = format!("eunomia-runc-{tag}");
        let bundle = std::env::temp_dir().join(format!("eunomia-runc-bundle-{tag}"));
        let _ = std::fs::remove_dir_all(&bundle);
        let bin = bundle.join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/usr/bin/busybox", bin.join("busybox")).unwrap();
        for applet in ["sh", "sleep"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        let run = |args: &[&str]| {
            let out = Command::new("runc")
                .args(args)
                .current_dir(&bundle)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "runc {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["spec"]);
        let spec_path = bundle.join("config.json");
        let mut spec: Value = serde_json::from_slice(&std::fs::read(&spec_path).unwrap()).unwrap();
        let cgroup_parent = format!("eunomia-test-{tag}");
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(["sleep", "600"]);
        spec["process"].as_object_mut().unwrap().remove("rlimits");
        spec["linux"]["cgroupsPath"] = json!(format!("/{cgroup_parent}/c1"));
        std::fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();
        let status = Command::new("runc")
            .args(["run", "-d", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "runc run failed");
        RuncContainer {
            id,
            bundle,
            cgroup_parent,
        }
    }

    fn init_pid(&self) -> u32 {
        let out = Command::new("runc")
            .args(["state", &self.id])
            .output()
            .unwrap();
        let state: Value = serde_json::from_slice(&out.stdout).unwrap();
        state["pid"].as_u64().unwrap() as u32
    }

    fn exec(&self, command: &[&str]) {
        let status = Command::new("runc")
            .args(["exec", &self.id])
            .args(command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "runc exec {command:?}");
    }
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["delete", "-f", &self.id])
            .stderr(Stdio::null())
            .status();
        // runc removes the container's cgroups; their parent is ours to remove.
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                let _ = std::fs::remove_dir(h.path().join(&self.cgroup_parent));
            }
        }
        let _ = std::fs::remove_dir_all(&self.bundle);
    }
}

#[test]
fn runc_container_is_recognised_by_id() {
    if !common::root_or_skip("runc_container_is_recognised_by_id") {
        return;
    }
    if Command::new("runc").arg("--version").output().is_err() {
        common::skip(
            "runc_container_is_recognised_by_id",
            "needs runc (make deps installs it)",
        );
        return;
    }
    let runc = RuncContainer::start();
    let server = Server::start("containers-runc", None);
    let found = wait_container(&server, &runc.id, Duration::from_secs(2));
    let path = format!("/{}/c1", runc.cgroup_parent);
    assert_eq!(found["id"], runc.id.as_str());
    assert_eq!(found["name"], Value::Null);
    assert_eq!(found["runtime"], "RUNC");
    assert_eq!(found["state"], "RUNNING");
    assert_eq!(found["pids"], json!([runc.init_pid()]));
    assert_eq!(found["cgroupPath"], path.as_str());
    assert_eq!(found["cgroupIds"], json!([cgroup_inode(&path)]));
    assert_eq!(found["namespaces"]["pid"], ns_inode(runc.init_pid(), "pid"));

    let session = session_after(
        &server,
        json!({ "tracker": "process", "durationSecs": 30, "filter": { "container": runc.id } }),
        || {
            for _ in 0..2 {
                runc.exec(&["sleep", "0"]);
            }
        },
        "aggregate(groupBy: [\"container_id\", \"container\", \"comm\", \"kind\"]) { keys count }",
    );
    assert_eq!(
        session["aggregate"],
        json!([
            { "keys": [runc.id, runc.id, "sleep", "exec"], "count": 2 },
            { "keys": [runc.id, runc.id, "sleep", "exit"], "count": 2 },
        ])
    );
}

#[test]
fn cli_run_traces_one_container() {
    if !docker_or_skip("cli_run_traces_one_container") {
        return;
    }
    let c = Container::start("eu-cli");
    let run = common::CliRun::start(
        &[
            "run",
            "process",
            "--duration",
            "3",
            "--format",
            "json",
            "--container",
            &c.name,
        ],
        &[],
    );
    run_host_binary(2);
    for _ in 0..2 {
        c.exec(&["sleep", "0"]);
    }
    let out = run.finish();
    assert!(out.status.success());
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["container"].as_str().unwrap(),
                e["container_id"].as_str().unwrap(),
            )
        })
        .collect();
    let name = c.name.as_str();
    let id = c.id.as_str();
    assert_eq!(
        summary,
        [
            ("exec", name, id),
            ("exit", name, id),
            ("exec", name, id),
            ("exit", name, id)
        ]
    );
}

/// Runs a container named `name` of `image` with `sh -c script`, without a network, to
/// its end (kept, so that it can be started again).
fn run_to_end(name: &str, image: &str, script: &str) {
    docker(&[
        "run",
        "--network",
        "none",
        "--name",
        name,
        image,
        "sh",
        "-c",
        script,
    ]);
}

/// A process session's events as "container kind comm filename" lines, in order. runc's
/// own set-up processes are left out: the first of them exit about as soon as the cgroup
/// is made, so whether they are seen is a race; the workload comes well after.
fn container_events(session: &Value) -> Vec<String> {
    session["events"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .filter(|e| !e["comm"].as_str().unwrap().starts_with("runc"))
        .map(|e| {
            format!(
                "{} {} {} {}",
                e["container"]["name"].as_str().unwrap_or("host"),
                e["kind"].as_str().unwrap(),
                e["comm"].as_str().unwrap(),
                e["data"]["filename"].as_str().unwrap_or("-"),
            )
        })
        .collect()
}

/// A session that names a container before it exists traces it from its first exec (the
/// container's cgroup joins the kernel filter as runc makes it), and again after a
/// restart, in a new cgroup.
#[test]
fn a_session_follows_a_named_container_from_its_first_exec_and_through_a_restart() {
    if !docker_or_skip(
        "a_session_follows_a_named_container_from_its_first_exec_and_through_a_restart",
    ) {
        return;
    }
    let server = Server::start("containers-follow", None);
    let name = common::docker::unique_name("eu-follow");
    let _removed = Container {
        name: name.clone(),
        id: String::new(),
    };
    let script = "ls / >/dev/null; cat /etc/hostname >/dev/null";
    let mut host_comm = String::new();
    let session = session_after(
        &server,
        json!({ "tracker": "process", "durationSecs": 60, "filter": { "containerName": name } }),
        || {
            run_to_end(&name, common::docker::IMAGE, script);
            host_comm = run_host_binary(2);
            docker(&["start", "--attach", &name]);
        },
        r#"filter lostCount
           events(first: 100) { edges { node { kind comm container { name } data } } }"#,
    );
    assert_eq!(session["filter"]["containerName"], name.as_str());
    assert_eq!(session["lostCount"], 0);
    // busybox sh forks `ls` without an exec, and execs itself for the last command.
    let run = [
        format!("{name} exec sh /bin/sh"),
        format!("{name} exit ls -"),
        format!("{name} exec exe /bin/busybox"),
        format!("{name} exit cat -"),
    ];
    let lines = container_events(&session);
    assert_eq!(lines, [run.clone(), run].concat());
    assert!(!lines.iter().any(|l| l.contains(&host_comm)));
}

/// A session on an image takes in the running containers of that image and those that
/// start during it, and no container of another image.
#[test]
fn a_session_follows_the_containers_of_an_image() {
    if !docker_or_skip("a_session_follows_the_containers_of_an_image") {
        return;
    }
    // An image name of this test's own, so that concurrent tests' containers stay out.
    let image = format!("eu-follow-{}:t", std::process::id());
    docker(&["tag", common::docker::IMAGE, &image]);
    struct Untag(String);
    impl Drop for Untag {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rmi", &self.0]).output();
        }
    }
    let _untag = Untag(image.clone());
    let server = Server::start("containers-image", None);
    let running = common::docker::unique_name("eu-img-a");
    let _running = Container {
        name: running.clone(),
        id: docker(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            &running,
            &image,
            "sleep",
            "600",
        ]),
    };
    wait_container(&server, &running, Duration::from_secs(2));
    let (later, other) = (
        common::docker::unique_name("eu-img-b"),
        common::docker::unique_name("eu-img-c"),
    );
    let _removed = [&later, &other].map(|name| Container {
        name: name.clone(),
        id: String::new(),
    });
    let session = session_after(
        &server,
        json!({ "tracker": "process", "durationSecs": 60, "filter": { "image": image } }),
        || {
            docker(&["exec", &running, "cat", "/etc/hostname"]);
            for (name, image) in [(&later, image.as_str()), (&other, common::docker::IMAGE)] {
                run_to_end(name, image, "cat /etc/hostname");
            }
        },
        r#"lostCount events(first: 100) { edges { node { kind comm container { name } data } } }"#,
    );
    assert_eq!(session["lostCount"], 0);
    assert_eq!(
        container_events(&session),
        [
            format!("{running} exec cat /bin/cat"),
            format!("{running} exit cat -"),
            format!("{later} exec sh /bin/sh"),
            format!("{later} exec exe /bin/busybox"),
            format!("{later} exit cat -"),
        ]
    );
}

/// `eunomia run --container-name` takes in a container started after it began.
#[test]
fn cli_run_follows_a_container_started_later() {
    if !docker_or_skip("cli_run_follows_a_container_started_later") {
        return;
    }
    let name = common::docker::unique_name("eu-cli-later");
    let _removed = Container {
        name: name.clone(),
        id: String::new(),
    };
    let run = common::CliRun::start(
        &[
            "run",
            "process",
            "--duration",
            "4",
            "--format",
            "json",
            "--container-name",
            &name,
        ],
        &[],
    );
    run_host_binary(2);
    run_to_end(&name, common::docker::IMAGE, "cat /etc/hostname");
    let out = run.finish();
    assert!(out.status.success());
    let seen: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| !e["comm"].as_str().unwrap().starts_with("runc"))
        .map(|e| {
            format!(
                "{} {} {}",
                e["container"].as_str().unwrap(),
                e["kind"].as_str().unwrap(),
                e["comm"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            format!("{name} exec sh"),
            format!("{name} exec exe"),
            format!("{name} exit cat"),
        ]
    );
}
