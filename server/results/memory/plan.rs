//! How a query runs over base groups: the slots it groups and filters by ([`Plan`]), and
//! the totals each of its groups folds base groups into ([`Acc`]).

use std::collections::BTreeMap;

use hashbrown::hash_map::Entry;
use hashbrown::HashMap;

use super::histogram::bucket_value;
use super::keys::{decode_slots, Slot};
use super::{BaseGroup, MemoryError, MemoryStore};
use crate::handler::Predicate;
use crate::model::{Record, Value};
use crate::results::query::{nearest_rank, predicate, AggOp, Log2Bucket, Selection};

impl MemoryStore {
    /// The slot index of a field a query groups or filters by; only dimensions can be.
    pub(super) fn dimension(&self, field: &str) -> Result<usize, MemoryError> {
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

    /// How to answer a selection: the slots it groups and filters by, and its target.
    pub(super) fn plan(&self, selection: Selection<'_>) -> Result<Plan, MemoryError> {
        let group_slots = selection
            .group_by
            .iter()
            .map(|g| self.dimension(g))
            .collect::<Result<_, _>>()?;
        let conditions = selection
            .conditions
            .iter()
            .map(|c| Ok((self.dimension(&c.field)?, predicate(self.info, c)?)))
            .collect::<Result<_, MemoryError>>()?;
        let target = match (selection.op, selection.field) {
            (AggOp::Count, _) | (_, None) => Target::Events,
            (_, Some(field)) => match self.measures.iter().position(|m| *m == field) {
                Some(i) => Target::Measure(i),
                None => Target::Dimension(self.dimension(field)?),
            },
        };
        let weight = self
            .info
            .weight
            .and_then(|w| self.measures.iter().position(|m| *m == w));
        Ok(Plan {
            op: selection.op,
            group_slots,
            target,
            weight,
            conditions,
        })
    }

    /// Folds the base groups that meet the plan's conditions into the query's groups,
    /// keyed by (bucket start in seconds, or 0 without buckets; key texts).
    pub(super) fn regroup(
        &self,
        plan: &Plan,
        bucket_secs: Option<u64>,
    ) -> HashMap<(u64, Vec<String>), Acc> {
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

pub(super) struct Plan {
    op: AggOp,
    /// Slot indexes of the group-by fields, in the query's order.
    group_slots: Vec<usize>,
    target: Target,
    /// The measure index of the tracker's weight field: COUNT sums it (calls, not records).
    weight: Option<usize>,
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
pub(super) struct Acc {
    /// Calls: records, each weighted by the tracker's weight field where it has one.
    pub(super) count: u64,
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
        let calls = match plan.weight.and_then(|w| group.measures.get(w)) {
            // Records without the field stand for one call each.
            Some(m) => u64::try_from(m.sum)
                .unwrap_or(u64::MAX)
                .saturating_add(group.count.saturating_sub(m.n)),
            None => group.count,
        };
        self.count = self.count.saturating_add(calls);
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

    /// The target field's values added up.
    pub(super) fn sum(&self) -> i128 {
        self.sum
    }

    pub(super) fn value(&self, plan: &Plan) -> f64 {
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

    /// The distribution in power-of-two buckets. A measure's log-linear bucket lies within
    /// one power of two, so its midpoint falls in the same bucket as each of its values.
    pub(super) fn log2_buckets(&self, plan: &Plan) -> Vec<Log2Bucket> {
        Log2Bucket::count(self.dist.iter().map(|(&at, &count)| match plan.target {
            Target::Measure(_) => (bucket_value(i32::try_from(at).unwrap_or(0)), count),
            _ => (at, count),
        }))
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
