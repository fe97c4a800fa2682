//! The SQLite store: sessions, their events and the audit trail in one file (WAL).
//!
//! Events reach it from tracker threads through [`SqliteSink`], which hands chunks of rows
//! to a single writer task over a queue bounded in events; what the queue cannot take is
//! counted as lost, never dropped silently. The writer commits each batch in one
//! transaction with multi-row INSERTs, and keeps per-session counts by (tracker, kind,
//! comm) in the same transaction, which answer the common COUNTs without reading events.
//! A second task checkpoints the write-ahead log beside the writer.
//!
//! Queries follow the semantics of [`crate::results::query`]; a `ts` condition compares as
//! nanoseconds when its value is a number, else as RFC 3339 text.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{
    Arguments, Connection, Encode, Row, Sqlite, SqliteConnection, SqlitePool, Type, TypeInfo,
    ValueRef,
};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::handler::{push_json_record, Flow, Handler, Op};
use crate::metrics::{stage, Metrics};
use crate::model::TrackerInfo;
use crate::model::{rfc3339_nanos, Comm, FieldInfo, FieldType};
use crate::results::query::catalog_field;
use crate::results::query::{
    order_and_truncate, order_buckets, AggOp, AggResult, AggregateQuery, Condition, QueryError,
    StoredEvent, TimeBucketResult, TimeseriesQuery,
};
use crate::trackers::Event;

/// Rows a sink hands over at once: amortises the queue without holding events back long
/// (the engine flushes the sink after every ring-buffer poll anyway).
const CHUNK: usize = 256;
/// Most rows per INSERT statement (9 parameters each; SQLite allows 32766). On two cores
/// a few hundred rows wrote about 10% faster than 100 or 1000.
const ROWS_PER_INSERT: usize = 256;
/// Least time between two background checkpoints.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(100);
/// Common fields stored as columns; every other field is read from the JSON in `data`.
const COLUMNS: [&str; 7] = ["tracker", "kind", "ts", "pid", "ppid", "comm", "cgroup_id"];
/// The fields `event_counts` counts events by, columns of the same names there.
const COUNTED: [&str; 3] = ["tracker", "kind", "comm"];
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A pagination cursor this store did not hand out.
    #[error("`{0}` is not a valid cursor")]
    BadCursor(String),
    #[error("no session `{0}`")]
    UnknownSession(String),
    #[error("corrupt row in the database: {0}")]
    Corrupt(String),
    #[error("the database writer has stopped")]
    WriterGone,
}

#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Events the writer's queue holds before sinks count losses.
    pub queue_capacity: usize,
    /// Rows the writer gathers into one transaction (it may exceed this by part of a chunk).
    pub batch_size: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            batch_size: 4096,
        }
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, async_graphql::Enum, serde::Serialize, serde::Deserialize,
)]
pub enum SessionStatus {
    Running,
    Completed,
    Stopped,
    Failed,
    Interrupted,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, async_graphql::Enum, serde::Serialize, serde::Deserialize,
)]
pub enum StoreKind {
    Sqlite,
    Memory,
}

/// The text both enums are stored as: their GraphQL names.
macro_rules! stored_as_text {
    ($ty:ty { $($variant:ident => $text:literal),+ }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl FromStr for $ty {
            type Err = StoreError;

            fn from_str(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(StoreError::Corrupt(format!(
                        "unknown {} `{other}`",
                        stringify!($ty)
                    ))),
                }
            }
        }
    };
}

stored_as_text!(SessionStatus {
    Running => "RUNNING",
    Completed => "COMPLETED",
    Stopped => "STOPPED",
    Failed => "FAILED",
    Interrupted => "INTERRUPTED"
});
stored_as_text!(StoreKind {
    Sqlite => "SQLITE",
    Memory => "MEMORY"
});

