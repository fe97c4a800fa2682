//! The SQLite store on a real file, without the kernel: sessions, synthetic process events
//! through `SqliteSink`, queries checked against hand-computed values, the audit trail,
//! retention, reopening, and losses counted exactly when the queue is full.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::queries::{cond, events_page, info, query, row, SEC, T0};
use common::synthetic::{exec, exit};
use common::TempDir;
use eunomia::handler::{Handler, Op};
use eunomia::metrics::{stage, Metrics};
use eunomia::model::rfc3339_nanos;
use eunomia::results::query::{
    apply_op, AggOp, Condition, HistogramQuery, HistogramResult, Log2Bucket, QueryError,
    StoredEvent, TimeBucketResult, TimeseriesQuery,
};
use eunomia::results::store::{
    AuditEntry, RetentionPolicy, RetentionReport, SessionRecord, SessionStatus, Store, StoreError,
    StoreKind, StoreOptions,
};
use eunomia::results::{ResultsError, SessionResults};
use eunomia::trackers::Event;

/// A session's results in the store, asked as the API asks them.
trait Ask {
    fn of(&self, id: &eunomia::model::SessionId) -> Arc<dyn SessionResults>;
}

impl Ask for Store {
    fn of(&self, id: &eunomia::model::SessionId) -> Arc<dyn SessionResults> {
        self.session_results(id.clone(), info())
    }
}

const MS: u64 = 1_000_000;

/// A fresh directory for one test's database, removed when the test ends.
async fn open(dir: &TempDir) -> Store {
    Store::open(
        &dir.join("eunomia.db"),
        StoreOptions::default(),
        Metrics::new(),
    )
    .await
    .unwrap()
}

fn session(id: &str, started_at_ns: u64, status: SessionStatus) -> SessionRecord {
    let running = status == SessionStatus::Running;
    SessionRecord {
        id: id.into(),
        tracker: "process".to_string(),
        label: Some(format!("label of {id}")),
        status,
        store: StoreKind::Sqlite,
        filter: serde_json::json!({"pid": null, "comm": "sh", "cgroupId": null}),
        config: serde_json::json!({"min_duration_ns": 1000}),
        started_at_ns,
        ends_at_ns: started_at_ns + 30 * SEC,
        ended_at_ns: (!running).then_some(started_at_ns + 30 * SEC),
        event_count: 0,
        lost_count: 0,
        error: None,
        memory_snapshot: None,
    }
}

/// Stores `events` for session `id` (inserted first) and waits until they are committed.
/// Hands them over in parts the writer's queue always has room for, so that a machine
/// busy with other work slows this down rather than losing events.
async fn store_events(store: &Store, record: &SessionRecord, events: &[Event]) {
    store.insert_session(record).await.unwrap();
    let lost = Arc::new(AtomicU64::new(0));
    let mut sink = store.event_sink(&record.id, "process", lost.clone(), Default::default());
    let part = StoreOptions::default().queue_capacity / 2;
    for events in events.chunks(part) {
        for event in events {
            sink.handle(event);
        }
        sink.flush().unwrap();
        store.flush().await.unwrap();
    }
    sink.finish().unwrap();
    store.flush().await.unwrap();
    assert_eq!(lost.load(Ordering::Relaxed), 0);
}

/// Nine events over five seconds:
/// sh 100 (exit 0, 10 ns), sh 101 (exit 7, 30 ns), grep 102 (exit 1, 20 ns),
/// grep 103 (exit only, code 0, 40 ns), cat 104 (exit only, code 0, 50 ns), vi 105 (exec only).
fn workload() -> Vec<Event> {
    vec![
        exec(T0 + 100 * MS, 100, "sh", "/bin/sh"),
        exit(T0 + 200 * MS, 100, "sh", 0, 10),
        exec(T0 + 1500 * MS, 101, "sh", "/bin/sh"),
        exit(T0 + 1600 * MS, 101, "sh", 7, 30),
        exec(T0 + 2100 * MS, 102, "grep", "/usr/bin/grep"),
        exit(T0 + 2200 * MS, 102, "grep", 1, 20),
        exit(T0 + 2300 * MS, 103, "grep", 0, 40),
        exit(T0 + 5 * SEC, 104, "cat", 0, 50),
        exec(T0 + 5 * SEC + 1, 105, "vi", "/usr/bin/vi"),
    ]
}

/// A store holding `workload()` in session "w", and its directory.
async fn workload_store(test: &str) -> (TempDir, Store) {
    let dir = TempDir::new(&format!("store-{test}"));
    let store = open(&dir).await;
    store_events(
        &store,
        &session("w", T0, SessionStatus::Running),
        &workload(),
    )
    .await;
    (dir, store)
}

fn bucket(start_ns: u64, keys: &[&str], value: f64, count: u64) -> TimeBucketResult {
    TimeBucketResult {
        start_ns,
        keys: keys.iter().map(|k| k.to_string()).collect(),
        value,
        count,
    }
}

async fn page_ids(
    store: &Store,
    first: usize,
    after: Option<i64>,
    conditions: &[Condition],
) -> (Vec<u32>, bool, Option<i64>) {
    let (events, has_next) = store
        .of(&"w".into())
        .events(&events_page(first, after, conditions))
        .await
        .unwrap();
    let last = events.last().map(|e| e.id);
    (events.iter().map(|e| e.pid).collect(), has_next, last)
}

