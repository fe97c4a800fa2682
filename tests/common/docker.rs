//! A real Docker engine for tests: started here if it is not running (and left running),
//! with the flags this machine needs, and a busybox image imported from the local
//! busybox-static binary (there is no registry). Installs nothing: `make deps` does.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const IMAGE: &str = "bb:latest";
const BUSYBOX: &str = "/usr/bin/busybox";
const APPLETS: [&str; 6] = ["sh", "sleep", "cat", "ls", "true", "echo"];

/// True when the test may use Docker (and root). Outside CI a machine without Docker
/// skips with a note; in CI (`CI=true`) it fails.
pub fn docker_or_skip(test: &str) -> bool {
    if !super::root_or_skip(test) {
        return false;
    }
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    match READY.get_or_init(prepare) {
        Ok(()) => true,
        Err(why) => {
            super::skip(test, &format!("needs Docker: {why}"));
            false
        }
    }
}

fn prepare() -> Result<(), String> {
    for tool in ["docker", "dockerd", BUSYBOX] {
        if !tool_exists(tool) {
            return Err(format!("`{tool}` is missing (make deps installs it)"));
        }
    }
    if !engine_up() {
        start_engine()?;
    }
    if !try_docker(&["image", "inspect", IMAGE]) {
        import_image()?;
    }
    Ok(())
}

fn tool_exists(tool: &str) -> bool {
    std::path::Path::new(tool).exists()
        || Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

fn try_docker(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn engine_up() -> bool {
    try_docker(&["info"])
}

/// The hard limit of `resource`, read at run time: containers may not ask for more than
/// this (CAP_SYS_RESOURCE is not held), and it differs from machine to machine.
fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    let rc = unsafe { libc::getrlimit(resource, &mut limit) };
    assert_eq!(rc, 0, "getrlimit: {}", std::io::Error::last_os_error());
    limit.rlim_max
}

/// dockerd's `--default-ulimit` flags: each container gets this process's hard limits.
pub fn default_ulimit_args() -> Vec<String> {
    [
        ("nofile", hard_limit(libc::RLIMIT_NOFILE)),
        ("nproc", hard_limit(libc::RLIMIT_NPROC)),
    ]
    .into_iter()
    .flat_map(|(name, max)| {
        [
            "--default-ulimit".to_string(),
            format!("{name}={max}:{max}"),
        ]
    })
    .collect()
}

/// Starts dockerd in its own process group so that it outlives the test.
fn start_engine() -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(std::env::temp_dir().join("eunomia-test-dockerd.log"))
        .map_err(|e| e.to_string())?;
    Command::new("dockerd")
        .args([
            "--iptables=false",
            "--ip-forward=false",
            "--bridge=none",
            "--storage-driver=vfs",
        ])
        .args(default_ulimit_args())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting dockerd: {e}"))?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if engine_up() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err("dockerd did not answer within 60 s".into())
}

/// A root file system of busybox and a few applet links, as `bb:latest`.
fn import_image() -> Result<(), String> {
    let root = std::env::temp_dir().join(format!("eunomia-bb-rootfs-{}", std::process::id()));
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    std::fs::copy(BUSYBOX, bin.join("busybox")).map_err(|e| e.to_string())?;
    for applet in APPLETS {
        let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
    }
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C {} -c . | docker import - {IMAGE} >/dev/null",
            root.display()
        ))
        .status()
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&root);
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("importing {IMAGE} failed"))
}

/// Runs `docker args...`; panics with its stderr when it fails; returns its stdout.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A name no other container has: `prefix`, this test process's pid and a counter, so
/// that concurrent runs never collide and no user's container is touched.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// A detached container, removed when dropped.
pub struct Container {
    pub name: String,
    pub id: String,
}

impl Container {
    /// Starts a container named `unique_name(prefix)` running `sleep 600`.
    pub fn start(prefix: &str) -> Container {
        Container::run(prefix, "none", &["sleep", "600"])
    }

    /// Starts a container named `unique_name(prefix)` on `network` running `command`.
    pub fn run(prefix: &str, network: &str, command: &[&str]) -> Container {
        // The guard exists before `docker run`, so a failed run (which can leave a
        // "Created" container behind) is still removed by name.
        let mut container = Container {
            name: unique_name(prefix),
            id: String::new(),
        };
        let mut args = vec!["run", "-d", "--network", network, "--name", &container.name];
        args.push(IMAGE);
        args.extend(command);
        container.id = docker(&args);
        container
    }

    /// The pid of its first process on the host.
    pub fn pid(&self) -> u32 {
        docker(&["inspect", "-f", "{{.State.Pid}}", &self.id])
            .parse()
            .unwrap()
    }

    /// Runs a command in it and waits for it.
    pub fn exec(&self, command: &[&str]) {
        let mut args = vec!["exec", self.name.as_str()];
        args.extend_from_slice(command);
        docker(&args);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
