//! Every handler kind, without the kernel: synthetic events through real chains.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Collector;
use eunomia::handler::{
    self, AggOp, AggRow, AggregateSpec, Aggregator, Convert, CsvPrinter, Discard, FanIn, FanOut,
    Filter, Flow, Format, Handler, JsonPrinter, KeyValue, Predicate, Schema, SortBy, Stage,
    TextPrinter,
};
use eunomia::model::{Record, Value};
use eunomia::trackers::find_tracker;
use eunomia::trackers::syscall::SyscallEvent;
use eunomia::trackers::Event;

const TS: u64 = 1_795_879_201_000_000_042;

fn exec(pid: u32, comm: &str, filename: &str) -> Event {
    common::synthetic::exec(TS, pid, comm, filename)
}

fn exit(pid: u32, comm: &str, code: u32, duration_ns: u64) -> Event {
    common::synthetic::exit(TS, pid, comm, code, duration_ns)
}

fn predicate(expr: &str) -> Predicate {
    let schema = Schema::of(find_tracker("process").unwrap().info());
    Predicate::parse(expr, |f| schema.field_type(f), &[]).unwrap()
}

/// A `Write` whose bytes the test can read after the printer is gone.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn pass_through_filter_passes_or_catches() {
    let out = Collector::default();
    let mut filter = Filter::new(
        vec![predicate("comm == sh"), predicate("exit_code >= 1")],
        out.clone(),
    );
    assert_eq!(
        filter.handle(&exit(1, "sh", 7, 10)),
        Flow::Caught,
        "collector is a sink"
    );
    assert_eq!(filter.handle(&exit(2, "sh", 0, 10)), Flow::Caught);
    assert_eq!(filter.handle(&exit(3, "bash", 7, 10)), Flow::Caught);
    assert_eq!(
        filter.handle(&exec(4, "sh", "/bin/sh")),
        Flow::Caught,
        "exec has no exit_code"
    );
    let pids: Vec<u32> = out.events().iter().map(|e| e.header.pid).collect();
    assert_eq!(pids, [1]);

    let mut open = Filter::new(vec![predicate("filename ~ /bin/")], Discard);
    assert_eq!(open.handle(&exec(5, "ls", "/usr/bin/ls")), Flow::Pass);
    assert_eq!(open.handle(&exec(6, "ls", "./ls")), Flow::Caught);
}

#[test]
fn predicates_check_fields_and_types() {
    let schema = Schema::of(find_tracker("process").unwrap().info());
    let parse = |expr: &str| Predicate::parse(expr, |f| schema.field_type(f), &["pid", "comm"]);
    assert_eq!(
        parse("nope == 1").unwrap_err().to_string(),
        "unknown field `nope`; known fields: pid, comm"
    );
    assert_eq!(
        parse("pid == abc").unwrap_err().to_string(),
        "field `pid` is numeric but `abc` is not a number"
    );
    for (bad, message) in [
        (
            "pid ~ 1",
            "operator `~` (contains) needs a text field, and `pid` is numeric",
        ),
        (
            "pid 1",
            "filter `pid 1` has no operator; use one of == != > >= < <= ~ (contains)",
        ),
        ("== 1", "filter `== 1` names no field"),
        (
            "comm === sh",
            "filter `comm === sh` has more than one operator; use one of == != > >= < <= ~ (contains)",
        ),
        (
            "comm =~ sh",
            "filter `comm =~ sh` has more than one operator; use one of == != > >= < <= ~ (contains)",
        ),
        ("comm = sh", "filter `comm = sh` compares with `=`; equality is `==`"),
    ] {
        assert_eq!(parse(bad).unwrap_err().to_string(), message, "{bad}");
    }
    let ge = parse("duration_ns>=100").unwrap();
    assert!(ge.matches(&exit(1, "a", 0, 100)));
    assert!(!ge.matches(&exit(1, "a", 0, 99)));
    assert!(parse("comm != sh").unwrap().matches(&exit(1, "bash", 0, 1)));
    assert!(parse("pid < 10").unwrap().matches(&exit(9, "x", 0, 1)));
    // Quotes around a value are the shell user's, not part of it.
    for quoted in [r#"comm == "sh""#, "comm == 'sh'"] {
        assert!(
            parse(quoted).unwrap().matches(&exit(1, "sh", 0, 1)),
            "{quoted}"
        );
    }
}

