//! The fleet: servers ("nodes") that share one PostgreSQL database run sessions together.
//!
//! `startSession(input: {nodes: [...]})` on any node writes a fleet session and one
//! PENDING part per node, then NOTIFYs [`CHANNEL`]. Every node LISTENs, and also looks
//! every second (a notification sent while its connection was down is gone), claims its
//! PENDING parts, and runs each as a local SQLITE session with the same tracker, filters
//! and window ([`part`]). While the part runs, the node copies its new events from the
//! local store into `fleet_events`: the local store is the buffer, so a slow or
//! unreachable database delays the copy and loses nothing. `session(id)` and the queries
//! on it answer for the whole fleet from PostgreSQL ([`PgResults`]).
//!
//! Nodes beat every second in `fleet_nodes`. A started part whose node has been silent
//! for [`SILENT`] reads INTERRUPTED; a part no node picked up before its window ended
//! reads NO_ANSWER. A node that restarts marks the parts it was running INTERRUPTED: the
//! local sessions behind them ended with the old process.

mod part;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::Row;

use crate::config::{is_node_name, FleetConfig};
use crate::model::{wall_clock_ns, SessionId};
use crate::results::postgres::{PgResults, Table};
use crate::results::store::{SessionRecord, SessionStatus, StoreKind};
use crate::results::SessionResults;
use crate::session::{tracker_info, SessionError, SessionManager, StartRequest};

/// The notification channel: payloads are fleet session ids.
const CHANNEL: &str = "eunomia_fleet";
/// How often a node beats and looks for parts it missed.
const BEAT: Duration = Duration::from_secs(1);
/// A node silent this long is taken for gone, and its running parts for INTERRUPTED.
pub const SILENT: Duration = Duration::from_secs(5);
/// The most nodes one fleet session may name (each is a row and a part to follow).
pub const MAX_NODES: usize = 1024;
/// How often a node deletes fleet sessions past `retention.max_age_secs` (any node may).
const EXPIRE_EVERY: Duration = Duration::from_secs(60);
/// The database's clock in nanoseconds, which every node's beats are written in.
const DB_NOW: &str = "(extract(epoch FROM clock_timestamp()) * 1000000000)::BIGINT";
/// Fleet session ids start with this, so that any node tells them from its own.
const ID_PREFIX: &str = "fleet-";

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("fleet database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrating the fleet database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("no fleet session `{0}`")]
    NotFound(String),
    #[error("nodes {0:?} name no node of the fleet heard from in the last {secs}s", secs = SILENT.as_secs())]
    NoNodes(Vec<String>),
    #[error("a fleet session names at most {MAX_NODES} nodes, got {0}")]
    TooManyNodes(usize),
    #[error("node names must be 1 to 64 letters, digits, '.', '_' or '-'; got `{0}`")]
    BadNodeName(String),
    #[error("fleet.cgroup {path}: {error}")]
    Scope { path: String, error: String },
    #[error("corrupt fleet row: {0}")]
    Corrupt(String),
    #[error("reading a part's events from this node's store: {0}")]
    LocalEvents(#[from] crate::results::ResultsError),
}

/// A part's state, as `fleet_parts.status` holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, async_graphql::Enum)]
pub enum PartStatus {
    /// Written by the session's origin; the node has not picked it up yet.
    Pending,
    Starting,
    Running,
    Completed,
    Stopped,
    Failed,
    /// The node went silent, or restarted, while its part ran.
    Interrupted,
    /// The node did not pick the part up before the window ended.
    NoAnswer,
}

impl PartStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Starting => "STARTING",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Stopped => "STOPPED",
            Self::Failed => "FAILED",
            Self::Interrupted => "INTERRUPTED",
            Self::NoAnswer => "NO_ANSWER",
        }
    }

    fn parse(text: &str) -> Result<Self, FleetError> {
        [
            Self::Pending,
            Self::Starting,
            Self::Running,
            Self::Completed,
            Self::Stopped,
            Self::Failed,
            Self::Interrupted,
            Self::NoAnswer,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| FleetError::Corrupt(format!("part status `{text}`")))
    }

    fn is_live(self) -> bool {
        matches!(self, Self::Pending | Self::Starting | Self::Running)
    }

    /// The part a local session's final status makes.
    fn of_local(status: SessionStatus) -> Self {
        match status {
            SessionStatus::Starting | SessionStatus::Running => Self::Running,
            SessionStatus::Completed => Self::Completed,
            SessionStatus::Stopped => Self::Stopped,
            SessionStatus::Failed => Self::Failed,
            SessionStatus::Interrupted => Self::Interrupted,
        }
    }
}

