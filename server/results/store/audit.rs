//! The audit trail: one entry per mutation, whatever its outcome.

use super::{Store, StoreError};
use crate::model::SessionId;
use crate::params;
use crate::results::db::{inserted_id, limit_plus_one, page, DbRow};

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
        let row = self
            .db
            .fetch_optional(
                "INSERT INTO audit (at, actor, role, action, args, outcome, error, session_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                params![
                    entry.at_ns,
                    &entry.actor,
                    &entry.role,
                    &entry.action,
                    entry.args.to_string(),
                    &entry.outcome,
                    &entry.error,
                    entry.session_id.as_ref().map(SessionId::as_str),
                ],
            )
            .await?;
        inserted_id(row)
    }

    /// Sets how the audited mutation `id` ended.
    pub async fn audit_outcome(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.db
            .execute(
                "UPDATE audit SET outcome = $1, error = $2, session_id = $3 WHERE id = $4",
                params![
                    &entry.outcome,
                    &entry.error,
                    entry.session_id.as_ref().map(SessionId::as_str),
                    entry.id,
                ],
            )
            .await?;
        Ok(())
    }

    /// Newest first, ids below `after`; and whether more follow.
    pub async fn audit_log(
        &self,
        first: usize,
        after: Option<i64>,
    ) -> Result<(Vec<AuditEntry>, bool), StoreError> {
        let rows = self
            .db
            .fetch_all(
                "SELECT * FROM audit WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
                params![after, limit_plus_one(first)],
            )
            .await?;
        page(&rows, first, audit_from_row)
    }
}

fn audit_from_row(r: &DbRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: r.int("id")?,
        at_ns: r.int("at")? as u64,
        actor: r.text("actor")?,
        role: r.text("role")?,
        action: r.text("action")?,
        args: r.json("args")?,
        outcome: r.text("outcome")?,
        error: r.opt_text("error")?,
        session_id: r.opt_text("session_id")?.map(SessionId::from),
    })
}
