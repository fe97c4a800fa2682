//! The tcp tracker against the real kernel (root): loopback connections made by this test
//! and by a child process, with exact ports, byte counts and owners.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{root_or_skip, start_tracker, Collector};
use eunomia::engine::{TrackerConfig, TrackerHandle};
use eunomia::model::{Record, Value};
use eunomia::trackers::Event;

const SETTLE: Duration = Duration::from_secs(5);
/// Bytes each client sends, then bytes the server replies before closing.
const REQUEST: usize = 1000;
const REPLY: usize = 3000;
/// How long each client keeps its connection after the reply: a floor for lifetimes.
const HOLD: Duration = Duration::from_millis(20);
const CLIENT_THREAD: &str = "eutcpcli";
const SERVER_THREAD: &str = "eutcpsrv";

fn start(config: TrackerConfig, collector: &Collector) -> TrackerHandle {
    start_tracker("tcp", config, collector.clone())
}

/// The smoothed RTT the kernel keeps for a socket, as TCP_INFO reports it.
fn srtt_us(stream: &TcpStream) -> u64 {
    // SAFETY: tcp_info is plain old data; getsockopt writes at most `len` bytes into it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_rtt.into()
}

/// What one side saw of a connection: its own port and the RTT right after opening.
#[derive(Clone, Copy, Debug)]
struct Opened {
    port: u16,
    peer_port: u16,
    srtt_us: u64,
}

/// Accepts `n` connections on a thread named [`SERVER_THREAD`]: reads exactly [`REQUEST`]
/// bytes, replies [`REPLY`] bytes, closes.
fn serve(listener: TcpListener, n: usize) -> JoinHandle<Vec<Opened>> {
    thread::Builder::new()
        .name(SERVER_THREAD.into())
        .spawn(move || {
            (0..n)
                .map(|_| {
                    let (mut stream, peer) = listener.accept().unwrap();
                    let opened = Opened {
                        port: stream.local_addr().unwrap().port(),
                        peer_port: peer.port(),
                        srtt_us: srtt_us(&stream),
                    };
                    let mut request = vec![0; REQUEST];
                    stream.read_exact(&mut request).unwrap();
                    stream.write_all(&[b'y'; REPLY]).unwrap();
                    opened
                })
                .collect()
        })
        .unwrap()
}

/// Makes `n` connections to `to` one after the other on a thread named [`CLIENT_THREAD`]:
/// sends [`REQUEST`] bytes, reads the [`REPLY`] to its end, holds, closes.
fn connect(to: SocketAddr, n: usize) -> JoinHandle<Vec<Opened>> {
    thread::Builder::new()
        .name(CLIENT_THREAD.into())
        .spawn(move || {
            (0..n)
                .map(|_| {
                    let mut stream = TcpStream::connect(to).unwrap();
                    let opened = Opened {
                        port: stream.local_addr().unwrap().port(),
                        peer_port: to.port(),
                        srtt_us: srtt_us(&stream),
                    };
                    stream.write_all(&[b'x'; REQUEST]).unwrap();
                    let mut reply = Vec::new();
                    stream.read_to_end(&mut reply).unwrap();
                    assert_eq!(reply.len(), REPLY);
                    thread::sleep(HOLD);
                    opened
                })
                .collect()
        })
        .unwrap()
}

fn u64_field(event: &Event, name: &str) -> u64 {
    match event.get(name) {
        Some(Value::U64(v)) => v,
        other => panic!("{name} of {event:?} is {other:?}"),
    }
}

/// Events of the connection between local port `port` and `peer_port`, on this side.
fn of_connection(events: &[Event], port: u16, peer_port: u16) -> Vec<Event> {
    events
        .iter()
        .filter(|e| {
            u64_field(e, "sport") == u64::from(port)
                && u64_field(e, "dport") == u64::from(peer_port)
        })
        .cloned()
        .collect()
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::kind).collect()
}

/// No connect on loopback, nor any connection's life, is shorter than this.
const PHYSICAL_MIN_NS: u64 = 1_000;

