//! The container manager (the seed's container_manager): finds containers from the cgroup
//! v2 tree (Docker, containerd and Kubernetes, CRI-O, podman), from runc's state (plain
//! runc, containerd's `ctr`) and from the Docker Engine API when its socket is there;
//! keeps each container's cgroups, processes and namespaces current from process exec
//! and exit, the engine's event stream and a periodic rescan; and maps cgroup ids and
//! pids to containers for enrichment ([`Enrich`]) and session filters.
//!
//! - `cgroup`: which cgroup paths are containers, and what a cgroup or process holds;
//! - `runc`: containers from runc's state files;
//! - `docker`: the Docker Engine API client;
//! - `registry`: the bounded tables;
//! - `enrich`: the handler that gives every event its container;
//! - `follow`: sessions whose kernel filter takes containers in as they start.

mod cgroup;
mod docker;
mod enrich;
mod follow;
mod registry;
mod runc;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use std::time::Duration;

pub use cgroup::{
    cgroup_id, of_pid as cgroup_of_pid, parse_path, v2_root, ContainerPath, Namespaces,
};
pub use docker::{DockerClient, DockerError, DEFAULT_SOCKET};
pub use enrich::Enrich;
pub use follow::ContainerSelector;
pub use registry::{Container, ResolveError, DEAD_KEEP};

use crate::engine::{CgroupFilter, Counters, TrackerConfig, TrackerError, TrackerHandle};
use crate::handler::{Flow, Handler};
use crate::model::{wall_clock_ns, ContainerTag};
use crate::trackers::{find_tracker, Body, Event};
use follow::Followers;
use registry::{Found, Registry};

/// How often the cgroup tree is walked for containers no event announced, and for ones
/// that ended without a word.
pub const DEFAULT_RESCAN: Duration = Duration::from_secs(1);
/// How long to wait before asking a Docker engine that was not there again.
const DOCKER_RETRY: Duration = Duration::from_secs(1);
/// Containers created and not yet seen running that are remembered by name and image.
const ANNOUNCED_KEEP: usize = 256;
/// The watchers' ring buffers, which stay mapped (twice: the kernel maps the data pages
/// back to back) for the server's life, so their pages are the server's resident memory.
/// 256 KiB holds the exec and exit records of about 210 processes, and the reader is woken
/// each time an eighth of it waits (no loss at 2,700 execs/s from two shells, both cores
/// busy); a loss is counted and repaired by the next rescan. Cgroups are made a few a
/// second and wake the reader each.
const PROCESS_WATCH_RINGBUF_BYTES: u32 = 256 << 10;
const CGROUP_WATCH_RINGBUF_BYTES: u32 = 64 << 10;

/// Which runtime runs a container, as its cgroup path or state says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, async_graphql::Enum)]
pub enum Runtime {
    Docker,
    Containerd,
    Crio,
    Podman,
    /// A Kubernetes CRI runtime that the cgroup path does not name (cgroupfs kubepods).
    Cri,
    /// runc started directly, without an engine.
    Runc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, async_graphql::Enum)]
pub enum ContainerState {
    Running,
    Paused,
    Exited,
}

#[derive(Clone, Debug)]
pub struct ContainerOptions {
    pub docker_socket: PathBuf,
    pub rescan_every: Duration,
}

impl Default for ContainerOptions {
    fn default() -> Self {
        Self {
            docker_socket: PathBuf::from(DEFAULT_SOCKET),
            rescan_every: DEFAULT_RESCAN,
        }
    }
}

pub struct ContainerManager {
    registry: Registry,
    /// The cgroup v2 mount; without one, no container can be found.
    root: Option<PathBuf>,
    docker: DockerClient,
    rescan_every: Duration,
    /// The internal trackers, when they run: process (exec and exit) and cgroup (new
    /// containers' cgroups).
    watch: Mutex<Vec<TrackerHandle>>,
    watch_lost_reported: AtomicU64,
    followers: Followers,
    /// Containers the engine announced as created (id, name, image): their cgroup is made
    /// when they start, before the engine says so.
    announced: Mutex<VecDeque<Announced>>,
    /// For lookups the cgroup watch's thread hands to the engine's API.
    runtime: OnceLock<tokio::runtime::Handle>,
}

