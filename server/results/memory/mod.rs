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

use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use hashbrown::hash_map::Entry;
use hashbrown::{DefaultHashBuilder, Equivalent, HashMap};
use serde::{Deserialize, Serialize};

use crate::handler::{FilterError, Flow, Handler, Predicate};
use crate::metrics::{stage, Metrics};
use crate::model::TrackerInfo;
use crate::model::{FieldInfo, FieldType, Record, Value};
use crate::results::query::{
    nearest_rank, order_and_truncate, order_buckets, validate_conditions, AggOp, AggResult,
    AggregateQuery, Condition, QueryError, StoredEvent, TimeBucketResult, TimeseriesQuery,
};
use crate::trackers::Event;

const NS_PER_SEC: u64 = 1_000_000_000;
/// 32 shards of base groups.
const SHARD_BITS: u32 = 5;
/// The snapshot layout's version; bumped when the layout changes.
const SNAPSHOT_VERSION: u32 = 1;

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

/// One dimension value in a base group's key. `Str` holds the id of the text in the
/// store's [`Interner`], so equal texts have equal slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum Slot {
    Null,
    U64(u64),
    I64(i64),
    Str(usize),
    Time(u64),
}

impl Slot {
    /// The value as a number, as [`Value::as_i128`] reads it.
    fn as_i128(self) -> Option<i128> {
        match self {
            Slot::U64(v) | Slot::Time(v) => Some(v.into()),
            Slot::I64(v) => Some(v.into()),
            Slot::Null | Slot::Str(_) => None,
        }
    }
}

/// A base group's key: its second and its dimension values, encoded compactly (a tag byte
/// per slot, then the value as a varint: about 40 bytes for a process event instead of
/// 200 as slots), with the hash of both kept alongside: a table resize re-hashes every
/// key, and reading it here saves following each key's pointer.
struct BaseKey {
    hash: u64,
    second: u64,
    dims: Box<[u8]>,
}

/// A key borrowed from the sink's buffer, to look groups up without allocating.
struct KeyRef<'a> {
    hash: u64,
    second: u64,
    dims: &'a [u8],
}

impl Hash for BaseKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for BaseKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.second == other.second && self.dims == other.dims
    }
}

impl Eq for BaseKey {}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Equivalent<BaseKey> for KeyRef<'_> {
    fn equivalent(&self, key: &BaseKey) -> bool {
        self.hash == key.hash && self.second == key.second && *self.dims == *key.dims
    }
}

impl KeyRef<'_> {
    fn to_owned(&self) -> BaseKey {
        BaseKey {
            hash: self.hash,
            second: self.second,
            dims: self.dims.into(),
        }
    }
}

const TAG_NULL: u8 = 0;
const TAG_U64: u8 = 1;
const TAG_I64: u8 = 2;
const TAG_STR: u8 = 3;
const TAG_TIME: u8 = 4;

fn encode_slot(out: &mut Vec<u8>, slot: Slot) {
    let (tag, word) = match slot {
        Slot::Null => (TAG_NULL, 0),
        Slot::U64(v) => (TAG_U64, v),
        // Zigzag, so small negative numbers stay short.
        Slot::I64(v) => (TAG_I64, ((v << 1) ^ (v >> 63)) as u64),
        Slot::Str(id) => (TAG_STR, id as u64),
        Slot::Time(v) => (TAG_TIME, v),
    };
    out.push(tag);
    if tag != TAG_NULL {
        let mut word = word;
        while word >= 0x80 {
            out.push(word as u8 | 0x80);
            word >>= 7;
        }
        out.push(word as u8);
    }
}

