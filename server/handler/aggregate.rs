//! Converting handler: groups records by any list of fields, counts their calls and
//! applies an operator (sum, average, extremes, percentiles) to one field per group, and
//! hands the groups on as [`AggRow`]s when the stream ends.

use std::hash::{Hash, Hasher};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::{Equivalent, HashMap};

use super::{Flow, Handler};
use crate::model::{calls_in, FieldType, Record, Value};

/// Group keys are looked up without allocating; this bounds the key's width.
pub const MAX_GROUP_BY: usize = 8;

/// An owned field value, kept as part of a group key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyValue {
    Null,
    U64(u64),
    I64(i64),
    Str(Box<str>),
    Time(u64),
}

impl KeyValue {
    pub fn as_value(&self) -> Value<'_> {
        match self {
            KeyValue::Null => Value::Null,
            KeyValue::U64(v) => Value::U64(*v),
            KeyValue::I64(v) => Value::I64(*v),
            KeyValue::Str(s) => Value::Str(s),
            KeyValue::Time(v) => Value::Time(*v),
        }
    }

    fn from_value(value: Value<'_>) -> Self {
        match value {
            Value::Null => KeyValue::Null,
            Value::U64(v) => KeyValue::U64(v),
            Value::I64(v) => KeyValue::I64(v),
            Value::Str(s) => KeyValue::Str(s.into()),
            Value::Time(v) => KeyValue::Time(v),
        }
    }
}

/// One hashing rule for owned keys and borrowed look-up keys, so they meet in the map.
fn hash_values<'a, H: Hasher>(values: impl ExactSizeIterator<Item = Value<'a>>, state: &mut H) {
    state.write_usize(values.len());
    for value in values {
        match value {
            Value::Null => state.write_u8(0),
            Value::U64(v) => {
                state.write_u8(1);
                state.write_u64(v);
            }
            Value::I64(v) => {
                state.write_u8(2);
                state.write_i64(v);
            }
            Value::Str(s) => {
                state.write_u8(3);
                state.write(s.as_bytes());
                state.write_u8(0xff);
            }
            Value::Time(v) => {
                state.write_u8(4);
                state.write_u64(v);
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct GroupKey(Box<[KeyValue]>);

impl Hash for GroupKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_values(self.0.iter().map(KeyValue::as_value), state);
    }
}

/// A key borrowed from the record being counted.
struct KeyRef<'a>(&'a [Value<'a>]);

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_values(self.0.iter().copied(), state);
    }
}

impl Equivalent<GroupKey> for KeyRef<'_> {
    fn equivalent(&self, key: &GroupKey) -> bool {
        self.0.len() == key.0.len()
            && self
                .0
                .iter()
                .zip(key.0.iter())
                .all(|(a, b)| *a == b.as_value())
    }
}

/// The aggregation operator, for the CLI's groups and the API's.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    async_graphql::Enum,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum AggOp {
    #[default]
    Count,
    Sum,
    Avg,
    Min,
    Max,
    P50,
    P95,
    P99,
}

impl AggOp {
    /// The percentile this op asks for, if it is one.
    pub fn percentile(self) -> Option<f64> {
        match self {
            AggOp::P50 => Some(50.0),
            AggOp::P95 => Some(95.0),
            AggOp::P99 => Some(99.0),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AggOp::Count => "count",
            AggOp::Sum => "sum",
            AggOp::Avg => "avg",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::P50 => "p50",
            AggOp::P95 => "p95",
            AggOp::P99 => "p99",
        }
    }
}

/// Zero-based index of the nearest-rank percentile `p` among `n` sorted values (n > 0).
pub fn nearest_rank(p: f64, n: usize) -> usize {
    ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1
}

/// How groups are ordered when handed on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SortBy {
    /// Largest value first (the count's, for COUNT), then by key.
    #[default]
    Value,
    /// Most calls first, then by key.
    Count,
    /// By key.
    Key,
}