#[derive(Clone)]
struct Announced {
    id: String,
    name: Option<String>,
    image: Option<String>,
}

impl ContainerManager {
    pub fn new(options: ContainerOptions) -> Arc<Self> {
        let root = v2_root();
        if root.is_none() {
            tracing::warn!("no cgroup v2 hierarchy is mounted: containers cannot be found");
        }
        Arc::new(Self {
            registry: Registry::default(),
            root,
            docker: DockerClient::new(options.docker_socket),
            rescan_every: options.rescan_every,
            watch: Mutex::new(Vec::new()),
            watch_lost_reported: AtomicU64::new(0),
            followers: Followers::default(),
            announced: Mutex::new(VecDeque::new()),
            runtime: OnceLock::new(),
        })
    }

    /// The tag of the container a cgroup belongs to, found on first sight from the
    /// process's cgroup when no scan or event announced it yet; `None` for the host.
    pub fn lookup(&self, cgroup_id: u64, pid: u32) -> Option<ContainerTag> {
        if let Some(tag) = self.registry.tag(cgroup_id) {
            return Some(tag);
        }
        if self.registry.is_host(cgroup_id) {
            return None;
        }
        self.discover(cgroup_id, pid)
    }

    /// Bumped whenever a lookup's answer may have changed.
    pub fn generation(&self) -> u64 {
        self.registry.generation()
    }

    fn discover(&self, cgroup_id: u64, pid: u32) -> Option<ContainerTag> {
        let Some(root) = &self.root else {
            self.registry.note_host(cgroup_id);
            return None;
        };
        // A process already gone or moved says nothing about the cgroup: do not cache.
        let path = cgroup::of_pid(pid)?;
        if cgroup::cgroup_id(root, &path) != Some(cgroup_id) {
            return None;
        }
        let container = parse_path(&path).or_else(|| {
            self.runc_containers()
                .into_iter()
                .find(|c| path == c.path || path.starts_with(&format!("{}/", c.path)))
        });
        match container {
            Some(c) => {
                self.observe(&c);
                self.registry.tag(cgroup_id)
            }
            None => {
                self.registry.note_host(cgroup_id);
                None
            }
        }
    }

    /// Containers runc keeps state for, with their cgroup paths below the v2 mount.
    fn runc_containers(&self) -> Vec<ContainerPath> {
        let Some(root) = &self.root else {
            return Vec::new();
        };
        runc::containers()
            .into_iter()
            .filter_map(|c| {
                // A container in the root cgroup would claim the whole tree: not one.
                let path = c.unified_path.strip_prefix(root.to_str()?)?;
                (path.len() > 1).then(|| ContainerPath {
                    runtime: c.runtime,
                    id: c.id,
                    pod_uid: None,
                    path: path.to_string(),
                })
            })
            .collect()
    }

    /// Records a container from its cgroup (and the cgroups below it), with the
    /// processes in them; a cgroup with no process left is not a running container.
    fn observe(&self, c: &ContainerPath) {
        let Some(root) = &self.root else { return };
        let dirs = cgroup::walk(root, &c.path);
        let pids: std::collections::BTreeSet<u32> = dirs
            .iter()
            .flat_map(|d| cgroup::procs(root, &d.path))
            .collect();
        let Some(&first) = pids.first() else { return };
        let details = (!self.registry.has_details(&c.id)).then(|| {
            let namespaces = Namespaces::of_pid(first).unwrap_or_default();
            let started = pids
                .iter()
                .filter_map(|&p| cgroup::process_start_ns(p))
                .min();
            (namespaces, started)
        });
        self.registry.observe(
            Found {
                id: c.id.clone(),
                runtime: c.runtime,
                pod_uid: c.pod_uid.clone(),
                cgroup_path: c.path.clone(),
                cgroup_ids: dirs.iter().map(|d| d.id).collect(),
                pids,
            },
            details,
        );
        if let Some(a) = self.announced(&c.id) {
            self.registry.name_if_unknown(&c.id, a.name, a.image);
        }
        self.offer(&c.id);
    }

