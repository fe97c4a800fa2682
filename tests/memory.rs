//! The MEMORY store, without the kernel: synthetic process events through its sink, and
//! every answer checked against hand-computed values or against the shared semantics of
//! `query.rs` applied to the events themselves (what the SQLite store answers).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::queries::{cond, events_page, info, query, row, SEC, T0};
use common::synthetic::{exec, exit};
use eunomia::handler::{Handler, Op, Predicate};
use eunomia::metrics::{stage, Metrics};
use eunomia::model::{FieldType, Record, Value};
use eunomia::results::memory::{is_measure, MemoryError, MemoryLimits, MemorySink, MemoryStore};
use eunomia::results::query::{
    apply_op, order_and_truncate, order_buckets, order_histograms, AggOp, AggResult,
    AggregateQuery, Condition, HistogramQuery, HistogramResult, Log2Bucket, QueryError,
    TimeBucketResult, TimeseriesQuery,
};
use eunomia::trackers::Event;

struct Fixture {
    store: Arc<MemoryStore>,
    sink: MemorySink,
    lost: Arc<AtomicU64>,
    metrics: Metrics,
}

fn fixture(limits: MemoryLimits) -> Fixture {
    let store = Arc::new(MemoryStore::new(info(), limits));
    let lost = Arc::new(AtomicU64::new(0));
    let metrics = Metrics::new();
    let sink = store.sink(lost.clone(), metrics.clone());
    Fixture {
        store,
        sink,
        lost,
        metrics,
    }
}

fn fed(events: &[Event]) -> Arc<MemoryStore> {
    let mut f = fixture(MemoryLimits::default());
    for event in events {
        f.sink.handle(event);
    }
    f.store
}

/// 20 `sh` processes and 5 `grep` ones, exec and exit each, over four seconds.
/// sh k (0..20): exit code k % 3, duration 1000 * (k + 1); grep k: code 1, 3e9 + k.
fn small_workload() -> Vec<Event> {
    let mut events = Vec::new();
    for k in 0..20u32 {
        let ts = T0 + u64::from(k) * SEC / 5; // 5 per second: seconds 0..3
        events.push(exec(ts, 100 + k, "sh", "/bin/sh"));
        events.push(exit(
            ts + 1000,
            100 + k,
            "sh",
            k % 3,
            1000 * u64::from(k + 1),
        ));
    }
    for k in 0..5u32 {
        let ts = T0 + 3 * SEC + u64::from(k);
        events.push(exec(ts, 200 + k, "grep", "/usr/bin/grep"));
        events.push(exit(ts + 10, 200 + k, "grep", 1, 3 * SEC + u64::from(k)));
    }
    events
}

/// A varied, deterministic stream: several comms, files, exit codes and seconds, with
/// durations from 1 ns to minutes.
fn varied_workload(processes: u32) -> Vec<Event> {
    const COMMS: [&str; 6] = ["sh", "grep", "make", "cc", "ls", "python3"];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut events = Vec::new();
    for i in 0..processes {
        let comm = COMMS[(next() % COMMS.len() as u64) as usize];
        let ts = T0 + u64::from(i) * 7_919_000; // about 126 per second
        let file = format!("/usr/bin/{comm}{}", next() % 3);
        events.push(exec(ts, 1000 + i, comm, &file));
        let duration = match next() % 4 {
            0 => next() % 200,
            1 => next() % 100_000,
            2 => next() % 50_000_000,
            _ => next() % 120_000_000_000,
        };
        let code = [0, 0, 0, 1, 2, 127][(next() % 6) as usize];
        events.push(exit(ts + 5_000, 1000 + i, comm, code, duration));
    }
    events
}

fn field_type(name: &str) -> FieldType {
    info().all_fields().find(|f| f.name == name).unwrap().ty
}

fn key_text(value: Option<Value<'_>>) -> String {
    match value.unwrap_or(Value::Null) {
        Value::Null => "null".to_string(),
        value => value.to_string(),
    }
}