#[test]
fn converting_handlers_change_the_type() {
    let pids = Arc::new(Mutex::new(Vec::new()));
    struct Pids(Arc<Mutex<Vec<u32>>>);
    impl Handler<u32> for Pids {
        fn handle(&mut self, pid: &u32) -> Flow {
            self.0.lock().unwrap().push(*pid);
            Flow::Pass
        }
    }
    let mut convert = Convert::new(
        |e: &Event| (e.kind() == "exit").then_some(e.header.pid),
        Pids(pids.clone()),
    );
    assert_eq!(convert.handle(&exit(7, "a", 0, 1)), Flow::Pass);
    assert_eq!(convert.handle(&exec(8, "a", "/a")), Flow::Caught);
    assert_eq!(*pids.lock().unwrap(), [7]);
}

#[derive(Clone, Default)]
struct Rows(Arc<Mutex<Vec<AggRow>>>);

impl Handler<AggRow> for Rows {
    fn handle(&mut self, row: &AggRow) -> Flow {
        self.0.lock().unwrap().push(row.clone());
        Flow::Caught
    }
}

#[test]
fn counting_aggregator_groups_by_any_fields() {
    let rows = Rows::default();
    let mut agg = Aggregator::new(
        AggregateSpec::count(vec!["kind".into(), "comm".into()], None),
        rows.clone(),
    );
    for pid in 0..20 {
        agg.handle(&exec(pid, "worker", "/w"));
        agg.handle(&exit(pid, "worker", 0, 5));
    }
    for pid in 0..3 {
        agg.handle(&exec(100 + pid, "sh", "/bin/sh"));
    }
    assert!(rows.0.lock().unwrap().is_empty(), "rows come at finish");
    Handler::<Event>::finish(&mut agg).unwrap();
    let rows = rows.0.lock().unwrap();
    let table: Vec<(String, String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r.get("kind").unwrap().to_string(),
                r.get("comm").unwrap().to_string(),
                r.count,
            )
        })
        .collect();
    assert_eq!(
        table,
        [
            ("exec".into(), "worker".into(), 20),
            ("exit".into(), "worker".into(), 20),
            ("exec".into(), "sh".into(), 3)
        ]
    );

    // A field that is null for some events groups them under null.
    let rows2 = Rows::default();
    let mut by_code = Aggregator::new(
        AggregateSpec::count(vec!["exit_code".into()], None),
        rows2.clone(),
    );
    by_code.handle(&exec(1, "a", "/a"));
    by_code.handle(&exit(1, "a", 3, 1));
    by_code.handle(&exit(2, "a", 3, 1));
    Handler::<Event>::finish(&mut by_code).unwrap();
    let keys: Vec<(KeyValue, u64)> = rows2
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.keys[0].clone(), r.count))
        .collect();
    assert_eq!(keys, [(KeyValue::U64(3), 2), (KeyValue::Null, 1)]);
}

#[test]
fn fan_out_gives_every_event_to_each_branch() {
    let (a, b) = (Collector::default(), Collector::default());
    let rows = Rows::default();
    let mut tee: FanOut<Event> = FanOut::new(vec![
        Box::new(Filter::new(vec![predicate("kind == exec")], a.clone())),
        Box::new(b.clone()),
        Box::new(Aggregator::new(
            AggregateSpec::count(vec!["comm".into()], None),
            rows.clone(),
        )),
    ]);
    tee.handle(&exec(1, "x", "/x"));
    tee.handle(&exit(1, "x", 0, 1));
    tee.finish().unwrap();
    assert_eq!(a.events().len(), 1);
    assert_eq!(b.events().len(), 2);
    assert_eq!(rows.0.lock().unwrap()[0].count, 2);
    assert_eq!(
        FanOut::<Event>::new(vec![Box::new(Discard)]).handle(&exec(1, "x", "/x")),
        Flow::Pass
    );
}