    /// Adds a known container's cgroups to the sessions that follow it.
    fn offer(&self, id: &str) {
        if self.followers.is_empty() {
            return;
        }
        let Ok(c) = self.registry.resolve(id) else {
            return;
        };
        let announced = self.announced(id);
        let name = c
            .name
            .as_deref()
            .or(announced.as_ref().and_then(|a| a.name.as_deref()));
        let image = c
            .image
            .as_deref()
            .or(announced.as_ref().and_then(|a| a.image.as_deref()));
        self.followers.offer(&c.id, name, image, &c.cgroup_ids);
    }

    fn announced(&self, id: &str) -> Option<Announced> {
        self.announced.lock().iter().find(|a| a.id == id).cloned()
    }

    /// A container's new cgroup (`path` below the v2 root): tagged for enrichment, and
    /// added to the sessions that follow the container, before it runs anything (a
    /// container being created or restarted).
    fn cgroup_made(self: &Arc<Self>, path: &str, cgroup_id: u64, made_ns: u64) {
        // A runtime's own parent, or one given with --cgroup-parent, names the container
        // by its bare id.
        let (id, runtime) = match parse_path(path) {
            Some(c) => (c.id, c.runtime),
            None => match path.rsplit('/').next() {
                Some(last) if cgroup::is_container_id(last) => (last.to_string(), Runtime::Docker),
                _ => return,
            },
        };
        let known = self
            .registry
            .resolve(&id)
            .ok()
            .filter(|c| c.id == id && c.name.is_some());
        let (name, image) = match (known, self.announced(&id)) {
            (Some(c), _) => (c.name, c.image),
            (None, Some(a)) => (a.name, a.image),
            (None, None) => {
                // Not announced yet (the engine's event stream is behind): ask the engine.
                if let (Runtime::Docker, Some(runtime)) = (runtime, self.runtime.get()) {
                    let (manager, id) = (self.clone(), id.clone());
                    runtime.spawn(async move {
                        if let Ok(Some(details)) = manager.docker.inspect(&id).await {
                            let info = details.info;
                            manager.container_cgroup_made(
                                &id,
                                Some(&info.name),
                                Some(&info.image),
                                (cgroup_id, made_ns),
                            );
                        }
                    });
                }
                (None, None)
            }
        };
        self.container_cgroup_made(&id, name.as_deref(), image.as_deref(), (cgroup_id, made_ns));
    }

    /// Tags cgroup `made.0` (made at wall-clock `made.1`) and offers it to followers.
    fn container_cgroup_made(
        &self,
        id: &str,
        name: Option<&str>,
        image: Option<&str>,
        (cgroup_id, made_ns): (u64, u64),
    ) {
        self.registry
            .tag_made(cgroup_id, ContainerTag::new(id, name, image));
        let sessions = self.followers.offer(id, name, image, &[cgroup_id]);
        if sessions > 0 {
            let after_us = wall_clock_ns().saturating_sub(made_ns) / 1_000;
            tracing::debug!(
                container = id,
                cgroup_id,
                sessions,
                after_us,
                "a new container cgroup joins the filters of the sessions that follow it"
            );
        }
    }

    /// Makes a running tracker (started with `follow_cgroups`) trace the containers
    /// `selector` matches: those running now and those that start while it runs.
    pub fn follow(&self, selector: ContainerSelector, filter: &Arc<CgroupFilter>) {
        self.followers.add(selector, filter);
        for c in self.registry.list(false) {
            self.offer(&c.id);
        }
    }

    /// The selector of a trace's container filter: one running container (by name, id
    /// or prefix), a name or an image; `None` without one.
    pub fn selector(
        &self,
        container: Option<&str>,
        name: Option<&str>,
        image: Option<&str>,
    ) -> Result<Option<ContainerSelector>, ResolveError> {
        Ok(match (container, name, image) {
            (Some(query), _, _) => Some(ContainerSelector::Id(self.resolve_running(query)?.id)),
            (_, Some(name), _) => Some(ContainerSelector::Name(name.to_string())),
            (_, _, Some(image)) => Some(ContainerSelector::Image(image.to_string())),
            _ => None,
        })
    }

    /// The cgroups of the running containers `selector` matches now.
    pub fn cgroups_matching(&self, selector: &ContainerSelector) -> Vec<u64> {
        self.registry
            .list(false)
            .into_iter()
            .filter(|c| selector.matches(&c.id, c.name.as_deref(), c.image.as_deref()))
            .flat_map(|c| c.cgroup_ids)
            .collect()
    }

