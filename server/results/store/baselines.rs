//! Learned baselines (migrations/0008_baselines.sql). The store keeps a baseline's
//! profile as the security analyzer's JSON; it does not read it.

use super::{Store, StoreError};
use crate::params;
use crate::results::db::{inserted_id, DbRow};

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

fn record(row: &DbRow) -> Result<BaselineRecord, StoreError> {
    Ok(BaselineRecord {
        id: row.int("id")?,
        scope: row.text("scope")?,
        target: row.text("target")?,
        started_ns: row.int("started_ts")? as u64,
        duration_secs: row.int("duration_secs")? as u64,
        state: row.text("state")?,
        profile: row.opt_text("profile")?,
        events: row.int("events")? as u64,
        lost: row.int("lost")? as u64,
        error: row.opt_text("error")?,
    })
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
        let row = self
            .db
            .fetch_optional(
                "INSERT INTO baselines (scope, target, started_ts, duration_secs, state) \
                 VALUES ($1, $2, $3, $4, 'learning') RETURNING id",
                params![scope, target, started_ns, duration_secs],
            )
            .await?;
        inserted_id(row)
    }

    /// Records how learning ended: `ready` with a profile, or `failed` with an error.
    /// False when the baseline was deleted meanwhile.
    pub async fn finish_baseline(&self, b: &BaselineRecord) -> Result<bool, StoreError> {
        let changed = self
            .db
            .execute(
                "UPDATE baselines SET state = $1, profile = $2, events = $3, lost = $4, \
                 error = $5 WHERE id = $6",
                params![&b.state, &b.profile, b.events, b.lost, &b.error, b.id],
            )
            .await?;
        Ok(changed > 0)
    }

    /// Baselines a previous server was learning when it stopped become `interrupted`;
    /// returns how many.
    pub async fn mark_learning_interrupted(&self) -> Result<u64, StoreError> {
        self.db
            .execute(
                "UPDATE baselines SET state = 'interrupted', \
                 error = 'the server stopped while it learned' WHERE state = 'learning'",
                params![],
            )
            .await
    }

    /// Every baseline, oldest first.
    pub async fn baselines(&self) -> Result<Vec<BaselineRecord>, StoreError> {
        self.db
            .fetch_all(
                &format!("SELECT {COLUMNS} FROM baselines ORDER BY id"),
                params![],
            )
            .await?
            .iter()
            .map(record)
            .collect()
    }

    /// Deletes a baseline; false when there was none with this id.
    pub async fn delete_baseline(&self, id: i64) -> Result<bool, StoreError> {
        let deleted = self
            .db
            .execute("DELETE FROM baselines WHERE id = $1", params![id])
            .await?;
        Ok(deleted > 0)
    }
}
