//! Benchmark: process events through `SqliteSink` into a real SQLite file, as fast as a
//! tracker thread hands them over, then an aggregate over the million events stored.
//! Prints events/s (median of several runs) with the loss count, and the aggregate's p50
//! and p99 latency.
//!
//! `cargo bench --bench sqlite_sink`

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eunomia::event::{Comm, Event, FixedStr, Header};
use eunomia::handler::Handler;
use eunomia::metrics::Metrics;
use eunomia::probes::process::{ProcessEvent, WaitStatus};
use eunomia::query::{nearest_rank, AggOp, AggregateQuery};
use eunomia::store::{SessionRecord, SessionStatus, Store, StoreKind, StoreOptions};
use eunomia::tracker_manager::find_tracker;

const EVENTS: u64 = 1_000_000;
const RUNS: usize = 3;
const QUERIES: usize = 10;
/// The engine flushes its chain after every ring-buffer poll; this stands for a poll.
const FLUSH_EVERY: u64 = 1024;
const COMMS: usize = 50;
const T0: u64 = 1_795_857_600_000_000_000;

fn session(id: &str) -> SessionRecord {
    SessionRecord {
        id: id.to_string(),
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
    let pid = 10_000 + (i / 2 % 30_000) as u32;
    let header = Header {
        ts_ns: T0 + i * 1000,
        pid,
        ppid: 1,
        comm: comms[(i / 2) as usize % comms.len()],
        cgroup_id: 9,
        user_ns: 4_026_531_837,
        pid_ns: 4_026_531_836,
        mnt_ns: 4_026_531_832,
    };
    let body = if i % 2 == 0 {
        ProcessEvent::Exec {
            filename: *filename,
        }
    } else {
        ProcessEvent::Exit {
            status: WaitStatus(((i % 3) as u32) << 8),
            duration_ns: 1_000_000 + i % 7919,
        }
    };
    Event {
        header,
        body: body.into(),
    }
}

struct Run {
    rate: f64,
    lost: u64,
}

/// Feeds EVENTS events from a plain thread, then waits for them to be committed.
async fn feed(store: &Store, session_id: &str) -> Run {
    store.insert_session(&session(session_id)).await.unwrap();
    let lost = Arc::new(AtomicU64::new(0));
    let mut sink = store.event_sink(session_id, "process", lost.clone());
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
            }
        }
        sink.finish().unwrap();
    });
    tokio::task::spawn_blocking(move || tracker.join().unwrap())
        .await
        .unwrap();
    store.flush().await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    Run {
        rate: EVENTS as f64 / secs,
        lost: lost.load(Ordering::Relaxed),
    }
}

fn temp_db(run: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eunomia-bench-sqlite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("run{run}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let metrics = Metrics::new();
    let mut rates = Vec::new();
    let mut lost = Vec::new();
    let mut last = None;
    for run in 0..RUNS {
        let path = temp_db(run);
        let store = Store::open(&path, StoreOptions::default(), metrics.clone())
            .await
            .unwrap();
        let result = feed(&store, "bench").await;
        assert_eq!(
            store.event_total().await.unwrap() + result.lost,
            EVENTS,
            "every event is stored or counted lost"
        );
        rates.push(result.rate);
        lost.push(result.lost);
        if let Some(previous) = last.replace(store) {
            previous.close().await.unwrap();
        }
    }
    let store = last.expect("at least one run");
    let batches = metrics.sqlite_write_duration.get_sample_count();
    let batch_secs = metrics.sqlite_write_duration.get_sample_sum();
    println!(
        "sqlite sink: {EVENTS} events, {RUNS} runs: median {:.0} events/s (runs: {}); lost per run: {:?}",
        median(rates.clone()),
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        lost,
    );
    println!(
        "  writer: {batches} batches, {:.2} ms per batch on average",
        batch_secs * 1000.0 / batches.max(1) as f64
    );

    let info = find_tracker("process").unwrap().info();
    let query = AggregateQuery {
        group_by: vec!["kind".into(), "comm".into()],
        op: AggOp::Count,
        field: None,
        top: None,
        conditions: vec![],
    };
    let mut times = Vec::new();
    let mut groups = 0;
    for _ in 0..QUERIES {
        let started = Instant::now();
        let rows = store.aggregate("bench", info, &query).await.unwrap();
        times.push(started.elapsed());
        groups = rows.len();
        assert_eq!(rows.iter().map(|r| r.count).sum::<u64>() + lost[RUNS - 1], EVENTS);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "aggregate(groupBy [kind, comm], COUNT) over {EVENTS} events ({groups} groups), {QUERIES} queries: p50 {:.1} ms, p99 {:.1} ms",
        ms(times[nearest_rank(50.0, QUERIES)]),
        ms(times[nearest_rank(99.0, QUERIES)]),
    );
    store.close().await.unwrap();
    let _ = std::fs::remove_dir_all(temp_db(0).parent().unwrap());
}
