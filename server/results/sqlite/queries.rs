//! A session's events, aggregates and timeseries, read from the events table (or, for
//! the COUNTs it can answer, from `event_counts`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteRow;
use sqlx::{Connection, Row, Sqlite};

use super::sql::{expr, json_column, limit_plus_one, page, Grouping, Statement};
use super::{Store, StoreError};
use crate::model::{SessionId, TrackerInfo};
use crate::results::query::{
    catalog_field, order_and_truncate, order_buckets, validate_conditions, AggOp, AggResult,
    AggregateQuery, Condition, EventsQuery, Selection, StoredEvent, TimeBucketResult,
    TimeseriesQuery,
};
use crate::results::{ResultsError, SessionResults};

/// The fields `event_counts` counts events by, columns of the same names there.
const COUNTED: [&str; 3] = ["tracker", "kind", "comm"];
/// SQLite virtual machine steps between two looks at a query's budget: a clock read per
/// tens of microseconds of work.
const PROGRESS_STEPS: i32 = 10_000;
/// SQLite's result code for an interrupted statement.
const SQLITE_INTERRUPT: &str = "9";

/// One SQLITE session's results: its rows in the store.
pub struct SqliteResults {
    store: Arc<Store>,
    session_id: SessionId,
    info: &'static TrackerInfo,
}

impl Store {
    /// A read connection whose statements SQLite interrupts once the query budget is
    /// spent: one viewer's question cannot hold a connection, or a core, for longer.
    async fn bounded_read(&self) -> Result<PoolConnection<Sqlite>, StoreError> {
        let mut conn = self.reads.acquire().await?;
        let deadline = Instant::now() + self.query_budget;
        conn.lock_handle()
            .await?
            .set_progress_handler(PROGRESS_STEPS, move || Instant::now() < deadline);
        Ok(conn)
    }

    /// An interrupted statement ran out of budget; any other error is the database's.
    fn budget_error(&self, err: sqlx::Error) -> StoreError {
        match &err {
            sqlx::Error::Database(db) if db.code().as_deref() == Some(SQLITE_INTERRUPT) => {
                StoreError::QueryBudget(self.query_budget)
            }
            _ => StoreError::Sqlx(err),
        }
    }

    /// The results of session `session_id`, a session of tracker `info`.
    pub fn session_results(
        self: &Arc<Self>,
        session_id: SessionId,
        info: &'static TrackerInfo,
    ) -> SqliteResults {
        SqliteResults {
            store: Arc::clone(self),
            session_id,
            info,
        }
    }

