//! The event writer, whichever database stores the events: sinks on tracker threads
//! hand chunks of rows to one task over a queue bounded in events; the task commits them
//! in batches through its database's [`BatchWriter`]. What the queue cannot take, or a
//! batch that fails, is counted lost where users see it, never dropped silently.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::handler::{Flow, Handler, KeyValue, OwnedRecord};
use crate::model::{Comm, EventBody, FieldType, Record, SessionId, TrackerInfo, Value};
use crate::results::{StoreError, StoreOptions};
use crate::trackers::Event;

/// Rows a sink hands over at once: amortises the queue without holding events back long
/// (the engine flushes the sink after every ring-buffer poll anyway).
const CHUNK: usize = 256;
/// A writer that has had nothing to write for this long gives memory back (see
/// [`BatchWriter::release_memory`]).
const IDLE: Duration = Duration::from_secs(2);
/// Common fields that are columns of their own in every events table.
pub const COLUMNS: [&str; 7] = ["tracker", "kind", "ts", "pid", "ppid", "comm", "cgroup_id"];

/// How a database commits a batch of rows: in one transaction, all or nothing.
pub trait BatchWriter: Send + 'static {
    /// The database's name, for logs.
    const NAME: &'static str;
    fn write(&mut self, batch: &[Chunk]) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Gives back memory taken for a burst of rows, once the writer is idle.
    fn release_memory(&mut self) -> impl Future<Output = ()> + Send;
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// One event's own columns; its other fields are a range of its chunk's `cells`.
pub struct EventRow {
    /// Its number in the session (see `LiveEvent::id`).
    pub seq: i64,
    pub ts: i64,
    pub tracker: &'static str,
    pub kind: &'static str,
    pub pid: u32,
    pub ppid: u32,
    pub comm: Comm,
    pub cgroup_id: i64,
    /// The calls it stands for (see `TrackerInfo::weight`).
    pub calls: i64,
}

/// Rows of one session as a sink hands them over, with whom to tell if they are lost.
pub struct Chunk {
    /// Plain text, shared by every chunk of the sink: each row binds it without a copy.
    pub session_id: Arc<str>,
    /// The tracker of every row, which says the typed columns.
    pub info: &'static TrackerInfo,
    pub rows: Vec<EventRow>,
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
    pub fn rows(&self) -> impl Iterator<Item = RowRef<'_>> {
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
pub struct RowRef<'a> {
    pub session_id: &'a str,
    pub row: &'a EventRow,
    pub cells: &'a [Cell],
    /// The chunk's text, which text cells point into.
    pub text: &'a str,
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

/// The writer task, and the queue that feeds it.
pub struct Writer {
    queue: Queue,
    chunk_size: usize,
    writer: tokio::task::JoinHandle<()>,
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
    /// Starts the writer task on `target`.
    pub fn start<B: BatchWriter>(
        target: B,
        options: &StoreOptions,
        duration: prometheus::Histogram,
    ) -> Self {
        let health = Arc::new(Mutex::new(WriterHealth::default()));
        let (tx, rx) = mpsc::unbounded_channel();
        let room = Arc::new(Semaphore::new(
            options.queue_capacity.min(Semaphore::MAX_PERMITS),
        ));
        let writer = tokio::spawn(write_loop(
            target,
            rx,
            room.clone(),
            Batching {
                batch_size: options.batch_size.max(1),
                duration,
                health: health.clone(),
            },
        ));
        Self {
            queue: Queue { tx, room },
            chunk_size: CHUNK.min(options.queue_capacity).max(1),
            writer,
            health,
        }
    }

    pub fn health(&self) -> WriterHealth {
        self.health.lock().clone()
    }