#[test]
fn fan_in_merges_threads_and_counts_overflow() {
    let merged = Collector::default();
    let fan_in = FanIn::spawn("merge", 100_000, merged.clone()).unwrap();
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let mut sender = fan_in.sender(Arc::new(AtomicU64::new(0)));
            std::thread::spawn(move || {
                for i in 0..1000 {
                    sender.handle(&exec(t * 10_000 + i, "w", "/w"));
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    fan_in.join().unwrap();
    assert_eq!(merged.events().len(), 4000);

    // A consumer stuck on its first event: the channel holds 2, the rest are counted.
    struct Stuck {
        gate: Arc<Mutex<()>>,
        taken: std::sync::mpsc::Sender<()>,
    }
    impl Handler<Event> for Stuck {
        fn handle(&mut self, _: &Event) -> Flow {
            let _ = self.taken.send(());
            drop(self.gate.lock().unwrap());
            Flow::Caught
        }
    }
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock().unwrap();
    let (taken, took) = std::sync::mpsc::channel();
    let stuck = Stuck {
        gate: gate.clone(),
        taken,
    };
    let fan_in = FanIn::spawn("stuck", 2, stuck).unwrap();
    let dropped = Arc::new(AtomicU64::new(0));
    let mut sender = fan_in.sender(dropped.clone());
    sender.handle(&exec(1, "w", "/w"));
    // The consumer has taken it out of the channel and blocks on the gate.
    took.recv_timeout(Duration::from_secs(10)).unwrap();
    let flows: Vec<Flow> = (0..10)
        .map(|i| sender.handle(&exec(i, "w", "/w")))
        .collect();
    assert_eq!(flows.iter().filter(|f| **f == Flow::Pass).count(), 2);
    assert_eq!(dropped.load(Ordering::Relaxed), 8);
    drop(held);
    drop(sender);
    fan_in.join().unwrap();
}

#[test]
fn json_lines_use_the_contract_field_names() {
    let buf = SharedBuf::default();
    let mut printer = JsonPrinter::new(buf.clone());
    printer.handle(&exit(42, "we\"ird", 7, 1234));
    Handler::<Event>::finish(&mut printer).unwrap();
    assert_eq!(
        buf.text(),
        "{\"tracker\":\"process\",\"kind\":\"exit\",\"ts\":\"2026-11-28T15:20:01.000000042Z\",\"pid\":42,\"ppid\":1,\
         \"comm\":\"we\\\"ird\",\"cgroup_id\":9,\"user_ns\":11,\"pid_ns\":12,\"mnt_ns\":13,\"container\":null,\
         \"container_id\":null,\"container_image\":null,\"filename\":null,\"cwd\":null,\"uid\":0,\"gid\":0,\"error\":null,\"exit_code\":7,\"signal\":null,\"core_dumped\":0,\"duration_ns\":1234,\
         \"args\":null,\"argc\":null,\"parent_comm\":null,\"parent_exe\":null,\"tty\":null,\"login_uid\":null}\n"
    );
    let parsed: serde_json::Value = serde_json::from_str(buf.text().trim()).unwrap();
    assert_eq!(parsed["comm"], "we\"ird");
}

#[test]
fn csv_has_a_header_and_quotes_when_needed() {
    let buf = SharedBuf::default();
    let mut printer = CsvPrinter::new(buf.clone());
    printer.handle(&exec(1, "a,b", "/x"));
    printer.handle(&exec(2, "c", "/y"));
    Handler::<Event>::finish(&mut printer).unwrap();
    let text = buf.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "tracker,kind,ts,pid,ppid,comm,cgroup_id,user_ns,pid_ns,mnt_ns,container,container_id,container_image,filename,cwd,uid,gid,error,exit_code,signal,core_dumped,duration_ns,args,argc,parent_comm,parent_exe,tty,login_uid");
    assert_eq!(
        lines[1],
        "process,exec,2026-11-28T15:20:01.000000042Z,1,1,\"a,b\",9,11,12,13,,,,/x,,0,0,,,,,,,,,,,"
    );
    assert_eq!(lines.len(), 3);
}

#[test]
fn text_table_aligns_chosen_columns() {
    let buf = SharedBuf::default();
    let columns = ["ts", "pid", "comm", "exit_code"]
        .map(String::from)
        .to_vec();
    let mut printer = TextPrinter::new(buf.clone(), Some(columns));
    printer.handle(&exit(42, "sh", 7, 1));
    printer.handle(&exit(31337, "bash", 0, 1));
    Handler::<Event>::finish(&mut printer).unwrap();
    assert_eq!(
        buf.text(),
        "TS                  PID COMM             EXIT_CODE\n\
         15:20:01.000000      42 sh                       7\n\
         15:20:01.000000   31337 bash                     0\n"
    );
}

/// A failed open with O_WRONLY|O_CREAT|O_TRUNC, and a successful read-only one.
fn opens() -> [Event; 2] {
    use eunomia::model::FixedStr;
    use eunomia::trackers::files::{FileRef, FileType, FilesEvent};
    let open = |path: &str, flags: u32, ret: i64, file_type| Event {
        header: common::synthetic::header(TS, 7, "nginx"),
        body: FilesEvent::Open {
            file: FileRef {
                path: FixedStr::from(path),
                file_type,
            },
            flags,
            ret,
            opens: 1,
        }
        .into(),
    };
    [
        open("/var/log/x", 577, -13, None),
        open("/srv/index.html", 0, 5, Some(FileType::Regular)),
    ]
}

/// Numbers read as people read them: the text table shows errno and flag names, JSON
/// keeps the numbers and adds the names beside them, CSV keeps only the numbers.
#[test]
fn return_values_and_flags_are_decoded_for_people() {
    let buf = SharedBuf::default();
    let columns = ["comm", "path", "flags", "ret"].map(String::from).to_vec();
    let mut printer = TextPrinter::new(buf.clone(), Some(columns));
    for event in &opens() {
        printer.handle(event);
    }
    Handler::<Event>::finish(&mut printer).unwrap();
    assert_eq!(
        buf.text(),
        "COMM             PATH                               FLAGS     RET\n\
         nginx            /var/log/x                       O_WRONLY|O_CREAT|O_TRUNC  EACCES\n\
         nginx            /srv/index.html                  O_RDONLY       5\n"
    );

    // --raw: the numbers themselves.
    let buf = SharedBuf::default();
    let columns = ["flags", "ret"].map(String::from).to_vec();
    let mut printer = TextPrinter::new(buf.clone(), Some(columns)).raw(true);
    printer.handle(&opens()[0]);
    Handler::<Event>::finish(&mut printer).unwrap();
    assert_eq!(buf.text(), "  FLAGS     RET\n    577     -13\n");
    // Durations in the unit that suits them, or in ns with --raw.
    for (raw, shown) in [(false, "     17.6ms"), (true, "   17612345")] {
        let buf = SharedBuf::default();
        let columns = vec!["duration_ns".to_string()];
        let mut printer = TextPrinter::new(buf.clone(), Some(columns)).raw(raw);
        printer.handle(&exit(1, "sh", 0, 17_612_345));
        Handler::<Event>::finish(&mut printer).unwrap();
        assert_eq!(buf.text(), format!("DURATION_NS\n{shown}\n"));
    }

    let buf = SharedBuf::default();
    let mut printer = JsonPrinter::new(buf.clone());
    for event in &opens() {
        printer.handle(event);
    }
    Handler::<Event>::finish(&mut printer).unwrap();
    let lines: Vec<serde_json::Value> = buf
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["flags"], 577);
    assert_eq!(lines[0]["flags_text"], "O_WRONLY|O_CREAT|O_TRUNC");
    assert_eq!(lines[0]["ret"], -13);
    assert_eq!(lines[0]["ret_text"], "EACCES");
    assert_eq!(lines[1]["ret"], 5);
    assert_eq!(lines[1].get("ret_text"), None, "a descriptor is no error");
    let mut json = Vec::new();
    eunomia::handler::push_json_record(&mut json, &exit(1, "sh", 0, 17_612_345));
    let exit_json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(exit_json["duration_ns"], 17_612_345);
    assert_eq!(
        exit_json.get("duration_ns_text"),
        None,
        "the name says the unit"
    );
    assert!(
        buf.text()
            .contains("\"flags\":577,\"flags_text\":\"O_WRONLY|O_CREAT|O_TRUNC\","),
        "{}",
        buf.text()
    );

    let buf = SharedBuf::default();
    let mut printer = CsvPrinter::new(buf.clone());
    printer.handle(&opens()[0]);
    Handler::<Event>::finish(&mut printer).unwrap();
    assert!(
        buf.text().lines().nth(1).unwrap().ends_with(",577,-13,1"),
        "{}",
        buf.text()
    );
}

#[test]
fn chains_are_assembled_at_run_time_from_specs() {
    let spec = r#"[
        {"type": "filter", "where": ["kind == exec"]},
        {"type": "tee", "branches": [
            [{"type": "print", "format": "json"}],
            [{"type": "aggregate", "group_by": ["comm"]},
             {"type": "filter", "where": ["count > 1"]},
             {"type": "print", "format": "csv"}]
        ]}
    ]"#;
    let stages: Vec<Stage> = serde_json::from_str(spec).unwrap();
    let (json, csv) = (SharedBuf::default(), SharedBuf::default());
    let outputs = Mutex::new(vec![csv.clone(), json.clone()]);
    let output = || Box::new(outputs.lock().unwrap().pop().unwrap()) as Box<dyn Write + Send>;
    let schema = Schema::of(find_tracker("process").unwrap().info());
    let mut chain = handler::build::<Event>(&stages, &schema, &output).unwrap();
    for (pid, comm) in [(1, "a"), (2, "a"), (3, "b")] {
        chain.handle(&exec(pid, comm, "/x"));
        chain.handle(&exit(pid, comm, 0, 1));
    }
    chain.finish().unwrap();
    assert_eq!(json.text().lines().count(), 3);
    assert!(json.text().lines().all(|l| l.contains("\"kind\":\"exec\"")));
    assert_eq!(csv.text(), "comm,count\na,2\n");
}