fn matching<'a>(events: &'a [Event], conditions: &[Condition]) -> Vec<&'a Event> {
    // query.rs reads a numeric condition's value trimmed.
    let predicates: Vec<Predicate> = conditions
        .iter()
        .map(|c| {
            let ty = field_type(&c.field);
            let numeric = matches!(ty, FieldType::U64 | FieldType::I64);
            let value = if numeric { c.value.trim() } else { &c.value };
            Predicate::new(&c.field, c.op, value, ty).unwrap()
        })
        .collect();
    events
        .iter()
        .filter(|e| predicates.iter().all(|p| p.matches(*e)))
        .collect()
}

/// query.rs's semantics applied to the events one by one, as a store of events would.
fn reference(events: &[Event], q: &AggregateQuery) -> Vec<AggResult> {
    let mut groups: BTreeMap<Vec<String>, (u64, Vec<f64>)> = BTreeMap::new();
    for event in matching(events, &q.conditions) {
        let keys = q.group_by.iter().map(|g| key_text(event.get(g))).collect();
        let group = groups.entry(keys).or_default();
        group.0 += 1;
        if let Some(v) = q.field.as_deref().and_then(|f| event.get(f)?.as_f64()) {
            group.1.push(v);
        }
    }
    let mut rows: Vec<AggResult> = groups
        .into_iter()
        .map(|(keys, (count, mut values))| AggResult {
            keys,
            value: apply_op(q.op, count, &mut values),
            count,
        })
        .collect();
    order_and_truncate(&mut rows, q.top);
    rows
}

/// Histograms computed event by event, as query.rs says.
fn reference_histogram(events: &[Event], q: &HistogramQuery) -> Vec<HistogramResult> {
    let mut groups: BTreeMap<Vec<String>, Vec<(i128, u64)>> = BTreeMap::new();
    for event in matching(events, &q.conditions) {
        let keys = q.group_by.iter().map(|g| key_text(event.get(g))).collect();
        let values = groups.entry(keys).or_default();
        if let Some(v) = event.get(&q.field).and_then(|v| v.as_i128()) {
            values.push((v, 1));
        }
    }
    let mut rows: Vec<HistogramResult> = groups
        .into_iter()
        .map(|(keys, values)| HistogramResult {
            keys,
            count: values.len() as u64,
            sum: values.iter().map(|&(v, n)| v as f64 * n as f64).sum(),
            buckets: Log2Bucket::count(values),
        })
        .collect();
    order_histograms(&mut rows, q.top);
    rows
}

fn reference_timeseries(events: &[Event], q: &TimeseriesQuery) -> Vec<TimeBucketResult> {
    let width = q.bucket_secs * SEC;
    let mut groups: BTreeMap<(u64, Vec<String>), (u64, Vec<f64>)> = BTreeMap::new();
    for event in matching(events, &q.conditions) {
        let keys = q.group_by.iter().map(|g| key_text(event.get(g))).collect();
        let group = groups
            .entry((event.header.ts_ns / width * width, keys))
            .or_default();
        group.0 += 1;
        if let Some(v) = q.field.as_deref().and_then(|f| event.get(f)?.as_f64()) {
            group.1.push(v);
        }
    }
    let mut rows: Vec<TimeBucketResult> = groups
        .into_iter()
        .map(|((start_ns, keys), (count, mut values))| TimeBucketResult {
            start_ns,
            keys,
            value: apply_op(q.op, count, &mut values),
            count,
        })
        .collect();
    order_buckets(&mut rows);
    rows
}

/// Same groups and counts, values within the histogram's 1/128 (rows ordered by value
/// may then swap places, so they are compared by key).
fn assert_close(got: &[AggResult], want: &[AggResult]) {
    let by_key = |rows: &[AggResult]| {
        let mut rows = rows.to_vec();
        rows.sort_by(|a, b| a.keys.cmp(&b.keys));
        rows
    };
    let (got, want) = (by_key(got), by_key(want));
    assert_eq!(got.len(), want.len(), "{got:?}\n{want:?}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((&g.keys, g.count), (&w.keys, w.count));
        assert!(
            (g.value - w.value).abs() * 128.0 <= w.value.abs(),
            "{:?}: {} vs {}",
            g.keys,
            g.value,
            w.value
        );
    }
}

