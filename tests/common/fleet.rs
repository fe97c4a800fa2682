//! A fleet of real servers for the fleet tests and benchmark: one `eunomia serve` per
//! node, each with its node name, port and SQLite file, kept to a cgroup of its own
//! (`[fleet] cgroup`, as nodes that share a host), on one private PostgreSQL.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::postgres::Postgres;
use super::server::Server;
use super::{unique_binary, TempDir, TestBinary};

/// A cgroup v2 directory made for a test, removed (empty by then) when dropped.
pub struct Cgroup(pub PathBuf);

impl Cgroup {
    pub fn new(tag: &str) -> Cgroup {
        let root = eunomia::container::v2_root().expect("a cgroup v2 hierarchy");
        let path = root.join(format!("eunomia-fleet-{tag}-{}", std::process::id()));
        std::fs::create_dir(&path).unwrap();
        Cgroup(path)
    }

    /// Runs `binary` `n` times from a shell that has moved itself into this cgroup: the
    /// only processes in it are the shell and the `n` runs.
    pub fn run(&self, binary: &TestBinary, n: usize) {
        self.shell(&format!(
            "i=0 && while [ $i -lt {n} ]; do {} || exit 1; i=$((i+1)); done",
            binary.display()
        ));
    }

    /// Runs a shell `script` in this cgroup (the shell moves itself in first).
    pub fn shell(&self, script: &str) {
        let script = format!("echo $$ > {}/cgroup.procs && {script}", self.0.display());
        let status = Command::new("/bin/sh")
            .args(["-c", &script])
            .status()
            .unwrap();
        assert!(status.success(), "{script}");
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// One node: a server in the fleet, kept to its own cgroup, and its workload.
pub struct Node {
    pub name: &'static str,
    pub server: Server,
    pub cgroup: Cgroup,
    /// A program under a name of its own, and that name (its comm).
    pub workload: (TestBinary, String),
    pub dir: TempDir,
    /// The end of its configuration (see [`nodes_configured`]).
    pub config: String,
}

/// Starts one server per name, each in the fleet of `postgres` and kept to a cgroup of
/// its own.
pub fn nodes(postgres: &Postgres, names: &[&'static str]) -> Vec<Node> {
    nodes_configured(postgres, names, "")
}

/// As [`nodes`], each server's configuration ending with `config` (TOML tables).
pub fn nodes_configured(postgres: &Postgres, names: &[&'static str], config: &str) -> Vec<Node> {
    names
        .iter()
        .map(|&name| {
            let dir = TempDir::new(&format!("fleet-{name}"));
            let cgroup = Cgroup::new(name);
            Node {
                name,
                server: launch(postgres, name, &dir, &cgroup, config),
                cgroup,
                workload: unique_binary(&format!("fl{name}")),
                dir,
                config: config.to_string(),
            }
        })
        .collect()
}

impl Node {
    /// Starts the node's server again, on the database it had.
    pub fn restart(&mut self, postgres: &Postgres) {
        self.server = launch(postgres, self.name, &self.dir, &self.cgroup, &self.config);
    }
}

fn launch(postgres: &Postgres, name: &str, dir: &TempDir, cgroup: &Cgroup, more: &str) -> Server {
    let config = format!("[fleet]\ncgroup = \"{}\"\n{more}", cgroup.0.display());
    let args: Vec<OsString> = ["--fleet", &postgres.url, "--node", name]
        .iter()
        .map(OsString::from)
        .collect();
    Server::launch(dir.path(), Some(&config), args, None)
}

/// A fleet session's status, counts and parts, asked of `server`.
pub fn parts(server: &Server, id: &str) -> Value {
    server.session(id, "status eventCount nodes { node status eventCount lostCount shippedCount localSessionId error }")
}

/// Waits until every node named runs its part.
pub fn wait_running(server: &Server, id: &str, names: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let session = parts(server, id);
        let running = session["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["status"] == "RUNNING" && names.contains(&p["node"].as_str().unwrap()))
            .count();
        if running == names.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "parts did not all start: {session}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn wait_ended(server: &Server, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let session = parts(server, id);
        if session["status"] != "RUNNING" {
            return session;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet session did not end: {session}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