/// An aggregate stage: `op` over `field` per group of `group_by`, largest first, all groups.
fn grouped(group_by: &[&str], op: AggOp, field: Option<&str>) -> Stage {
    Stage::Aggregate {
        group_by: group_by.iter().map(|f| f.to_string()).collect(),
        op,
        field: field.map(str::to_string),
        top: None,
        sort: SortBy::Value,
        period_ms: None,
    }
}

/// Runs `records` (of `tracker`) through one aggregate stage and CSV; returns the CSV.
fn aggregated_csv(tracker: &str, stage: Stage, records: &[Event]) -> String {
    let csv = SharedBuf::default();
    let output = || Box::new(csv.clone()) as Box<dyn Write + Send>;
    let schema = Schema::of(find_tracker(tracker).unwrap().info());
    let print = Stage::Print {
        format: Format::Csv,
        columns: None,
        raw: false,
        clock: Default::default(),
    };
    let mut chain = handler::build::<Event>(&[stage, print], &schema, &output).unwrap();
    for record in records {
        chain.handle(record);
    }
    chain.finish().unwrap();
    csv.text()
}

fn totals(comm: &str, syscall_id: u32, count: u64, latency_ns: u64) -> Event {
    Event {
        header: common::synthetic::header(TS, 7, comm),
        body: SyscallEvent::Totals {
            syscall_id,
            count,
            errors: 0,
            latency_ns: Some(latency_ns),
            arg0: None,
        }
        .into(),
    }
}

