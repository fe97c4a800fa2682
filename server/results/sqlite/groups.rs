//! `eunomia_groups(op, dims..., weight, value)`: an SQL aggregate function that groups a
//! session's events in one pass, in a hash table, and answers every group at once. `op`
//! is an [`AggOp`]'s name or `histogram` (power-of-two buckets, see [`Log2Bucket`]).
//!
//! SQLite groups by sorting: a GROUP BY over a million events sorts a million keys (about
//! a second on two cores), and a percentile per group needs a window function that sorts
//! them again. This function sees each row once and keeps, per group, its calls and what
//! the op needs (the values themselves only for a percentile, picked by selection rather
//! than a sort), so a question over a million events costs little more than reading them.
//!
//! Registered on every read connection through rusqlite's safe function API (sqlx has
//! none), on the handle sqlx opened. It returns JSON: `[[keys, calls, value], ...]`, the
//! keys as SQLite typed them (null, integer, real, text), the value a number, or for a
//! histogram `{"buckets": [[bucket, count], ...], "sum": S}`.

use std::collections::{BTreeMap, HashMap};

use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::types::ValueRef;

use crate::results::query::{nearest_rank, AggOp, Log2Bucket};

/// The `op` of a histogram.
pub(super) const HISTOGRAM: &str = "histogram";
/// The `op` of a histogram of a total field: each row's value sums `weight` calls, binned
/// at their mean (see `TrackerInfo::summed_over`).
pub(super) const HISTOGRAM_PER_CALL: &str = "histogram_per_call";

/// What a question asks of each group.
#[derive(Clone, Copy)]
enum Ask {
    Op(AggOp),
    /// Whether each row's value is a total over its calls.
    Histogram {
        per_call: bool,
    },
}

/// The function's name in SQL.
pub(super) const NAME: &str = "eunomia_groups";
/// How the error of a question with more groups than allowed begins.
pub(super) const TOO_MANY_GROUPS: &str = "eunomia_groups: more than";

/// Registers [`NAME`] on a connection sqlx opened. A question that would make more than
/// `max_groups` groups fails rather than holding them all in memory.
pub(super) fn register(
    handle: *mut rusqlite::ffi::sqlite3,
    max_groups: usize,
) -> rusqlite::Result<()> {
    // SAFETY: `handle` is an open connection that outlives this borrow; the rusqlite
    // wrapper does not own it and closes nothing when dropped. The function stays
    // registered on the connection until SQLite closes it.
    let conn = unsafe { rusqlite::Connection::from_handle(handle) }?;
    conn.create_aggregate_function(
        NAME,
        -1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        Groups { max_groups },
    )
}

struct Groups {
    max_groups: usize,
}

/// One group: the calls its rows stand for and the op's running state.
#[derive(Default)]
struct Group {
    keys: Vec<serde_json::Value>,
    calls: u64,
    /// Non-null values seen.
    n: u64,
    sum: f64,
    min: f64,
    max: f64,
    /// Every non-null value, for percentiles only.
    values: Vec<f64>,
    /// Values per power-of-two bucket, for histograms only.
    buckets: BTreeMap<i32, u64>,
}

/// The groups of one query, keyed by an encoding of their key values (so that looking a
/// row's group up allocates nothing once the group exists).
struct State {
    ask: Ask,
    dims: usize,
    groups: HashMap<Vec<u8>, Group>,
    scratch: Vec<u8>,
}

fn arg_error(message: &str) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(message.into())
}

impl Aggregate<State, String> for Groups {
    fn init(&self, ctx: &mut Context<'_>) -> rusqlite::Result<State> {
        if ctx.len() < 3 {
            return Err(arg_error("eunomia_groups(op, dims..., weight, value)"));
        }
        let op: String = ctx.get(0)?;
        let ask = match op.as_str() {
            HISTOGRAM => Ask::Histogram { per_call: false },
            HISTOGRAM_PER_CALL => Ask::Histogram { per_call: true },
            op => {
                Ask::Op(<AggOp as clap::ValueEnum>::from_str(op, false).map_err(|e| arg_error(&e))?)
            }
        };
        Ok(State {
            ask,
            dims: ctx.len() - 3,
            groups: HashMap::new(),
            scratch: Vec::new(),
        })
    }

