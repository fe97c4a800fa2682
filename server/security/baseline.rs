//! Learned baselines, the analyzer's second method beside rules: what a container (or
//! every container of an image) does while it behaves, recorded for a while in four
//! dimensions (the files it executes, the syscalls it makes, the addresses it connects
//! to, the directories it writes in). Once learned, the guard raises an `anomaly` alert
//! for each thing outside it, naming the dimension and the item (`new_exec: /bin/nc`),
//! once per baseline and item: a new binary run in a loop is one alert, not thousands.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::alerts::Raised;
use super::drift::observed_write;
use super::matcher::AlertSink;
use super::rules::{Rule, RuleSet};
use crate::container::{ContainerManager, Enrich};
use crate::engine::{Stats, TrackerConfig, TrackerError};
use crate::handler::{Flow, Handler};
use crate::metrics::Metrics;
use crate::model::{ContainerTag, EventBody, Value};
use crate::trackers::files::FilesOptions;
use crate::trackers::{find_tracker, Event};

/// Anomaly alerts one baseline raises at most: past them, a container that does
/// something new at every turn (random file names, a port scan) is counted
/// (`eunomia_anomalies_unreported_total`), not alerted, and the memory of what was
/// raised stays bounded.
pub const MAX_REPORTED: usize = 1024;

/// The trackers whose events a baseline reads.
pub const TRACKERS: [&str; 4] = ["process", "syscall", "tcp", "files"];

/// Whose behaviour a baseline is: one container (by name, so that a container recreated
/// under its name keeps it) or every container of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Container(String),
    Image(String),
}

impl Scope {
    /// Its kind (`container` or `image`) and target, as the store keeps them.
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            Scope::Container(name) => ("container", name),
            Scope::Image(image) => ("image", image),
        }
    }

    /// The scope the store's `parts` name.
    pub fn from_parts(kind: &str, target: String) -> Scope {
        match kind {
            "image" => Scope::Image(target),
            _ => Scope::Container(target),
        }
    }

    pub fn covers(&self, tag: &ContainerTag) -> bool {
        match self {
            Scope::Container(name) => tag.name.as_str() == name,
            Scope::Image(image) => tag.image.as_str() == image,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Container(name) => write!(f, "container {name}"),
            Scope::Image(image) => write!(f, "image {image}"),
        }
    }
}

/// One kind of behaviour a baseline records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dimension {
    Exec,
    Syscall,
    Connect,
    WriteDir,
}

impl Dimension {
    /// How an anomaly alert names it.
    pub fn label(self) -> &'static str {
        match self {
            Dimension::Exec => "new_exec",
            Dimension::Syscall => "new_syscall",
            Dimension::Connect => "new_connect",
            Dimension::WriteDir => "new_write_dir",
        }
    }
}

/// What a baseline holds, per dimension.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Executed files, as the exec named them.
    pub execs: BTreeSet<String>,
    /// Syscall names.
    pub syscalls: BTreeSet<String>,
    /// Outbound connects, `address:port` (`[address]:port` for IPv6).
    pub connects: BTreeSet<String>,
    /// Directories of files opened for writing, creating or truncating.
    pub write_dirs: BTreeSet<String>,
}

impl Profile {
    fn items(&self, dimension: Dimension) -> &BTreeSet<String> {
        match dimension {
            Dimension::Exec => &self.execs,
            Dimension::Syscall => &self.syscalls,
            Dimension::Connect => &self.connects,
            Dimension::WriteDir => &self.write_dirs,
        }
    }

    fn items_mut(&mut self, dimension: Dimension) -> &mut BTreeSet<String> {
        match dimension {
            Dimension::Exec => &mut self.execs,
            Dimension::Syscall => &mut self.syscalls,
            Dimension::Connect => &mut self.connects,
            Dimension::WriteDir => &mut self.write_dirs,
        }
    }

    pub fn contains(&self, dimension: Dimension, item: &str) -> bool {
        self.items(dimension).contains(item)
    }

    /// Adds what `event` shows; allocates only for an item not seen before.
    pub fn learn(&mut self, event: &Event) {
        if let Some((dimension, item)) = observed(event) {
            if !self.contains(dimension, &item) {
                self.items_mut(dimension).insert(item.into_owned());
            }
        }
    }
}

