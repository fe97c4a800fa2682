//! Metrics that sessions export (root): declared with the session, on /metrics with the
//! session's label, bounded in label sets, checked by promtool, gone a while after the
//! session ends; and scraped by a real Prometheus, which answers the session's count.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::Server;
use common::{root_or_skip, unique_binary, TempDir};
use serde_json::{json, Value};

/// Runs a test binary `times` times.
fn run(binary: &std::path::Path, times: usize) {
    for _ in 0..times {
        assert!(Command::new(binary).status().unwrap().success());
    }
}

/// The value of the sample whose line starts with `series` in /metrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn session_metrics_are_exported_bounded_and_removed_after_the_session() {
    if !root_or_skip("session_metrics_are_exported_bounded_and_removed_after_the_session") {
        return;
    }
    let server = Server::start(
        "exporter",
        Some("[metrics]\nsession_keep_secs = 2\nmax_series = 1\n"),
    );
    let (binary, comm) = unique_binary("ex");
    let id = server.start_session(json!({
        "tracker": "process", "durationSecs": 60, "label": "runs", "filter": { "comm": comm },
        "metrics": [
            { "name": "process_events", "type": "COUNTER", "labels": ["kind"] },
            { "name": "lifetime_seconds", "type": "HISTOGRAM", "field": "duration_ns",
              "buckets": [1e-6, 10] },
        ],
    }));
    run(&binary, 3);
    assert_eq!(server.stop_session(&id), "STOPPED");
    let stopped = Instant::now();
    let (_, text) = server.get("/metrics");
    // One label set per metric here: the first kind seen (exec) has its series, the
    // exits go to `other` and are counted as dropped.
    let events = |kind: &str| {
        sample(
            &text,
            &format!("eunomia_session_process_events_total{{kind=\"{kind}\",session=\"runs\"}}"),
        )
    };
    assert_eq!(events("exec"), Some(3.0), "{text}");
    assert_eq!(events("other"), Some(3.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "eunomia_metric_series_dropped_total{metric=\"eunomia_session_process_events_total\"}"
        ),
        Some(3.0)
    );
    // Exits have a lifetime (execs none), in seconds: three, each over 1 µs, under 10 s.
    let lifetime =
        |suffix: &str| sample(&text, &format!("eunomia_session_lifetime_seconds_{suffix}"));
    assert_eq!(lifetime("count{session=\"runs\"}"), Some(3.0), "{text}");
    assert_eq!(
        lifetime("bucket{session=\"runs\",le=\"0.000001\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        lifetime("bucket{session=\"runs\",le=\"10\"}"),
        Some(3.0),
        "{text}"
    );
    let sum = lifetime("sum{session=\"runs\"}").unwrap();
    assert!(sum > 3e-6 && sum < 30.0, "{sum}");
    common::promtool_accepts(&text);

    // Gone once the session has been over for session_keep_secs (2 s; its timer starts
    // just before stopSession answers).
    let exported = |text: &str| {
        text.lines()
            .any(|l| l.starts_with("eunomia_session_") || l.contains(" eunomia_session_"))
    };
    while exported(&server.get("/metrics").1) {
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "the session's metrics stayed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        stopped.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        stopped.elapsed()
    );
}

#[test]
fn bad_metric_declarations_are_refused_with_a_code() {
    if !root_or_skip("bad_metric_declarations_are_refused_with_a_code") {
        return;
    }
    let server = Server::start("exporter-bad", None);
    let start = "mutation($input: StartSessionInput!) { startSession(input: $input) { id } }";
    let with = |metrics: Value| {
        json!({ "input": { "tracker": "process", "durationSecs": 30, "label": "bad",
                            "filter": { "comm": "eu-nothing" }, "metrics": metrics } })
    };
    let cases = [
        (
            json!([{ "name": "x-y", "type": "COUNTER" }]),
            "metric name `x-y` must be",
        ),
        (
            json!([{ "name": "x", "type": "COUNTER", "labels": ["nope"] }]),
            "metric `x`: the process tracker has no field `nope`",
        ),
        (
            json!([{ "name": "x", "type": "GAUGE" }]),
            "metric `x`: a Gauge needs a numeric `field`",
        ),
        (
            json!([{ "name": "x", "type": "HISTOGRAM", "field": "comm" }]),
            "metric `x`: field `comm` is not a number",
        ),
    ];
    for (metrics, message) in cases {
        let (code, got) = server.error(start, with(metrics.clone()), None);
        assert_eq!(code, "BAD_METRICS", "{metrics}: {got}");
        assert!(got.contains(message), "{metrics}: {got}");
    }
    // One name, two label sets: the second session is refused, the first keeps its own.
    let first = server.start_session(json!({
        "tracker": "process", "durationSecs": 30, "label": "one",
        "metrics": [{ "name": "shared", "type": "COUNTER", "labels": ["kind"] }],
    }));
    let (code, got) = server.error(
        start,
        json!({ "input": { "tracker": "process", "durationSecs": 30, "label": "two",
                           "metrics": [{ "name": "shared", "type": "COUNTER", "labels": ["comm"] }] } }),
        None,
    );
    assert_eq!(code, "BAD_METRICS", "{got}");
    let sessions = server.query("{ sessions { edges { node { id } } } }", json!({}));
    assert_eq!(sessions["sessions"]["edges"].as_array().unwrap().len(), 1);
    assert_eq!(server.stop_session(&first), "STOPPED");
}

