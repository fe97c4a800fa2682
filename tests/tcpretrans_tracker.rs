//! The tcpretrans tracker against the real kernel (root): two network namespaces joined
//! by a veth pair; the receiver's link goes down for 1.5 s in the middle of a transfer.
//! The segments the tracker reports retransmitted in the sender's namespace equal what
//! that namespace's own counters say (RetransSegs in /proc/net/snmp, less the
//! retransmissions that failed, TCPRetransFail in /proc/net/netstat).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{root_or_skip, start_tracker, Collector};
use eunomia::engine::TrackerConfig;
use eunomia::model::{Record, Value};
use serde_json::json;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces, `.1` in the first and `.2` in the second; deleted when dropped.
struct Pair {
    a: String,
    b: String,
    vb: String,
}

impl Pair {
    fn new() -> Self {
        // Unique per pair: the tests of this file run at once.
        static PAIRS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = PAIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}x{n}", std::process::id() % 100_000);
        let (a, b) = (format!("eura{id}"), format!("eurb{id}"));
        let (va, vb) = (format!("vra{id}"), format!("vrb{id}"));
        ip(&["netns", "add", &a]);
        ip(&["netns", "add", &b]);
        let pair = Self { a, b, vb };
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &pair.vb]);
        ip(&["link", "set", &va, "netns", &pair.a]);
        ip(&["link", "set", &pair.vb, "netns", &pair.b]);
        ip(&["-n", &pair.a, "addr", "add", "10.77.0.1/24", "dev", &va]);
        ip(&[
            "-n",
            &pair.b,
            "addr",
            "add",
            "10.77.0.2/24",
            "dev",
            &pair.vb,
        ]);
        for (ns, dev) in [(&pair.a, &va), (&pair.b, &pair.vb)] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }

    fn in_ns(&self, ns: &str, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns, program]).args(args);
        command
    }

    /// A counter of the first namespace: `file` is /proc/net/snmp or netstat, `group`
    /// the line's prefix (`Tcp`, `TcpExt`).
    fn counter(&self, file: &str, group: &str, name: &str) -> u64 {
        let out = self.in_ns(&self.a, "cat", &[file]).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let prefix = format!("{group}:");
        let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
        let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
        let at = names.split_whitespace().position(|n| n == name).unwrap();
        values.split_whitespace().nth(at).unwrap().parse().unwrap()
    }

    fn retransmitted(&self) -> u64 {
        self.counter("/proc/net/snmp", "Tcp", "RetransSegs")
            - self.counter("/proc/net/netstat", "TcpExt", "TCPRetransFail")
    }

    fn netns_inode(&self) -> u64 {
        let out = self
            .in_ns(&self.a, "stat", &["-L", "-c", "%i", "/proc/self/ns/net"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.a]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).status();
    }
}

/// A child killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const RECEIVER: &str = "import socket\n\
    s = socket.socket()\n\
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
    s.bind(('10.77.0.2', 5001)); s.listen()\n\
    print('listening', flush=True)\n\
    c, _ = s.accept()\n\
    while c.recv(65536): pass\n";

/// Sends for 3 s, never blocking long while the link is down.
const SENDER: &str = "import socket, time\n\
    s = socket.create_connection(('10.77.0.2', 5001)); s.settimeout(0.1)\n\
    end = time.time() + 3; buf = b'x' * 65536\n\
    while time.time() < end:\n\
    \x20   try: s.send(buf)\n\
    \x20   except socket.timeout: pass\n";

#[test]
fn retransmitted_segments_match_the_namespaces_counters() {
    if !root_or_skip("retransmitted_segments_match_the_namespaces_counters") {
        return;
    }
    let pair = Pair::new();
    let mut receiver = KillOnDrop(
        pair.in_ns(&pair.b, "/usr/bin/python3", &["-c", RECEIVER])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(receiver.0.stdout.take().unwrap()),
        &mut said,
    )
    .unwrap();
    assert_eq!(said, "listening\n");
    let netns = pair.netns_inode();
    let collector = Collector::default();
    let mut config = TrackerConfig::default();
    config.options = json!({ "netns": netns }).as_object().unwrap().clone();
    let handle = start_tracker("tcpretrans", config, collector.clone());
    let before = pair.retransmitted();
    let mut sender = KillOnDrop(
        pair.in_ns(&pair.a, "/usr/bin/python3", &["-c", SENDER])
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(700));
    ip(&["-n", &pair.b, "link", "set", &pair.vb, "down"]);
    std::thread::sleep(Duration::from_millis(1500));
    ip(&["-n", &pair.b, "link", "set", &pair.vb, "up"]);
    let _ = sender.0.wait();
    std::thread::sleep(Duration::from_millis(500));
    let retransmitted = pair.retransmitted() - before;
    let stats = handle.stop().unwrap();
    drop(receiver);

    assert!(retransmitted > 0, "the transfer retransmitted nothing");
    assert_eq!(stats.lost(), 0, "lost on the way: {stats:?}");
    let events = collector.events();
    let segs: u64 = events
        .iter()
        .filter(|e| e.get("error") == Some(Value::Null))
        .map(|e| match e.get("segs") {
            Some(Value::U64(n)) => n,
            other => panic!("{other:?}"),
        })
        .sum();
    assert_eq!(segs, retransmitted, "{} events", events.len());
    assert!(events
        .iter()
        .all(|e| e.get("netns") == Some(Value::U64(netns))
            && e.get("daddr") == Some(Value::Str("10.77.0.2"))
            && e.get("dport") == Some(Value::U64(5001))));
}

