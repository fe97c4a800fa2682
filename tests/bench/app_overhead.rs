//! Benchmark (root): what tracing costs a real application. Debian's nginx, one worker,
//! serves a 4 KiB static file and `wrk -t1 -c32` loads it, with no tracing, with each
//! core tracker alone (`eunomia run <tracker>`, output to /dev/null), with all five at
//! once, and with each of the other trackers alone (memleak on the nginx worker); with
//! `sendfile` off and on. One more setting attaches only an empty program to every system
//! call's exit: the floor that any tracker on system calls pays here. Rounds interleave
//! every setting; the table gives the median requests/s and the change against no
//! tracing, and the CPU time the hypervisor took (steal), which makes runs on a shared
//! machine noisy.
//!
//! A last round (sendfile off) measures what each setting's tracer itself costs, in % of
//! one core: the CPU time of its `eunomia` processes plus the run time of their BPF
//! programs (kernel.bpf_stats_enabled, on for that round only: it adds two clock reads to
//! every program run), over the load's wall time, after 2 s of load not counted (one-time
//! costs, such as the stack trackers' first symbolization, stay out of the steady state).
//!
//! `cargo bench --bench app_overhead` (EUNOMIA_BENCH_ROUNDS, EUNOMIA_BENCH_SECS to change
//! the 3 rounds of 4 s; EUNOMIA_BENCH_ONLY=files,syscall to run only some settings)

#[path = "../common/mod.rs"]
mod common;
#[path = "floor.rs"]
mod floor;

use std::process::{Child, Command, Stdio};

use common::{median, start_cli, TempDir};
use floor::{build_bare, Bare};

const TRACKERS: [&str; 5] = ["process", "syscall", "tcp", "files", "ipc"];
/// The others, each alone; `{worker}` stands for the nginx worker's pid.
const MORE: [&[&str]; 12] = [
    &["signal"],
    &["capable"],
    &["oomkill"],
    &["bind"],
    &["mount"],
    &["filelife"],
    &["biolatency"],
    &["runqlat"],
    &["tcpretrans"],
    &["profile"],
    &["offcpu"],
    &["memleak", "--pid", "{worker}"],
];

/// What runs beside nginx: the empty program or not, and `eunomia run` with these
/// arguments, one process each.
struct Setting {
    name: String,
    floor: bool,
    runs: Vec<Vec<&'static str>>,
}

/// Every setting, or those EUNOMIA_BENCH_ONLY names (comma-separated), with "none" always
/// first: the reference.
fn settings() -> Vec<Setting> {
    let setting = |name: &str, floor, runs: Vec<Vec<&'static str>>| Setting {
        name: name.to_string(),
        floor,
        runs,
    };
    let mut all = vec![
        setting("none", false, vec![]),
        setting("empty program on sys_exit (floor)", true, vec![]),
    ];
    all.extend(TRACKERS.iter().map(|t| setting(t, false, vec![vec![*t]])));
    all.push(setting(
        "files opens=stream",
        false,
        vec![vec!["files", "--opt", "opens=stream"]],
    ));
    all.push(setting(
        "all five",
        false,
        TRACKERS.iter().map(|t| vec![*t]).collect(),
    ));
    all.extend(
        MORE.iter()
            .map(|args| setting(args[0], false, vec![args.to_vec()])),
    );
    if let Ok(only) = std::env::var("EUNOMIA_BENCH_ONLY") {
        let wanted: Vec<&str> = only.split(',').map(str::trim).collect();
        all.retain(|s| s.name == "none" || wanted.contains(&s.name.as_str()));
    }
    all
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// nginx on a free loopback port, serving `file` from its own directory.
struct Nginx {
    child: Child,
    url: String,
}

impl Nginx {
    fn start(dir: &TempDir, sendfile: bool) -> Nginx {
        let html = dir.join("html");
        std::fs::create_dir_all(&html).unwrap();
        let body: Vec<u8> = (0..4096u32).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(html.join("file"), body).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\ndaemon off;\npid {pid};\nerror_log {err};\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n  access_log off;\n  sendfile {sendfile};\n  \
                 server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n",
                pid = dir.join("nginx.pid").display(),
                err = dir.join("error.log").display(),
                sendfile = if sendfile { "on" } else { "off" },
                root = html.display(),
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir.path())
            .spawn()
            .expect("nginx runs (make bench installs it)");
        let url = format!("http://127.0.0.1:{port}/file");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nginx did not listen");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Nginx { child, url }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: kill on our own child's pid; SIGQUIT is nginx's graceful stop.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGQUIT) };
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// The pid of its one worker process.
    fn worker(&self) -> String {
        let pid = self.child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let children =
                std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
            if let Some(worker) = children.split_whitespace().next() {
                return worker.to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nginx started no worker"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// `eunomia run <tracker>` until dropped, its events printed to /dev/null.
struct Tracing(Child);

impl Tracing {
    /// `worker` replaces `{worker}` in `args`.
    fn start(args: &[&str], worker: &str) -> Tracing {
        let mut all = vec!["run", "--duration", "3600"];
        all.extend(
            args.iter()
                .map(|a| if *a == "{worker}" { worker } else { a }),
        );
        let (child, mut stderr, _) = start_cli(&all, Stdio::null(), &[]);
        // Drain what else it says, so that it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Tracing(child)
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let _ = self.0.wait();
    }
}

/// (busy, steal) jiffies of all CPUs so far, from /proc/stat.
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    (fields.iter().sum(), fields[7])
}

/// One wrk run: (requests/s, the share of CPU time stolen by the hypervisor meanwhile).
fn load(url: &str, secs: u64) -> (f64, f64) {
    let before = cpu_jiffies();
    let out = Command::new("wrk")
        .args(["-t1", "-c32", &format!("-d{secs}s"), url])
        .output()
        .expect("wrk runs (make bench installs it)");
    let after = cpu_jiffies();
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .unwrap_or_else(|| panic!("no rate from wrk: {text}"))
        .trim()
        .parse()
        .unwrap();
    let steal = (after.1 - before.1) as f64 / (after.0 - before.0).max(1) as f64;
    (rate, steal)
}

/// The CPU time process `pid` has used so far plus the run time of the BPF programs it
/// holds open (counted while kernel.bpf_stats_enabled is 1), in nanoseconds.
fn tracer_ns(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command's closing parenthesis, utime and stime are the 12th and 13th.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let tick_ns = 1_000_000_000 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let programs: u64 = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .filter_map(|fd| std::fs::read_to_string(fd.ok()?.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("run_time_ns:"))
                .and_then(|ns| ns.trim().parse::<u64>().ok())
        })
        .sum();
    fields.iter().sum::<u64>() * tick_ns + programs
}

