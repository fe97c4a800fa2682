//! The server's baselines: learnBaseline records one in the background (a row in SQLite
//! from its start, so that a server stopped meanwhile says it was interrupted); a ready
//! baseline joins the standing guard's, and a running guard that does not yet run the
//! trackers baselines read is started again with them. Baselines outlive restarts;
//! deleteBaseline drops one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::baseline::{self, Learned, Profile, Scope};
use super::standing::StandingGuard;
use crate::container::{ContainerManager, ResolveError};
use crate::model::wall_clock_ns;
use crate::results::store::{BaselineRecord, Store, StoreError};

/// The longest a baseline may learn.
pub const MAX_LEARN_SECS: u64 = 86_400;
/// Learning runs at once at most: each runs four trackers.
pub const MAX_LEARNING: usize = 4;
/// How often a learned baseline the store refused is offered again.
const STORE_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("durationSecs must be 1 to {MAX_LEARN_SECS}, not {0}")]
    BadDuration(u64),
    #[error("name either a container or an image to learn, not both or neither")]
    BadScope,
    #[error(transparent)]
    Container(#[from] ResolveError),
    #[error("no running container has the image `{0}`")]
    NoContainerOfImage(String),
    #[error("{MAX_LEARNING} baselines are learning already; wait for one to end")]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a baseline is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaselineState {
    Learning,
    Ready,
    Failed,
    /// The server stopped while it learned.
    Interrupted,
}

impl BaselineState {
    fn as_str(self) -> &'static str {
        match self {
            BaselineState::Learning => "learning",
            BaselineState::Ready => "ready",
            BaselineState::Failed => "failed",
            BaselineState::Interrupted => "interrupted",
        }
    }

    fn parse(text: &str) -> BaselineState {
        match text {
            "learning" => BaselineState::Learning,
            "ready" => BaselineState::Ready,
            "interrupted" => BaselineState::Interrupted,
            _ => BaselineState::Failed,
        }
    }
}

/// A baseline as the API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Baseline {
    pub id: i64,
    pub scope: Scope,
    pub started_ns: u64,
    pub duration_secs: u64,
    pub state: BaselineState,
    /// Empty until ready.
    pub profile: Profile,
    /// Events seen and lost while learning.
    pub events: u64,
    pub lost: u64,
    pub error: Option<String>,
}

impl Baseline {
    fn from_record(r: BaselineRecord) -> Baseline {
        let scope = Scope::from_parts(&r.scope, r.target);
        let profile = r
            .profile
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default();
        Baseline {
            id: r.id,
            scope,
            started_ns: r.started_ns,
            duration_secs: r.duration_secs,
            state: BaselineState::parse(&r.state),
            profile,
            events: r.events,
            lost: r.lost,
            error: r.error,
        }
    }

    fn to_record(&self) -> BaselineRecord {
        let (scope, target) = self.scope.parts();
        BaselineRecord {
            id: self.id,
            scope: scope.to_string(),
            target: target.to_string(),
            started_ns: self.started_ns,
            duration_secs: self.duration_secs,
            state: self.state.as_str().to_string(),
            profile: (self.state == BaselineState::Ready)
                .then(|| serde_json::to_string(&self.profile).expect("a profile serializes")),
            events: self.events,
            lost: self.lost,
            error: self.error.clone(),
        }
    }
}

/// What to learn: a container (by name or id) or an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LearnTarget {
    Container(String),
    Image(String),
}

pub struct Baselines {
    store: Arc<Store>,
    guard: Arc<StandingGuard>,
    containers: Arc<ContainerManager>,
    learning: AtomicUsize,
}

