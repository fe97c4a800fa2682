//! Sessions: one tracker instance + its filter + its config + its handler chain + its time
//! window. A session always ends (deadline, stopSession, server shutdown), and then no BPF
//! program of it remains, its status and counts are final, and its results stay queryable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::{broadcast, Notify, OnceCell, OwnedSemaphorePermit, Semaphore};

use crate::config::Config;
use crate::container::{ContainerManager, ContainerSelector, Enrich, ResolveError};
use crate::engine::{Counters, Stats, TrackerConfig, TrackerError, TrackerHandle};
use crate::exporter::{self, ExporterError, MetricSpec, SessionExport};
use crate::handler::{FanOut, Flow, Handler, Predicate};
use crate::metrics::{stage, Metrics};
use crate::model::{wall_clock_ns, SessionId, TrackerInfo};
use crate::results::memory::{MemoryLimits, MemoryStore};
use crate::results::query::StoredEvent;
use crate::results::store::{SessionRecord, SessionStatus, Store, StoreError, StoreKind};
use crate::results::SessionResults;
use crate::security::{
    AlertOptions, Alerts, Baselines, GuardStatus, Rule, RuleError, RuleMatcher, RuleSet,
    StandingError, StandingGuard,
};
use crate::trackers::warm::WarmPool;
use crate::trackers::{find_tracker, AnyTracker, Event};

/// Live events a slow subscriber may fall behind by before it loses some (counted).
const LIVE_CAPACITY: usize = 4096;
/// Most events a second a session's live subscribers get together (see [`LiveSink`]): a
/// person reads far fewer, and the console stays responsive at this rate.
const LIVE_RATE: u64 = 10_000;
const LIVE_WINDOWS_PER_SEC: u64 = 10;
const LIVE_WINDOW: Duration = Duration::from_millis(1000 / LIVE_WINDOWS_PER_SEC);
/// How long a replay waits for a SQLITE sink to hand over the events before it (the
/// engine flushes it after every poll of the ring buffer, 50 ms at most), and how often it
/// looks.
const HANDED_WAIT: Duration = Duration::from_secs(10);
const HANDED_POLL: Duration = Duration::from_millis(5);
/// How often running sessions publish their counts.
const UPDATE_INTERVAL: Duration = Duration::from_secs(1);
/// How often final records the store refused are offered to it again.
const UNSAVED_RETRY: Duration = Duration::from_secs(1);
/// One event in this many is timed for the handler-duration histogram.
const TIMING_SAMPLE: u64 = 64;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("unknown tracker `{name}`; known trackers: {known}")]
    UnknownTracker { name: String, known: String },
    #[error("durationSecs must be between 1 and {max}, got {got}")]
    BadDuration { got: i64, max: u64 },
    #[error("invalid config: {0}")]
    BadConfig(String),
    #[error("invalid filter: {0}")]
    BadFilter(String),
    #[error(transparent)]
    BadMetrics(#[from] ExporterError),
    #[error(transparent)]
    Container(#[from] ResolveError),
    #[error("no session with id `{0}`")]
    NotFound(SessionId),
    #[error("session `{0}` is still running; stop it first")]
    StillRunning(SessionId),
    #[error(
        "session `{0}` has ended, but the store has not taken its final record yet; try again"
    )]
    NotSaved(SessionId),
    #[error("{running} sessions are running, the configured maximum")]
    TooManySessions { running: usize },
    #[error("the tracker could not start: {0}")]
    TrackerFailed(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("the session's saved results cannot be read: {0}")]
    Snapshot(String),
    #[error("session `{0}` did not hand its events to the store within {1:?}")]
    StoreBehind(SessionId, Duration),
    #[error(transparent)]
    Rules(#[from] RuleError),
    #[error("{0}")]
    UnknownRule(String),
    #[error(transparent)]
    Guard(#[from] StandingError),
}

/// What startSession asks for, checked. Serialized as a fleet session's request, which
/// every node of the fleet starts.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StartRequest {
    pub tracker: String,
    pub duration_secs: i64,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub cgroup_id: Option<u64>,
    /// A running container's name, id or id prefix: its cgroups are filtered in the
    /// kernel, and its new ones after a restart.
    pub container: Option<String>,
    /// Containers of this name, running or created during the session.
    pub container_name: Option<String>,
    /// Containers of this image, running or created during the session.
    pub image: Option<String>,
    /// Tracker configuration as JSON (keys of [`TrackerConfig`] other than the filter).
    pub config: Option<serde_json::Value>,
    pub store: StoreKind,
    pub label: Option<String>,
    /// Trace the server's own process too; left out by default, where its threads would
    /// report their own work (polling, storing) among the results.
    pub include_self: bool,
    /// Detection rules to run on the session's events, by id (`*`: all).
    pub rules: Vec<String>,
    /// Metrics to export from the session's events.
    pub metrics: Vec<MetricSpec>,
}

/// A running session's live parts.
struct Running {
    record: Mutex<SessionRecord>,
    counters: Arc<Counters>,
    tracker: Mutex<Option<TrackerHandle>>,
    memory: Option<Arc<MemoryStore>>,
    live: broadcast::Sender<Arc<LiveEvent>>,
    live_filters: Arc<LiveFilters>,
    /// The number of the last event the chain saw (events are numbered 1, 2, 3 ...).
    numbered: Arc<AtomicI64>,
    /// For a SQLITE session, the number of the last event its sink handed to the writer
    /// or counted lost.
    handed: Option<Arc<AtomicI64>>,
    stop: Arc<Notify>,
    /// Why storing its events failed, set by the store's writer: the session then ends
    /// FAILED with this text.
    store_failure: Arc<Mutex<Option<String>>>,
    /// The final record: every caller that ends the session gets this one, and only the
    /// first does the work.
    ended: OnceCell<SessionRecord>,
    /// Its exported metrics, removed from /metrics a while after it ends.
    export: Mutex<Option<SessionExport>>,
    /// Its place among `max_concurrent` and its ring buffer budget, given back when it
    /// has ended.
    reservation: Mutex<Option<Reservation>>,
}

