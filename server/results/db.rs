//! The server's database, SQLite or PostgreSQL, for the statements both run alike: the
//! records of sessions, the audit trail, alerts, baselines, the guard and seccomp
//! profiles are written once, in SQL both dialects read (`$1` placeholders, which sqlx
//! also binds for SQLite; `RETURNING`; `ON CONFLICT`), with values of two kinds.

use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::Row;

use std::time::Duration;

use crate::model::SessionId;
use crate::results::query::QueryError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A pagination cursor this store did not hand out.
    #[error("`{0}` is not a valid cursor")]
    BadCursor(String),
    #[error("no session `{0}`")]
    UnknownSession(SessionId),
    #[error("corrupt row in the database: {0}")]
    Corrupt(String),
    #[error("the database writer has stopped")]
    WriterGone,
    #[error("the query ran longer than its budget of {0:?} and was stopped; narrow it with conditions or fewer groups")]
    QueryBudget(Duration),
    #[error(
        "the query makes more than {0} groups; narrow it with conditions or group by fewer fields"
    )]
    TooManyGroups(usize),
    #[error("{path} is in use by another eunomia server{holder}; stop it or give another --db")]
    InUse { path: String, holder: String },
    #[error("locking {path}: {source}")]
    Lock {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Events the writer's queue holds before sinks count losses.
    pub queue_capacity: usize,
    /// Rows the writer gathers into one transaction (it may exceed this by part of a chunk).
    pub batch_size: usize,
    /// How long one viewer's question may run in SQLite before it is interrupted.
    pub query_budget: Duration,
    /// Most groups one question over events may make (each holds its key and state).
    pub max_groups: usize,
    /// This server's node name: in PostgreSQL its tables are in a schema named after it,
    /// and its events carry it.
    pub node: Option<String>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            batch_size: 4096,
            query_budget: Duration::from_secs(30),
            max_groups: 1_000_000,
            node: None,
        }
    }
}

#[derive(Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A bound value: every column of these tables is an integer or text.
#[derive(Clone, Debug)]
pub enum Param {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(Some(v))
    }
}

impl From<Option<i64>> for Param {
    fn from(v: Option<i64>) -> Self {
        Param::Int(v)
    }
}

/// Times and counts are u64 in the records and BIGINT in the tables; their bits are kept.
impl From<u64> for Param {
    fn from(v: u64) -> Self {
        Param::Int(Some(v as i64))
    }
}

impl From<Option<u64>> for Param {
    fn from(v: Option<u64>) -> Self {
        Param::Int(v.map(|v| v as i64))
    }
}

impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Text(Some(v.to_string()))
    }
}

impl From<&String> for Param {
    fn from(v: &String) -> Self {
        Param::Text(Some(v.clone()))
    }
}

impl From<String> for Param {
    fn from(v: String) -> Self {
        Param::Text(Some(v))
    }
}

impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Self {
        Param::Text(v)
    }
}

impl From<&Option<String>> for Param {
    fn from(v: &Option<String>) -> Self {
        Param::Text(v.clone())
    }
}

impl From<Option<&str>> for Param {
    fn from(v: Option<&str>) -> Self {
        Param::Text(v.map(str::to_string))
    }
}

/// The values of a statement, in placeholder order.
#[macro_export]
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        vec![$($crate::results::db::Param::from($value)),*]
    };
}

/// A row of either database, read by column name.
pub enum DbRow {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl DbRow {
    /// A column's value, of a type both databases decode.
    fn get<T>(&self, name: &str) -> Result<T, StoreError>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        Ok(match self {
            DbRow::Sqlite(r) => r.try_get(name)?,
            DbRow::Postgres(r) => r.try_get(name)?,
        })
    }

    pub fn int(&self, name: &str) -> Result<i64, StoreError> {
        self.get(name)
    }

    pub fn opt_int(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.get(name)
    }

    pub fn text(&self, name: &str) -> Result<String, StoreError> {
        self.get(name)
    }

    pub fn opt_text(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.get(name)
    }

