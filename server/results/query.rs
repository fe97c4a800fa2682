//! What users ask of a session's results, shared by both stores (SQLite and memory) so
//! they answer the same question the same way.
//!
//! Semantics, for both stores:
//! - Events are first restricted by `conditions` (all must hold; a null never matches).
//! - Groups are formed by the `group_by` fields' values; a group's key is the values'
//!   text (`"null"` for a null, RFC 3339 for a time, decimal for numbers).
//! - `count` is the number of events in the group. `value` is `count` for COUNT, else
//!   the op over the group's non-null numeric values of `field` (0 when there are none).
//! - Percentiles use the nearest-rank method: the value at rank ceil(p/100 * n).
//! - Rows are ordered by value descending, then keys ascending; `top` keeps the first N.
//! - A histogram counts each group's non-null values of `field` in power-of-two buckets,
//!   as bpftrace's `hist()` does: negatives, [0, 1), [1, 2), [2, 4), ... Rows are ordered
//!   by their count descending, then keys; groups without a value are left out.

use crate::handler::{is_numeric, push_json_record, FilterError, Op, Predicate};
pub use crate::handler::{nearest_rank, AggOp, Log2Bucket};
use crate::model::TrackerInfo;
use crate::model::{FieldInfo, FieldType};
use crate::trackers::Event;

/// `field op value`; `value` is text and is read as a number for numeric fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub field: String,
    pub op: Op,
    pub value: String,
}

/// A page of a session's events: those with ids above `after` (in arrival order) and
/// numbers (`StoredEvent::seq`) up to `through` that meet every condition, `first` at most.
#[derive(Clone, Debug, PartialEq)]
pub struct EventsQuery {
    pub first: usize,
    pub after: Option<i64>,
    pub through: Option<i64>,
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AggregateQuery {
    pub group_by: Vec<String>,
    pub op: AggOp,
    /// Required for every op but COUNT; must be numeric.
    pub field: Option<String>,
    pub top: Option<usize>,
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TimeseriesQuery {
    pub bucket_secs: u64,
    pub group_by: Vec<String>,
    pub op: AggOp,
    pub field: Option<String>,
    pub conditions: Vec<Condition>,
}

/// A histogram of a numeric field per group (see the module's semantics).
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramQuery {
    pub group_by: Vec<String>,
    pub field: String,
    pub top: Option<usize>,
    pub conditions: Vec<Condition>,
}

/// One group's histogram: its values counted per bucket, non-empty buckets in order.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramResult {
    pub keys: Vec<String>,
    /// The group's values (the buckets' counts summed).
    pub count: u64,
    /// The values added up.
    pub sum: f64,
    pub buckets: Vec<Log2Bucket>,
}

/// Orders histogram rows as the semantics say, drops those without values, keeps the
/// top N.
pub fn order_histograms(rows: &mut Vec<HistogramResult>, top: Option<usize>) {
    rows.retain(|r| r.count > 0);
    rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.keys.cmp(&b.keys)));
    if let Some(top) = top {
        rows.truncate(top);
    }
}

/// One group of an aggregate.
#[derive(Clone, Debug, PartialEq)]
pub struct AggResult {
    pub keys: Vec<String>,
    pub value: f64,
    pub count: u64,
}

/// One group in one time bucket; `start_ns` is the bucket's start (Unix ns), a multiple
/// of the bucket width. Ordered by start, then value descending, then keys.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeBucketResult {
    pub start_ns: u64,
    pub keys: Vec<String>,
    pub value: f64,
    pub count: u64,
}

/// An event as queries return it: the common fields as columns, every field in `data`.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// Position in its session, increasing with arrival; the pagination cursor.
    pub id: i64,
    /// Its number in the session: 1, 2, 3 ... in the order the session's chain saw it,
    /// counting events later lost; what live subscribers see as the id. None for events
    /// stored before sessions numbered them.
    pub seq: Option<i64>,
    pub ts_ns: u64,
    pub tracker: String,
    pub kind: String,
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    /// Every field of the event, as the JSON Lines output has it.
    pub data: serde_json::Value,
}