/// The dimension and item `event` shows, if it shows one: an exec's file, a syscall
/// row's call, a connect's address and port, the directory of a file opened to write.
pub fn observed(event: &Event) -> Option<(Dimension, Cow<'_, str>)> {
    let body = &event.body;
    let text = |field| match body.get(field) {
        Some(Value::Str(s)) => Some(s),
        _ => None,
    };
    match (body.tracker(), body.kind()) {
        ("process", "exec") => Some((Dimension::Exec, Cow::Borrowed(text("filename")?))),
        ("syscall", _) => Some((Dimension::Syscall, Cow::Borrowed(text("syscall")?))),
        ("tcp", "connect") => {
            let (address, port) = (text("daddr")?, body.get("dport")?);
            let item = if address.contains(':') {
                format!("[{address}]:{port}")
            } else {
                format!("{address}:{port}")
            };
            Some((Dimension::Connect, Cow::Owned(item)))
        }
        ("files", "open") => {
            let path = observed_write(event)?;
            let dir = match path.rfind('/') {
                Some(0) => "/",
                Some(end) => &path[..end],
                None => return None,
            };
            Some((Dimension::WriteDir, Cow::Borrowed(dir)))
        }
        _ => None,
    }
}

/// A learned baseline, as the guard checks events against it.
#[derive(Debug)]
pub struct Learned {
    pub id: i64,
    pub scope: Scope,
    pub profile: Profile,
    /// What was already raised: each item outside the baseline is one alert.
    reported: parking_lot::Mutex<HashSet<(Dimension, String)>>,
}

impl Learned {
    pub fn new(id: i64, scope: Scope, profile: Profile) -> Self {
        Self {
            id,
            scope,
            profile,
            reported: Default::default(),
        }
    }
}

/// The baselines the guard enforces; changed while it runs (a baseline learned or
/// deleted), read on every event of a container.
#[derive(Debug, Default)]
pub struct ActiveBaselines(parking_lot::RwLock<Vec<Arc<Learned>>>);

impl ActiveBaselines {
    pub fn is_empty(&self) -> bool {
        self.0.read().is_empty()
    }

    pub fn insert(&self, learned: Learned) {
        let mut all = self.0.write();
        all.retain(|b| b.id != learned.id);
        all.push(Arc::new(learned));
    }

    pub fn ids(&self) -> Vec<i64> {
        self.0.read().iter().map(|b| b.id).collect()
    }

    pub fn remove(&self, id: i64) {
        self.0.write().retain(|b| b.id != id);
    }
}

/// The rule anomaly alerts are raised under: not one of the rule set's (no condition),
/// but an id, a severity and tags for the alerts' store, filters and metrics.
static ANOMALY: LazyLock<Arc<Rule>> = LazyLock::new(|| {
    let set = RuleSet::parse(include_str!("anomaly.yaml")).expect("the anomaly rule loads");
    set.rules()[0].clone()
});

/// The guard's link for baselines: each event of a container some baseline covers,
/// checked against that baseline.
pub struct AnomalyDetector {
    baselines: Arc<ActiveBaselines>,
    alerts: Box<dyn AlertSink>,
    metrics: Metrics,
}

impl AnomalyDetector {
    pub fn new(
        baselines: Arc<ActiveBaselines>,
        alerts: impl AlertSink + 'static,
        metrics: Metrics,
    ) -> Self {
        Self {
            baselines,
            alerts: Box::new(alerts),
            metrics,
        }
    }
}

impl Handler<Event> for AnomalyDetector {
    fn handle(&mut self, event: &Event) -> Flow {
        let Some(tag) = event.header.container else {
            return Flow::Caught;
        };
        let Some((dimension, item)) = observed(event) else {
            return Flow::Caught;
        };
        for baseline in self.baselines.0.read().iter() {
            if !baseline.scope.covers(&tag) || baseline.profile.contains(dimension, &item) {
                continue;
            }
            {
                let mut reported = baseline.reported.lock();
                if reported.len() >= MAX_REPORTED {
                    if !reported.contains(&(dimension, item.to_string())) {
                        self.metrics.anomalies_unreported.inc();
                    }
                    continue;
                }
                if !reported.insert((dimension, item.to_string())) {
                    continue;
                }
            }
            let output = format!(
                "{}: {item} ({} pid {} in container {}, outside baseline {} of {})",
                dimension.label(),
                event.header.comm.as_str(),
                event.header.pid,
                tag.name.as_str(),
                baseline.id,
                baseline.scope,
            );
            // Raising only queues (never waits), so the read lock is held briefly.
            self.alerts.raise(Raised {
                rule: ANOMALY.clone(),
                event: event.clone(),
                output,
                session: None,
            });
        }
        Flow::Caught
    }
}

