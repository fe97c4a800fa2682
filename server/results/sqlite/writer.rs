//! The SQLite side of the event writer: each batch in one transaction of multi-row
//! INSERTs naming the tracker's typed columns, with `event_counts` kept in it; and a
//! task that checkpoints the write-ahead log beside the writer.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions};
use sqlx::{Arguments, Connection, SqliteConnection, SqlitePool};
use tokio::sync::mpsc;

use super::columns::{bind_cell, column, typed_fields};
use crate::model::TrackerInfo;
use crate::results::writer::{BatchWriter, Chunk, RowRef};
use crate::trackers::TRACKERS;

/// Most rows per INSERT statement. On two cores a few hundred rows wrote about 10% faster
/// than 100 or 1000.
const ROWS_PER_INSERT: usize = 256;
/// Most parameters SQLite takes in one statement.
const MAX_PARAMETERS: usize = 32_766;
/// The events table's own columns, bound for every row before the typed ones.
const ROW_COLUMNS: &str = "session_id, seq, ts, tracker, kind, pid, ppid, comm, cgroup_id";
const ROW_PARAMETERS: usize = 9;
/// Least time between two background checkpoints.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(100);

/// The writer's connection, how to open it again when it is left unusable, and the
/// checkpointer it wakes after each batch.
pub(super) struct WriterConnection {
    conn: SqliteConnection,
    connect: SqliteConnectOptions,
    inserts: Inserts,
    /// Wakes the checkpointer; a full channel means it is already due to run. The
    /// checkpointer ends once this is dropped with the writer.
    wrote: mpsc::Sender<()>,
}

impl WriterConnection {
    /// The writer's connection, and the checkpointer on `pool`.
    pub(super) fn new(
        conn: SqliteConnection,
        connect: SqliteConnectOptions,
        pool: SqlitePool,
    ) -> Self {
        let (wrote, written) = mpsc::channel(1);
        tokio::spawn(checkpoint_loop(pool, written));
        Self {
            conn,
            connect,
            inserts: Inserts::new(),
            wrote,
        }
    }
}

impl BatchWriter for WriterConnection {
    const NAME: &'static str = "SQLite";

    /// Writes a batch in one transaction. A failed batch is rolled back at once, not when
    /// the connection is next used: an open write transaction would hold the database's
    /// write lock, and every other writer would wait for it and fail "database is locked".
    async fn write(&mut self, batch: &[Chunk]) -> Result<(), sqlx::Error> {
        let result = self.transaction(batch).await;
        let _ = self.wrote.try_send(());
        result
    }

    async fn release_memory(&mut self) {
        self.shrink().await;
    }

    async fn close(self) {
        if let Err(err) = self.conn.close().await {
            tracing::warn!("closing the SQLite writer's connection: {err}");
        }
    }
}

