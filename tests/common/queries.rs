//! What the store and memory tests ask: the process tracker's catalog, and builders for
//! queries, conditions and the rows expected back.

use eunomia::handler::Op;
use eunomia::model::TrackerInfo;
use eunomia::results::query::{AggOp, AggResult, AggregateQuery, Condition, EventsQuery};
use eunomia::trackers::find_tracker;

/// A whole second, 2026-11-28T09:20:00Z.
pub const T0: u64 = 1_795_857_600_000_000_000;
pub const SEC: u64 = 1_000_000_000;

pub fn info() -> &'static TrackerInfo {
    find_tracker("process").unwrap().info()
}

pub fn query(group_by: &[&str], op: AggOp, field: Option<&str>) -> AggregateQuery {
    AggregateQuery {
        group_by: group_by.iter().map(|g| g.to_string()).collect(),
        op,
        field: field.map(str::to_string),
        top: None,
        conditions: Vec::new(),
    }
}

/// A page of at most `first` events after `after` that meet `conditions`.
pub fn events_page(first: usize, after: Option<i64>, conditions: &[Condition]) -> EventsQuery {
    EventsQuery {
        first,
        after,
        through: None,
        conditions: conditions.to_vec(),
    }
}

pub fn cond(field: &str, op: Op, value: &str) -> Condition {
    Condition {
        field: field.to_string(),
        op,
        value: value.to_string(),
    }
}

pub fn row(keys: &[&str], value: f64, count: u64) -> AggResult {
    AggResult {
        keys: keys.iter().map(|k| k.to_string()).collect(),
        value,
        count,
    }
}