impl StoredEvent {
    /// An event as numbered in its session (`id` and `seq` are one number here).
    pub fn from_event(id: i64, event: &Event) -> Self {
        let mut json = Vec::with_capacity(512);
        push_json_record(&mut json, event);
        Self {
            id,
            seq: Some(id),
            ts_ns: event.header.ts_ns,
            tracker: event.tracker().to_string(),
            kind: event.kind().to_string(),
            pid: event.header.pid,
            ppid: event.header.ppid,
            comm: event.header.comm.as_str().to_string(),
            cgroup_id: event.header.cgroup_id,
            data: serde_json::from_slice(&json).unwrap_or(serde_json::Value::Null),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("unknown field `{field}` for tracker `{tracker}`; known fields: {known}")]
    UnknownField {
        tracker: String,
        field: String,
        known: String,
    },
    #[error("{op:?} needs a numeric `field`")]
    FieldRequired { op: AggOp },
    #[error("field `{0}` is not numeric")]
    NotNumeric(String),
    #[error("field `{field}` is numeric but `{value}` is not a number")]
    NotANumber { field: String, value: String },
    #[error("operator CONTAINS needs a text field, and `{0}` is numeric")]
    ContainsOnNumber(String),
    #[error("groupBy takes at most {max} fields")]
    TooManyGroupFields { max: usize },
    #[error("bucketSecs must be at least 1")]
    BadBucket,
    #[error(
        "{op} of `{field}` is refused: each record of this {tracker} session sums `{field}` \
         over an interval's calls (counted in the kernel), so {op} would be one of interval \
         sums, not of calls. Ask for SUM (COUNT counts the calls); for per-call values, \
         record each call (syscall: mode stream)"
    )]
    PerCallOfTotals {
        op: String,
        field: String,
        tracker: String,
    },
    #[error("tracker `{0}` records no stacks (profile, offcpu and memleak do)")]
    NoStacks(String),
}

/// The largest `group_by` list accepted.
pub const MAX_GROUP_BY: usize = crate::handler::MAX_GROUP_BY;

