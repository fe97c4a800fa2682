//! The warm pool: for each tracker the server keeps warm, one instance loaded and verified
//! ahead of its session, its programs not attached. A session whose configuration fits it
//! (the same options and ring buffer; filters are written after load) claims it, and its
//! start costs attaching the programs instead of libbpf's load and the kernel's verifier.
//! Each start then loads the tracker's next warm instance in the background, with that
//! session's configuration, so that the next session like it starts warm too; with the
//! defaults instead when that session's ring buffer is larger than theirs, since a warm
//! instance's ring buffer is locked kernel memory outside the sessions' budget.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{find_tracker, AnyTracker, Event};
use crate::engine::{Counters, Preloaded, TrackerConfig, TrackerError, TrackerHandle};
use crate::handler::Handler;

pub struct WarmPool {
    /// The trackers kept warm.
    trackers: Vec<&'static dyn AnyTracker>,
    /// Each one's instance, unless a session has just claimed it.
    instances: Mutex<HashMap<&'static str, Preloaded<Event>>>,
}

/// How a session's instance was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// It claimed the warm instance.
    Warm,
    /// It loaded its own.
    Cold,
}

impl Start {
    pub fn label(self) -> &'static str {
        match self {
            Start::Warm => "warm",
            Start::Cold => "cold",
        }
    }
}

impl WarmPool {
    /// Keeps the trackers `names` warm, each first with its default configuration; fails
    /// on a name that is no tracker's or one that cannot load before its filters are known.
    pub fn new(names: &[String]) -> Result<Self, TrackerError> {
        let mut trackers: Vec<&'static dyn AnyTracker> = Vec::new();
        for name in names {
            let tracker = find_tracker(name)?;
            if !tracker.preloads() {
                return Err(TrackerError::Config(format!(
                    "tracker `{name}` cannot be kept warm: loading it needs its session's filters"
                )));
            }
            if !trackers
                .iter()
                .any(|t| t.info().name == tracker.info().name)
            {
                trackers.push(tracker);
            }
        }
        let pool = Self {
            trackers,
            instances: Mutex::new(HashMap::new()),
        };
        for tracker in &pool.trackers {
            pool.refill(*tracker, TrackerConfig::default());
        }
        Ok(pool)
    }

    /// Starts an instance of `tracker` for a session with `config` feeding `chain`: the
    /// warm one when it fits, else one of its own (a warm one that does not fit is
    /// unloaded, and the next is loaded with this configuration). Returns once the
    /// programs are attached, as [`AnyTracker::start`] does.
    pub fn start(
        &self,
        tracker: &'static dyn AnyTracker,
        config: TrackerConfig,
        chain: Box<dyn Handler<Event>>,
        counters: Arc<Counters>,
    ) -> Result<(TrackerHandle, Start), TrackerError> {
        let name = tracker.info().name;
        let warm = self
            .instances
            .lock()
            .remove(name)
            .filter(|instance| instance.fits(&config));
        let key = config.load_key();
        // Its ring buffer sits idle, outside the sessions' budget: no larger than a
        // default session's.
        let next = if key.ringbuf_bytes <= TrackerConfig::default().ringbuf_bytes {
            key
        } else {
            TrackerConfig::default()
        };
        let started = match warm {
            Some(instance) => instance
                .start(config, chain, counters)
                .map(|handle| (handle, Start::Warm)),
            None => tracker
                .start(config, chain, counters)
                .map(|handle| (handle, Start::Cold)),
        };
        // After the start, so that the next load does not slow this one's attach; a
        // configuration that failed to start would fail to load again.
        if started.is_ok() && self.trackers.iter().any(|t| t.info().name == name) {
            self.refill(tracker, next);
        }
        started
    }

    /// Loads `tracker`'s next warm instance with `config` (filters are not part of it).
    fn refill(&self, tracker: &'static dyn AnyTracker, config: TrackerConfig) {
        let name = tracker.info().name;
        match tracker.preload(config) {
            // Any instance loaded meanwhile (by a parallel start) is unloaded.
            Ok(instance) => drop(self.instances.lock().insert(name, instance)),
            Err(err) => tracing::warn!(tracker = name, "no warm instance: {err}"),
        }
    }
}
