//! Benchmark: process events through `SqliteSink` into a real SQLite file from a plain
//! thread, as a tracker hands them over, then aggregates over a million stored events.
//!
//! 1. Full speed: the thread calls `handle` in a tight loop (flushing every 1024 events,
//!    as the engine does after each ring-buffer poll). Prints events/s (median of 3 runs)
//!    and the events lost to the full queue.
//! 2. When that loses events: the same at fixed rates, from 200,000 events/s up in steps
//!    of 50,000 while 3 runs in a row lose nothing; prints the highest such rate, the
//!    sustained zero-loss rate.
//! 3. Questions over a session of 1,000,000 stored events, 10 times each: p50 and p99.
//!    `aggregate(groupBy [kind, comm], COUNT)` reads the store's per-(kind, comm) counts;
//!    the others (a `where` on another field, groupings by fields of the tracker, SUM,
//!    percentiles alone and per group, a histogram per group) read every event.
//!
//! `cargo bench --bench sqlite_sink` (EUNOMIA_BENCH_ONLY=queries skips 1 and 2).
//! With EUNOMIA_BENCH_STORE=postgres the same runs go to a private PostgreSQL (as root,
//! `initdb` and `pg_ctl` as the tests start it), each run in a schema of its own: the
//! store of `--db postgres://...`.

#[path = "../common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eunomia::handler::{Handler, Op};
use eunomia::metrics::Metrics;
use eunomia::model::{Comm, FixedStr, Header};
use eunomia::results::query::{nearest_rank, AggOp, AggregateQuery, Condition, HistogramQuery};
use eunomia::results::store::{SessionRecord, SessionStatus, Store, StoreKind, StoreOptions};
use eunomia::trackers::find_tracker;
use eunomia::trackers::process::{Ids, ProcessEvent, WaitStatus};
use eunomia::trackers::Event;

const EVENTS: u64 = 1_000_000;
const RUNS: usize = 3;
const QUERIES: usize = 10;
/// The engine flushes its chain after every ring-buffer poll; this stands for a poll.
const FLUSH_EVERY: u64 = 1024;
const COMMS: usize = 50;
const FIRST_PACE: f64 = 200_000.0;
const PACE_STEP: f64 = 50_000.0;
const T0: u64 = 1_795_857_600_000_000_000;

fn session(id: &str) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        tracker: "process".to_string(),
        label: None,
        status: SessionStatus::Running,
        store: StoreKind::Sqlite,
        filter: serde_json::json!({}),
        config: serde_json::Value::Null,
        started_at_ns: T0,
        ends_at_ns: T0 + 60_000_000_000,
        ended_at_ns: None,
        event_count: 0,
        lost_count: 0,
        error: None,
        memory_snapshot: None,
    }
}

/// The i-th synthetic event: an exec, then the exit of the same process.
fn event(i: u64, comms: &[Comm], filename: &FixedStr<256>) -> Event {
    let header = Header {
        ts_ns: T0 + i * 1000,
        pid: 10_000 + (i / 2 % 30_000) as u32,
        ppid: 1,
        comm: comms[(i / 2) as usize % comms.len()],
        cgroup_id: 9,
        user_ns: 4_026_531_837,
        pid_ns: 4_026_531_836,
        mnt_ns: 4_026_531_832,
        container: None,
    };
    let body = if i % 2 == 0 {
        ProcessEvent::Exec {
            filename: *filename,
            cwd: FixedStr::default(),
            ids: Ids::default(),
            details: None,
        }
    } else {
        ProcessEvent::Exit {
            status: WaitStatus(((i % 3) as u32) << 8),
            duration_ns: 1_000_000 + i % 7919,
            ids: Ids::default(),
        }
    };
    Event {
        header,
        body: body.into(),
    }
}

struct Run {
    /// Events stored per second, until the last one was committed.
    rate: f64,
    /// Events per second the tracker thread handed over.
    offered: f64,
    lost: u64,
}