#[test]
fn only_quantities_of_the_tracker_are_measures() {
    let measures: Vec<&str> = info()
        .all_fields()
        .filter(|f| is_measure(f))
        .map(|f| f.name)
        .collect();
    assert_eq!(measures, ["duration_ns"]);
}

#[test]
fn counts_by_kind_and_comm_exactly() {
    let store = fed(&small_workload());
    assert_eq!(store.event_count(), 50);
    let rows = store
        .aggregate(&query(&["kind", "comm"], AggOp::Count, None))
        .unwrap();
    assert_eq!(
        rows,
        [
            row(&["exec", "sh"], 20.0, 20),
            row(&["exit", "sh"], 20.0, 20),
            row(&["exec", "grep"], 5.0, 5),
            row(&["exit", "grep"], 5.0, 5),
        ]
    );
    assert_eq!(
        store.aggregate(&query(&[], AggOp::Count, None)).unwrap(),
        [row(&[], 50.0, 50)]
    );
}

#[test]
fn sum_avg_min_max_of_a_measure_are_exact() {
    let store = fed(&small_workload());
    let by_comm = |op| {
        store
            .aggregate(&query(&["comm"], op, Some("duration_ns")))
            .unwrap()
    };
    // grep: 5 x 3e9 + (0+1+2+3+4); sh: 1000 * (1+...+20). Exec events count, with nulls.
    let grep_sum = 15 * SEC + 10;
    assert_eq!(
        by_comm(AggOp::Sum),
        [
            row(&["grep"], grep_sum as f64, 10),
            row(&["sh"], 210_000.0, 40)
        ]
    );
    assert_eq!(
        by_comm(AggOp::Avg),
        [
            row(&["grep"], grep_sum as f64 / 5.0, 10),
            row(&["sh"], 10_500.0, 40)
        ]
    );
    assert_eq!(
        by_comm(AggOp::Min),
        [row(&["grep"], 3e9, 10), row(&["sh"], 1000.0, 40)]
    );
    assert_eq!(
        by_comm(AggOp::Max),
        [row(&["grep"], 3e9 + 4.0, 10), row(&["sh"], 20_000.0, 40)]
    );
    // Exec events alone have no duration: 0, as the semantics say.
    let mut execs = query(&["comm"], AggOp::Sum, Some("duration_ns"));
    execs.conditions = vec![cond("kind", Op::Eq, "exec")];
    assert_eq!(
        store.aggregate(&execs).unwrap(),
        [row(&["grep"], 0.0, 5), row(&["sh"], 0.0, 20)]
    );
}

#[test]
fn percentiles_of_a_measure_are_within_the_histogram_error() {
    let store = fed(&small_workload());
    let mut q = query(&["comm"], AggOp::P50, Some("duration_ns"));
    q.conditions = vec![cond("comm", Op::Eq, "sh")];
    // Nearest rank: the 10th of 1000..20000 is 10000, the 20th 20000 (the max: exact).
    let p50 = store.aggregate(&q).unwrap()[0].value;
    assert!((p50 - 10_000.0).abs() <= 10_000.0 / 128.0, "{p50}");
    q.op = AggOp::P99;
    assert_eq!(store.aggregate(&q).unwrap(), [row(&["sh"], 20_000.0, 40)]);
    q.conditions = vec![cond("comm", Op::Eq, "grep")];
    let p99 = store.aggregate(&q).unwrap()[0].value;
    assert!((3e9..=3e9 + 4.0).contains(&p99), "{p99}");

    let events = varied_workload(5000);
    let store = fed(&events);
    for op in [AggOp::P50, AggOp::P95, AggOp::P99] {
        let q = query(&["comm", "kind"], op, Some("duration_ns"));
        assert_close(&store.aggregate(&q).unwrap(), &reference(&events, &q));
    }
}

