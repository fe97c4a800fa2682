//! Retention: ended sessions deleted by age, then oldest first down to an event cap.

use super::{Store, StoreError};
use crate::model::SessionId;
use crate::params;
use crate::results::db::Param;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetentionPolicy {
    pub max_age_secs: Option<u64>,
    /// Total stored events across sessions.
    pub max_events: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetentionReport {
    pub sessions_deleted: u64,
    pub events_deleted: u64,
}

impl Store {
    /// Deletes ended sessions (with their events): those that ended more than
    /// `max_age_secs` ago, then the oldest ones holding events until at most `max_events`
    /// remain. RUNNING sessions are never touched.
    pub async fn enforce_retention(
        &self,
        policy: &RetentionPolicy,
        now_ns: u64,
    ) -> Result<RetentionReport, StoreError> {
        let mut report = RetentionReport::default();
        if let Some(age) = policy.max_age_secs {
            let cutoff = now_ns.saturating_sub(age.saturating_mul(1_000_000_000)) as i64;
            let old = self
                .session_ids(
                    "SELECT id FROM sessions WHERE status != 'RUNNING' AND ended_at < $1 \
                     ORDER BY started_at, id",
                    params![cutoff],
                )
                .await?;
            for id in old {
                self.delete_for_retention(&id, &mut report).await?;
            }
        }
        if let Some(cap) = policy.max_events {
            let mut total = self.event_total().await?;
            if total > cap {
                // Sessions without events would free nothing, so they stay.
                let sql = format!(
                    "SELECT id FROM sessions WHERE status != 'RUNNING' \
                     AND EXISTS ({}) ORDER BY started_at, id",
                    self.events.sql().has_events
                );
                let oldest = self.session_ids(&sql, params![]).await?;
                for id in oldest {
                    if total <= cap {
                        break;
                    }
                    total =
                        total.saturating_sub(self.delete_for_retention(&id, &mut report).await?);
                }
            }
        }
        if report.sessions_deleted > 0 {
            tracing::info!(
                sessions = report.sessions_deleted,
                events = report.events_deleted,
                "retention deleted old sessions"
            );
        }
        Ok(report)
    }

    /// Deletes one session for retention, adding to the report; returns its event count.
    async fn delete_for_retention(
        &self,
        id: &SessionId,
        report: &mut RetentionReport,
    ) -> Result<u64, StoreError> {
        let events = self.delete_with_events(id).await?;
        if let Some(events) = events {
            report.sessions_deleted += 1;
            report.events_deleted += events;
        }
        Ok(events.unwrap_or(0))
    }

    async fn session_ids(
        &self,
        sql: &str,
        params: Vec<Param>,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.db
            .fetch_all(sql, params)
            .await?
            .iter()
            .map(|row| Ok(SessionId::from(row.text("id")?)))
            .collect()
    }

    /// Events stored across all sessions.
    pub async fn event_total(&self) -> Result<u64, StoreError> {
        let row = self
            .db
            .fetch_optional(self.events.sql().total, params![])
            .await?;
        Ok(row.map(|r| r.int("total")).transpose()?.unwrap_or(0) as u64)
    }
}