impl Baselines {
    /// Marks what a previous server was learning interrupted and hands the ready
    /// baselines to the guard (call before the guard is restored, so that it runs their
    /// trackers from its start).
    pub async fn open(
        store: Arc<Store>,
        guard: Arc<StandingGuard>,
        containers: Arc<ContainerManager>,
    ) -> Result<Arc<Baselines>, StoreError> {
        let interrupted = store.mark_learning_interrupted().await?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "baselines a previous server was learning are marked interrupted"
            );
        }
        let baselines = Arc::new(Baselines {
            store,
            guard,
            containers,
            learning: AtomicUsize::new(0),
        });
        for b in baselines.list().await? {
            if b.state == BaselineState::Ready {
                baselines
                    .guard
                    .baselines()
                    .insert(Learned::new(b.id, b.scope, b.profile));
            }
        }
        Ok(baselines)
    }

    pub async fn list(&self) -> Result<Vec<Baseline>, StoreError> {
        let records = self.store.baselines().await?;
        Ok(records.into_iter().map(Baseline::from_record).collect())
    }

    /// Deletes a baseline (a learning one ends without a profile); false when there was
    /// no such baseline.
    pub async fn delete(&self, id: i64) -> Result<bool, StoreError> {
        self.guard.baselines().remove(id);
        self.store.delete_baseline(id).await
    }

    /// Starts learning `target` for `duration_secs`, in the background; returns the
    /// baseline, `learning`.
    pub async fn learn(
        self: &Arc<Self>,
        target: LearnTarget,
        duration_secs: u64,
    ) -> Result<Baseline, BaselineError> {
        if !(1..=MAX_LEARN_SECS).contains(&duration_secs) {
            return Err(BaselineError::BadDuration(duration_secs));
        }
        let (scope, cgroup_ids) = self.resolve(target)?;
        if self.learning.fetch_add(1, Ordering::SeqCst) >= MAX_LEARNING {
            self.learning.fetch_sub(1, Ordering::SeqCst);
            return Err(BaselineError::TooMany);
        }
        let started_ns = wall_clock_ns();
        let (kind, name) = scope.parts();
        let id = match self
            .store
            .insert_baseline(kind, name, started_ns, duration_secs)
            .await
        {
            Ok(id) => id,
            Err(err) => {
                self.learning.fetch_sub(1, Ordering::SeqCst);
                return Err(err.into());
            }
        };
        let baseline = Baseline {
            id,
            scope,
            started_ns,
            duration_secs,
            state: BaselineState::Learning,
            profile: Profile::default(),
            events: 0,
            lost: 0,
            error: None,
        };
        tracing::info!(id, scope = %baseline.scope, duration_secs, "learning a baseline");
        let this = self.clone();
        let learning = baseline.clone();
        tokio::spawn(async move { this.run(learning, cgroup_ids).await });
        Ok(baseline)
    }

    /// The scope of `target` and the cgroups its containers run in now.
    fn resolve(&self, target: LearnTarget) -> Result<(Scope, Vec<u64>), BaselineError> {
        match target {
            LearnTarget::Container(query) => {
                let container = self.containers.resolve_running(&query)?;
                let name = container.tag().name.as_str().to_string();
                Ok((Scope::Container(name), container.cgroup_ids))
            }
            LearnTarget::Image(image) => {
                let cgroup_ids: Vec<u64> = self
                    .containers
                    .list(false)
                    .into_iter()
                    .filter(|c| c.image.as_deref() == Some(image.as_str()))
                    .flat_map(|c| c.cgroup_ids)
                    .collect();
                if cgroup_ids.is_empty() {
                    return Err(BaselineError::NoContainerOfImage(image));
                }
                Ok((Scope::Image(image), cgroup_ids))
            }
        }
    }

    /// Learns, stores the outcome and, when ready, hands the baseline to the guard.
    async fn run(&self, mut baseline: Baseline, cgroup_ids: Vec<u64>) {
        let containers = self.containers.clone();
        let duration = Duration::from_secs(baseline.duration_secs);
        let learned =
            tokio::task::spawn_blocking(move || baseline::learn(&cgroup_ids, duration, containers))
                .await;
        self.learning.fetch_sub(1, Ordering::SeqCst);
        match learned {
            Ok(Ok(run)) => {
                baseline.state = BaselineState::Ready;
                baseline.profile = run.profile;
                baseline.events = run.stats.seen;
                baseline.lost = run.stats.lost();
            }
            Ok(Err(err)) => {
                baseline.state = BaselineState::Failed;
                baseline.error = Some(err.to_string());
            }
            Err(err) => {
                baseline.state = BaselineState::Failed;
                baseline.error = Some(format!("learning panicked: {err}"));
            }
        }
        tracing::info!(
            id = baseline.id,
            state = baseline.state.as_str(),
            "baseline learned"
        );
        // A store that fails (a full disk) is asked again every second: what was learned
        // is not thrown away, and `baselines` says LEARNING until it is stored.
        let record = baseline.to_record();
        let still_there = loop {
            match self.store.finish_baseline(&record).await {
                Ok(still_there) => break still_there,
                Err(err) => {
                    tracing::warn!(id = baseline.id, "storing a learned baseline: {err}");
                    tokio::time::sleep(STORE_RETRY).await;
                }
            }
        };
        // Deleted while it learned: not enforced.
        if baseline.state == BaselineState::Ready && still_there {
            self.guard.baselines().insert(Learned::new(
                baseline.id,
                baseline.scope,
                baseline.profile,
            ));
            self.guard.enforce_baselines().await;
        }
    }
}