/// Checks one side of a finished connection: its open event (`connect` or `accept`) and
/// its `close`, with the expected owner and byte counts; `within` is the wall time of the
/// whole exchange, which every latency and lifetime fits in.
fn check_side(
    events: &[Event],
    side: Opened,
    within: Duration,
    (open, comm): (&str, &str),
    (ip, family): (&str, &str),
    (sent, received): (usize, usize),
) {
    let mine = of_connection(events, side.port, side.peer_port);
    assert_eq!(kinds(&mine), [open, "close"], "{side:?}: {mine:?}");
    let direction = if open == "connect" {
        "outbound"
    } else {
        "inbound"
    };
    for event in &mine {
        assert_eq!(
            event.get("direction"),
            Some(Value::Str(direction)),
            "{event:?}"
        );
        assert_eq!(event.get("error"), Some(Value::Null), "{event:?}");
        assert_eq!(event.header.pid, std::process::id(), "{event:?}");
        assert_eq!(event.get("comm"), Some(Value::Str(comm)), "{event:?}");
        assert_eq!(event.get("family"), Some(Value::Str(family)));
        assert_eq!(event.get("saddr"), Some(Value::Str(ip)));
        assert_eq!(event.get("daddr"), Some(Value::Str(ip)));
    }
    let (opened, close) = (&mine[0], &mine[1]);
    assert_eq!(u64_field(opened, "srtt_us"), side.srtt_us, "{opened:?}");
    assert_eq!(opened.get("lifetime_ns"), Some(Value::Null));
    assert_eq!(opened.get("bytes_sent"), Some(Value::Null));
    if open == "connect" {
        let latency = u64_field(opened, "latency_ns");
        assert!(
            latency >= PHYSICAL_MIN_NS && latency < within.as_nanos() as u64,
            "{opened:?} within {within:?}"
        );
    } else {
        assert_eq!(opened.get("latency_ns"), Some(Value::Null));
    }
    assert_eq!(u64_field(close, "bytes_sent"), sent as u64, "{close:?}");
    assert_eq!(
        u64_field(close, "bytes_received"),
        received as u64,
        "{close:?}"
    );
    let lifetime = u64_field(close, "lifetime_ns");
    assert!(
        lifetime >= HOLD.as_nanos() as u64 && lifetime < within.as_nanos() as u64,
        "{close:?} within {within:?}"
    );
    assert!(close.header.ts_ns > opened.header.ts_ns);
    assert_eq!(close.get("latency_ns"), Some(Value::Null));
}

/// N connections over loopback `ip`, both ends in this process: every connect, accept and
/// close, with exact ports, owners and byte counts.
fn loopback_exchange(ip: IpAddr, family: &str) {
    const N: usize = 5;
    let collector = Collector::default();
    let handle = start(
        TrackerConfig {
            target_pid: Some(std::process::id()),
            ..TrackerConfig::default()
        },
        &collector,
    );
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let to = listener.local_addr().unwrap();
    let started = Instant::now();
    let server = serve(listener, N);
    let clients = connect(to, N).join().unwrap();
    let servers = server.join().unwrap();
    let within = started.elapsed();
    let ip_text = ip.to_string();
    // The other family's test may listen on the same port number at the same time.
    let ours = |e: &Event| {
        let (sport, dport) = (u64_field(e, "sport"), u64_field(e, "dport"));
        e.get("daddr") == Some(Value::Str(&ip_text))
            && (sport == u64::from(to.port()) || dport == u64::from(to.port()))
    };
    let events = collector.wait_for(SETTLE, |events| {
        events.iter().filter(|e| ours(e)).count() >= 4 * N
    });
    let stats = handle.stop().unwrap();

    let events: Vec<Event> = events.into_iter().filter(ours).collect();
    assert_eq!(events.len(), 4 * N, "{events:?}");
    for client in clients {
        let side = (REQUEST, REPLY);
        check_side(
            &events,
            client,
            within,
            ("connect", CLIENT_THREAD),
            (&ip_text, family),
            side,
        );
    }
    for server in servers {
        let side = (REPLY, REQUEST);
        check_side(
            &events,
            server,
            within,
            ("accept", SERVER_THREAD),
            (&ip_text, family),
            side,
        );
    }
    assert_eq!(stats.lost(), 0, "{stats:?}");
}

#[test]
fn ipv4_loopback_connections_are_exact() {
    if !root_or_skip("ipv4_loopback_connections_are_exact") {
        return;
    }
    loopback_exchange(Ipv4Addr::LOCALHOST.into(), "ipv4");
}

#[test]
fn ipv6_loopback_connections_are_exact() {
    if !root_or_skip("ipv6_loopback_connections_are_exact") {
        return;
    }
    loopback_exchange(Ipv6Addr::LOCALHOST.into(), "ipv6");
}

/// A child that listens, connects `n` times to the test's server, then accepts `k`
/// connections from the test; it prints its listening port, waits for a line on stdin
/// before connecting, and prints its client ports at the end.
const CHILD: &str = r#"
import socket, sys
port, n, k, request, reply = map(int, sys.argv[1:])
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(k)
print(listener.getsockname()[1], flush=True)
sys.stdin.readline()
ports = []
for _ in range(n):
    c = socket.create_connection(("127.0.0.1", port))
    ports.append(c.getsockname()[1])
    c.sendall(b"x" * request)
    got = 0
    while data := c.recv(65536):
        got += len(data)
    assert got == reply, got
    c.close()
