//! The Prometheus exporter: the server's own registry. Labels are bounded: tracker names,
//! loss stages and session statuses only, never pids or session ids.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Where an event can be lost, as the `stage` label says.
pub mod stage {
    /// The BPF ring buffer was full.
    pub const KERNEL: &str = "kernel";
    /// A channel between threads was full.
    pub const CHANNEL: &str = "channel";
    /// A record could not be decoded.
    pub const MALFORMED: &str = "malformed";
    /// The SQLite writer's queue was full.
    pub const SQLITE: &str = "sqlite";
    /// The PostgreSQL writer's queue was full (PostgreSQL as the server's store).
    pub const POSTGRES: &str = "postgres";
    /// A memory store reached its group cap.
    pub const MEMORY: &str = "memory";
    /// A live subscriber fell behind.
    pub const SUBSCRIPTION: &str = "subscription";
    /// The security analyzer's queue of alerts to store was full.
    pub const ALERTS: &str = "alerts";
}

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub events: IntCounterVec,
    pub lost: IntCounterVec,
    pub sessions_active: IntGauge,
    pub sessions: IntCounterVec,
    pub session_starts: IntCounterVec,
    pub handler_duration: Histogram,
    pub sqlite_write_duration: Histogram,
    pub postgres_write_duration: Histogram,
    /// Requests refused for missing or wrong credentials (each audited, at most one per
    /// client address a second).
    pub auth_refused: IntCounter,
    /// Alerts raised (repeats within the dedup window included), per rule and severity:
    /// rules are finite, so the labels are bounded.
    pub alerts: IntCounterVec,
    /// Rule conditions that failed to evaluate on an event (counted as no match).
    pub rule_errors: IntCounterVec,
    /// Processes killed by rules whose action is `kill`, per rule.
    pub kills: IntCounterVec,
    /// From the kernel event to the kill signal sent.
    pub kill_latency: Histogram,
    /// The standing guard's cost so far: its BPF programs' run time, and its threads'
    /// CPU time in user space and the kernel's syscalls on their behalf.
    pub guard_bpf_seconds: prometheus::Gauge,
    pub guard_cpu_seconds: prometheus::Gauge,
    /// 1 while the standing guard runs.
    pub guard_running: IntGauge,
    /// Things outside a learned baseline not alerted: the baseline had raised as many
    /// anomalies as one may.
    pub anomalies_unreported: IntCounter,
    /// Samples of session metrics past their cap on label sets, per metric name.
    pub series_dropped: IntCounterVec,
    /// Name and help of every family registered at start-up.
    families: Vec<(String, String)>,
}