    /// A sink that queues `session_id`'s rows; what the queue cannot take is added to
    /// `lost` and `lost_metric`.
    pub fn sink(
        &self,
        session_id: &SessionId,
        lost: Arc<AtomicU64>,
        lost_metric: prometheus::IntCounter,
        failure: Failure,
    ) -> EventSink {
        EventSink {
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
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.queue
            .tx
            .send(WriterMsg::Flush(done))
            .map_err(|_| StoreError::WriterGone)?;
        wait.await.map_err(|_| StoreError::WriterGone)
    }

    /// Commits what is queued and stops both tasks.
    pub async fn stop(self) -> Result<(), StoreError> {
        let stopped = self.queue.tx.send(WriterMsg::Stop);
        self.queue.room.close();
        let joined = self.writer.await;
        stopped.map_err(|_| StoreError::WriterGone)?;
        joined.map_err(|_| StoreError::WriterGone)
    }
}

/// How the writer batches, and whom it tells about a batch.
struct Batching {
    batch_size: usize,
    duration: prometheus::Histogram,
    health: Arc<Mutex<WriterHealth>>,
}

/// The single writer: gathers what the sinks send into batches of about `batch_size`
/// rows, one transaction each, and answers flushes once what preceded them is committed.
async fn write_loop<B: BatchWriter>(
    mut target: B,
    mut rx: mpsc::UnboundedReceiver<WriterMsg>,
    room: Arc<Semaphore>,
    batching: Batching,
) {
    let batch_size = batching.batch_size;
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
                    target.release_memory().await;
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
            match target.write(&batch).await {
                Ok(()) => batching.health.lock().failing = false,
                Err(err) => {
                    // Nothing to retry into (a full disk stays full for a while): the rows
                    // are lost, counted where users see it, and their sessions fail.
                    let error = err.to_string();
                    tracing::error!(rows, "writing events to {} failed: {error}", B::NAME);
                    batch.iter().for_each(|chunk| chunk.fail(&error));
                    let mut health = batching.health.lock();
                    health.failing = true;
                    health.last_error = Some((crate::model::wall_clock_ns(), error));
                    health.failed_batches += 1;
                }
            }
            batching.duration.observe(started.elapsed().as_secs_f64());
            batch.clear();
            holding = true;
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
    target.close().await;
}

/// Stores a session's events: the end of its handler chain, on the tracker's thread.
/// Rows go to the writer in chunks without waiting; a full queue counts them as lost.
pub struct EventSink {
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

impl EventSink {
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

impl Handler<Event> for EventSink {
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

impl Drop for EventSink {
    /// A chain dropped without `finish` still hands over what it holds.
    fn drop(&mut self) {
        self.send();
    }
}

/// One typed value of an event, as the writer binds it. Text is a range of its chunk's
/// `text`, so that a row's values take no allocation of their own.
#[derive(Clone, Copy, Debug)]
pub enum Cell {
    Null,
    Int(i64),
    /// A u64 past i64::MAX, as SQLite's JSON functions read one.
    Real(f64),
    Text {
        start: u32,
        end: u32,
    },
}

/// Where each of a tracker's fields, in the order [`Record::visit`] gives them, goes in a
/// row's cells (none for the fields that have columns of their own): worked out once per
/// sink, so that each event is one pass over its fields.
pub struct TypedLayout {
    pub info: &'static TrackerInfo,
    slots: Vec<(&'static str, Option<usize>)>,
    pub width: usize,
}

impl TypedLayout {
    pub fn new(info: &'static TrackerInfo) -> Self {
        let mut width = 0;
        let slots = info
            .all_fields()
            .map(|f| {
                let slot = (!COLUMNS.contains(&f.name)).then(|| {
                    width += 1;
                    width - 1
                });
                (f.name, slot)
            })
            .collect();
        Self { info, slots, width }
    }

    /// Appends `event`'s typed values to `cells` (exactly `width` of them, null where the
    /// event gave none), their text to `text`.
    pub fn push_cells(&self, event: &dyn Record, cells: &mut Vec<Cell>, text: &mut String) {
        let base = cells.len();
        cells.resize(base + self.width, Cell::Null);
        let mut at = 0;
        event.visit(&mut |name, value| {
            // Fields come in catalog order; a name out of that order is looked up.
            let i = match self.slots.get(at) {
                Some((n, _)) if *n == name => at,
                _ => match self.slots.iter().position(|(n, _)| *n == name) {
                    Some(i) => i,
                    None => return,
                },
            };
            at = i + 1;
            if let Some(slot) = self.slots[i].1 {
                cells[base + slot] = Cell::of(value, text);
            }
        });
    }
}

impl Cell {
    pub fn of(value: Value<'_>, text: &mut String) -> Self {
        let unsigned = |v: u64| i64::try_from(v).map_or(Cell::Real(v as f64), Cell::Int);
        match value {
            Value::Null => Cell::Null,
            Value::U64(v) | Value::Time(v) => unsigned(v),
            Value::I64(v) => Cell::Int(v),
            Value::Str(s) => {
                let start = text.len() as u32;
                text.push_str(s);
                Cell::Text {
                    start,
                    end: text.len() as u32,
                }
            }
        }
    }

    /// The value as its field's type reads it (a u64 past i64::MAX is a real here).
    pub fn value(self, ty: FieldType, text: &str) -> KeyValue {
        match self {
            Cell::Null => KeyValue::Null,
            Cell::Int(v) => int_value(v, ty),
            Cell::Real(v) if ty == FieldType::I64 => KeyValue::I64(v as i64),
            Cell::Real(v) => KeyValue::U64(v as u64),
            Cell::Text { start, end } => KeyValue::Str(text[start as usize..end as usize].into()),
        }
    }
}

/// An integer as its field's type reads it.
pub fn int_value(v: i64, ty: FieldType) -> KeyValue {
    match ty {
        FieldType::I64 | FieldType::Str => KeyValue::I64(v),
        FieldType::Time => KeyValue::Time(v as u64),
        FieldType::U64 => KeyValue::U64(v as u64),
    }
}

impl RowRef<'_> {
    /// The event's fields, in its tracker's catalog order: the JSON a stored event reads.
    pub fn record(&self, info: &'static TrackerInfo) -> OwnedRecord {
        let row = self.row;
        let mut typed = self.cells.iter();
        let fields = info
            .all_fields()
            .map(|field| {
                let value = match field.name {
                    "tracker" => KeyValue::Str(row.tracker.into()),
                    "kind" => KeyValue::Str(row.kind.into()),
                    "comm" => KeyValue::Str(row.comm.as_str().into()),
                    "ts" => int_value(row.ts, field.ty),
                    "pid" => int_value(row.pid.into(), field.ty),
                    "ppid" => int_value(row.ppid.into(), field.ty),
                    "cgroup_id" => int_value(row.cgroup_id, field.ty),
                    _ => typed
                        .next()
                        .map_or(KeyValue::Null, |cell| cell.value(field.ty, self.text)),
                };
                (field.name, value)
            })
            .collect();
        OwnedRecord {
            catalog: Some(info),
            fields,
        }
    }
}
