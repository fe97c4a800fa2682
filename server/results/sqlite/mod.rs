//! The SQLite store: sessions, their events and the audit trail in one file (WAL).
//!
//! Events reach it from tracker threads through [`SqliteSink`], which hands chunks of rows
//! to a single writer task over a queue bounded in events; what the queue cannot take is
//! counted as lost, never dropped silently. The writer commits each batch in one
//! transaction with multi-row INSERTs, and keeps per-session counts by (tracker, kind,
//! comm) in the same transaction, which answer the common COUNTs without reading events.
//! Every catalog field is a column (`columns`), so other groupings read no JSON.
//! A second task checkpoints the write-ahead log beside the writer.
//!
//! Queries follow the semantics of [`crate::results::query`]; a `ts` condition compares as
//! nanoseconds when its value is a number, else as RFC 3339 text.
//!
//! [`Store`] is the one door; its methods live beside what they touch: `sessions`
//! (records), `queries` (events, aggregate, timeseries), `audit`, `retention`, `writer`
//! (the sink, the batching writer), all over `sql` (statements and group keys),
//! `columns` (the typed columns) and `groups` (the one-pass grouping function).

mod alerts;
mod audit;
mod baselines;
mod columns;
mod groups;
mod guard;
mod queries;
mod retention;
mod seccomp_profiles;
mod sessions;
mod sql;
mod writer;

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};

pub use alerts::{AlertFilter, AlertRecord};
pub use audit::AuditEntry;
pub use baselines::BaselineRecord;
pub use retention::{RetentionPolicy, RetentionReport};
pub use seccomp_profiles::SeccompProfileRecord;
pub use sessions::{SessionRecord, SessionStatus, StoreKind};
pub use writer::{Failure, SqliteSink, WriterHealth};

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
    #[error("the query ran longer than its budget of {0:?} and was stopped; narrow it with conditions or fewer groups")]
    QueryBudget(Duration),
    #[error(
        "the query makes more than {0} groups; narrow it with conditions or group by fewer fields"
    )]
    TooManyGroups(usize),
    #[error("{path} is in use by another eunomia server{holder}; stop it or give another --db")]
    InUse { path: String, holder: String },
    #[error("locking {path}: {source}")]
    Lock {
        path: String,
        source: std::io::Error,
    },
}

/// Connections for viewers' queries: on two cores, more would only share them.
const READ_CONNECTIONS: u32 = 2;
/// A pooled connection idle this long is closed: a question over a million events leaves
/// its connection holding the mapped database and a page cache, and a checkpoint after a
/// burst of events a page cache too; hundreds of MB of RSS an idle server does not need.
const IDLE_CONNECTION: Duration = Duration::from_secs(10);
/// How often the heap is looked at for memory closed connections left behind.
const TRIM_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Events the writer's queue holds before sinks count losses.
    pub queue_capacity: usize,
    /// Rows the writer gathers into one transaction (it may exceed this by part of a chunk).
    pub batch_size: usize,
    /// How long one viewer's question may run in SQLite before it is interrupted.
    pub query_budget: Duration,
    /// Most groups one question over events may make (each holds its key and state).
    pub max_groups: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            batch_size: 4096,
            query_budget: Duration::from_secs(30),
            max_groups: 1_000_000,
        }
    }
}

pub struct Store {
    /// Sessions, audit, retention: the server's own reads and writes.
    pool: SqlitePool,
    /// Viewers' questions over stored events, on connections of their own: however heavy
    /// they are, session control and auditing never wait behind them.
    reads: SqlitePool,
    query_budget: Duration,
    max_groups: usize,
    writer: Writer,
    metrics: Metrics,
    /// Held while the store is open: see [`lock_database`].
    _lock: std::fs::File,
}