#[tokio::test]
async fn sessions_insert_update_get_list_and_delete() {
    let dir = TempDir::new("store-sessions");
    let store = open(&dir).await;
    // Five sessions; "b" and "c" started at the same time, so the id breaks the tie.
    let records = [
        session("a", T0, SessionStatus::Completed),
        session("b", T0 + SEC, SessionStatus::Running),
        session("c", T0 + SEC, SessionStatus::Stopped),
        session("d", T0 + 2 * SEC, SessionStatus::Running),
        session("e", T0 + 3 * SEC, SessionStatus::Failed),
    ];
    for r in &records {
        store.insert_session(r).await.unwrap();
    }
    assert_eq!(
        store.get_session(&"c".into()).await.unwrap().as_ref(),
        Some(&records[2])
    );
    assert_eq!(store.get_session(&"nope".into()).await.unwrap(), None);

    // Newest first, two per page: e d | c b | a.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let (rows, has_next) = store
            .list_sessions(None, 2, after.as_deref())
            .await
            .unwrap();
        pages.push((rows.len(), has_next));
        after = rows.last().map(|(cursor, _)| cursor.clone());
        seen.extend(rows.into_iter().map(|(_, r)| r.id.to_string()));
        if !has_next {
            break;
        }
    }
    assert_eq!(seen, ["e", "d", "c", "b", "a"]);
    assert_eq!(pages, [(2, true), (2, true), (1, false)]);

    let (running, has_next) = store
        .list_sessions(Some(SessionStatus::Running), 10, None)
        .await
        .unwrap();
    let ids: Vec<&str> = running.iter().map(|(_, r)| r.id.as_str()).collect();
    assert_eq!(ids, ["d", "b"]);
    assert!(!has_next);
    let (after_d, has_next) = store
        .list_sessions(Some(SessionStatus::Running), 1, Some(&running[0].0))
        .await
        .unwrap();
    assert_eq!(after_d.len(), 1);
    assert_eq!(after_d[0].1.id, "b".into());
    assert!(!has_next);
    assert!(matches!(
        store.list_sessions(None, 2, Some("garbage")).await,
        Err(StoreError::BadCursor(_))
    ));

    let mut ended = records[3].clone();
    ended.status = SessionStatus::Stopped;
    ended.ended_at_ns = Some(T0 + 9 * SEC);
    ended.event_count = 1234;
    ended.lost_count = 5;
    ended.error = Some("tracker said no".to_string());
    ended.label = None;
    ended.memory_snapshot = Some(serde_json::json!({"groups": [["sh", 3]]}));
    store.update_session(&ended).await.unwrap();
    assert_eq!(store.get_session(&"d".into()).await.unwrap(), Some(ended));
    let mut ghost = records[0].clone();
    ghost.id = "ghost".into();
    assert!(matches!(
        store.update_session(&ghost).await,
        Err(StoreError::UnknownSession(id)) if id.as_str() == "ghost"
    ));

    assert!(store.delete_session(&"c".into()).await.unwrap());
    assert!(!store.delete_session(&"c".into()).await.unwrap());
    assert_eq!(store.get_session(&"c".into()).await.unwrap(), None);
    let (rows, _) = store.list_sessions(None, 10, None).await.unwrap();
    let ids: Vec<&str> = rows.iter().map(|(_, r)| r.id.as_str()).collect();
    assert_eq!(ids, ["e", "d", "b", "a"]);
    store.close().await.unwrap();
}

#[tokio::test]
async fn running_sessions_become_interrupted() {
    let dir = TempDir::new("store-interrupted");
    let store = open(&dir).await;
    for r in [
        session("r1", T0, SessionStatus::Running),
        session("r2", T0 + SEC, SessionStatus::Running),
        session("done", T0, SessionStatus::Completed),
    ] {
        store.insert_session(&r).await.unwrap();
    }
    let now = T0 + 100 * SEC;
    assert_eq!(store.mark_running_interrupted(now).await.unwrap(), 2);
    for id in ["r1", "r2"] {
        let r = store.get_session(&id.into()).await.unwrap().unwrap();
        assert_eq!(r.status, SessionStatus::Interrupted);
        assert_eq!(r.ended_at_ns, Some(now));
    }
    let done = store.get_session(&"done".into()).await.unwrap().unwrap();
    assert_eq!(done, session("done", T0, SessionStatus::Completed));
    assert_eq!(store.mark_running_interrupted(now).await.unwrap(), 0);
    store.close().await.unwrap();
}

#[tokio::test]
async fn events_come_back_whole_in_pages_and_filtered() {
    let (_dir, store) = workload_store("events").await;
    let events = workload();

    let (all, has_next) = store
        .of(&"w".into())
        .events(&events_page(100, None, &[]))
        .await
        .unwrap();
    assert!(!has_next);
    assert_eq!(all.len(), events.len());
    for (stored, event) in all.iter().zip(&events) {
        assert_eq!(stored, &StoredEvent::from_event(stored.id, event));
    }
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let exit7 = &all[3];
    assert_eq!(exit7.kind, "exit");
    assert_eq!(exit7.data["exit_code"], 7);
    assert_eq!(exit7.data["duration_ns"], 30);
    assert_eq!(exit7.data["filename"], serde_json::Value::Null);
    assert_eq!(exit7.data["ts"], rfc3339_nanos(T0 + 1600 * MS));

    // Pages of four: the cursor is the last id; has_next says whether more follow.
    let (p1, next, last) = page_ids(&store, 4, None, &[]).await;
    assert_eq!((p1, next), (vec![100, 100, 101, 101], true));
    let (p2, next, last) = page_ids(&store, 4, last, &[]).await;
    assert_eq!((p2, next), (vec![102, 102, 103, 104], true));
    let (p3, next, last) = page_ids(&store, 4, last, &[]).await;
    assert_eq!((p3, next), (vec![105], false));
    let (p4, next, _) = page_ids(&store, 4, last, &[]).await;
    assert_eq!((p4, next), (vec![], false));

    // A null never matches: exec events have no exit code, not even for !=.
    let nonzero = [cond("exit_code", Op::Ne, "0")];
    assert_eq!(page_ids(&store, 10, None, &nonzero).await.0, [101, 102]);
    let (first, next, last) = page_ids(&store, 1, None, &nonzero).await;
    assert_eq!((first, next), (vec![101], true));
    assert_eq!(page_ids(&store, 1, last, &nonzero).await.0, [102]);

    let grep_exits = [cond("comm", Op::Eq, "grep"), cond("kind", Op::Eq, "exit")];
    assert_eq!(page_ids(&store, 10, None, &grep_exits).await.0, [102, 103]);
    let bin_g = [cond("filename", Op::Contains, "bin/g")];
    assert_eq!(page_ids(&store, 10, None, &bin_g).await.0, [102]);
    let comm_contains = [cond("comm", Op::Contains, "r")];
    assert_eq!(
        page_ids(&store, 10, None, &comm_contains).await.0,
        [102, 102, 103]
    );
    let pids = [cond("pid", Op::Ge, " 103"), cond("pid", Op::Lt, "105")];
    assert_eq!(page_ids(&store, 10, None, &pids).await.0, [103, 104]);
    let long = [cond("duration_ns", Op::Gt, "25")];
    assert_eq!(page_ids(&store, 10, None, &long).await.0, [101, 103, 104]);
    let text_order = [cond("comm", Op::Lt, "grep")];
    assert_eq!(page_ids(&store, 10, None, &text_order).await.0, [104]);
    let namespaces = [cond("mnt_ns", Op::Eq, "13"), cond("user_ns", Op::Ne, "11")];
    assert!(page_ids(&store, 10, None, &namespaces).await.0.is_empty());
    // A number too large for SQLite's integers still compares by value.
    let huge = [cond("cgroup_id", Op::Lt, "100000000000000000000")];
    assert_eq!(page_ids(&store, 10, None, &huge).await.0.len(), 9);
    // Times compare as nanoseconds, or as RFC 3339 text.
    let since = [cond("ts", Op::Ge, &(T0 + 2 * SEC).to_string())];
    assert_eq!(
        page_ids(&store, 10, None, &since).await.0,
        [102, 102, 103, 104, 105]
    );
    let before = [cond("ts", Op::Lt, "2026-11-28T09:20:01.6")];
    assert_eq!(page_ids(&store, 10, None, &before).await.0, [100, 100, 101]);
    let second = [cond("ts", Op::Contains, "09:20:02.")];
    assert_eq!(page_ids(&store, 10, None, &second).await.0, [102, 102, 103]);

    assert!(matches!(
        store
            .of(&"w".into())
            .events(&events_page(10, None, &[cond("nope", Op::Eq, "1")]))
            .await,
        Err(ResultsError::Query(QueryError::UnknownField { .. }))
    ));
    assert!(matches!(
        store
            .of(&"w".into())
            .events(&events_page(10, None, &[cond("pid", Op::Eq, "one")]))
            .await,
        Err(ResultsError::Query(QueryError::NotANumber { .. }))
    ));
    let (none, next) = store
        .of(&"other".into())
        .events(&events_page(10, None, &[]))
        .await
        .unwrap();
    assert!(none.is_empty() && !next);
    store.close().await.unwrap();
}

