//! The store of `store: MEMORY` sessions: no event table, only aggregates that answer
//! [`crate::results::query`]'s aggregate and timeseries questions at any time, plus a bounded ring
//! of the most recent events.
//!
//! How it stays exact without keeping events: every event is folded into a *base group*
//! keyed by its second (`ts / 1e9`) and the values of every *dimension*, i.e. every field
//! of the tracker's catalog except `ts` and the measures ([`is_measure`]). All events of a
//! base group share every dimension value, so any group-by and any condition on dimensions
//! is answered by re-grouping base groups: COUNT, and every op over a dimension field, are
//! exact. For each measure a base group keeps the number of non-null values, their exact
//! sum, min and max, and a log-linear histogram: SUM, AVG, MIN and MAX of a measure are
//! exact, its percentiles are within 1/128 of the true value (exact below 128). Measures
//! cannot be grouped or filtered by, nor can `ts` beyond the second timeseries use: those
//! queries fail with [`MemoryError`] rather than answer approximately.
//!
//! Memory is bounded by [`MemoryLimits::max_groups`]: an event that needs a new base group
//! when there are that many already is counted as lost, never dropped silently. Strings
//! are interned once per distinct text, and a key is a few dozen bytes ([`BaseKey`]).
//! Base groups live in sharded hash maps (as in a `DashMap`, but hashbrown's own, whose
//! `Equivalent` look-ups let the sink find a group without allocating a key).
//!
//! [`MemoryStore`] holds the groups and answers queries; beside it: `keys` (slots, the
//! compact key encoding, the interner), `histogram` (a measure's statistics), `plan` (a
//! query run over base groups), `sink` (the chain's end) and `snapshot` (persistence).

mod histogram;
mod keys;
mod plan;
mod sink;
mod snapshot;

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hashbrown::{DefaultHashBuilder, HashMap};
use parking_lot::{Mutex, RwLock};

pub use sink::MemorySink;

use crate::model::{FieldInfo, TrackerInfo, Value};
use crate::results::query::{
    order_and_truncate, order_buckets, order_histograms, predicate, validate_conditions, AggResult,
    AggregateQuery, EventsQuery, HistogramQuery, HistogramResult, QueryError, StoredEvent,
    TimeBucketResult, TimeseriesQuery,
};
use crate::results::{ResultsError, SessionResults};
use crate::trackers::Event;
use histogram::MeasureStats;
use keys::{BaseKey, Interner, KeyRef, Slot};

const NS_PER_SEC: u64 = 1_000_000_000;
/// 32 shards of base groups.
const SHARD_BITS: u32 = 5;

/// How much a memory store may hold.
#[derive(Clone, Debug)]
pub struct MemoryLimits {
    /// Base groups (second x dimension values) kept at most.
    pub max_groups: usize,
    /// Most recent events kept for `events`; 0 keeps none.
    pub recent_events: usize,
}

