//! Stored security alerts (migrations/0006_alerts.sql): written by the security
//! analyzer, one row per alert counted up while it repeats, read newest first.

use super::{Store, StoreError};
use crate::model::{SessionId, Severity};
use crate::params;
use crate::results::db::{inserted_id, limit_plus_one, page, DbRow};

/// One stored alert.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRecord {
    /// 0 until stored.
    pub id: i64,
    /// When it was first raised (ns since the epoch), and last.
    pub ts_ns: u64,
    pub last_ts_ns: u64,
    /// How many times it was raised within the dedup window.
    pub count: u64,
    pub rule: String,
    pub severity: Severity,
    /// MITRE ATT&CK technique id and name.
    pub technique: String,
    pub technique_name: String,
    pub tactic: String,
    pub tracker: String,
    pub session_id: Option<SessionId>,
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    /// The process's executable, when it could be read.
    pub exe: Option<String>,
    pub container_id: Option<String>,
    pub container_name: Option<String>,
    pub container_image: Option<String>,
    pub output: String,
    /// The event that raised it first, as JSON.
    pub event: String,
}

/// Which alerts to list; each part that is set must hold.
#[derive(Clone, Debug, Default)]
pub struct AlertFilter {
    /// At least this severe.
    pub min_severity: Option<Severity>,
    pub rule: Option<String>,
    /// The container's name or id (a prefix of the id will do).
    pub container: Option<String>,
    /// First raised at or after this time (ns since the epoch).
    pub since_ns: Option<u64>,
}

const COLUMNS: &str = "id, ts, last_ts, count, rule, severity, technique, technique_name, \
                       tactic, tracker, session_id, pid, ppid, comm, exe, container_id, \
                       container_name, container_image, output, event";

impl Store {
    /// Stores a new alert; returns its id.
    pub async fn insert_alert(&self, a: &AlertRecord) -> Result<i64, StoreError> {
        let row = self
            .db
            .fetch_optional(
                "INSERT INTO alerts (ts, last_ts, count, rule, severity, severity_rank, \
                 technique, technique_name, tactic, tracker, session_id, pid, ppid, comm, exe, \
                 container_id, container_name, container_image, output, event) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                 $17, $18, $19, $20) RETURNING id",
                params![
                    a.ts_ns,
                    a.last_ts_ns,
                    a.count,
                    &a.rule,
                    a.severity.as_str(),
                    a.severity as i64,
                    &a.technique,
                    &a.technique_name,
                    &a.tactic,
                    &a.tracker,
                    a.session_id.as_ref().map(SessionId::as_str),
                    i64::from(a.pid),
                    i64::from(a.ppid),
                    &a.comm,
                    &a.exe,
                    &a.container_id,
                    &a.container_name,
                    &a.container_image,
                    &a.output,
                    &a.event,
                ],
            )
            .await?;
        inserted_id(row)
    }

    /// Counts a repeat of alert `id`, raised again at `ts_ns`.
    pub async fn repeat_alert(&self, id: i64, ts_ns: u64) -> Result<(), StoreError> {
        self.db
            .execute(
                "UPDATE alerts SET count = count + 1, last_ts = $1 WHERE id = $2",
                params![ts_ns, id],
            )
            .await?;
        Ok(())
    }

    /// Deletes the oldest alerts beyond the newest `keep`; returns how many went.
    pub async fn trim_alerts(&self, keep: u64) -> Result<u64, StoreError> {
        self.db
            .execute(
                "DELETE FROM alerts WHERE id <= (SELECT MAX(id) FROM alerts) - $1",
                params![i64::try_from(keep).unwrap_or(i64::MAX)],
            )
            .await
    }

    /// Alerts that pass `filter`, newest first: `first` of them after the alert with id
    /// `after` (the previous page's last), and whether more follow.
    pub async fn list_alerts(
        &self,
        filter: &AlertFilter,
        first: usize,
        after: Option<i64>,
    ) -> Result<(Vec<AlertRecord>, bool), StoreError> {
        // Each part applies only when set: a NULL value switches it off.
        let sql = format!(
            "SELECT {COLUMNS} FROM alerts WHERE id < $1 \
             AND ($2 IS NULL OR severity_rank >= $2) AND ($3 IS NULL OR rule = $3) \
             AND ($4 IS NULL OR container_name = $4 OR container_id LIKE $4 || '%') \
             AND ($5 IS NULL OR ts >= $5) ORDER BY id DESC LIMIT $6"
        );
        let rows = self
            .db
            .fetch_all(
                &sql,
                params![
                    after.unwrap_or(i64::MAX),
                    filter.min_severity.map(|s| s as i64),
                    filter.rule.clone(),
                    filter.container.clone(),
                    filter.since_ns,
                    limit_plus_one(first),
                ],
            )
            .await?;
        page(&rows, first, alert_of)
    }
}

fn alert_of(row: &DbRow) -> Result<AlertRecord, StoreError> {
    let severity = row.text("severity")?;
    Ok(AlertRecord {
        id: row.int("id")?,
        ts_ns: row.int("ts")? as u64,
        last_ts_ns: row.int("last_ts")? as u64,
        count: row.int("count")? as u64,
        rule: row.text("rule")?,
        severity: Severity::ALL
            .into_iter()
            .find(|s| s.as_str() == severity)
            .ok_or_else(|| StoreError::Corrupt(format!("alert severity `{severity}`")))?,
        technique: row.text("technique")?,
        technique_name: row.text("technique_name")?,
        tactic: row.text("tactic")?,
        tracker: row.text("tracker")?,
        session_id: row.opt_text("session_id")?.map(SessionId::from),
        pid: row.int("pid")? as u32,
        ppid: row.int("ppid")? as u32,
        comm: row.text("comm")?,
        exe: row.opt_text("exe")?,
        container_id: row.opt_text("container_id")?,
        container_name: row.opt_text("container_name")?,
        container_image: row.opt_text("container_image")?,
        output: row.text("output")?,
        event: row.text("event")?,
    })
}