/// Decodes `n` slots into `out`. Keys are only ever written by [`encode_slot`]; should
/// one run short anyway, the missing slots read as null rather than panic.
fn decode_slots(bytes: &[u8], n: usize, out: &mut Vec<Slot>) {
    out.clear();
    let mut at = 0;
    while out.len() < n {
        let Some(&tag) = bytes.get(at) else {
            out.push(Slot::Null);
            continue;
        };
        at += 1;
        let mut word = 0u64;
        if tag != TAG_NULL {
            let mut shift = 0;
            while let Some(&byte) = bytes.get(at) {
                at += 1;
                if shift < 64 {
                    word |= u64::from(byte & 0x7f) << shift;
                }
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
        }
        out.push(match tag {
            TAG_U64 => Slot::U64(word),
            TAG_I64 => Slot::I64((word >> 1) as i64 ^ -((word & 1) as i64)),
            TAG_STR => Slot::Str(word as usize),
            TAG_TIME => Slot::Time(word),
            _ => Slot::Null,
        });
    }
}

/// Distinct strings, each kept once; a string's id is its index in `strings`.
#[derive(Default)]
struct Interner {
    ids: HashMap<Arc<str>, usize>,
    strings: Vec<Arc<str>>,
}

impl Interner {
    fn intern(&mut self, text: &str) -> usize {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let text: Arc<str> = text.into();
        let id = self.strings.len();
        self.strings.push(text.clone());
        self.ids.insert(text, id);
        id
    }
}

// Log-linear histogram buckets over a value's magnitude: values below 128 are their own
// bucket; above, each power of two is split into 64 buckets, so a bucket's midpoint is
// within 1/128 of any value in it. Negative values mirror positive ones (bucket -b-1).
const EXACT_BELOW: u32 = 128;
const SUB_BITS: u32 = 6;
/// Magnitude buckets up to 2^64 (the largest magnitude a u64 or i64 value has).
const MAGNITUDE_BUCKETS: u32 = EXACT_BELOW + (64 - SUB_BITS) * (1 << SUB_BITS);

fn magnitude_bucket(m: u128) -> u32 {
    if m < u128::from(EXACT_BELOW) {
        return m as u32;
    }
    let exp = 127 - m.leading_zeros(); // floor(log2 m), at least 7
    let sub = (m >> (exp - SUB_BITS)) as u32 & ((1 << SUB_BITS) - 1);
    EXACT_BELOW + (exp - 7) * (1 << SUB_BITS) + sub
}

fn bucket_of(v: i128) -> i32 {
    let b = magnitude_bucket(v.unsigned_abs()) as i32;
    if v < 0 {
        -b - 1
    } else {
        b
    }
}

/// The bucket's representative: its midpoint (the value itself below 128).
fn bucket_value(bucket: i32) -> i128 {
    let (magnitude, sign) = if bucket < 0 {
        ((-(bucket + 1)) as u32, -1)
    } else {
        (bucket as u32, 1)
    };
    if magnitude < EXACT_BELOW {
        return sign * i128::from(magnitude);
    }
    let exp = (magnitude - EXACT_BELOW) / (1 << SUB_BITS) + 7;
    let sub = (magnitude - EXACT_BELOW) % (1 << SUB_BITS);
    let width = 1i128 << (exp - SUB_BITS);
    sign * (i128::from((1 << SUB_BITS) + sub) * width + width / 2)
}

fn valid_bucket(bucket: i32) -> bool {
    let magnitude = if bucket < 0 {
        -(i64::from(bucket) + 1)
    } else {
        i64::from(bucket)
    };
    magnitude < i64::from(MAGNITUDE_BUCKETS)
}

/// One measure field within one base group.
#[derive(Clone, Debug, Default)]
struct MeasureStats {
    /// Non-null values seen.
    n: u64,
    sum: i128,
    min: i128,
    max: i128,
    /// (bucket, count), sorted by bucket. Left empty while every value equals `min`: the
    /// common one-event group then allocates nothing, and the n values are at `min`.
    hist: Vec<(i32, u64)>,
}

impl MeasureStats {
    fn add(&mut self, v: i128) {
        if self.n == 0 {
            self.min = v;
            self.max = v;
        } else if self.hist.is_empty() && v != self.min {
            self.hist.push((bucket_of(self.min), self.n));
        }
        if !self.hist.is_empty() {
            let bucket = bucket_of(v);
            match self.hist.binary_search_by_key(&bucket, |&(b, _)| b) {
                Ok(i) => self.hist[i].1 = self.hist[i].1.saturating_add(1),
                Err(i) => self.hist.insert(i, (bucket, 1)),
            }
        }
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.n = self.n.saturating_add(1);
        self.sum = self.sum.saturating_add(v);
    }

    fn for_each_bucket(&self, mut f: impl FnMut(i32, u64)) {
        if self.hist.is_empty() {
            if self.n > 0 {
                f(bucket_of(self.min), self.n);
            }
        } else {
            for &(bucket, count) in &self.hist {
                f(bucket, count);
            }
        }
    }
}

#[derive(Default)]
struct BaseGroup {
    count: u64,
    /// One per measure field, in [`MemoryStore::measures`] order; empty until a measure
    /// value arrives, so groups of events without any (execs) allocate nothing for them.
    measures: Box<[MeasureStats]>,
}

impl BaseGroup {
    fn add(&mut self, values: &[Option<i128>]) {
        // Saturating here and below: only a hand-made snapshot could come near the limits.
        self.count = self.count.saturating_add(1);
        if self.measures.is_empty() && values.iter().any(Option::is_some) {
            self.measures = vec![MeasureStats::default(); values.len()].into_boxed_slice();
        }
        for (stats, value) in self.measures.iter_mut().zip(values) {
            if let Some(v) = *value {
                stats.add(v);
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
            shards: (0..1 << SHARD_BITS).map(|_| RwLock::default()).collect(),
            hasher: DefaultHashBuilder::default(),
            group_count: AtomicUsize::new(0),
            interner: RwLock::new(Interner::default()),
            recorded: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// A handler for the session's chain (runs synchronously on the tracker thread).
    /// Events beyond `max_groups` are counted as lost: in `lost` and in the metrics.
    pub fn sink(self: &Arc<Self>, lost: Arc<AtomicU64>, metrics: Metrics) -> MemorySink {
        MemorySink {
            store: Arc::clone(self),
            lost,
            lost_metric: metrics
                .lost
                .with_label_values(&[self.info.name, stage::MEMORY]),
            strings: HashMap::new(),
            second: 0,
            dims: Vec::new(),
            values: Vec::with_capacity(self.measures.len()),
        }
    }

    /// Events recorded (lost ones excluded).
    pub fn event_count(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    pub fn aggregate(&self, q: &AggregateQuery) -> Result<Vec<AggResult>, MemoryError> {
        q.validate(self.info)?;
        let plan = self.plan(&q.group_by, q.op, q.field.as_deref(), &q.conditions)?;
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
        let plan = self.plan(&q.group_by, q.op, q.field.as_deref(), &q.conditions)?;
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

    /// From the recent ring: ascending id (ids are 1, 2, 3... in arrival order), id >
    /// after, matching conditions; (events, has_next_page).
    pub fn events(
        &self,
        first: usize,
        after: Option<i64>,
        conditions: &[Condition],
    ) -> Result<(Vec<StoredEvent>, bool), MemoryError> {
        validate_conditions(self.info, conditions)?;
        let predicates = conditions
            .iter()
            .map(|c| self.predicate(c))
            .collect::<Result<Vec<_>, _>>()?;
        let mut page = Vec::new();
        let mut has_next = false;
        {
            let ring = self.recent.lock();
            let start = after.map_or(0, |after| ring.partition_point(|(id, _)| *id <= after));
            for (id, event) in ring.range(start..) {
                if predicates.iter().all(|p| p.matches(event)) {
                    if page.len() == first {
                        has_next = true;
                        break;
                    }
                    page.push((*id, *event));
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

    /// Everything needed to answer aggregate/timeseries later, as JSON (written to the
    /// database when the session ends, so results survive restarts). Recent events are not
    /// part of it.
    pub fn snapshot(&self) -> serde_json::Value {
        let mut groups = Vec::with_capacity(self.group_count.load(Ordering::Relaxed));
        for shard in self.shards.iter() {
            for (key, group) in shard.read().iter() {
                let mut slots = Vec::with_capacity(self.dimensions.len());
                decode_slots(&key.dims, self.dimensions.len(), &mut slots);
                let measures = group
                    .measures
                    .iter()
                    .map(|m| SnapshotMeasure(m.n, m.sum.to_string(), m.min, m.max, m.hist.clone()))
                    .collect();
                groups.push(SnapshotGroup(key.second, group.count, slots, measures));
            }
        }
        // Strings after groups: a sink still running may add both, and every string a
        // group read above refers to is in the table by now.
        let strings = self
            .interner
            .read()
            .strings
            .iter()
            .map(|s| s.to_string())
            .collect();
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            tracker: self.info.name.to_string(),
            dimensions: self.dimensions.iter().map(|d| d.to_string()).collect(),
            measures: self.measures.iter().map(|m| m.to_string()).collect(),
            events: self.event_count(),
            strings,
            groups,
        };
        // Cannot fail: sums are text, and min/max come from u64 or i64 values (restore
        // checks that), which JSON numbers hold.
        serde_json::to_value(snapshot).expect("a memory snapshot is valid JSON")
    }

    pub fn restore(
        info: &'static TrackerInfo,
        limits: MemoryLimits,
        snapshot: &serde_json::Value,
    ) -> Result<Self, MemoryError> {
        let bad = |msg: String| MemoryError::Snapshot(msg);
        let snapshot = Snapshot::deserialize(snapshot).map_err(|e| bad(e.to_string()))?;
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(bad(format!(
                "version {} is not the supported {SNAPSHOT_VERSION}",
                snapshot.version
            )));
        }
        if snapshot.tracker != info.name {
            return Err(bad(format!(
                "taken of tracker `{}`, not `{}`",
                snapshot.tracker, info.name
            )));
        }
        let store = Self::new(info, limits);
        if snapshot.dimensions != *store.dimensions || snapshot.measures != *store.measures {
            return Err(bad(format!(
                "taken with dimensions {:?} and measures {:?}; tracker `{}` now has {:?} and {:?}",
                snapshot.dimensions, snapshot.measures, info.name, store.dimensions, store.measures
            )));
        }
        let ids: Vec<usize> = {
            let mut interner = store.interner.write();
            snapshot
                .strings
                .iter()
                .map(|s| interner.intern(s))
                .collect()
        };
        let mut dims = Vec::new();
        for SnapshotGroup(second, count, keys, measures) in snapshot.groups {
            let measures_ok = measures.is_empty() || measures.len() == store.measures.len();
            if keys.len() != store.dimensions.len() || !measures_ok {
                return Err(bad(format!(
                    "a group has {} keys and {} measures, not {} and {}",
                    keys.len(),
                    measures.len(),
                    store.dimensions.len(),
                    store.measures.len()
                )));
            }
            dims.clear();
            for slot in keys {
                let slot = match slot {
                    Slot::Str(id) => Slot::Str(*ids.get(id).ok_or_else(|| {
                        bad(format!("string id {id} is not in the string table"))
                    })?),
                    slot => slot,
                };
                encode_slot(&mut dims, slot);
            }
            let measures = measures
                .into_iter()
                .map(|m| measure_from_snapshot(m, count).map_err(bad))
                .collect::<Result<_, _>>()?;
            let key = store.key(second, &dims);
            let mut shard = store.shard(key.hash).write();
            if shard.contains_key(&key) {
                return Err(bad("a group appears twice".to_string()));
            }
            shard.insert(key.to_owned(), BaseGroup { count, measures });
            // May exceed max_groups when the limit was lowered since: then new events
            // needing a group are lost, as they would be at the limit.
            store.group_count.fetch_add(1, Ordering::Relaxed);
        }
        store.recorded.store(snapshot.events, Ordering::Relaxed);
        Ok(store)
    }

    /// The slot index of a field a query groups or filters by; only dimensions can be.
    fn dimension(&self, field: &str) -> Result<usize, MemoryError> {
        if field == "ts" {
            return Err(MemoryError::TimeNotGroupable);
        }
        // Queries are validated first, so a field that is no dimension is a measure.
        self.dimensions
            .iter()
            .position(|d| *d == field)
            .ok_or_else(|| MemoryError::MeasureNotGroupable {
                field: field.to_string(),
            })
    }

    fn predicate(&self, c: &Condition) -> Result<Predicate, QueryError> {
        // validate_conditions has checked the field exists.
        let ty = self
            .info
            .all_fields()
            .find(|f| f.name == c.field)
            .map_or(FieldType::Str, |f| f.ty);
        // validate_conditions reads numbers trimmed; Predicate does not trim.
        let numeric = matches!(ty, FieldType::U64 | FieldType::I64);
        let text = if numeric {
            c.value.trim()
        } else {
            c.value.as_str()
        };
        Predicate::new(&c.field, c.op, text, ty).map_err(|e| match e {
            FilterError::ContainsOnNumber(field) => QueryError::ContainsOnNumber(field),
            _ => QueryError::NotANumber {
                field: c.field.clone(),
                value: c.value.clone(),
            },
        })
    }

    fn plan(
        &self,
        group_by: &[String],
        op: AggOp,
        field: Option<&str>,
        conditions: &[Condition],
    ) -> Result<Plan, MemoryError> {
        let group_slots = group_by
            .iter()
            .map(|g| self.dimension(g))
            .collect::<Result<_, _>>()?;
        let conditions = conditions
            .iter()
            .map(|c| Ok((self.dimension(&c.field)?, self.predicate(c)?)))
            .collect::<Result<_, MemoryError>>()?;
        let target = match (op, field) {
            (AggOp::Count, _) | (_, None) => Target::Events,
            (_, Some(field)) => match self.measures.iter().position(|m| *m == field) {
                Some(i) => Target::Measure(i),
                None => Target::Dimension(self.dimension(field)?),
            },
        };
        Ok(Plan {
            op,
            group_slots,
            target,
            conditions,
        })
    }

    /// Folds the base groups that meet the plan's conditions into the query's groups,
    /// keyed by (bucket start in seconds, or 0 without buckets; key texts).
    fn regroup(&self, plan: &Plan, bucket_secs: Option<u64>) -> HashMap<(u64, Vec<String>), Acc> {
        let mut by_slots: HashMap<(u64, Vec<Slot>), Acc> = HashMap::new();
        let mut probe = (0, Vec::with_capacity(plan.group_slots.len()));
        let mut slots = Vec::with_capacity(self.dimensions.len());
        for shard in self.shards.iter() {
            for (key, group) in shard.read().iter() {
                decode_slots(&key.dims, self.dimensions.len(), &mut slots);
                let matches = plan.conditions.iter().all(|(slot, predicate)| {
                    self.with_value(slots[*slot], |value| {
                        predicate.matches(&FieldView {
                            name: predicate.field(),
                            value,
                        })
                    })
                });
                if !matches {
                    continue;
                }
                probe.0 = bucket_secs.map_or(0, |b| key.second / b * b);
                probe.1.clear();
                probe.1.extend(plan.group_slots.iter().map(|&i| slots[i]));
                match by_slots.get_mut(&probe) {
                    Some(acc) => acc.add(plan, &slots, group),
                    None => {
                        let mut acc = Acc::default();
                        acc.add(plan, &slots, group);
                        by_slots.insert(probe.clone(), acc);
                    }
                }
            }
        }
        // Different slots can read as the same text (U64 5 and I64 5): keys are texts.
        let mut by_text: HashMap<(u64, Vec<String>), Acc> = HashMap::new();
        for ((bucket, slots), acc) in by_slots {
            let keys = slots.iter().map(|&slot| self.key_text(slot)).collect();
            match by_text.entry((bucket, keys)) {
                Entry::Occupied(mut o) => o.get_mut().merge(acc),
                Entry::Vacant(v) => {
                    v.insert(acc);
                }
            }
        }
        by_text
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

    /// Takes one of the `max_groups` places; false when there is none left.
    fn reserve_group(&self) -> bool {
        self.group_count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.limits.max_groups).then_some(n + 1)
            })
            .is_ok()
    }

    fn record(&self, event: &Event) {
        if self.limits.recent_events == 0 {
            self.recorded.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // The id is taken under the ring's lock so the ring stays in id order.
        let mut ring = self.recent.lock();
        let id = self.recorded.fetch_add(1, Ordering::Relaxed) + 1;
        if ring.len() >= self.limits.recent_events {
            ring.pop_front();
        }
        ring.push_back((id as i64, *event));
    }
}

/// What a query's value is computed over.
enum Target {
    /// COUNT: the events themselves.
    Events,
    /// A measure field, by index in [`MemoryStore::measures`].
    Measure(usize),
    /// A dimension field, by slot index.
    Dimension(usize),
}

struct Plan {
    op: AggOp,
    /// Slot indexes of the group-by fields, in the query's order.
    group_slots: Vec<usize>,
    target: Target,
    /// Each condition with the slot of its field.
    conditions: Vec<(usize, Predicate)>,
}

/// One dimension value seen as a record, so a [`Predicate`] judges a base group exactly
/// as it would judge each of its events.
struct FieldView<'a> {
    name: &'a str,
    value: Value<'a>,
}

impl Record for FieldView<'_> {
    fn visit(&self, visit: &mut dyn FnMut(&str, Value<'_>)) {
        visit(self.name, self.value);
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        (name == self.name).then_some(self.value)
    }
}

/// A query group's running totals. Saturating arithmetic: only a hand-made snapshot
/// could overflow, and it must not panic.
#[derive(Default)]
struct Acc {
    count: u64,
    /// Non-null values of the target field.
    n: u64,
    sum: i128,
    min: i128,
    max: i128,
    /// For percentiles: count per value (dimension) or per histogram bucket (measure).
    dist: BTreeMap<i128, u64>,
}

impl Acc {
    fn add(&mut self, plan: &Plan, slots: &[Slot], group: &BaseGroup) {
        self.count = self.count.saturating_add(group.count);
        let percentile = plan.op.percentile().is_some();
        match plan.target {
            Target::Events => {}
            Target::Measure(i) => {
                if let Some(m) = group.measures.get(i) {
                    self.add_values(m.n, m.sum, m.min, m.max);
                    if percentile {
                        m.for_each_bucket(|bucket, count| self.add_dist(bucket.into(), count));
                    }
                }
            }
            Target::Dimension(slot) => {
                if let Some(v) = slots[slot].as_i128() {
                    let sum = v.saturating_mul(group.count.into());
                    self.add_values(group.count, sum, v, v);
                    if percentile {
                        self.add_dist(v, group.count);
                    }
                }
            }
        }
    }

    fn add_values(&mut self, n: u64, sum: i128, min: i128, max: i128) {
        if n == 0 {
            return;
        }
        if self.n == 0 {
            self.min = min;
            self.max = max;
        } else {
            self.min = self.min.min(min);
            self.max = self.max.max(max);
        }
        self.n = self.n.saturating_add(n);
        self.sum = self.sum.saturating_add(sum);
    }

    fn add_dist(&mut self, at: i128, count: u64) {
        let slot = self.dist.entry(at).or_default();
        *slot = slot.saturating_add(count);
    }

    fn merge(&mut self, other: Acc) {
        self.count = self.count.saturating_add(other.count);
        self.add_values(other.n, other.sum, other.min, other.max);
        for (at, count) in other.dist {
            self.add_dist(at, count);
        }
    }

    fn value(&self, plan: &Plan) -> f64 {
        match plan.op {
            AggOp::Count => self.count as f64,
            _ if self.n == 0 => 0.0,
            AggOp::Sum => self.sum as f64,
            AggOp::Avg => self.sum as f64 / self.n as f64,
            AggOp::Min => self.min as f64,
            AggOp::Max => self.max as f64,
            AggOp::P50 | AggOp::P95 | AggOp::P99 => {
                let p = plan.op.percentile().unwrap_or(50.0);
                self.percentile(p, &plan.target) as f64
            }
        }
    }

    /// Nearest rank over the distribution. A measure's bucket gives its midpoint, kept
    /// within the exact min and max (so a group of equal values answers exactly).
    fn percentile(&self, p: f64, target: &Target) -> i128 {
        let rank = nearest_rank(p, usize::try_from(self.n).unwrap_or(usize::MAX)) as u64;
        let mut seen = 0u64;
        for (&at, &count) in &self.dist {
            seen = seen.saturating_add(count);
            if seen > rank {
                return match target {
                    Target::Measure(_) => {
                        bucket_value(i32::try_from(at).unwrap_or(0)).clamp(self.min, self.max)
                    }
                    _ => at,
                };
            }
        }
        self.max
    }
}

/// The chain's end for a MEMORY session: folds each event into its base group.
pub struct MemorySink {
    store: Arc<MemoryStore>,
    lost: Arc<AtomicU64>,
    lost_metric: prometheus::IntCounter,
    /// This sink's copy of the interner's ids, so most look-ups take no lock.
    strings: HashMap<Arc<str>, usize>,
    /// The current event's key: its second and encoded dimensions, rewritten per event.
    second: u64,
    dims: Vec<u8>,
    /// The current event's measure values.
    values: Vec<Option<i128>>,
}

impl MemorySink {
    /// Encodes the event's key. Without `intern`, a string never seen means no group can
    /// have this key: returns false, leaving the store's strings untouched so that events
    /// lost at the group limit cannot grow them.
    fn build_key(&mut self, event: &Event, intern: bool) -> bool {
        let Self {
            store,
            strings,
            second,
            dims,
            ..
        } = self;
        *second = event.header.ts_ns / NS_PER_SEC;
        dims.clear();
        for name in store.dimensions.iter() {
            let slot = match event.get(name).unwrap_or(Value::Null) {
                Value::Null => Slot::Null,
                Value::U64(v) => Slot::U64(v),
                Value::I64(v) => Slot::I64(v),
                Value::Time(v) => Slot::Time(v),
                Value::Str(text) => match string_id(strings, &store.interner, text, intern) {
                    Some(id) => Slot::Str(id),
                    None => return false,
                },
            };
            encode_slot(dims, slot);
        }
        true
    }

    /// Adds the event whose key was built to its group, creating the group if one of the
    /// `max_groups` places is free or was `reserved` already; false when there was none.
    fn add_to_group(&self, reserved: bool) -> bool {
        let key = self.store.key(self.second, &self.dims);
        let mut shard = self.store.shard(key.hash).write();
        if let Some(group) = shard.get_mut(&key) {
            if reserved {
                // Another sink of this store made the group meanwhile.
                self.store.group_count.fetch_sub(1, Ordering::Relaxed);
            }
            group.add(&self.values);
            return true;
        }
        if !reserved && !self.store.reserve_group() {
            return false;
        }
        let mut group = BaseGroup::default();
        group.add(&self.values);
        shard.insert(key.to_owned(), group);
        true
    }
}

impl Handler<Event> for MemorySink {
    fn handle(&mut self, event: &Event) -> Flow {
        self.values.clear();
        self.values.extend(
            self.store
                .measures
                .iter()
                .map(|name| event.get(name).and_then(|v| v.as_i128())),
        );
        let recorded = if self.build_key(event, false) {
            self.add_to_group(false)
        } else if self.store.reserve_group() {
            // A string never seen: the group is new. Its place is taken before the string
            // is interned, so that a lost event leaves nothing behind.
            self.build_key(event, true);
            self.add_to_group(true)
        } else {
            false
        };
        if recorded {
            self.store.record(event);
        } else {
            self.lost.fetch_add(1, Ordering::Relaxed);
            self.lost_metric.inc();
        }
        Flow::Caught
    }
}

/// The id of `text`: from the sink's cache, else the store's interner (interning it when
/// `intern`); None when it is unknown and not to be interned.
fn string_id(
    cache: &mut HashMap<Arc<str>, usize>,
    interner: &RwLock<Interner>,
    text: &str,
    intern: bool,
) -> Option<usize> {
    if let Some(&id) = cache.get(text) {
        return Some(id);
    }
    let (id, shared) = if intern {
        let mut interner = interner.write();
        let id = interner.intern(text);
        (id, interner.strings[id].clone())
    } else {
        let interner = interner.read();
        let id = *interner.ids.get(text)?;
        (id, interner.strings[id].clone())
    };
    cache.insert(shared, id);
    Some(id)
}

/// The persisted form. Groups and measures are arrays, to keep a million groups compact:
/// a group is `[second, count, [slot per dimension], [measure per measure field]]`, a
/// measure `[n, "sum", min, max, [[bucket, count]...]]`, a string slot `{"Str": index into
/// strings}`.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    tracker: String,
    dimensions: Vec<String>,
    measures: Vec<String>,
    /// Events recorded.
    events: u64,
    strings: Vec<String>,
    groups: Vec<SnapshotGroup>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotGroup(u64, u64, Vec<Slot>, Vec<SnapshotMeasure>);

/// The sum is text: it may exceed what a JSON number holds exactly.
#[derive(Serialize, Deserialize)]
struct SnapshotMeasure(u64, String, i128, i128, Vec<(i32, u64)>);

/// Checks a measure of a group of `count` events, so queries on it cannot go wrong.
fn measure_from_snapshot(m: SnapshotMeasure, count: u64) -> Result<MeasureStats, String> {
    let SnapshotMeasure(n, sum, min, max, hist) = m;
    let sum = sum
        .parse::<i128>()
        .map_err(|_| format!("measure sum `{sum}` is not an integer"))?;
    let in_range = |v: i128| (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(&v);
    if n > count || (n > 0 && (min > max || !in_range(min) || !in_range(max))) {
        return Err(format!(
            "measure of {n} values, min {min}, max {max} in a group of {count} events"
        ));
    }
    let sorted = hist.windows(2).all(|w| w[0].0 < w[1].0);
    let total = hist.iter().fold(0u64, |t, &(_, c)| t.saturating_add(c));
    let consistent = if hist.is_empty() {
        n == 0 || min == max
    } else {
        total == n
    };
    if !sorted || !consistent || hist.iter().any(|&(b, _)| !valid_bucket(b)) {
        return Err(format!("measure histogram of {n} values is malformed"));
    }
    Ok(MeasureStats {
        n,
        sum,
        min,
        max,
        hist,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_below_128_and_within_1_128_above() {
        for v in 0..128 {
            assert_eq!(bucket_value(bucket_of(v)), v);
            assert_eq!(bucket_value(bucket_of(-v)), -v);
        }
        let mut v: i128 = 128;
        while v <= i128::from(u64::MAX) {
            for x in [v, v + v / 3, v * 2 - 1] {
                let rep = bucket_value(bucket_of(x));
                assert!((rep - x).abs() * 128 <= x, "{x} -> {rep}");
                assert_eq!(bucket_value(bucket_of(-x)), -rep);
                assert!(valid_bucket(bucket_of(x)) && valid_bucket(bucket_of(-x)));
            }
            v *= 2;
        }
        assert!(valid_bucket(bucket_of(i64::MIN.into())));
        assert!(!valid_bucket(MAGNITUDE_BUCKETS as i32));
        // Buckets order like their values, so percentiles can walk them in order.
        let buckets: Vec<i32> = (-5000..5000).map(bucket_of).collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn measure_histogram_starts_only_at_a_second_distinct_value() {
        let mut m = MeasureStats::default();
        m.add(500);
        m.add(500);
        assert!(m.hist.is_empty());
        m.add(7);
        assert_eq!(m.hist, vec![(7, 1), (bucket_of(500), 2)]);
        assert_eq!((m.n, m.sum, m.min, m.max), (3, 1007, 7, 500));
    }
}