/// What an [`Aggregator`] computes.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateSpec {
    pub group_by: Vec<String>,
    /// The field saying how many calls a record stands for (see `TrackerInfo::weight`).
    pub weight: Option<String>,
    pub op: AggOp,
    /// The numeric field `op` applies to; none for COUNT.
    pub field: Option<String>,
    /// Keep only the first N groups.
    pub top: Option<usize>,
    pub sort: SortBy,
    /// Hand on each period's rows and start again, as `syscount -i` prints a table per
    /// interval; none: once, when the stream ends.
    pub period: Option<Duration>,
}

impl AggregateSpec {
    /// Calls per group, most first.
    pub fn count(group_by: Vec<String>, weight: Option<String>) -> Self {
        Self {
            group_by,
            weight,
            op: AggOp::Count,
            field: None,
            top: None,
            sort: SortBy::Value,
            period: None,
        }
    }

    /// The name of the value column: `<op>_<field>`, none for COUNT.
    pub fn value_name(&self) -> Option<String> {
        match (self.op, &self.field) {
            (AggOp::Count, _) | (_, None) => None,
            (op, Some(field)) => Some(format!("{}_{field}", op.as_str())),
        }
    }
}

/// One group: its key values (in `group_by` order), its calls and, unless the op is
/// COUNT, its value (whole: an average is rounded).
#[derive(Clone, Debug, PartialEq)]
pub struct AggRow {
    pub names: Arc<[String]>,
    pub keys: Box<[KeyValue]>,
    pub count: u64,
    /// The value column's name and the group's value (null without values of the field).
    pub value: Option<(Arc<str>, Option<i64>)>,
}

impl AggRow {
    /// The key value of one group-by field.
    pub fn key(&self, name: &str) -> Option<&KeyValue> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.keys[i])
    }

    fn value_of(&self, name: &str) -> Option<Value<'_>> {
        self.value
            .as_ref()
            .filter(|(n, _)| &**n == name)
            .map(|(_, v)| v.map_or(Value::Null, Value::I64))
    }
}

impl Record for AggRow {
    fn visit(&self, visit: &mut dyn FnMut(&str, Value<'_>)) {
        for (name, key) in self.names.iter().zip(self.keys.iter()) {
            visit(name, key.as_value());
        }
        visit("count", Value::U64(self.count));
        if let Some((name, value)) = &self.value {
            visit(name, value.map_or(Value::Null, Value::I64));
        }
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        if name == "count" {
            return Some(Value::U64(self.count));
        }
        self.value_of(name)
            .or_else(|| self.key(name).map(KeyValue::as_value))
    }
}

/// A group's running totals: exact integers (fields are integers).
#[derive(Default)]
struct Acc {
    calls: u64,
    n: u64,
    sum: i128,
    min: i128,
    max: i128,
    /// Every value, for percentiles only.
    values: Vec<i128>,
}

impl Acc {
    fn add(&mut self, calls: u64, value: Option<i128>, keep: bool) {
        self.calls = self.calls.saturating_add(calls);
        let Some(v) = value else { return };
        if self.n == 0 {
            (self.min, self.max) = (v, v);
        } else {
            (self.min, self.max) = (self.min.min(v), self.max.max(v));
        }
        self.n += 1;
        self.sum = self.sum.saturating_add(v);
        if keep {
            self.values.push(v);
        }
    }

    fn value(&mut self, op: AggOp) -> Option<i64> {
        if self.n == 0 {
            return None;
        }
        let v = match op {
            AggOp::Count => self.calls.into(),
            AggOp::Sum => self.sum,
            AggOp::Avg => (self.sum as f64 / self.n as f64).round() as i128,
            AggOp::Min => self.min,
            AggOp::Max => self.max,
            AggOp::P50 | AggOp::P95 | AggOp::P99 => {
                self.values.sort_unstable();
                let p = op.percentile().unwrap_or(50.0);
                self.values[nearest_rank(p, self.values.len())]
            }
        };
        Some(i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX }))
    }
}

fn number(value: Value<'_>) -> Option<i128> {
    match value {
        Value::U64(v) => Some(v.into()),
        Value::I64(v) => Some(v.into()),
        _ => None,
    }
}

