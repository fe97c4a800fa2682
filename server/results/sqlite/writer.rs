//! The writer: sinks on tracker threads hand chunks of rows to one task over a queue
//! bounded in events, which commits them in batches; a second task checkpoints the log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions};
use sqlx::{Arguments, Connection, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::columns::{column, typed_fields, Cell, TypedLayout};
use super::{StoreError, StoreOptions};
use crate::handler::{Flow, Handler};
use crate::model::{Comm, EventBody, SessionId, TrackerInfo};
use crate::trackers::{Event, TRACKERS};

/// Rows a sink hands over at once: amortises the queue without holding events back long
/// (the engine flushes the sink after every ring-buffer poll anyway).
const CHUNK: usize = 256;
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
/// A writer that has had nothing to write for this long gives memory back (see
/// `WriterConnection::release_memory`).
const IDLE: Duration = Duration::from_secs(2);

/// One event's own columns; its other fields are a range of its chunk's `cells`.
struct EventRow {
    /// Its number in the session (see `LiveEvent::id`).
    seq: i64,
    ts: i64,
    tracker: &'static str,
    kind: &'static str,
    pid: u32,
    ppid: u32,
    comm: Comm,
    cgroup_id: i64,
    /// The calls it stands for (see `TrackerInfo::weight`).
    calls: i64,
}

/// Rows of one session as a sink hands them over, with whom to tell if they are lost.
struct Chunk {
    /// Plain text, shared by every chunk of the sink: each row binds it without a copy.
    session_id: Arc<str>,
    /// The tracker of every row, which says the typed columns.
    info: &'static TrackerInfo,
    rows: Vec<EventRow>,
    /// Every row's typed values (see `columns`), `width` per row, and their text: one
    /// allocation each per chunk instead of one per event.
    cells: Vec<Cell>,
    width: usize,
    text: String,
    lost: Arc<AtomicU64>,
    lost_metric: prometheus::IntCounter,
    /// The session's first storage error, which ends it FAILED.
    failure: Failure,
}

/// Where the writer tells a session why its events could not be stored.
pub type Failure = Arc<Mutex<Option<String>>>;

impl Chunk {
    fn count_lost(&self) {
        let n = self.rows.len() as u64;
        self.lost.fetch_add(n, Ordering::Relaxed);
        self.lost_metric.inc_by(n);
    }

    /// Its rows could not be written: they are lost, and the session learns why.
    fn fail(&self, error: &str) {
        self.count_lost();
        self.failure.lock().get_or_insert_with(|| error.to_string());
    }

    /// The rows with their typed values.
    fn rows(&self) -> impl Iterator<Item = RowRef<'_>> {
        self.rows.iter().enumerate().map(move |(i, row)| RowRef {
            session_id: &self.session_id,
            row,
            cells: &self.cells[i * self.width..(i + 1) * self.width],
            text: &self.text,
        })
    }
}

/// One row as the writer binds it.
#[derive(Clone, Copy)]
struct RowRef<'a> {
    session_id: &'a str,
    row: &'a EventRow,
    cells: &'a [Cell],
    /// The chunk's text, which text cells point into.
    text: &'a str,
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

/// The writer and checkpointer tasks, and the queue that feeds them.
pub(super) struct Writer {
    queue: Queue,
    chunk_size: usize,
    writer: tokio::task::JoinHandle<()>,
    checkpointer: tokio::task::JoinHandle<()>,
    health: Arc<Mutex<WriterHealth>>,
}

/// How the writer fares, for `health`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriterHealth {
    /// Whether the last batch failed: true until a batch commits again.
    pub failing: bool,
    /// The last failed batch's error and when it failed (ns since the epoch).
    pub last_error: Option<(u64, String)>,
    /// Batches that failed since the store opened.
    pub failed_batches: u64,
}

