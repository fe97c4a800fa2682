//! A cache of minimal kernel BTF, one file per probe: what `bpftool gen min_core_btf`
//! keeps of the running kernel's BTF for the types and fields a probe's CO-RE relocations
//! name (a few KiB instead of megabytes). Loading a probe against it (libbpf's
//! `btf_custom_path`) spares libbpf the search of every kernel type for candidates, which
//! was the largest part of a session's start.
//!
//! Files are named by the hashes of the probe's object and of the kernel's BTF, so a new
//! build of either misses the cache instead of reading a stale file. They are made in the
//! background: a start never waits for one, it loads against the full BTF until its file
//! exists. Without bpftool, or when the cache directory cannot be written, nothing changes
//! but the start's speed.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{LazyLock, Mutex, OnceLock};

/// The kernel's own BTF, which CO-RE relocates against.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// A compiled probe object, as its skeleton embeds it (implemented by `trackers`).
pub trait ProbeObject {
    const NAME: &'static str;
    const OBJECT: &'static [u8];
}

/// The cache directory; unset (the default, as in a library or a test): no cache.
static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Probes whose file is being made, or which are not to use one (a failed load).
static CLAIMED: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Default::default);

/// A hash of the running kernel's BTF; None when it cannot be read.
static KERNEL: LazyLock<Option<u64>> =
    LazyLock::new(|| std::fs::read(VMLINUX_BTF).ok().map(|btf| hash(&btf)));

fn hash(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}

/// Turns the cache on in `dir` (made if missing, readable by root only), and makes the
/// missing files of `probes` in the background. Once per process; later calls do nothing.
pub fn enable(dir: &Path, probes: &'static [(&'static str, &'static [u8])]) {
    if DIR.set(dir.to_path_buf()).is_err() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("core-btf".into())
        .spawn(move || {
            for &(name, object) in probes {
                prepare(name, object);
            }
        });
    if let Err(err) = spawned {
        tracing::warn!("the BTF cache is not filled ahead: {err}");
    }
}

fn file_for(name: &str, object: &[u8]) -> Option<PathBuf> {
    let dir = DIR.get()?;
    let kernel = (*KERNEL)?;
    Some(dir.join(format!("{name}-{:016x}-{kernel:016x}.btf", hash(object))))
}

/// The minimal BTF to load `P` against, if its file exists; otherwise starts making it
/// (in the background) and returns None.
pub fn cached<P: ProbeObject>() -> Option<PathBuf> {
    let path = file_for(P::NAME, P::OBJECT)?;
    if path.exists() {
        // A few KiB: parsed in microseconds, so that a damaged file costs no session.
        if libbpf_rs::btf::Btf::from_path(&path).is_ok() {
            return Some(path);
        }
        tracing::warn!(
            probe = P::NAME,
            "the cached minimal BTF does not parse: not used again"
        );
        discard(P::NAME);
        return None;
    }
    if CLAIMED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(P::NAME)
    {
        return None;
    }
    let spawned = std::thread::Builder::new()
        .name("core-btf".into())
        .spawn(|| prepare(P::NAME, P::OBJECT));
    if let Err(err) = spawned {
        tracing::debug!("the BTF cache is not filled for {}: {err}", P::NAME);
    }
    None
}

/// `name`'s file is damaged, or a load against it failed: the file goes, and the probe
/// loads against the full BTF until the server restarts (the load's error may not have
/// been the file's, but that is the safe way).
pub fn discard(name: &'static str) {
    CLAIMED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name);
    if let Some(dir) = DIR.get() {
        let prefix = format!("{name}-");
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Makes `name`'s file unless it exists or another thread claimed it.
fn prepare(name: &'static str, object: &'static [u8]) {
    let Some(path) = file_for(name, object) else {
        return;
    };
    if path.exists()
        || !CLAIMED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name)
    {
        return;
    }
    match make(&path, object) {
        Ok(()) => tracing::debug!(probe = name, "minimal BTF made: {}", path.display()),
        Err(err) => tracing::warn!(
            probe = name,
            "no minimal BTF (its sessions start slower): {err:#}"
        ),
    }
    CLAIMED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(name);
}

/// Writes `object` beside `path`, runs bpftool on it, checks the result parses as BTF and
/// renames it into place: a reader sees a whole file or none (a full disk leaves none).
fn make(path: &Path, object: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::DirBuilderExt;
    let dir = path.parent().context("the cache file has a directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let partial = |suffix: &str| path.with_extension(format!("{}.{suffix}", std::process::id()));
    let (object_file, btf_file) = (partial("o"), partial("part"));
    let result = (|| {
        std::fs::write(&object_file, object).context("writing the probe's object")?;
        let out = Command::new("bpftool")
            .args(["gen", "min_core_btf", VMLINUX_BTF])
            .arg(&btf_file)
            .arg(&object_file)
            .output()
            .context("running bpftool")?;
        anyhow::ensure!(
            out.status.success(),
            "bpftool gen min_core_btf: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        libbpf_rs::btf::Btf::from_path(&btf_file).context("reading bpftool's output")?;
        std::fs::rename(&btf_file, path).context("renaming into place")
    })();
    let _ = std::fs::remove_file(&object_file);
    let _ = std::fs::remove_file(&btf_file);
    result
}