impl Metrics {
    /// `eunomia_events_lost_total` as it stands: (tracker, stage, events) for each series
    /// that has counted any.
    pub fn losses(&self) -> Vec<(String, String, u64)> {
        use prometheus::core::Collector;
        let mut out = Vec::new();
        for family in self.lost.collect() {
            for metric in family.get_metric() {
                let label = |name: &str| {
                    metric
                        .get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_string())
                        .unwrap_or_default()
                };
                let events = metric.get_counter().value() as u64;
                if events > 0 {
                    out.push((label("tracker"), label("stage"), events));
                }
            }
        }
        out.sort();
        out
    }

    pub fn new() -> Self {
        let registry = Registry::new();
        let events = IntCounterVec::new(
            Opts::new(
                "eunomia_events_total",
                "Events decoded from the kernel, per tracker",
            ),
            &["tracker"],
        )
        .expect("valid metric");
        let lost = IntCounterVec::new(
            Opts::new(
                "eunomia_events_lost_total",
                "Events lost, per tracker and the stage that lost them",
            ),
            &["tracker", "stage"],
        )
        .expect("valid metric");
        let sessions_active =
            IntGauge::new("eunomia_sessions_active", "Sessions running now").expect("valid metric");
        let sessions = IntCounterVec::new(
            Opts::new(
                "eunomia_sessions_total",
                "Sessions ended, per tracker and final status",
            ),
            &["tracker", "status"],
        )
        .expect("valid metric");
        let session_starts = IntCounterVec::new(
            Opts::new(
                "eunomia_sessions_started_total",
                "Sessions started, per tracker and instance: warm (loaded ahead, from the \
                 warm pool) or cold (loaded for the session)",
            ),
            &["tracker", "instance"],
        )
        .expect("valid metric");
        let handler_duration = Histogram::with_opts(
            HistogramOpts::new(
                "eunomia_handler_duration_seconds",
                "Time one event spends in a session's handler chain (sampled)",
            )
            .buckets(vec![
                1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 1e-3,
            ]),
        )
        .expect("valid metric");
        let sqlite_write_duration = Histogram::with_opts(
            HistogramOpts::new(
                "eunomia_sqlite_write_duration_seconds",
                "Time to write one batch of events to SQLite",
            )
            .buckets(vec![
                1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0,
            ]),
        )
        .expect("valid metric");
        let postgres_write_duration = Histogram::with_opts(
            HistogramOpts::new(
                "eunomia_postgres_write_duration_seconds",
                "Time to write one batch of events to PostgreSQL, when it is the store",
            )
            .buckets(vec![
                1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0,
            ]),
        )
        .expect("valid metric");
        let auth_refused = IntCounter::new(
            "eunomia_auth_refused_total",
            "Requests and websockets refused for missing or wrong credentials",
        )
        .expect("valid metric");
        let alerts = IntCounterVec::new(
            Opts::new(
                "eunomia_alerts_total",
                "Security alerts raised, per rule and severity",
            ),
            &["rule", "severity"],
        )
        .expect("valid metric");
        let rule_errors = IntCounterVec::new(
            Opts::new(
                "eunomia_rule_errors_total",
                "Rule conditions that failed to evaluate on an event, per rule",
            ),
            &["rule"],
        )
        .expect("valid metric");
        let kills = IntCounterVec::new(
            Opts::new(
                "eunomia_kills_total",
                "Processes killed by rules whose action is kill, per rule",
            ),
            &["rule"],
        )
        .expect("valid metric");
        let kill_latency = Histogram::with_opts(
            HistogramOpts::new(
                "eunomia_kill_latency_seconds",
                "From the kernel event to the kill signal sent, for rules whose action is kill",
            )
            .buckets(vec![
                1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5,
            ]),
        )
        .expect("valid metric");
        let guard_bpf_seconds = prometheus::Gauge::new(
            "eunomia_guard_bpf_seconds",
            "The standing guard's BPF programs' run time so far (bpf_stats)",
        )
        .expect("valid metric");
        let guard_cpu_seconds = prometheus::Gauge::new(
            "eunomia_guard_cpu_seconds",
            "CPU time of the standing guard's tracker threads so far",
        )
        .expect("valid metric");
        let guard_running =
            IntGauge::new("eunomia_guard_running", "1 while the standing guard runs")
                .expect("valid metric");
        let anomalies_unreported = IntCounter::new(
            "eunomia_anomalies_unreported_total",
            "Things outside a learned baseline not alerted: the baseline had raised as many \
             anomaly alerts as one may",
        )
        .expect("valid metric");
        let mut families = Vec::new();
        let series_dropped = IntCounterVec::new(
            Opts::new(
                "eunomia_metric_series_dropped_total",
                "Samples of session metrics counted under the labels `other`: the metric had \
                 as many label sets as one may",
            ),
            &["metric"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(events.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(series_dropped.clone()),
            Box::new(lost.clone()),
            Box::new(sessions_active.clone()),
            Box::new(sessions.clone()),
            Box::new(session_starts.clone()),
            Box::new(handler_duration.clone()),
            Box::new(sqlite_write_duration.clone()),
            Box::new(postgres_write_duration.clone()),
            Box::new(auth_refused.clone()),
            Box::new(alerts.clone()),
            Box::new(rule_errors.clone()),
            Box::new(kills.clone()),
            Box::new(kill_latency.clone()),
            Box::new(guard_bpf_seconds.clone()),
            Box::new(guard_cpu_seconds.clone()),
            Box::new(guard_running.clone()),
            Box::new(anomalies_unreported.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            for desc in collector.desc() {
                families.push((desc.fq_name.clone(), desc.help.clone()));
            }
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Self {
            registry,
            events,
            lost,
            sessions_active,
            sessions,
            session_starts,
            handler_duration,
            sqlite_write_duration,
            postgres_write_duration,
            auth_refused,
            alerts,
            rule_errors,
            kills,
            kill_latency,
            guard_bpf_seconds,
            guard_cpu_seconds,
            guard_running,
            anomalies_unreported,
            series_dropped,
            families,
        }
    }

    /// The name and help of every family the server registers at start-up, whether or not
    /// it has samples yet.
    pub fn families(&self) -> &[(String, String)] {
        &self.families
    }

    /// The registry `/metrics` renders: session metrics join and leave it.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format, for `/metrics`.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
