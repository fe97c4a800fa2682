//! Standing exporters: trackers run from start-up (as the standing guard is) only to feed
//! metrics, exported as `eunomia_exporter_<name>`: those `[[exporters]]` configures, and
//! with `[metrics] default_exporters` a built-in set per container.

use std::sync::Arc;

use super::{register, Export, ExporterError, SessionExport, STANDING_PREFIX};
use crate::config::{ExporterConfig, MetricKind, MetricSpec};
use crate::container::{ContainerManager, Enrich};
use crate::engine::{Counters, TrackerConfig, TrackerError, TrackerHandle};
use crate::metrics::Metrics;
use crate::trackers::find_tracker;

#[derive(Debug, thiserror::Error)]
pub enum StandingError {
    #[error("exporter of the {tracker} tracker: {source}")]
    Metrics {
        tracker: String,
        source: ExporterError,
    },
    #[error("exporter of the {tracker} tracker: {source}")]
    Tracker {
        tracker: String,
        source: TrackerError,
    },
}

/// The running standing exporters; their trackers stop when this is dropped.
pub struct StandingExporters {
    running: Vec<(TrackerHandle, SessionExport)>,
}

impl StandingExporters {
    /// Checks every exporter (tracker, options, metrics), then starts each: all or none.
    pub fn start(
        configs: &[ExporterConfig],
        metrics: &Metrics,
        containers: &Arc<ContainerManager>,
        max_series: usize,
    ) -> Result<Self, StandingError> {
        let mut running = Vec::new();
        for exporter in configs {
            let failed = |source| StandingError::Tracker {
                tracker: exporter.tracker.clone(),
                source,
            };
            let tracker = find_tracker(&exporter.tracker).map_err(failed)?;
            let config = TrackerConfig {
                exclude_pid: Some(std::process::id()),
                options: exporter.options.clone(),
                ..TrackerConfig::default()
            };
            tracker.check(&config).map_err(failed)?;
            let export_as = Export {
                prefix: STANDING_PREFIX,
                session: None,
                max_series,
            };
            let (export, handler) =
                register(metrics, tracker.info(), &export_as, &exporter.metrics).map_err(
                    |source| StandingError::Metrics {
                        tracker: exporter.tracker.clone(),
                        source,
                    },
                )?;
            let chain = Box::new(Enrich::new(containers.clone(), handler));
            match tracker.start(config, chain, Arc::new(Counters::default())) {
                Ok(handle) => running.push((handle, export)),
                Err(err) => {
                    export.unregister();
                    return Err(failed(err));
                }
            }
        }
        Ok(Self { running })
    }

    /// How many exporters run.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }
}

fn counter(name: &str, field: Option<&str>, labels: &[&str]) -> MetricSpec {
    MetricSpec {
        name: name.to_string(),
        kind: MetricKind::Counter,
        field: field.map(str::to_string),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        buckets: None,
    }
}

/// The built-in set: per container, process starts and exits, TCP connections (by
/// kind) and bytes, file bytes, syscall errors. Host processes have no container label.
pub fn default_exporters() -> Vec<ExporterConfig> {
    let exporter = |tracker: &str, metrics: Vec<MetricSpec>| ExporterConfig {
        tracker: tracker.to_string(),
        options: serde_json::Map::new(),
        metrics,
    };
    vec![
        exporter(
            "process",
            vec![counter(
                "container_process_events",
                None,
                &["container", "kind"],
            )],
        ),
        exporter(
            "tcp",
            vec![
                counter("container_tcp_events", None, &["container", "kind"]),
                counter(
                    "container_tcp_sent_bytes",
                    Some("bytes_sent"),
                    &["container"],
                ),
                counter(
                    "container_tcp_received_bytes",
                    Some("bytes_received"),
                    &["container"],
                ),
            ],
        ),
        exporter(
            "files",
            vec![
                counter(
                    "container_file_read_bytes",
                    Some("read_bytes"),
                    &["container"],
                ),
                counter(
                    "container_file_written_bytes",
                    Some("write_bytes"),
                    &["container"],
                ),
            ],
        ),
        exporter(
            "syscall",
            vec![counter(
                "container_syscall_errors",
                Some("errors"),
                &["container"],
            )],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_fits_the_catalog() {
        for exporter in default_exporters() {
            let info = find_tracker(&exporter.tracker).unwrap().info();
            super::super::check(info, &exporter.metrics).unwrap();
        }
    }
}
