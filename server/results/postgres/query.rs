//! A session's results asked of PostgreSQL, with the semantics of
//! [`crate::results::query`]: a server's own session in `events` (when PostgreSQL is its
//! store), a fleet session in `fleet_events`. Both tables have the same columns, the
//! catalog's other fields in `data` (JSONB), and one field more than the catalog's:
//! `node`, the server that recorded the event, to group and filter by.

use std::time::Duration;

use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::{Arguments, Encode, Postgres, Row, Type};

use crate::handler::{AggOp, Op};
use crate::model::{rfc3339_nanos, FieldInfo, FieldType, TrackerInfo};
use crate::results::query::{
    catalog_field, order_and_truncate, order_buckets, order_histograms, AggResult, AggregateQuery,
    Condition, EventsQuery, HistogramQuery, HistogramResult, Log2Bucket, QueryError, Selection,
    StoredEvent, TimeBucketResult, TimeseriesQuery,
};
use crate::results::{ResultsError, SessionResults, StoreError};

/// What a question's budget leaves of the request's time for the answer to reach its caller.
const QUESTION_MARGIN: Duration = Duration::from_millis(250);

/// The field of an event that says which node recorded it.
pub const NODE: &str = "node";

/// Which table holds the session's events.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Table {
    /// The server's own `events`: a failure is the store's.
    Store,
    /// `fleet_events`: a failure is the fleet database's.
    Fleet,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Store => "events",
            Table::Fleet => "fleet_events",
        }
    }

    /// The database failed to answer.
    fn failed(self, err: sqlx::Error) -> ResultsError {
        match self {
            Table::Store => ResultsError::Store(StoreError::Sqlx(err)),
            Table::Fleet => ResultsError::Fleet(err.to_string()),
        }
    }

    /// A row it gave does not read as an event.
    fn corrupt(self, text: String) -> ResultsError {
        let text = format!("corrupt row of {}: {text}", self.name());
        match self {
            Table::Store => ResultsError::Store(StoreError::Corrupt(text)),
            Table::Fleet => ResultsError::Fleet(text),
        }
    }
}

pub struct PgResults {
    pool: PgPool,
    table: Table,
    id: String,
    info: &'static TrackerInfo,
    /// How long PostgreSQL may work on one question: a little less than the request's
    /// time, so that the caller hears why, and nothing runs on after the caller gave up.
    budget: Duration,
}

impl PgResults {
    pub fn new(
        pool: PgPool,
        table: Table,
        id: String,
        info: &'static TrackerInfo,
        request: Duration,
    ) -> Self {
        let budget = request.saturating_sub(QUESTION_MARGIN).max(QUESTION_MARGIN);
        Self {
            pool,
            table,
            id,
            info,
            budget,
        }
    }

