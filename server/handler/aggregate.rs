//! Converting handler: counts records grouped by any list of fields, and hands the
//! counts on as [`AggRow`]s when the stream ends.

use std::hash::{Hash, Hasher};
use std::io;
use std::sync::Arc;

use hashbrown::{Equivalent, HashMap};

use super::{Flow, Handler};
use crate::model::{calls_in, Record, Value};

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

/// One group: its key values (in `group_by` order) and how many records it had.
#[derive(Clone, Debug, PartialEq)]
pub struct AggRow {
    pub names: Arc<[String]>,
    pub keys: Box<[KeyValue]>,
    pub count: u64,
}

impl AggRow {
    /// The key value of one group-by field.
    pub fn key(&self, name: &str) -> Option<&KeyValue> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.keys[i])
    }
}

impl Record for AggRow {
    fn visit(&self, visit: &mut dyn FnMut(&str, Value<'_>)) {
        for (name, key) in self.names.iter().zip(self.keys.iter()) {
            visit(name, key.as_value());
        }
        visit("count", Value::U64(self.count));
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        if name == "count" {
            return Some(Value::U64(self.count));
        }
        self.key(name).map(KeyValue::as_value)
    }
}

/// Counts calls per group of `group_by` values: each record counts as many as its
/// `weight` field says (one when it has none, or it is null). A record lacking a field
/// counts under a null in that position. Rows go to `next` at `finish`, largest count
/// first.
pub struct CountAggregator<N> {
    names: Arc<[String]>,
    weight: Option<String>,
    groups: HashMap<GroupKey, u64>,
    next: N,
}

impl<N> CountAggregator<N> {
    /// Panics when `group_by` has more than [`MAX_GROUP_BY`] fields; the chain builder
    /// checks that first and says so.
    pub fn new(group_by: Vec<String>, weight: Option<String>, next: N) -> Self {
        assert!(
            group_by.len() <= MAX_GROUP_BY,
            "at most {MAX_GROUP_BY} group-by fields"
        );
        Self {
            names: group_by.into(),
            weight,
            groups: HashMap::new(),
            next,
        }
    }

    /// The current rows, largest count first, ties by key.
    pub fn rows(&self) -> Vec<AggRow> {
        let mut rows: Vec<AggRow> = self
            .groups
            .iter()
            .map(|(key, &count)| AggRow {
                names: self.names.clone(),
                keys: key.0.clone(),
                count,
            })
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.keys.cmp(&b.keys)));
        rows
    }
}

impl<R: Record + ?Sized, N: Handler<AggRow>> Handler<R> for CountAggregator<N> {
    fn handle(&mut self, record: &R) -> Flow {
        let mut values = [Value::Null; MAX_GROUP_BY];
        for (slot, name) in values.iter_mut().zip(self.names.iter()) {
            *slot = record.get(name).unwrap_or(Value::Null);
        }
        let calls = calls_in(self.weight.as_deref().and_then(|w| record.get(w)));
        let probe = KeyRef(&values[..self.names.len()]);
        match self.groups.get_mut(&probe) {
            Some(count) => *count = count.saturating_add(calls),
            None => {
                let key = GroupKey(probe.0.iter().map(|v| KeyValue::from_value(*v)).collect());
                self.groups.insert(key, calls);
            }
        }
        Flow::Caught
    }

    fn flush(&mut self) -> io::Result<()> {
        self.next.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        for row in self.rows() {
            self.next.handle(&row);
        }
        self.next.finish()
    }
}