/// Groups records by the spec's fields: calls per group (each record counts as many as its
/// weight field says) and the op over the field's non-null values. A record lacking a
/// group-by field counts under a null in that position. Rows go to `next` at `finish`.
pub struct Aggregator<N> {
    names: Arc<[String]>,
    spec: AggregateSpec,
    value_name: Option<Arc<str>>,
    groups: HashMap<GroupKey, Acc>,
    /// When the current period ends, with a period.
    period_ends: Option<Instant>,
    next: N,
}

impl<N> Aggregator<N> {
    /// Panics when `group_by` has more than [`MAX_GROUP_BY`] fields; the chain builder
    /// checks that first and says so.
    pub fn new(spec: AggregateSpec, next: N) -> Self {
        assert!(
            spec.group_by.len() <= MAX_GROUP_BY,
            "at most {MAX_GROUP_BY} group-by fields"
        );
        Self {
            names: spec.group_by.clone().into(),
            value_name: spec.value_name().map(Arc::from),
            period_ends: spec.period.map(|p| Instant::now() + p),
            spec,
            groups: HashMap::new(),
            next,
        }
    }

    /// The current rows, in the spec's order, the first `top`.
    pub fn rows(&mut self) -> Vec<AggRow> {
        let op = self.spec.op;
        let mut rows: Vec<AggRow> = self
            .groups
            .iter_mut()
            .map(|(key, acc)| AggRow {
                names: self.names.clone(),
                keys: key.0.clone(),
                count: acc.calls,
                value: self.value_name.clone().map(|name| (name, acc.value(op))),
            })
            .collect();
        let value = |row: &AggRow| match &row.value {
            Some((_, v)) => v.map_or(i128::MIN, i128::from),
            None => row.count.into(),
        };
        rows.sort_by(|a, b| {
            let order = match self.spec.sort {
                SortBy::Value => value(b).cmp(&value(a)),
                SortBy::Count => b.count.cmp(&a.count),
                SortBy::Key => std::cmp::Ordering::Equal,
            };
            order.then_with(|| a.keys.cmp(&b.keys))
        });
        if let Some(top) = self.spec.top {
            rows.truncate(top);
        }
        rows
    }
}

impl<R: Record + ?Sized, N: Handler<AggRow>> Handler<R> for Aggregator<N> {
    fn handle(&mut self, record: &R) -> Flow {
        let mut values = [Value::Null; MAX_GROUP_BY];
        for (slot, name) in values.iter_mut().zip(self.names.iter()) {
            *slot = record.get(name).unwrap_or(Value::Null);
        }
        let calls = calls_in(self.spec.weight.as_deref().and_then(|w| record.get(w)));
        let value = self
            .spec
            .field
            .as_deref()
            .and_then(|f| record.get(f))
            .and_then(number);
        let keep = self.spec.op.percentile().is_some();
        let probe = KeyRef(&values[..self.names.len()]);
        match self.groups.get_mut(&probe) {
            Some(acc) => acc.add(calls, value, keep),
            None => {
                let key = GroupKey(probe.0.iter().map(|v| KeyValue::from_value(*v)).collect());
                self.groups.entry(key).or_default().add(calls, value, keep);
            }
        }
        Flow::Caught
    }

    /// Also where a period ends: the fan-in flushes at least every few hundred
    /// milliseconds, events or not.
    fn flush(&mut self) -> io::Result<()> {
        if let (Some(ends), Some(period)) = (self.period_ends, self.spec.period) {
            let now = Instant::now();
            if now >= ends {
                self.next.begin_period()?;
                for row in self.rows() {
                    self.next.handle(&row);
                }
                self.groups.clear();
                // A late flush does not shift the periods that follow.
                let behind = (now - ends).as_nanos() / period.as_nanos().max(1);
                self.period_ends = Some(ends + period * (behind as u32 + 1));
            }
        }
        self.next.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        // The last, partial period's table.
        if self.spec.period.is_some() {
            self.next.begin_period()?;
        }
        for row in self.rows() {
            self.next.handle(&row);
        }
        self.next.finish()
    }

    fn begin_period(&mut self) -> io::Result<()> {
        self.next.begin_period()
    }
}

/// Whether values of type `ty` can be summed and ranked.
pub fn is_numeric(ty: FieldType) -> bool {
    matches!(ty, FieldType::U64 | FieldType::I64)
}