/// On loopback in one namespace: a connection whose accepted end drops every packet (a
/// socket filter returning 0), then one byte sent. The byte's segment and each of its
/// retransmissions is dropped; with `drops`, each is one `drop` with reason SOCKET_FILTER
/// on the receiving socket: as many as 1 + the namespace's retransmitted segments.
const FILTERED: &str = "import ctypes, socket, struct, sys, time\n\
    s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n\
    port = s.getsockname()[1]\n\
    client = socket.create_connection(('127.0.0.1', port))\n\
    conn, _ = s.accept()\n\
    drop_all = ctypes.create_string_buffer(struct.pack('HBBI', 0x06, 0, 0, 0))\n\
    program = struct.pack('HxxxxxxP', 1, ctypes.addressof(drop_all))\n\
    conn.setsockopt(socket.SOL_SOCKET, 26, program)\n\
    print(port, flush=True)\n\
    sys.stdin.readline()\n\
    client.send(b'x')\n\
    print('sent', flush=True)\n\
    sys.stdin.readline()\n";

/// The retransmissions the tracker is stopped after: the first two come about 0.2 and
/// 0.6 s after the send, the third about 0.8 s after the second.
const RETRANSMISSIONS_SEEN: u64 = 2;

#[test]
fn drops_are_reported_with_the_kernels_reason() {
    if !root_or_skip("drops_are_reported_with_the_kernels_reason") {
        return;
    }
    // The tracker is stopped right after the second retransmission. A busy machine may
    // still be stopping it when the third comes, which one of its programs then sees and
    // the other may not: that run, and only that, is measured again.
    for attempt in 1..=3 {
        if drops_once() {
            return;
        }
        eprintln!("attempt {attempt}: a retransmission came while the tracker stopped");
    }
    panic!("in 3 attempts, a retransmission came each time while the tracker stopped");
}

/// One run of the drop scenario; false when a retransmission came while the tracker was
/// stopping (nothing can then be compared exactly).
fn drops_once() -> bool {
    use std::io::{BufRead, Write};
    let pair = Pair::new();
    let mut program = KillOnDrop(
        pair.in_ns(&pair.a, "/usr/bin/python3", &["-c", FILTERED])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = program.0.stdin.take().unwrap();
    let mut lines = std::io::BufReader::new(program.0.stdout.take().unwrap()).lines();
    let port: u64 = lines.next().unwrap().unwrap().parse().unwrap();
    let netns = pair.netns_inode();
    let collector = Collector::default();
    let mut config = TrackerConfig::default();
    config.options = json!({ "netns": netns, "drops": true })
        .as_object()
        .unwrap()
        .clone();
    let handle = start_tracker("tcpretrans", config, collector.clone());
    let before = pair.retransmitted();
    stdin.write_all(b"go\n").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "sent");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pair.retransmitted() - before < RETRANSMISSIONS_SEEN {
        assert!(
            std::time::Instant::now() < deadline,
            "no second retransmission"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    handle.stop().unwrap();
    let retransmitted = pair.retransmitted() - before;
    stdin.write_all(b"end\n").unwrap();
    let _ = program.0.wait();
    if retransmitted != RETRANSMISSIONS_SEEN {
        return false;
    }

    let events = collector.events();
    let drops: Vec<_> = events
        .iter()
        .filter(|e| e.get("kind") == Some(Value::Str("drop")))
        .collect();
    assert_eq!(drops.len() as u64, 1 + retransmitted, "{events:#?}");
    assert!(
        drops
            .iter()
            .all(|e| e.get("reason") == Some(Value::Str("SOCKET_FILTER"))
                && e.get("sport") == Some(Value::U64(port))
                && e.get("saddr") == Some(Value::Str("127.0.0.1"))
                && e.get("state") == Some(Value::Str("ESTABLISHED"))
                && e.get("netns") == Some(Value::U64(netns))),
        "{drops:#?}"
    );
    let retransmits = events.len() - drops.len();
    assert_eq!(retransmits as u64, retransmitted, "{events:#?}");
    true
}
