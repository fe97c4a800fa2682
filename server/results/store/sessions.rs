//! Session records: their status and store kind, and reading and writing them.

use std::str::FromStr;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Sqlite, Type};

use super::{Store, StoreError};
use crate::model::SessionId;
use crate::params;
use crate::results::db::{limit_plus_one, page, DbRow, Param};

// Session ids are stored as TEXT. Here rather than beside the type: the model knows no
// database.
impl Type<Sqlite> for SessionId {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl<'q> Encode<'q, Sqlite> for SessionId {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(self.as_str().to_string(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for SessionId {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Self::from(<String as Decode<Sqlite>>::decode(value)?))
    }
}

// Also a value of the CLI's `session list --status` (a plain comment: not in the schema).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    async_graphql::Enum,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
pub enum SessionStatus {
    /// Its tracker is loading and attaching: it sees no event yet. Shown while
    /// `startSession` runs; the store holds such a session as RUNNING.
    Starting,
    Running,
    Completed,
    Stopped,
    Failed,
    Interrupted,
}

// Also a value of the CLI's `session start --store` (a plain comment: not in the schema).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    async_graphql::Enum,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
pub enum StoreKind {
    Sqlite,
    Memory,
}

/// The text both enums are stored as: their GraphQL names.
macro_rules! stored_as_text {
    ($ty:ty { $($variant:ident => $text:literal),+ }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl FromStr for $ty {
            type Err = StoreError;

            fn from_str(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(StoreError::Corrupt(format!(
                        "unknown {} `{other}`",
                        stringify!($ty)
                    ))),
                }
            }
        }
    };
}

stored_as_text!(SessionStatus {
    Starting => "STARTING",
    Running => "RUNNING",
    Completed => "COMPLETED",
    Stopped => "STOPPED",
    Failed => "FAILED",
    Interrupted => "INTERRUPTED"
});
impl SessionStatus {
    /// Whether the session is over: neither starting nor running.
    pub fn has_ended(self) -> bool {
        !matches!(self, Self::Starting | Self::Running)
    }
}

stored_as_text!(StoreKind {
    Sqlite => "SQLITE",
    Memory => "MEMORY"
});

#[derive(Clone, Debug, PartialEq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub tracker: String,
    pub label: Option<String>,
    pub status: SessionStatus,
    pub store: StoreKind,
    pub filter: serde_json::Value,
    pub config: serde_json::Value,
    pub started_at_ns: u64,
    pub ends_at_ns: u64,
    pub ended_at_ns: Option<u64>,
    pub event_count: u64,
    pub lost_count: u64,
    pub error: Option<String>,
    /// JSON snapshot of a MEMORY session's aggregates, written when it ends (so results
    /// survive restarts).
    pub memory_snapshot: Option<serde_json::Value>,
}

