//! Start-up checks that tell the truth: root, BTF, tracefs (mounted here when missing),
//! tracepoints, and libbpf's own log routed into `tracing`.

use std::cell::RefCell;
use std::ffi::CString;
use std::io;
use std::path::Path;
use std::sync::Once;

use libbpf_rs::PrintLevel;

pub const TRACEFS: &str = "/sys/kernel/tracing";
const BTF_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("eunomia must run as root: it loads eBPF programs (effective uid is {0})")]
    NotRoot(u32),
    #[error(
        "this kernel has no BTF ({BTF_VMLINUX} is missing); eunomia needs CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf,
    #[error("tracefs is not mounted at {TRACEFS} and mounting it failed: {0}")]
    Tracefs(io::Error),
}

/// Runs every check a tracker needs before it can load; mounts tracefs when missing.
pub fn check_ready() -> Result<(), StartupError> {
    init_libbpf_log();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(StartupError::NotRoot(euid));
    }
    if !Path::new(BTF_VMLINUX).exists() {
        return Err(StartupError::NoBtf);
    }
    ensure_tracefs()
}

fn ensure_tracefs() -> Result<(), StartupError> {
    let events = Path::new(TRACEFS).join("events");
    if events.is_dir() {
        return Ok(());
    }
    let target = CString::new(TRACEFS).expect("no NUL in a constant");
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(StartupError::Tracefs(io::Error::last_os_error()));
    }
    if !events.is_dir() {
        return Err(StartupError::Tracefs(io::Error::new(
            io::ErrorKind::NotFound,
            "mounted, but it has no events/ directory",
        )));
    }
    tracing::info!("mounted tracefs at {TRACEFS}");
    Ok(())
}

/// The structs probes cast pointers to (`bpf_rdonly_cast`, with the id user space gives).
const CAST_STRUCTS: [&str; 2] = ["task_struct", "file"];

/// The running kernel's BTF type id of `struct name`, one of [`CAST_STRUCTS`] (0 if its
/// BTF cannot be read, which `check_ready` refuses before any probe loads).
pub fn kernel_struct_id(name: &str) -> u32 {
    static IDS: std::sync::LazyLock<Vec<u32>> = std::sync::LazyLock::new(|| {
        use libbpf_rs::btf::{types::Struct, Btf};
        let btf = Btf::from_vmlinux().ok();
        CAST_STRUCTS
            .iter()
            .map(|name| {
                btf.as_ref()
                    .and_then(|btf| btf.type_by_name::<Struct<'_>>(name))
                    .map_or(0, |t| t.type_id().into())
            })
            .collect()
    });
    let at = CAST_STRUCTS.iter().position(|known| *known == name);
    at.map_or(0, |at| IDS[at])
}

/// Whether `category/name` (as in a `tp/category/name` section) exists on this kernel.
pub fn tracepoint_exists(category: &str, name: &str) -> bool {
    Path::new(TRACEFS)
        .join("events")
        .join(category)
        .join(name)
        .is_dir()
}

/// Turns on the kernel's run time accounting of BPF programs for as long as the returned
/// descriptor is open (BPF_ENABLE_STATS): two clock reads per program run.
pub fn enable_bpf_stats() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: a plain syscall wrapper; on success the fd is ours.
    let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: fd was just returned to us and is owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// How long BPF program `id` has run in all, in nanoseconds, and how many times (counted
/// while run time accounting is on); None when the program is gone.
pub fn prog_run_time(id: u32) -> Option<(u64, u64)> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: plain syscall wrappers; the fd is ours and closed by OwnedFd; `info` is a
    // zeroed bpf_prog_info of the size passed.
    unsafe {
        let fd = libbpf_sys::bpf_prog_get_fd_by_id(id);
        if fd < 0 {
            return None;
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut info: libbpf_sys::bpf_prog_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
        let got = libbpf_sys::bpf_prog_get_info_by_fd(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &mut info,
            &mut len,
        );
        (got == 0).then_some((info.run_time_ns, info.run_cnt))
    }
}

thread_local! {
    /// libbpf's messages on this thread while a load is being captured.
    static CAPTURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn libbpf_print(level: PrintLevel, msg: String) {
    CAPTURE.with(|capture| {
        if let Some(buf) = capture.borrow_mut().as_mut() {
            buf.push_str(&msg);
        }
    });
    let msg = msg.trim_end();
    match level {
        PrintLevel::Warn => tracing::warn!(target: "libbpf", "{msg}"),
        PrintLevel::Info => tracing::info!(target: "libbpf", "{msg}"),
        PrintLevel::Debug => tracing::trace!(target: "libbpf", "{msg}"),
    }
}

/// Routes libbpf's log into `tracing`, once per process.
pub fn init_libbpf_log() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        libbpf_rs::set_print(Some((PrintLevel::Debug, libbpf_print)));
    });
}

/// Runs `f` and returns what libbpf logged on this thread meanwhile.
pub fn capture_libbpf_log<T>(f: impl FnOnce() -> T) -> (T, String) {
    init_libbpf_log();
    CAPTURE.with(|c| *c.borrow_mut() = Some(String::new()));
    let out = f();
    let log = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (out, log)
}

/// The gist of a failed load: which program failed and the verifier's last word on why.
pub fn verifier_gist(log: &str) -> Option<String> {
    let failed = log
        .lines()
        .find(|l| l.contains("failed to load") || l.contains("load failed"));
    let mut inside = false;
    let mut last = None;
    for line in log.lines() {
        if line.contains("-- BEGIN PROG LOAD LOG --") {
            inside = true;
        } else if line.contains("-- END PROG LOAD LOG --") {
            inside = false;
        } else if inside {
            let line = line.trim();
            let noise = line.is_empty()
                || line.starts_with("processed ")
                || line.starts_with("verification time")
                || line.starts_with("stack depth");
            if !noise {
                last = Some(line);
            }
        }
    }
    let failed = failed.map(|l| l.trim_start_matches("libbpf: ").trim());
    match (failed, last) {
        (Some(f), Some(l)) => Some(format!("{f}: verifier: {l}")),
        (Some(f), None) => Some(f.to_string()),
        (None, Some(l)) => Some(format!("verifier: {l}")),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gist_names_program_and_verifier_reason() {
        let log = "libbpf: prog 'handle_exec': BPF program load failed: Permission denied\n\
                   libbpf: prog 'handle_exec': -- BEGIN PROG LOAD LOG --\n\
                   0: R1=ctx() R10=fp0\n\
                   ; e->pid = pid;\n\
                   1: (63) *(u32 *)(r0 +0) = r6\n\
                   R0 invalid mem access 'scalar'\n\
                   processed 2 insns (limit 1000000) max_states_per_insn 0\n\
                   -- END PROG LOAD LOG --\n\
                   libbpf: failed to load object 'process_bpf'\n";
        assert_eq!(
            verifier_gist(log).as_deref(),
            Some("prog 'handle_exec': BPF program load failed: Permission denied: verifier: R0 invalid mem access 'scalar'")
        );
        assert_eq!(verifier_gist("nothing useful"), None);
    }
}