/// One node's part of a fleet session.
#[derive(Clone, Debug, async_graphql::SimpleObject)]
#[graphql(name = "FleetPart")]
pub struct Part {
    pub node: String,
    pub status: PartStatus,
    /// The session that runs the part on its node (ask that node for it).
    pub local_session_id: Option<String>,
    /// Events the part recorded (final once it has ended; while it runs, those copied
    /// into the fleet database so far).
    pub event_count: u64,
    /// Events the part's node lost (counted, never silent; see its `health`).
    pub lost_count: u64,
    /// Events copied into the fleet database: what fleet queries read.
    pub shipped_count: u64,
    pub error: Option<String>,
}

pub struct Fleet {
    node: String,
    pool: PgPool,
    manager: Arc<SessionManager>,
    /// The cgroup id of `fleet.cgroup`: every part this node runs is kept to it.
    scope: Option<u64>,
    /// How this node's beats have been reaching the database.
    reach: Mutex<Reach>,
}

/// Since when a node's beats have reached the database without a gap, and the last one.
#[derive(Clone, Copy)]
struct Reach {
    since: Instant,
    last_beat: Instant,
}

impl Fleet {
    /// Joins the fleet: connects, migrates the shared tables, marks the parts this node
    /// ran before a restart INTERRUPTED, and starts beating and listening.
    pub async fn join(
        config: &FleetConfig,
        database: &str,
        manager: Arc<SessionManager>,
    ) -> Result<Arc<Self>, FleetError> {
        let node = config.node_name().map_err(FleetError::BadNodeName)?;
        let scope = match &config.cgroup {
            Some(path) => Some(cgroup_id(path)?),
            None => None,
        };
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect(database)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        let now = wall_clock_ns() as i64;
        sqlx::query(&format!(
            "INSERT INTO fleet_nodes (node, last_seen, started_at) VALUES ($1, {DB_NOW}, $2) \
             ON CONFLICT (node) DO UPDATE SET last_seen = {DB_NOW}, started_at = $2"
        ))
        .bind(&node)
        .bind(now)
        .execute(&pool)
        .await?;
        let interrupted = sqlx::query(
            "UPDATE fleet_parts SET status = 'INTERRUPTED', ended_at = $2, \
             error = 'the node restarted while its part ran' \
             WHERE node = $1 AND status IN ('STARTING', 'RUNNING')",
        )
        .bind(&node)
        .bind(now)
        .execute(&pool)
        .await?
        .rows_affected();
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "fleet parts of this node's last run marked INTERRUPTED"
            );
        }
        let fleet = Arc::new(Self {
            node,
            pool,
            manager,
            scope,
            reach: Mutex::new(Reach {
                since: Instant::now(),
                last_beat: Instant::now(),
            }),
        });
        tokio::spawn(fleet.clone().watch());
        Ok(fleet)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn is_fleet_id(id: &str) -> bool {
        id.starts_with(ID_PREFIX)
    }

    /// Starts a session on `nodes` (`["*"]`: every node heard from in the last
    /// [`SILENT`]); returns at once, with every part PENDING.
    pub async fn start(
        &self,
        request: StartRequest,
        nodes: &[String],
    ) -> Result<SessionRecord, FleetError> {
        let info = self.manager.check_request(&request)?.info();
        if nodes.len() > MAX_NODES {
            return Err(FleetError::TooManyNodes(nodes.len()));
        }
        let now = wall_clock_ns() as i64;
        let mut targets = BTreeSet::new();
        for node in nodes {
            if node == "*" {
                let alive: Vec<String> = sqlx::query_scalar(&format!(
                    "SELECT node FROM fleet_nodes WHERE last_seen >= {DB_NOW} - $1"
                ))
                .bind(SILENT.as_nanos() as i64)
                .fetch_all(&self.pool)
                .await?;
                targets.extend(alive);
            } else {
                if !is_node_name(node) {
                    return Err(FleetError::BadNodeName(node.clone()));
                }
                targets.insert(node.clone());
            }
        }
        if targets.is_empty() {
            return Err(FleetError::NoNodes(nodes.to_vec()));
        }
        let id = format!("{ID_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let ends_at = now + request.duration_secs * 1_000_000_000;
        let body = serde_json::to_value(&request)
            .map_err(|e| FleetError::Corrupt(format!("the request: {e}")))?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO fleet_sessions (id, tracker, label, request, origin, started_at, ends_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(info.name)
        .bind(&request.label)
        .bind(&body)
        .bind(&self.node)
        .bind(now)
        .bind(ends_at)
        .execute(&mut *tx)
        .await?;
        for node in &targets {
            sqlx::query(
                "INSERT INTO fleet_parts (session_id, node, status) VALUES ($1, $2, 'PENDING')",
            )
            .bind(&id)
            .bind(node)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(id, nodes = ?targets, "fleet session started");
        self.record(&id).await
    }

    /// Asks every node to stop its part now; returns the session as it then reads.
    pub async fn stop(&self, id: &str) -> Result<SessionRecord, FleetError> {
        let found = sqlx::query("UPDATE fleet_sessions SET stop_requested = TRUE WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if found == 0 {
            return Err(FleetError::NotFound(id.to_string()));
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.record(id).await
    }

    /// The fleet session as one session: its status from its parts' (RUNNING while any
    /// part may still record; then COMPLETED when every part completed, STOPPED when
    /// stopped, FAILED when every part failed, else INTERRUPTED), its counts their sums.
    pub async fn record(&self, id: &str) -> Result<SessionRecord, FleetError> {
        let row = sqlx::query(
            "SELECT tracker, label, request, started_at, ends_at, stop_requested \
             FROM fleet_sessions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| FleetError::NotFound(id.to_string()))?;
        let parts = self.parts(id).await?;
        let request: serde_json::Value = row.try_get("request")?;
        let statuses: Vec<PartStatus> = parts.iter().map(|p| p.status).collect();
        let status = if statuses.iter().any(|s| s.is_live()) {
            SessionStatus::Running
        } else if row.try_get("stop_requested")? {
            SessionStatus::Stopped
        } else if statuses.iter().all(|s| *s == PartStatus::Completed) {
            SessionStatus::Completed
        } else if statuses.iter().all(|s| *s == PartStatus::Failed) {
            SessionStatus::Failed
        } else {
            SessionStatus::Interrupted
        };
        let ends_at: i64 = row.try_get("ends_at")?;
        let failed: Vec<String> = parts
            .iter()
            .filter_map(|p| p.error.as_ref().map(|e| format!("{}: {e}", p.node)))
            .collect();
        Ok(SessionRecord {
            id: SessionId::from(id.to_string()),
            tracker: row.try_get("tracker")?,
            label: row.try_get("label")?,
            status,
            store: StoreKind::Sqlite,
            filter: serde_json::json!({
                "pid": request["pid"],
                "comm": request["comm"],
                "cgroupId": request["cgroup_id"],
                "container": request["container"],
                "containerName": request["container_name"],
                "image": request["image"],
                "nodes": parts.iter().map(|p| p.node.as_str()).collect::<Vec<_>>(),
            }),
            config: request
                .get("config")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
            started_at_ns: row.try_get::<i64, _>("started_at")? as u64,
            ends_at_ns: ends_at as u64,
            ended_at_ns: status.has_ended().then_some(ends_at as u64),
            event_count: parts.iter().map(|p| p.event_count).sum(),
            lost_count: parts.iter().map(|p| p.lost_count).sum(),
            error: (!failed.is_empty()).then(|| failed.join("; ")),
            memory_snapshot: None,
        })
    }

    /// Deletes an ended fleet session and every node's events of it; false when there
    /// is none. One that may still record is refused.
    pub async fn delete(&self, id: &str) -> Result<bool, FleetError> {
        match self.record(id).await {
            Ok(record) if !record.status.has_ended() => {
                return Err(SessionError::StillRunning(record.id).into())
            }
            Ok(_) => {}
            Err(FleetError::NotFound(_)) => return Ok(false),
            Err(err) => return Err(err),
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM fleet_events WHERE session_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM fleet_sessions WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes the fleet sessions whose window ended more than `retention.max_age_secs`
    /// ago and that no part may still add to, with their events.
    async fn expire(&self) -> Result<(), FleetError> {
        let Some(max_age) = self.manager.config().retention.max_age_secs else {
            return Ok(());
        };
        let before = wall_clock_ns() as i64 - (max_age as i64).saturating_mul(1_000_000_000);
        let old: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM fleet_sessions s WHERE ends_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM fleet_parts p WHERE p.session_id = s.id \
              AND p.status IN ('PENDING', 'STARTING', 'RUNNING'))",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await?;
        for id in old {
            if self.delete(&id).await? {
                tracing::info!(id, "fleet session past retention deleted");
            }
        }
        Ok(())
    }

    /// The newest fleet sessions, newest first, at most `limit`.
    pub async fn list(&self, limit: usize) -> Result<Vec<SessionRecord>, FleetError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM fleet_sessions ORDER BY started_at DESC, id LIMIT $1",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            records.push(self.record(&id).await?);
        }
        Ok(records)
    }

    /// Every node's part, by node name; parts whose node went silent, or that no node
    /// picked up in time, are marked so first.
    pub async fn parts(&self, id: &str) -> Result<Vec<Part>, FleetError> {
        self.mark_silent().await?;
        let rows = sqlx::query(
            "SELECT node, status, local_id, event_count, lost_count, shipped_count, error \
             FROM fleet_parts WHERE session_id = $1 ORDER BY node",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Part {
                    node: row.try_get("node")?,
                    status: PartStatus::parse(row.try_get("status")?)?,
                    local_session_id: row.try_get("local_id")?,
                    event_count: row.try_get::<i64, _>("event_count")? as u64,
                    lost_count: row.try_get::<i64, _>("lost_count")? as u64,
                    shipped_count: row.try_get::<i64, _>("shipped_count")? as u64,
                    error: row.try_get("error")?,
                })
            })
            .collect()
    }

    /// The fleet session's results, read from the fleet database.
    pub fn results(&self, record: &SessionRecord) -> Result<Arc<dyn SessionResults>, FleetError> {
        Ok(Arc::new(PgResults::new(
            self.pool.clone(),
            Table::Fleet,
            record.id.to_string(),
            tracker_info(&record.tracker)?,
            Duration::from_secs(self.manager.config().limits.request_timeout_secs),
        )))
    }

    /// INTERRUPTED for started parts of silent nodes, NO_ANSWER for parts still pending
    /// when their window ended. Only once this node's beats have reached the database
    /// without a gap for [`SILENT`]: after an outage every node is behind, and none is taken for gone
    /// before the others have had time to beat again. Beats are in the database's clock,
    /// so that nodes' clocks need not agree.
    async fn mark_silent(&self) -> Result<(), FleetError> {
        let reach = *self.reach.lock().unwrap();
        let reachable = reach.last_beat.elapsed() <= 2 * BEAT && reach.since.elapsed() >= SILENT;
        if reachable {
            sqlx::query(&format!(
                "UPDATE fleet_parts p SET status = 'INTERRUPTED', ended_at = {DB_NOW}, \
                 error = 'the node stopped answering while its part ran' \
                 FROM fleet_nodes n WHERE p.node = n.node \
                 AND p.status IN ('STARTING', 'RUNNING') AND n.last_seen < {DB_NOW} - $1",
            ))
            .bind(SILENT.as_nanos() as i64)
            .execute(&self.pool)
            .await?;
        }
        let now = wall_clock_ns() as i64;
        sqlx::query(
            "UPDATE fleet_parts p SET status = 'NO_ANSWER', \
             error = 'the node did not pick its part up before the window ended' \
             FROM fleet_sessions s WHERE p.session_id = s.id AND p.status = 'PENDING' \
             AND s.ends_at < $1",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Beats, and runs the parts given to this node: on each notification, and every
    /// [`BEAT`] in case one was missed.
    async fn watch(self: Arc<Self>) {
        let mut listener = match PgListener::connect_with(&self.pool).await {
            Ok(mut listener) => match listener.listen(CHANNEL).await {
                Ok(()) => Some(listener),
                Err(err) => {
                    tracing::warn!("fleet: not listening ({err}); looking every second only");
                    None
                }
            },
            Err(err) => {
                tracing::warn!("fleet: not listening ({err}); looking every second only");
                None
            }
        };
        let mut beat = tokio::time::interval(BEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut expire = tokio::time::interval(EXPIRE_EVERY);
        loop {
            let notified = async {
                match listener.as_mut() {
                    // Errors are the connection's: the listener reconnects on the next call.
                    Some(listener) => listener.try_recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = beat.tick() => {
                    if let Err(err) = self.beat().await {
                        tracing::warn!("fleet heartbeat: {err}");
                    }
                }
                _ = expire.tick() => {
                    if let Err(err) = self.expire().await {
                        tracing::warn!("fleet retention: {err}");
                    }
                }
                got = notified => if let Err(err) = got {
                    tracing::warn!("fleet notifications: {err}");
                    tokio::time::sleep(BEAT).await;
                }
            }
            if let Err(err) = self.claim_parts().await {
                tracing::warn!("fleet: looking for parts to run: {err}");
            }
        }
    }

    async fn beat(&self) -> Result<(), FleetError> {
        let beat = sqlx::query(&format!(
            "UPDATE fleet_nodes SET last_seen = {DB_NOW} WHERE node = $1"
        ))
        .bind(&self.node)
        .execute(&self.pool)
        .await;
        let mut reach = self.reach.lock().unwrap();
        let now = Instant::now();
        // A beat can wait out an outage (a connection is retried until it times out)
        // rather than fail: a gap between good beats is an outage too.
        if beat.is_err() || now.duration_since(reach.last_beat) > 2 * BEAT {
            reach.since = now;
        }
        if beat.is_ok() {
            reach.last_beat = now;
        }
        beat.map(|_| ()).map_err(FleetError::from)
    }

    /// Claims this node's PENDING parts (one node, one claim: the UPDATE decides) and
    /// runs each.
    async fn claim_parts(self: &Arc<Self>) -> Result<(), FleetError> {
        let claimed: Vec<String> = sqlx::query_scalar(
            "UPDATE fleet_parts SET status = 'STARTING', started_at = $2 \
             WHERE node = $1 AND status = 'PENDING' RETURNING session_id",
        )
        .bind(&self.node)
        .bind(wall_clock_ns() as i64)
        .fetch_all(&self.pool)
        .await?;
        for id in claimed {
            tokio::spawn(part::run(self.clone(), id));
        }
        Ok(())
    }
}

/// A cgroup v2 directory's id (`bpf_get_current_cgroup_id`'s), checked to be one.
fn cgroup_id(path: &std::path::Path) -> Result<u64, FleetError> {
    let id = crate::container::cgroup_id(path, "").filter(|_| path.join("cgroup.procs").exists());
    id.ok_or_else(|| FleetError::Scope {
        path: path.display().to_string(),
        error: "not a cgroup v2 directory".into(),
    })
}