impl Store {
    pub async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let mut params = params![s.id.as_str()];
        params.extend(session_columns(s));
        self.db
            .execute(
                "INSERT INTO sessions (id, tracker, label, status, store, filter, config, \
                 started_at, ends_at, ended_at, event_count, lost_count, error, memory_snapshot) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                params,
            )
            .await?;
        Ok(())
    }

    /// Writes every column of the session but its id; an unknown id is an error.
    pub async fn update_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let mut params = session_columns(s);
        params.push(s.id.as_str().into());
        let changed = self
            .db
            .execute(
                "UPDATE sessions SET tracker = $1, label = $2, status = $3, store = $4, \
                 filter = $5, config = $6, started_at = $7, ends_at = $8, ended_at = $9, \
                 event_count = $10, lost_count = $11, error = $12, memory_snapshot = $13 \
                 WHERE id = $14",
                params,
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::UnknownSession(s.id.clone()));
        }
        Ok(())
    }

    pub async fn get_session(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.db
            .fetch_optional("SELECT * FROM sessions WHERE id = $1", params![id.as_str()])
            .await?
            .map(|r| session_from_row(&r))
            .transpose()
    }

    /// Newest first (started_at desc, id desc). `after` is a cursor this returned; the
    /// result pairs each record with its cursor, and says whether more follow.
    pub async fn list_sessions(
        &self,
        status: Option<SessionStatus>,
        first: usize,
        after: Option<&str>,
    ) -> Result<(Vec<(String, SessionRecord)>, bool), StoreError> {
        let after = after.map(parse_session_cursor).transpose()?;
        let rows = self
            .db
            .fetch_all(
                "SELECT * FROM sessions WHERE ($1 IS NULL OR status = $1) \
                 AND ($2 IS NULL OR started_at < $2 OR (started_at = $2 AND id < $3)) \
                 ORDER BY started_at DESC, id DESC LIMIT $4",
                params![
                    status.map(SessionStatus::as_str),
                    after.as_ref().map(|(started, _)| *started),
                    after.as_ref().map(|(_, id)| id.as_str()),
                    limit_plus_one(first),
                ],
            )
            .await?;
        page(&rows, first, |row| {
            let record = session_from_row(row)?;
            Ok((session_cursor(&record), record))
        })
    }

    /// Deletes a session and its events; false when there was no such session.
    pub async fn delete_session(&self, id: &SessionId) -> Result<bool, StoreError> {
        Ok(self.delete_with_events(id).await?.is_some())
    }

    /// Deletes a session and its events in one transaction; how many events it had, or
    /// `None` when there was no such session.
    pub(super) async fn delete_with_events(
        &self,
        id: &SessionId,
    ) -> Result<Option<u64>, StoreError> {
        let mut statements: Vec<(&str, Vec<Param>)> = self
            .events
            .sql()
            .delete
            .iter()
            .map(|sql| (*sql, params![id.as_str()]))
            .collect();
        statements.push(("DELETE FROM sessions WHERE id = $1", params![id.as_str()]));
        let changed = self.db.transaction(&statements).await?;
        let sessions = changed.last().copied().unwrap_or(0);
        Ok((sessions > 0).then_some(changed[0]))
    }

    /// Sessions a previous server left RUNNING become INTERRUPTED, ended now.
    pub async fn mark_running_interrupted(&self, now_ns: u64) -> Result<u64, StoreError> {
        // The counts were never saved: what is stored is counted again from the events
        // table (or its counts, kept in the same transactions as the events), and what
        // was lost is unknown.
        let sql = format!(
            "UPDATE sessions SET status = 'INTERRUPTED', ended_at = $1, \
             event_count = COALESCE(({}), 0), \
             error = CASE store WHEN 'MEMORY' THEN $2 ELSE $3 END \
             WHERE status = 'RUNNING'",
            self.events.sql().stored_count
        );
        let params = params![now_ns, INTERRUPTED_IN_MEMORY, INTERRUPTED_STORED];
        Ok(self.db.execute(&sql, params).await?)
    }
}

/// What a session interrupted by a server that did not shut down cleanly says.
pub const INTERRUPTED_STORED: &str = "the server stopped without ending this session: \
     eventCount counts the events stored until then; how many were lost is unknown";
pub const INTERRUPTED_IN_MEMORY: &str = "the server stopped without ending this session: \
     its results were in memory and are gone; how many events it saw is unknown";

/// A sessions cursor: where the record sorts, as `<started_at>:<id>`.
fn session_cursor(s: &SessionRecord) -> String {
    format!("{}:{}", s.started_at_ns, s.id)
}

fn parse_session_cursor(cursor: &str) -> Result<(i64, SessionId), StoreError> {
    cursor
        .split_once(':')
        .and_then(|(started, id)| Some((started.parse().ok()?, SessionId::from(id))))
        .ok_or_else(|| StoreError::BadCursor(cursor.to_string()))
}

/// Every session column but the id, in the order insert and update name them.
fn session_columns(s: &SessionRecord) -> Vec<Param> {
    params![
        &s.tracker,
        &s.label,
        s.status.as_str(),
        s.store.as_str(),
        s.filter.to_string(),
        s.config.to_string(),
        s.started_at_ns,
        s.ends_at_ns,
        s.ended_at_ns,
        s.event_count,
        s.lost_count,
        &s.error,
        s.memory_snapshot.as_ref().map(|v| v.to_string()),
    ]
}

fn session_from_row(r: &DbRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: SessionId::from(r.text("id")?),
        tracker: r.text("tracker")?,
        label: r.opt_text("label")?,
        status: r.text("status")?.parse()?,
        store: r.text("store")?.parse()?,
        filter: r.json("filter")?,
        config: r.json("config")?,
        started_at_ns: r.int("started_at")? as u64,
        ends_at_ns: r.int("ends_at")? as u64,
        ended_at_ns: r.opt_int("ended_at")?.map(|v| v as u64),
        event_count: r.int("event_count")? as u64,
        lost_count: r.int("lost_count")? as u64,
        error: r.opt_text("error")?,
        memory_snapshot: r
            .opt_text("memory_snapshot")?
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("memory_snapshot: {e}")))?,
    })
}