#[derive(Clone, Debug, PartialEq)]
pub struct SessionRecord {
    pub id: String,
    pub tracker: String,
    pub label: Option<String>,
    pub status: SessionStatus,
    pub store: StoreKind,
    pub filter: serde_json::Value,
    pub config: serde_json::Value,
    pub started_at_ns: u64,
    pub ends_at_ns: u64,
    pub ended_at_ns: Option<u64>,
    pub event_count: u64,
    pub lost_count: u64,
    pub error: Option<String>,
    /// JSON snapshot of a MEMORY session's aggregates, written when it ends (so results
    /// survive restarts).
    pub memory_snapshot: Option<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    /// 0 when inserting; the store assigns it.
    pub id: i64,
    pub at_ns: u64,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub args: serde_json::Value,
    /// "ok" or "error".
    pub outcome: String,
    pub error: Option<String>,
    /// The session the mutation created or acted on, when there is one.
    pub session_id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetentionPolicy {
    pub max_age_secs: Option<u64>,
    /// Total stored events across sessions.
    pub max_events: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetentionReport {
    pub sessions_deleted: u64,
    pub events_deleted: u64,
}

/// One event's columns; its JSON is a range of its chunk's `data`.
struct EventRow {
    ts: i64,
    tracker: &'static str,
    kind: &'static str,
    pid: u32,
    ppid: u32,
    comm: Comm,
    cgroup_id: i64,
    /// End of this row's JSON in the chunk's `data`; it starts where the previous ends.
    data_end: usize,
}

/// Rows of one session as a sink hands them over, with whom to tell if they are lost.
struct Chunk {
    session_id: Arc<str>,
    rows: Vec<EventRow>,
    /// Every row's JSON back to back: one allocation per chunk instead of one per event.
    data: String,
    lost: Arc<AtomicU64>,
    lost_metric: prometheus::IntCounter,
}

impl Chunk {
    fn count_lost(&self) {
        let n = self.rows.len() as u64;
        self.lost.fetch_add(n, Ordering::Relaxed);
        self.lost_metric.inc_by(n);
    }

    /// The rows with their JSON text.
    fn rows(&self) -> impl Iterator<Item = (&EventRow, &str)> {
        let mut start = 0;
        self.rows.iter().map(move |row| {
            let data = &self.data[start..row.data_end];
            start = row.data_end;
            (row, data)
        })
    }
}

enum WriterMsg {
    Rows(Chunk),
    /// Answered once everything sent before it is committed.
    Flush(oneshot::Sender<()>),
    /// Commit everything sent before it, then stop.
    Stop,
}

/// The writer's queue: a channel whose room is counted in events by `room`, so sinks never
/// wait and `queue_capacity` means events whatever the chunk sizes.
#[derive(Clone)]
struct Queue {
    tx: mpsc::UnboundedSender<WriterMsg>,
    room: Arc<Semaphore>,
}

pub struct Store {
    pool: SqlitePool,
    queue: Queue,
    chunk_size: usize,
    writer: tokio::task::JoinHandle<()>,
    checkpointer: tokio::task::JoinHandle<()>,
    metrics: Metrics,
}

impl Store {
    /// Opens (creating and migrating) the database and starts the writer.
    pub async fn open(
        path: &Path,
        options: StoreOptions,
        metrics: Metrics,
    ) -> Result<Store, StoreError> {
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // Rows are ~400 bytes: larger pages mean fewer page splits and log frames per
            // row (about 10% more rows/s than 4 KiB pages).
            .page_size(16384)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a commit is not fsynced, but the file is never corrupted.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Queries read up to millions of rows: a mapping and a larger cache save a
            // system call per page.
            .pragma("mmap_size", "268435456")
            .pragma("cache_size", "-32768")
            .pragma("temp_store", "memory")
            // The checkpointer task copies the log into the file beside the writer; the
            // writer's own checkpoint, past this many pages, copies what is left so the
            // log can start over (it cannot while writes keep coming otherwise).
            .pragma("wal_autocheckpoint", "4096");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(connect.clone())
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let writer_conn = SqliteConnection::connect_with(&connect).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let room = Arc::new(Semaphore::new(
            options.queue_capacity.min(Semaphore::MAX_PERMITS),
        ));
        let (wrote, written) = mpsc::channel(1);
        let writer = tokio::spawn(write_loop(
            writer_conn,
            rx,
            room.clone(),
            Batching {
                batch_size: options.batch_size.max(1),
                duration: metrics.sqlite_write_duration.clone(),
                wrote,
            },
        ));
        let checkpointer = tokio::spawn(checkpoint_loop(pool.clone(), written));
        tracing::info!(path = %path.display(), "SQLite store open");
        Ok(Store {
            pool,
            queue: Queue { tx, room },
            chunk_size: CHUNK.min(options.queue_capacity).max(1),
            writer,
            checkpointer,
            metrics,
        })
    }

    /// A chain end that stores `session_id`'s events; what the queue cannot take is added
    /// to `lost` and to the `sqlite` loss metric of `tracker`.
    pub fn event_sink(
        &self,
        session_id: &str,
        tracker: &'static str,
        lost: Arc<AtomicU64>,
    ) -> SqliteSink {
        SqliteSink {
            queue: self.queue.clone(),
            session_id: Arc::from(session_id),
            chunk_size: self.chunk_size,
            rows: Vec::with_capacity(self.chunk_size),
            data: String::new(),
            json: Vec::with_capacity(512),
            lost,
            lost_metric: self
                .metrics
                .lost
                .with_label_values(&[tracker, stage::SQLITE]),
        }
    }

    /// Returns once every event enqueued before the call is committed (or counted lost,
    /// should its batch fail).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.queue
            .tx
            .send(WriterMsg::Flush(done))
            .map_err(|_| StoreError::WriterGone)?;
        wait.await.map_err(|_| StoreError::WriterGone)
    }

    /// Commits what is queued, stops the writer and closes the database. Sinks still alive
    /// count what they send afterwards as lost.
    pub async fn close(self) -> Result<(), StoreError> {
        let stopped = self.queue.tx.send(WriterMsg::Stop);
        self.queue.room.close();
        let joined = self.writer.await;
        // It stops once the writer has.
        let _ = self.checkpointer.await;
        self.pool.close().await;
        stopped.map_err(|_| StoreError::WriterGone)?;
        joined.map_err(|_| StoreError::WriterGone)
    }

    pub async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO sessions (id, tracker, label, status, store, filter, config, started_at, \
             ends_at, ended_at, event_count, lost_count, error, memory_snapshot) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.id);
        bind_session_columns(query, s).execute(&self.pool).await?;
        Ok(())
    }

    /// Writes every column of the session but its id; an unknown id is an error.
    pub async fn update_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE sessions SET tracker = ?, label = ?, status = ?, store = ?, filter = ?, \
             config = ?, started_at = ?, ends_at = ?, ended_at = ?, event_count = ?, \
             lost_count = ?, error = ?, memory_snapshot = ? WHERE id = ?",
        );
        let done = bind_session_columns(query, s)
            .bind(&s.id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::UnknownSession(s.id.clone()));
        }
        Ok(())
    }

    pub async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM sessions WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| session_from_row(&r)).transpose()
    }

    /// Newest first (started_at desc, id desc). `after` is a cursor this returned; the
    /// result pairs each record with its cursor, and says whether more follow.
    pub async fn list_sessions(
        &self,
        status: Option<SessionStatus>,
        first: usize,
        after: Option<&str>,
    ) -> Result<(Vec<(String, SessionRecord)>, bool), StoreError> {
        let after = after.map(parse_session_cursor).transpose()?;
        let rows = sqlx::query(
            "SELECT * FROM sessions WHERE (?1 IS NULL OR status = ?1) \
             AND (?2 IS NULL OR started_at < ?2 OR (started_at = ?2 AND id < ?3)) \
             ORDER BY started_at DESC, id DESC LIMIT ?4",
        )
        .bind(status.map(SessionStatus::as_str))
        .bind(after.as_ref().map(|(started, _)| *started))
        .bind(after.as_ref().map(|(_, id)| id.as_str()))
        .bind(limit_plus_one(first))
        .fetch_all(&self.pool)
        .await?;
        let has_next = rows.len() > first;
        let sessions = rows
            .iter()
            .take(first)
            .map(|row| {
                let record = session_from_row(row)?;
                Ok((session_cursor(&record), record))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((sessions, has_next))
    }

    /// Deletes a session and its events; false when there was no such session.
    pub async fn delete_session(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.delete_with_events(id).await?.is_some())
    }

    /// Deletes a session and its events in one transaction; how many events it had, or
    /// `None` when there was no such session.
    async fn delete_with_events(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let events = sqlx::query("DELETE FROM events WHERE session_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM event_counts WHERE session_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let sessions = sqlx::query("DELETE FROM sessions WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok((sessions > 0).then_some(events))
    }

    /// Sessions a previous server left RUNNING become INTERRUPTED, ended now.
    pub async fn mark_running_interrupted(&self, now_ns: u64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE sessions SET status = 'INTERRUPTED', ended_at = ? WHERE status = 'RUNNING'",
        )
        .bind(now_ns as i64)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// A session's events in arrival order with ids above `after`, matching every
    /// condition; and whether more follow.
    pub async fn events(
        &self,
        session_id: &str,
        first: usize,
        after: Option<i64>,
        conditions: &[Condition],
        info: &TrackerInfo,
    ) -> Result<(Vec<StoredEvent>, bool), StoreError> {
        crate::results::query::validate_conditions(info, conditions)?;
        let mut sql = Statement::new(
            "SELECT id, ts, tracker, kind, pid, ppid, comm, cgroup_id, data FROM events \
             WHERE session_id = ",
        );
        sql.bind(session_id.to_string())?;
        sql.push(" AND id > ");
        sql.bind(after.unwrap_or(0))?;
        sql.conditions(info, conditions)?;
        sql.push(" ORDER BY id LIMIT ");
        sql.bind(limit_plus_one(first))?;
        let rows = sqlx::query_with(&sql.text, sql.args)
            .fetch_all(&self.pool)
            .await?;
        let has_next = rows.len() > first;
        let events = rows
            .iter()
            .take(first)
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((events, has_next))
    }

    pub async fn aggregate(
        &self,
        session_id: &str,
        info: &TrackerInfo,
        q: &AggregateQuery,
    ) -> Result<Vec<AggResult>, StoreError> {
        q.validate(info)?;
        let grouping = Grouping::new(info, None, &q.group_by)?;
        let groups = self
            .grouped(
                session_id,
                info,
                &grouping,
                q.op,
                q.field.as_deref(),
                &q.conditions,
            )
            .await?;
        let mut rows: Vec<AggResult> = groups
            .into_iter()
            .map(|(key, group)| AggResult {
                keys: key.texts(),
                value: group.value,
                count: group.count,
            })
            .collect();
        order_and_truncate(&mut rows, q.top);
        Ok(rows)
    }

    pub async fn timeseries(
        &self,
        session_id: &str,
        info: &TrackerInfo,
        q: &TimeseriesQuery,
    ) -> Result<Vec<TimeBucketResult>, StoreError> {
        q.validate(info)?;
        let bucket_ns =
            i64::try_from(q.bucket_secs.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX);
        let grouping = Grouping::new(info, Some(bucket_ns), &q.group_by)?;
        let groups = self
            .grouped(
                session_id,
                info,
                &grouping,
                q.op,
                q.field.as_deref(),
                &q.conditions,
            )
            .await?;
        let mut rows: Vec<TimeBucketResult> = groups
            .into_iter()
            .map(|(key, group)| TimeBucketResult {
                start_ns: key.bucket as u64,
                keys: key.texts(),
                value: group.value,
                count: group.count,
            })
            .collect();
        order_buckets(&mut rows);
        Ok(rows)
    }

    /// A session's matching events grouped as `grouping` says, with `op` applied to
    /// `field` per group. Both statements read one snapshot, so their groups agree.
    async fn grouped(
        &self,
        session_id: &str,
        info: &TrackerInfo,
        grouping: &Grouping,
        op: AggOp,
        field: Option<&str>,
        conditions: &[Condition],
    ) -> Result<Vec<(GroupKey, Group)>, StoreError> {
        let field = field.map(|f| catalog_field(info, f)).transpose()?;
        let dims = grouping.dims();
        // A COUNT that groups and filters only by what event_counts keeps is answered from
        // it: a few rows per session instead of every event.
        let from_counts = op == AggOp::Count
            && grouping.bucket_ns.is_none()
            && grouping.fields.iter().all(|f| COUNTED.contains(&f.name))
            && conditions
                .iter()
                .all(|c| COUNTED.contains(&c.field.as_str()));
        let (count, table) = if from_counts {
            ("COALESCE(SUM(n), 0)", "event_counts")
        } else {
            ("COUNT(*)", "events")
        };
        let value = match (op, field) {
            (AggOp::Sum, Some(f)) => format!("TOTAL({})", expr(f)),
            (AggOp::Avg, Some(f)) => format!("COALESCE(AVG({}), 0.0)", expr(f)),
            (AggOp::Min, Some(f)) => format!("CAST(COALESCE(MIN({}), 0) AS REAL)", expr(f)),
            (AggOp::Max, Some(f)) => format!("CAST(COALESCE(MAX({}), 0) AS REAL)", expr(f)),
            // COUNT is the count; percentiles come from the second statement.
            _ => "0.0".to_string(),
        };
        let mut sql = Statement::new("SELECT ");
        for d in &dims {
            sql.push(d);
            sql.push(", ");
        }
        sql.push(&format!(
            "{count}, {value} FROM {table} WHERE session_id = "
        ));
        sql.bind(session_id.to_string())?;
        sql.conditions(info, conditions)?;
        if !dims.is_empty() {
            sql.push(&format!(" GROUP BY {}", dims.join(", ")));
        }

        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query_with(&sql.text, sql.args)
            .fetch_all(&mut *tx)
            .await?;
        let n = dims.len();
        let mut groups = HashMap::with_capacity(rows.len());
        for row in &rows {
            let count = row.try_get::<i64, _>(n)? as u64;
            // Without GROUP BY an empty session still gives one row, of count 0.
            if count == 0 {
                continue;
            }
            let value = match op {
                AggOp::Count => count as f64,
                _ => row.try_get::<f64, _>(n + 1)?,
            };
            groups.insert(grouping.key(row)?, Group { count, value });
        }

        if let (Some(p), Some(f)) = (op.percentile(), field) {
            let partition = if dims.is_empty() {
                String::new()
            } else {
                format!("PARTITION BY {}", dims.join(", "))
            };
            let aliases: Vec<String> = (0..n).map(|i| format!("d{i}")).collect();
            // Nearest rank as query::nearest_rank computes it, in the same f64 arithmetic:
            // ceil(p / 100 * n), clamped to 1..=n.
            let mut sql = Statement::new("SELECT ");
            for a in &aliases {
                sql.push(a);
                sql.push(", ");
            }
            sql.push("CAST(v AS REAL) FROM (SELECT *, ");
            sql.bind(p / 100.0)?;
            sql.push(" * n AS x FROM (SELECT ");
            for (d, a) in dims.iter().zip(&aliases) {
                sql.push(&format!("{d} AS {a}, "));
            }
            sql.push(&format!(
                "{f} AS v, ROW_NUMBER() OVER ({partition} ORDER BY {f}) AS rn, \
                 COUNT(*) OVER ({partition}) AS n FROM events WHERE session_id = ",
                f = expr(f),
            ));
            sql.bind(session_id.to_string())?;
            sql.push(&format!(" AND {} IS NOT NULL", expr(f)));
            sql.conditions(info, conditions)?;
            sql.push(")) WHERE rn = MAX(1, MIN(n, CAST(x AS INTEGER) + (x > CAST(x AS INTEGER))))");
            let rows = sqlx::query_with(&sql.text, sql.args)
                .fetch_all(&mut *tx)
                .await?;
            for row in &rows {
                if let Some(group) = groups.get_mut(&grouping.key(row)?) {
                    group.value = row.try_get(n)?;
                }
            }
        }
        tx.commit().await?;
        Ok(groups.into_iter().collect())
    }

    pub async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit (at, actor, role, action, args, outcome, error, session_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(entry.at_ns as i64)
        .bind(&entry.actor)
        .bind(&entry.role)
        .bind(&entry.action)
        .bind(entry.args.to_string())
        .bind(&entry.outcome)
        .bind(&entry.error)
        .bind(&entry.session_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Newest first, ids below `after`; and whether more follow.
    pub async fn audit_log(
        &self,
        first: usize,
        after: Option<i64>,
    ) -> Result<(Vec<AuditEntry>, bool), StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM audit WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
        )
        .bind(after)
        .bind(limit_plus_one(first))
        .fetch_all(&self.pool)
        .await?;
        let has_next = rows.len() > first;
        let entries = rows
            .iter()
            .take(first)
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at_ns: r.try_get::<i64, _>("at")? as u64,
                    actor: r.try_get("actor")?,
                    role: r.try_get("role")?,
                    action: r.try_get("action")?,
                    args: json_column(r, "args")?,
                    outcome: r.try_get("outcome")?,
                    error: r.try_get("error")?,
                    session_id: r.try_get("session_id")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((entries, has_next))
    }

    /// Deletes ended sessions (with their events): those that ended more than
    /// `max_age_secs` ago, then the oldest ones holding events until at most `max_events`
    /// remain. RUNNING sessions are never touched.
    pub async fn enforce_retention(
        &self,
        policy: &RetentionPolicy,
        now_ns: u64,
    ) -> Result<RetentionReport, StoreError> {
        let mut report = RetentionReport::default();
        if let Some(age) = policy.max_age_secs {
            let cutoff = now_ns.saturating_sub(age.saturating_mul(1_000_000_000)) as i64;
            let old: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM sessions WHERE status != 'RUNNING' AND ended_at < ? \
                 ORDER BY started_at, id",
            )
            .bind(cutoff)
            .fetch_all(&self.pool)
            .await?;
            for id in old {
                self.delete_for_retention(&id, &mut report).await?;
            }
        }
        if let Some(cap) = policy.max_events {
            let mut total = self.event_total().await?;
            if total > cap {
                // Sessions without events would free nothing, so they stay.
                let oldest: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM sessions WHERE status != 'RUNNING' \
                     AND EXISTS (SELECT 1 FROM event_counts WHERE session_id = sessions.id) \
                     ORDER BY started_at, id",
                )
                .fetch_all(&self.pool)
                .await?;
                for id in oldest {
                    if total <= cap {
                        break;
                    }
                    total =
                        total.saturating_sub(self.delete_for_retention(&id, &mut report).await?);
                }
            }
        }
        if report.sessions_deleted > 0 {
            tracing::info!(
                sessions = report.sessions_deleted,
                events = report.events_deleted,
                "retention deleted old sessions"
            );
        }
        Ok(report)
    }

    /// Deletes one session for retention, adding to the report; returns its event count.
    async fn delete_for_retention(
        &self,
        id: &str,
        report: &mut RetentionReport,
    ) -> Result<u64, StoreError> {
        let events = self.delete_with_events(id).await?;
        if let Some(events) = events {
            report.sessions_deleted += 1;
            report.events_deleted += events;
        }
        Ok(events.unwrap_or(0))
    }

    /// Events stored across all sessions.
    pub async fn event_total(&self) -> Result<u64, StoreError> {
        let total: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(n), 0) FROM event_counts")
            .fetch_one(&self.pool)
            .await?;
        Ok(total as u64)
    }
}