/// What a session holds of the server's limits while it runs; dropping it gives it back.
struct Reservation {
    _slot: OwnedSemaphorePermit,
    ringbuf_bytes: u64,
    ringbuf_in_use: Arc<AtomicU64>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.ringbuf_in_use
            .fetch_sub(self.ringbuf_bytes, Ordering::Relaxed);
    }
}

pub struct SessionManager {
    /// Shared with the results of its SQLITE sessions.
    store: Arc<Store>,
    metrics: Metrics,
    config: Arc<Config>,
    containers: Arc<ContainerManager>,
    running: DashMap<SessionId, Arc<Running>>,
    /// Sessions whose row is stored (as RUNNING) while their tracker still loads and
    /// attaches: readers see them STARTING, so that nobody acts on a session that cannot
    /// see events yet.
    starting: DashMap<SessionId, ()>,
    /// Places for running sessions: taken before a session starts, so that parallel starts
    /// cannot exceed `max_concurrent`.
    slots: Arc<Semaphore>,
    /// Ring buffer bytes the running sessions hold, within `ringbuf_budget_bytes`.
    ringbuf_in_use: Arc<AtomicU64>,
    /// Final records the store could not save yet (a full disk): they are what readers see,
    /// and are saved again until the store takes them.
    unsaved: DashMap<SessionId, SessionRecord>,
    /// Memory stores of ended sessions, restored from their snapshot on first use.
    ended_memory: DashMap<SessionId, Arc<MemoryStore>>,
    updates: broadcast::Sender<SessionRecord>,
    started: Instant,
    /// The loaded detection rules; a reload swaps in a new set for sessions that start
    /// after it.
    rules: parking_lot::RwLock<Arc<RuleSet>>,
    alerts: Arc<Alerts>,
    guard: Arc<StandingGuard>,
    baselines: Arc<Baselines>,
    warm: WarmPool,
}

/// An event as live subscribers get it: numbered in the session, not yet turned into JSON.
pub struct LiveEvent {
    pub id: i64,
    pub event: Event,
    rendered: OnceLock<StoredEvent>,
}

impl LiveEvent {
    /// The view subscribers send: built by the first subscriber's task that needs it, once
    /// for all of them, and never on the tracker thread.
    pub fn stored(&self) -> StoredEvent {
        self.rendered
            .get_or_init(|| StoredEvent::from_event(self.id, &self.event))
            .clone()
    }
}

/// What each live subscriber asked for. The sample takes only events some subscriber
/// wants, so that a rare match (a failed open among a million calls) is not sampled away
/// among events nobody asked for.
#[derive(Default)]
pub struct LiveFilters {
    next: AtomicU64,
    wanted: std::sync::RwLock<HashMap<u64, Arc<[Predicate]>>>,
}

impl LiveFilters {
    fn wanted(&self, event: &Event) -> bool {
        let wanted = self.wanted.read().unwrap_or_else(PoisonError::into_inner);
        // Empty while a subscriber is between subscribing and registering: keep all.
        wanted.is_empty()
            || wanted
                .values()
                .any(|all| all.iter().all(|p| p.matches(event)))
    }

    fn register(self: &Arc<Self>, filter: Arc<[Predicate]>) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.wanted
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, filter);
        Registration {
            filters: self.clone(),
            id,
        }
    }
}

/// A subscriber's filter, in [`LiveFilters`] while this lives.
pub struct Registration {
    filters: Arc<LiveFilters>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.filters
            .wanted
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// A live subscription: the events, the filter they must meet (the channel carries every
/// subscriber's), and its registration.
pub struct LiveSubscription {
    pub receiver: broadcast::Receiver<Arc<LiveEvent>>,
    pub filter: Arc<[Predicate]>,
    pub registration: Registration,
    /// Events numbered up to this may have passed before the subscription; those after
    /// reach it live (but for the sample's and a slow reader's counted losses). A replay
    /// of the stored events through this number, then the live ones above it, misses none
    /// and repeats none.
    pub replay_through: i64,
}

/// The chain end for live subscribers: only when someone listens, it hands each event some
/// subscriber wants over as it is (one copy, no JSON); each subscriber's task renders it.
///
/// Live views are sampled: at most LIVE_RATE deliveries a second in all (events times
/// subscribers), so that watching a session at a million events a second costs the traced
/// host little however many watch.
/// What subscribers miss is counted (`eunomia_events_lost_total{stage="subscription"}`,
/// once per subscriber).
struct LiveSink {
    live: broadcast::Sender<Arc<LiveEvent>>,
    filters: Arc<LiveFilters>,
    next_id: i64,
    /// `next_id` for subscribers, who read it to know where live events take over.
    numbered: Arc<AtomicI64>,
    window_start: Instant,
    sent_in_window: u64,
    missed: prometheus::IntCounter,
}

impl LiveSink {
    fn new(
        live: broadcast::Sender<Arc<LiveEvent>>,
        filters: Arc<LiveFilters>,
        numbered: Arc<AtomicI64>,
        missed: prometheus::IntCounter,
    ) -> Self {
        Self {
            live,
            filters,
            next_id: 0,
            numbered,
            window_start: Instant::now(),
            sent_in_window: 0,
            missed,
        }
    }