/// Takes an exclusive lock on `<db>.lock` (recording this process's pid in it): a second
/// server on the same database would mark the first one's running sessions INTERRUPTED
/// and write beside it. The kernel drops the lock when the holder exits, however it ends.
fn lock_database(db: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    let mut path = db.as_os_str().to_owned();
    path.push(".lock");
    let path = std::path::PathBuf::from(path);
    let shown = path.display().to_string();
    let failed = |source| StoreError::Lock {
        path: shown.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(failed)?;
    // SAFETY: flock on a file descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(failed(err));
        }
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        let holder = match pid.trim() {
            "" => String::new(),
            pid => format!(" (pid {pid})"),
        };
        return Err(StoreError::InUse {
            path: db.display().to_string(),
            holder,
        });
    }
    file.set_len(0).map_err(failed)?;
    file.rewind().map_err(failed)?;
    write!(file, "{}", std::process::id()).map_err(failed)?;
    Ok(file)
}

/// Gives the heap back once a pool has closed connections: SQLite frees their caches,
/// but glibc keeps freed memory for reuse unless asked. Ends with the pools.
async fn trim_after_closing(pools: [SqlitePool; 2]) {
    let open = |pools: &[SqlitePool; 2]| pools.iter().map(SqlitePool::size).sum::<u32>();
    let mut before = open(&pools);
    while !pools.iter().all(SqlitePool::is_closed) {
        tokio::time::sleep(TRIM_EVERY).await;
        let now = open(&pools);
        if now < before {
            release_heap();
        }
        before = now;
    }
}

/// Returns free heap pages to the system.
pub(super) fn release_heap() {
    // SAFETY: malloc_trim has no preconditions; it only returns free heap pages.
    unsafe { libc::malloc_trim(0) };
}

impl Store {
    /// Opens (creating and migrating) the database and starts the writer.
    pub async fn open(
        path: &Path,
        options: StoreOptions,
        metrics: Metrics,
    ) -> Result<Store, StoreError> {
        let lock = lock_database(path)?;
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // Larger pages mean fewer page splits and log frames per row (about 10% more
            // rows/s than 4 KiB pages, measured when rows held ~400 bytes of JSON).
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
            .min_connections(0)
            .idle_timeout(IDLE_CONNECTION)
            .connect_with(connect.clone())
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        columns::ensure(&pool).await?;
        let max_groups = options.max_groups;
        let reads = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .min_connections(0)
            .idle_timeout(IDLE_CONNECTION)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    let mut handle = conn.lock_handle().await?;
                    groups::register(handle.as_raw_handle().as_ptr(), max_groups)
                        .map_err(|e| sqlx::Error::Configuration(e.into()))
                })
            })
            .connect_with(connect.clone())
            .await?;
        tokio::spawn(trim_after_closing([pool.clone(), reads.clone()]));
        let writer_conn = SqliteConnection::connect_with(&connect).await?;
        let writer = Writer::start(
            writer_conn,
            connect,
            pool.clone(),
            &options,
            metrics.sqlite_write_duration.clone(),
        );
        tracing::info!(path = %path.display(), "SQLite store open");
        Ok(Store {
            pool,
            reads,
            query_budget: options.query_budget,
            max_groups: options.max_groups,
            writer,
            metrics,
            _lock: lock,
        })
    }

    /// A chain end that stores `session_id`'s events; what the queue cannot take is added
    /// to `lost` and to the `sqlite` loss metric of `tracker`.
    pub fn event_sink(
        &self,
        session_id: &SessionId,
        tracker: &'static str,
        lost: Arc<AtomicU64>,
        failure: Failure,
    ) -> SqliteSink {
        let lost_metric = self
            .metrics
            .lost
            .with_label_values(&[tracker, stage::SQLITE]);
        self.writer.sink(session_id, lost, lost_metric, failure)
    }

    /// How the event writer fares: a failing store (a full disk) says why and since when.
    pub fn health(&self) -> WriterHealth {
        self.writer.health()
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
        self.reads.close().await;
        stopped
    }
}
