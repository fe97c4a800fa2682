//! The seed's Prometheus exporter for tracker data: the metrics a session declares (a
//! counter, gauge or histogram over its events, by labels it chooses) are exported at
//! `/metrics` as `eunomia_session_<name>`, with a `session` label holding the session's
//! label (or id), while it runs and for a while after it ends.
//!
//! Each session's metrics are collectors of their own, registered in the server's
//! registry with `session` as a constant label: two sessions may export one name (with the
//! same labels), and a session's series go away whole when it is unregistered. Label sets
//! are bounded per metric: past the cap, samples go to one series whose labels all read
//! `other`, and `eunomia_metric_series_dropped_total{metric}` counts them.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use prometheus::core::Collector;
use prometheus::{
    Counter, CounterVec, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, Opts,
    Registry,
};

mod standing;

pub use crate::config::{MetricKind, MetricSpec};
pub use standing::{default_exporters, StandingExporters};

use crate::handler::{Flow, Handler};
use crate::metrics::Metrics;
use crate::model::{FieldFormat, FieldType, Record, TrackerInfo, Value};

/// The label value of samples past a metric's cap on label sets.
pub const OTHER: &str = "other";
/// Session metrics' names start with this.
pub const SESSION_PREFIX: &str = "eunomia_session_";
/// Standing exporters' names start with this.
pub const STANDING_PREFIX: &str = "eunomia_exporter_";

#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error("metric name `{0}` must be 1 to 64 of [a-zA-Z0-9_], not starting with a digit")]
    BadName(String),
    #[error("metric `{metric}`: the {tracker} tracker has no field `{field}`")]
    UnknownField {
        metric: String,
        tracker: &'static str,
        field: String,
    },
    #[error("metric `{metric}`: {reason}")]
    Invalid { metric: String, reason: String },
    #[error("metric `{metric}`: {source}")]
    Registry {
        metric: String,
        source: prometheus::Error,
    },
}

/// Checks what a session asks to export against its tracker's catalog.
pub fn check(info: &TrackerInfo, specs: &[MetricSpec]) -> Result<(), ExporterError> {
    let mut names = HashSet::new();
    for spec in specs {
        let name = &spec.name;
        let valid = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ExporterError::BadName(name.clone()));
        }
        let invalid = |reason: String| ExporterError::Invalid {
            metric: name.clone(),
            reason,
        };
        let field_type = |field: &str| {
            info.all_fields()
                .find(|f| f.name == field)
                .map(|f| f.ty)
                .ok_or_else(|| ExporterError::UnknownField {
                    metric: name.clone(),
                    tracker: info.name,
                    field: field.to_string(),
                })
        };
        if !names.insert(name) {
            return Err(invalid("declared twice".into()));
        }
        for label in &spec.labels {
            field_type(label)?;
        }
        if spec.labels.iter().collect::<HashSet<_>>().len() != spec.labels.len() {
            return Err(invalid("a label given twice".into()));
        }
        match (&spec.field, spec.kind) {
            (Some(field), _) => {
                if !matches!(field_type(field)?, FieldType::U64 | FieldType::I64) {
                    return Err(invalid(format!("field `{field}` is not a number")));
                }
            }
            (None, MetricKind::Counter) => {}
            (None, kind) => return Err(invalid(format!("a {kind:?} needs a numeric `field`"))),
        }
        if let Some(buckets) = &spec.buckets {
            if spec.kind != MetricKind::Histogram {
                return Err(invalid("buckets are for histograms".into()));
            }
            let ascending = buckets.windows(2).all(|w| w[0] < w[1]);
            if buckets.is_empty() || !ascending || buckets.iter().any(|b| !b.is_finite()) {
                return Err(invalid("buckets must be finite and ascending".into()));
            }
        }
    }
    Ok(())
}

enum Vector {
    Counter(CounterVec),
    Gauge(GaugeVec),
    Histogram(HistogramVec),
}