/// Groups count calls (a syscall `totals` record stands for `count` of them), and the op
/// applies to the field: sums, extremes, exact percentiles and a rounded average; `top`
/// and `sort` choose the rows.
#[test]
fn aggregates_count_calls_and_apply_the_op() {
    const GETPPID: u32 = 110;
    const READ: u32 = 0;
    let records = [
        totals("a", GETPPID, 5, 100),
        totals("a", GETPPID, 3, 50),
        totals("a", READ, 2, 20),
        totals("b", GETPPID, 1, 7),
    ];
    let csv = |group_by: &[&str], op, field: Option<&str>, top, sort| {
        let stage = Stage::Aggregate {
            group_by: group_by.iter().map(|f| f.to_string()).collect(),
            op,
            field: field.map(str::to_string),
            top,
            sort,
            period_ms: None,
        };
        aggregated_csv("syscall", stage, &records)
    };
    assert_eq!(
        csv(&["comm"], AggOp::Count, None, None, SortBy::Value),
        "comm,count\na,10\nb,1\n"
    );
    assert_eq!(
        csv(
            &["syscall"],
            AggOp::Sum,
            Some("latency_ns"),
            None,
            SortBy::Value
        ),
        "syscall,count,sum_latency_ns\ngetppid,9,157\nread,2,20\n"
    );
    assert_eq!(
        csv(&["comm"], AggOp::Max, Some("count"), Some(1), SortBy::Value),
        "comm,count,max_count\na,10,5\n"
    );
    assert_eq!(
        csv(
            &["comm", "syscall"],
            AggOp::Min,
            Some("latency_ns"),
            None,
            SortBy::Key
        ),
        "comm,syscall,count,min_latency_ns\na,getppid,8,50\na,read,2,20\nb,getppid,1,7\n"
    );

    // Exits lasting 1 to 100 ns: nearest-rank percentiles, and 50.5 rounded for the average.
    let exits: Vec<Event> = (1..=100).map(|d| exit(d as u32, "x", 0, d)).collect();
    for (op, value) in [
        (AggOp::P50, 50),
        (AggOp::P95, 95),
        (AggOp::P99, 99),
        (AggOp::Avg, 51),
        (AggOp::Max, 100),
    ] {
        let stage = grouped(&["comm"], op, Some("duration_ns"));
        let name = op.as_str();
        assert_eq!(
            aggregated_csv("process", stage, &exits),
            format!("comm,count,{name}_duration_ns\nx,100,{value}\n")
        );
    }
}