/// Power-of-two histograms are exact in memory too: each log-linear bucket lies within one
/// power of two. Measures (durations from 1 ns to minutes) and a dimension (exit codes),
/// grouped and filtered.
#[test]
fn histograms_equal_counting_each_event() {
    let store = fed(&small_workload());
    let q = HistogramQuery {
        group_by: vec!["comm".into()],
        field: "duration_ns".into(),
        top: None,
        conditions: vec![],
    };
    let rows = store.histogram(&q).unwrap();
    // grep: 5 durations of 3e9 + k, all in [2^31, 2^32); sh: 1000 * (k + 1) for 20 k.
    assert_eq!(rows[0].keys, ["sh"]);
    assert_eq!(rows[0].count, 20);
    assert_eq!(rows[1].keys, ["grep"]);
    assert_eq!(
        rows[1].buckets,
        [Log2Bucket {
            index: 32,
            count: 5
        }]
    );
    assert_eq!(
        (rows[1].buckets[0].low(), rows[1].buckets[0].high()),
        (Some(2_147_483_648.0), 4_294_967_296.0)
    );
    assert_eq!(rows.len(), 2, "execs have no duration: no row for them");

    let events = varied_workload(5000);
    let store = fed(&events);
    for (group_by, field, conditions) in [
        (vec!["comm".to_string()], "duration_ns", vec![]),
        (vec![], "duration_ns", vec![cond("comm", Op::Ne, "sh")]),
        (vec!["comm".to_string()], "exit_code", vec![]),
    ] {
        let q = HistogramQuery {
            group_by,
            field: field.into(),
            top: Some(4),
            conditions,
        };
        let want = reference_histogram(&events, &q);
        assert!(
            want.iter().map(|r| r.buckets.len()).sum::<usize>() > 4,
            "{want:?}"
        );
        assert_eq!(store.histogram(&q).unwrap(), want);
    }
}

#[test]
fn a_dimension_as_field_is_exact_and_null_is_a_key() {
    let store = fed(&small_workload());
    assert_eq!(
        store
            .aggregate(&query(&["exit_code"], AggOp::Count, None))
            .unwrap(),
        [
            row(&["null"], 25.0, 25),
            row(&["1"], 12.0, 12),
            row(&["0"], 7.0, 7),
            row(&["2"], 6.0, 6),
        ]
    );
    // sh: 7 x 0 + 7 x 1 + 6 x 2; grep: 5 x 1.
    assert_eq!(
        store
            .aggregate(&query(&["comm"], AggOp::Sum, Some("exit_code")))
            .unwrap(),
        [row(&["sh"], 19.0, 40), row(&["grep"], 5.0, 10)]
    );
    assert_eq!(
        store
            .aggregate(&query(&[], AggOp::P50, Some("exit_code")))
            .unwrap(),
        [row(&[], 1.0, 50)]
    );
}