    /// Whether the sample has room for one more event to `subscribers` now.
    fn room(&mut self, subscribers: u64) -> bool {
        if self.sent_in_window * subscribers >= LIVE_RATE / LIVE_WINDOWS_PER_SEC {
            let now = Instant::now();
            if now.duration_since(self.window_start) < LIVE_WINDOW {
                return false;
            }
            self.window_start = now;
            self.sent_in_window = 0;
        }
        self.sent_in_window += 1;
        true
    }
}

impl Handler<Event> for LiveSink {
    fn handle(&mut self, event: &Event) -> Flow {
        self.next_id += 1;
        // Before the send: a subscriber that reads a number has been sent every later one.
        self.numbered.store(self.next_id, Ordering::Release);
        let subscribers = self.live.receiver_count();
        if subscribers > 0 && self.filters.wanted(event) {
            if self.room(subscribers as u64) {
                let _ = self.live.send(Arc::new(LiveEvent {
                    id: self.next_id,
                    event: event.clone(),
                    rendered: OnceLock::new(),
                }));
            } else {
                self.missed.inc_by(subscribers as u64);
            }
        }
        Flow::Caught
    }
}

/// Counts events for /metrics and times a sample of them through the rest of the chain.
struct Instrumented<N> {
    events: prometheus::IntCounter,
    duration: prometheus::Histogram,
    seen: u64,
    next: N,
}

impl<N: Handler<Event>> Handler<Event> for Instrumented<N> {
    fn handle(&mut self, event: &Event) -> Flow {
        self.events.inc();
        self.seen += 1;
        if self.seen % TIMING_SAMPLE == 0 {
            let start = Instant::now();
            let flow = self.next.handle(event);
            self.duration.observe(start.elapsed().as_secs_f64());
            flow
        } else {
            self.next.handle(event)
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.next.flush()
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.next.finish()
    }
}

impl SessionManager {
    /// Opens the manager over `store`; sessions left RUNNING by a previous server are
    /// marked INTERRUPTED.
    pub async fn new(
        store: Store,
        metrics: Metrics,
        config: Arc<Config>,
        containers: Arc<ContainerManager>,
        warm: WarmPool,
    ) -> Result<Arc<Self>, SessionError> {
        let interrupted = store.mark_running_interrupted(wall_clock_ns()).await?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "sessions left running by a previous server are marked INTERRUPTED"
            );
        }
        let (updates, _) = broadcast::channel(256);
        let slots = Arc::new(Semaphore::new(config.sessions.max_concurrent));
        let rules = load_rules(&config)?;
        let store = Arc::new(store);
        let alerts = Alerts::start(
            store.clone(),
            metrics.clone(),
            AlertOptions {
                dedup: Duration::from_secs(config.security.dedup_secs),
                keep: config.security.max_alerts,
                ..AlertOptions::default()
            },
        );
        let guard = StandingGuard::new(
            store.clone(),
            alerts.clone(),
            containers.clone(),
            metrics.clone(),
        );
        let rules = Arc::new(rules);
        let baselines = Baselines::open(store.clone(), guard.clone(), containers.clone()).await?;
        guard
            .restore(
                rules.clone(),
                config.guard.enabled.then(|| config.guard.rules.clone()),
            )
            .await;
        let manager = Arc::new(Self {
            store,
            metrics,
            config,
            containers,
            running: DashMap::new(),
            slots,
            ringbuf_in_use: Arc::new(AtomicU64::new(0)),
            unsaved: DashMap::new(),
            starting: DashMap::new(),
            ended_memory: DashMap::new(),
            updates,
            started: Instant::now(),
            rules: parking_lot::RwLock::new(rules),
            alerts,
            guard,
            baselines,
            warm,
        });
        manager.spawn_saver();
        Ok(manager)
    }

