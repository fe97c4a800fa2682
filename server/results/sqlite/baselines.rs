//! Learned baselines (migrations/0008_baselines.sql). The store keeps a baseline's
//! profile as the security analyzer's JSON; it does not read it.

use sqlx::Row;

use super::{Store, StoreError};

/// One stored baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct BaselineRecord {
    pub id: i64,
    /// `container` or `image`, and the container's name or the image.
    pub scope: String,
    pub target: String,
    pub started_ns: u64,
    pub duration_secs: u64,
    /// `learning`, `ready`, `failed` or `interrupted`.
    pub state: String,
    /// The profile as JSON, once ready.
    pub profile: Option<String>,
    /// Events seen and lost while learning.
    pub events: u64,
    pub lost: u64,
    pub error: Option<String>,
}

const COLUMNS: &str =
    "id, scope, target, started_ts, duration_secs, state, profile, events, lost, error";

fn record(row: &sqlx::sqlite::SqliteRow) -> BaselineRecord {
    BaselineRecord {
        id: row.get("id"),
        scope: row.get("scope"),
        target: row.get("target"),
        started_ns: row.get::<i64, _>("started_ts") as u64,
        duration_secs: row.get::<i64, _>("duration_secs") as u64,
        state: row.get("state"),
        profile: row.get("profile"),
        events: row.get::<i64, _>("events") as u64,
        lost: row.get::<i64, _>("lost") as u64,
        error: row.get("error"),
    }
}

impl Store {
    /// Stores a baseline that starts learning; returns its id.
    pub async fn insert_baseline(
        &self,
        scope: &str,
        target: &str,
        started_ns: u64,
        duration_secs: u64,
    ) -> Result<i64, StoreError> {
        let done = sqlx::query(
            "INSERT INTO baselines (scope, target, started_ts, duration_secs, state) \
             VALUES (?, ?, ?, ?, 'learning')",
        )
        .bind(scope)
        .bind(target)
        .bind(started_ns as i64)
        .bind(duration_secs as i64)
        .execute(&self.pool)
        .await?;
        Ok(done.last_insert_rowid())
    }

    /// Records how learning ended: `ready` with a profile, or `failed` with an error.
    /// False when the baseline was deleted meanwhile.
    pub async fn finish_baseline(&self, b: &BaselineRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE baselines SET state = ?, profile = ?, events = ?, lost = ?, error = ? \
             WHERE id = ?",
        )
        .bind(&b.state)
        .bind(&b.profile)
        .bind(b.events as i64)
        .bind(b.lost as i64)
        .bind(&b.error)
        .bind(b.id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Baselines a previous server was learning when it stopped become `interrupted`;
    /// returns how many.
    pub async fn mark_learning_interrupted(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE baselines SET state = 'interrupted', \
             error = 'the server stopped while it learned' WHERE state = 'learning'",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Every baseline, oldest first.
    pub async fn baselines(&self) -> Result<Vec<BaselineRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM baselines ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(record).collect())
    }

    /// Deletes a baseline; false when there was none with this id.
    pub async fn delete_baseline(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM baselines WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