/// One series of a metric: updated without the vector's lock and label hashing.
enum Child {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

impl Vector {
    fn child(&self, values: &[&str]) -> Child {
        match self {
            Vector::Counter(v) => Child::Counter(v.with_label_values(values)),
            Vector::Gauge(v) => Child::Gauge(v.with_label_values(values)),
            Vector::Histogram(v) => Child::Histogram(v.with_label_values(values)),
        }
    }

    fn collector(&self) -> Box<dyn Collector> {
        match self {
            Vector::Counter(v) => Box::new(v.clone()),
            Vector::Gauge(v) => Box::new(v.clone()),
            Vector::Histogram(v) => Box::new(v.clone()),
        }
    }
}

/// One exported metric's state on the session's handler chain.
struct Exported {
    spec: MetricSpec,
    /// Multiplies the field: durations (nanoseconds in the catalog) are exported in
    /// seconds, Prometheus's base unit.
    scale: f64,
    vector: Vector,
    /// Label sets given a series of their own so far (at most `max_series`).
    series: HashMap<Vec<String>, Child>,
    /// The series whose labels all read `other`, once the cap is reached.
    other: Option<Child>,
    dropped: IntCounter,
}

/// A session's metrics, registered until [`unregister`](Self::unregister).
pub struct SessionExport {
    registry: Registry,
    collectors: Vec<Box<dyn Collector>>,
}

impl SessionExport {
    /// Removes the session's series from `/metrics`.
    pub fn unregister(self) {
        for collector in self.collectors {
            let _ = self.registry.unregister(collector);
        }
    }
}

/// The chain handler that feeds a session's metrics.
pub struct ExportHandler {
    info: &'static TrackerInfo,
    metrics: Vec<Exported>,
    max_series: usize,
    /// Buffers for the label values of the event at hand, kept from event to event.
    labels: Vec<String>,
}

/// The name `spec` is exported under: counters end in `_total`, as Prometheus's
/// conventions (and promtool) want.
pub fn exported_name(prefix: &str, spec: &MetricSpec) -> String {
    let total = spec.kind == MetricKind::Counter && !spec.name.ends_with("_total");
    format!("{prefix}{}{}", spec.name, if total { "_total" } else { "" })
}

/// Where a set of metrics is exported: names start with `prefix`, and `session` (when
/// given) is a constant label.
pub struct Export<'a> {
    pub prefix: &'static str,
    pub session: Option<&'a str>,
    pub max_series: usize,
}

/// Registers a session's (or a standing exporter's) metrics, checked with [`check`]; a
/// name exported elsewhere with other labels, or already under this session label, is
/// an error and nothing is registered.
pub fn register(
    metrics: &Metrics,
    info: &'static TrackerInfo,
    export_as: &Export<'_>,
    specs: &[MetricSpec],
) -> Result<(SessionExport, ExportHandler), ExporterError> {
    check(info, specs)?;
    let registry = metrics.registry().clone();
    let mut export = SessionExport {
        registry: registry.clone(),
        collectors: Vec::new(),
    };
    let mut exported = Vec::new();
    for spec in specs {
        let name = exported_name(export_as.prefix, spec);
        let scale = match spec.field.as_deref().map(|f| info.format_of(f)) {
            Some(FieldFormat::Duration) => 1e-9,
            _ => 1.0,
        };
        let help = format!(
            "{:?} of the {} tracker's {}",
            spec.kind,
            info.name,
            spec.field.as_deref().unwrap_or("events")
        );
        let mut opts = Opts::new(&name, &help);
        if let Some(session) = export_as.session {
            opts = opts.const_label("session", session);
        }
        let labels: Vec<&str> = spec.labels.iter().map(String::as_str).collect();
        let vector = match spec.kind {
            MetricKind::Counter => CounterVec::new(opts, &labels).map(Vector::Counter),
            MetricKind::Gauge => GaugeVec::new(opts, &labels).map(Vector::Gauge),
            MetricKind::Histogram => {
                let mut opts = HistogramOpts::from(opts);
                if let Some(buckets) = &spec.buckets {
                    opts = opts.buckets(buckets.clone());
                }
                HistogramVec::new(opts, &labels).map(Vector::Histogram)
            }
        };
        let registered = vector.and_then(|vector| {
            registry.register(vector.collector())?;
            Ok(vector)
        });
        let vector = match registered {
            Ok(vector) => vector,
            Err(source) => {
                export.unregister();
                return Err(ExporterError::Registry {
                    metric: spec.name.clone(),
                    source,
                });
            }
        };
        export.collectors.push(vector.collector());
        exported.push(Exported {
            spec: spec.clone(),
            scale,
            vector,
            series: HashMap::new(),
            other: None,
            dropped: metrics.series_dropped.with_label_values(&[&name]),
        });
    }
    let labels = specs.iter().map(|s| s.labels.len()).max().unwrap_or(0);
    let handler = ExportHandler {
        info,
        metrics: exported,
        max_series: export_as.max_series,
        labels: vec![String::new(); labels],
    };
    Ok((export, handler))
}