impl Writer {
    /// Starts the writer on its own connection, and the checkpointer on the pool.
    pub(super) fn start(
        conn: SqliteConnection,
        connect: SqliteConnectOptions,
        pool: SqlitePool,
        options: &StoreOptions,
        duration: prometheus::Histogram,
    ) -> Self {
        let health = Arc::new(Mutex::new(WriterHealth::default()));
        let (tx, rx) = mpsc::unbounded_channel();
        let room = Arc::new(Semaphore::new(
            options.queue_capacity.min(Semaphore::MAX_PERMITS),
        ));
        let (wrote, written) = mpsc::channel(1);
        let writer = tokio::spawn(write_loop(
            WriterConnection { conn, connect },
            rx,
            room.clone(),
            Batching {
                batch_size: options.batch_size.max(1),
                duration,
                wrote,
                health: health.clone(),
            },
        ));
        let checkpointer = tokio::spawn(checkpoint_loop(pool, written));
        Self {
            queue: Queue { tx, room },
            chunk_size: CHUNK.min(options.queue_capacity).max(1),
            writer,
            checkpointer,
            health,
        }
    }

    pub(super) fn health(&self) -> WriterHealth {
        self.health.lock().clone()
    }

    /// A sink that queues `session_id`'s rows; what the queue cannot take is added to
    /// `lost` and `lost_metric`.
    pub(super) fn sink(
        &self,
        session_id: &SessionId,
        lost: Arc<AtomicU64>,
        lost_metric: prometheus::IntCounter,
        failure: Failure,
    ) -> SqliteSink {
        SqliteSink {
            seq: 0,
            handed: Arc::default(),
            queue: self.queue.clone(),
            session_id: Arc::from(session_id.as_str()),
            chunk_size: self.chunk_size,
            rows: Vec::with_capacity(self.chunk_size),
            layout: None,
            cells: Vec::new(),
            text: String::new(),
            lost,
            lost_metric,
            failure,
        }
    }

    /// Returns once every row queued before the call is committed (or counted lost).
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.queue
            .tx
            .send(WriterMsg::Flush(done))
            .map_err(|_| StoreError::WriterGone)?;
        wait.await.map_err(|_| StoreError::WriterGone)
    }

    /// Commits what is queued and stops both tasks.
    pub(super) async fn stop(self) -> Result<(), StoreError> {
        let stopped = self.queue.tx.send(WriterMsg::Stop);
        self.queue.room.close();
        let joined = self.writer.await;
        // It stops once the writer has.
        let _ = self.checkpointer.await;
        stopped.map_err(|_| StoreError::WriterGone)?;
        joined.map_err(|_| StoreError::WriterGone)
    }
}

/// How the writer batches, and whom it tells about a batch.
struct Batching {
    batch_size: usize,
    duration: prometheus::Histogram,
    /// Wakes the checkpointer; a full channel means it is already due to run.
    wrote: mpsc::Sender<()>,
    health: Arc<Mutex<WriterHealth>>,
}

/// The writer's connection, and how to open it again when it is left unusable.
struct WriterConnection {
    conn: SqliteConnection,
    connect: SqliteConnectOptions,
}