    /// The detection rules loaded now.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.read().clone()
    }

    /// Loads the rules again (the configured file, or the built-in set): sessions that
    /// start from now on use them. A set that fails to load replaces nothing. Returns how
    /// many rules were loaded.
    pub fn reload_rules(&self) -> Result<usize, SessionError> {
        let rules = load_rules(&self.config)?;
        let count = rules.rules().len();
        *self.rules.write() = Arc::new(rules);
        tracing::info!(rules = count, "detection rules reloaded");
        Ok(count)
    }

    /// Turns a rule on or off, in running sessions too.
    pub fn set_rule_enabled(&self, id: &str, enabled: bool) -> Result<Arc<Rule>, SessionError> {
        let rules = self.rules();
        let rule = rules
            .get(id)
            .ok_or_else(|| SessionError::UnknownRule(format!("no rule `{id}`")))?;
        rule.set_enabled(enabled);
        Ok(rule.clone())
    }

    pub fn alerts(&self) -> &Arc<Alerts> {
        &self.alerts
    }

    /// Starts the standing guard on the rules loaded now that `selection` names.
    pub async fn start_guard(&self, selection: Vec<String>) -> Result<GuardStatus, SessionError> {
        Ok(self.guard.start(self.rules(), selection).await?)
    }

    pub async fn stop_guard(&self) -> Result<GuardStatus, SessionError> {
        Ok(self.guard.stop().await?)
    }

    pub fn guard_status(&self) -> GuardStatus {
        self.guard.status()
    }

    /// Learned baselines, learning and enforcing them.
    pub fn baselines(&self) -> &Arc<Baselines> {
        &self.baselines
    }

    /// Saves the final records the store refused (a full disk) again every second, until
    /// it takes them.
    fn spawn_saver(self: &Arc<Self>) {
        let manager = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UNSAVED_RETRY);
            loop {
                tick.tick().await;
                let Some(manager) = manager.upgrade() else {
                    return;
                };
                let pending: Vec<SessionRecord> =
                    manager.unsaved.iter().map(|r| r.value().clone()).collect();
                for record in pending {
                    if manager.store.update_session(&record).await.is_ok() {
                        tracing::info!(session = %record.id, "the session's final record is saved");
                        manager.unsaved.remove(&record.id);
                    }
                }
            }
        });
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn containers(&self) -> &Arc<ContainerManager> {
        &self.containers
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn active_sessions(&self) -> usize {
        self.running.len()
    }

    /// The tracker configuration of a request, and the containers it follows: the id of
    /// the one container it names, and the selector of those it takes in as they start.
    fn tracker_config(
        &self,
        tracker: &dyn AnyTracker,
        req: &StartRequest,
    ) -> Result<(TrackerConfig, Option<String>, Option<ContainerSelector>), SessionError> {
        let mut config = parse_config(req.config.as_ref())?;
        let filter_keys_in_config =
            config.target_pid.is_some() || config.comm.is_some() || !config.cgroup_ids.is_empty();
        if filter_keys_in_config {
            return Err(SessionError::BadConfig(
                "target_pid, comm and cgroup_ids belong in `filter`".into(),
            ));
        }
        config.target_pid = req.pid;
        config.comm = req.comm.clone();
        config.exclude_pid = (!req.include_self).then(std::process::id);
        config.cgroup_ids = req.cgroup_id.into_iter().collect();
        let cgroup_filters = [
            req.cgroup_id.is_some(),
            req.container.is_some(),
            req.container_name.is_some(),
            req.image.is_some(),
        ];
        if cgroup_filters.iter().filter(|&&given| given).count() > 1 {
            return Err(SessionError::BadFilter(
                "give one of cgroupId, container, containerName and image".into(),
            ));
        }
        for given in [&req.container_name, &req.image].into_iter().flatten() {
            if given.trim().is_empty() {
                return Err(SessionError::BadFilter(
                    "containerName and image must not be empty".into(),
                ));
            }
        }
        let selector = self.containers.selector(
            req.container.as_deref(),
            req.container_name.as_deref(),
            req.image.as_deref(),
        )?;
        let container = match &selector {
            Some(ContainerSelector::Id(id)) => Some(id.clone()),
            _ => None,
        };
        if let Some(selector) = &selector {
            config.cgroup_ids = self.containers.cgroups_matching(selector);
            config.follow_cgroups = true;
        }
        check_config(tracker, &config)?;
        Ok((config, container, selector))
    }

    /// Starts a session; returns once its programs are attached (status RUNNING).
    /// Starts a session; returns once its programs are attached (status RUNNING). It runs
    /// to the end even if the caller goes away, so no session is left half started.
    pub async fn start(self: &Arc<Self>, req: StartRequest) -> Result<SessionRecord, SessionError> {
        let manager = self.clone();
        tokio::spawn(async move { manager.start_now(req).await })
            .await
            .map_err(|e| SessionError::TrackerFailed(e.to_string()))?
    }

    /// What any server can check of a request before one starts it: its tracker, its
    /// duration and its tracker configuration (a fleet checks them once, at its origin,
    /// before any node starts). Containers are left to the node that runs it.
    pub fn check_request(
        &self,
        req: &StartRequest,
    ) -> Result<&'static dyn AnyTracker, SessionError> {
        let tracker = find_tracker(&req.tracker).map_err(|_| SessionError::UnknownTracker {
            name: req.tracker.clone(),
            known: crate::trackers::TRACKERS
                .iter()
                .map(|t| t.info().name)
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        let max = self.config.sessions.max_duration_secs;
        if req.duration_secs < 1 || req.duration_secs as u64 > max {
            return Err(SessionError::BadDuration {
                got: req.duration_secs,
                max,
            });
        }
        check_config(tracker, &parse_config(req.config.as_ref())?)?;
        Ok(tracker)
    }

    async fn start_now(self: &Arc<Self>, req: StartRequest) -> Result<SessionRecord, SessionError> {
        let tracker = self.check_request(&req)?;
        let (tracker_config, container_id, selector) = self.tracker_config(tracker, &req)?;
        let info = tracker.info();
        let reservation = self.reserve(u64::from(tracker_config.ringbuf_bytes))?;
        let started_at_ns = wall_clock_ns();
        let matcher = self.matcher_for(info.name, &req.rules)?;
        let mut filter = serde_json::json!({
            "pid": req.pid,
            "comm": req.comm,
            "cgroupId": req.cgroup_id,
            "container": req.container,
            "containerId": container_id,
            "containerName": req.container_name,
            "image": req.image,
        });
        if !req.rules.is_empty() {
            filter["rules"] = serde_json::json!(req.rules);
        }
        let mut record = SessionRecord {
            id: SessionId::from(uuid::Uuid::new_v4().simple().to_string()),
            tracker: info.name.to_string(),
            label: req.label.clone(),
            status: SessionStatus::Running,
            store: req.store,
            filter,
            config: req.config.clone().unwrap_or(serde_json::Value::Null),
            started_at_ns,
            ends_at_ns: started_at_ns + req.duration_secs as u64 * 1_000_000_000,
            ended_at_ns: None,
            event_count: 0,
            lost_count: 0,
            error: None,
            memory_snapshot: None,
        };
        let exported = match req.metrics.is_empty() {
            true => None,
            false => Some(exporter::register(
                &self.metrics,
                info,
                &exporter::Export {
                    prefix: exporter::SESSION_PREFIX,
                    session: Some(record.label.as_deref().unwrap_or(record.id.as_str())),
                    max_series: self.config.metrics.max_series,
                },
                &req.metrics,
            )?),
        };
        let (export, export_handler) = exported.unzip();
        // Marked before the row is stored, so that no reader sees the row RUNNING, and
        // kept until the tracker is attached and the session is in `running` (or failed).
        let _starting = Starting::mark(&self.starting, &record.id);
        self.store.insert_session(&record).await?;

        let counters = Arc::new(Counters::default());
        let store_failure = Arc::new(Mutex::new(None));
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let live_filters = Arc::new(LiveFilters::default());
        let numbered = Arc::new(AtomicI64::new(0));
        let memory = (req.store == StoreKind::Memory)
            .then(|| Arc::new(MemoryStore::new(info, self.memory_limits())));
        let (sink, handed): (Box<dyn Handler<Event>>, _) = match &memory {
            Some(memory) => (
                Box::new(memory.sink(counters.lost_channel.clone(), self.metrics.clone())),
                None,
            ),
            None => {
                let sink = self.store.event_sink(
                    &record.id,
                    info.name,
                    counters.lost_channel.clone(),
                    store_failure.clone(),
                );
                let handed = sink.handed();
                (Box::new(sink), Some(handed))
            }
        };
        let chain = Instrumented {
            events: self.metrics.events.with_label_values(&[info.name]),
            duration: self.metrics.handler_duration.clone(),
            seen: 0,
            next: Enrich::new(
                self.containers.clone(),
                FanOut::new(
                    [
                        sink,
                        Box::new(LiveSink::new(
                            live.clone(),
                            live_filters.clone(),
                            numbered.clone(),
                            self.metrics
                                .lost
                                .with_label_values(&[info.name, stage::SUBSCRIPTION]),
                        )),
                    ]
                    .into_iter()
                    .chain(matcher.map(|m| {
                        Box::new(m.for_session(record.id.clone())) as Box<dyn Handler<Event>>
                    }))
                    .chain(export_handler.map(|h| Box::new(h) as Box<dyn Handler<Event>>))
                    .collect(),
                ),
            ),
        };
        let spawn_counters = counters.clone();
        let manager = self.clone();
        let spawned = tokio::task::spawn_blocking(move || {
            manager
                .warm
                .start(tracker, tracker_config, Box::new(chain), spawn_counters)
        })
        .await
        .map_err(|e| SessionError::TrackerFailed(e.to_string()))?;
        let handle = match spawned {
            Ok((handle, start)) => {
                self.metrics
                    .session_starts
                    .with_label_values(&[info.name, start.label()])
                    .inc();
                handle
            }
            Err(err) => {
                if let Some(export) = export {
                    export.unregister();
                }
                record.status = SessionStatus::Failed;
                record.ended_at_ns = Some(wall_clock_ns());
                record.error = Some(err.to_string());
                self.store.update_session(&record).await?;
                self.metrics
                    .sessions
                    .with_label_values(&[info.name, status_label(SessionStatus::Failed)])
                    .inc();
                let _ = self.updates.send(record.clone());
                return Err(SessionError::TrackerFailed(err.to_string()));
            }
        };
        if let (Some(selector), Some(filter)) = (selector, handle.cgroup_filter()) {
            self.containers.follow(selector, &filter);
        }
        tracing::info!(session = %record.id, tracker = info.name, programs = ?handle.prog_ids(), "session started");
        let running = Arc::new(Running {
            record: Mutex::new(record.clone()),
            counters,
            tracker: Mutex::new(Some(handle)),
            memory,
            live,
            live_filters,
            numbered,
            handed,
            stop: Arc::new(Notify::new()),
            store_failure,
            ended: OnceCell::new(),
            export: Mutex::new(export),
            reservation: Mutex::new(Some(reservation)),
        });
        self.running.insert(record.id.clone(), running.clone());
        self.metrics.sessions_active.inc();
        let _ = self.updates.send(record.clone());
        self.spawn_watch(
            record.id.clone(),
            running,
            Duration::from_secs(req.duration_secs as u64),
        );
        Ok(record)
    }

    /// The matcher for a session of `tracker` that asked for `rules` (none when it asked
    /// for none); an unknown rule id, or rules none of which read this tracker's events,
    /// are errors.
    fn matcher_for(
        &self,
        tracker: &str,
        rules: &[String],
    ) -> Result<Option<RuleMatcher>, SessionError> {
        if rules.is_empty() {
            return Ok(None);
        }
        let set = self.rules();
        let selected = set.select(rules).map_err(SessionError::UnknownRule)?;
        let matcher = RuleMatcher::new(
            &set,
            &selected,
            tracker,
            self.alerts.sender(),
            self.metrics.clone(),
        );
        if matcher.is_empty() {
            return Err(SessionError::UnknownRule(format!(
                "none of the rules {rules:?} reads {tracker} events"
            )));
        }
        Ok(Some(matcher))
    }

    /// Takes a place for a session and its ring buffer, before anything awaits: the check
    /// and the taking are one step, however many start at once.
    fn reserve(&self, ringbuf_bytes: u64) -> Result<Reservation, SessionError> {
        let slot =
            self.slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| SessionError::TooManySessions {
                    running: self.config.sessions.max_concurrent,
                })?;
        let budget = self.config.sessions.ringbuf_budget_bytes;
        self.ringbuf_in_use
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(ringbuf_bytes)
                    .filter(|&total| total <= budget)
            })
            .map_err(|used| {
                SessionError::BadConfig(format!(
                    "ringbuf_bytes {ringbuf_bytes} does not fit: running sessions hold \
                     {used} of the server's {budget} (sessions.ringbuf_budget_bytes)"
                ))
            })?;
        Ok(Reservation {
            _slot: slot,
            ringbuf_bytes,
            ringbuf_in_use: self.ringbuf_in_use.clone(),
        })
    }

    /// Ends the session at its deadline or when asked, publishing counts meanwhile.
    fn spawn_watch(self: &Arc<Self>, id: SessionId, running: Arc<Running>, window: Duration) {
        let manager = self.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + window;
            let mut tick = tokio::time::interval(UPDATE_INTERVAL);
            tick.tick().await;
            let status = loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break SessionStatus::Completed,
                    _ = running.stop.notified() => break SessionStatus::Stopped,
                    _ = tick.tick() => {
                        let tracker_ended = running
                            .tracker
                            .lock()
                            .as_ref()
                            .is_some_and(TrackerHandle::is_finished);
                        if tracker_ended || running.store_failure.lock().is_some() {
                            break SessionStatus::Failed;
                        }
                        let _ = manager.updates.send(manager.live_record(&running));
                    }
                }
            };
            manager.finish(&id, status).await;
        });
    }

    /// The record with live counts, or the final one once it has ended.
    fn live_record(&self, running: &Running) -> SessionRecord {
        if let Some(ended) = running.ended.get() {
            return ended.clone();
        }
        let mut record = running.record.lock().clone();
        apply_counts(&mut record, &running.counters.snapshot());
        record
    }

    /// Asks a running session to stop and waits until it has ended; every caller gets the
    /// final record. It runs to the end even if the caller goes away.
    pub async fn stop(self: &Arc<Self>, id: &SessionId) -> Result<SessionRecord, SessionError> {
        let manager = self.clone();
        let id = id.clone();
        tokio::spawn(async move {
            match manager.finish(&id, SessionStatus::Stopped).await {
                Some(record) => Ok(record),
                None => manager.find(&id).await,
            }
        })
        .await
        .map_err(|e| SessionError::TrackerFailed(e.to_string()))?
    }

    /// Ends a running session once, however many ask: the first caller does the work, the
    /// others wait for it, and all get the final record. `None` when it is not running.
    async fn finish(&self, id: &SessionId, status: SessionStatus) -> Option<SessionRecord> {
        let running = self.running.get(id).map(|r| r.clone())?;
        let record = running
            .ended
            .get_or_init(|| self.end(&running, status))
            .await
            .clone();
        // Only now: until the final record exists, the session is running to every reader,
        // and a delete waits for it.
        self.running.remove(id);
        if let Some(reservation) = running.reservation.lock().take() {
            drop(reservation);
            self.metrics.sessions_active.dec();
        }
        if let Some(export) = running.export.lock().take() {
            let keep = Duration::from_secs(self.config.metrics.session_keep_secs);
            tokio::spawn(async move {
                tokio::time::sleep(keep).await;
                export.unregister();
            });
        }
        Some(record)
    }

    /// Detaches, drains, and makes, saves and publishes the final record.
    async fn end(&self, running: &Running, status: SessionStatus) -> SessionRecord {
        running.stop.notify_one();
        let handle = running.tracker.lock().take();
        let outcome = match handle {
            Some(handle) => tokio::task::spawn_blocking(move || handle.stop())
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string())),
            None => Ok(running.counters.snapshot()),
        };
        let mut record = running.record.lock().clone();
        record.status = status;
        if let Err(err) = &outcome {
            record.status = SessionStatus::Failed;
            record.error = Some(err.clone());
        }
        record.ended_at_ns = Some(wall_clock_ns());
        if let Some(memory) = &running.memory {
            record.memory_snapshot = Some(memory.snapshot());
            self.ended_memory.insert(record.id.clone(), memory.clone());
        } else if let Err(err) = self.store.flush().await {
            record.status = SessionStatus::Failed;
            record.error = Some(format!("storing events failed: {err}"));
        }
        // After the flush: every event is now stored or counted lost.
        let stats = running.counters.snapshot();
        if let Some(failure) = running.store_failure.lock().clone() {
            record.status = SessionStatus::Failed;
            record.error = Some(format!("storing events failed: {failure}"));
        }
        if record.status == SessionStatus::Failed && record.error.is_none() {
            record.error = Some("the tracker ended before the session did".into());
        }
        apply_counts(&mut record, &stats);
        if let Err(err) = self.store.update_session(&record).await {
            tracing::error!(session = %record.id, "saving the final record failed, retrying: {err}");
            self.unsaved.insert(record.id.clone(), record.clone());
        }

        let tracker = record.tracker.as_str();
        self.metrics
            .lost
            .with_label_values(&[tracker, stage::KERNEL])
            .inc_by(stats.lost_kernel);
        self.metrics
            .lost
            .with_label_values(&[tracker, stage::MALFORMED])
            .inc_by(stats.malformed);
        self.metrics
            .sessions
            .with_label_values(&[tracker, status_label(record.status)])
            .inc();
        tracing::info!(session = %record.id, status = ?record.status, events = record.event_count, lost = record.lost_count, "session ended");
        let _ = self.updates.send(record.clone());
        record
    }

    /// Ends every running session (server shutdown): they are INTERRUPTED, with final counts.
    pub async fn shutdown(&self) {
        let ids: Vec<SessionId> = self.running.iter().map(|r| r.key().clone()).collect();
        for id in ids {
            self.finish(&id, SessionStatus::Interrupted).await;
        }
    }

    /// The session as stored, with live counts while it runs.
    pub async fn get(&self, id: &SessionId) -> Result<Option<SessionRecord>, SessionError> {
        if let Some(running) = self.running.get(id).map(|r| r.clone()) {
            return Ok(Some(self.live_record(&running)));
        }
        if let Some(unsaved) = self.unsaved.get(id) {
            return Ok(Some(unsaved.clone()));
        }
        Ok(self.store.get_session(id).await?)
    }

    /// Waits until the session has ended; returns its final record, as stored (with a
    /// MEMORY session's results).
    pub async fn wait_ended(&self, id: &SessionId) -> Result<SessionRecord, SessionError> {
        // Subscribed before looking, so that the end cannot fall in between.
        let mut updates = self.updates.subscribe();
        loop {
            let current = self.find(id).await?;
            if current.status.has_ended() {
                return Ok(current);
            }
            loop {
                match updates.recv().await {
                    Ok(update) if update.id == *id && update.status.has_ended() => break,
                    Ok(_) => {}
                    // Fell behind the updates: look again.
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(SessionError::TrackerFailed(
                            "the server is shutting down".into(),
                        ))
                    }
                }
            }
        }
    }

    /// Like [`Self::get`], but an unknown id is [`SessionError::NotFound`].
    pub async fn find(&self, id: &SessionId) -> Result<SessionRecord, SessionError> {
        self.get(id)
            .await?
            .ok_or_else(|| SessionError::NotFound(id.clone()))
    }

    /// Overlays live counts, or a final record not saved yet, on a record from the store;
    /// a session still attaching reads STARTING.
    pub fn with_live_counts(&self, mut record: SessionRecord) -> SessionRecord {
        if let Some(running) = self.running.get(&record.id) {
            return self.live_record(&running);
        }
        if self.starting.contains_key(&record.id) {
            record.status = SessionStatus::Starting;
            return record;
        }
        match self.unsaved.get(&record.id) {
            Some(unsaved) => unsaved.clone(),
            None => record,
        }
    }

    /// Deletes an ended session and its results; a running one, or one still ending, is
    /// refused. It runs to the end even if the caller goes away.
    pub async fn delete(self: &Arc<Self>, id: &SessionId) -> Result<bool, SessionError> {
        if self.running.contains_key(id) || self.starting.contains_key(id) {
            return Err(SessionError::StillRunning(id.clone()));
        }
        if self.unsaved.contains_key(id) {
            return Err(SessionError::NotSaved(id.clone()));
        }
        let manager = self.clone();
        let id = id.clone();
        tokio::spawn(async move {
            manager.ended_memory.remove(&id);
            Ok(manager.store.delete_session(&id).await?)
        })
        .await
        .map_err(|e| SessionError::TrackerFailed(e.to_string()))?
    }

    /// A session's results, from whichever store keeps them.
    pub fn results(&self, record: &SessionRecord) -> Result<Arc<dyn SessionResults>, SessionError> {
        let info = tracker_info(&record.tracker)?;
        Ok(match record.store {
            StoreKind::Sqlite => self.store.session_results(record.id.clone(), info),
            StoreKind::Memory => self.memory_store(record, info)?,
        })
    }

    /// The memory store of a MEMORY session, live or restored from its snapshot.
    fn memory_store(
        &self,
        record: &SessionRecord,
        info: &'static TrackerInfo,
    ) -> Result<Arc<MemoryStore>, SessionError> {
        if let Some(memory) = self.running.get(&record.id).and_then(|r| r.memory.clone()) {
            return Ok(memory);
        }
        if let Some(memory) = self.ended_memory.get(&record.id) {
            return Ok(memory.clone());
        }
        let memory = match &record.memory_snapshot {
            Some(snapshot) => MemoryStore::restore(info, self.memory_limits(), snapshot)
                .map_err(|e| SessionError::Snapshot(e.to_string()))?,
            None => MemoryStore::new(info, self.memory_limits()),
        };
        let memory = Arc::new(memory);
        self.ended_memory.insert(record.id.clone(), memory.clone());
        Ok(memory)
    }

    fn memory_limits(&self) -> MemoryLimits {
        MemoryLimits {
            max_groups: self.config.memory.max_groups,
            recent_events: self.config.memory.recent_events,
        }
    }

    /// Kernel ids of a running session's BPF programs; empty once it has ended.
    pub fn program_ids(&self, id: &SessionId) -> Vec<u32> {
        self.running
            .get(id)
            .and_then(|r| r.tracker.lock().as_ref().map(|h| h.prog_ids().to_vec()))
            .unwrap_or_default()
    }

    /// Live events of a running session that meet `filter`; `None` when it is not running.
    pub fn subscribe_events(
        &self,
        id: &SessionId,
        filter: Vec<Predicate>,
    ) -> Option<LiveSubscription> {
        self.running.get(id).map(|r| {
            let filter: Arc<[Predicate]> = filter.into();
            let registration = r.live_filters.register(filter.clone());
            let receiver = r.live.subscribe();
            LiveSubscription {
                registration,
                receiver,
                filter,
                replay_through: r.numbered.load(Ordering::Acquire),
            }
        })
    }

    /// Returns once the session's results hold every event numbered up to `through`
    /// that was not counted lost, so that a replay of them misses none. A MEMORY session's
    /// do at once (its sink comes first in the chain); a SQLITE session's once its sink
    /// has handed them to the writer (within a poll of the ring buffer) and the writer has
    /// committed them.
    pub async fn stored_through(&self, id: &SessionId, through: i64) -> Result<(), SessionError> {
        let handed = self.running.get(id).and_then(|r| r.handed.clone());
        if let Some(handed) = handed {
            let deadline = Instant::now() + HANDED_WAIT;
            // Once the session has ended its sink has handed everything over.
            while handed.load(Ordering::Acquire) < through && self.running.contains_key(id) {
                if Instant::now() > deadline {
                    return Err(SessionError::StoreBehind(id.clone(), HANDED_WAIT));
                }
                tokio::time::sleep(HANDED_POLL).await;
            }
            self.store.flush().await?;
        }
        Ok(())
    }

    /// How many `sessionEvents` subscriptions watch a running session (0 once it ended).
    pub fn event_subscribers(&self, id: &SessionId) -> usize {
        self.running.get(id).map_or(0, |r| r.live.receiver_count())
    }

    /// Every session update (status and counts); subscribers filter by id.
    pub fn subscribe_updates(&self) -> broadcast::Receiver<SessionRecord> {
        self.updates.subscribe()
    }

    /// Counts what a live subscriber lost by falling behind.
    pub fn count_subscriber_loss(&self, tracker: &str, lost: u64) {
        self.metrics
            .lost
            .with_label_values(&[tracker, stage::SUBSCRIPTION])
            .inc_by(lost);
    }
}