    /// A column that holds JSON as text.
    pub fn json(&self, name: &str) -> Result<serde_json::Value, StoreError> {
        serde_json::from_str(&self.text(name)?)
            .map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;
type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn sqlite_query<'q>(sql: &'q str, params: &'q [Param]) -> SqliteQuery<'q> {
    params
        .iter()
        .fold(sqlx::query(sql), |query, param| match param {
            Param::Int(v) => query.bind(*v),
            Param::Text(v) => query.bind(v.as_deref()),
        })
}

fn pg_query<'q>(sql: &'q str, params: &'q [Param]) -> PgQuery<'q> {
    params
        .iter()
        .fold(sqlx::query(sql), |query, param| match param {
            Param::Int(v) => query.bind(*v),
            Param::Text(v) => query.bind(v.as_deref()),
        })
}

impl Db {
    /// Runs a statement; returns the rows it changed.
    pub async fn execute(&self, sql: &str, params: Vec<Param>) -> Result<u64, StoreError> {
        Ok(match self {
            Db::Sqlite(pool) => sqlite_query(sql, &params)
                .execute(pool)
                .await?
                .rows_affected(),
            Db::Postgres(pool) => pg_query(sql, &params).execute(pool).await?.rows_affected(),
        })
    }

    pub async fn fetch_all(&self, sql: &str, params: Vec<Param>) -> Result<Vec<DbRow>, StoreError> {
        Ok(match self {
            Db::Sqlite(pool) => sqlite_query(sql, &params)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(DbRow::Sqlite)
                .collect(),
            Db::Postgres(pool) => pg_query(sql, &params)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(DbRow::Postgres)
                .collect(),
        })
    }

    pub async fn fetch_optional(
        &self,
        sql: &str,
        params: Vec<Param>,
    ) -> Result<Option<DbRow>, StoreError> {
        Ok(self.fetch_all(sql, params).await?.into_iter().next())
    }

    /// Runs statements in one transaction; returns the rows each changed.
    pub async fn transaction(
        &self,
        statements: &[(&str, Vec<Param>)],
    ) -> Result<Vec<u64>, StoreError> {
        let mut changed = Vec::with_capacity(statements.len());
        match self {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for (sql, params) in statements {
                    changed.push(
                        sqlite_query(sql, params)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected(),
                    );
                }
                tx.commit().await?;
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                for (sql, params) in statements {
                    changed.push(
                        pg_query(sql, params)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected(),
                    );
                }
                tx.commit().await?;
            }
        }
        Ok(changed)
    }
}

/// What the records' statements (deleting a session, counting again after a crash,
/// retention) need to know of a database's events.
pub struct EventSql {
    /// The statements that delete session `$1`'s events, in the transaction that
    /// deletes the session.
    pub delete: &'static [&'static str],
    /// A subquery: the number of events stored for the session `sessions.id`.
    pub stored_count: &'static str,
    /// A subquery with a row when the session `sessions.id` holds events.
    pub has_events: &'static str,
    /// A query of the events stored across all sessions, as `total`.
    pub total: &'static str,
}

/// `LIMIT first + 1`: the extra row says whether another page follows.
pub fn limit_plus_one(first: usize) -> i64 {
    i64::try_from(first).unwrap_or(i64::MAX).saturating_add(1)
}

/// The first `first` of `rows` (fetched with [`limit_plus_one`]) read by `read`, and
/// whether another page follows.
pub fn page<R, T>(
    rows: &[R],
    first: usize,
    read: impl FnMut(&R) -> Result<T, StoreError>,
) -> Result<(Vec<T>, bool), StoreError> {
    let items = rows
        .iter()
        .take(first)
        .map(read)
        .collect::<Result<_, _>>()?;
    Ok((items, rows.len() > first))
}

/// The id an `INSERT ... RETURNING id` gave.
pub fn inserted_id(row: Option<DbRow>) -> Result<i64, StoreError> {
    row.ok_or_else(|| StoreError::Corrupt("an INSERT returned no id".into()))?
        .int("id")
}