/// The catalog entry of a tracker's field, or the error naming the fields it has.
pub fn catalog_field(info: &TrackerInfo, name: &str) -> Result<&'static FieldInfo, QueryError> {
    info.all_fields()
        .find(|f| f.name == name)
        .ok_or_else(|| QueryError::UnknownField {
            tracker: info.name.to_string(),
            field: name.to_string(),
            known: info
                .all_fields()
                .map(|f| f.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn field_type(info: &TrackerInfo, field: &str) -> Result<FieldType, QueryError> {
    catalog_field(info, field).map(|f| f.ty)
}

/// Checks conditions against the tracker's fields and types.
pub fn validate_conditions(info: &TrackerInfo, conditions: &[Condition]) -> Result<(), QueryError> {
    for c in conditions {
        let ty = field_type(info, &c.field)?;
        if is_numeric(ty) {
            if c.op == Op::Contains {
                return Err(QueryError::ContainsOnNumber(c.field.clone()));
            }
            if c.value.trim().parse::<i128>().is_err() {
                return Err(QueryError::NotANumber {
                    field: c.field.clone(),
                    value: c.value.clone(),
                });
            }
        }
    }
    Ok(())
}

/// A checked condition (see [`validate_conditions`]) as a [`Predicate`] over records.
pub fn predicate(info: &TrackerInfo, c: &Condition) -> Result<Predicate, QueryError> {
    let ty = field_type(info, &c.field)?;
    // validate_conditions reads numbers trimmed; Predicate does not trim.
    let text = if is_numeric(ty) {
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

/// What aggregate and timeseries queries share: which events (`conditions`), grouped by
/// which fields, and which op over which field.
#[derive(Clone, Copy, Debug)]
pub struct Selection<'a> {
    pub group_by: &'a [String],
    pub op: AggOp,
    pub field: Option<&'a str>,
    pub conditions: &'a [Condition],
}

impl<'a> Selection<'a> {
    fn new(
        group_by: &'a [String],
        op: AggOp,
        field: Option<&'a str>,
        conditions: &'a [Condition],
    ) -> Self {
        Self {
            group_by,
            op,
            field,
            conditions,
        }
    }

    fn validate(&self, info: &TrackerInfo) -> Result<(), QueryError> {
        if self.group_by.len() > MAX_GROUP_BY {
            return Err(QueryError::TooManyGroupFields { max: MAX_GROUP_BY });
        }
        for g in self.group_by {
            field_type(info, g)?;
        }
        match (self.op, self.field) {
            (AggOp::Count, None) => {}
            (_, Some(f)) => {
                if !is_numeric(field_type(info, f)?) {
                    return Err(QueryError::NotNumeric(f.to_string()));
                }
            }
            (op, None) => return Err(QueryError::FieldRequired { op }),
        }
        validate_conditions(info, self.conditions)
    }
}

impl<'a> From<&'a AggregateQuery> for Selection<'a> {
    fn from(q: &'a AggregateQuery) -> Self {
        Selection::new(&q.group_by, q.op, q.field.as_deref(), &q.conditions)
    }
}

/// A histogram needs each group's distribution of the field, as a percentile does.
impl<'a> From<&'a HistogramQuery> for Selection<'a> {
    fn from(q: &'a HistogramQuery) -> Self {
        Selection::new(&q.group_by, AggOp::P50, Some(&q.field), &q.conditions)
    }
}

impl HistogramQuery {
    pub fn validate(&self, info: &TrackerInfo) -> Result<(), QueryError> {
        Selection::from(self).validate(info)
    }
}

impl<'a> From<&'a TimeseriesQuery> for Selection<'a> {
    fn from(q: &'a TimeseriesQuery) -> Self {
        Selection::new(&q.group_by, q.op, q.field.as_deref(), &q.conditions)
    }
}

impl AggregateQuery {
    pub fn validate(&self, info: &TrackerInfo) -> Result<(), QueryError> {
        Selection::from(self).validate(info)
    }
}

impl TimeseriesQuery {
    /// The bucket width in nanoseconds.
    pub fn bucket_ns(&self) -> i64 {
        i64::try_from(self.bucket_secs.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX)
    }

    pub fn validate(&self, info: &TrackerInfo) -> Result<(), QueryError> {
        if self.bucket_secs == 0 {
            return Err(QueryError::BadBucket);
        }
        Selection::from(self).validate(info)
    }
}

/// Refuses AVG, MIN, MAX and percentiles of a total field (`FieldInfo::total`) in a
/// session whose records are interval totals (`totals`): they would describe sums, not
/// calls. COUNT and SUM are exact either way.
pub fn check_per_call(
    info: &TrackerInfo,
    op: AggOp,
    field: Option<&str>,
    totals: bool,
) -> Result<(), QueryError> {
    let Some(field) = field else {
        return Ok(());
    };
    let per_call = matches!(op, AggOp::Avg | AggOp::Min | AggOp::Max) || op.percentile().is_some();
    if per_call {
        refuse_totals(info, &format!("{op:?}"), field, totals)
    } else {
        catalog_field(info, field).map(drop)
    }
}

/// A histogram is of per-call values: refused over a total field as percentiles are,
/// unless each record's calls lie in one power-of-two bucket of it (`bucketed`, see
/// `TrackerOptions::totals_per_log2_bucket`).
pub fn check_histogram(
    info: &TrackerInfo,
    field: &str,
    totals: bool,
    bucketed: &[&str],
) -> Result<(), QueryError> {
    refuse_totals(
        info,
        "HISTOGRAM",
        field,
        totals && !bucketed.contains(&field),
    )
}

fn refuse_totals(
    info: &TrackerInfo,
    what: &str,
    field: &str,
    totals: bool,
) -> Result<(), QueryError> {
    let f = catalog_field(info, field)?;
    if totals && f.total {
        return Err(QueryError::PerCallOfTotals {
            op: what.to_string(),
            field: f.name.to_string(),
            tracker: info.name.to_string(),
        });
    }
    Ok(())
}

/// Applies `op` to a group's values (exact). `values` may be reordered.
pub fn apply_op(op: AggOp, count: u64, values: &mut [f64]) -> f64 {
    if op == AggOp::Count {
        return count as f64;
    }
    if values.is_empty() {
        return 0.0;
    }
    match op {
        AggOp::Count => count as f64,
        AggOp::Sum => values.iter().sum(),
        AggOp::Avg => values.iter().sum::<f64>() / values.len() as f64,
        AggOp::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
        AggOp::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        AggOp::P50 | AggOp::P95 | AggOp::P99 => {
            values.sort_by(f64::total_cmp);
            values[nearest_rank(op.percentile().unwrap_or(50.0), values.len())]
        }
    }
}

/// Orders rows as the semantics say and keeps the top N.
pub fn order_and_truncate(rows: &mut Vec<AggResult>, top: Option<usize>) {
    rows.sort_by(|a, b| {
        b.value
            .total_cmp(&a.value)
            .then_with(|| a.keys.cmp(&b.keys))
    });
    if let Some(top) = top {
        rows.truncate(top);
    }
}

impl TimeBucketResult {
    /// A group's row in the bucket that starts at `start_ns`.
    pub fn of_group(start_ns: i64, row: AggResult) -> Self {
        Self {
            start_ns: start_ns as u64,
            keys: row.keys,
            value: row.value,
            count: row.count,
        }
    }
}

/// Orders time buckets as the semantics say.
pub fn order_buckets(rows: &mut [TimeBucketResult]) {
    rows.sort_by(|a, b| {
        a.start_ns
            .cmp(&b.start_ns)
            .then_with(|| b.value.total_cmp(&a.value))
            .then_with(|| a.keys.cmp(&b.keys))
    });
}

/// Fills `rows` (ordered by [`order_buckets`]) with the empty buckets of `bucket_secs`
/// between the one holding `from_ns` and the one holding `to_ns`: a row with value 0 and
/// count 0 wherever a series (a key set of `rows`; the one series of no keys when
/// `grouped` is false) has none, so that a chart needs to fill no gaps. Buckets start at
/// multiples of `bucket_secs` since the epoch, as the stores group them. Err(rows it
/// would return) past `max_rows`.
pub fn fill_buckets(
    rows: Vec<TimeBucketResult>,
    bucket_secs: u64,
    (from_ns, to_ns): (u64, u64),
    grouped: bool,
    max_rows: usize,
) -> Result<Vec<TimeBucketResult>, u64> {
    let bucket_ns = bucket_secs.saturating_mul(1_000_000_000).max(1);
    let first = from_ns.min(to_ns) / bucket_ns * bucket_ns;
    let last = rows
        .iter()
        .map(|r| r.start_ns)
        .fold(to_ns / bucket_ns * bucket_ns, u64::max);
    let first = rows.iter().map(|r| r.start_ns).fold(first, u64::min);
    let mut series: Vec<Vec<String>> = rows.iter().map(|r| r.keys.clone()).collect();
    series.sort();
    series.dedup();
    if series.is_empty() && !grouped {
        series.push(Vec::new());
    }
    let buckets = (last - first) / bucket_ns + 1;
    let total = buckets.saturating_mul(series.len() as u64);
    if total > max_rows as u64 {
        return Err(total);
    }
    let have: std::collections::HashSet<(u64, &[String])> = rows
        .iter()
        .map(|r| (r.start_ns, r.keys.as_slice()))
        .collect();
    let mut empty = Vec::new();
    for bucket in 0..buckets {
        let start_ns = first + bucket * bucket_ns;
        for keys in &series {
            if !have.contains(&(start_ns, keys.as_slice())) {
                empty.push(TimeBucketResult {
                    start_ns,
                    keys: keys.clone(),
                    value: 0.0,
                    count: 0,
                });
            }
        }
    }
    let mut filled = rows;
    filled.extend(empty);
    order_buckets(&mut filled);
    Ok(filled)
}

#[cfg(test)]
mod tests {
    fn bucket(start_s: u64, keys: &[&str], count: u64) -> TimeBucketResult {
        TimeBucketResult {
            start_ns: start_s * 1_000_000_000,
            keys: keys.iter().map(|k| k.to_string()).collect(),
            value: count as f64,
            count,
        }
    }

    #[test]
    fn filling_adds_each_series_empty_buckets_and_bounds_them() {
        let rows = vec![bucket(10, &["a"], 3), bucket(12, &["b"], 1)];
        // From 9.5 s to 13.2 s in buckets of 1 s: 9 to 13, two series.
        let range = (9_500_000_000, 13_200_000_000);
        let filled = fill_buckets(rows.clone(), 1, range, true, 100).unwrap();
        let got: Vec<(u64, &str, u64)> = filled
            .iter()
            .map(|r| (r.start_ns / 1_000_000_000, r.keys[0].as_str(), r.count))
            .collect();
        let mut want = Vec::new();
        for second in 9..=13 {
            for key in ["a", "b"] {
                let count = match (second, key) {
                    (10, "a") => 3,
                    (12, "b") => 1,
                    _ => 0,
                };
                want.push((second, key, count));
            }
        }
        // order_buckets: by start, then the larger value first, then keys.
        want.sort_by(|x, y| x.0.cmp(&y.0).then(y.2.cmp(&x.2)).then(x.1.cmp(y.1)));
        assert_eq!(got, want);
        assert_eq!(fill_buckets(rows, 1, range, true, 9), Err(10));

        // No events and no groupBy: one series of zeros; with a groupBy, no series at all.
        let empty = fill_buckets(Vec::new(), 2, (0, 5_000_000_000), false, 100).unwrap();
        assert_eq!(
            empty.iter().map(|r| r.start_ns).collect::<Vec<_>>(),
            [0, 2_000_000_000, 4_000_000_000]
        );
        assert!(empty.iter().all(|r| r.keys.is_empty() && r.count == 0));
        assert_eq!(
            fill_buckets(Vec::new(), 2, (0, 5_000_000_000), true, 100),
            Ok(Vec::new())
        );
    }

    #[test]
    fn log2_buckets_split_at_powers_of_two() {
        let index: Vec<i32> = [-5, -1, 0, 1, 2, 3, 4, 7, 8, 1023, 1024]
            .map(Log2Bucket::index_of)
            .to_vec();
        assert_eq!(index, [-1, -1, 0, 1, 2, 2, 3, 3, 4, 10, 11]);
        let b = |index| Log2Bucket { index, count: 0 };
        assert_eq!((b(-1).low(), b(-1).high()), (None, 0.0));
        assert_eq!((b(0).low(), b(0).high()), (Some(0.0), 1.0));
        assert_eq!((b(11).low(), b(11).high()), (Some(1024.0), 2048.0));
        assert_eq!(Log2Bucket::index_of(u64::MAX.into()), 64);
        assert_eq!(
            Log2Bucket::count([(3, 2), (-4, 1), (2, 5), (9, 1)]),
            [
                Log2Bucket {
                    index: -1,
                    count: 1
                },
                Log2Bucket { index: 2, count: 7 },
                Log2Bucket { index: 4, count: 1 }
            ]
        );
    }

    #[test]
    fn histograms_of_interval_totals_are_refused_unless_bucketed() {
        let syscall = crate::trackers::find_tracker("syscall").unwrap().info();
        let err = check_histogram(syscall, "latency_ns", true, &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("HISTOGRAM of `latency_ns` is refused"),
            "{err}"
        );
        assert_eq!(check_histogram(syscall, "latency_ns", false, &[]), Ok(()));
        assert!(matches!(
            check_histogram(syscall, "nope", false, &[]),
            Err(QueryError::UnknownField { .. })
        ));
        let runqlat = crate::trackers::find_tracker("runqlat").unwrap().info();
        let bucketed = &["latency_ns"];
        assert_eq!(
            check_histogram(runqlat, "latency_ns", true, bucketed),
            Ok(())
        );
    }

    use super::*;

    #[test]
    fn ops_follow_the_documented_semantics() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(apply_op(AggOp::Count, 7, &mut v), 7.0);
        assert_eq!(apply_op(AggOp::Sum, 5, &mut v), 15.0);
        assert_eq!(apply_op(AggOp::Avg, 5, &mut v), 3.0);
        assert_eq!(apply_op(AggOp::Min, 5, &mut v), 1.0);
        assert_eq!(apply_op(AggOp::Max, 5, &mut v), 5.0);
        assert_eq!(apply_op(AggOp::P50, 5, &mut v), 3.0);
        assert_eq!(apply_op(AggOp::P95, 5, &mut v), 5.0);
        assert_eq!(apply_op(AggOp::Sum, 3, &mut []), 0.0);
        assert_eq!(nearest_rank(99.0, 100), 98);
        assert_eq!(nearest_rank(50.0, 1), 0);
    }

    /// Every query is checked against the tracker's catalog before any store sees it.
    #[test]
    fn queries_are_validated_against_the_catalog() {
        let info = crate::trackers::find_tracker("process").unwrap().info();
        let condition = |field: &str, op: Op, value: &str| Condition {
            field: field.into(),
            op,
            value: value.into(),
        };
        let aggregate = |group_by: &[&str], op: AggOp, field: Option<&str>, conditions| {
            AggregateQuery {
                group_by: group_by.iter().map(|g| g.to_string()).collect(),
                op,
                field: field.map(str::to_string),
                top: None,
                conditions,
            }
            .validate(info)
            .map_err(|e| e.to_string())
        };
        let error = |result: Result<(), String>| result.unwrap_err();
        assert_eq!(aggregate(&["comm"], AggOp::Count, None, vec![]), Ok(()));
        assert_eq!(
            aggregate(
                &["comm"],
                AggOp::P99,
                Some("duration_ns"),
                vec![
                    condition("exit_code", Op::Ne, " 0 "),
                    condition("comm", Op::Contains, "sh")
                ]
            ),
            Ok(())
        );
        assert!(
            error(aggregate(&["bogus"], AggOp::Count, None, vec![])).starts_with(
                "unknown field `bogus` for tracker `process`; known fields: tracker, kind"
            )
        );
        assert!(error(aggregate(
            &[],
            AggOp::Count,
            None,
            vec![condition("nope", Op::Eq, "1")]
        ))
        .starts_with("unknown field `nope` for tracker `process`"));
        assert_eq!(
            error(aggregate(
                &[],
                AggOp::Count,
                None,
                vec![condition("pid", Op::Eq, "one")]
            )),
            "field `pid` is numeric but `one` is not a number"
        );
        assert_eq!(
            error(aggregate(
                &[],
                AggOp::Count,
                None,
                vec![condition("pid", Op::Contains, "1")]
            )),
            "operator CONTAINS needs a text field, and `pid` is numeric"
        );
        assert_eq!(
            error(aggregate(&[], AggOp::Sum, None, vec![])),
            "Sum needs a numeric `field`"
        );
        assert_eq!(
            error(aggregate(&[], AggOp::Sum, Some("comm"), vec![])),
            "field `comm` is not numeric"
        );
        let most = ["comm"; MAX_GROUP_BY];
        assert_eq!(aggregate(&most, AggOp::Count, None, vec![]), Ok(()));
        let nine = ["comm"; MAX_GROUP_BY + 1];
        assert_eq!(
            error(aggregate(&nine, AggOp::Count, None, vec![])),
            format!("groupBy takes at most {MAX_GROUP_BY} fields")
        );
        let timeseries = |bucket_secs, conditions| {
            TimeseriesQuery {
                bucket_secs,
                group_by: vec![],
                op: AggOp::Count,
                field: None,
                conditions,
            }
            .validate(info)
            .map_err(|e| e.to_string())
        };
        assert_eq!(timeseries(1, vec![]), Ok(()));
        assert_eq!(
            error(timeseries(0, vec![])),
            "bucketSecs must be at least 1"
        );
        assert_eq!(
            error(timeseries(1, vec![condition("pid", Op::Gt, "x")])),
            "field `pid` is numeric but `x` is not a number"
        );
    }
}