    /// Asks one question under the budget (statement_timeout for its transaction only:
    /// the node's copying and bookkeeping keep no such bound).
    async fn fetch(&self, sql: Statement) -> Result<Vec<PgRow>, ResultsError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.failed(e))?;
        sqlx::query(&format!(
            "SET LOCAL statement_timeout = {}",
            self.budget.as_millis()
        ))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.failed(e))?;
        let rows = sqlx::query_with(&sql.text, sql.args)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.failed(e))?;
        tx.commit().await.map_err(|e| self.failed(e))?;
        Ok(rows)
    }

    /// Groups, calls and values of the session's events that meet the selection's
    /// conditions, grouped by `bucket_ns` (if any) then its fields, with its op over its
    /// field: each group's bucket start (0 without buckets) and row.
    async fn grouped(
        &self,
        bucket_ns: Option<i64>,
        selection: Selection<'_>,
    ) -> Result<Vec<(i64, AggResult)>, ResultsError> {
        let Selection { op, conditions, .. } = selection;
        let group_by = self.dims(selection.group_by)?;
        let field = selection
            .field
            .map(|f| catalog_field(self.info, f))
            .transpose()?;
        let weight = match self.info.weight {
            Some(w) => format!("COALESCE({}, 1)", expr(catalog_field(self.info, w)?)),
            None => "1".to_string(),
        };
        let x = field.map(expr);
        let value = match (op, x) {
            (AggOp::Count, _) | (_, None) => format!("SUM({weight})"),
            (AggOp::Sum, Some(x)) => format!("SUM({x})"),
            (AggOp::Avg, Some(x)) => format!("AVG({x})"),
            (AggOp::Min, Some(x)) => format!("MIN({x})"),
            (AggOp::Max, Some(x)) => format!("MAX({x})"),
            // percentile_disc is the nearest rank: the first value at or past p of n.
            (p, Some(x)) => format!(
                "percentile_disc({}) WITHIN GROUP (ORDER BY {x})",
                p.percentile().unwrap_or(50.0) / 100.0
            ),
        };
        let bucket = bucket_ns.map(|ns| format!("(ts / {ns}) * {ns}"));
        let dims: Vec<String> = bucket
            .iter()
            .cloned()
            .chain(group_by.iter().map(Dim::expr))
            .collect();
        let mut sql = Statement::new("SELECT ");
        for d in &dims {
            sql.push(&format!("({d})::TEXT, "));
        }
        sql.push(&format!(
            "SUM({weight})::BIGINT, COALESCE(({value})::FLOAT8, 0) FROM {} \
             WHERE session_id = ",
            self.table.name()
        ));
        sql.bind(self.id.clone());
        sql.conditions(self.info, conditions)?;
        if !dims.is_empty() {
            sql.push(&format!(" GROUP BY {}", dims.join(", ")));
        }
        // A group whose records stand for no calls has nothing to say.
        sql.push(&format!(" HAVING SUM({weight}) > 0"));
        let rows = self.fetch(sql).await?;
        let offset = usize::from(bucket_ns.is_some());
        rows.iter()
            .map(|row| {
                let start = match offset {
                    1 => self
                        .row_text(row, 0)?
                        .unwrap_or_default()
                        .parse::<i64>()
                        .map_err(|e| self.corrupt(e.to_string()))?,
                    _ => 0,
                };
                let keys = group_by
                    .iter()
                    .enumerate()
                    .map(|(i, dim)| {
                        dim.key(self.row_text(row, i + offset)?)
                            .map_err(|e| self.corrupt(e))
                    })
                    .collect::<Result<_, _>>()?;
                let count: i64 = row.try_get(dims.len()).map_err(|e| self.failed(e))?;
                let value: f64 = row.try_get(dims.len() + 1).map_err(|e| self.failed(e))?;
                Ok((
                    start,
                    AggResult {
                        keys,
                        value,
                        count: count as u64,
                    },
                ))
            })
            .collect()
    }

    /// What `group_by` groups by: the node, or a catalog field.
    fn dims(&self, group_by: &[String]) -> Result<Vec<Dim>, QueryError> {
        group_by
            .iter()
            .map(|name| match name.as_str() {
                NODE => Ok(Dim::Node),
                _ => catalog_field(self.info, name).map(Dim::Field),
            })
            .collect()
    }
}

/// Group fields without `node`, for the checks of [`crate::results::query`], which knows
/// no node.
fn fields_without_node(group_by: &[String]) -> Vec<String> {
    group_by.iter().filter(|g| *g != NODE).cloned().collect()
}

fn without_node(conditions: &[Condition]) -> Vec<Condition> {
    conditions
        .iter()
        .filter(|c| c.field != NODE)
        .cloned()
        .collect()
}

