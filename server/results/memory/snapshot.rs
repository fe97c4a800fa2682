//! Snapshots: a MEMORY session's aggregates as JSON, written when it ends and restored
//! when its results are asked for after a restart.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::histogram::{valid_bucket, MeasureStats};
use super::keys::{decode_slots, encode_slot, Slot};
use super::{BaseGroup, MemoryError, MemoryLimits, MemoryStore};
use crate::model::TrackerInfo;

/// The snapshot layout's version; bumped when the layout changes.
const SNAPSHOT_VERSION: u32 = 1;

impl MemoryStore {
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
