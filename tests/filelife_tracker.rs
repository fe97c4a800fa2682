//! The filelife tracker against the real kernel (root): a file that lives 300 ms, opened
//! again with O_CREAT on the way (which must not count as its birth) and deleted by a
//! relative unlink; and one deleted by unlinkat relative to a directory descriptor.

mod common;

use common::{root_or_skip, trace_python, TempDir};
use eunomia::model::{Record, Value};
use serde_json::json;
const MS: u64 = 1_000_000;

/// In its working directory: `a` lives 300 ms (reopened with O_CREAT at 150 ms), deleted
/// by unlink("a"); `b` lives 50 ms, deleted by unlinkat(dirfd, "b"). Prints each file's
/// lifetime as it measured it, creation returned to deletion called, in ns.
const SCRIPT: &str = "import os, sys, time\n\
    print('ready', flush=True)\n\
    sys.stdin.readline()\n\
    def life(name, then, delete):\n\
    \x20   os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o644))\n\
    \x20   born = time.monotonic_ns()\n\
    \x20   then()\n\
    \x20   died = time.monotonic_ns()\n\
    \x20   delete(name)\n\
    \x20   print(died - born, flush=True)\n\
    def reopen():\n\
    \x20   time.sleep(0.15)\n\
    \x20   os.close(os.open('a', os.O_CREAT | os.O_WRONLY))\n\
    \x20   time.sleep(0.15)\n\
    life('a', reopen, os.unlink)\n\
    fd = os.open('.', os.O_RDONLY)\n\
    life('b', lambda: time.sleep(0.05), lambda n: os.unlink(n, dir_fd=fd))\n";

#[test]
fn short_lived_files_are_reported_with_their_lifetime() {
    if !root_or_skip("short_lived_files_are_reported_with_their_lifetime") {
        return;
    }
    let dir = TempDir::new("filelife");
    let dir_path = std::fs::canonicalize(dir.path()).unwrap();
    let (printed, events) = trace_python("filelife", json!({}), SCRIPT, &[], Some(&dir_path), 2);
    let measured: Vec<u64> = printed.iter().map(|l| l.parse().unwrap()).collect();

    let paths: Vec<Option<Value>> = events.iter().map(|e| e.get("path")).collect();
    let a = dir_path.join("a");
    let b = dir_path.join("b");
    assert_eq!(
        paths,
        [
            Some(Value::Str(a.to_str().unwrap())),
            Some(Value::Str(b.to_str().unwrap()))
        ]
    );
    for ((event, measured), lived) in events.iter().zip(&measured).zip([300 * MS, 50 * MS]) {
        let Some(Value::U64(lifetime)) = event.get("lifetime_ns") else {
            panic!("{event:?}")
        };
        // Within 10 ms of what the program meant and of what it measured.
        assert!(
            lifetime.abs_diff(lived) <= 10 * MS,
            "{lifetime} ns, meant {lived}"
        );
        assert!(
            lifetime.abs_diff(*measured) <= 10 * MS,
            "{lifetime} ns, measured {measured}"
        );
        assert_eq!(event.get("creator_comm"), Some(Value::Str("python3")));
    }
}
