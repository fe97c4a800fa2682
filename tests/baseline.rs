//! Learned baselines against a real Docker container: a busybox loop is learned, then
//! repeated (no alert), then runs a new binary (one anomaly) and connects to a new port
//! (one more); baselines outlive a restart of the server and can be deleted.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::docker::{docker_or_skip, Container, IMAGE};
use common::server::Server;
use common::{TempDir, Tmpfs};
use serde_json::{json, Value};

/// A loopback port whose connections are accepted and closed at once, for as long as the
/// test runs.
fn closing_listener() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    port
}

/// A container on the host's network running `script`, removed when dropped.
struct Looping {
    container: Container,
    root: PathBuf,
}

impl Looping {
    fn start(script: &str) -> Looping {
        let container = Container::run("baseline", "host", &["sh", "-c", script]);
        let root = PathBuf::from(format!("/proc/{}/root", container.pid()));
        Looping { container, root }
    }

    fn name(&self) -> &str {
        &self.container.name
    }

    /// Writes a file in the container from the host (no event of the container's).
    fn write(&self, path: &str, text: &str) {
        std::fs::write(self.root.join(path.trim_start_matches('/')), text).unwrap();
    }

    fn wait_for_file(&self, path: &str) {
        let path = self.root.join(path.trim_start_matches('/'));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !path.exists() {
            assert!(Instant::now() < deadline, "{path:?} did not appear");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

const BASELINE_FIELDS: &str = "id container image state durationSecs execs syscalls connects writeDirs eventsSeen eventsLost error";

fn baselines(server: &Server) -> Vec<Value> {
    server.query(
        &format!("{{ baselines {{ {BASELINE_FIELDS} }} }}"),
        json!({}),
    )["baselines"]
        .as_array()
        .unwrap()
        .clone()
}

/// The outputs of the anomaly alerts of `container`, oldest first.
fn anomalies(server: &Server, container: &str) -> Vec<String> {
    let query = r#"query($c: String) { alerts(filter: {rule: "anomaly", container: $c}) {
        edges { node { output count comm severity tracker } } } }"#;
    let alerts = server.query(query, json!({ "c": container }));
    let mut outputs: Vec<String> = alerts["alerts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let node = &e["node"];
            assert_eq!(node["count"], 1, "{node}");
            assert_eq!(node["severity"], "MEDIUM", "{node}");
            node["output"].as_str().unwrap().to_string()
        })
        .collect();
    outputs.reverse();
    outputs
}

/// Waits until `container` has `n` anomaly alerts, then for three more rounds of its
/// loop, and returns them: more would show by then.
fn settled_anomalies(server: &Server, container: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while anomalies(server, container).len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(3 * ROUND_MS + 1500));
    anomalies(server, container)
}

const ROUND_MS: u64 = 200;

