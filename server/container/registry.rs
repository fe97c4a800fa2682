//! The container tables: containers by id (live, and a bounded list of recently dead ones
//! so late events still resolve), cgroup id -> container tag for the event hot path, and
//! pid -> container. Every table is bounded by what runs plus a fixed allowance.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use dashmap::DashMap;

use super::cgroup::Namespaces;
use super::{ContainerState, Runtime};
use crate::model::ContainerTag;

/// Dead containers kept so that late events and queries still find them.
pub const DEAD_KEEP: usize = 256;
/// Cgroup ids known to be the host's; the cache is emptied when it reaches this size.
const HOST_CACHE: usize = 8192;
/// Containers' new cgroups tagged before any scan saw them.
const MADE_KEEP: usize = 1024;
/// An id prefix must be at least this long to select a container.
const MIN_PREFIX: usize = 3;

/// What the manager knows about one container.
#[derive(Clone, Debug, PartialEq)]
pub struct Container {
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    pub runtime: Runtime,
    pub state: ContainerState,
    pub labels: BTreeMap<String, String>,
    pub pod_uid: Option<String>,
    /// Its cgroup v2 path (below the v2 mount).
    pub cgroup_path: String,
    /// Its cgroup's id first, then those of its sub-cgroups.
    pub cgroup_ids: Vec<u64>,
    pub pids: BTreeSet<u32>,
    pub namespaces: Namespaces,
    pub started_at_ns: Option<u64>,
    pub ended_at_ns: Option<u64>,
}

impl Container {
    /// The tag events carry: the name, else the short id.
    pub fn tag(&self) -> ContainerTag {
        ContainerTag::new(&self.id, self.name.as_deref(), self.image.as_deref())
    }
}

/// A container as discovery finds it: from its cgroups, before any engine has a say.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub id: String,
    pub runtime: Runtime,
    pub pod_uid: Option<String>,
    pub cgroup_path: String,
    pub cgroup_ids: Vec<u64>,
    pub pids: BTreeSet<u32>,
}

/// What an engine (Docker) says about a container.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerState,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("no container `{0}` (give a name, an id, or an id prefix of at least 3 characters)")]
    Unknown(String),
    #[error("container `{0}` has exited")]
    Exited(String),
    #[error("`{query}` matches several containers: {matches}")]
    Ambiguous { query: String, matches: String },
}

#[derive(Default)]
struct Tables {
    live: HashMap<String, Container>,
    dead: VecDeque<Container>,
    pids: HashMap<u32, Arc<str>>,
    /// Cgroups tagged as a runtime made them, oldest first (see `tag_made`).
    made: VecDeque<u64>,
}

#[derive(Default)]
pub struct Registry {
    tables: Mutex<Tables>,
    /// cgroup id -> tag of live and recently dead containers: the hot path's lookup.
    tags: DashMap<u64, ContainerTag>,
    /// cgroup ids seen to be the host's (cgroup ids are never reused).
    host: DashMap<u64, ()>,
    /// Bumped on every change of `tags`, so callers may cache a lookup.
    generation: AtomicU64,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The tag of the container a cgroup belongs to; `None` for the host or unknown.
    pub fn tag(&self, cgroup_id: u64) -> Option<ContainerTag> {
        self.tags.get(&cgroup_id).map(|t| *t)
    }

    pub fn is_host(&self, cgroup_id: u64) -> bool {
        self.host.contains_key(&cgroup_id)
    }

    pub fn note_host(&self, cgroup_id: u64) {
        if self.host.len() >= HOST_CACHE {
            self.host.clear();
        }
        self.host.insert(cgroup_id, ());
    }

    /// True when the container is live and its namespaces and start time are known.
    pub fn has_details(&self, id: &str) -> bool {
        self.lock()
            .live
            .get(id)
            .is_some_and(|c| c.namespaces != Namespaces::default() && c.started_at_ns.is_some())
    }

