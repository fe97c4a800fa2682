//! The server's standing guard: at most one, started from the config (`[guard]`) or by
//! startGuard, and kept in SQLite while it runs so that a restarted server starts it
//! again; stopGuard stops it. Its alerts go to the same writer as sessions' alerts, and
//! its cost reaches /metrics every few seconds.

use std::sync::Arc;
use std::time::Duration;

use super::alerts::Alerts;
use super::baseline::{self, ActiveBaselines};
use super::guard::{Guard, GuardCost, GuardError};
use super::rules::RuleSet;
use crate::container::ContainerManager;
use crate::metrics::Metrics;
use crate::model::wall_clock_ns;
use crate::results::store::{Store, StoreError};

/// How often the guard's cost is written into the metrics.
const METER_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StandingError {
    #[error("the guard runs already (rules {0}); stop it first")]
    Running(String),
    #[error("{0}")]
    UnknownRule(String),
    #[error(transparent)]
    Guard(#[from] GuardError),
    #[error("the guard did not start: {0}")]
    Panicked(String),
}

/// What the guard is doing and what it has cost.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GuardStatus {
    pub running: bool,
    /// The rule ids it runs, and the trackers they read.
    pub rules: Vec<String>,
    pub trackers: Vec<String>,
    /// Ids of the learned baselines it enforces.
    pub baselines: Vec<i64>,
    pub started_ns: Option<u64>,
    pub events_seen: u64,
    pub events_lost: u64,
    pub cost: GuardCost,
    /// A tracker that stopped on its own: the guard no longer sees its events.
    pub failed_tracker: Option<String>,
}

struct Running {
    guard: Guard,
    started_ns: u64,
    /// What it was started with, to start it again with baselines.
    set: Arc<RuleSet>,
    selection: Vec<String>,
}

pub struct StandingGuard {
    running: parking_lot::Mutex<Option<Running>>,
    /// Serializes starts and stops, which take a while (loading programs, detaching).
    changing: tokio::sync::Mutex<()>,
    store: Arc<Store>,
    alerts: Arc<Alerts>,
    containers: Arc<ContainerManager>,
    metrics: Metrics,
    baselines: Arc<ActiveBaselines>,
}

impl StandingGuard {
    pub fn new(
        store: Arc<Store>,
        alerts: Arc<Alerts>,
        containers: Arc<ContainerManager>,
        metrics: Metrics,
    ) -> Arc<Self> {
        let guard = Arc::new(Self {
            running: parking_lot::Mutex::new(None),
            changing: tokio::sync::Mutex::new(()),
            store,
            alerts,
            containers,
            metrics,
            baselines: Arc::default(),
        });
        guard.spawn_meter();
        guard
    }

    /// Starts the guard on the rules of `set` that `selection` names (`*`: all), and the
    /// learned baselines.
    pub async fn start(
        &self,
        set: Arc<RuleSet>,
        selection: Vec<String>,
    ) -> Result<GuardStatus, StandingError> {
        let _changing = self.changing.lock().await;
        if let Some(running) = self.running.lock().as_ref() {
            return Err(StandingError::Running(running.guard.rules().join(", ")));
        }
        self.start_locked(set, selection).await?;
        Ok(self.status())
    }

    /// Starts the guard; the caller holds `changing` and knows that none runs.
    async fn start_locked(
        &self,
        set: Arc<RuleSet>,
        selection: Vec<String>,
    ) -> Result<(), StandingError> {
        let rules = set.select(&selection).map_err(StandingError::UnknownRule)?;
        let (sink, containers, metrics, baselines, from) = (
            self.alerts.sender(),
            self.containers.clone(),
            self.metrics.clone(),
            self.baselines.clone(),
            set.clone(),
        );
        // Loading the programs blocks for a while: off the async workers.
        let guard = tokio::task::spawn_blocking(move || {
            Guard::start(&from, &rules, baselines, sink, containers, metrics)
        })
        .await
        .map_err(|e| StandingError::Panicked(e.to_string()))??;
        let started_ns = wall_clock_ns();
        if let Err(err) = self.store.save_guard(&selection, started_ns).await {
            tracing::warn!("the guard runs, but a restarted server will not know it: {err}");
        }
        tracing::info!(rules = ?guard.rules(), trackers = ?guard.trackers(), "guard started");
        *self.running.lock() = Some(Running {
            guard,
            started_ns,
            set,
            selection,
        });
        self.metrics.guard_running.set(1);
        Ok(())
    }