#[tokio::test]
async fn count_by_kind_and_comm() {
    let (_dir, store) = workload_store("count").await;
    let rows = store
        .of(&"w".into())
        .aggregate(&query(&["kind", "comm"], AggOp::Count, None))
        .await
        .unwrap();
    // Value descending, then keys ascending.
    assert_eq!(
        rows,
        [
            row(&["exec", "sh"], 2.0, 2),
            row(&["exit", "grep"], 2.0, 2),
            row(&["exit", "sh"], 2.0, 2),
            row(&["exec", "grep"], 1.0, 1),
            row(&["exec", "vi"], 1.0, 1),
            row(&["exit", "cat"], 1.0, 1),
        ]
    );

    // The same through the general path (a condition on a field the counts do not keep).
    let mut q = query(&["kind", "comm"], AggOp::Count, None);
    q.conditions = vec![cond("pid", Op::Gt, "0")];
    assert_eq!(store.of(&"w".into()).aggregate(&q).await.unwrap(), rows);

    // Conditions on counted fields, top, and no grouping at all.
    let mut q = query(&["comm"], AggOp::Count, None);
    q.conditions = vec![cond("kind", Op::Eq, "exit")];
    q.top = Some(2);
    assert_eq!(
        store.of(&"w".into()).aggregate(&q).await.unwrap(),
        [row(&["grep"], 2.0, 2), row(&["sh"], 2.0, 2)]
    );
    assert_eq!(
        store
            .of(&"w".into())
            .aggregate(&query(&[], AggOp::Count, None))
            .await
            .unwrap(),
        [row(&[], 9.0, 9)]
    );
    assert_eq!(
        store
            .of(&"empty".into())
            .aggregate(&query(&[], AggOp::Count, None))
            .await
            .unwrap(),
        []
    );
    let mut none = query(&["kind"], AggOp::Count, None);
    none.conditions = vec![cond("comm", Op::Eq, "nobody")];
    assert_eq!(store.of(&"w".into()).aggregate(&none).await.unwrap(), []);
    store.close().await.unwrap();
}

#[tokio::test]
async fn value_ops_on_duration() {
    let (_dir, store) = workload_store("ops").await;
    let ops = |op| query(&["comm"], op, Some("duration_ns"));
    // durations: sh [10, 30], grep [20, 40], cat [50], vi [] (exec only: null).
    let expect = [
        (
            AggOp::Sum,
            vec![
                row(&["grep"], 60.0, 3),
                row(&["cat"], 50.0, 1),
                row(&["sh"], 40.0, 4),
                row(&["vi"], 0.0, 1),
            ],
        ),
        (
            AggOp::Avg,
            vec![
                row(&["cat"], 50.0, 1),
                row(&["grep"], 30.0, 3),
                row(&["sh"], 20.0, 4),
                row(&["vi"], 0.0, 1),
            ],
        ),
        (
            AggOp::Min,
            vec![
                row(&["cat"], 50.0, 1),
                row(&["grep"], 20.0, 3),
                row(&["sh"], 10.0, 4),
                row(&["vi"], 0.0, 1),
            ],
        ),
        (
            AggOp::Max,
            vec![
                row(&["cat"], 50.0, 1),
                row(&["grep"], 40.0, 3),
                row(&["sh"], 30.0, 4),
                row(&["vi"], 0.0, 1),
            ],
        ),
        // Nearest rank: n = 2 gives rank ceil(1.0) = 1 for P50 and ceil(1.98) = 2 for P99.
        (
            AggOp::P50,
            vec![
                row(&["cat"], 50.0, 1),
                row(&["grep"], 20.0, 3),
                row(&["sh"], 10.0, 4),
                row(&["vi"], 0.0, 1),
            ],
        ),
        (
            AggOp::P99,
            vec![
                row(&["cat"], 50.0, 1),
                row(&["grep"], 40.0, 3),
                row(&["sh"], 30.0, 4),
                row(&["vi"], 0.0, 1),
            ],
        ),
    ];
    for (op, rows) in expect {
        assert_eq!(
            store.of(&"w".into()).aggregate(&ops(op)).await.unwrap(),
            rows,
            "{op:?}"
        );
    }

    // The whole session: [10, 20, 30, 40, 50] over 9 events.
    let whole = |op| query(&[], op, Some("duration_ns"));
    for (op, value) in [
        (AggOp::Sum, 150.0),
        (AggOp::Avg, 30.0),
        (AggOp::Min, 10.0),
        (AggOp::Max, 50.0),
        (AggOp::P50, 30.0), // rank ceil(2.5) = 3
        (AggOp::P95, 50.0), // rank ceil(4.75) = 5
        (AggOp::P99, 50.0),
    ] {
        assert_eq!(
            store.of(&"w".into()).aggregate(&whole(op)).await.unwrap(),
            [row(&[], value, 9)],
            "{op:?}"
        );
    }
    assert!(matches!(
        store
            .of(&"w".into())
            .aggregate(&query(&[], AggOp::Sum, Some("comm")))
            .await,
        Err(ResultsError::Query(QueryError::NotNumeric(_)))
    ));
    assert!(matches!(
        store
            .of(&"w".into())
            .aggregate(&query(&[], AggOp::P50, None))
            .await,
        Err(ResultsError::Query(QueryError::FieldRequired { .. }))
    ));
    store.close().await.unwrap();
}