/// `LIMIT first + 1`: the extra row says whether another page follows.
fn limit_plus_one(first: usize) -> i64 {
    i64::try_from(first).unwrap_or(i64::MAX).saturating_add(1)
}

/// A sessions cursor: where the record sorts, as `<started_at>:<id>`.
fn session_cursor(s: &SessionRecord) -> String {
    format!("{}:{}", s.started_at_ns, s.id)
}

fn parse_session_cursor(cursor: &str) -> Result<(i64, String), StoreError> {
    cursor
        .split_once(':')
        .and_then(|(started, id)| Some((started.parse().ok()?, id.to_string())))
        .ok_or_else(|| StoreError::BadCursor(cursor.to_string()))
}

/// SQL text with its bound values, in order. Values are always bound, never spliced in.
struct Statement {
    text: String,
    args: SqliteArguments<'static>,
}

impl Statement {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_string(),
            args: SqliteArguments::default(),
        }
    }

    fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// Appends a placeholder bound to `value`.
    fn bind<T>(&mut self, value: T) -> Result<(), StoreError>
    where
        T: Encode<'static, Sqlite> + Type<Sqlite> + 'static,
    {
        self.text.push('?');
        self.args.add(value).map_err(sqlx::Error::Encode)?;
        Ok(())
    }

    /// Appends ` AND <condition>` for each condition, with the semantics of
    /// [`crate::results::query`]: numbers compare as numbers, text as text, CONTAINS is a
    /// substring test, and a null matches nothing (SQL's NULL comparisons are never true).
    fn conditions(
        &mut self,
        info: &TrackerInfo,
        conditions: &[Condition],
    ) -> Result<(), StoreError> {
        for c in conditions {
            let field = catalog_field(info, &c.field)?;
            let column = expr(field);
            // Time columns hold nanoseconds; as text they read as RFC 3339.
            let text = match field.ty {
                FieldType::Time => rfc3339_sql(&column),
                _ => column.clone(),
            };
            self.push(" AND ");
            let Some(cmp) = comparison(c.op) else {
                // CONTAINS: a substring of the text (validation kept it off numbers).
                self.push(&format!("instr({text}, "));
                self.bind(c.value.clone())?;
                self.push(") > 0");
                continue;
            };
            match field.ty {
                FieldType::U64 | FieldType::I64 => {
                    self.push(&format!("{column} {cmp} "));
                    self.bind_number(c)?;
                }
                // A time compares as nanoseconds when given a number, else as text.
                FieldType::Time => match c.value.trim().parse::<i64>() {
                    Ok(ns) => {
                        self.push(&format!("{column} {cmp} "));
                        self.bind(ns)?;
                    }
                    Err(_) => {
                        self.push(&format!("{text} {cmp} "));
                        self.bind(c.value.clone())?;
                    }
                },
                FieldType::Str => {
                    self.push(&format!("{column} {cmp} "));
                    self.bind(c.value.clone())?;
                }
            }
        }
        Ok(())
    }

    /// Binds a numeric condition's value: an integer when it fits SQLite's, else a real,
    /// which SQLite still compares with integers by value.
    fn bind_number(&mut self, c: &Condition) -> Result<(), StoreError> {
        let number: i128 = c.value.trim().parse().map_err(|_| QueryError::NotANumber {
            field: c.field.clone(),
            value: c.value.clone(),
        })?;
        match i64::try_from(number) {
            Ok(n) => self.bind(n),
            Err(_) => self.bind(number as f64),
        }
    }
}