impl<R: Record> Handler<R> for ExportHandler {
    fn handle(&mut self, event: &R) -> Flow {
        for metric in &mut self.metrics {
            let count = metric.spec.labels.len();
            // The label values, written into buffers kept from event to event.
            for (buffer, label) in self.labels.iter_mut().zip(&metric.spec.labels) {
                buffer.clear();
                if let Some(value) = event.get(label) {
                    let _ = write!(buffer, "{value}");
                }
            }
            let key = &self.labels[..count];
            let child = if metric.series.contains_key(key) {
                &metric.series[key]
            } else if metric.series.len() < self.max_series {
                let values: Vec<&str> = key.iter().map(String::as_str).collect();
                let child = metric.vector.child(&values);
                metric.series.entry(key.to_vec()).or_insert(child)
            } else {
                metric.dropped.inc();
                let vector = &metric.vector;
                metric
                    .other
                    .get_or_insert_with(|| vector.child(&vec![OTHER; count]))
            };
            let measure = metric
                .spec
                .field
                .as_deref()
                .and_then(|f| event.get(f))
                .as_ref()
                .and_then(Value::as_f64)
                .map(|m| m * metric.scale);
            match child {
                Child::Counter(c) => c.inc_by(match &metric.spec.field {
                    None => self.info.weight_of(event) as f64,
                    Some(_) => measure.filter(|m| *m >= 0.0).unwrap_or(0.0),
                }),
                Child::Gauge(g) => measure.into_iter().for_each(|m| g.set(m)),
                Child::Histogram(h) => measure.into_iter().for_each(|m| h.observe(m)),
            }
        }
        Flow::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trackers::find_tracker;

    fn spec(name: &str, kind: MetricKind, field: Option<&str>, labels: &[&str]) -> MetricSpec {
        MetricSpec {
            name: name.into(),
            kind,
            field: field.map(Into::into),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            buckets: None,
        }
    }

    #[test]
    fn declarations_are_checked_against_the_catalog() {
        let info = find_tracker("process").unwrap().info();
        let ok = [
            spec(
                "execs",
                MetricKind::Counter,
                None,
                &["kind", "comm", "container"],
            ),
            spec("lifetimes", MetricKind::Histogram, Some("duration_ns"), &[]),
        ];
        check(info, &ok).unwrap();
        let err = |specs: &[MetricSpec]| check(info, specs).unwrap_err().to_string();
        assert_eq!(
            err(&[spec("9x", MetricKind::Counter, None, &[])]),
            "metric name `9x` must be 1 to 64 of [a-zA-Z0-9_], not starting with a digit"
        );
        assert_eq!(
            err(&[spec("x", MetricKind::Counter, None, &["nope"])]),
            "metric `x`: the process tracker has no field `nope`"
        );
        assert_eq!(
            err(&[spec("x", MetricKind::Gauge, Some("comm"), &[])]),
            "metric `x`: field `comm` is not a number"
        );
        assert!(err(&[spec("x", MetricKind::Histogram, None, &[])]).contains("needs a numeric"));
        assert!(err(&[ok[0].clone(), ok[0].clone()]).contains("declared twice"));
        let mut bad_buckets = ok[1].clone();
        bad_buckets.buckets = Some(vec![2.0, 1.0]);
        assert!(err(&[bad_buckets]).contains("ascending"));
    }
}