impl WriterConnection {
    async fn transaction(&mut self, batch: &[Chunk]) -> Result<(), sqlx::Error> {
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut self.conn)
            .await?;
        let written = write_batch(&mut self.conn, &self.inserts, batch).await;
        let ended = match written {
            Ok(()) => sqlx::query("COMMIT")
                .execute(&mut self.conn)
                .await
                .map(drop),
            Err(err) => Err(err),
        };
        if let Err(err) = ended {
            // SQLite rolls some failures back itself (a full disk, usually), not all: a
            // failed COMMIT can leave the transaction open.
            if let Err(rollback) = sqlx::query("ROLLBACK").execute(&mut self.conn).await {
                let rolled_back = rollback.to_string().contains("no transaction is active");
                if !rolled_back {
                    tracing::warn!("rolling back a failed batch: {rollback}; reconnecting");
                    self.reconnect().await;
                }
            }
            return Err(err);
        }
        Ok(())
    }

    /// After a burst of events the page cache of this connection (up to `cache_size`) and
    /// the heap the event chunks used stay with the process: tens of MB that an idle
    /// server does not need. SQLite frees its cache; glibc keeps freed heap for reuse
    /// unless asked to return it.
    async fn shrink(&mut self) {
        if let Err(err) = sqlx::query("PRAGMA shrink_memory")
            .execute(&mut self.conn)
            .await
        {
            tracing::warn!("shrinking the SQLite writer's cache: {err}");
        }
        crate::results::release_heap();
    }

    /// Replaces a connection left in an unknown state; keeps the old one if the database
    /// cannot be opened now (the next batch tries again).
    async fn reconnect(&mut self) {
        match SqliteConnection::connect_with(&self.connect).await {
            Ok(fresh) => {
                let old = std::mem::replace(&mut self.conn, fresh);
                let _ = old.close().await;
            }
            Err(err) => tracing::error!("reopening the SQLite writer's connection: {err}"),
        }
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

/// Inserts a batch and adds it to `event_counts`, inside the caller's transaction.
async fn write_batch(
    conn: &mut SqliteConnection,
    inserts: &Inserts,
    batch: &[Chunk],
) -> Result<(), sqlx::Error> {
    // Gathered before any await: an iterator of closures held across one would make the
    // future's lifetimes too general for tokio::spawn. One run of rows per tracker, whose
    // statements name its typed columns.
    let mut by_tracker: Vec<(&'static str, Vec<RowRef>)> = Vec::new();
    for chunk in batch {
        let tracker = chunk.info.name;
        let at = match by_tracker.iter().position(|(t, _)| *t == tracker) {
            Some(at) => at,
            None => {
                by_tracker.push((tracker, Vec::new()));
                by_tracker.len() - 1
            }
        };
        by_tracker[at].1.extend(chunk.rows());
    }
    for (tracker, rows) in &by_tracker {
        let statements = inserts.for_tracker(tracker)?;
        let mut rest = rows.as_slice();
        while !rest.is_empty() {
            let (sql, n) = statements.for_rows(rest.len());
            let (statement, after) = rest.split_at(n);
            rest = after;
            let mut args = SqliteArguments::default();
            for r in statement {
                let row = r.row;
                args.add(r.session_id).map_err(sqlx::Error::Encode)?;
                args.add(row.seq).map_err(sqlx::Error::Encode)?;
                args.add(row.ts).map_err(sqlx::Error::Encode)?;
                args.add(row.tracker).map_err(sqlx::Error::Encode)?;
                args.add(row.kind).map_err(sqlx::Error::Encode)?;
                args.add(i64::from(row.pid)).map_err(sqlx::Error::Encode)?;
                args.add(i64::from(row.ppid)).map_err(sqlx::Error::Encode)?;
                args.add(row.comm.as_str()).map_err(sqlx::Error::Encode)?;
                args.add(row.cgroup_id).map_err(sqlx::Error::Encode)?;
                for cell in r.cells {
                    bind_cell(*cell, &mut args, r.text)?;
                }
            }
            sqlx::query_with(sql, args).execute(&mut *conn).await?;
        }
    }
    let mut counts: HashMap<(&str, &str, &str, &str), (i64, i64)> = HashMap::new();
    for r in by_tracker.iter().flat_map(|(_, rows)| rows) {
        let (n, calls) = counts
            .entry((r.session_id, r.row.tracker, r.row.kind, r.row.comm.as_str()))
            .or_default();
        *n += 1;
        *calls = calls.saturating_add(r.row.calls);
    }
    // One statement for all of them, whatever their number: a statement per key (a round
    // trip to SQLite's thread each, ~100 per batch) cost a fifth of the writer's time.
    let counts: Vec<(&str, &str, &str, &str, i64, i64)> = counts
        .into_iter()
        .map(|((session_id, tracker, kind, comm), (n, calls))| {
            (session_id, tracker, kind, comm, n, calls)
        })
        .collect();
    let counts = serde_json::to_string(&counts).map_err(|e| sqlx::Error::Encode(e.into()))?;
    // `WHERE true` tells the parser that ON CONFLICT belongs to the INSERT, not the join.
    sqlx::query(
        "INSERT INTO event_counts (session_id, tracker, kind, comm, n, calls) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 \
         FROM json_each(?) WHERE true \
         ON CONFLICT (session_id, tracker, kind, comm) \
         DO UPDATE SET n = n + excluded.n, calls = calls + excluded.calls",
    )
    .bind(counts)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The INSERT statements the writer uses, per tracker (whose typed columns they name), for
/// 1, 2, 4, ... rows: a batch of any size is a few of them, so a handful of prepared
/// statements serve every batch.
struct Inserts(HashMap<&'static str, Statements>);

/// One tracker's statements, each written the first time a batch needs it: all of them for
/// every tracker came to 720 KB that a server kept from its start, sessions or not.
struct Statements {
    columns: String,
    row: String,
    /// At index i, the statement for 2^i rows.
    by_size: Vec<OnceLock<String>>,
}

impl Inserts {
    fn new() -> Self {
        Self(
            TRACKERS
                .iter()
                .map(|t| (t.info().name, Statements::new(t.info())))
                .collect(),
        )
    }

    fn for_tracker(&self, tracker: &str) -> Result<&Statements, sqlx::Error> {
        self.0
            .get(tracker)
            .ok_or_else(|| sqlx::Error::Protocol(format!("events of unknown tracker {tracker}")))
    }
}

impl Statements {
    fn new(info: &TrackerInfo) -> Self {
        let typed: Vec<_> = typed_fields(info).map(column).collect();
        let parameters = ROW_PARAMETERS + typed.len();
        let most = ROWS_PER_INSERT.min(MAX_PARAMETERS / parameters);
        Self {
            columns: std::iter::once(ROW_COLUMNS.into())
                .chain(typed)
                .collect::<Vec<_>>()
                .join(", "),
            row: format!("({})", vec!["?"; parameters].join(", ")),
            by_size: (0..=most.ilog2()).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The statement for the most rows, up to `rows` (at least 1), and how many it takes.
    fn for_rows(&self, rows: usize) -> (&str, usize) {
        let i = (rows.max(1).ilog2() as usize).min(self.by_size.len() - 1);
        let n = 1 << i;
        let sql = self.by_size[i].get_or_init(|| {
            let values = vec![self.row.as_str(); n].join(", ");
            format!("INSERT INTO events ({}) VALUES {values}", self.columns)
        });
        (sql, n)
    }
}