#[test]
fn chain_specs_are_checked_before_anything_runs() {
    let schema = Schema::of(find_tracker("process").unwrap().info());
    let output = || Box::new(std::io::sink()) as Box<dyn Write + Send>;
    let build = |stages: &[Stage]| {
        handler::build::<Event>(stages, &schema, &output)
            .err()
            .map(|e| e.to_string())
    };
    let print = Stage::Print {
        format: Format::Json,
        columns: None,
        raw: false,
        clock: Default::default(),
    };
    assert_eq!(
        build(&[print.clone(), print.clone()]).as_deref(),
        Some("`print` must be the last stage of its branch")
    );
    let bad_group = build(&[grouped(&["nope"], AggOp::Count, None)]).unwrap();
    assert!(
        bad_group.starts_with("cannot group by `nope`; known fields: tracker, kind, ts, pid"),
        "{bad_group}"
    );
    let after_agg = build(&[
        grouped(&["comm"], AggOp::Count, None),
        Stage::Filter {
            r#where: vec!["pid == 1".into()],
        },
    ])
    .unwrap();
    assert_eq!(after_agg, "unknown field `pid`; known fields: comm, count");
    assert_eq!(
        build(&[grouped(&[], AggOp::Count, None)]).as_deref(),
        Some("aggregate needs 1 to 8 group-by fields, got 0")
    );
    assert_eq!(
        build(&[grouped(&["comm"], AggOp::P99, None)]).as_deref(),
        Some("p99 needs a numeric field to apply to")
    );
    let not_numeric = build(&[grouped(&["comm"], AggOp::Sum, Some("filename"))]).unwrap();
    assert!(
        not_numeric.starts_with(
            "cannot apply sum to `filename`: it is not a numeric field; numeric fields: pid, ppid"
        ),
        "{not_numeric}"
    );
    assert_eq!(
        serde_json::from_str::<Vec<Stage>>(r#"[{"type": "print", "format": "xml"}]"#)
            .unwrap_err()
            .to_string(),
        "unknown variant `xml`, expected one of `json`, `text`, `csv` at line 1 column 36"
    );
}

#[test]
fn records_expose_fields_in_catalog_order() {
    let event = exec(5, "sh", "/bin/sh");
    let mut names = Vec::new();
    event.visit(&mut |name, _| names.push(name.to_string()));
    let catalog: Vec<&str> = find_tracker("process")
        .unwrap()
        .info()
        .all_fields()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, catalog);
    assert_eq!(
        event.get("ts"),
        Some(Value::Time(1_795_879_201_000_000_042))
    );
}