    /// Walks the cgroup tree and runc's state for containers, and marks dead the known
    /// ones whose cgroup is gone or empty.
    pub fn scan(&self) {
        let Some(root) = &self.root else { return };
        let mut found: BTreeMap<String, ContainerPath> = BTreeMap::new();
        for dir in cgroup::walk(root, "/") {
            if let Some(c) = parse_path(&dir.path) {
                found.entry(c.id.clone()).or_insert(c);
            }
        }
        for c in self.runc_containers() {
            found.entry(c.id.clone()).or_insert(c);
        }
        for c in found.values() {
            self.observe(c);
        }
        self.registry.retain_live(wall_clock_ns(), |c| {
            let dirs = cgroup::walk(root, &c.cgroup_path);
            dirs.first().map(|d| d.id) == c.cgroup_ids.first().copied()
                && dirs
                    .iter()
                    .any(|d| !cgroup::procs(root, &d.path).is_empty())
        });
        self.report_watch_loss();
    }

    /// Asks Docker about one container and records what it says.
    async fn sync_docker(&self, id: &str) -> Result<(), DockerError> {
        let Some(details) = self.docker.inspect(id).await? else {
            self.registry.mark_dead(id, wall_clock_ns());
            return Ok(());
        };
        if details.pid != 0 {
            if let Some(path) = cgroup::of_pid(details.pid) {
                let pod_uid = parse_path(&path).and_then(|p| p.pod_uid);
                self.observe(&ContainerPath {
                    runtime: Runtime::Docker,
                    id: details.info.id.clone(),
                    pod_uid,
                    path,
                });
            }
        }
        let id = details.info.id.clone();
        self.registry.apply_engine(details.info, wall_clock_ns());
        self.offer(&id);
        Ok(())
    }

    /// Follows Docker: every running container, then its events until the stream ends.
    async fn follow_docker(&self) -> Result<(), DockerError> {
        // Subscribe before listing, so a container that starts in between is not missed.
        let mut events = self.docker.events().await?;
        for id in self.docker.running().await? {
            self.sync_docker(&id).await?;
        }
        while let Some(event) = events.next().await? {
            match event.action.as_str() {
                "die" | "destroy" => self.registry.mark_dead(&event.id, wall_clock_ns()),
                "create" => {
                    let mut announced = self.announced.lock();
                    if announced.len() >= ANNOUNCED_KEEP {
                        announced.pop_front();
                    }
                    announced.push_back(Announced {
                        id: event.id,
                        name: event.name,
                        image: event.image,
                    });
                }
                _ => self.sync_docker(&event.id).await?,
            }
        }
        Ok(())
    }

    /// One scan and, when Docker is there, one listing of its containers: what the
    /// manager knows right after this is current.
    pub async fn sync(self: &Arc<Self>) {
        let manager = self.clone();
        let _ = tokio::task::spawn_blocking(move || manager.scan()).await;
        if self.docker.socket().exists() {
            let synced = async {
                for id in self.docker.running().await? {
                    self.sync_docker(&id).await?;
                }
                Ok::<_, DockerError>(())
            };
            if let Err(err) = synced.await {
                tracing::warn!("Docker engine: {err}; containers are known by id only");
            }
        }
    }

