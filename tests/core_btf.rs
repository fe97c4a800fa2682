//! The cache of minimal kernel BTF (root): a server fills it in the background, one file per
//! probe; sessions load against it and count exactly; a damaged file, or a valid one of
//! another probe, is dropped without costing a session; a full disk or a cache that cannot
//! be made changes nothing but the start's speed.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::server::Server;
use common::{root_or_skip, run_copies, unique_binary, TempDir, Tmpfs};
use serde_json::json;

/// How many probes the server has: one object each in probes/.
fn probes() -> usize {
    std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("probes"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".bpf.c")
        })
        .count()
}

/// Every file in `dir`, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// The cache file of probe `name`.
fn file_of(dir: &Path, name: &str) -> PathBuf {
    let prefix = format!("{name}-");
    files(dir)
        .into_iter()
        .find(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .unwrap_or_else(|| panic!("no cache file of {name} in {:?}", files(dir)))
}

/// A process session on a uniquely named binary run 5 times: exactly 5 execs and 5 exits.
fn five_execs(server: &Server, tag: &str) {
    let (binary, comm) = unique_binary(tag);
    let id = server.start_session(json!({
        "tracker": "process", "durationSecs": 60, "store": "MEMORY",
        "filter": { "comm": comm },
    }));
    run_copies(&binary, 5);
    assert_eq!(server.stop_session(&id), "STOPPED");
    let session = server.session(
        &id,
        "eventCount lostCount aggregate(groupBy: [\"kind\"]) { keys count }",
    );
    assert_eq!(session["lostCount"], 0);
    assert_eq!(
        session["aggregate"],
        json!([{ "keys": ["exec"], "count": 5 }, { "keys": ["exit"], "count": 5 }])
    );
}

fn config(dir: &Path) -> String {
    format!("btf_cache = {:?}", dir.display().to_string())
}

#[test]
fn the_cache_fills_and_bad_files_cost_no_session() {
    if !root_or_skip("the_cache_fills_and_bad_files_cost_no_session") {
        return;
    }
    let cache = TempDir::new("btf-cache");
    let dir = cache.join("btf");
    let server = Server::start("btf-fill", Some(&config(&dir)));
    // Done once every probe has its file and no maker's partial files remain (a maker
    // removes its copy of the object just after renaming the result into place).
    let done = |files: &[PathBuf]| {
        files.len() == probes() && files.iter().all(|f| f.extension().unwrap() == "btf")
    };
    let began = Instant::now();
    while !done(&files(&dir)) && began.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let made = files(&dir);
    assert_eq!(made.len(), probes(), "{made:?}");
    for file in &made {
        assert!(file.extension().unwrap() == "btf", "a leftover: {file:?}");
        let size = file.metadata().unwrap().len();
        assert!(size > 0 && size < 64 * 1024, "{file:?}: {size} bytes");
    }
    five_execs(&server, "btfa");

    // A damaged file: seen before the load, removed, and the session loads without it.
    let process = file_of(&dir, "process");
    std::fs::write(&process, b"not BTF").unwrap();
    five_execs(&server, "btfb");
    assert!(!process.exists(), "the damaged file was removed");
    drop(server);

    // A valid file of another probe: the load against it fails, the file goes, and the
    // same start tries again against the kernel's BTF.
    std::fs::copy(file_of(&dir, "tcp"), &process).unwrap();
    let server = Server::start("btf-wrong", Some(&config(&dir)));
    five_execs(&server, "btfc");
    assert!(!process.exists(), "the wrong file was removed");
}

#[test]
fn a_full_disk_or_no_directory_changes_nothing_but_speed() {
    if !root_or_skip("a_full_disk_or_no_directory_changes_nothing_but_speed") {
        return;
    }
    // A probe's object does not fit in 16 KiB: no file is ever made, and none is left half.
    let full = Tmpfs::mount("btf-full", "16k");
    let server = Server::start("btf-full", Some(&config(full.dir.path())));
    std::thread::sleep(Duration::from_secs(2));
    five_execs(&server, "btfd");
    assert_eq!(files(full.dir.path()), Vec::<PathBuf>::new());
    drop(server);

    // Below a regular file, the directory cannot be made.
    let parent = TempDir::new("btf-file");
    std::fs::write(parent.join("file"), b"").unwrap();
    let server = Server::start("btf-nodir", Some(&config(&parent.join("file/btf"))));
    five_execs(&server, "btfe");
}