/// A request's or a stored session's `config` as a tracker configuration; none or null is
/// the defaults.
/// The tracker's verdict on a configuration: a filter it refuses is BadFilter.
fn check_config(tracker: &dyn AnyTracker, config: &TrackerConfig) -> Result<(), SessionError> {
    tracker.check(config).map_err(|e| match e {
        TrackerError::Config(msg)
            if ["comm", "target_pid", "cgroup"]
                .iter()
                .any(|f| msg.starts_with(f)) =>
        {
            SessionError::BadFilter(msg)
        }
        other => SessionError::BadConfig(other.to_string()),
    })
}

fn parse_config(value: Option<&serde_json::Value>) -> Result<TrackerConfig, SessionError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(TrackerConfig::default()),
        Some(value @ serde_json::Value::Object(_)) => serde_json::from_value(value.clone())
            .map_err(|e| SessionError::BadConfig(e.to_string())),
        Some(_) => Err(SessionError::BadConfig(
            "config must be a JSON object".into(),
        )),
    }
}

/// Whether a session's records are interval totals (see
/// `TrackerOptions::reports_totals`), from its tracker and configuration.
pub fn reports_totals(record: &SessionRecord) -> bool {
    with_tracker(record, |tracker, config| tracker.reports_totals(config)).unwrap_or(false)
}

