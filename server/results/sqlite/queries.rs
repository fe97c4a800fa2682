//! A session's events, aggregates and timeseries, read from the events table (or, for
//! the COUNTs it can answer, from `event_counts`).

use std::sync::Arc;
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{Row, Sqlite};

use super::columns::{select_list, stored_event};
use super::groups;
use super::sql::{expr, GroupKey, Grouping, Statement};
use super::SqliteEvents;
use crate::model::{FieldInfo, SessionId, TrackerInfo};
use crate::results::db::{limit_plus_one, page};
use crate::results::query::{
    catalog_field, order_and_truncate, order_buckets, order_histograms, validate_conditions, AggOp,
    AggResult, AggregateQuery, Condition, EventsQuery, HistogramQuery, HistogramResult, Log2Bucket,
    Selection, StoredEvent, TimeBucketResult, TimeseriesQuery,
};
use crate::results::StoreError;
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
    store: Arc<SqliteEvents>,
    session_id: SessionId,
    info: &'static TrackerInfo,
}

impl SqliteEvents {
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

    /// An interrupted statement ran out of budget, a grouping out of groups; any other
    /// error is the database's.
    fn budget_error(&self, err: sqlx::Error) -> StoreError {
        match &err {
            sqlx::Error::Database(db) if db.code().as_deref() == Some(SQLITE_INTERRUPT) => {
                StoreError::QueryBudget(self.query_budget)
            }
            sqlx::Error::Database(db) if db.message().starts_with(groups::TOO_MANY_GROUPS) => {
                StoreError::TooManyGroups(self.max_groups)
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
        q: &EventsQuery,
        info: &'static TrackerInfo,
    ) -> Result<(Vec<StoredEvent>, bool), StoreError> {
        validate_conditions(info, &q.conditions)?;
        let mut sql = Statement::new(&format!(
            "SELECT {} FROM events WHERE session_id = ",
            select_list(info)
        ));
        sql.bind(session_id.clone())?;
        sql.push(" AND id > ");
        sql.bind(q.after.unwrap_or(0))?;
        if let Some(through) = q.through {
            sql.push(" AND seq <= ");
            sql.bind(through)?;
        }
        sql.conditions(info, &q.conditions)?;
        sql.push(" ORDER BY id LIMIT ");
        sql.bind(limit_plus_one(q.first))?;
        let mut conn = self.bounded_read().await?;
        let rows = sqlx::query_with(&sql.text, sql.args)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| self.budget_error(e))?;
        page(&rows, q.first, |row| stored_event(info, row))
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
        let groups = self
            .grouped(session_id, info, Some(q.bucket_ns()), q.into())
            .await?;
        let mut rows: Vec<TimeBucketResult> = groups
            .into_iter()
            .map(|(start_ns, row)| TimeBucketResult::of_group(start_ns, row))
            .collect();
        order_buckets(&mut rows);
        Ok(rows)
    }

    /// A session's events that meet the selection's conditions, grouped by time bucket
    /// (when there is one) and its fields, with its op applied to its field: each group's
    /// bucket start (0 without buckets) and row.
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
        // A COUNT that groups and filters only by what event_counts keeps is answered from
        // it: a few rows per session instead of every event.
        let from_counts = op == AggOp::Count
            && grouping.bucket_ns.is_none()
            && grouping.fields.iter().all(|f| COUNTED.contains(&f.name))
            && conditions
                .iter()
                .all(|c| COUNTED.contains(&c.field.as_str()));
        let groups = if from_counts {
            self.counted(session_id, info, &grouping, conditions)
                .await?
        } else {
            // Every other question reads the events once, grouping as it goes.
            let ask = Ask {
                op: op.as_str(),
                field,
                conditions,
            };
            self.one_pass(session_id, info, &grouping, ask)
                .await?
                .into_iter()
                .map(|(key, count, value)| {
                    let value = value.as_f64().ok_or_else(|| corrupt(&value))?;
                    Ok((key, count, value))
                })
                .collect::<Result<Vec<_>, StoreError>>()?
        };
        Ok(groups
            .into_iter()
            // A group whose records stand for no calls has nothing to say.
            .filter(|(_, count, _)| *count > 0)
            .map(|(key, count, value)| {
                let keys = key.texts();
                (key.bucket, AggResult { keys, value, count })
            })
            .collect())
    }

