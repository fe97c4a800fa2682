//! The SQLite store's events: every catalog field a column (`columns`), so groupings
//! read no JSON; batches written by [`writer`]'s connection with per-session counts by
//! (tracker, kind, comm) in the same transaction, which answer the common COUNTs
//! without reading events; questions on read connections of their own (`queries`), over
//! `sql` (statements and group keys) and `groups` (the one-pass grouping function).
//! The records beside them (sessions, audit, alerts ...) are written for both databases at once, one level up.
//!
//! Queries follow the semantics of [`crate::results::query`]; a `ts` condition compares as
//! nanoseconds when its value is a number, else as RFC 3339 text.

mod columns;
mod groups;
mod queries;
mod sql;
mod writer;

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Connection;
use sqlx::{SqliteConnection, SqlitePool};

pub use queries::SqliteResults;

use crate::metrics::Metrics;
use crate::results::db::EventSql;
use crate::results::writer::Writer;
use crate::results::{release_heap, StoreError, StoreOptions};

/// Connections for viewers' queries: on two cores, more would only share them.
const READ_CONNECTIONS: u32 = 2;
/// A pooled connection idle this long is closed: a question over a million events leaves
/// its connection holding the mapped database and a page cache, and a checkpoint after a
/// burst of events a page cache too; hundreds of MB of RSS an idle server does not need.
const IDLE_CONNECTION: Duration = Duration::from_secs(10);
/// How often the heap is looked at for memory closed connections left behind.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// A SQLite database's events: its writer, and the connections viewers' questions use.
pub struct SqliteEvents {
    /// Viewers' questions over stored events, on connections of their own: however heavy
    /// they are, session control and auditing never wait behind them.
    reads: SqlitePool,
    query_budget: Duration,
    max_groups: usize,
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

/// SQLite's events for the records' statements: the counts are kept with the events.
pub const EVENT_SQL: EventSql = EventSql {
    delete: &[
        "DELETE FROM events WHERE session_id = $1",
        "DELETE FROM event_counts WHERE session_id = $1",
    ],
    stored_count: "SELECT SUM(n) FROM event_counts c WHERE c.session_id = sessions.id",
    has_events: "SELECT 1 FROM event_counts WHERE session_id = sessions.id",
    total: "SELECT COALESCE(SUM(n), 0) AS total FROM event_counts",
};

impl SqliteEvents {
    /// Opens (creating and migrating) the database at `path` and starts the writer: the
    /// pool for the records, the events, and their writer.
    pub async fn open(
        path: &Path,
        options: &StoreOptions,
        metrics: &Metrics,
    ) -> Result<(SqlitePool, SqliteEvents, Writer), StoreError> {
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
            writer::WriterConnection::new(writer_conn, connect, pool.clone()),
            options,
            metrics.sqlite_write_duration.clone(),
        );
        tracing::info!(path = %path.display(), "SQLite store open");
        let events = SqliteEvents {
            reads,
            query_budget: options.query_budget,
            max_groups: options.max_groups,
            _lock: lock,
        };
        Ok((pool, events, writer))
    }

    /// Closes the read connections.
    pub async fn close(&self) {
        self.reads.close().await;
    }
}