/// Which of a session's total fields a histogram of is exact (see
/// `TrackerOptions::totals_per_log2_bucket`).
pub fn totals_per_log2_bucket(record: &SessionRecord) -> &'static [&'static str] {
    with_tracker(record, |tracker, config| {
        tracker.totals_per_log2_bucket(config)
    })
    .unwrap_or(&[])
}

/// The configured rules file, or the built-in rules.
fn load_rules(config: &Config) -> Result<RuleSet, SessionError> {
    match &config.security.rules_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                SessionError::BadConfig(format!("rules file {}: {e}", path.display()))
            })?;
            Ok(RuleSet::parse(&text)?)
        }
        None => Ok(RuleSet::builtin()),
    }
}

fn with_tracker<T>(
    record: &SessionRecord,
    f: impl FnOnce(&'static dyn AnyTracker, &TrackerConfig) -> T,
) -> Option<T> {
    let tracker = find_tracker(&record.tracker).ok()?;
    let config = parse_config(Some(&record.config)).ok()?;
    Some(f(tracker, &config))
}

pub fn tracker_info(name: &str) -> Result<&'static TrackerInfo, SessionError> {
    find_tracker(name)
        .map(|t| t.info())
        .map_err(|_| SessionError::UnknownTracker {
            name: name.to_string(),
            known: String::new(),
        })
}