    pub async fn histogram(
        &self,
        session_id: &SessionId,
        info: &TrackerInfo,
        q: &HistogramQuery,
    ) -> Result<Vec<HistogramResult>, StoreError> {
        q.validate(info)?;
        let grouping = Grouping::new(info, None, &q.group_by)?;
        let op = match info.summed_over(&q.field) {
            Some(_) => groups::HISTOGRAM_PER_CALL,
            None => groups::HISTOGRAM,
        };
        let ask = Ask {
            op,
            field: Some(catalog_field(info, &q.field)?),
            conditions: &q.conditions,
        };
        let mut rows = self
            .one_pass(session_id, info, &grouping, ask)
            .await?
            .into_iter()
            .map(|(key, _, value)| {
                #[derive(serde::Deserialize)]
                struct Answer {
                    buckets: Vec<(i32, u64)>,
                    sum: f64,
                }
                let Answer { buckets, sum } =
                    serde_json::from_value(value.clone()).map_err(|_| corrupt(&value))?;
                Ok(HistogramResult {
                    keys: key.texts(),
                    count: buckets.iter().map(|(_, n)| n).sum(),
                    sum,
                    buckets: buckets
                        .into_iter()
                        .map(|(index, count)| Log2Bucket { index, count })
                        .collect(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        order_histograms(&mut rows, q.top);
        Ok(rows)
    }

    /// Runs `eunomia_groups` over the session's events that meet the conditions: each
    /// group's key, calls and answer.
    async fn one_pass(
        &self,
        session_id: &SessionId,
        info: &TrackerInfo,
        grouping: &Grouping,
        ask: Ask<'_>,
    ) -> Result<Vec<(GroupKey, u64, serde_json::Value)>, StoreError> {
        let mut sql = Statement::new(&format!("SELECT {}(", groups::NAME));
        sql.bind(ask.op)?;
        for d in grouping.dims() {
            sql.push(&format!(", {d}"));
        }
        // Calls, not records: a record may stand for many (TrackerInfo::weight).
        let weight = match info.weight {
            Some(weight) => expr(catalog_field(info, weight)?),
            None => "NULL".to_string(),
        };
        let value = ask.field.map_or("NULL".to_string(), expr);
        sql.push(&format!(
            ", {weight}, {value}) FROM events WHERE session_id = "
        ));
        sql.bind(session_id.clone())?;
        sql.conditions(info, ask.conditions)?;
        let mut conn = self.bounded_read().await?;
        let json: Option<String> = sqlx::query_scalar_with(&sql.text, sql.args)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| self.budget_error(e))?;
        let rows: Vec<(Vec<serde_json::Value>, u64, serde_json::Value)> =
            serde_json::from_str(json.as_deref().unwrap_or("[]"))
                .map_err(|e| StoreError::Corrupt(format!("grouped rows: {e}")))?;
        rows.into_iter()
            .map(|(keys, count, value)| Ok((grouping.key_of(&keys)?, count, value)))
            .collect()
    }

    /// A COUNT by fields `event_counts` keeps, from it: groups, calls, calls.
    async fn counted(
        &self,
        session_id: &SessionId,
        info: &TrackerInfo,
        grouping: &Grouping,
        conditions: &[Condition],
    ) -> Result<Vec<(GroupKey, u64, f64)>, StoreError> {
        let dims = grouping.dims();
        let mut sql = Statement::new("SELECT ");
        for d in &dims {
            sql.push(&format!("{d}, "));
        }
        sql.push("COALESCE(SUM(calls), 0) FROM event_counts WHERE session_id = ");
        sql.bind(session_id.clone())?;
        sql.conditions(info, conditions)?;
        if !dims.is_empty() {
            sql.push(&format!(" GROUP BY {}", dims.join(", ")));
        }
        let mut conn = self.bounded_read().await?;
        let rows = sqlx::query_with(&sql.text, sql.args)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| self.budget_error(e))?;
        rows.iter()
            .map(|row| {
                let count = row.try_get::<i64, _>(dims.len())? as u64;
                Ok((grouping.key(row)?, count, count as f64))
            })
            .collect()
    }
}

/// What [`SqliteEvents::one_pass`] asks of each group: `eunomia_groups`' op, over which field,
/// of which events.
struct Ask<'a> {
    op: &'static str,
    field: Option<&'static FieldInfo>,
    conditions: &'a [Condition],
}

fn corrupt(value: &serde_json::Value) -> StoreError {
    StoreError::Corrupt(format!("a group's answer of {value}"))
}

#[async_trait::async_trait]
impl SessionResults for SqliteResults {
    async fn events(&self, q: &EventsQuery) -> Result<(Vec<StoredEvent>, bool), ResultsError> {
        Ok(self.store.events(&self.session_id, q, self.info).await?)
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

    async fn histogram(&self, q: &HistogramQuery) -> Result<Vec<HistogramResult>, ResultsError> {
        Ok(self.store.histogram(&self.session_id, self.info, q).await?)
    }
}