    /// A session's events in arrival order with ids above `after`, matching every
    /// condition; and whether more follow.
    pub async fn events(
        &self,
        session_id: &SessionId,
        first: usize,
        after: Option<i64>,
        conditions: &[Condition],
        info: &TrackerInfo,
    ) -> Result<(Vec<StoredEvent>, bool), StoreError> {
        validate_conditions(info, conditions)?;
        let mut sql = Statement::new(
            "SELECT id, ts, tracker, kind, pid, ppid, comm, cgroup_id, data FROM events \
             WHERE session_id = ",
        );
        sql.bind(session_id.clone())?;
        sql.push(" AND id > ");
        sql.bind(after.unwrap_or(0))?;
        sql.conditions(info, conditions)?;
        sql.push(" ORDER BY id LIMIT ");
        sql.bind(limit_plus_one(first))?;
        let mut conn = self.bounded_read().await?;
        let rows = sqlx::query_with(&sql.text, sql.args)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| self.budget_error(e))?;
        page(&rows, first, event_from_row)
    }

    pub async fn aggregate(
        &self,
        session_id: &SessionId,
        info: &TrackerInfo,
        q: &AggregateQuery,
    ) -> Result<Vec<AggResult>, StoreError> {
        q.validate(info)?;
        let groups = self.grouped(session_id, info, None, q.into()).await?;
        let mut rows: Vec<AggResult> = groups.into_iter().map(|(_, row)| row).collect();
        order_and_truncate(&mut rows, q.top);
        Ok(rows)
    }

    pub async fn timeseries(
        &self,
        session_id: &SessionId,
        info: &TrackerInfo,
        q: &TimeseriesQuery,
    ) -> Result<Vec<TimeBucketResult>, StoreError> {
        q.validate(info)?;
        let bucket_ns =
            i64::try_from(q.bucket_secs.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX);
        let groups = self
            .grouped(session_id, info, Some(bucket_ns), q.into())
            .await?;
        let mut rows: Vec<TimeBucketResult> = groups
            .into_iter()
            .map(|(start_ns, row)| TimeBucketResult {
                start_ns: start_ns as u64,
                keys: row.keys,
                value: row.value,
                count: row.count,
            })
            .collect();
        order_buckets(&mut rows);
        Ok(rows)
    }

    /// A session's events that meet the selection's conditions, grouped by time bucket
    /// (when there is one) and its fields, with its op applied to its field: each group's
    /// bucket start (0 without buckets) and row. Both statements read one snapshot, so
    /// their groups agree.
    async fn grouped(
        &self,
        session_id: &SessionId,
        info: &TrackerInfo,
        bucket_ns: Option<i64>,
        selection: Selection<'_>,
    ) -> Result<Vec<(i64, AggResult)>, StoreError> {
        let Selection { op, conditions, .. } = selection;
        let grouping = Grouping::new(info, bucket_ns, selection.group_by)?;
        let field = selection
            .field
            .map(|f| catalog_field(info, f))
            .transpose()?;
        let dims = grouping.dims();
        // A COUNT that groups and filters only by what event_counts keeps is answered from
        // it: a few rows per session instead of every event.
        let from_counts = op == AggOp::Count
            && grouping.bucket_ns.is_none()
            && grouping.fields.iter().all(|f| COUNTED.contains(&f.name))
            && conditions
                .iter()
                .all(|c| COUNTED.contains(&c.field.as_str()));
        // Calls, not records: a record may stand for many (TrackerInfo::weight).
        let (count, table) = match info.weight {
            _ if from_counts => ("COALESCE(SUM(calls), 0)".to_string(), "event_counts"),
            Some(weight) => (
                format!(
                    "CAST(TOTAL(COALESCE({}, 1)) AS INTEGER)",
                    expr(catalog_field(info, weight)?)
                ),
                "events",
            ),
            None => ("COUNT(*)".to_string(), "events"),
        };
        let value = match (op, field) {
            (AggOp::Sum, Some(f)) => format!("TOTAL({})", expr(f)),
            (AggOp::Avg, Some(f)) => format!("COALESCE(AVG({}), 0.0)", expr(f)),
            (AggOp::Min, Some(f)) => format!("CAST(COALESCE(MIN({}), 0) AS REAL)", expr(f)),
            (AggOp::Max, Some(f)) => format!("CAST(COALESCE(MAX({}), 0) AS REAL)", expr(f)),
            // COUNT is the count; percentiles come from the second statement.
            _ => "0.0".to_string(),
        };
        let mut sql = Statement::new("SELECT ");
        for d in &dims {
            sql.push(d);
            sql.push(", ");
        }
        sql.push(&format!(
            "{count}, {value} FROM {table} WHERE session_id = "
        ));
        sql.bind(session_id.clone())?;
        sql.conditions(info, conditions)?;
        if !dims.is_empty() {
            sql.push(&format!(" GROUP BY {}", dims.join(", ")));
        }

        let mut conn = self.bounded_read().await?;
        let mut tx = conn.begin().await?;
        let rows = sqlx::query_with(&sql.text, sql.args)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.budget_error(e))?;
        let n = dims.len();
        let mut groups = HashMap::with_capacity(rows.len());
        for row in &rows {
            let count = row.try_get::<i64, _>(n)? as u64;
            // Without GROUP BY an empty session still gives one row, of count 0.
            if count == 0 {
                continue;
            }
            let value = match op {
                AggOp::Count => count as f64,
                _ => row.try_get::<f64, _>(n + 1)?,
            };
            let key = grouping.key(row)?;
            let keys = key.texts();
            groups.insert(key, AggResult { keys, value, count });
        }

        if let (Some(p), Some(f)) = (op.percentile(), field) {
            let partition = if dims.is_empty() {
                String::new()
            } else {
                format!("PARTITION BY {}", dims.join(", "))
            };
            let aliases: Vec<String> = (0..n).map(|i| format!("d{i}")).collect();
            // Nearest rank as query::nearest_rank computes it, in the same f64 arithmetic:
            // ceil(p / 100 * n), clamped to 1..=n.
            let mut sql = Statement::new("SELECT ");
            for a in &aliases {
                sql.push(a);
                sql.push(", ");
            }
            sql.push("CAST(v AS REAL) FROM (SELECT *, ");
            sql.bind(p / 100.0)?;
            sql.push(" * n AS x FROM (SELECT ");
            for (d, a) in dims.iter().zip(&aliases) {
                sql.push(&format!("{d} AS {a}, "));
            }
            sql.push(&format!(
                "{f} AS v, ROW_NUMBER() OVER ({partition} ORDER BY {f}) AS rn, \
                 COUNT(*) OVER ({partition}) AS n FROM events WHERE session_id = ",
                f = expr(f),
            ));
            sql.bind(session_id.clone())?;
            sql.push(&format!(" AND {} IS NOT NULL", expr(f)));
            sql.conditions(info, conditions)?;
            sql.push(")) WHERE rn = MAX(1, MIN(n, CAST(x AS INTEGER) + (x > CAST(x AS INTEGER))))");
            let rows = sqlx::query_with(&sql.text, sql.args)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.budget_error(e))?;
            for row in &rows {
                if let Some(group) = groups.get_mut(&grouping.key(row)?) {
                    group.value = row.try_get(n)?;
                }
            }
        }
        tx.commit().await?;
        Ok(groups
            .into_iter()
            .map(|(key, row)| (key.bucket, row))
            .collect())
    }
}

#[async_trait::async_trait]
impl SessionResults for SqliteResults {
    async fn events(&self, q: &EventsQuery) -> Result<(Vec<StoredEvent>, bool), ResultsError> {
        Ok(self
            .store
            .events(&self.session_id, q.first, q.after, &q.conditions, self.info)
            .await?)
    }

    async fn aggregate(&self, q: &AggregateQuery) -> Result<Vec<AggResult>, ResultsError> {
        Ok(self.store.aggregate(&self.session_id, self.info, q).await?)
    }

    async fn timeseries(&self, q: &TimeseriesQuery) -> Result<Vec<TimeBucketResult>, ResultsError> {
        Ok(self
            .store
            .timeseries(&self.session_id, self.info, q)
            .await?)
    }
}

fn event_from_row(r: &SqliteRow) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        id: r.try_get("id")?,
        ts_ns: r.try_get::<i64, _>("ts")? as u64,
        tracker: r.try_get("tracker")?,
        kind: r.try_get("kind")?,
        pid: r.try_get::<i64, _>("pid")? as u32,
        ppid: r.try_get::<i64, _>("ppid")? as u32,
        comm: r.try_get("comm")?,
        cgroup_id: r.try_get::<i64, _>("cgroup_id")? as u64,
        data: json_column(r, "data")?,
    })
}