/// Stored events are the ones seen and not lost on the way to the store.
fn apply_counts(record: &mut SessionRecord, stats: &Stats) {
    record.event_count = stats.seen.saturating_sub(stats.lost_channel);
    record.lost_count = stats.lost();
}

pub fn status_label(status: SessionStatus) -> &'static str {
    match status {
        SessionStatus::Starting => "STARTING",
        SessionStatus::Running => "RUNNING",
        SessionStatus::Completed => "COMPLETED",
        SessionStatus::Stopped => "STOPPED",
        SessionStatus::Failed => "FAILED",
        SessionStatus::Interrupted => "INTERRUPTED",
    }
}

/// A session in the manager's starting set while this lives: dropped when its start ends,
/// however it ends (attached, failed, or its caller gone).
struct Starting<'a> {
    set: &'a DashMap<SessionId, ()>,
    id: SessionId,
}

impl<'a> Starting<'a> {
    fn mark(set: &'a DashMap<SessionId, ()>, id: &SessionId) -> Self {
        set.insert(id.clone(), ());
        Starting {
            set,
            id: id.clone(),
        }
    }
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.set.remove(&self.id);
    }
}

/// Retention runs at start-up and then every interval.
pub fn spawn_retention(manager: Arc<SessionManager>, every: Duration) {
    tokio::spawn(async move {
        let policy = crate::results::store::RetentionPolicy {
            max_age_secs: manager.config.retention.max_age_secs,
            max_events: manager.config.retention.max_events,
        };
        if policy.max_age_secs.is_none() && policy.max_events.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match manager
                .store
                .enforce_retention(&policy, wall_clock_ns())
                .await
            {
                Ok(report) if report.sessions_deleted > 0 => {
                    tracing::info!(
                        sessions = report.sessions_deleted,
                        events = report.events_deleted,
                        "retention deleted old sessions"
                    );
                }
                Ok(_) => {}
                Err(err) => tracing::error!("retention failed: {err}"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Comm, FieldType, FixedStr, Header};
    use crate::trackers::process::{Ids, ProcessEvent};

    fn exec_by(comm: &str) -> Event {
        Event {
            header: Header {
                comm: Comm::from(comm),
                ..Header::default()
            },
            body: ProcessEvent::Exec {
                filename: FixedStr::from("/bin/true"),
                cwd: FixedStr::default(),
                ids: Ids::default(),
                details: None,
            }
            .into(),
        }
    }

    /// The sample keeps what any subscriber wants, and a subscriber that goes away takes
    /// its filter with it.
    #[test]
    fn live_filters_follow_their_subscribers() {
        let filters = Arc::new(LiveFilters::default());
        let by_a = Predicate::parse("comm == a", |_| Some(FieldType::Str), &[]).unwrap();
        let only_a = filters.register(vec![by_a].into());
        assert!(filters.wanted(&exec_by("a")));
        assert!(!filters.wanted(&exec_by("b")));
        let everything = filters.register(Vec::new().into());
        assert!(filters.wanted(&exec_by("b")));
        drop(everything);
        assert!(!filters.wanted(&exec_by("b")));
        drop(only_a);
        assert!(filters.wanted.read().unwrap().is_empty());
    }
}