/// A filter passes flushes on: the write error of a printer behind it surfaces at flush.
#[test]
fn flush_goes_through_a_filter() {
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let schema = Schema::of(find_tracker("process").unwrap().info());
    let pid_1 = Predicate::parse("pid == 1", |f| schema.field_type(f), &[]).unwrap();
    let mut chain = Filter::new(vec![pid_1], JsonPrinter::new(Broken));
    assert_eq!(chain.handle(&exit(1, "a", 0, 1)), Flow::Caught);
    assert_eq!(
        Handler::<Event>::flush(&mut chain).unwrap_err().kind(),
        std::io::ErrorKind::BrokenPipe
    );
}

/// Without chosen columns every field is shown; widths come from the first record, and a
/// later record with other fields or longer values widens its own line only, but for a
/// path, which is cut in the middle to its column (32 characters).
#[test]
fn text_table_shows_every_field_of_mixed_records() {
    let buf = SharedBuf::default();
    let mut printer = TextPrinter::new(buf.clone(), None);
    printer.handle(&exec(1, "a", "/bin/true"));
    printer.handle(&exit(123456789, "a-rather-long-command", 7, 1));
    printer.handle(&exec(
        2,
        "b",
        "/usr/local/bin/a-path-longer-than-its-column",
    ));
    Handler::<Event>::finish(&mut printer).unwrap();
    let expected = concat!(
        "TRACKER          KIND             TS                  PID    PPID COMM             CGROUP_ID USER_NS  PID_NS  MNT_NS CONTAINER CONTAINER_ID CONTAINER_IMAGE FILENAME                         CWD                                  UID     GID ERROR   EXIT_CODE SIGNAL  CORE_DUMPED DURATION_NS ARGS    ARGC    PARENT_COMM PARENT_EXE                       TTY     LOGIN_UID\n",
        "process          exec             15:20:01.000000       1       1 a                        9      11      12      13                                        /bin/true                                                               0       0                                                                                                                        \n",
        "process          exit             15:20:01.000000 123456789       1 a-rather-long-co         9      11      12      13                                                                                                                0       0                 7                   0         1ns                                                                      \n",
        // A path longer than its column is cut in the middle: the columns after it stay.
        "process          exec             15:20:01.000000       2       1 b                        9      11      12      13                                        /usr/local/bi…er-than-its-column                                        0       0                                                                                                                        \n",
    );
    assert_eq!(buf.text(), expected);
}

/// A periodic aggregate prints a table per period, each after the time it was printed at
/// and with its own header, counting only that period's records; the last, partial period
/// when the stream ends. Nothing is printed before a period has ended.
#[test]
fn periodic_tables_count_each_period_alone() {
    let buf = SharedBuf::default();
    let spec = AggregateSpec {
        period: Some(Duration::from_millis(300)),
        ..AggregateSpec::count(vec!["comm".into()], None)
    };
    let mut chain = Aggregator::new(spec, TextPrinter::new(buf.clone(), None));
    for comm in ["a", "a", "b"] {
        chain.handle(&exec(1, comm, "/x"));
    }
    Handler::<Event>::flush(&mut chain).unwrap();
    assert_eq!(buf.text(), "", "the first period has not ended");
    std::thread::sleep(Duration::from_millis(350));
    Handler::<Event>::flush(&mut chain).unwrap();
    chain.handle(&exec(1, "c", "/x"));
    Handler::<Event>::finish(&mut chain).unwrap();
    let text = buf.text();
    let lines: Vec<&str> = text.lines().collect();
    let is_time = |l: &str| l.len() == 10 && l.starts_with('[') && l.ends_with(']');
    assert!(is_time(lines[0]) && is_time(lines[5]), "{text}");
    let tables: Vec<Vec<&str>> = [&lines[1..4], &lines[6..]]
        .iter()
        .map(|t| t.iter().map(|l| l.trim_end()).collect())
        .collect();
    assert_eq!(
        tables,
        [
            vec![
                "COMM               COUNT",
                "a                      2",
                "b                      1"
            ],
            vec!["COMM               COUNT", "c                      1"],
        ],
        "{text}"
    );
    assert_eq!(lines[4], "", "{text}");
}

