//! The audit trail: one entry per mutation, whatever its outcome.

use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::sql::{json_column, limit_plus_one, page};
use super::{Store, StoreError};
use crate::model::SessionId;

#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    /// 0 when inserting; the store assigns it.
    pub id: i64,
    pub at_ns: u64,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub args: serde_json::Value,
    /// "pending" while the mutation runs, then "ok" or "error".
    pub outcome: String,
    pub error: Option<String>,
    /// The session the mutation created or acted on, when there is one.
    pub session_id: Option<SessionId>,
}

impl Store {
    /// Records an entry and returns its id. Written before the mutation runs (outcome
    /// "pending"), so that a mutation whose record cannot be written is not done at all.
    pub async fn audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let id = sqlx::query(
            "INSERT INTO audit (at, actor, role, action, args, outcome, error, session_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(entry.at_ns as i64)
        .bind(&entry.actor)
        .bind(&entry.role)
        .bind(&entry.action)
        .bind(entry.args.to_string())
        .bind(&entry.outcome)
        .bind(&entry.error)
        .bind(&entry.session_id)
        .execute(&self.pool)
        .await?
        .last_insert_rowid();
        Ok(id)
    }

    /// Sets how the audited mutation `id` ended.
    pub async fn audit_outcome(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query("UPDATE audit SET outcome = ?, error = ?, session_id = ? WHERE id = ?")
            .bind(&entry.outcome)
            .bind(&entry.error)
            .bind(&entry.session_id)
            .bind(entry.id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Newest first, ids below `after`; and whether more follow.
    pub async fn audit_log(
        &self,
        first: usize,
        after: Option<i64>,
    ) -> Result<(Vec<AuditEntry>, bool), StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM audit WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
        )
        .bind(after)
        .bind(limit_plus_one(first))
        .fetch_all(&self.pool)
        .await?;
        page(&rows, first, audit_from_row)
    }
}

fn audit_from_row(r: &SqliteRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: r.try_get("id")?,
        at_ns: r.try_get::<i64, _>("at")? as u64,
        actor: r.try_get("actor")?,
        role: r.try_get("role")?,
        action: r.try_get("action")?,
        args: json_column(r, "args")?,
        outcome: r.try_get("outcome")?,
        error: r.try_get("error")?,
        session_id: r.try_get("session_id")?,
    })
}