    fn step(&self, ctx: &mut Context<'_>, state: &mut State) -> rusqlite::Result<()> {
        state.scratch.clear();
        for i in 1..=state.dims {
            encode(&mut state.scratch, ctx.get_raw(i));
        }
        let full = state.groups.len() >= self.max_groups;
        let group = match state.groups.get_mut(state.scratch.as_slice()) {
            Some(group) => group,
            None if full => {
                return Err(arg_error(&format!(
                    "{TOO_MANY_GROUPS} {} groups",
                    self.max_groups
                )));
            }
            None => {
                let keys = (1..=state.dims).map(|i| key(ctx.get_raw(i))).collect();
                state.groups.entry(state.scratch.clone()).or_insert(Group {
                    keys,
                    ..Group::default()
                })
            }
        };
        // A record stands for `weight` calls (null: one).
        let calls = match ctx.get_raw(state.dims + 1) {
            ValueRef::Integer(n) => u64::try_from(n).unwrap_or(0),
            _ => 1,
        };
        group.calls = group.calls.saturating_add(calls);
        let (value, whole) = match ctx.get_raw(state.dims + 2) {
            ValueRef::Integer(v) => (v as f64, i128::from(v)),
            ValueRef::Real(v) => (v, v as i128),
            _ => return Ok(()),
        };
        if group.n == 0 {
            (group.min, group.max) = (value, value);
        }
        group.n += 1;
        group.sum += value;
        group.min = group.min.min(value);
        group.max = group.max.max(value);
        match state.ask {
            Ask::Op(op) if op.percentile().is_some() => group.values.push(value),
            Ask::Histogram { per_call: false } => {
                *group
                    .buckets
                    .entry(Log2Bucket::index_of(whole))
                    .or_default() += 1
            }
            Ask::Histogram { per_call: true } => {
                let calls = calls.max(1);
                let slot = group
                    .buckets
                    .entry(Log2Bucket::index_of(whole / i128::from(calls)))
                    .or_default();
                *slot = slot.saturating_add(calls);
            }
            Ask::Op(_) => {}
        }
        Ok(())
    }

    fn finalize(&self, _: &mut Context<'_>, state: Option<State>) -> rusqlite::Result<String> {
        let Some(state) = state else {
            return Ok("[]".to_string());
        };
        let ask = state.ask;
        let rows: Vec<_> = state
            .groups
            .into_values()
            .map(|mut g| {
                let value: serde_json::Value = match ask {
                    Ask::Histogram { .. } => serde_json::json!({
                        "buckets": std::mem::take(&mut g.buckets).into_iter().collect::<Vec<_>>(),
                        "sum": g.sum,
                    }),
                    Ask::Op(op) => op_value(op, &mut g).into(),
                };
                (g.keys, g.calls, value)
            })
            .collect();
        serde_json::to_string(&rows).map_err(|e| arg_error(&e.to_string()))
    }
}

fn op_value(op: AggOp, g: &mut Group) -> f64 {
    match op {
        AggOp::Count => g.calls as f64,
        _ if g.n == 0 => 0.0,
        AggOp::Sum => g.sum,
        AggOp::Avg => g.sum / g.n as f64,
        AggOp::Min => g.min,
        AggOp::Max => g.max,
        AggOp::P50 | AggOp::P95 | AggOp::P99 => {
            let rank = nearest_rank(op.percentile().unwrap_or(50.0), g.values.len());
            *g.values.select_nth_unstable_by(rank, f64::total_cmp).1
        }
    }
}

/// Appends a key value to a group's encoding: a tag, then the value, lengths first, so
/// that distinct keys never encode alike (a null and the text "null" among them).
fn encode(out: &mut Vec<u8>, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => out.push(0),
        ValueRef::Integer(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
        ValueRef::Real(v) => {
            out.push(2);
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
            out.push(if matches!(value, ValueRef::Text(_)) {
                3
            } else {
                4
            });
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

/// A key value as JSON, typed as SQLite holds it.
fn key(value: ValueRef<'_>) -> serde_json::Value {
    match value {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(v) => v.into(),
        ValueRef::Real(v) => v.into(),
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
            String::from_utf8_lossy(bytes).into_owned().into()
        }
    }
}