/// Records a profile: feeds every event it is given into a shared one.
struct Learner(Arc<parking_lot::Mutex<Profile>>);

impl Handler<Event> for Learner {
    fn handle(&mut self, event: &Event) -> Flow {
        self.0.lock().learn(event);
        Flow::Caught
    }
}

/// How the learner runs a baseline's `tracker`: syscalls counted in the kernel, each open
/// (no reads or writes); the server's own process left out.
fn tracker_config(tracker: &str) -> TrackerConfig {
    let options = match tracker {
        "files" => FilesOptions::opens_only(),
        _ => serde_json::Map::new(),
    };
    TrackerConfig {
        exclude_pid: Some(std::process::id()),
        options,
        ..TrackerConfig::default()
    }
}

/// What a learning run saw.
#[derive(Debug, Default)]
pub struct LearnedRun {
    pub profile: Profile,
    pub stats: Stats,
}

/// Learns for `duration` (blocking): the four trackers, limited in the kernel to
/// `cgroup_ids` (the scope's containers' cgroups), fill a profile.
pub fn learn(
    cgroup_ids: &[u64],
    duration: Duration,
    containers: Arc<ContainerManager>,
) -> Result<LearnedRun, TrackerError> {
    let profile = Arc::new(parking_lot::Mutex::new(Profile::default()));
    let mut handles = Vec::new();
    for tracker in TRACKERS {
        let config = TrackerConfig {
            cgroup_ids: cgroup_ids.to_vec(),
            ..tracker_config(tracker)
        };
        let chain = Enrich::new(containers.clone(), Learner(profile.clone()));
        handles.push(find_tracker(tracker)?.start(config, Box::new(chain), Default::default())?);
    }
    std::thread::sleep(duration);
    let mut stats = Stats::default();
    for handle in handles {
        stats = stats + handle.stop()?;
    }
    let profile = profile.lock().clone();
    Ok(LearnedRun { profile, stats })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_anomaly_rule_loads() {
        assert_eq!(ANOMALY.id, "anomaly");
    }

    fn exec_in(container: Option<ContainerTag>, filename: &str) -> Event {
        let header = crate::model::Header {
            pid: 7,
            container,
            ..Default::default()
        };
        crate::trackers::process::exec_event(header, filename)
    }

    /// Each new item is one alert; a container that makes up new ones without end gets
    /// MAX_REPORTED of them, and the rest are counted.
    #[test]
    fn anomalies_are_raised_once_each_and_at_most_max_reported() {
        let web = ContainerTag::new("abc123", Some("web"), Some("nginx:1"));
        let profile = Profile {
            execs: ["/bin/sh".to_string()].into(),
            ..Profile::default()
        };
        let baselines = Arc::new(ActiveBaselines::default());
        baselines.insert(Learned::new(1, Scope::Container("web".into()), profile));
        let count = crate::security::matcher::tests::Count::default();
        let metrics = Metrics::new();
        let mut detector = AnomalyDetector::new(baselines, count.clone(), metrics.clone());
        let raised = || count.0.load(std::sync::atomic::Ordering::Relaxed);
        detector.handle(&exec_in(Some(web), "/bin/sh"));
        detector.handle(&exec_in(None, "/bin/nc"));
        assert_eq!(raised(), 0);
        for _ in 0..3 {
            detector.handle(&exec_in(Some(web), "/bin/nc"));
        }
        assert_eq!(raised(), 1);
        for i in 0..MAX_REPORTED + 4 {
            detector.handle(&exec_in(Some(web), &format!("/tmp/x{i}")));
        }
        assert_eq!(raised(), MAX_REPORTED);
        assert_eq!(metrics.anomalies_unreported.get(), 5);
    }

    #[test]
    fn scopes_cover_their_containers_only() {
        let tag = ContainerTag::new("abc123", Some("web"), Some("nginx:1"));
        assert!(Scope::Container("web".into()).covers(&tag));
        assert!(!Scope::Container("db".into()).covers(&tag));
        assert!(Scope::Image("nginx:1".into()).covers(&tag));
        assert!(!Scope::Image("nginx:2".into()).covers(&tag));
    }
}