#[test]
fn every_exact_op_equals_the_shared_semantics() {
    let events = varied_workload(4000);
    let store = fed(&events);
    let fields = [
        "duration_ns",
        "exit_code",
        "pid",
        "core_dumped",
        "cgroup_id",
    ];
    let groupings: [&[&str]; 5] = [
        &[],
        &["comm"],
        &["kind", "comm"],
        &["exit_code", "signal"],
        &["filename"],
    ];
    for group_by in groupings {
        assert_eq!(
            store
                .aggregate(&query(group_by, AggOp::Count, None))
                .unwrap(),
            reference(&events, &query(group_by, AggOp::Count, None))
        );
        for field in fields {
            for op in [AggOp::Sum, AggOp::Avg, AggOp::Min, AggOp::Max] {
                let q = query(group_by, op, Some(field));
                assert_eq!(
                    store.aggregate(&q).unwrap(),
                    reference(&events, &q),
                    "{q:?}"
                );
            }
            if field != "duration_ns" {
                for op in [AggOp::P50, AggOp::P95, AggOp::P99] {
                    let q = query(group_by, op, Some(field));
                    assert_eq!(
                        store.aggregate(&q).unwrap(),
                        reference(&events, &q),
                        "{q:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn conditions_and_top() {
    let events = varied_workload(3000);
    let store = fed(&events);
    let condition_sets = [
        vec![cond("comm", Op::Eq, "sh")],
        vec![cond("exit_code", Op::Ne, "0")],
        vec![cond("exit_code", Op::Ge, " 2 ")],
        vec![cond("filename", Op::Contains, "make")],
        vec![cond("comm", Op::Lt, "m"), cond("kind", Op::Eq, "exit")],
        vec![cond("pid", Op::Gt, "2500"), cond("pid", Op::Le, "2600")],
        vec![cond("comm", Op::Eq, "nobody")],
    ];
    for conditions in condition_sets {
        let mut q = query(&["comm", "exit_code"], AggOp::Sum, Some("duration_ns"));
        q.conditions = conditions;
        assert_eq!(
            store.aggregate(&q).unwrap(),
            reference(&events, &q),
            "{q:?}"
        );
        q.top = Some(3);
        let top = store.aggregate(&q).unwrap();
        assert!(top.len() <= 3);
        assert_eq!(top, reference(&events, &q));
    }
    // The small workload by hand: sh processes with a non-zero exit, the top one.
    let store = fed(&small_workload());
    let mut q = query(&["comm"], AggOp::Count, None);
    q.conditions = vec![cond("exit_code", Op::Ne, "0")];
    q.top = Some(1);
    assert_eq!(store.aggregate(&q).unwrap(), [row(&["sh"], 13.0, 13)]);
}

#[test]
fn timeseries_buckets_by_second_multiples() {
    let store = fed(&small_workload());
    let q = TimeseriesQuery {
        bucket_secs: 2,
        group_by: vec!["comm".to_string()],
        op: AggOp::Count,
        field: None,
        conditions: vec![cond("kind", Op::Eq, "exec")],
    };
    let bucket = |start_ns, keys: &[&str], value: f64, count| TimeBucketResult {
        start_ns,
        keys: keys.iter().map(|k| k.to_string()).collect(),
        value,
        count,
    };
    // sh execs: 5 a second over seconds 0..3; grep's 5 in second 3.
    assert_eq!(
        store.timeseries(&q).unwrap(),
        [
            bucket(T0, &["sh"], 10.0, 10),
            bucket(T0 + 2 * SEC, &["sh"], 10.0, 10),
            bucket(T0 + 2 * SEC, &["grep"], 5.0, 5),
        ]
    );

    let events = varied_workload(3000);
    let store = fed(&events);
    for (bucket_secs, op, field) in [
        (1, AggOp::Count, None),
        (5, AggOp::Sum, Some("duration_ns")),
        (7, AggOp::Max, Some("duration_ns")),
        (3, AggOp::Avg, Some("exit_code")),
        (1_000_000, AggOp::Min, Some("duration_ns")),
    ] {
        let q = TimeseriesQuery {
            bucket_secs,
            group_by: vec!["kind".to_string()],
            op,
            field: field.map(str::to_string),
            conditions: vec![cond("comm", Op::Ne, "ls")],
        };
        assert_eq!(
            store.timeseries(&q).unwrap(),
            reference_timeseries(&events, &q),
            "{q:?}"
        );
    }
}

#[test]
fn recent_events_paginate_by_cursor_in_a_bounded_ring() {
    let mut f = fixture(MemoryLimits {
        max_groups: 1_000,
        recent_events: 50,
    });
    for i in 0..60u32 {
        let ts = T0 + u64::from(i) * SEC / 10;
        f.sink.handle(&exec(ts, 500 + i, "sh", "/bin/sh"));
        f.sink
            .handle(&exit(ts + 1, 500 + i, "sh", i % 2, u64::from(i) * 10));
    }
    assert_eq!(f.store.event_count(), 120);
    let ids = |events: &[eunomia::results::query::StoredEvent]| {
        events.iter().map(|e| e.id).collect::<Vec<_>>()
    };

    // Only the last 50 are kept: ids 71..=120.
    let (page, more) = f.store.events(&events_page(20, None, &[])).unwrap();
    assert_eq!(ids(&page), (71..=90).collect::<Vec<_>>());
    assert!(more);
    let (page, more) = f.store.events(&events_page(20, Some(90), &[])).unwrap();
    assert_eq!(ids(&page), (91..=110).collect::<Vec<_>>());
    assert!(more);
    let (page, more) = f.store.events(&events_page(20, Some(110), &[])).unwrap();
    assert_eq!(ids(&page), (111..=120).collect::<Vec<_>>());
    assert!(!more);
    let (page, more) = f.store.events(&events_page(10, Some(110), &[])).unwrap();
    assert_eq!((page.len(), more), (10, false));
    let (page, more) = f.store.events(&events_page(20, Some(3), &[])).unwrap();
    assert_eq!((page[0].id, more), (71, true));

    // Event i's exit has id 2i + 2; exits with code 1 are odd i; durations 10i.
    let conditions = [cond("kind", Op::Eq, "exit"), cond("exit_code", Op::Eq, "1")];
    let (page, more) = f
        .store
        .events(&events_page(3, Some(100), &conditions))
        .unwrap();
    assert_eq!(ids(&page), [104, 108, 112]);
    assert!(more);
    assert_eq!(page[0].comm, "sh");
    assert_eq!(page[0].kind, "exit");
    assert_eq!(page[0].pid, 551);
    assert_eq!(page[0].data["duration_ns"], 510);
    assert_eq!(page[0].data["exit_code"], 1);
    // Measures can be filtered on here: these are whole events.
    let (page, _) = f
        .store
        .events(&events_page(
            100,
            None,
            &[cond("duration_ns", Op::Ge, "590")],
        ))
        .unwrap();
    assert_eq!(ids(&page), [120]);

    let none = fixture(MemoryLimits {
        max_groups: 10,
        recent_events: 0,
    });
    let mut sink = none.sink;
    sink.handle(&exec(T0, 1, "sh", "/bin/sh"));
    assert_eq!(none.store.event_count(), 1);
    assert_eq!(
        none.store.events(&events_page(10, None, &[])).unwrap(),
        (vec![], false)
    );
    assert!(matches!(
        none.store
            .events(&events_page(10, None, &[cond("pid", Op::Eq, "x")])),
        Err(MemoryError::Query(QueryError::NotANumber { .. }))
    ));
}

#[test]
fn the_group_cap_counts_every_event_it_drops() {
    let mut f = fixture(MemoryLimits {
        max_groups: 10,
        recent_events: 100,
    });
    // Each process is a new group (its pid): 10 fit, 20 do not.
    for i in 0..30u32 {
        f.sink.handle(&exec(T0, 700 + i, "sh", "/bin/sh"));
    }
    // Into existing groups: kept. A new file name at the cap: lost, and not interned.
    f.sink.handle(&exec(T0, 700, "sh", "/bin/sh"));
    f.sink.handle(&exec(T0 + 5, 709, "sh", "/bin/sh"));
    f.sink.handle(&exec(T0, 700, "sh", "/never/kept"));
    let lost = f.lost.load(Ordering::Relaxed);
    let kept = f.store.event_count();
    assert_eq!((kept, lost), (12, 21));
    assert_eq!(kept + lost, 33);
    let metric = f
        .metrics
        .lost
        .with_label_values(&["process", stage::MEMORY])
        .get();
    assert_eq!(metric, 21);
    assert_eq!(
        f.store.aggregate(&query(&[], AggOp::Count, None)).unwrap(),
        [row(&[], 12.0, 12)]
    );
    let snapshot = f.store.snapshot();
    assert_eq!(snapshot["groups"].as_array().unwrap().len(), 10);
    assert!(!snapshot["strings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "/never/kept"));
    assert_eq!(
        f.store
            .events(&events_page(100, None, &[]))
            .unwrap()
            .0
            .len(),
        12
    );
}

#[test]
fn a_snapshot_restores_identical_answers() {
    let events = varied_workload(3000);
    let store = fed(&events);
    // Through text, as the database keeps it.
    let text = serde_json::to_string(&store.snapshot()).unwrap();
    let snapshot: serde_json::Value = serde_json::from_str(&text).unwrap();
    let restored = MemoryStore::restore(info(), MemoryLimits::default(), &snapshot).unwrap();
    assert_eq!(restored.event_count(), store.event_count());
    for op in [
        AggOp::Count,
        AggOp::Sum,
        AggOp::Avg,
        AggOp::Min,
        AggOp::Max,
        AggOp::P50,
        AggOp::P95,
        AggOp::P99,
    ] {
        for field in ["duration_ns", "exit_code"] {
            let field = (op != AggOp::Count).then_some(field);
            let mut q = query(&["comm", "signal"], op, field);
            q.conditions = vec![cond("filename", Op::Ne, "/usr/bin/sh0")];
            assert_eq!(
                restored.aggregate(&q).unwrap(),
                store.aggregate(&q).unwrap()
            );
            let t = TimeseriesQuery {
                bucket_secs: 4,
                group_by: vec!["kind".to_string()],
                op,
                field: field.map(str::to_string),
                conditions: Vec::new(),
            };
            assert_eq!(
                restored.timeseries(&t).unwrap(),
                store.timeseries(&t).unwrap()
            );
        }
    }
    // A restored store takes new events after the old ones.
    let restored = Arc::new(restored);
    let mut sink = restored.sink(Arc::new(AtomicU64::new(0)), Metrics::new());
    sink.handle(&exec(T0, 1, "sh", "/bin/sh"));
    assert_eq!(restored.event_count(), 6001);
    assert_eq!(
        restored.events(&events_page(10, None, &[])).unwrap().0[0].id,
        6001
    );
}

#[test]
fn a_bad_snapshot_is_an_error_not_a_panic() {
    let store = fed(&small_workload());
    let good = store.snapshot();
    let restore = |s: &serde_json::Value| MemoryStore::restore(info(), MemoryLimits::default(), s);
    assert_eq!(
        restore(&good).unwrap().event_count(),
        store.event_count(),
        "the good snapshot restores"
    );
    let mut bad = Vec::new();
    bad.push(serde_json::json!({"x": 1}));
    bad.push(serde_json::Value::Null);
    let mut other = good.clone();
    other["tracker"] = "file".into();
    bad.push(other);
    let mut other = good.clone();
    other["version"] = 99.into();
    bad.push(other);
    let mut other = good.clone();
    other["strings"] = serde_json::json!([]);
    bad.push(other);
    let mut other = good.clone();
    other["dimensions"][0] = "nonsense".into();
    bad.push(other);
    // Groups are [second, count, keys, measures]; exec groups have no measures.
    let with_measure = good["groups"]
        .as_array()
        .unwrap()
        .iter()
        .position(|g| g[3].as_array().is_some_and(|m| !m.is_empty()))
        .unwrap();
    let mut other = good.clone();
    other["groups"][with_measure][3][0][4] = serde_json::json!([[99999, 1]]);
    bad.push(other);
    let mut other = good.clone();
    other["groups"][with_measure][3][0][1] = "lots".into();
    bad.push(other);
    let mut other = good.clone();
    other["groups"][with_measure][2][0] = serde_json::json!({"Str": 1000});
    bad.push(other);
    let mut other = good.clone();
    let first = other["groups"][0].clone();
    other["groups"].as_array_mut().unwrap().push(first);
    bad.push(other);
    for snapshot in &bad {
        match restore(snapshot) {
            Err(MemoryError::Snapshot(msg)) => assert!(!msg.is_empty()),
            other => panic!("{snapshot}: {:?}", other.map(|s| s.event_count())),
        }
    }
}

#[test]
fn queries_run_while_a_thread_feeds_events() {
    let f = fixture(MemoryLimits::default());
    let events = varied_workload(50_000);
    let total = events.len() as u64;
    let mut sink = f.sink;
    let feeder = std::thread::spawn(move || {
        for event in &events {
            sink.handle(event);
        }
        events
    });
    let mut last = 0;
    let mut queries = 0;
    loop {
        let done = feeder.is_finished();
        let rows = f
            .store
            .aggregate(&query(&["kind"], AggOp::Count, None))
            .unwrap();
        let counted: u64 = rows.iter().map(|r| r.count).sum();
        assert!(counted >= last && counted <= total);
        last = counted;
        let (page, _) = f.store.events(&events_page(50, None, &[])).unwrap();
        assert!(page.windows(2).all(|w| w[0].id + 1 == w[1].id));
        queries += 1;
        if done {
            break;
        }
    }
    let events = feeder.join().unwrap();
    assert_eq!(last, total, "after {queries} queries");
    let q = query(&["comm", "kind"], AggOp::Sum, Some("duration_ns"));
    assert_eq!(f.store.aggregate(&q).unwrap(), reference(&events, &q));
}

#[test]
fn measures_and_ts_cannot_be_grouped_or_filtered_by() {
    let store = fed(&small_workload());
    let err = store
        .aggregate(&query(&["duration_ns"], AggOp::Count, None))
        .unwrap_err();
    assert_eq!(
        err,
        MemoryError::MeasureNotGroupable {
            field: "duration_ns".to_string()
        }
    );
    assert_eq!(
        err.to_string(),
        "field `duration_ns` is a measure in a MEMORY session: it can be aggregated (op + field) \
         but not grouped or filtered by; use store: SQLITE for that"
    );
    let mut q = query(&["comm"], AggOp::Count, None);
    q.conditions = vec![cond("duration_ns", Op::Gt, "5")];
    assert!(matches!(
        store.aggregate(&q),
        Err(MemoryError::MeasureNotGroupable { .. })
    ));
    let t = TimeseriesQuery {
        bucket_secs: 1,
        group_by: vec!["duration_ns".to_string()],
        op: AggOp::Count,
        field: None,
        conditions: Vec::new(),
    };
    assert!(matches!(
        store.timeseries(&t),
        Err(MemoryError::MeasureNotGroupable { .. })
    ));
    assert_eq!(
        store.aggregate(&query(&["ts"], AggOp::Count, None)),
        Err(MemoryError::TimeNotGroupable)
    );
    // What query.rs rejects comes through as its own error.
    assert!(matches!(
        store.aggregate(&query(&["nonsense"], AggOp::Count, None)),
        Err(MemoryError::Query(QueryError::UnknownField { .. }))
    ));
    assert_eq!(
        store.aggregate(&query(&[], AggOp::Sum, Some("comm"))),
        Err(MemoryError::Query(QueryError::NotNumeric(
            "comm".to_string()
        )))
    );
    assert_eq!(
        store.timeseries(&TimeseriesQuery {
            bucket_secs: 0,
            ..t
        }),
        Err(MemoryError::Query(QueryError::BadBucket))
    );
}

/// Realistic worst case for the sink: every process is new (its pid), so nearly every
/// event makes a base group. Then the same events into existing groups (a table of a
/// million groups: each look-up misses the cache), then into a few hot groups. Prints the
/// rates (meaningful in release builds); only correctness is asserted.
#[test]
fn sink_rate() {
    let processes = if cfg!(debug_assertions) {
        50_000
    } else {
        500_000
    };
    let events = varied_workload(processes);
    let n = events.len() as u64;
    let mut f = fixture(MemoryLimits {
        max_groups: 2_000_000,
        recent_events: 10_000,
    });
    let rate = |f: &mut Fixture, events: &mut dyn Iterator<Item = &Event>| {
        let start = Instant::now();
        let mut sent = 0;
        for event in events {
            f.sink.handle(event);
            sent += 1;
        }
        sent as f64 / start.elapsed().as_secs_f64() / 1e6
    };
    let new_groups = rate(&mut f, &mut events.iter());
    let existing = rate(&mut f, &mut events.iter());
    let hot = rate(
        &mut f,
        &mut events[..1000].iter().cycle().take(events.len()),
    );
    println!(
        "memory sink, M events/s: {new_groups:.2} making groups, {existing:.2} into {} \
         existing groups, {hot:.2} into 1000 hot groups",
        events.len()
    );
    assert_eq!(f.store.event_count(), 3 * n);
    assert_eq!(f.lost.load(Ordering::Relaxed), 0);
    let start = Instant::now();
    let rows = f
        .store
        .aggregate(&query(&["comm"], AggOp::Count, None))
        .unwrap();
    println!(
        "memory aggregate (count by comm) over {} groups: {:?}",
        events.len(),
        start.elapsed()
    );
    assert_eq!(rows.iter().map(|r| r.count).sum::<u64>(), 3 * n);
}