/// The SQL operator of a comparison; `None` for CONTAINS, which is no comparison.
fn comparison(op: Op) -> Option<&'static str> {
    Some(match op {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Contains => return None,
    })
}

/// An integer nanoseconds expression as the RFC 3339 text of [`rfc3339_nanos`].
fn rfc3339_sql(ns: &str) -> String {
    format!(
        "(strftime('%Y-%m-%dT%H:%M:%S', {ns} / 1000000000, 'unixepoch') \
         || printf('.%09dZ', {ns} % 1000000000))"
    )
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, SqliteArguments<'q>>;

/// Binds every session column but the id, in the order insert and update name them.
fn bind_session_columns<'q>(query: SqliteQuery<'q>, s: &'q SessionRecord) -> SqliteQuery<'q> {
    query
        .bind(&s.tracker)
        .bind(&s.label)
        .bind(s.status.as_str())
        .bind(s.store.as_str())
        .bind(s.filter.to_string())
        .bind(s.config.to_string())
        .bind(s.started_at_ns as i64)
        .bind(s.ends_at_ns as i64)
        .bind(s.ended_at_ns.map(|v| v as i64))
        .bind(s.event_count as i64)
        .bind(s.lost_count as i64)
        .bind(&s.error)
        .bind(s.memory_snapshot.as_ref().map(|v| v.to_string()))
}

/// The SQL expression for a field. Names come from the catalog (identifiers), never
/// from the user, so they can be part of the text.
fn expr(field: &FieldInfo) -> String {
    if COLUMNS.contains(&field.name) {
        field.name.to_string()
    } else {
        format!("json_extract(data, '$.{}')", field.name)
    }
}

/// How a query groups: an optional time bucket, then fields.
struct Grouping {
    bucket_ns: Option<i64>,
    fields: Vec<&'static FieldInfo>,
}

impl Grouping {
    fn new(
        info: &TrackerInfo,
        bucket_ns: Option<i64>,
        group_by: &[String],
    ) -> Result<Self, QueryError> {
        let fields = group_by
            .iter()
            .map(|name| catalog_field(info, name))
            .collect::<Result<_, _>>()?;
        Ok(Self { bucket_ns, fields })
    }

    /// The grouping expressions, bucket first. Raw values, so that key types survive.
    fn dims(&self) -> Vec<String> {
        // The bucket width is an integer the server computed: safe to write into the text.
        let bucket = self.bucket_ns.map(|ns| format!("(ts / {ns}) * {ns}"));
        bucket
            .into_iter()
            .chain(self.fields.iter().map(|f| expr(f)))
            .collect()
    }

    /// Reads a group's key from the first columns of a row laid out like [`Self::dims`].
    fn key(&self, row: &SqliteRow) -> Result<GroupKey, StoreError> {
        let offset = usize::from(self.bucket_ns.is_some());
        let bucket = if offset == 1 { row.try_get(0)? } else { 0 };
        let parts = self
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| KeyPart::read(row, i + offset, f.ty == FieldType::Time))
            .collect::<Result<_, _>>()?;
        Ok(GroupKey { bucket, parts })
    }
}