    /// Records what discovery found; a recently dead container with the same id (a
    /// restart) comes back to life. `details` gives namespaces and start time when they
    /// are not known yet.
    pub fn observe(&self, found: Found, details: Option<(Namespaces, Option<u64>)>) {
        let mut tables = self.lock();
        let tables = &mut *tables;
        if !tables.live.contains_key(&found.id) {
            // A dead container seen again in the cgroup it died in is not back: its cgroup
            // outlived its processes. A restart makes a new cgroup.
            let same_incarnation = tables
                .dead
                .iter()
                .any(|c| c.id == found.id && c.cgroup_ids.first() == found.cgroup_ids.first());
            if same_incarnation {
                return;
            }
            let revived = tables
                .dead
                .iter()
                .position(|c| c.id == found.id)
                .and_then(|i| tables.dead.remove(i));
            let container = match revived {
                Some(mut c) => {
                    self.forget_tags(&c.cgroup_ids);
                    c.cgroup_ids.clear();
                    c.ended_at_ns = None;
                    c.started_at_ns = None;
                    c.namespaces = Namespaces::default();
                    c.state = ContainerState::Running;
                    c
                }
                None => Container {
                    id: found.id.clone(),
                    name: None,
                    image: None,
                    runtime: found.runtime,
                    state: ContainerState::Running,
                    labels: BTreeMap::new(),
                    pod_uid: found.pod_uid.clone(),
                    cgroup_path: found.cgroup_path.clone(),
                    cgroup_ids: Vec::new(),
                    pids: BTreeSet::new(),
                    namespaces: Namespaces::default(),
                    started_at_ns: None,
                    ended_at_ns: None,
                },
            };
            tables.live.insert(found.id.clone(), container);
        }
        let Some(container) = tables.live.get_mut(&found.id) else {
            return;
        };
        if let Some((namespaces, started)) = details {
            container.namespaces = namespaces;
            container.started_at_ns = container.started_at_ns.or(started);
        }
        container.cgroup_path = found.cgroup_path;
        let gone: Vec<u64> = container
            .cgroup_ids
            .iter()
            .copied()
            .filter(|id| !found.cgroup_ids.contains(id))
            .collect();
        self.forget_tags(&gone);
        container.cgroup_ids = found.cgroup_ids;
        let id: Arc<str> = Arc::from(container.id.as_str());
        for pid in container.pids.difference(&found.pids) {
            tables.pids.remove(pid);
        }
        for &pid in &found.pids {
            tables.pids.insert(pid, id.clone());
        }
        container.pids = found.pids;
        self.publish(container);
    }

    /// Applies an engine's view; an exited container is moved to the dead.
    pub fn apply_engine(&self, info: EngineInfo, now_ns: u64) {
        let mut tables = self.lock();
        let Some(container) = tables.live.get_mut(&info.id) else {
            return;
        };
        container.name = Some(info.name);
        container.image = Some(info.image);
        container.labels = info.labels;
        container.state = info.state;
        self.publish(container);
        if info.state == ContainerState::Exited {
            self.bury(&mut tables, &info.id, now_ns);
        }
    }

    /// Names a live container the engine announced but has not described yet (one that
    /// ended before the engine's start event could be asked about).
    pub fn name_if_unknown(&self, id: &str, name: Option<String>, image: Option<String>) {
        let mut tables = self.lock();
        let Some(container) = tables.live.get_mut(id).filter(|c| c.name.is_none()) else {
            return;
        };
        container.name = name;
        container.image = container.image.take().or(image);
        self.publish(container);
    }

    /// Marks a container dead (its processes are gone).
    pub fn mark_dead(&self, id: &str, now_ns: u64) {
        self.bury(&mut self.lock(), id, now_ns);
    }

    /// Marks dead every live container for which `alive` is false.
    pub fn retain_live(&self, now_ns: u64, mut alive: impl FnMut(&Container) -> bool) {
        let mut tables = self.lock();
        let dead: Vec<String> = tables
            .live
            .values()
            .filter(|c| !alive(c))
            .map(|c| c.id.clone())
            .collect();
        for id in dead {
            self.bury(&mut tables, &id, now_ns);
        }
    }

    fn bury(&self, tables: &mut Tables, id: &str, now_ns: u64) {
        let Some(mut container) = tables.live.remove(id) else {
            return;
        };
        for pid in &container.pids {
            tables.pids.remove(pid);
        }
        container.pids.clear();
        container.state = ContainerState::Exited;
        container.ended_at_ns = Some(now_ns);
        tables.dead.push_back(container);
        while tables.dead.len() > DEAD_KEEP {
            if let Some(old) = tables.dead.pop_front() {
                self.forget_tags(&old.cgroup_ids);
            }
        }
    }

