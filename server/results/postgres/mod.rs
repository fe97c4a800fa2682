//! PostgreSQL as a server's own store (`--db postgres://...`): its events, written by
//! [`PgBatch`] as one `INSERT ... SELECT FROM UNNEST` per batch, and asked by
//! [`PgResults`]. The store's tables live in a schema of the server's own,
//! `eunomia_<node>`, so that several servers may share one database; an advisory lock on
//! the schema keeps a second server of the same name out, as the lock file does for a
//! SQLite file.

mod query;

use std::str::FromStr;
use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Row};

pub use query::{PgResults, Table, NODE};

use crate::handler::push_json_record;
use crate::metrics::Metrics;
use crate::model::{SessionId, TrackerInfo};
use crate::results::db::EventSql;
use crate::results::writer::{BatchWriter, Chunk, Writer};
use crate::results::{StoreError, StoreOptions};

/// PostgreSQL's events for the records' statements, counted from the rows themselves.
pub const EVENT_SQL: EventSql = EventSql {
    delete: &["DELETE FROM events WHERE session_id = $1"],
    stored_count: "SELECT count(*) FROM events e WHERE e.session_id = sessions.id",
    has_events: "SELECT 1 FROM events e WHERE e.session_id = sessions.id",
    total: "SELECT count(*) AS total FROM events",
};

/// Connections to the database: the writer's batches, the records, viewers' questions.
const CONNECTIONS: u32 = 6;

/// A PostgreSQL database's events, and the connection that holds the schema's lock.
pub struct PgEvents {
    pool: PgPool,
    query_budget: std::time::Duration,
    /// Holds the advisory lock on the schema while the store is open.
    _lock: tokio::sync::Mutex<PgConnection>,
}

/// The schema of a server's tables: `eunomia_` and its node name, in the characters an
/// unquoted identifier takes.
pub fn schema_name(node: &str) -> String {
    let name: String = node
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    format!("eunomia_{name}")
}

impl PgEvents {
    /// Connects to `url`, creates and migrates this node's schema, takes its lock and
    /// starts the writer: the pool for the records, the events, and their writer.
    pub async fn open(
        url: &str,
        options: &StoreOptions,
        metrics: &Metrics,
    ) -> Result<(PgPool, PgEvents, Writer), StoreError> {
        let node = options
            .node
            .clone()
            .unwrap_or_else(|| "eunomia".to_string());
        let schema = schema_name(&node);
        let connect = PgConnectOptions::from_str(url)?;
        let mut lock = PgConnection::connect_with(&connect).await?;
        let held: bool = sqlx::query("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(&schema)
            .fetch_one(&mut lock)
            .await?
            .try_get(0)?;
        if !held {
            return Err(StoreError::InUse {
                path: format!("schema {schema} of {}", redacted(url)),
                holder: String::new(),
            });
        }
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .execute(&mut lock)
            .await?;
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(connect.options([("search_path", schema.as_str())]))
            .await?;
        sqlx::migrate!("migrations/postgres-store")
            .run(&pool)
            .await?;
        let writer = Writer::start(
            PgBatch {
                pool: pool.clone(),
                node: Arc::from(node.as_str()),
            },
            options,
            metrics.postgres_write_duration.clone(),
        );
        tracing::info!(schema, "PostgreSQL store open");
        let events = PgEvents {
            pool: pool.clone(),
            query_budget: options.query_budget,
            _lock: tokio::sync::Mutex::new(lock),
        };
        Ok((pool, events, writer))
    }

    /// The results of session `session_id`, a session of tracker `info`.
    pub fn session_results(&self, session_id: SessionId, info: &'static TrackerInfo) -> PgResults {
        PgResults::new(
            self.pool.clone(),
            Table::Store,
            session_id.to_string(),
            info,
            self.query_budget,
        )
    }
}

/// A database URL without its password, for messages.
pub fn redacted(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(o) => format!(
            "postgres://{}@{}:{}/{}",
            o.get_username(),
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or_default()
        ),
        Err(_) => "the database".to_string(),
    }
}

/// The writer's side in PostgreSQL: a batch as one INSERT of column arrays (one bound
/// value per column, whatever the batch's size).
pub struct PgBatch {
    pool: PgPool,
    node: Arc<str>,
}

impl BatchWriter for PgBatch {
    const NAME: &'static str = "PostgreSQL";

    async fn write(&mut self, batch: &[Chunk]) -> Result<(), sqlx::Error> {
        let n: usize = batch.iter().map(|c| c.rows.len()).sum();
        let mut session_id = Vec::with_capacity(n);
        let mut seq = Vec::with_capacity(n);
        let mut ts = Vec::with_capacity(n);
        let mut tracker = Vec::with_capacity(n);
        let mut kind = Vec::with_capacity(n);
        let mut pid = Vec::with_capacity(n);
        let mut ppid = Vec::with_capacity(n);
        let mut comm = Vec::with_capacity(n);
        let mut cgroup_id = Vec::with_capacity(n);
        let mut data = Vec::with_capacity(n);
        let mut json = Vec::with_capacity(512);
        for chunk in batch {
            for r in chunk.rows() {
                session_id.push(r.session_id);
                seq.push(r.row.seq);
                ts.push(r.row.ts);
                tracker.push(r.row.tracker);
                kind.push(r.row.kind);
                pid.push(i64::from(r.row.pid));
                ppid.push(i64::from(r.row.ppid));
                comm.push(r.row.comm.as_str());
                cgroup_id.push(r.row.cgroup_id);
                json.clear();
                push_json_record(&mut json, &r.record(chunk.info));
                data.push(String::from_utf8_lossy(&json).into_owned());
            }
        }
        sqlx::query(
            "INSERT INTO events (node, session_id, seq, ts, tracker, kind, pid, ppid, comm, \
             cgroup_id, data) \
             SELECT $1, s, q, t, tr, k, p, pp, c, cg, d::JSONB FROM UNNEST($2::TEXT[], \
             $3::BIGINT[], $4::BIGINT[], $5::TEXT[], $6::TEXT[], $7::BIGINT[], $8::BIGINT[], \
             $9::TEXT[], $10::BIGINT[], $11::TEXT[]) AS u(s, q, t, tr, k, p, pp, c, cg, d)",
        )
        .bind(&*self.node)
        .bind(session_id)
        .bind(seq)
        .bind(ts)
        .bind(tracker)
        .bind(kind)
        .bind(pid)
        .bind(ppid)
        .bind(comm)
        .bind(cgroup_id)
        .bind(data)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_memory(&mut self) {
        crate::results::release_heap();
    }

    async fn close(self) {}
}