/// One value of a group key as SQLite returned it. Kept typed so that a null and the
/// text "null" stay different groups even though both print as `null`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum KeyPart {
    Null,
    Int(i64),
    Time(i64),
    /// The bits of an f64: a JSON number too large for an integer.
    Real(u64),
    Text(String),
}

impl KeyPart {
    fn read(row: &SqliteRow, i: usize, is_time: bool) -> Result<Self, StoreError> {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            return Ok(KeyPart::Null);
        }
        let ty = raw.type_info().name().to_string();
        Ok(match ty.as_str() {
            "INTEGER" if is_time => KeyPart::Time(row.try_get(i)?),
            "INTEGER" => KeyPart::Int(row.try_get(i)?),
            "REAL" => KeyPart::Real(row.try_get::<f64, _>(i)?.to_bits()),
            "TEXT" => KeyPart::Text(row.try_get(i)?),
            other => return Err(StoreError::Corrupt(format!("a group key of type {other}"))),
        })
    }

    /// The key's text as query.rs says: decimal numbers, RFC 3339 times, "null".
    fn text(&self) -> String {
        match self {
            KeyPart::Null => "null".to_string(),
            KeyPart::Int(v) => v.to_string(),
            KeyPart::Time(ns) => rfc3339_nanos(*ns as u64),
            KeyPart::Real(bits) => f64::from_bits(*bits).to_string(),
            KeyPart::Text(s) => s.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct GroupKey {
    /// Start of the time bucket (ns); 0 when the query has none.
    bucket: i64,
    parts: Vec<KeyPart>,
}

impl GroupKey {
    fn texts(&self) -> Vec<String> {
        self.parts.iter().map(KeyPart::text).collect()
    }
}

struct Group {
    count: u64,
    value: f64,
}

fn json_column(row: &SqliteRow, name: &str) -> Result<serde_json::Value, StoreError> {
    let text: String = row.try_get(name)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))
}