    fn publish(&self, container: &Container) {
        let tag = container.tag();
        for &cgroup_id in &container.cgroup_ids {
            self.host.remove(&cgroup_id);
            self.tags.insert(cgroup_id, tag);
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn forget_tags(&self, cgroup_ids: &[u64]) {
        for id in cgroup_ids {
            self.tags.remove(id);
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Tags a cgroup a runtime has just made for a container, before anything runs in
    /// it: the events of a container that ends before any scan sees it still name it.
    /// The last `MADE_KEEP` such tags are kept, and any a known container claims.
    pub fn tag_made(&self, cgroup_id: u64, tag: ContainerTag) {
        let mut tables = self.lock();
        tables.made.push_back(cgroup_id);
        if tables.made.len() > MADE_KEEP {
            if let Some(old) = tables.made.pop_front() {
                let claimed = tables
                    .live
                    .values()
                    .chain(&tables.dead)
                    .any(|c| c.cgroup_ids.contains(&old));
                if !claimed {
                    self.tags.remove(&old);
                }
            }
        }
        self.host.remove(&cgroup_id);
        self.tags.insert(cgroup_id, tag);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Adds a process to the container its cgroup belongs to (a process exec'd there).
    pub fn add_pid(&self, pid: u32, cgroup_id: u64) {
        let mut tables = self.lock();
        let tables = &mut *tables;
        let Some(container) = tables
            .live
            .values_mut()
            .find(|c| c.cgroup_ids.contains(&cgroup_id))
        else {
            return;
        };
        container.pids.insert(pid);
        tables.pids.insert(pid, Arc::from(container.id.as_str()));
    }

    /// Forgets a process that exited.
    pub fn remove_pid(&self, pid: u32) {
        let mut tables = self.lock();
        if let Some(id) = tables.pids.remove(&pid) {
            if let Some(c) = tables.live.get_mut(&*id) {
                c.pids.remove(&pid);
            }
        }
    }

    /// The live container a process belongs to, if the table knows it.
    pub fn by_pid(&self, pid: u32) -> Option<Container> {
        let tables = self.lock();
        let id = tables.pids.get(&pid)?;
        tables.live.get(&**id).cloned()
    }

    /// Live containers by id, then the recently dead ones (newest first) when `dead`.
    pub fn list(&self, dead: bool) -> Vec<Container> {
        let tables = self.lock();
        let mut out: Vec<Container> = tables.live.values().cloned().collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        if dead {
            out.extend(tables.dead.iter().rev().cloned());
        }
        out
    }

    /// Finds a container by id, name, or unique id prefix; live ones first, then the
    /// most recently dead.
    pub fn resolve(&self, query: &str) -> Result<Container, ResolveError> {
        let tables = self.lock();
        let name = query.strip_prefix('/').unwrap_or(query);
        let exact = |c: &&Container| c.id == query || c.name.as_deref() == Some(name);
        let live = || tables.live.values();
        let dead = || tables.dead.iter().rev();
        if let Some(c) = live().find(exact).or_else(|| dead().find(exact)) {
            return Ok(c.clone());
        }
        if query.len() >= MIN_PREFIX {
            for group in [live().collect::<Vec<_>>(), dead().collect()] {
                let matches: Vec<&Container> = group
                    .into_iter()
                    .filter(|c| c.id.starts_with(query))
                    .collect();
                match matches.as_slice() {
                    [] => continue,
                    [one] => return Ok((*one).clone()),
                    many => {
                        return Err(ResolveError::Ambiguous {
                            query: query.to_string(),
                            matches: many
                                .iter()
                                .map(|c| c.tag().name.as_str().to_string())
                                .collect::<Vec<_>>()
                                .join(", "),
                        })
                    }
                }
            }
        }
        Err(ResolveError::Unknown(query.to_string()))
    }

    /// Sizes of the tables: live, dead, pids, cgroup tags, host cache (for tests and
    /// the churn benchmark).
    pub fn sizes(&self) -> [usize; 5] {
        let tables = self.lock();
        [
            tables.live.len(),
            tables.dead.len(),
            tables.pids.len(),
            self.tags.len(),
            self.host.len(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(id: &str, cgroups: &[u64], pids: &[u32]) -> Found {
        Found {
            id: id.to_string(),
            runtime: Runtime::Docker,
            pod_uid: None,
            cgroup_path: format!("/docker/{id}"),
            cgroup_ids: cgroups.to_vec(),
            pids: pids.iter().copied().collect(),
        }
    }

    fn engine(id: &str, name: &str, state: ContainerState) -> EngineInfo {
        EngineInfo {
            id: id.to_string(),
            name: name.to_string(),
            image: "bb:latest".to_string(),
            labels: BTreeMap::new(),
            state,
        }
    }

    const A: &str = "aaaa1111aaaa1111aaaa1111aaaa1111aaaa1111aaaa1111aaaa1111aaaa1111";
    const B: &str = "aaaa2222aaaa2222aaaa2222aaaa2222aaaa2222aaaa2222aaaa2222aaaa2222";

    #[test]
    fn tags_follow_discovery_and_engine() {
        let r = Registry::default();
        r.observe(found(A, &[10, 11], &[100]), None);
        assert_eq!(r.tag(10).unwrap().name.as_str(), "aaaa1111aaaa");
        let generation = r.generation();
        r.apply_engine(engine(A, "web1", ContainerState::Running), 0);
        assert!(r.generation() > generation);
        let tag = r.tag(11).unwrap();
        assert_eq!(
            (tag.id.as_str(), tag.name.as_str(), tag.image.as_str()),
            (A, "web1", "bb:latest")
        );
        assert_eq!(r.by_pid(100).unwrap().id, A);
        assert_eq!(r.tag(12), None);
    }

    #[test]
    fn resolves_by_name_id_and_unique_prefix() {
        let r = Registry::default();
        r.observe(found(A, &[10], &[]), None);
        r.observe(found(B, &[20], &[]), None);
        r.apply_engine(engine(A, "web1", ContainerState::Running), 0);
        assert_eq!(r.resolve("web1").unwrap().id, A);
        assert_eq!(r.resolve("/web1").unwrap().id, A);
        assert_eq!(r.resolve(B).unwrap().id, B);
        assert_eq!(r.resolve("aaaa2").unwrap().id, B);
        assert!(matches!(
            r.resolve("aaaa"),
            Err(ResolveError::Ambiguous { .. })
        ));
        assert_eq!(r.resolve("aa"), Err(ResolveError::Unknown("aa".into())));
        assert_eq!(r.resolve("nope"), Err(ResolveError::Unknown("nope".into())));
    }

    #[test]
    fn dead_containers_are_kept_bounded_and_pids_forgotten() {
        let r = Registry::default();
        for i in 0..(DEAD_KEEP as u64 + 50) {
            let id = format!("{i:064x}");
            r.observe(found(&id, &[1000 + i], &[i as u32 + 1]), None);
            r.mark_dead(&id, i);
        }
        let [live, dead, pids, tags, _] = r.sizes();
        assert_eq!((live, dead, pids, tags), (0, DEAD_KEEP, 0, DEAD_KEEP));
        // The newest dead still resolve (late events), the oldest are gone.
        let newest = format!("{:064x}", DEAD_KEEP as u64 + 49);
        let found = r.resolve(&newest).unwrap();
        assert_eq!(
            (found.state, found.ended_at_ns),
            (ContainerState::Exited, Some(DEAD_KEEP as u64 + 49))
        );
        assert!(r.tag(1000 + DEAD_KEEP as u64 + 49).is_some());
        assert!(r.tag(1000).is_none());
    }

    #[test]
    fn a_restart_revives_the_container_with_new_cgroups() {
        let r = Registry::default();
        r.observe(found(A, &[10], &[5]), None);
        r.apply_engine(engine(A, "web1", ContainerState::Exited), 1);
        assert_eq!(r.list(false), vec![]);
        r.observe(found(A, &[30], &[6]), None);
        let c = r.resolve("web1").unwrap();
        assert_eq!(
            (c.state, c.cgroup_ids.clone()),
            (ContainerState::Running, vec![30])
        );
        assert_eq!(r.tag(10), None);
        assert_eq!(r.tag(30).unwrap().name.as_str(), "web1");
        assert_eq!(r.sizes()[1], 0);
    }

    #[test]
    fn host_cache_is_bounded() {
        let r = Registry::default();
        for id in 0..(HOST_CACHE as u64 * 2) {
            r.note_host(id);
        }
        assert!(r.sizes()[4] <= HOST_CACHE);
    }
}