#[test]
fn a_learned_baseline_raises_one_anomaly_for_a_new_binary_and_one_for_a_new_port() {
    if !docker_or_skip(
        "a_learned_baseline_raises_one_anomaly_for_a_new_binary_and_one_for_a_new_port",
    ) {
        return;
    }
    let (known_port, new_port) = (closing_listener(), closing_listener());
    // Each round: write a file, connect to the port named in /tmp/port, run the command
    // in /tmp/run, sleep. The test changes the two files from outside.
    let script = format!(
        "busybox mkdir -p /tmp/x && busybox ln -s /bin/busybox /tmp/x/cat && \
         echo {known_port} > /tmp/port && echo '/bin/cat /etc/hostname' > /tmp/run && \
         while true; do \
           cat /etc/hostname > /tmp/state; \
           busybox nc 127.0.0.1 $(cat /tmp/port) < /dev/null; \
           $(cat /tmp/run) > /dev/null; \
           sleep 0.{ROUND_MS}; \
         done"
    );
    let container = Looping::start(&script);
    container.wait_for_file("/tmp/state");
    let dir = TempDir::new("baseline");
    let mut server = Server::start_in(dir.path(), None);

    // Bad input first: nothing is learned from it.
    for (args, code) in [
        (
            json!({"c": "no-such-container", "d": 5}),
            "UNKNOWN_CONTAINER",
        ),
        (json!({"c": container.name(), "d": 0}), "BAD_DURATION"),
        (
            json!({"c": container.name(), "i": IMAGE, "d": 5}),
            "BAD_USER_INPUT",
        ),
        (json!({"i": "no-such-image:1", "d": 5}), "UNKNOWN_CONTAINER"),
    ] {
        let (got, message) = server.error(
            "mutation($c: String, $i: String, $d: Int!) { learnBaseline(container: $c, image: $i, durationSecs: $d) { id } }",
            args.clone(),
            None,
        );
        assert_eq!(got, code, "{args}: {message}");
    }
    assert_eq!(baselines(&server), Vec::<Value>::new());

    let started = server.query(
        r#"mutation { startGuard(rules: ["symlink_to_sensitive_file"]) { trackers baselines } }"#,
        json!({}),
    )["startGuard"]
        .clone();
    assert_eq!(started, json!({"trackers": ["security"], "baselines": []}));
    let learn = server.query(
        &format!("mutation($c: String) {{ learnBaseline(container: $c, durationSecs: 4) {{ {BASELINE_FIELDS} }} }}"),
        json!({ "c": container.name() }),
    )["learnBaseline"]
        .clone();
    assert_eq!(learn["state"], "LEARNING", "{learn}");
    assert_eq!(learn["container"], container.name());
    let id = learn["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let learned = loop {
        let all = baselines(&server);
        if all[0]["state"] != "LEARNING" || Instant::now() > deadline {
            break all[0].clone();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(learned["state"], "READY", "{learned}");
    assert_eq!(
        learned["execs"],
        json!(["/bin/busybox", "/bin/cat"]),
        "{learned}"
    );
    assert_eq!(
        learned["connects"],
        json!([format!("127.0.0.1:{known_port}")])
    );
    assert_eq!(learned["writeDirs"], json!(["/tmp"]), "{learned}");
    let syscalls: Vec<&str> = learned["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for call in ["execve", "connect", "openat", "wait4", "clock_nanosleep"] {
        assert!(syscalls.contains(&call), "{call} not in {syscalls:?}");
    }
    assert_eq!(learned["eventsLost"], 0);

    // The guard ran before the baseline was ready: it starts again with the trackers
    // baselines read, beside its rule's.
    let deadline = Instant::now() + Duration::from_secs(20);
    let guard = loop {
        let guard = server.query("{ guard { running rules trackers baselines } }", json!({}))
            ["guard"]
            .clone();
        if guard["baselines"] != json!([]) || Instant::now() > deadline {
            break guard;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        guard,
        json!({"running": true, "rules": ["symlink_to_sensitive_file"],
               "trackers": ["files", "process", "security", "syscall", "tcp"], "baselines": [id]})
    );
    // The loop as it was learned: nothing is new.
    std::thread::sleep(Duration::from_millis(10 * ROUND_MS + 2000));
    assert_eq!(anomalies(&server, container.name()), Vec::<String>::new());

    // A new binary (a link to the same busybox: the same calls, another file).
    container.write("/tmp/run", "/tmp/x/cat /etc/hostname\n");
    let after_exec = settled_anomalies(&server, container.name(), 1);
    assert_eq!(after_exec.len(), 1, "{after_exec:#?}");
    assert!(
        after_exec[0].starts_with("new_exec: /tmp/x/cat (cat pid "),
        "{after_exec:#?}"
    );
    assert!(after_exec[0].ends_with(&format!(
        " in container {}, outside baseline {id} of container {})",
        container.name(),
        container.name()
    )));

    // A new port.
    container.write("/tmp/port", &format!("{new_port}\n"));
    let after_port = settled_anomalies(&server, container.name(), 2);
    assert_eq!(after_port.len(), 2, "{after_port:#?}");
    assert!(
        after_port[1].starts_with(&format!("new_connect: 127.0.0.1:{new_port} (busybox pid ")),
        "{after_port:#?}"
    );

    // A crash: the baseline and the guard enforcing it come back.
    server.kill();
    let server = Server::start_in(dir.path(), None);
    assert_eq!(baselines(&server), vec![learned.clone()]);
    let guard = server.query("{ guard { running baselines } }", json!({}))["guard"].clone();
    assert_eq!(guard, json!({"running": true, "baselines": [id]}));

    let delete = "mutation($id: ID!) { deleteBaseline(id: $id) }";
    assert_eq!(
        server.query(delete, json!({ "id": id }))["deleteBaseline"],
        true
    );
    assert_eq!(
        server.query(delete, json!({ "id": id }))["deleteBaseline"],
        false
    );
    assert_eq!(baselines(&server), Vec::<Value>::new());
    let guard = server.query("{ guard { baselines } }", json!({}))["guard"].clone();
    assert_eq!(guard, json!({"baselines": []}));
    server.query("mutation { stopGuard { running } }", json!({}));
}

/// Fills the file system of `dir` with a file, which is returned.
fn fill(dir: &std::path::Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 1 << 16];
    while file.write_all(&chunk).is_ok() {}
    path
}

/// A fifth learner at once is refused; a store that is full when learning ends keeps
/// the baselines LEARNING, and stores them READY, whole, once there is room.
#[test]
fn learned_baselines_wait_out_a_full_disk_and_a_fifth_learner_is_refused() {
    if !docker_or_skip("learned_baselines_wait_out_a_full_disk_and_a_fifth_learner_is_refused") {
        return;
    }
    let container = Looping::start(
        "busybox mkdir -p /tmp && while true; do cat /etc/hostname > /tmp/state; sleep 0.1; done",
    );
    container.wait_for_file("/tmp/state");
    let disk = Tmpfs::mount("baseline-full-disk", "16m");
    let server = Server::start_in(disk.dir.path(), None);
    let learn = "mutation($c: String) { learnBaseline(container: $c, durationSecs: 3) { id } }";
    let args = json!({ "c": container.name() });
    let ids: Vec<Value> = (0..4)
        .map(|_| server.query(learn, args.clone())["learnBaseline"]["id"].clone())
        .collect();
    let (code, message) = server.error(learn, args.clone(), None);
    assert_eq!(code, "TOO_MANY_BASELINES", "{message}");

    let filler = fill(disk.dir.path());
    std::thread::sleep(Duration::from_secs(5));
    let states = |server: &Server| -> Vec<Value> {
        baselines(server)
            .iter()
            .map(|b| b["state"].clone())
            .collect()
    };
    assert_eq!(states(&server), vec![json!("LEARNING"); 4]);

    std::fs::remove_file(filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while states(&server) != vec![json!("READY"); 4] && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let all = baselines(&server);
    assert_eq!(all.iter().map(|b| b["id"].clone()).collect::<Vec<_>>(), ids);
    for baseline in &all {
        assert_eq!(baseline["state"], "READY", "{baseline}");
        // cat, run by busybox sh as an applet of its own file
        assert_eq!(baseline["execs"], json!(["/bin/busybox"]), "{baseline}");
        assert_eq!(baseline["writeDirs"], json!(["/tmp"]), "{baseline}");
    }
}
