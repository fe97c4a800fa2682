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
//!
//! [`Store`] is the one door; its methods live beside what they touch: `sessions`
//! (records), `queries` (events, aggregate, timeseries), `audit`, `retention`, `writer`
//! (the sink, the batching writer), all over `sql` (statements and group keys).

mod audit;
mod queries;
mod retention;
mod sessions;
mod sql;
mod writer;

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};

pub use audit::AuditEntry;
pub use retention::{RetentionPolicy, RetentionReport};
pub use sessions::{SessionRecord, SessionStatus, StoreKind};
pub use writer::SqliteSink;

use crate::metrics::{stage, Metrics};
use crate::model::SessionId;
use crate::results::query::QueryError;
use writer::Writer;

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
    UnknownSession(SessionId),
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

pub struct Store {
    pool: SqlitePool,
    writer: Writer,
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
        let writer = Writer::start(
            writer_conn,
            pool.clone(),
            &options,
            metrics.sqlite_write_duration.clone(),
        );
        tracing::info!(path = %path.display(), "SQLite store open");
        Ok(Store {
            pool,
            writer,
            metrics,
        })
    }

    /// A chain end that stores `session_id`'s events; what the queue cannot take is added
    /// to `lost` and to the `sqlite` loss metric of `tracker`.
    pub fn event_sink(
        &self,
        session_id: &SessionId,
        tracker: &'static str,
        lost: Arc<AtomicU64>,
    ) -> SqliteSink {
        let lost_metric = self
            .metrics
            .lost
            .with_label_values(&[tracker, stage::SQLITE]);
        self.writer.sink(session_id, lost, lost_metric)
    }

    /// Returns once every event enqueued before the call is committed (or counted lost,
    /// should its batch fail).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.writer.flush().await
    }

    /// Commits what is queued, stops the writer and closes the database. Sinks still alive
    /// count what they send afterwards as lost.
    pub async fn close(self) -> Result<(), StoreError> {
        let stopped = self.writer.stop().await;
        self.pool.close().await;
        stopped
    }
}