fn session_from_row(r: &SqliteRow) -> Result<SessionRecord, StoreError> {
    let snapshot: Option<String> = r.try_get("memory_snapshot")?;
    Ok(SessionRecord {
        id: r.try_get("id")?,
        tracker: r.try_get("tracker")?,
        label: r.try_get("label")?,
        status: r.try_get::<String, _>("status")?.parse()?,
        store: r.try_get::<String, _>("store")?.parse()?,
        filter: json_column(r, "filter")?,
        config: json_column(r, "config")?,
        started_at_ns: r.try_get::<i64, _>("started_at")? as u64,
        ends_at_ns: r.try_get::<i64, _>("ends_at")? as u64,
        ended_at_ns: r.try_get::<Option<i64>, _>("ended_at")?.map(|v| v as u64),
        event_count: r.try_get::<i64, _>("event_count")? as u64,
        lost_count: r.try_get::<i64, _>("lost_count")? as u64,
        error: r.try_get("error")?,
        memory_snapshot: snapshot
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("memory_snapshot: {e}")))?,
    })
}

fn event_from_row(r: &SqliteRow) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        id: r.try_get("id")?,
        ts_ns: r.try_get::<i64, _>("ts")? as u64,
        tracker: r.try_get("tracker")?,
        kind: r.try_get("kind")?,
        pid: r.try_get::<i64, _>("pid")? as u32,
        ppid: r.try_get::<i64, _>("ppid")? as u32,
        comm: r.try_get("comm")?,
        cgroup_id: r.try_get::<i64, _>("cgroup_id")? as u64,
        data: json_column(r, "data")?,
    })
}

