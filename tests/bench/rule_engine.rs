//! Benchmark: the rule engine alone on one core, as the guard runs it. Every built-in rule
//! is enabled; each event goes to the matcher of its tracker (files, process, security),
//! which tries every rule that reads that tracker and kind. The event mix is a busy
//! server's: 70% file opens (libraries, /proc, a web root, temporary files written; one
//! open in a thousand reads /etc/shadow), 10% execs, 20% security calls (connect,
//! socket, unlink, chmod, setuid, dup2). Prints events/s, median of several runs, and
//! the alerts raised per run (the matches in the mix: they must be the same every run).
//!
//! `cargo bench --bench rule_engine`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use eunomia::handler::Handler;
use eunomia::metrics::Metrics;
use eunomia::model::{Comm, FixedStr, Header};
use eunomia::security::{AlertSink, Raised, RuleMatcher, RuleSet};
use eunomia::trackers::files::{FileRef, FileType, FilesEvent};
use eunomia::trackers::process::{Ids, ProcessEvent};
use eunomia::trackers::security::{decode, skel::types::security_event, CALLS};
use eunomia::trackers::Event;

const EVENTS: usize = 1_000_000;
const RUNS: usize = 5;

/// Counts alerts; the guard's real sinks queue them without waiting, as cheaply.
#[derive(Clone, Default)]
struct Count(Arc<AtomicU64>);

impl AlertSink for Count {
    fn raise(&self, _: Raised) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn header(i: usize, comm: &str) -> Header {
    Header {
        ts_ns: i as u64,
        pid: 1000 + (i % 3000) as u32,
        ppid: 1,
        comm: Comm::from(comm),
        cgroup_id: 1,
        user_ns: 4_026_531_837,
        pid_ns: 4_026_531_836,
        mnt_ns: 4_026_531_832,
        container: None,
    }
}

fn open(i: usize) -> Event {
    const PATHS: [(&str, u32); 8] = [
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", 0o2000000),
        ("/etc/hostname", 0),
        ("/proc/self/stat", 0),
        ("/var/www/html/index.html", 0o4000),
        ("/etc/ld.so.cache", 0o2000000),
        ("/tmp/upload-1234.part", 0o1101),
        ("/usr/share/zoneinfo/UTC", 0),
        ("/home/app/.cache/session", 0o102),
    ];
    let (path, flags) = match i % 1000 {
        3 => ("/etc/shadow", 0),
        n => PATHS[n % PATHS.len()],
    };
    Event {
        header: header(i, if i % 1000 == 3 { "cat" } else { "nginx" }),
        body: FilesEvent::Open {
            file: FileRef {
                path: FixedStr::from(path),
                file_type: Some(FileType::Regular),
            },
            flags,
            ret: 7,
            opens: 1,
        }
        .into(),
    }
}

fn exec(i: usize) -> Event {
    const PROGRAMS: [&str; 5] = [
        "/usr/bin/ls",
        "/usr/bin/git",
        "/bin/sh",
        "/usr/sbin/nginx",
        "/usr/bin/python3",
    ];
    let program = PROGRAMS[i % PROGRAMS.len()];
    Event {
        header: header(i, program.rsplit('/').next().unwrap()),
        body: ProcessEvent::Exec {
            filename: FixedStr::from(program),
            cwd: FixedStr::default(),
            ids: Ids::default(),
            details: None,
        }
        .into(),
    }
}

/// A security call record as the probe writes it, decoded as the tracker does.
fn call(i: usize) -> Event {
    let mut raw = security_event::default();
    raw.header.pid = 1000 + (i % 3000) as u32;
    raw.header.cgroup_id = 1;
    for (dst, src) in raw.header.comm.iter_mut().zip(b"app") {
        *dst = *src as i8;
    }
    let (name, args, path): (&str, [u64; 3], &[u8]) = match i % 6 {
        // connect(fd, {AF_INET, 443, 10.0.0.7}, 16)
        0 => ("connect", [5, 0, 16], &[2, 0, 1, 187, 10, 0, 0, 7]),
        1 => ("socket", [2, 1, 0], b""),
        2 => ("unlink", [0, 0, 0], b"/tmp/upload-1234.part"),
        3 => ("chmod", [0, 0o644, 0], b"/var/www/html/index.html"),
        4 => ("setuid", [1000, 0, 0], b""),
        _ => ("dup2", [5, 100, 0], b""),
    };
    raw.call = CALLS.iter().position(|c| *c == name).unwrap() as u32 + 1;
    raw.args[..3].copy_from_slice(&args);
    for (dst, src) in raw.path.iter_mut().zip(path) {
        *dst = *src as i8;
    }
    // SAFETY: security_event is plain old data.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&raw as *const security_event).cast::<u8>(),
            std::mem::size_of::<security_event>(),
        )
    };
    decode(bytes, 0).unwrap()
}

fn main() {
    let events: Vec<Event> = (0..EVENTS)
        .map(|i| match i % 10 {
            0 => exec(i),
            1 | 2 => call(i),
            _ => open(i),
        })
        .collect();
    let set = RuleSet::builtin();
    let rules = set.select(&["*".to_string()]).unwrap();
    let count = Count::default();
    let mut matchers: Vec<(&str, RuleMatcher)> = ["files", "process", "security"]
        .into_iter()
        .map(|t| {
            (
                t,
                RuleMatcher::new(&set, &rules, t, count.clone(), Metrics::new()),
            )
        })
        .collect();
    println!(
        "rule engine: {} rules, {EVENTS} events (70% opens, 10% execs, 20% security calls)",
        rules.len()
    );
    let mut rates = Vec::new();
    for _ in 0..RUNS {
        count.0.store(0, Ordering::Relaxed);
        let started = Instant::now();
        for event in &events {
            let tracker = eunomia::model::EventBody::info(&event.body).name;
            let (_, matcher) = matchers.iter_mut().find(|(t, _)| *t == tracker).unwrap();
            matcher.handle(event);
        }
        let secs = started.elapsed().as_secs_f64();
        rates.push(EVENTS as f64 / secs);
        println!(
            "  run: {:.0} events/s, {} alerts",
            EVENTS as f64 / secs,
            count.0.load(Ordering::Relaxed)
        );
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "rule engine: {:.0} events/s (median of {RUNS})",
        rates[RUNS / 2]
    );
}