/// The single writer: gathers what the sinks send into batches of about `batch_size`
/// rows, one transaction each, and answers flushes once what preceded them is committed.
async fn write_loop(
    mut conn: WriterConnection,
    mut rx: mpsc::UnboundedReceiver<WriterMsg>,
    room: Arc<Semaphore>,
    batching: Batching,
) {
    let batch_size = batching.batch_size;
    let inserts = Inserts::new();
    let mut batch: Vec<Chunk> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut stop = false;
    // Whether memory has been taken since it was last given back.
    let mut holding = false;
    while !stop {
        let received = if holding {
            match tokio::time::timeout(IDLE, rx.recv()).await {
                Ok(received) => received,
                Err(_) => {
                    conn.release_memory().await;
                    holding = false;
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some(first) = received else { break };
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
            match conn.write(&inserts, &batch).await {
                Ok(()) => batching.health.lock().failing = false,
                Err(err) => {
                    // Nothing to retry into (a full disk stays full for a while): the rows
                    // are lost, counted where users see it, and their sessions fail.
                    let error = err.to_string();
                    tracing::error!(rows, "writing events to SQLite failed: {error}");
                    batch.iter().for_each(|chunk| chunk.fail(&error));
                    let mut health = batching.health.lock();
                    health.failing = true;
                    health.last_error = Some((crate::model::wall_clock_ns(), error));
                    health.failed_batches += 1;
                }
            }
            batching.duration.observe(started.elapsed().as_secs_f64());
            let _ = batching.wrote.try_send(());
            batch.clear();
            holding = true;
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
    if let Err(err) = conn.conn.close().await {
        tracing::warn!("closing the SQLite writer's connection: {err}");
    }
}

impl WriterConnection {
    /// Writes a batch in one transaction. A failed batch is rolled back at once, not when
    /// the connection is next used: an open write transaction would hold the database's
    /// write lock, and every other writer would wait for it and fail "database is locked".
    async fn write(&mut self, inserts: &Inserts, batch: &[Chunk]) -> Result<(), sqlx::Error> {
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut self.conn)
            .await?;
        let written = write_batch(&mut self.conn, inserts, batch).await;
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
    async fn release_memory(&mut self) {
        if let Err(err) = sqlx::query("PRAGMA shrink_memory")
            .execute(&mut self.conn)
            .await
        {
            tracing::warn!("shrinking the SQLite writer's cache: {err}");
        }
        super::release_heap();
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
                    cell.bind(&mut args, r.text)?;
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

struct Statements(Vec<String>);

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
        let row = format!("({})", vec!["?"; parameters].join(", "));
        let columns = std::iter::once(ROW_COLUMNS.into())
            .chain(typed)
            .collect::<Vec<_>>()
            .join(", ");
        let most = ROWS_PER_INSERT.min(MAX_PARAMETERS / parameters);
        let sizes = std::iter::successors(Some(1), |&n| (n * 2 <= most).then_some(n * 2));
        Self(
            sizes
                .map(|n| {
                    let values = vec![row.as_str(); n].join(", ");
                    format!("INSERT INTO events ({columns}) VALUES {values}")
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
    /// The number of the last event seen, counting from 1 in the session.
    seq: i64,
    /// The number of the last event handed to the writer or counted lost: once the writer
    /// has committed what it was handed, every event up to it is stored or counted.
    handed: Arc<AtomicI64>,
    session_id: Arc<str>,
    chunk_size: usize,
    rows: Vec<EventRow>,
    /// The typed columns of the tracker whose rows are gathered, set by the first event.
    layout: Option<TypedLayout>,
    cells: Vec<Cell>,
    text: String,
    lost: Arc<AtomicU64>,
    lost_metric: prometheus::IntCounter,
    failure: Failure,
}

impl SqliteSink {
    /// The number of the last event handed to the writer or counted lost, as it moves.
    pub fn handed(&self) -> Arc<AtomicI64> {
        self.handed.clone()
    }

    /// Hands the rows gathered so far to the writer, or counts them lost.
    fn send(&mut self) {
        let Some(layout) = self.layout.as_ref().filter(|_| !self.rows.is_empty()) else {
            return;
        };
        let chunk = Chunk {
            session_id: self.session_id.clone(),
            info: layout.info,
            rows: std::mem::replace(&mut self.rows, Vec::with_capacity(self.chunk_size)),
            cells: std::mem::take(&mut self.cells),
            width: layout.width,
            text: std::mem::take(&mut self.text),
            lost: self.lost.clone(),
            lost_metric: self.lost_metric.clone(),
            failure: self.failure.clone(),
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
        self.handed.store(self.seq, Ordering::Release);
    }
}

impl Handler<Event> for SqliteSink {
    fn handle(&mut self, event: &Event) -> Flow {
        let info = event.body.info();
        if !self
            .layout
            .as_ref()
            .is_some_and(|l| std::ptr::eq(l.info, info))
        {
            // A chunk holds one tracker's rows (a session has one tracker).
            self.send();
            self.layout = Some(TypedLayout::new(info));
        }
        if let Some(layout) = &self.layout {
            layout.push_cells(event, &mut self.cells, &mut self.text);
        }
        self.seq += 1;
        self.rows.push(EventRow {
            seq: self.seq,
            ts: event.header.ts_ns as i64,
            tracker: event.tracker(),
            kind: event.kind(),
            pid: event.header.pid,
            ppid: event.header.ppid,
            comm: event.header.comm,
            cgroup_id: event.header.cgroup_id as i64,
            calls: i64::try_from(event.weight()).unwrap_or(i64::MAX),
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
