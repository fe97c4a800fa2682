//! The chain's end of a MEMORY session, on the tracker thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::RwLock;

use super::keys::{encode_slot, Interner, Slot};
use super::{BaseGroup, MemoryStore, NS_PER_SEC};
use crate::handler::{Flow, Handler};
use crate::metrics::{stage, Metrics};
use crate::model::{calls_in, Record, Value};
use crate::trackers::Event;

impl MemoryStore {
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
        ring.push_back((id as i64, event.clone()));
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
    /// The current event's measure values, each with the calls it sums.
    values: Vec<Option<(i128, u64)>>,
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
        let store = &self.store;
        self.values
            .extend(
                store
                    .measures
                    .iter()
                    .zip(store.summed_over.iter())
                    .map(|(&name, weight)| {
                        let calls = weight.map_or(1, |w| calls_in(event.get(w)));
                        Some((event.get(name)?.as_i128()?, calls))
                    }),
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
