//! Benchmark: the handler chain alone on one core: decode raw ring buffer records,
//! filter, and aggregate by (kind, comm). Prints events/s, median of several runs. Then
//! the CLI's text table: decode and print every field of each record to a discarding
//! writer. Then a session's metrics: a counter by (kind, comm) and a histogram of
//! durations.
//!
//! `cargo bench --bench handler_chain`

use std::time::Instant;

use eunomia::exporter::{register, Export, MetricKind, MetricSpec, SESSION_PREFIX};
use eunomia::handler::{
    AggRow, AggregateSpec, Aggregator, Discard, Filter, Handler, Predicate, Schema, TextPrinter,
};
use eunomia::metrics::Metrics;
use eunomia::trackers::find_tracker;
use eunomia::trackers::process::{decode, skel::types::process_event};
use eunomia::trackers::Event;

const EVENTS: usize = 2_000_000;
const RUNS: usize = 7;

fn records() -> Vec<Vec<u8>> {
    (0..EVENTS)
        .map(|i| {
            let mut raw = process_event::default();
            raw.header.ts_ns = i as u64;
            raw.header.pid = 1000 + (i % 5000) as u32;
            raw.header.ppid = 1;
            raw.header.cgroup_id = 1;
            let comm = format!("worker{}", i % 50);
            for (dst, src) in raw.header.comm.iter_mut().zip(comm.bytes()) {
                *dst = src as i8;
            }
            for (dst, src) in raw.filename.iter_mut().zip(b"/usr/bin/worker".iter()) {
                *dst = *src as i8;
            }
            raw.kind = 1 + ((i / 50) % 2) as u32;
            raw.exit_code = 0;
            raw.duration_ns = 1000;
            // SAFETY: process_event is plain old data.
            unsafe {
                std::slice::from_raw_parts(
                    (&raw as *const process_event).cast::<u8>(),
                    std::mem::size_of::<process_event>(),
                )
                .to_vec()
            }
        })
        .collect()
}

fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn main() {
    pin_to_cpu0();
    let schema = Schema::of(find_tracker("process").unwrap().info());
    let filter = Predicate::parse("comm != worker7", |f| schema.field_type(f), &[]).unwrap();
    let records = records();
    let mut rates = Vec::new();
    for _ in 0..RUNS {
        let by_kind_comm = AggregateSpec::count(vec!["kind".into(), "comm".into()], None);
        let aggregate: Aggregator<Discard> = Aggregator::new(by_kind_comm, Discard);
        let mut chain = Filter::new(vec![filter.clone()], aggregate);
        let start = Instant::now();
        for record in &records {
            let event = decode(record, 0).expect("well-formed record");
            Handler::<Event>::handle(&mut chain, &event);
        }
        let secs = start.elapsed().as_secs_f64();
        Handler::<Event>::finish(&mut chain).unwrap();
        rates.push(EVENTS as f64 / secs);
    }
    // The rows, to show the work was real: 49 comms x 2 kinds.
    let by_kind_comm = AggregateSpec::count(vec!["kind".into(), "comm".into()], None);
    let mut check: Aggregator<Rows> = Aggregator::new(by_kind_comm, Rows(0));
    let mut chain = Filter::new(vec![filter], &mut check);
    for record in records.iter().take(100_000) {
        Handler::<Event>::handle(&mut chain, &decode(record, 0).unwrap());
    }
    assert_eq!(check.rows().len(), 98);
    report(
        "handler chain (decode + filter + aggregate by kind,comm)",
        rates,
    );

    let printed = PRINTED.min(records.len());
    let rates = (0..RUNS)
        .map(|_| {
            let mut printer = TextPrinter::new(std::io::sink(), None);
            let start = Instant::now();
            for record in &records[..printed] {
                Handler::<Event>::handle(&mut printer, &decode(record, 0).unwrap());
            }
            let secs = start.elapsed().as_secs_f64();
            Handler::<Event>::finish(&mut printer).unwrap();
            printed as f64 / secs
        })
        .collect();
    report("text table (decode + print every field)", rates);

    let specs = [
        MetricSpec {
            name: "events".into(),
            kind: MetricKind::Counter,
            field: None,
            labels: vec!["kind".into(), "comm".into()],
            buckets: None,
        },
        MetricSpec {
            name: "duration_seconds".into(),
            kind: MetricKind::Histogram,
            field: Some("duration_ns".into()),
            labels: Vec::new(),
            buckets: None,
        },
    ];
    let info = find_tracker("process").unwrap().info();
    let export_as = Export {
        prefix: SESSION_PREFIX,
        session: Some("bench"),
        max_series: 1000,
    };
    let rates = (0..RUNS)
        .map(|_| {
            let metrics = Metrics::new();
            let (export, mut handler) = register(&metrics, info, &export_as, &specs).unwrap();
            let start = Instant::now();
            for record in &records {
                Handler::<Event>::handle(&mut handler, &decode(record, 0).unwrap());
            }
            let secs = start.elapsed().as_secs_f64();
            // The work was real: every event counted, under 50 comms x 2 kinds.
            let text = metrics.render();
            let counted: f64 = text
                .lines()
                .filter(|l| l.starts_with("eunomia_session_events_total{"))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
                .sum();
            assert_eq!(counted, EVENTS as f64);
            export.unregister();
            EVENTS as f64 / secs
        })
        .collect();
    report(
        "session metrics (decode + counter by kind,comm + histogram of duration)",
        rates,
    );
}

/// Records the text table benchmark prints per run.
const PRINTED: usize = 500_000;

fn report(what: &str, mut rates: Vec<f64>) {
    rates.sort_by(f64::total_cmp);
    println!(
        "{what}, one core: median {:.2} M events/s (min {:.2}, max {:.2}) over {} runs",
        rates[rates.len() / 2] / 1e6,
        rates[0] / 1e6,
        rates[rates.len() - 1] / 1e6,
        rates.len()
    );
}

struct Rows(usize);

impl Handler<AggRow> for Rows {
    fn handle(&mut self, _: &AggRow) -> eunomia::handler::Flow {
        self.0 += 1;
        eunomia::handler::Flow::Caught
    }
}
