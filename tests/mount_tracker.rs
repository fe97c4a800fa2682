//! The mount tracker against the real kernel (root): in a private mount namespace, a
//! program mounts a tmpfs, unmounts it and fails to mount a filesystem type that does
//! not exist; each call is reported with its source, target, type, flags, options and
//! result, as the program saw them.

mod common;

use common::{root_or_skip, trace_python, TempDir};
use eunomia::model::Record;
use serde_json::json;

/// Makes a private mount namespace of its own (before "ready", so that those calls are
/// not traced), then mounts and unmounts as the test expects, printing each result.
const SCRIPT: &str = "import ctypes, sys\n\
    libc = ctypes.CDLL(None, use_errno=True)\n\
    CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x00020000, 0x4000, 0x40000\n\
    assert libc.unshare(CLONE_NEWNS) == 0\n\
    assert libc.mount(None, b'/', None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None) == 0\n\
    print('ready', flush=True)\n\
    sys.stdin.readline()\n\
    def call(result):\n\
    \x20   print(0 if result == 0 else -ctypes.get_errno(), flush=True)\n\
    target = sys.argv[1].encode()\n\
    call(libc.mount(b'eunomia-src', target, b'tmpfs', ctypes.c_ulong(6), b'size=1m'))\n\
    call(libc.umount2(target, 0))\n\
    call(libc.mount(b'none', target, b'eunomia-nofs', ctypes.c_ulong(0), None))\n";

#[test]
fn mounts_and_unmounts_are_reported_with_their_arguments_and_results() {
    if !root_or_skip("mounts_and_unmounts_are_reported_with_their_arguments_and_results") {
        return;
    }
    let dir = TempDir::new("mount");
    let target = dir.path().to_str().unwrap().to_string();
    let (results, events) = trace_python("mount", json!({}), SCRIPT, &[&target], None, 3);
    let enodev = format!("-{}", libc::ENODEV);
    assert_eq!(results, ["0", "0", enodev.as_str()]);

    let seen: Vec<[String; 7]> = events
        .iter()
        .map(|e| {
            ["kind", "source", "target", "fstype", "flags", "data", "ret"]
                .map(|f| e.get(f).map_or("?".into(), |v| v.to_string()))
        })
        .collect();
    let row = |cells: [&str; 7]| cells.map(str::to_string);
    assert_eq!(
        seen,
        [
            // MS_NOSUID | MS_NODEV
            row([
                "mount",
                "eunomia-src",
                &target,
                "tmpfs",
                "6",
                "size=1m",
                "0"
            ]),
            row(["umount", "", &target, "", "0", "", "0"]),
            row(["mount", "none", &target, "eunomia-nofs", "0", "", &enodev]),
        ]
    );
}
