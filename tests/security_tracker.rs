//! The security tracker against the real kernel (root): a program makes one call of each
//! kind the test names, and each is reported once, in order, with its arguments decoded
//! as the program passed them and its result as the program saw it. Relative paths come
//! out absolute (the working directory, or the directory descriptor, walked in the
//! kernel); a `calls` option loads only those calls.

mod common;

use common::{root_or_skip, trace_python, TempDir};
use eunomia::model::Record;
use serde_json::json;

/// In a directory of its own (argv[1]), with a listener on an ephemeral port, the calls the
/// test checks; prints the listener's port, then each call's result.
const SCRIPT: &str = "import ctypes, os, socket, sys\n\
    libc = ctypes.CDLL(None, use_errno=True)\n\
    os.chdir(sys.argv[1])\n\
    listener = socket.socket()\n\
    listener.bind(('127.0.0.1', 0))\n\
    listener.listen()\n\
    open('a', 'w').close()\n\
    print('ready', flush=True)\n\
    sys.stdin.readline()\n\
    print(listener.getsockname()[1], flush=True)\n\
    os.chmod('a', 0o750)\n\
    d = os.open('.', os.O_RDONLY)\n\
    os.rename('a', 'b', src_dir_fd=d, dst_dir_fd=d)\n\
    os.symlink('b', 'c')\n\
    f = os.open('b', os.O_RDONLY)\n\
    os.fchmod(f, 0o600)\n\
    os.unlink('c')\n\
    s = socket.socket()\n\
    s.connect(listener.getsockname())\n\
    os.dup2(s.fileno(), 50)\n\
    p = socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)\n\
    print(libc.unshare(0x04000000 | 0x08000000), flush=True)\n\
    print(libc.setresuid(-1, 0, -1), flush=True)\n\
    print(libc.ptrace(16, 0x7ffffff0, 0, 0), -ctypes.get_errno(), flush=True)\n\
    m = os.memfd_create('eunomia', os.MFD_CLOEXEC)\n\
    print(libc.prctl(4, 1, 0, 0, 0), flush=True)\n";

/// The fields of `names` of an event, as text ("" for null).
fn row(event: &impl Record, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|n| event.get(n).map_or("?".into(), |v| v.to_string()))
        .collect()
}

#[test]
fn each_call_is_reported_with_its_arguments_decoded() {
    if !root_or_skip("each_call_is_reported_with_its_arguments_decoded") {
        return;
    }
    let dir = TempDir::new("security-tracker");
    let path = dir.path().to_str().unwrap().to_string();
    let (printed, events) = trace_python("security", json!({}), SCRIPT, &[&path], None, 15);
    let port = &printed[0];
    let esrch = format!("-{}", libc::ESRCH);
    assert_eq!(printed[1..], ["0", "0", &format!("-1 {esrch}"), "0"]);

    let kinds: Vec<&str> = events.iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds,
        [
            "chmod",
            "renameat",
            "symlink",
            "fchmod",
            "unlink",
            "socket",
            "connect",
            "dup2",
            "socket",
            "unshare",
            "setresuid",
            "ptrace",
            "memfd_create",
            "prctl"
        ]
    );
    let at = |kind: &str, n: usize| {
        events
            .iter()
            .filter(|e| e.kind() == kind)
            .nth(n)
            .unwrap_or_else(|| panic!("no {kind} #{n}"))
    };
    let file = |name: &str| format!("{path}/{name}");
    assert_eq!(
        row(at("chmod", 0), &["path", "mode", "ret"]),
        [file("a"), (0o750).to_string(), "0".into()]
    );
    assert_eq!(
        row(at("renameat", 0), &["path", "new_path", "ret"]),
        [file("a"), file("b"), "0".into()]
    );
    // A symlink's target stays as written; the link is made absolute.
    assert_eq!(
        row(at("symlink", 0), &["path", "new_path"]),
        ["b".to_string(), file("c")]
    );
    assert_eq!(
        row(at("fchmod", 0), &["path", "mode"]),
        [file("b"), (0o600).to_string()]
    );
    assert_eq!(row(at("unlink", 0), &["path"]), [file("c")]);
    assert_eq!(
        row(at("socket", 0), &["family", "sock_type", "protocol"]),
        ["AF_INET", "SOCK_STREAM", "0"]
    );
    assert_eq!(
        row(at("connect", 0), &["family", "address", "port", "ret"]),
        ["AF_INET", "127.0.0.1", port.as_str(), "0"]
    );
    assert_eq!(
        row(at("dup2", 0), &["new_fd", "fd_family", "ret"]),
        ["50", "AF_INET", "50"]
    );
    assert_eq!(
        row(at("socket", 1), &["family", "sock_type", "protocol"]),
        ["AF_INET", "SOCK_RAW", "1"]
    );
    assert_eq!(
        row(at("unshare", 0), &["namespaces", "flags", "ret"]),
        ["uts|ipc".to_string(), (0x0c00_0000).to_string(), "0".into()]
    );
    assert_eq!(row(at("setresuid", 0), &["new_id", "ret"]), ["0", "0"]);
    assert_eq!(
        row(at("ptrace", 0), &["operation", "target_pid", "ret"]),
        [
            "PTRACE_ATTACH".to_string(),
            0x7fff_fff0u32.to_string(),
            esrch.clone()
        ]
    );
    assert_eq!(
        row(at("memfd_create", 0), &["name", "flags", "path"]),
        ["eunomia", "1", ""]
    );
    assert_eq!(
        row(at("prctl", 0), &["operation", "ret"]),
        ["PR_SET_DUMPABLE", "0"]
    );
    let pid = events[0].header.pid;
    assert!(events.iter().all(|e| e.header.pid == pid));
}

#[test]
fn the_calls_option_loads_only_those_calls() {
    if !root_or_skip("the_calls_option_loads_only_those_calls") {
        return;
    }
    let dir = TempDir::new("security-tracker-calls");
    let path = dir.path().to_str().unwrap().to_string();
    let options = json!({ "calls": ["connect", "unlink", "prctl"] });
    let (_, events) = trace_python("security", options, SCRIPT, &[&path], None, 3);
    let kinds: Vec<&str> = events.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds, ["unlink", "connect", "prctl"]);
}