/// Feeds EVENTS events from a plain thread, at `pace` events/s or as fast as it can,
/// then waits until they are committed.
async fn feed(store: &Store, session_id: &str, pace: Option<f64>) -> Run {
    store.insert_session(&session(session_id)).await.unwrap();
    let lost = Arc::new(AtomicU64::new(0));
    let mut sink = store.event_sink(
        &session_id.into(),
        "process",
        lost.clone(),
        Default::default(),
    );
    let started = Instant::now();
    let tracker = std::thread::spawn(move || {
        let comms: Vec<Comm> = (0..COMMS)
            .map(|c| Comm::from(format!("worker{c}").as_str()))
            .collect();
        let filename = FixedStr::from("/usr/bin/worker");
        for i in 0..EVENTS {
            sink.handle(&event(i, &comms, &filename));
            if i % FLUSH_EVERY == FLUSH_EVERY - 1 {
                sink.flush().unwrap();
                if let Some(pace) = pace {
                    let due = started + Duration::from_secs_f64((i + 1) as f64 / pace);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                }
            }
        }
        sink.finish().unwrap();
        started.elapsed()
    });
    let handed_over = tokio::task::spawn_blocking(move || tracker.join().unwrap())
        .await
        .unwrap();
    store.flush().await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    let lost = lost.load(Ordering::Relaxed);
    assert_eq!(
        store.event_total().await.unwrap() + lost,
        EVENTS,
        "every event is stored or counted lost"
    );
    Run {
        rate: (EVENTS - lost) as f64 / secs,
        offered: EVENTS as f64 / handed_over.as_secs_f64(),
        lost,
    }
}

/// Where the runs store their events.
enum Target {
    Sqlite(PathBuf),
    Postgres(common::postgres::Postgres),
}

static RUN: AtomicU64 = AtomicU64::new(0);

