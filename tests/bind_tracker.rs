//! The bind tracker against the real kernel (root): TCP and UDP binds over IPv4 and IPv6,
//! and one refused with EADDRINUSE, each reported with the address, port, protocol and
//! result the program saw.

mod common;

use common::{root_or_skip, trace_python};
use eunomia::model::Record;
use serde_json::json;

/// Binds as told by its arguments (`family proto addr port` each), after a line on stdin;
/// prints each bind's errno (0 for none). Keeps every socket open until the end.
const SCRIPT: &str = "import socket, sys\n\
    print('ready', flush=True)\n\
    sys.stdin.readline()\n\
    kept = []\n\
    args = sys.argv[1:]\n\
    for i in range(0, len(args), 4):\n\
    \x20   fam, proto, addr, port = args[i:i + 4]\n\
    \x20   s = socket.socket(socket.AF_INET if fam == '4' else socket.AF_INET6,\n\
    \x20                     socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM)\n\
    \x20   kept.append(s)\n\
    \x20   try:\n\
    \x20       s.bind((addr, int(port))); print(0)\n\
    \x20   except OSError as e: print(e.errno)\n";

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn binds_report_address_port_protocol_and_result() {
    if !root_or_skip("binds_report_address_port_protocol_and_result") {
        return;
    }
    let ports: Vec<String> = (0..4).map(|_| free_port().to_string()).collect();
    let binds: Vec<[&str; 4]> = vec![
        ["4", "tcp", "127.0.0.1", &ports[0]],
        ["4", "udp", "0.0.0.0", &ports[1]],
        ["6", "tcp", "::1", &ports[2]],
        ["6", "udp", "::", &ports[3]],
        // Taken by the first: refused.
        ["4", "tcp", "127.0.0.1", &ports[0]],
    ];
    let args: Vec<&str> = binds.iter().flatten().copied().collect();
    let (errnos, events) = trace_python("bind", json!({}), SCRIPT, &args, None, binds.len());
    let eaddrinuse = libc::EADDRINUSE.to_string();
    assert_eq!(errnos, ["0", "0", "0", "0", eaddrinuse.as_str()]);

    let seen: Vec<[String; 5]> = events
        .iter()
        .map(|e| {
            ["family", "protocol", "addr", "port", "ret"]
                .map(|f| e.get(f).map_or("?".into(), |v| v.to_string()))
        })
        .collect();
    let want: Vec<[String; 5]> = binds
        .iter()
        .zip(&errnos)
        .map(|([fam, proto, addr, port], errno)| {
            let family = if *fam == "4" { "ipv4" } else { "ipv6" };
            let ret = if errno == "0" {
                "0".to_string()
            } else {
                format!("-{errno}")
            };
            [family, proto, addr, port, &ret].map(str::to_string)
        })
        .collect();
    assert_eq!(seen, want);
}