    /// The baselines the guard enforces (learning adds to them).
    pub fn baselines(&self) -> &Arc<ActiveBaselines> {
        &self.baselines
    }

    /// A baseline became ready: a running guard without the trackers baselines read is
    /// started again with them (its rules' events are not watched for the moment this
    /// takes, under a second).
    pub async fn enforce_baselines(&self) {
        let _changing = self.changing.lock().await;
        let restart = {
            let mut running = self.running.lock();
            let lacks = running.as_ref().is_some_and(|r| {
                let trackers = r.guard.trackers();
                !baseline::TRACKERS.iter().all(|t| trackers.contains(t))
            });
            if lacks {
                running.take()
            } else {
                None
            }
        };
        let Some(Running {
            guard,
            set,
            selection,
            ..
        }) = restart
        else {
            return;
        };
        tracing::info!("the guard starts again to enforce learned baselines");
        if let Err(err) = tokio::task::spawn_blocking(move || guard.stop()).await {
            tracing::warn!("guard stop panicked: {err}");
        }
        if let Err(err) = self.start_locked(set, selection).await {
            self.metrics.guard_running.set(0);
            tracing::error!("the guard did not start again with the baselines: {err}");
        }
    }

    /// Stops the guard, if it runs; its trackers drain what they hold through the rules.
    pub async fn stop(&self) -> Result<GuardStatus, StoreError> {
        let _changing = self.changing.lock().await;
        let running = self.running.lock().take();
        self.store.clear_guard().await?;
        if let Some(running) = running {
            let stopped = tokio::task::spawn_blocking(move || running.guard.stop()).await;
            match stopped {
                Ok(Ok(stats)) => tracing::info!(?stats, "guard stopped"),
                Ok(Err(err)) => tracing::warn!("guard stopped with an error: {err}"),
                Err(err) => tracing::warn!("guard stop panicked: {err}"),
            }
        }
        self.metrics.guard_running.set(0);
        Ok(self.status())
    }

    pub fn status(&self) -> GuardStatus {
        let running = self.running.lock();
        let Some(Running {
            guard, started_ns, ..
        }) = running.as_ref()
        else {
            return GuardStatus::default();
        };
        let stats = guard.stats();
        GuardStatus {
            running: true,
            rules: guard.rules().to_vec(),
            trackers: guard.trackers().into_iter().map(String::from).collect(),
            baselines: guard.baselines(),
            started_ns: Some(*started_ns),
            events_seen: stats.seen,
            events_lost: stats.lost(),
            cost: guard.cost(),
            failed_tracker: guard.failed_tracker().map(String::from),
        }
    }

    /// At server start: the configured guard, or else the one that ran when the server
    /// stopped. A guard that cannot start is logged; the server runs on without it.
    pub async fn restore(&self, set: Arc<RuleSet>, configured: Option<Vec<String>>) {
        let selection = match configured {
            Some(rules) => Some(rules),
            None => match self.store.saved_guard().await {
                Ok(saved) => saved,
                Err(err) => {
                    tracing::error!("reading the guard's saved state: {err}");
                    None
                }
            },
        };
        if let Some(selection) = selection {
            if let Err(err) = self.start(set, selection).await {
                tracing::error!("the standing guard did not start: {err}");
            }
        }
    }

    /// Writes the guard's cost into the metrics every few seconds, while the server runs.
    fn spawn_meter(self: &Arc<Self>) {
        let guard = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(METER_EVERY);
            loop {
                tick.tick().await;
                let Some(guard) = guard.upgrade() else {
                    return;
                };
                let status = guard.status();
                let metrics = &guard.metrics;
                metrics.guard_running.set(i64::from(status.running));
                if status.running {
                    let cost = status.cost;
                    metrics
                        .guard_bpf_seconds
                        .set(cost.bpf_run_time.as_secs_f64());
                    metrics.guard_cpu_seconds.set(cost.cpu_time.as_secs_f64());
                }
            }
        });
    }
}