impl Target {
    /// A fresh database per run, so runs do not grow one: a file, or a schema.
    fn fresh(&self, name: &str, options: StoreOptions) -> (PathBuf, StoreOptions) {
        match self {
            Target::Sqlite(dir) => {
                let path = dir.join(format!("{name}.db"));
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                (path, options)
            }
            Target::Postgres(postgres) => {
                let node = format!("{name}{}", RUN.fetch_add(1, Ordering::Relaxed));
                let options = StoreOptions {
                    node: Some(node),
                    ..options
                };
                (PathBuf::from(&postgres.url), options)
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Target::Sqlite(_) => "sqlite",
            Target::Postgres(_) => "postgres",
        }
    }
}

async fn run_once(target: &Target, options: StoreOptions, pace: Option<f64>) -> Run {
    let (db, options) = target.fresh("run", options);
    let store = Store::open(&db, options, Metrics::new()).await.unwrap();
    let run = feed(&store, "bench", pace).await;
    store.close().await.unwrap();
    run
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// p50 and p99 (nearest rank) of QUERIES runs of `query`.
async fn latency(store: &Store, question: &Question) -> (Duration, Duration, usize) {
    let info = find_tracker("process").unwrap().info();
    let session: eunomia::model::SessionId = "bench".into();
    let mut times = Vec::new();
    let mut groups = 0;
    for _ in 0..QUERIES {
        let started = Instant::now();
        let counted = match question {
            Question::Aggregate(q) => {
                let rows = store
                    .session_results(session.clone(), info)
                    .aggregate(q)
                    .await
                    .unwrap();
                groups = rows.len();
                rows.iter().map(|r| r.count).sum::<u64>()
            }
            Question::Histogram(q) => {
                let rows = store
                    .session_results(session.clone(), info)
                    .histogram(q)
                    .await
                    .unwrap();
                groups = rows.len();
                // Only exits have a duration.
                rows.iter().map(|r| r.count).sum::<u64>() * 2
            }
        };
        times.push(started.elapsed());
        assert_eq!(counted, EVENTS);
    }
    times.sort();
    (
        times[nearest_rank(50.0, QUERIES)],
        times[nearest_rank(99.0, QUERIES)],
        groups,
    )
}

enum Question {
    Aggregate(AggregateQuery),
    Histogram(HistogramQuery),
}

/// The questions timed over the stored session, by name: the COUNT the per-(kind, comm)
/// counts answer, then groupings, filters, percentiles and histograms that read every
/// event.
fn questions() -> Vec<(&'static str, Question)> {
    let ask = |group_by: &[&str], op, field: Option<&str>, conditions| {
        Question::Aggregate(AggregateQuery {
            group_by: group_by.iter().map(|f| f.to_string()).collect(),
            op,
            field: field.map(str::to_string),
            top: None,
            conditions,
        })
    };
    let user_ns = || {
        vec![Condition {
            field: "user_ns".into(),
            op: Op::Gt,
            value: "0".into(),
        }]
    };
    vec![
        (
            "aggregate(groupBy [kind, comm], COUNT)",
            ask(&["kind", "comm"], AggOp::Count, None, vec![]),
        ),
        (
            "  same, where user_ns > 0",
            ask(&["kind", "comm"], AggOp::Count, None, user_ns()),
        ),
        (
            "aggregate(groupBy [exit_code], COUNT)",
            ask(&["exit_code"], AggOp::Count, None, vec![]),
        ),
        (
            "aggregate(groupBy [comm, exit_code], SUM duration_ns)",
            ask(
                &["comm", "exit_code"],
                AggOp::Sum,
                Some("duration_ns"),
                vec![],
            ),
        ),
        (
            "aggregate(P99 duration_ns)",
            ask(&[], AggOp::P99, Some("duration_ns"), vec![]),
        ),
        (
            "aggregate(P50 duration_ns)",
            ask(&[], AggOp::P50, Some("duration_ns"), vec![]),
        ),
        (
            "aggregate(groupBy [comm], P99 duration_ns)",
            ask(&["comm"], AggOp::P99, Some("duration_ns"), vec![]),
        ),
        (
            "histogram(groupBy [comm], duration_ns)",
            Question::Histogram(HistogramQuery {
                group_by: vec!["comm".into()],
                field: "duration_ns".into(),
                top: None,
                conditions: vec![],
            }),
        ),
    ]
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("eunomia-bench-sqlite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let target = match std::env::var("EUNOMIA_BENCH_STORE").as_deref() {
        Ok("postgres") => Target::Postgres(
            common::postgres::Postgres::start_or_skip("sqlite_sink")
                .expect("PostgreSQL's server (Debian: postgresql)"),
        ),
        _ => Target::Sqlite(dir.clone()),
    };
    let store_name = target.name();

    let queries_only = std::env::var("EUNOMIA_BENCH_ONLY").is_ok_and(|o| o == "queries");
    let mut full = Vec::new();
    for _ in 0..if queries_only { 0 } else { RUNS } {
        full.push(run_once(&target, StoreOptions::default(), None).await);
    }
    if !full.is_empty() {
        println!(
            "{store_name} sink, full speed: {EVENTS} events x {RUNS} runs: median {:.0} events/s \
         stored (runs: {}), tracker thread handing over {:.0} events/s; lost per run: {:?}",
            median(full.iter().map(|r| r.rate).collect()),
            full.iter()
                .map(|r| format!("{:.0}", r.rate))
                .collect::<Vec<_>>()
                .join(", "),
            median(full.iter().map(|r| r.offered).collect()),
            full.iter().map(|r| r.lost).collect::<Vec<_>>(),
        );
    }

    if full.iter().any(|r| r.lost > 0) {
        let mut sustained = None;
        let mut pace = FIRST_PACE;
        loop {
            let mut runs = Vec::new();
            for _ in 0..RUNS {
                runs.push(run_once(&target, StoreOptions::default(), Some(pace)).await);
            }
            let lost: Vec<u64> = runs.iter().map(|r| r.lost).collect();
            println!(
                "  paced at {pace:.0} events/s: median {:.0} events/s stored, lost per run: {lost:?}",
                median(runs.iter().map(|r| r.rate).collect()),
            );
            if lost.iter().any(|&l| l > 0) {
                break;
            }
            sustained = Some(pace);
            pace += PACE_STEP;
        }
        match sustained {
            Some(rate) => println!(
                "{store_name} sink: the queue overflows at full speed; sustained zero-loss rate {rate:.0} events/s (3 runs of {EVENTS} each)"
            ),
            None => println!(
                "{store_name} sink: the queue overflows at full speed and at {FIRST_PACE:.0} events/s"
            ),
        }
    }

    // A session of exactly EVENTS events: a queue that holds them all loses none.
    let metrics = Metrics::new();
    let (db, options) = target.fresh(
        "aggregate",
        StoreOptions {
            queue_capacity: EVENTS as usize,
            ..StoreOptions::default()
        },
    );
    let store = Store::open(&db, options, metrics.clone()).await.unwrap();
    let run = feed(&store, "bench", None).await;
    assert_eq!(run.lost, 0);
    let written = match target {
        Target::Sqlite(_) => &metrics.sqlite_write_duration,
        Target::Postgres(_) => &metrics.postgres_write_duration,
    };
    let batches = written.get_sample_count();
    println!(
        "  writer alone (queue never full): {:.0} events/s, {batches} batches, {:.1} ms per batch",
        run.rate,
        written.get_sample_sum() * 1000.0 / batches.max(1) as f64,
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (name, query) in questions() {
        let (p50, p99, groups) = latency(&store, &query).await;
        println!(
            "{name} over {EVENTS} events ({groups} groups), {QUERIES} queries: \
             p50 {:.1} ms, p99 {:.1} ms",
            ms(p50),
            ms(p99),
        );
    }
    store.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