#[tokio::test]
async fn percentiles_are_exact_nearest_rank() {
    let dir = TempDir::new("store-percentiles");
    let store = open(&dir).await;
    // 1..=100 ns in one group: P50 = 50, P95 = 95, P99 = 99.
    let hundred: Vec<Event> = (1..=100u64)
        .map(|d| exit(T0 + d, d as u32, "hundred", 0, d))
        .collect();
    store_events(&store, &session("h", T0, SessionStatus::Running), &hundred).await;
    for (op, value) in [(AggOp::P50, 50.0), (AggOp::P95, 95.0), (AggOp::P99, 99.0)] {
        let rows = store
            .of(&"h".into())
            .aggregate(&query(&["comm"], op, Some("duration_ns")))
            .await
            .unwrap();
        assert_eq!(rows, [row(&["hundred"], value, 100)], "{op:?}");
    }

    // Groups of 1 to 60 values in a scrambled order, checked against apply_op.
    let mut events = Vec::new();
    let mut expected: Vec<(String, Vec<f64>)> = Vec::new();
    for size in 1..=60u64 {
        let comm = format!("g{size}");
        let values: Vec<u64> = (0..size).map(|k| (k * 7919 + size * 31) % 1000).collect();
        for (k, v) in values.iter().enumerate() {
            events.push(exit(T0 + k as u64, k as u32, &comm, 0, *v));
        }
        expected.push((comm, values.iter().map(|&v| v as f64).collect()));
    }
    store_events(&store, &session("g", T0, SessionStatus::Running), &events).await;
    for op in [AggOp::P50, AggOp::P95, AggOp::P99] {
        let rows = store
            .of(&"g".into())
            .aggregate(&query(&["comm"], op, Some("duration_ns")))
            .await
            .unwrap();
        assert_eq!(rows.len(), 60);
        for (comm, values) in &expected {
            let got = rows.iter().find(|r| &r.keys[0] == comm).unwrap();
            let mut values = values.clone();
            let want = apply_op(op, values.len() as u64, &mut values);
            assert_eq!(got.value, want, "{op:?} of {comm}");
            assert_eq!(got.count, values.len() as u64);
        }
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn null_and_time_group_keys() {
    let (_dir, store) = workload_store("nulls").await;
    let rows = store
        .of(&"w".into())
        .aggregate(&query(&["exit_code"], AggOp::Count, None))
        .await
        .unwrap();
    assert_eq!(
        rows,
        [
            row(&["null"], 4.0, 4),
            row(&["0"], 3.0, 3),
            row(&["1"], 1.0, 1),
            row(&["7"], 1.0, 1),
        ]
    );
    let rows = store
        .of(&"w".into())
        .aggregate(&query(&["kind", "signal"], AggOp::Count, None))
        .await
        .unwrap();
    assert_eq!(
        rows,
        [
            row(&["exit", "null"], 5.0, 5),
            row(&["exec", "null"], 4.0, 4)
        ]
    );
    // A file named "null" and no file at all are two groups, though their keys read alike.
    store_events(
        &store,
        &session("n", T0, SessionStatus::Running),
        &[
            exec(T0, 1, "a", "null"),
            exec(T0, 2, "a", "null"),
            exit(T0, 3, "a", 0, 5),
        ],
    )
    .await;
    let rows = store
        .of(&"n".into())
        .aggregate(&query(&["filename"], AggOp::Count, None))
        .await
        .unwrap();
    assert_eq!(rows, [row(&["null"], 2.0, 2), row(&["null"], 1.0, 1)]);

    let mut q = query(&["ts", "pid"], AggOp::Count, None);
    q.conditions = vec![cond("comm", Op::Eq, "cat")];
    assert_eq!(
        store.of(&"w".into()).aggregate(&q).await.unwrap(),
        [row(&["2026-11-28T09:20:05.000000000Z", "104"], 1.0, 1)]
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn timeseries_buckets() {
    let (_dir, store) = workload_store("timeseries").await;
    let q = TimeseriesQuery {
        bucket_secs: 1,
        group_by: vec!["kind".to_string()],
        op: AggOp::Count,
        field: None,
        conditions: Vec::new(),
    };
    assert_eq!(
        store.of(&"w".into()).timeseries(&q).await.unwrap(),
        [
            bucket(T0, &["exec"], 1.0, 1),
            bucket(T0, &["exit"], 1.0, 1),
            bucket(T0 + SEC, &["exec"], 1.0, 1),
            bucket(T0 + SEC, &["exit"], 1.0, 1),
            bucket(T0 + 2 * SEC, &["exit"], 2.0, 2),
            bucket(T0 + 2 * SEC, &["exec"], 1.0, 1),
            bucket(T0 + 5 * SEC, &["exec"], 1.0, 1),
            bucket(T0 + 5 * SEC, &["exit"], 1.0, 1),
        ]
    );
    let q = TimeseriesQuery {
        bucket_secs: 2,
        group_by: Vec::new(),
        op: AggOp::Sum,
        field: Some("duration_ns".to_string()),
        conditions: vec![cond("comm", Op::Ne, "vi")],
    };
    assert_eq!(
        store.of(&"w".into()).timeseries(&q).await.unwrap(),
        [
            bucket(T0, &[], 40.0, 4),
            bucket(T0 + 2 * SEC, &[], 60.0, 3),
            bucket(T0 + 4 * SEC, &[], 50.0, 1),
        ]
    );
    let q = TimeseriesQuery {
        bucket_secs: 3600,
        group_by: vec!["comm".to_string()],
        op: AggOp::P50,
        field: Some("duration_ns".to_string()),
        conditions: Vec::new(),
    };
    // T0 is 09:20:00, so the hour bucket starts at 09:00:00.
    let hour = T0 - 20 * 60 * SEC;
    assert_eq!(
        store.of(&"w".into()).timeseries(&q).await.unwrap(),
        [
            bucket(hour, &["cat"], 50.0, 1),
            bucket(hour, &["grep"], 20.0, 3),
            bucket(hour, &["sh"], 10.0, 4),
            bucket(hour, &["vi"], 0.0, 1),
        ]
    );
    let bad = TimeseriesQuery {
        bucket_secs: 0,
        group_by: Vec::new(),
        op: AggOp::Count,
        field: None,
        conditions: Vec::new(),
    };
    assert!(matches!(
        store.of(&"w".into()).timeseries(&bad).await,
        Err(ResultsError::Query(QueryError::BadBucket))
    ));
    store.close().await.unwrap();
}

fn audit_entry(at_ns: u64, action: &str, outcome: &str) -> AuditEntry {
    AuditEntry {
        id: 0,
        at_ns,
        actor: "alice".to_string(),
        role: "operator".to_string(),
        action: action.to_string(),
        args: serde_json::json!({"tracker": "process", "durationSecs": 5}),
        outcome: outcome.to_string(),
        error: (outcome == "error").then(|| "BAD_DURATION".to_string()),
        session_id: (outcome == "ok").then(|| format!("session-{at_ns}").into()),
    }
}

#[tokio::test]
async fn audit_log_newest_first() {
    let dir = TempDir::new("store-audit");
    let store = open(&dir).await;
    let entries = [
        audit_entry(T0, "startSession", "ok"),
        audit_entry(T0 + SEC, "stopSession", "ok"),
        audit_entry(T0 + 2 * SEC, "startSession", "error"),
    ];
    for e in &entries {
        store.audit(e).await.unwrap();
    }
    let (page, has_next) = store.audit_log(2, None).await.unwrap();
    assert!(has_next);
    let strip = |e: &AuditEntry| AuditEntry { id: 0, ..e.clone() };
    assert_eq!(
        page.iter().map(strip).collect::<Vec<_>>(),
        [entries[2].clone(), entries[1].clone()]
    );
    assert!(page[0].id > page[1].id);
    let (rest, has_next) = store.audit_log(2, Some(page[1].id)).await.unwrap();
    assert!(!has_next);
    assert_eq!(
        rest.iter().map(strip).collect::<Vec<_>>(),
        [entries[0].clone()]
    );
    store.close().await.unwrap();
}

/// n events of one process for a session.
fn burst(n: u32, ts: u64) -> Vec<Event> {
    (0..n)
        .map(|k| exec(ts + u64::from(k), k, "sh", "/bin/sh"))
        .collect()
}

#[tokio::test]
async fn retention_by_age_and_by_event_cap() {
    let dir = TempDir::new("store-retention");
    let store = open(&dir).await;
    let now = T0 + 10_000 * SEC;
    let ended = |id: &str, started: u64, ended: u64| SessionRecord {
        ended_at_ns: Some(ended),
        ..session(id, started, SessionStatus::Completed)
    };
    // old: ended 2 h ago; mid and new: ended recently; run: started long ago, still running.
    store_events(&store, &ended("old", T0, now - 7200 * SEC), &burst(3, T0)).await;
    store_events(
        &store,
        &ended("mid", T0 + SEC, now - 60 * SEC),
        &burst(2, T0),
    )
    .await;
    store_events(
        &store,
        &ended("new", T0 + 2 * SEC, now - 30 * SEC),
        &burst(5, T0),
    )
    .await;
    store_events(&store, &ended("empty", T0 + 3 * SEC, now - 10 * SEC), &[]).await;
    store_events(
        &store,
        &session("run", T0 - SEC, SessionStatus::Running),
        &burst(4, T0),
    )
    .await;
    assert_eq!(store.event_total().await.unwrap(), 14);

    let by_age = RetentionPolicy {
        max_age_secs: Some(3600),
        max_events: None,
    };
    assert_eq!(
        store.enforce_retention(&by_age, now).await.unwrap(),
        RetentionReport {
            sessions_deleted: 1,
            events_deleted: 3
        }
    );
    assert_eq!(store.get_session(&"old".into()).await.unwrap(), None);
    assert_eq!(store.event_total().await.unwrap(), 11);
    assert_eq!(
        store.enforce_retention(&by_age, now).await.unwrap(),
        RetentionReport::default()
    );

    // 11 events, cap 8: the oldest ended session with events (mid, 2) is not enough, so
    // new (5) goes too; the running one stays though it is older, and so does "empty".
    let by_cap = RetentionPolicy {
        max_age_secs: None,
        max_events: Some(8),
    };
    assert_eq!(
        store.enforce_retention(&by_cap, now).await.unwrap(),
        RetentionReport {
            sessions_deleted: 2,
            events_deleted: 7
        }
    );
    assert_eq!(store.event_total().await.unwrap(), 4);
    let (left, _) = store.list_sessions(None, 10, None).await.unwrap();
    let ids: Vec<&str> = left.iter().map(|(_, r)| r.id.as_str()).collect();
    assert_eq!(ids, ["empty", "run"]);
    let (events, _) = store
        .of(&"run".into())
        .events(&events_page(10, None, &[]))
        .await
        .unwrap();
    assert_eq!(events.len(), 4);

    // Nothing but the running session holds events: a cap of 0 cannot touch it.
    let zero = RetentionPolicy {
        max_age_secs: Some(0),
        max_events: Some(0),
    };
    let report = store.enforce_retention(&zero, now).await.unwrap();
    assert_eq!(
        report,
        RetentionReport {
            sessions_deleted: 1,
            events_deleted: 0
        }
    );
    assert_eq!(store.event_total().await.unwrap(), 4);
    let run = store
        .get_session(&"run".into())
        .await
        .unwrap()
        .expect("the running session stays");
    assert_eq!(run.status, SessionStatus::Running);
    let (events, _) = store
        .of(&"run".into())
        .events(&events_page(10, None, &[]))
        .await
        .unwrap();
    assert_eq!(events.len(), 4, "with its events");
    store.close().await.unwrap();
}

/// Viewers' questions run on connections of their own: while eight heavy queries keep the
/// store busy (a count grouped by a field kept only in each event's JSON reads every
/// event), a session's final record is saved before any of them is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_queries_never_hold_up_session_control() {
    let dir = TempDir::new("store-reads");
    let store = Arc::new(open(&dir).await);
    let record = session("heavy", T0, SessionStatus::Running);
    store_events(&store, &record, &burst(100_000, T0)).await;
    let answered = Arc::new(AtomicU64::new(0));
    let heavy = query(&["filename"], AggOp::Count, None);
    let reads: Vec<_> = (0..8)
        .map(|_| {
            let (store, answered, heavy, id) = (
                store.clone(),
                answered.clone(),
                heavy.clone(),
                record.id.clone(),
            );
            tokio::spawn(async move {
                store.of(&id).aggregate(&heavy).await.unwrap();
                answered.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    // Long enough for the queries to take every connection they can.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let ended = SessionRecord {
        status: SessionStatus::Stopped,
        ..record.clone()
    };
    store.update_session(&ended).await.unwrap();
    let answered_before = answered.load(Ordering::SeqCst);
    for read in reads {
        read.await.unwrap();
    }
    assert_eq!(answered_before, 0, "saving waited for viewers' queries");
    assert_eq!(
        store.get_session(&record.id).await.unwrap().unwrap().status,
        SessionStatus::Stopped
    );
}

/// A viewer's question that runs past the query budget is stopped inside SQLite with a
/// clear error, and the connection answers the next question.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_budget_is_stopped() {
    let dir = TempDir::new("store-budget");
    let options = StoreOptions {
        query_budget: std::time::Duration::from_millis(1),
        ..StoreOptions::default()
    };
    let store = Store::open(&dir.join("eunomia.db"), options, Metrics::new())
        .await
        .unwrap();
    let record = session("costly", T0, SessionStatus::Stopped);
    store_events(&store, &record, &burst(60_000, T0)).await;
    let heavy = query(&["filename"], AggOp::Count, None);
    let started = std::time::Instant::now();
    let err = store.of(&record.id).aggregate(&heavy).await.unwrap_err();
    assert!(
        matches!(err, ResultsError::Store(StoreError::QueryBudget(_))),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // event_counts answers this one at once, on the same pool.
    let light = query(&["kind"], AggOp::Count, None);
    assert_eq!(
        store.of(&record.id).aggregate(&light).await.unwrap(),
        vec![row(&["exec"], 60_000.0, 60_000)]
    );
}

#[tokio::test]
async fn reopening_keeps_everything() {
    let dir = TempDir::new("store-reopen");
    let store = open(&dir).await;
    let record = session("keep", T0, SessionStatus::Running);
    store_events(&store, &record, &workload()).await;
    store
        .audit(&audit_entry(T0, "startSession", "ok"))
        .await
        .unwrap();
    let (events, _) = store
        .of(&"keep".into())
        .events(&events_page(100, None, &[]))
        .await
        .unwrap();
    let counts = store
        .of(&"keep".into())
        .aggregate(&query(&["kind", "comm"], AggOp::Count, None))
        .await
        .unwrap();
    let (audit, _) = store.audit_log(10, None).await.unwrap();
    store.close().await.unwrap();

    let store = open(&dir).await;
    assert_eq!(
        store.get_session(&"keep".into()).await.unwrap(),
        Some(record)
    );
    assert_eq!(
        store
            .of(&"keep".into())
            .events(&events_page(100, None, &[]))
            .await
            .unwrap(),
        (events, false)
    );
    assert_eq!(
        store
            .of(&"keep".into())
            .aggregate(&query(&["kind", "comm"], AggOp::Count, None))
            .await
            .unwrap(),
        counts
    );
    assert_eq!(store.audit_log(10, None).await.unwrap(), (audit, false));
    assert_eq!(store.event_total().await.unwrap(), 9);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_full_queue_counts_every_loss() {
    let dir = TempDir::new("store-loss");
    let metrics = Metrics::new();
    let options = StoreOptions {
        queue_capacity: 8,
        batch_size: 4,
        ..StoreOptions::default()
    };
    let store = Store::open(&dir.join("eunomia.db"), options, metrics.clone())
        .await
        .unwrap();
    store
        .insert_session(&session("l", T0, SessionStatus::Running))
        .await
        .unwrap();
    let lost = Arc::new(AtomicU64::new(0));
    let mut sink = store.event_sink(&"l".into(), "process", lost.clone(), Default::default());
    // This test's runtime has one thread, so the writer cannot take anything off the
    // queue before the loop ends: 8 events fit, the other 92 are lost.
    for k in 0..100 {
        sink.handle(&exec(T0 + k, k as u32, "sh", "/bin/sh"));
    }
    sink.flush().unwrap();
    store.flush().await.unwrap();
    let metric = metrics.lost.with_label_values(&["process", stage::SQLITE]);
    assert_eq!(store.event_total().await.unwrap(), 8);
    assert_eq!(lost.load(Ordering::Relaxed), 92);
    assert_eq!(metric.get(), 92);

    // Once the writer has drained the queue there is room again; sent = stored + lost.
    for k in 100..300 {
        sink.handle(&exec(T0 + k, k as u32, "sh", "/bin/sh"));
        if k % 8 == 7 {
            sink.flush().unwrap();
            store.flush().await.unwrap();
        }
    }
    sink.finish().unwrap();
    store.flush().await.unwrap();
    let stored = store.event_total().await.unwrap();
    let (events, _) = store
        .of(&"l".into())
        .events(&events_page(1000, None, &[]))
        .await
        .unwrap();
    assert_eq!(events.len() as u64, stored);
    assert_eq!(stored, 208);
    assert_eq!(stored + lost.load(Ordering::Relaxed), 300);
    assert_eq!(metric.get(), lost.load(Ordering::Relaxed));

    // After close, what a sink still sends is lost, and counted.
    store.close().await.unwrap();
    sink.handle(&exec(T0, 1, "sh", "/bin/sh"));
    sink.flush().unwrap();
    assert_eq!(lost.load(Ordering::Relaxed), 93);
    assert_eq!(metric.get(), 93);
}

/// COUNT counts calls: upgrading a database from before event_counts kept them gives each
/// stored group its calls from its events (a syscall `totals` record stands for `count`
/// calls), so the fast path answers calls for old sessions too.
#[tokio::test]
async fn stored_sessions_get_their_calls_counted() {
    use sqlx::Connection;
    let dir = TempDir::new("store-calls");
    let (_, mut conn) = database_before(&dir, "0003_events_belong_to_sessions.sql").await;
    let event = |session: &str, tracker: &str, kind: &str, data: &str| {
        format!(
            "INSERT INTO events (session_id, ts, tracker, kind, pid, ppid, comm, cgroup_id, data) \
             VALUES ('{session}', 1, '{tracker}', '{kind}', 1, 0, 'sh', 0, '{data}');"
        )
    };
    sqlx::raw_sql(&format!(
        "INSERT INTO sessions VALUES ('s', 'syscall', NULL, 'STOPPED', 'SQLITE', '{{}}', '{{}}', 1, 2, 2, 2, 0, NULL, NULL);
         INSERT INTO sessions VALUES ('p', 'process', NULL, 'STOPPED', 'SQLITE', '{{}}', '{{}}', 1, 2, 2, 2, 0, NULL, NULL);
         {}{}{}{}
         INSERT INTO event_counts VALUES ('s', 'syscall', 'totals', 'sh', 2), ('p', 'process', 'exec', 'sh', 2);",
        event("s", "syscall", "totals", r#"{"count": 7}"#),
        event("s", "syscall", "totals", r#"{"count": 5}"#),
        event("p", "process", "exec", "{}"),
        event("p", "process", "exec", "{}"),
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let store = open(&dir).await;
    let syscall = eunomia::trackers::find_tracker("syscall").unwrap().info();
    for (id, tracker, calls) in [("s", syscall, 12.0), ("p", info(), 2.0)] {
        let rows = store
            .session_results(id.into(), tracker)
            .aggregate(&query(&["comm"], AggOp::Count, None))
            .await
            .unwrap();
        assert_eq!(rows, [row(&["sh"], calls, calls as u64)], "{id}");
    }
}

async fn scalar(conn: &mut sqlx::SqliteConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.unwrap()
}

/// A database in `dir` with the schema as the migrations up to `last` (its file name) made
/// it, without what the server does at open; its URL and a connection to it.
async fn database_before(dir: &TempDir, last: &str) -> (String, sqlx::SqliteConnection) {
    use sqlx::Connection;
    let old = dir.join("migrations");
    std::fs::create_dir(&old).unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for entry in std::fs::read_dir(&all).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".sql") && name.as_str() <= last {
            std::fs::copy(all.join(&name), old.join(&name)).unwrap();
        }
    }
    let url = format!("sqlite://{}?mode=rwc", dir.join("eunomia.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    (url, conn)
}

/// Events belong to a session in the schema itself: upgrading a database from before
/// that rule drops rows of sessions it does not hold and keeps the rest, and from then on
/// the database refuses such rows and removes a session's events with it.
#[tokio::test]
async fn events_cannot_outlive_their_session() {
    use sqlx::Connection;
    let dir = TempDir::new("store-owned");
    let (url, mut conn) = database_before(&dir, "0002_audit_session.sql").await;
    let insert = |session: &str| {
        format!(
            "INSERT INTO events (session_id, ts, tracker, kind, pid, ppid, comm, cgroup_id, data) \
             VALUES ('{session}', 1, 'process', 'exec', 1, 0, 'sh', 0, '{{}}')"
        )
    };
    sqlx::raw_sql(&format!(
        "INSERT INTO sessions VALUES ('kept', 'process', NULL, 'STOPPED', 'SQLITE', '{{}}', '{{}}', 1, 2, 2, 2, 0, NULL, NULL);
         {}; {}; {};
         INSERT INTO event_counts VALUES ('kept', 'process', 'exec', 'sh', 2), ('gone', 'process', 'exec', 'sh', 1);",
        insert("kept"),
        insert("kept"),
        insert("gone")
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let store = open(&dir).await;
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    assert_eq!(
        scalar(
            &mut conn,
            "SELECT count(*) FROM events WHERE session_id = 'kept'"
        )
        .await,
        2
    );
    assert_eq!(
        scalar(
            &mut conn,
            "SELECT count(*) FROM events WHERE session_id = 'gone'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(&mut conn, "SELECT count(*) FROM event_counts").await,
        1
    );
    // Every connection the server opens enforces the rule; this one asks for it too.
    sqlx::raw_sql("PRAGMA foreign_keys = ON")
        .execute(&mut conn)
        .await
        .unwrap();
    let refused = sqlx::raw_sql(
        "INSERT INTO events (session_id, ts, tracker, kind, pid, ppid, comm, cgroup_id) \
         VALUES ('never-started', 1, 'process', 'exec', 1, 0, 'sh', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("FOREIGN KEY constraint failed"),
        "{refused}"
    );
    // The server's own path: a sink for a session the store does not hold loses its
    // events, counted, and stores none.
    let lost = Arc::new(AtomicU64::new(0));
    let mut sink = store.event_sink(
        &"never-started".into(),
        "process",
        lost.clone(),
        Default::default(),
    );
    for event in &workload() {
        sink.handle(event);
    }
    sink.finish().unwrap();
    let _ = store.flush().await;
    assert_eq!(lost.load(Ordering::Relaxed), workload().len() as u64);
    sqlx::raw_sql("DELETE FROM sessions WHERE id = 'kept'")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(scalar(&mut conn, "SELECT count(*) FROM events").await, 0);
    assert_eq!(
        scalar(&mut conn, "SELECT count(*) FROM event_counts").await,
        0
    );
}

/// Every field is a column: upgrading a database whose events kept their fields as JSON
/// moves each field into its column and drops the JSON. Events read back as they were
/// stored, and groupings and percentiles over fields that were only in the JSON answer
/// exactly.
#[tokio::test]
async fn events_stored_as_json_move_into_typed_columns() {
    use sqlx::Connection;
    let dir = TempDir::new("store-typed");
    let (url, mut conn) = database_before(&dir, "0004_event_counts_calls.sql").await;
    sqlx::raw_sql(
        "INSERT INTO sessions VALUES ('w', 'process', NULL, 'STOPPED', 'SQLITE', '{}', '{}', 1, 2, 2, 9, 0, NULL, NULL)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let before: Vec<StoredEvent> = workload()
        .iter()
        .enumerate()
        .map(|(i, e)| StoredEvent::from_event(i as i64 + 1, e))
        .collect();
    for e in &before {
        sqlx::query(
            "INSERT INTO events (id, session_id, ts, tracker, kind, pid, ppid, comm, cgroup_id, data) \
             VALUES (?, 'w', ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(e.id)
        .bind(e.ts_ns as i64)
        .bind(&e.tracker)
        .bind(&e.kind)
        .bind(i64::from(e.pid))
        .bind(i64::from(e.ppid))
        .bind(&e.comm)
        .bind(e.cgroup_id as i64)
        .bind(e.data.to_string())
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();

    let store = open(&dir).await;
    let (after, more) = store
        .of(&"w".into())
        .events(&events_page(100, None, &[]))
        .await
        .unwrap();
    assert!(!more);
    // Rows from before sessions numbered their events have no number; all else is kept.
    assert!(after.iter().all(|e| e.seq.is_none()), "{after:?}");
    let unnumbered: Vec<_> = before
        .into_iter()
        .map(|e| StoredEvent { seq: None, ..e })
        .collect();
    assert_eq!(after, unnumbered);
    let codes = store
        .of(&"w".into())
        .aggregate(&query(&["exit_code"], AggOp::Count, None))
        .await
        .unwrap();
    // Exit codes 0 (three), 7, 1; the four execs have none.
    let mut codes: Vec<(String, u64)> = codes
        .into_iter()
        .map(|r| (r.keys[0].clone(), r.count))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [("0", 3), ("1", 1), ("7", 1), ("null", 4)].map(|(k, n)| (k.to_string(), n))
    );
    let p99 = store
        .of(&"w".into())
        .aggregate(&query(&[], AggOp::P99, Some("duration_ns")))
        .await
        .unwrap();
    assert_eq!(p99[0].value, 50.0);
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    assert_eq!(
        scalar(
            &mut conn,
            "SELECT count(*) FROM pragma_table_info('events') WHERE name = 'data'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &mut conn,
            "SELECT count(*) FROM events WHERE f_exit_code = 7"
        )
        .await,
        1
    );
}

/// A question that would make more groups than the store allows fails with a clear error
/// instead of holding them all; one within the limit on the same connection answers.
#[tokio::test]
async fn a_grouping_past_the_group_limit_is_refused() {
    let dir = TempDir::new("store-groups");
    let options = StoreOptions {
        max_groups: 5,
        ..StoreOptions::default()
    };
    let store = Store::open(&dir.join("eunomia.db"), options, Metrics::new())
        .await
        .unwrap();
    store_events(
        &store,
        &session("w", T0, SessionStatus::Running),
        &workload(),
    )
    .await;
    // Six processes: six groups.
    let err = store
        .of(&"w".into())
        .aggregate(&query(&["pid"], AggOp::Count, None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ResultsError::Store(StoreError::TooManyGroups(5))),
        "{err}"
    );
    assert!(err.to_string().contains("more than 5 groups"), "{err}");
    let mut by_comm = store
        .of(&"w".into())
        .aggregate(&query(&["comm"], AggOp::Sum, Some("duration_ns")))
        .await
        .unwrap();
    by_comm.sort_by(|a, b| a.keys.cmp(&b.keys));
    assert_eq!(
        by_comm,
        [
            row(&["cat"], 50.0, 1),
            row(&["grep"], 60.0, 3),
            row(&["sh"], 40.0, 4),
            row(&["vi"], 0.0, 1)
        ]
    );
}

/// Histograms in power-of-two buckets, per group and filtered: exit durations 10, 30 (sh),
/// 20, 40 (grep), 50 (cat); execs have none and the exec-only vi makes no row.
#[tokio::test]
async fn histograms_count_each_value_in_its_power_of_two() {
    let (_dir, store) = workload_store("histogram").await;
    let bucket = |index, count| Log2Bucket { index, count };
    let mut q = HistogramQuery {
        group_by: vec!["comm".into()],
        field: "duration_ns".into(),
        top: None,
        conditions: vec![],
    };
    let histogram = |keys: &[&str], sum: f64, buckets: Vec<Log2Bucket>| HistogramResult {
        keys: keys.iter().map(|k| k.to_string()).collect(),
        count: buckets.iter().map(|b| b.count).sum(),
        sum,
        buckets,
    };
    // [8, 16) is bucket 4, [16, 32) 5, [32, 64) 6.
    assert_eq!(
        store.of(&"w".into()).histogram(&q).await.unwrap(),
        [
            histogram(&["grep"], 60.0, vec![bucket(5, 1), bucket(6, 1)]),
            histogram(&["sh"], 40.0, vec![bucket(4, 1), bucket(5, 1)]),
            histogram(&["cat"], 50.0, vec![bucket(6, 1)]),
        ]
    );
    q.group_by.clear();
    q.conditions = vec![cond("exit_code", Op::Eq, "0")];
    assert_eq!(
        store.of(&"w".into()).histogram(&q).await.unwrap(),
        [histogram(&[], 100.0, vec![bucket(4, 1), bucket(6, 2)])]
    );
    q.field = "comm".into();
    let err = store.of(&"w".into()).histogram(&q).await.unwrap_err();
    assert!(
        matches!(err, ResultsError::Query(QueryError::NotNumeric(_))),
        "{err}"
    );
}

/// The rows of an in-kernel histogram (runqlat in aggregate mode: each row's waits lie in
/// one power-of-two bucket, `latency_ns` their sum) give back the kernel's buckets, the
/// same in both stores: each row's `runs` counted at their mean.
#[tokio::test]
async fn in_kernel_histogram_rows_give_the_same_buckets_in_both_stores() {
    use eunomia::results::memory::{MemoryLimits, MemoryStore};
    use eunomia::trackers::runqlat::RunqlatEvent;

    let runqlat = eunomia::trackers::find_tracker("runqlat").unwrap().info();
    // (runs, summed latency): means 1000 and 1023 in [512, 1024), bucket 10; 40 in
    // [32, 64), bucket 6; 1500 in [1024, 2048), bucket 11.
    let rows = [(3, 3000), (1, 40), (5, 7500), (2, 2046)];
    let events: Vec<Event> = rows
        .iter()
        .enumerate()
        .map(|(k, &(runs, latency_ns))| Event {
            header: common::synthetic::header(T0 + k as u64 * MS, 100, "sh"),
            body: RunqlatEvent {
                runs,
                latency_ns,
                ran: None,
                preempted: k % 2 == 0,
            }
            .into(),
        })
        .collect();
    let want = [HistogramResult {
        keys: vec!["sh".to_string()],
        count: 11,
        sum: 12586.0,
        buckets: vec![
            Log2Bucket { index: 6, count: 1 },
            Log2Bucket {
                index: 10,
                count: 5,
            },
            Log2Bucket {
                index: 11,
                count: 5,
            },
        ],
    }];
    let q = HistogramQuery {
        group_by: vec!["comm".into()],
        field: "latency_ns".into(),
        top: None,
        conditions: vec![],
    };

    let memory = Arc::new(MemoryStore::new(runqlat, MemoryLimits::default()));
    let mut sink = memory.sink(Arc::new(AtomicU64::new(0)), Metrics::new());
    for event in &events {
        sink.handle(event);
    }
    assert_eq!(memory.histogram(&q).unwrap(), want);

    let dir = TempDir::new("store-kernel-histogram");
    let store = open(&dir).await;
    let mut record = session("r", T0, SessionStatus::Running);
    record.tracker = "runqlat".to_string();
    record.config = serde_json::json!({});
    store.insert_session(&record).await.unwrap();
    let mut sink = store.event_sink(
        &record.id,
        "runqlat",
        Arc::new(AtomicU64::new(0)),
        Default::default(),
    );
    for event in &events {
        sink.handle(event);
    }
    sink.finish().unwrap();
    store.flush().await.unwrap();
    assert_eq!(
        store
            .session_results(record.id.clone(), runqlat)
            .histogram(&q)
            .await
            .unwrap(),
        want
    );
}