/// A Prometheus server of its own, scraping one target every second; killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: eunomia\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed (make deps)");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The value of an instant query with one result; `None` while there is none.
    fn query(&self, query: &str) -> Option<f64> {
        let body: Value = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .send()
            .ok()?
            .json()
            .ok()?;
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_the_count_the_session_aggregates() {
    if !root_or_skip("prometheus_scrapes_the_count_the_session_aggregates") {
        return;
    }
    let server = Server::start("exporter-prom", None);
    let target = server.url.trim_start_matches("http://").to_string();
    let prometheus = Prometheus::start(&target);
    let (binary, comm) = unique_binary("pr");
    let id = server.start_session(json!({
        "tracker": "process", "durationSecs": 60, "label": "scraped", "filter": { "comm": comm },
        "metrics": [{ "name": "scraped_events", "type": "COUNTER", "labels": ["kind"] }],
    }));
    run(&binary, 7);
    assert_eq!(server.stop_session(&id), "STOPPED");
    let aggregate = server.session(&id, r#"aggregate(groupBy: ["kind"]) { keys count }"#);
    let execs = aggregate["aggregate"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["keys"] == json!(["exec"]))
        .map(|row| row["count"].as_f64().unwrap());
    assert_eq!(execs, Some(7.0), "{aggregate}");
    let query = "eunomia_session_scraped_events_total{session=\"scraped\",kind=\"exec\"}";
    let start = Instant::now();
    let scraped = loop {
        match prometheus.query(query) {
            Some(value) if value == 7.0 => break value,
            _ if start.elapsed() > Duration::from_secs(30) => {
                panic!("Prometheus has {:?} for {query}", prometheus.query(query))
            }
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    };
    assert_eq!(Some(scraped), execs);
}

#[test]
fn standing_exporters_run_from_start_up() {
    if !root_or_skip("standing_exporters_run_from_start_up") {
        return;
    }
    let (binary, comm) = unique_binary("st");
    let config = "[metrics]\ndefault_exporters = true\n\
        [[exporters]]\ntracker = \"process\"\n\
        metrics = [{ name = \"standing_runs\", type = \"COUNTER\", labels = [\"comm\", \"kind\"] }]\n";
    let server = Server::start("exporter-standing", Some(config));
    run(&binary, 4);
    let series = format!("eunomia_exporter_standing_runs_total{{comm=\"{comm}\",kind=\"exec\"}}");
    // The built-in set counts these four execs at least, under whichever container label
    // the test's own cgroup has on this machine (none on a bare host; CI may run in one).
    // Its tracker is another instance, read at its own polls: both are waited for.
    let builtin_execs = |text: &str| -> (f64, Vec<String>) {
        let lines: Vec<String> = text
            .lines()
            .filter(|l| {
                l.starts_with("eunomia_exporter_container_process_events_total{")
                    && l.contains("kind=\"exec\"")
            })
            .map(String::from)
            .collect();
        let sum = lines
            .iter()
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (sum, lines)
    };
    let start = Instant::now();
    let text = loop {
        let (_, text) = server.get("/metrics");
        let (got, builtin) = (sample(&text, &series), builtin_execs(&text));
        if got == Some(4.0) && builtin.0 >= 4.0 {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{series}: {got:?}; built-in execs {:#?}",
            builtin.1
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    common::promtool_accepts(&text);

    // An exporter that does not fit its tracker stops the start, with the reason.
    let (code, stderr) = common::server::serve_refused(
        "[[exporters]]\ntracker = \"process\"\nmetrics = [{ name = \"x\", type = \"GAUGE\" }]\n",
    );
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains(
            "exporter of the process tracker: metric `x`: a Gauge needs a numeric `field`"
        ),
        "{stderr}"
    );
}