/// A path in the last column runs on: nothing follows it to keep aligned.
#[test]
fn a_path_in_the_last_column_is_not_cut() {
    let long = "/usr/local/lib/a/very/deep/tree/of/directories/bin/tool";
    let buf = SharedBuf::default();
    let columns = ["pid", "filename"].map(String::from).to_vec();
    let mut printer = TextPrinter::new(buf.clone(), Some(columns));
    printer.handle(&exec(7, "sh", long));
    Handler::<Event>::finish(&mut printer).unwrap();
    assert_eq!(buf.text(), format!("    PID FILENAME\n      7 {long}\n"));
}

/// A histogram per group, the group with most values first; each from its lowest to its
/// highest bucket with a value, empty ones between, bars scaled to the fullest.
#[test]
fn histogram_stage_prints_power_of_two_rows_per_group() {
    let buf = SharedBuf::default();
    let stages: Vec<Stage> = serde_json::from_str(
        r#"[{"type": "histogram", "field": "duration_ns", "group_by": ["comm"]}]"#,
    )
    .unwrap();
    let output = || -> Box<dyn std::io::Write + Send> { Box::new(buf.clone()) };
    let schema = Schema::of(find_tracker("process").unwrap().info());
    let mut chain = handler::build::<Event>(&stages, &schema, &output).unwrap();
    for (comm, duration) in [("a", 0), ("a", 1), ("a", 3), ("a", 3), ("a", 100), ("b", 5)] {
        chain.handle(&exit(1, comm, 0, duration));
    }
    // Execs have no duration: left out.
    chain.handle(&exec(1, "a", "/x"));
    chain.finish().unwrap();
    let expected = concat!(
        "\ncomm = a\n",
        "             duration_ns                     : count    distribution\n",
        "                   0 -> 0                    : 1        |********************                    |\n",
        "                   1 -> 1                    : 1        |********************                    |\n",
        "                   2 -> 3                    : 2        |****************************************|\n",
        "                   4 -> 7                    : 0        |                                        |\n",
        "                   8 -> 15                   : 0        |                                        |\n",
        "                  16 -> 31                   : 0        |                                        |\n",
        "                  32 -> 63                   : 0        |                                        |\n",
        "                  64 -> 127                  : 1        |********************                    |\n",
        "\ncomm = b\n",
        "             duration_ns                     : count    distribution\n",
        "                   4 -> 7                    : 1        |****************************************|\n",
    );
    assert_eq!(buf.text(), expected);
}

/// Rows of an in-kernel histogram (runqlat in aggregate mode): each counts its `runs` at
/// their mean wait, as the kernel bucketed them.
#[test]
fn histogram_stage_counts_a_rows_calls_at_their_mean() {
    use eunomia::trackers::runqlat::RunqlatEvent;

    let buf = SharedBuf::default();
    let stages: Vec<Stage> =
        serde_json::from_str(r#"[{"type": "histogram", "field": "latency_ns"}]"#).unwrap();
    let output = || -> Box<dyn std::io::Write + Send> { Box::new(buf.clone()) };
    let schema = Schema::of(find_tracker("runqlat").unwrap().info());
    let mut chain = handler::build::<Event>(&stages, &schema, &output).unwrap();
    for (runs, latency_ns) in [(3, 150), (1, 9), (4, 44)] {
        chain.handle(&Event {
            header: common::synthetic::header(1, 1, "a"),
            body: RunqlatEvent {
                runs,
                latency_ns,
                ran: None,
                preempted: false,
            }
            .into(),
        });
    }
    chain.finish().unwrap();
    let expected = concat!(
        "              latency_ns                     : count    distribution\n",
        "                   8 -> 15                   : 5        |****************************************|\n",
        "                  16 -> 31                   : 0        |                                        |\n",
        "                  32 -> 63                   : 3        |************************                |\n",
    );
    assert_eq!(buf.text(), expected);
}
