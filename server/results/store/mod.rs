//! The server's own database: its sessions and their events, the audit trail, alerts,
//! baselines, the guard's state and seccomp profiles. SQLite in one file (WAL) by
//! default; PostgreSQL when `--db` is a `postgres://` URL.
//!
//! The records are written once for both (`db`): `sessions`, `audit`, `alerts`,
//! `baselines`, `guard`, `seccomp_profiles`, `retention`. Events are each database's
//! own ([`crate::results::sqlite`], [`crate::results::postgres`]): how rows are written
//! and how questions over them are asked differ, the queue in front of them
//! ([`crate::results::writer`]) does not.

mod alerts;
mod audit;
mod baselines;
mod guard;
mod retention;
mod seccomp_profiles;
mod sessions;

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

pub use alerts::{AlertFilter, AlertRecord};
pub use audit::AuditEntry;
pub use baselines::BaselineRecord;
pub use retention::{RetentionPolicy, RetentionReport};
pub use seccomp_profiles::SeccompProfileRecord;
pub use sessions::{SessionRecord, SessionStatus, StoreKind};

pub use crate::results::writer::{EventSink, Failure, WriterHealth};
pub use crate::results::{StoreError, StoreOptions};

use crate::metrics::{stage, Metrics};
use crate::model::{SessionId, TrackerInfo};
use crate::results::db::{Db, EventSql};
use crate::results::postgres::{self, PgEvents};
use crate::results::sqlite::{self, SqliteEvents};
use crate::results::writer::Writer;
use crate::results::SessionResults;

pub struct Store {
    /// The records' tables.
    db: Db,
    events: Events,
    writer: Writer,
    metrics: Metrics,
}

/// Where the events are, and how they are written and asked.
enum Events {
    Sqlite(Arc<SqliteEvents>),
    Postgres(Arc<PgEvents>),
}

/// Whether `--db` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(db: &Path) -> bool {
    db.to_str()
        .is_some_and(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
}

/// `--db` as messages show it: a PostgreSQL URL without its password.
pub fn shown(db: &Path) -> String {
    match db.to_str().filter(|_| is_postgres_url(db)) {
        Some(url) => postgres::redacted(url),
        None => db.display().to_string(),
    }
}

impl Events {
    /// The statements over this database's events that the records' code runs.
    fn sql(&self) -> &'static EventSql {
        match self {
            Events::Sqlite(_) => &sqlite::EVENT_SQL,
            Events::Postgres(_) => &postgres::EVENT_SQL,
        }
    }
}

impl Store {
    /// Opens (creating and migrating) the database `db`, a SQLite file or a PostgreSQL
    /// URL, and starts the event writer.
    pub async fn open(
        db: &Path,
        options: StoreOptions,
        metrics: Metrics,
    ) -> Result<Store, StoreError> {
        let (db, events, writer) = match db.to_str().filter(|_| is_postgres_url(db)) {
            Some(url) => {
                let (pool, events, writer) = PgEvents::open(url, &options, &metrics).await?;
                (
                    Db::Postgres(pool),
                    Events::Postgres(Arc::new(events)),
                    writer,
                )
            }
            None => {
                let (pool, events, writer) = SqliteEvents::open(db, &options, &metrics).await?;
                (Db::Sqlite(pool), Events::Sqlite(Arc::new(events)), writer)
            }
        };
        Ok(Store {
            db,
            events,
            writer,
            metrics,
        })
    }

    /// A chain end that stores `session_id`'s events; what the queue cannot take is added
    /// to `lost` and to the loss metric of `tracker` at the database's stage.
    pub fn event_sink(
        &self,
        session_id: &SessionId,
        tracker: &'static str,
        lost: Arc<AtomicU64>,
        failure: Failure,
    ) -> EventSink {
        let at = match self.events {
            Events::Sqlite(_) => stage::SQLITE,
            Events::Postgres(_) => stage::POSTGRES,
        };
        let lost_metric = self.metrics.lost.with_label_values(&[tracker, at]);
        self.writer.sink(session_id, lost, lost_metric, failure)
    }

    /// The results of session `session_id`, a session of tracker `info`.
    pub fn session_results(
        &self,
        session_id: SessionId,
        info: &'static TrackerInfo,
    ) -> Arc<dyn SessionResults> {
        match &self.events {
            Events::Sqlite(e) => Arc::new(e.session_results(session_id, info)),
            Events::Postgres(e) => Arc::new(e.session_results(session_id, info)),
        }
    }

    /// How the event writer fares: a failing store (a full disk) says why and since when.
    pub fn health(&self) -> WriterHealth {
        self.writer.health()
    }

    /// Returns once every event enqueued before the call is committed (or counted lost,
    /// should its batch fail).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.writer.flush().await
    }

    /// Commits what is queued, stops the writer and closes the database. Sinks still alive
    /// count what they send afterwards as lost.
    pub async fn close(self) -> Result<(), StoreError> {
        let stopped = self.writer.stop().await;
        match (&self.events, &self.db) {
            (Events::Sqlite(e), Db::Sqlite(pool)) => {
                e.close().await;
                pool.close().await;
            }
            // One pool serves the records and the events.
            (_, Db::Postgres(pool)) => pool.close().await,
            (Events::Postgres(_), Db::Sqlite(pool)) => pool.close().await,
        }
        stopped
    }
}