/// One round, sendfile off, of each tracing setting's own cost: its tracers' CPU time and
/// BPF run time over the load's wall time, in % of one core.
fn tracer_costs(settings: &[Setting], secs: u64) {
    const WARM_UP_SECS: u64 = 2;
    const STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";
    let before = std::fs::read_to_string(STATS).unwrap();
    std::fs::write(STATS, "1").unwrap();
    let dir = TempDir::new("nginx-cost");
    let nginx = Nginx::start(&dir, false);
    let worker = nginx.worker();
    println!("| tracing on (sendfile off) | tracer cost, % of one core |");
    println!("|---|---|");
    for setting in settings.iter().filter(|s| !s.runs.is_empty()) {
        let tracing: Vec<Tracing> = setting
            .runs
            .iter()
            .map(|args| Tracing::start(args, &worker))
            .collect();
        let spent = || -> u64 { tracing.iter().map(|t| tracer_ns(t.0.id())).sum() };
        // Steady state: one-time costs (the stack trackers load kallsyms and the
        // programs' symbols as the first stacks come) are left out.
        load(&nginx.url, WARM_UP_SECS);
        let (start, started) = (spent(), std::time::Instant::now());
        load(&nginx.url, secs);
        let cost = (spent() - start) as f64 / started.elapsed().as_nanos() as f64;
        println!("| {} | {:.2}% |", setting.name, cost * 100.0);
    }
    std::fs::write(STATS, before.trim()).unwrap();
}

fn main() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "app_overhead loads BPF programs: run it as root"
    );
    let rounds = env_or("EUNOMIA_BENCH_ROUNDS", 3) as usize;
    let secs = env_or("EUNOMIA_BENCH_SECS", 4);
    let settings = settings();
    let objects = TempDir::new("bare");
    let bare = build_bare(objects.path());
    println!(
        "app_overhead: nginx (1 worker, 4 KiB file) under wrk -t1 -c32, {rounds} interleaved rounds of {secs} s"
    );
    println!("| tracing on | sendfile off: req/s | vs none | sendfile on: req/s | vs none |");
    println!("|---|---|---|---|---|");
    let mut table: Vec<Vec<f64>> = vec![Vec::new(); settings.len() * 2];
    let mut steals = Vec::new();
    for (column, sendfile) in [false, true].into_iter().enumerate() {
        let dir = TempDir::new(&format!("nginx-{column}"));
        let nginx = Nginx::start(&dir, sendfile);
        let worker = nginx.worker();
        load(&nginx.url, 1); // warm-up
        for _ in 0..rounds {
            for (i, setting) in settings.iter().enumerate() {
                let floor = setting.floor.then(|| Bare::attach(&bare));
                let tracing: Vec<Tracing> = setting
                    .runs
                    .iter()
                    .map(|args| Tracing::start(args, &worker))
                    .collect();
                let (rate, steal) = load(&nginx.url, secs);
                drop((tracing, floor));
                table[i * 2 + column].push(rate);
                steals.push(steal);
            }
        }
    }
    let medians: Vec<f64> = table.iter_mut().map(|runs| median(runs)).collect();
    for (i, setting) in settings.iter().enumerate() {
        let cell = |column: usize| {
            let m = medians[i * 2 + column];
            let change = (m / medians[column] - 1.0) * 100.0;
            (format!("{m:.0}"), format!("{change:+.1}%"))
        };
        let (off, off_change) = cell(0);
        let (on, on_change) = cell(1);
        println!(
            "| {} | {off} | {off_change} | {on} | {on_change} |",
            setting.name
        );
    }
    println!(
        "steal: median {:.1}% of CPU time, max {:.1}%",
        median(&mut steals.clone()) * 100.0,
        steals.iter().cloned().fold(0.0, f64::max) * 100.0
    );
    tracer_costs(&settings, secs);
}