/// How the writer batches, and whom it tells about a batch.
struct Batching {
    batch_size: usize,
    duration: prometheus::Histogram,
    /// Wakes the checkpointer; a full channel means it is already due to run.
    wrote: mpsc::Sender<()>,
}

/// The single writer: gathers what the sinks send into batches of about `batch_size`
/// rows, one transaction each, and answers flushes once what preceded them is committed.
async fn write_loop(
    mut conn: SqliteConnection,
    mut rx: mpsc::UnboundedReceiver<WriterMsg>,
    room: Arc<Semaphore>,
    batching: Batching,
) {
    let batch_size = batching.batch_size;
    let inserts = Inserts::new();
    let mut batch: Vec<Chunk> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut stop = false;
    while !stop {
        let Some(first) = rx.recv().await else { break };
        let mut rows = 0;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                WriterMsg::Rows(chunk) => {
                    // The rows leave the queue: sinks may fill their room while these are
                    // written.
                    room.add_permits(chunk.rows.len());
                    rows += chunk.rows.len();
                    batch.push(chunk);
                }
                WriterMsg::Flush(done) => waiting.push(done),
                WriterMsg::Stop => stop = true,
            }
            if rows >= batch_size || stop {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !batch.is_empty() {
            let started = Instant::now();
            if let Err(err) = write_batch(&mut conn, &inserts, &batch).await {
                // Nothing to retry into: the rows are lost, and counted where users see it.
                tracing::error!(rows, "writing events to SQLite failed: {err}");
                batch.iter().for_each(Chunk::count_lost);
            }
            batching.duration.observe(started.elapsed().as_secs_f64());
            let _ = batching.wrote.try_send(());
            batch.clear();
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
    if let Err(err) = conn.close().await {
        tracing::warn!("closing the SQLite writer's connection: {err}");
    }
}

/// Copies the write-ahead log into the database file after the writer has written, at
/// most every CHECKPOINT_PAUSE, on a pool connection: on the other core, so the writer
/// keeps inserting meanwhile (10-15% more events/s on two cores). Ends when the writer
/// does.
async fn checkpoint_loop(pool: SqlitePool, mut written: mpsc::Receiver<()>) {
    while written.recv().await.is_some() {
        // PASSIVE: never waits for readers or the writer, copies what it can.
        if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!("checkpointing the SQLite log: {err}");
        }
        tokio::time::sleep(CHECKPOINT_PAUSE).await;
    }
}

/// Inserts a batch and adds it to `event_counts`, in one transaction.
async fn write_batch(
    conn: &mut SqliteConnection,
    inserts: &Inserts,
    batch: &[Chunk],
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    // Gathered before any await: an iterator of closures held across one would make the
    // future's lifetimes too general for tokio::spawn.
    let rows: Vec<(&str, &EventRow, &str)> = batch
        .iter()
        .flat_map(|c| c.rows().map(move |(row, data)| (&*c.session_id, row, data)))
        .collect();
    let mut rest = rows.as_slice();
    while !rest.is_empty() {
        let (sql, n) = inserts.for_rows(rest.len());
        let (statement, after) = rest.split_at(n);
        rest = after;
        let mut args = SqliteArguments::default();
        for &(session_id, row, data) in statement {
            args.add(session_id).map_err(sqlx::Error::Encode)?;
            args.add(row.ts).map_err(sqlx::Error::Encode)?;
            args.add(row.tracker).map_err(sqlx::Error::Encode)?;
            args.add(row.kind).map_err(sqlx::Error::Encode)?;
            args.add(i64::from(row.pid)).map_err(sqlx::Error::Encode)?;
            args.add(i64::from(row.ppid)).map_err(sqlx::Error::Encode)?;
            args.add(row.comm.as_str()).map_err(sqlx::Error::Encode)?;
            args.add(row.cgroup_id).map_err(sqlx::Error::Encode)?;
            args.add(data).map_err(sqlx::Error::Encode)?;
        }
        sqlx::query_with(sql, args).execute(&mut *tx).await?;
    }
    let mut counts: HashMap<(&str, &str, &str, &str), i64> = HashMap::new();
    for &(session_id, row, _) in &rows {
        *counts
            .entry((session_id, row.tracker, row.kind, row.comm.as_str()))
            .or_default() += 1;
    }
    // One statement for all of them, whatever their number: a statement per key (a round
    // trip to SQLite's thread each, ~100 per batch) cost a fifth of the writer's time.
    let counts: Vec<(&str, &str, &str, &str, i64)> = counts
        .into_iter()
        .map(|((session_id, tracker, kind, comm), n)| (session_id, tracker, kind, comm, n))
        .collect();
    let counts = serde_json::to_string(&counts).map_err(|e| sqlx::Error::Encode(e.into()))?;
    // `WHERE true` tells the parser that ON CONFLICT belongs to the INSERT, not the join.
    sqlx::query(
        "INSERT INTO event_counts (session_id, tracker, kind, comm, n) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 \
         FROM json_each(?) WHERE true \
         ON CONFLICT (session_id, tracker, kind, comm) DO UPDATE SET n = n + excluded.n",
    )
    .bind(counts)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// The INSERT statements the writer uses, for 1, 2, 4, ... ROWS_PER_INSERT rows: a batch
/// of any size is a few of them, so a handful of prepared statements serve every batch.
struct Inserts(Vec<String>);

impl Inserts {
    fn new() -> Self {
        let sizes = std::iter::successors(Some(1), |&n| (n < ROWS_PER_INSERT).then_some(n * 2));
        Self(
            sizes
                .map(|n| {
                    let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; n].join(", ");
                    format!(
                        "INSERT INTO events (session_id, ts, tracker, kind, pid, ppid, comm, \
                         cgroup_id, data) VALUES {values}"
                    )
                })
                .collect(),
        )
    }

    /// The statement for the most rows, up to `rows` (at least 1), and how many it takes.
    fn for_rows(&self, rows: usize) -> (&str, usize) {
        let i = (rows.max(1).ilog2() as usize).min(self.0.len() - 1);
        (&self.0[i], 1 << i)
    }
}

/// Stores a session's events: the end of its handler chain, on the tracker's thread.
/// Rows go to the writer in chunks without waiting; a full queue counts them as lost.
pub struct SqliteSink {
    queue: Queue,
    session_id: Arc<str>,
    chunk_size: usize,
    rows: Vec<EventRow>,
    data: String,
    /// Scratch for one event's JSON.
    json: Vec<u8>,
    lost: Arc<AtomicU64>,
    lost_metric: prometheus::IntCounter,
}

impl SqliteSink {
    /// Hands the rows gathered so far to the writer, or counts them lost.
    fn send(&mut self) {
        if self.rows.is_empty() {
            return;
        }
        let chunk = Chunk {
            session_id: self.session_id.clone(),
            rows: std::mem::replace(&mut self.rows, Vec::with_capacity(self.chunk_size)),
            data: std::mem::take(&mut self.data),
            lost: self.lost.clone(),
            lost_metric: self.lost_metric.clone(),
        };
        // A chunk holds at most CHUNK rows, so the count fits.
        let n = u32::try_from(chunk.rows.len()).unwrap_or(u32::MAX);
        match self.queue.room.try_acquire_many(n) {
            Ok(permit) => {
                // The writer gives the room back when it takes the rows off the queue.
                permit.forget();
                if let Err(mpsc::error::SendError(WriterMsg::Rows(chunk))) =
                    self.queue.tx.send(WriterMsg::Rows(chunk))
                {
                    chunk.count_lost();
                }
            }
            Err(_) => chunk.count_lost(),
        }
    }
}

impl Handler<Event> for SqliteSink {
    fn handle(&mut self, event: &Event) -> Flow {
        self.json.clear();
        push_json_record(&mut self.json, event);
        // Always valid UTF-8 (the record's strings are), so this borrows without copying.
        self.data.push_str(&String::from_utf8_lossy(&self.json));
        self.rows.push(EventRow {
            ts: event.header.ts_ns as i64,
            tracker: event.tracker(),
            kind: event.kind(),
            pid: event.header.pid,
            ppid: event.header.ppid,
            comm: event.header.comm,
            cgroup_id: event.header.cgroup_id as i64,
            data_end: self.data.len(),
        });
        if self.rows.len() >= self.chunk_size {
            self.send();
        }
        Flow::Caught
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send();
        Ok(())
    }
}

impl Drop for SqliteSink {
    /// A chain dropped without `finish` still hands over what it holds.
    fn drop(&mut self) {
        self.send();
    }
}
