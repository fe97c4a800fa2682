//! Stored security alerts (migrations/0006_alerts.sql): written by the security
//! analyzer, one row per alert counted up while it repeats, read newest first.

use sqlx::Row;

use super::{Store, StoreError};
use crate::model::{SessionId, Severity};

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
        let done = sqlx::query(
            "INSERT INTO alerts (ts, last_ts, count, rule, severity, severity_rank, technique, \
             technique_name, tactic, tracker, session_id, pid, ppid, comm, exe, container_id, \
             container_name, container_image, output, event) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(a.ts_ns as i64)
        .bind(a.last_ts_ns as i64)
        .bind(a.count as i64)
        .bind(&a.rule)
        .bind(a.severity.as_str())
        .bind(a.severity as i64)
        .bind(&a.technique)
        .bind(&a.technique_name)
        .bind(&a.tactic)
        .bind(&a.tracker)
        .bind(a.session_id.as_ref().map(SessionId::as_str))
        .bind(i64::from(a.pid))
        .bind(i64::from(a.ppid))
        .bind(&a.comm)
        .bind(&a.exe)
        .bind(&a.container_id)
        .bind(&a.container_name)
        .bind(&a.container_image)
        .bind(&a.output)
        .bind(&a.event)
        .execute(&self.pool)
        .await?;
        Ok(done.last_insert_rowid())
    }

    /// Counts a repeat of alert `id`, raised again at `ts_ns`.
    pub async fn repeat_alert(&self, id: i64, ts_ns: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE alerts SET count = count + 1, last_ts = ? WHERE id = ?")
            .bind(ts_ns as i64)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes the oldest alerts beyond the newest `keep`; returns how many went.
    pub async fn trim_alerts(&self, keep: u64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM alerts WHERE id <= (SELECT MAX(id) FROM alerts) - ?")
            .bind(i64::try_from(keep).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Alerts that pass `filter`, newest first: `first` of them after the alert with id
    /// `after` (the previous page's last), and whether more follow.
    pub async fn list_alerts(
        &self,
        filter: &AlertFilter,
        first: usize,
        after: Option<i64>,
    ) -> Result<(Vec<AlertRecord>, bool), StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM alerts WHERE id < ?");
        if filter.min_severity.is_some() {
            sql.push_str(" AND severity_rank >= ?");
        }
        if filter.rule.is_some() {
            sql.push_str(" AND rule = ?");
        }
        if filter.container.is_some() {
            sql.push_str(" AND (container_name = ? OR container_id LIKE ? || '%')");
        }
        if filter.since_ns.is_some() {
            sql.push_str(" AND ts >= ?");
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        let mut query = sqlx::query(&sql).bind(after.unwrap_or(i64::MAX));
        if let Some(severity) = filter.min_severity {
            query = query.bind(severity as i64);
        }
        if let Some(rule) = &filter.rule {
            query = query.bind(rule);
        }
        if let Some(container) = &filter.container {
            query = query.bind(container).bind(container);
        }
        if let Some(since) = filter.since_ns {
            query = query.bind(since as i64);
        }
        let rows = query
            .bind(i64::try_from(first).unwrap_or(i64::MAX).saturating_add(1))
            .fetch_all(&self.pool)
            .await?;
        let has_next = rows.len() > first;
        let alerts = rows
            .iter()
            .take(first)
            .map(alert_of)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((alerts, has_next))
    }
}

fn alert_of(row: &sqlx::sqlite::SqliteRow) -> Result<AlertRecord, StoreError> {
    let severity: String = row.try_get("severity")?;
    let number = |name: &str| -> Result<i64, StoreError> { Ok(row.try_get::<i64, _>(name)?) };
    Ok(AlertRecord {
        id: number("id")?,
        ts_ns: number("ts")? as u64,
        last_ts_ns: number("last_ts")? as u64,
        count: number("count")? as u64,
        rule: row.try_get("rule")?,
        severity: Severity::ALL
            .into_iter()
            .find(|s| s.as_str() == severity)
            .ok_or_else(|| StoreError::Corrupt(format!("alert severity `{severity}`")))?,
        technique: row.try_get("technique")?,
        technique_name: row.try_get("technique_name")?,
        tactic: row.try_get("tactic")?,
        tracker: row.try_get("tracker")?,
        session_id: row
            .try_get::<Option<String>, _>("session_id")?
            .map(SessionId::from),
        pid: number("pid")? as u32,
        ppid: number("ppid")? as u32,
        comm: row.try_get("comm")?,
        exe: row.try_get("exe")?,
        container_id: row.try_get("container_id")?,
        container_name: row.try_get("container_name")?,
        container_image: row.try_get("container_image")?,
        output: row.try_get("output")?,
        event: row.try_get("event")?,
    })
}