#[async_trait::async_trait]
impl SessionResults for PgResults {
    async fn events(&self, q: &EventsQuery) -> Result<(Vec<StoredEvent>, bool), ResultsError> {
        crate::results::query::validate_conditions(self.info, &without_node(&q.conditions))?;
        let mut sql = Statement::new(&format!(
            "SELECT id, node, seq, ts, tracker, kind, pid, ppid, comm, cgroup_id, data \
             FROM {} WHERE session_id = ",
            self.table.name()
        ));
        sql.bind(self.id.clone());
        if let Some(after) = q.after {
            sql.push(" AND id > ");
            sql.bind(after);
        }
        if let Some(through) = q.through {
            sql.push(" AND seq <= ");
            sql.bind(through);
        }
        sql.conditions(self.info, &q.conditions)?;
        sql.push(" ORDER BY id LIMIT ");
        sql.bind(i64::try_from(q.first).unwrap_or(i64::MAX).saturating_add(1));
        let rows = self.fetch(sql).await?;
        let more = rows.len() > q.first;
        let events = rows
            .iter()
            .take(q.first)
            .map(|row| {
                let node: String = row.try_get("node")?;
                let mut data: serde_json::Value = row.try_get("data")?;
                if let Some(object) = data.as_object_mut() {
                    object.insert(NODE.into(), node.into());
                }
                Ok(StoredEvent {
                    id: row.try_get("id")?,
                    seq: row.try_get("seq")?,
                    ts_ns: row.try_get::<i64, _>("ts")? as u64,
                    tracker: row.try_get("tracker")?,
                    kind: row.try_get("kind")?,
                    pid: row.try_get::<i64, _>("pid")? as u32,
                    ppid: row.try_get::<i64, _>("ppid")? as u32,
                    comm: row.try_get("comm")?,
                    cgroup_id: row.try_get::<i64, _>("cgroup_id")? as u64,
                    data,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.failed(e))?;
        Ok((events, more))
    }

    async fn aggregate(&self, q: &AggregateQuery) -> Result<Vec<AggResult>, ResultsError> {
        let checked = AggregateQuery {
            group_by: fields_without_node(&q.group_by),
            conditions: without_node(&q.conditions),
            ..q.clone()
        };
        checked.validate(self.info)?;
        let groups = self.grouped(None, q.into()).await?;
        let mut rows: Vec<AggResult> = groups.into_iter().map(|(_, row)| row).collect();
        order_and_truncate(&mut rows, q.top);
        Ok(rows)
    }

    async fn timeseries(&self, q: &TimeseriesQuery) -> Result<Vec<TimeBucketResult>, ResultsError> {
        let checked = TimeseriesQuery {
            group_by: fields_without_node(&q.group_by),
            conditions: without_node(&q.conditions),
            ..q.clone()
        };
        checked.validate(self.info)?;
        let groups = self.grouped(Some(q.bucket_ns()), q.into()).await?;
        let mut rows: Vec<TimeBucketResult> = groups
            .into_iter()
            .map(|(start, row)| TimeBucketResult::of_group(start, row))
            .collect();
        order_buckets(&mut rows);
        Ok(rows)
    }

    async fn histogram(&self, q: &HistogramQuery) -> Result<Vec<HistogramResult>, ResultsError> {
        let checked = HistogramQuery {
            group_by: fields_without_node(&q.group_by),
            conditions: without_node(&q.conditions),
            ..q.clone()
        };
        checked.validate(self.info)?;
        let dims = self.dims(&q.group_by)?;
        let x = expr(catalog_field(self.info, &q.field)?);
        // A value that totals its record's calls counts those calls at their mean, as in
        // the other stores; any other value counts once.
        let (calls, whole) = match self.info.summed_over(&q.field) {
            Some(weight) => {
                let n = format!(
                    "GREATEST(COALESCE({}, 1), 1)",
                    expr(catalog_field(self.info, weight)?)
                );
                (n.clone(), format!("div(trunc({x}), {n})"))
            }
            None => ("1".to_string(), format!("trunc({x})")),
        };
        // Log2Bucket::index_of: -1 below zero, 0 for zero, else the value's bit length;
        // a field's values are at most u64's, so past i64 (2^63) the length is 64.
        let index = format!(
            "CASE WHEN {whole} < 0 THEN -1 WHEN {whole} = 0 THEN 0 \
             WHEN {whole} >= 9223372036854775808 THEN 64 \
             ELSE length(ltrim(({whole})::BIGINT::BIT(64)::TEXT, '0')) END"
        );
        let mut sql = Statement::new("SELECT ");
        for d in &dims {
            sql.push(&format!("({})::TEXT, ", d.expr()));
        }
        sql.push(&format!(
            "{index} AS bucket, SUM({calls})::BIGINT, SUM({x})::FLOAT8 FROM {} \
             WHERE {x} IS NOT NULL AND session_id = ",
            self.table.name()
        ));
        sql.bind(self.id.clone());
        sql.conditions(self.info, &q.conditions)?;
        let keys: Vec<String> = (1..=dims.len()).map(|i| i.to_string()).collect();
        sql.push(&format!(
            " GROUP BY {}",
            keys.into_iter()
                .chain(["bucket".into()])
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let rows = self.fetch(sql).await?;
        let mut groups: std::collections::BTreeMap<Vec<String>, HistogramResult> =
            Default::default();
        for row in &rows {
            let keys = dims
                .iter()
                .enumerate()
                .map(|(i, dim)| dim.key(self.row_text(row, i)?).map_err(|e| self.corrupt(e)))
                .collect::<Result<Vec<_>, _>>()?;
            let index: i32 = row.try_get(dims.len()).map_err(|e| self.failed(e))?;
            let count: i64 = row.try_get(dims.len() + 1).map_err(|e| self.failed(e))?;
            let sum: f64 = row.try_get(dims.len() + 2).map_err(|e| self.failed(e))?;
            let group = groups
                .entry(keys.clone())
                .or_insert_with(|| HistogramResult {
                    keys,
                    count: 0,
                    sum: 0.0,
                    buckets: Vec::new(),
                });
            group.count += count as u64;
            group.sum += sum;
            group.buckets.push(Log2Bucket {
                index,
                count: count as u64,
            });
        }
        let mut rows: Vec<HistogramResult> = groups
            .into_values()
            .map(|mut g| {
                g.buckets.sort_by_key(|b| b.index);
                g
            })
            .collect();
        order_histograms(&mut rows, q.top);
        Ok(rows)
    }
}

/// What a fleet aggregate groups by: the node, or a catalog field.
enum Dim {
    Node,
    Field(&'static FieldInfo),
}

impl Dim {
    fn expr(&self) -> String {
        match self {
            Dim::Node => NODE.to_string(),
            Dim::Field(f) => expr(f),
        }
    }

    /// A group key's text as query.rs says: RFC 3339 for times, "null" for a null; what
    /// is wrong with it, if anything.
    fn key(&self, text: Option<String>) -> Result<String, String> {
        let Some(text) = text else {
            return Ok("null".to_string());
        };
        match self {
            Dim::Field(f) if f.name == "ts" => {
                let ns: u64 = text.parse().map_err(|_| format!("a ts of `{text}`"))?;
                Ok(rfc3339_nanos(ns))
            }
            _ => Ok(text),
        }
    }
}

/// The SQL of a catalog field: the common fields are columns, the rest read from `data`
/// (numbers as NUMERIC, so that a u64 past BIGINT's range still compares and sums).
/// Names come from the catalog, never from the user.
fn expr(field: &FieldInfo) -> String {
    match field.name {
        "tracker" | "kind" | "ts" | "pid" | "ppid" | "comm" | "cgroup_id" => field.name.into(),
        name => match field.ty {
            FieldType::U64 | FieldType::I64 => format!("(data ->> '{name}')::NUMERIC"),
            FieldType::Str | FieldType::Time => format!("(data ->> '{name}')"),
        },
    }
}

impl PgResults {
    fn row_text(&self, row: &PgRow, i: usize) -> Result<Option<String>, ResultsError> {
        row.try_get(i).map_err(|e| self.failed(e))
    }

    fn failed(&self, err: sqlx::Error) -> ResultsError {
        // 57014: PostgreSQL's statement_timeout (the request's time) stopped the question.
        match err.as_database_error().and_then(|e| e.code()) {
            Some(code) if code == "57014" => ResultsError::TooCostly(
                "the question ran past the request's time and PostgreSQL stopped it; \
                 narrow it with conditions or fewer groups"
                    .to_string(),
            ),
            _ => self.table.failed(err),
        }
    }

    fn corrupt(&self, text: String) -> ResultsError {
        self.table.corrupt(text)
    }
}

/// SQL text with its bound values (`$1`, `$2` ...), never spliced in.
struct Statement {
    text: String,
    args: PgArguments,
    bound: usize,
}

impl Statement {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_string(),
            args: PgArguments::default(),
            bound: 0,
        }
    }

    fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    fn bind<T>(&mut self, value: T)
    where
        T: for<'q> Encode<'q, Postgres> + Type<Postgres> + Send + 'static,
    {
        self.bound += 1;
        self.text.push_str(&format!("${}", self.bound));
        // Encoding a String or an i64 into a buffer cannot fail.
        let _ = self.args.add(value);
    }

    /// ` AND <condition>` for each, as query.rs says: numbers compare as numbers, text as
    /// text, CONTAINS is a substring test, a null matches nothing; `node` is the node's
    /// name. A time compares as nanoseconds when given a number, else as RFC 3339 text.
    fn conditions(
        &mut self,
        info: &TrackerInfo,
        conditions: &[Condition],
    ) -> Result<(), QueryError> {
        for c in conditions {
            let (column, ty) = match c.field.as_str() {
                NODE => (NODE.to_string(), FieldType::Str),
                name => {
                    let field = catalog_field(info, name)?;
                    (expr(field), field.ty)
                }
            };
            self.push(" AND ");
            let cmp = match c.op {
                Op::Eq => "=",
                Op::Ne => "<>",
                Op::Gt => ">",
                Op::Ge => ">=",
                Op::Lt => "<",
                Op::Le => "<=",
                Op::Contains => {
                    self.push(&format!("strpos({column}, "));
                    self.bind(c.value.clone());
                    self.push(") > 0");
                    continue;
                }
            };
            let number = || {
                c.value
                    .trim()
                    .parse::<i128>()
                    .map_err(|_| QueryError::NotANumber {
                        field: c.field.clone(),
                        value: c.value.clone(),
                    })
            };
            match ty {
                FieldType::U64 | FieldType::I64 => {
                    // Bound as text and read as NUMERIC: any 128-bit integer fits.
                    self.push(&format!("{column} {cmp} "));
                    self.bind(number()?.to_string());
                    self.push("::NUMERIC");
                }
                FieldType::Time if c.field == "ts" => match c.value.trim().parse::<i64>() {
                    Ok(ns) => {
                        self.push(&format!("ts {cmp} "));
                        self.bind(ns);
                    }
                    Err(_) => {
                        self.push(&format!(
                            "to_char(to_timestamp(ts / 1000000000) AT TIME ZONE 'UTC', \
                             'YYYY-MM-DD\"T\"HH24:MI:SS') || '.' || lpad((ts % 1000000000)::TEXT, 9, '0') \
                             || 'Z' {cmp} "
                        ));
                        self.bind(c.value.clone());
                    }
                },
                FieldType::Str | FieldType::Time => {
                    self.push(&format!("{column} {cmp} "));
                    self.bind(c.value.clone());
                }
            }
        }
        Ok(())
    }
}