for _ in range(k):
    s, _ = listener.accept()
    got = 0
    while got < request:
        got += len(s.recv(request - got))
    s.sendall(b"y" * reply)
    s.close()
print(" ".join(map(str, ports)), flush=True)
"#;

/// With a pid filter, only the child's connections are reported, on both its client and
/// its server side, and none of this process's ends of the same connections.
#[test]
fn pid_filter_keeps_only_that_process() {
    if !root_or_skip("pid_filter_keeps_only_that_process") {
        return;
    }
    const N: usize = 3;
    const K: usize = 2;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = Command::new("python3")
        .args(["-c", CHILD])
        .args([port, N as u16, K as u16, REQUEST as u16, REPLY as u16].map(|v| v.to_string()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let child_port: u16 = lines.next().unwrap().unwrap().parse().unwrap();

    let collector = Collector::default();
    let handle = start(
        TrackerConfig {
            target_pid: Some(child.id()),
            ..TrackerConfig::default()
        },
        &collector,
    );
    let server = serve(listener, N);
    writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
    let ours = connect((Ipv4Addr::LOCALHOST, child_port).into(), K)
        .join()
        .unwrap();
    let child_client_ports: Vec<u16> = lines
        .next()
        .unwrap()
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(child.wait().unwrap().success());
    server.join().unwrap();
    collector.wait_for(SETTLE, |e| e.len() >= 2 * (N + K));
    std::thread::sleep(Duration::from_millis(200));
    let stats = handle.stop().unwrap();
    let events = collector.events();

    assert!(
        events
            .iter()
            .all(|e| e.header.pid == child.id() && e.get("comm") == Some(Value::Str("python3"))),
        "{events:?}"
    );
    assert_eq!(events.len(), 2 * (N + K), "{events:?}");
    for &client_port in &child_client_ports {
        let mine = of_connection(&events, client_port, port);
        assert_eq!(kinds(&mine), ["connect", "close"], "{mine:?}");
        assert_eq!(u64_field(&mine[1], "bytes_sent"), REQUEST as u64);
        assert_eq!(u64_field(&mine[1], "bytes_received"), REPLY as u64);
    }
    for opened in ours {
        let theirs = of_connection(&events, child_port, opened.port);
        assert_eq!(kinds(&theirs), ["accept", "close"], "{theirs:?}");
        assert_eq!(u64_field(&theirs[1], "bytes_sent"), REPLY as u64);
        assert_eq!(u64_field(&theirs[1], "bytes_received"), REQUEST as u64);
    }
    assert_eq!(stats.lost(), 0, "{stats:?}");
}

/// A refused connect never becomes established: no connect event, and an outbound close
/// with no bytes either way that says why, ECONNREFUSED.
#[test]
fn refused_connect_is_only_a_close() {
    if !root_or_skip("refused_connect_is_only_a_close") {
        return;
    }
    // A port that was free a moment ago, so nothing listens on it.
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap();
    let collector = Collector::default();
    let handle = start(
        TrackerConfig {
            target_pid: Some(std::process::id()),
            ..TrackerConfig::default()
        },
        &collector,
    );
    let started = Instant::now();
    let err = TcpStream::connect(closed).unwrap_err();
    let within = started.elapsed();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let to_closed = |e: &Event| u64_field(e, "dport") == u64::from(closed.port());
    collector.wait_for(SETTLE, |e| e.iter().any(to_closed));
    std::thread::sleep(Duration::from_millis(200));
    handle.stop().unwrap();

    let events: Vec<Event> = collector.events().into_iter().filter(to_closed).collect();
    assert_eq!(kinds(&events), ["close"], "{events:?}");
    assert_eq!(events[0].get("direction"), Some(Value::Str("outbound")));
    assert_eq!(events[0].get("error"), Some(Value::Str("ECONNREFUSED")));
    assert_eq!(u64_field(&events[0], "bytes_sent"), 0);
    assert_eq!(u64_field(&events[0], "bytes_received"), 0);
    assert_eq!(events[0].header.pid, std::process::id());
    let lifetime = u64_field(&events[0], "lifetime_ns");
    assert!(
        lifetime >= PHYSICAL_MIN_NS && lifetime < within.as_nanos() as u64,
        "{events:?} within {within:?}"
    );
}