impl Default for MemoryLimits {
    fn default() -> Self {
        Self {
            max_groups: 1_000_000,
            recent_events: 10_000,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MemoryError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("field `{field}` is a measure in a MEMORY session: it can be aggregated (op + field) but not grouped or filtered by; use store: SQLITE for that")]
    MeasureNotGroupable { field: String },
    #[error("field `ts` is kept only to the second in a MEMORY session: use timeseries to group by time, or store: SQLITE to group or filter by ts")]
    TimeNotGroupable,
    #[error("memory snapshot: {0}")]
    Snapshot(String),
}

/// Whether a field is a measure ([`FieldInfo::measure`]): summed, never a group key.
pub fn is_measure(field: &FieldInfo) -> bool {
    field.measure
}

#[derive(Default)]
struct BaseGroup {
    count: u64,
    /// One per measure field, in [`MemoryStore::measures`] order; empty until a measure
    /// value arrives, so groups of events without any (execs) allocate nothing for them.
    measures: Box<[MeasureStats]>,
}

impl BaseGroup {
    /// Adds an event: its value of each measure and the calls that value sums.
    fn add(&mut self, values: &[Option<(i128, u64)>]) {
        // Saturating here and below: only a hand-made snapshot could come near the limits.
        self.count = self.count.saturating_add(1);
        if self.measures.is_empty() && values.iter().any(Option::is_some) {
            self.measures = vec![MeasureStats::default(); values.len()].into_boxed_slice();
        }
        for (stats, value) in self.measures.iter_mut().zip(values) {
            if let Some((v, calls)) = *value {
                stats.add(v, calls);
            }
        }
    }
}

pub struct MemoryStore {
    info: &'static TrackerInfo,
    limits: MemoryLimits,
    /// The fields that key base groups, in catalog order.
    dimensions: Box<[&'static str]>,
    /// The fields kept as statistics, in catalog order.
    measures: Box<[&'static str]>,
    /// Per measure, the weight field that counts the calls it sums, if it is a total.
    summed_over: Box<[Option<&'static str>]>,
    /// The base groups, spread over shards by key hash so that a query, which read-locks
    /// one shard at a time, holds the sink back for a fraction of its run at most.
    shards: Box<[RwLock<HashMap<BaseKey, BaseGroup>>]>,
    /// Hashes keys; one per store, so its sink and its queries agree.
    hasher: DefaultHashBuilder,
    /// Base groups in all shards together, counted apart to enforce `max_groups`.
    group_count: AtomicUsize,
    interner: RwLock<Interner>,
    /// Events recorded so far; also the id of the last one.
    recorded: AtomicU64,
    recent: Mutex<VecDeque<(i64, Event)>>,
}

impl MemoryStore {
    pub fn new(info: &'static TrackerInfo, limits: MemoryLimits) -> Self {
        Self {
            info,
            limits,
            dimensions: info
                .all_fields()
                .filter(|f| f.name != "ts" && !is_measure(f))
                .map(|f| f.name)
                .collect(),
            measures: info
                .all_fields()
                .filter(|f| is_measure(f))
                .map(|f| f.name)
                .collect(),
            summed_over: info
                .all_fields()
                .filter(|f| is_measure(f))
                .map(|f| info.summed_over(f.name))
                .collect(),
            shards: (0..1 << SHARD_BITS).map(|_| RwLock::default()).collect(),
            hasher: DefaultHashBuilder::default(),
            group_count: AtomicUsize::new(0),
            interner: RwLock::new(Interner::default()),
            recorded: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Events recorded (lost ones excluded).
    pub fn event_count(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    pub fn aggregate(&self, q: &AggregateQuery) -> Result<Vec<AggResult>, MemoryError> {
        q.validate(self.info)?;
        let plan = self.plan(q.into())?;
        let mut rows: Vec<AggResult> = self
            .regroup(&plan, None)
            .into_iter()
            .map(|((_, keys), acc)| AggResult {
                keys,
                value: acc.value(&plan),
                count: acc.count,
            })
            .collect();
        order_and_truncate(&mut rows, q.top);
        Ok(rows)
    }

    pub fn timeseries(&self, q: &TimeseriesQuery) -> Result<Vec<TimeBucketResult>, MemoryError> {
        q.validate(self.info)?;
        let plan = self.plan(q.into())?;
        let mut rows: Vec<TimeBucketResult> = self
            .regroup(&plan, Some(q.bucket_secs))
            .into_iter()
            .map(|((bucket, keys), acc)| TimeBucketResult {
                start_ns: bucket.saturating_mul(NS_PER_SEC),
                keys,
                value: acc.value(&plan),
                count: acc.count,
            })
            .collect();
        order_buckets(&mut rows);
        Ok(rows)
    }

    pub fn histogram(&self, q: &HistogramQuery) -> Result<Vec<HistogramResult>, MemoryError> {
        q.validate(self.info)?;
        let plan = self.plan(q.into())?;
        let mut rows: Vec<HistogramResult> = self
            .regroup(&plan, None)
            .into_iter()
            .map(|((_, keys), acc)| {
                let buckets = acc.log2_buckets(&plan);
                HistogramResult {
                    keys,
                    count: buckets.iter().map(|b| b.count).sum(),
                    sum: acc.sum() as f64,
                    buckets,
                }
            })
            .collect();
        order_histograms(&mut rows, q.top);
        Ok(rows)
    }

    /// From the recent ring: ascending id (ids are 1, 2, 3... in arrival order, the
    /// events' `seq`), after < id <= through, matching conditions; (events, has_next_page).
    pub fn events(&self, q: &EventsQuery) -> Result<(Vec<StoredEvent>, bool), MemoryError> {
        let first = q.first;
        validate_conditions(self.info, &q.conditions)?;
        let predicates = q
            .conditions
            .iter()
            .map(|c| predicate(self.info, c))
            .collect::<Result<Vec<_>, _>>()?;
        let mut page = Vec::new();
        let mut has_next = false;
        {
            let ring = self.recent.lock();
            let start = q
                .after
                .map_or(0, |after| ring.partition_point(|(id, _)| *id <= after));
            let through = q.through.unwrap_or(i64::MAX);
            for (id, event) in ring.range(start..).take_while(|(id, _)| *id <= through) {
                if predicates.iter().all(|p| p.matches(event)) {
                    if page.len() == first {
                        has_next = true;
                        break;
                    }
                    page.push((*id, event.clone()));
                }
            }
        }
        // The JSON view is built after the lock is released: the sink waits on it.
        let events = page
            .iter()
            .map(|(id, event)| StoredEvent::from_event(*id, event))
            .collect();
        Ok((events, has_next))
    }

    /// Calls `f` with the slot's value; strings are looked up under a short read lock, so
    /// a long query never holds the sink back from interning.
    fn with_value<R>(&self, slot: Slot, f: impl FnOnce(Value<'_>) -> R) -> R {
        match slot {
            Slot::Null => f(Value::Null),
            Slot::U64(v) => f(Value::U64(v)),
            Slot::I64(v) => f(Value::I64(v)),
            Slot::Time(v) => f(Value::Time(v)),
            Slot::Str(id) => {
                let interner = self.interner.read();
                f(interner
                    .strings
                    .get(id)
                    .map_or(Value::Null, |s| Value::Str(s)))
            }
        }
    }

    /// A group key's text as query.rs says: decimal numbers, RFC 3339 times, "null".
    fn key_text(&self, slot: Slot) -> String {
        self.with_value(slot, |value| match value {
            Value::Null => "null".to_string(),
            value => value.to_string(),
        })
    }

    fn key<'a>(&self, second: u64, dims: &'a [u8]) -> KeyRef<'a> {
        KeyRef {
            hash: self.hasher.hash_one((second, dims)),
            second,
            dims,
        }
    }

    /// The shard of a key, by the top bits of its hash.
    fn shard(&self, hash: u64) -> &RwLock<HashMap<BaseKey, BaseGroup>> {
        &self.shards[(hash >> (64 - SHARD_BITS)) as usize]
    }
}

#[async_trait::async_trait]
impl SessionResults for MemoryStore {
    async fn events(&self, q: &EventsQuery) -> Result<(Vec<StoredEvent>, bool), ResultsError> {
        Ok(MemoryStore::events(self, q)?)
    }

    async fn aggregate(&self, q: &AggregateQuery) -> Result<Vec<AggResult>, ResultsError> {
        Ok(MemoryStore::aggregate(self, q)?)
    }

    async fn timeseries(&self, q: &TimeseriesQuery) -> Result<Vec<TimeBucketResult>, ResultsError> {
        Ok(MemoryStore::timeseries(self, q)?)
    }

    async fn histogram(&self, q: &HistogramQuery) -> Result<Vec<HistogramResult>, ResultsError> {
        Ok(MemoryStore::histogram(self, q)?)
    }
}