    /// Keeps the tables current on the running tokio runtime: periodic rescans, and
    /// Docker's event stream whenever its socket is there.
    pub fn spawn_background(self: &Arc<Self>) {
        let _ = self.runtime.set(tokio::runtime::Handle::current());
        let manager = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(manager.rescan_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let scanner = manager.clone();
                let _ = tokio::task::spawn_blocking(move || scanner.scan()).await;
            }
        });
        let manager = self.clone();
        tokio::spawn(async move {
            let mut last_error = String::new();
            loop {
                if manager.docker.socket().exists() {
                    let outcome = manager.follow_docker().await;
                    let error = outcome.err().map(|e| e.to_string()).unwrap_or_default();
                    if !error.is_empty() && error != last_error {
                        tracing::warn!("Docker engine: {error}; retrying");
                    }
                    last_error = error;
                }
                tokio::time::sleep(DOCKER_RETRY).await;
            }
        });
    }

    /// Runs a process tracker of its own, so that processes exec'd in containers are
    /// seen (and new containers found) at once, and exited ones forgotten. Sessions
    /// never see its events or counts.
    pub fn watch_processes(self: &Arc<Self>) -> Result<(), TrackerError> {
        let config = TrackerConfig {
            ringbuf_bytes: PROCESS_WATCH_RINGBUF_BYTES,
            ..TrackerConfig::default()
        };
        self.watch("process", config)
    }

    /// Runs a cgroup tracker of its own, so that sessions following containers take a
    /// container in before it runs anything.
    pub fn watch_cgroups(self: &Arc<Self>) -> Result<(), TrackerError> {
        // The runtime goes on with the container's setup meanwhile: no batching.
        let config = TrackerConfig {
            wake_per_event: true,
            ringbuf_bytes: CGROUP_WATCH_RINGBUF_BYTES,
            ..TrackerConfig::default()
        };
        self.watch("cgroup", config)
    }

    fn watch(self: &Arc<Self>, tracker: &str, config: TrackerConfig) -> Result<(), TrackerError> {
        let watch = Box::new(KernelWatch {
            manager: self.clone(),
        });
        let handle = find_tracker(tracker)?.start(config, watch, Arc::new(Counters::default()))?;
        self.watch.lock().push(handle);
        Ok(())
    }

    /// Logs what the internal process tracker lost since the last report; the next scan
    /// repairs the tables from the cgroup tree.
    fn report_watch_loss(&self) {
        let lost: u64 = self.watch.lock().iter().map(|h| h.stats().lost()).sum();
        let reported = self.watch_lost_reported.swap(lost, Ordering::Relaxed);
        if lost > reported {
            tracing::warn!(
                lost = lost - reported,
                "the container manager's process watch lost events; rescans repair the tables"
            );
        }
    }

    /// Live containers (and the recently exited when `exited`).
    pub fn list(&self, exited: bool) -> Vec<Container> {
        self.registry.list(exited)
    }

    /// A container by id, name or unique id prefix.
    pub fn resolve(&self, query: &str) -> Result<Container, ResolveError> {
        self.registry.resolve(query)
    }

    /// A running container by id, name or unique id prefix: what a session may filter on.
    pub fn resolve_running(&self, query: &str) -> Result<Container, ResolveError> {
        match self.registry.resolve(query)? {
            c if c.state == ContainerState::Exited => Err(ResolveError::Exited(c.id)),
            c => Ok(c),
        }
    }

    /// The container a process runs in; `None` for a host process.
    pub fn of_pid(&self, pid: u32) -> Option<Container> {
        if let Some(c) = self.registry.by_pid(pid) {
            return Some(c);
        }
        let root = self.root.as_ref()?;
        let cgroup_id = cgroup::cgroup_id(root, &cgroup::of_pid(pid)?)?;
        let tag = self.lookup(cgroup_id, pid)?;
        self.registry.add_pid(pid, cgroup_id);
        self.registry.resolve(tag.id.as_str()).ok()
    }

    /// Table sizes: live, dead, pids, cgroup tags, host cache.
    pub fn table_sizes(&self) -> [usize; 5] {
        self.registry.sizes()
    }
}

/// The internal trackers' chain end: processes join and leave containers, containers'
/// cgroups are made.
struct KernelWatch {
    manager: Arc<ContainerManager>,
}

impl Handler<Event> for KernelWatch {
    fn handle(&mut self, event: &Event) -> Flow {
        let h = &event.header;
        if let Body::Cgroup(cgroup) = &event.body {
            if !cgroup.removed {
                self.manager
                    .cgroup_made(cgroup.path.as_str(), cgroup.id, h.ts_ns);
            }
            return Flow::Caught;
        }
        match event.kind() {
            "exec" => {
                if self.manager.lookup(h.cgroup_id, h.pid).is_some() {
                    self.manager.registry.add_pid(h.pid, h.cgroup_id);
                }
            }
            "exit" => self.manager.registry.remove_pid(h.pid),
            _ => {}
        }
        Flow::Caught
    }
}
