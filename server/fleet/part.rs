//! One node's part of a fleet session: a local SQLITE session with the fleet session's
//! tracker, filters and window, whose events are copied into `fleet_events` as they are
//! stored, and whose end (with its counts) is written to `fleet_parts`.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;

use super::{Fleet, FleetError, PartStatus};
use crate::model::{wall_clock_ns, SessionId};
use crate::results::query::{EventsQuery, StoredEvent};
use crate::results::store::StoreKind;
use crate::results::SessionResults;
use crate::session::StartRequest;

/// How often a running part copies its new events and looks for a stop request.
const SHIP_EVERY: Duration = Duration::from_millis(250);
/// Events per copy: one INSERT of arrays, well under a second on one core.
const SHIP_BATCH: usize = 5000;

/// Runs a claimed part to its end; what fails ends it FAILED with the reason.
pub(super) async fn run(fleet: std::sync::Arc<Fleet>, id: String) {
    if let Err(err) = run_part(&fleet, &id).await {
        tracing::warn!(id, "fleet part failed: {err}");
        let failed = finish(&fleet, &id, PartStatus::Failed, None, Some(err.to_string())).await;
        if let Err(err) = failed {
            tracing::warn!(id, "fleet part: recording its failure: {err}");
        }
    }
}

async fn run_part(fleet: &Fleet, id: &str) -> Result<(), FleetError> {
    let row = sqlx::query("SELECT request, ends_at FROM fleet_sessions WHERE id = $1")
        .bind(id)
        .fetch_one(&fleet.pool)
        .await?;
    let mut request: StartRequest = serde_json::from_value(row.try_get("request")?)
        .map_err(|e| FleetError::Corrupt(format!("the request of {id}: {e}")))?;
    let left_ns = row.try_get::<i64, _>("ends_at")? - wall_clock_ns() as i64;
    if left_ns <= 0 {
        let late = "the node picked its part up after the window had ended".to_string();
        return finish(fleet, id, PartStatus::NoAnswer, None, Some(late)).await;
    }
    // The window ends when the fleet's does, to the second.
    request.duration_secs = (left_ns + 999_999_999) / 1_000_000_000;
    request.store = StoreKind::Sqlite;
    request.label = Some(request.label.unwrap_or_else(|| id.to_string()));
    request.cgroup_id = request.cgroup_id.or(fleet.scope);
    let local = fleet.manager.start(request).await?;
    tracing::info!(id, local = %local.id, "fleet part running");
    let mut part = Follow {
        id,
        shipper: Shipper {
            results: fleet.manager.results(&local)?,
            after: None,
            shipped: 0,
        },
        local: local.id,
        marked_running: false,
        stop_asked: false,
    };
    let mut unreachable = false;
    loop {
        match part.step(fleet).await {
            Ok(true) => return Ok(()),
            Ok(false) if unreachable => {
                tracing::info!(id, "fleet database reachable again; copying resumes");
                unreachable = false;
            }
            Ok(false) => {}
            // The local store keeps the events: the copy resumes where it stopped.
            Err(FleetError::Db(err)) => {
                if !unreachable {
                    tracing::warn!(id, "fleet database: {err}; the part runs on, copying later");
                }
                unreachable = true;
            }
            Err(other) => return Err(other),
        }
        tokio::time::sleep(SHIP_EVERY).await;
    }
}

/// A running part, followed until it has ended and is written so.
struct Follow<'a> {
    id: &'a str,
    local: SessionId,
    shipper: Shipper,
    marked_running: bool,
    stop_asked: bool,
}

impl Follow<'_> {
    /// One look: marks the part RUNNING, passes on a stop, copies what is new, and
    /// once the local session has ended copies the rest and ends the part (true). Any
    /// step the fleet database fails is taken again at the next look.
    async fn step(&mut self, fleet: &Fleet) -> Result<bool, FleetError> {
        let id = self.id;
        if !self.marked_running {
            sqlx::query(
                "UPDATE fleet_parts SET status = 'RUNNING', local_id = $3 \
                 WHERE session_id = $1 AND node = $2 AND status = 'STARTING'",
            )
            .bind(id)
            .bind(&fleet.node)
            .bind(self.local.as_str())
            .execute(&fleet.pool)
            .await?;
            self.marked_running = true;
        }
        let record = fleet.manager.find(&self.local).await?;
        if record.status.has_ended() {
            // Every event is stored or counted lost once the store has flushed.
            let flushed = fleet.manager.store().flush().await;
            flushed.map_err(crate::session::SessionError::from)?;
            while self.shipper.ship(fleet, id).await? == SHIP_BATCH {}
            let counts = (self.shipper.shipped, record.lost_count);
            let status = PartStatus::of_local(record.status);
            finish(fleet, id, status, Some(counts), record.error).await?;
            return Ok(true);
        }
        if !self.stop_asked && stop_requested(fleet, id).await? {
            self.stop_asked = true;
            fleet.manager.stop(&self.local).await?;
            return Ok(false);
        }
        // Copies until it has caught up, so that the copy keeps pace with the store.
        while self.shipper.ship(fleet, id).await? == SHIP_BATCH {}
        sqlx::query(
            "UPDATE fleet_parts SET event_count = $3, shipped_count = $3, lost_count = $4 \
             WHERE session_id = $1 AND node = $2",
        )
        .bind(id)
        .bind(&fleet.node)
        .bind(self.shipper.shipped as i64)
        .bind(record.lost_count as i64)
        .execute(&fleet.pool)
        .await?;
        Ok(false)
    }
}

async fn stop_requested(fleet: &Fleet, id: &str) -> Result<bool, FleetError> {
    Ok(
        sqlx::query_scalar("SELECT stop_requested FROM fleet_sessions WHERE id = $1")
            .bind(id)
            .fetch_one(&fleet.pool)
            .await?,
    )
}

/// Ends this node's part: its status, and its counts when it ran.
async fn finish(
    fleet: &Fleet,
    id: &str,
    status: PartStatus,
    counts: Option<(u64, u64)>,
    error: Option<String>,
) -> Result<(), FleetError> {
    let (events, lost) = counts.unwrap_or((0, 0));
    sqlx::query(
        "UPDATE fleet_parts SET status = $3, ended_at = $4, event_count = $5, \
         shipped_count = $5, lost_count = $6, error = $7 WHERE session_id = $1 AND node = $2",
    )
    .bind(id)
    .bind(&fleet.node)
    .bind(status.as_str())
    .bind(wall_clock_ns() as i64)
    .bind(events as i64)
    .bind(lost as i64)
    .bind(error)
    .execute(&fleet.pool)
    .await?;
    tracing::info!(
        id,
        status = status.as_str(),
        events,
        lost,
        "fleet part ended"
    );
    Ok(())
}

/// Copies a local session's events into `fleet_events`, in their local order.
struct Shipper {
    /// The local session's events, in its node's own store.
    results: Arc<dyn SessionResults>,
    /// The local id of the last event copied.
    after: Option<i64>,
    shipped: u64,
}

impl Shipper {
    /// Copies the next batch of stored events; returns how many.
    async fn ship(&mut self, fleet: &Fleet, id: &str) -> Result<usize, FleetError> {
        let query = EventsQuery {
            first: SHIP_BATCH,
            after: self.after,
            through: None,
            conditions: Vec::new(),
        };
        let (events, _) = self.results.events(&query).await?;
        let Some(last) = events.last() else {
            return Ok(0);
        };
        let last = last.id;
        // Once the INSERT returns, every event of the batch is in the table, whether
        // this copy or an earlier one whose reply was lost put it there.
        insert(fleet, id, &events).await?;
        self.after = Some(last);
        self.shipped += events.len() as u64;
        Ok(events.len())
    }
}

/// One INSERT of a batch as arrays (one bound value per column, whatever the batch's
/// size). A batch copied again after a lost reply inserts nothing twice.
async fn insert(fleet: &Fleet, id: &str, events: &[StoredEvent]) -> Result<(), FleetError> {
    let column = |f: fn(&StoredEvent) -> i64| events.iter().map(f).collect::<Vec<i64>>();
    let text =
        |f: fn(&StoredEvent) -> &str| events.iter().map(|e| f(e).to_string()).collect::<Vec<_>>();
    let data: Vec<serde_json::Value> = events.iter().map(|e| e.data.clone()).collect();
    sqlx::query(
        "INSERT INTO fleet_events (session_id, node, local_id, seq, ts, tracker, kind, pid, \
         ppid, comm, cgroup_id, data) \
         SELECT $1, $2, * FROM UNNEST($3::BIGINT[], $4::BIGINT[], $5::BIGINT[], $6::TEXT[], \
         $7::TEXT[], $8::BIGINT[], $9::BIGINT[], $10::TEXT[], $11::BIGINT[], $12::JSONB[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(&fleet.node)
    .bind(column(|e| e.id))
    .bind(events.iter().map(|e| e.seq).collect::<Vec<Option<i64>>>())
    .bind(column(|e| e.ts_ns as i64))
    .bind(text(|e| &e.tracker))
    .bind(text(|e| &e.kind))
    .bind(column(|e| e.pid.into()))
    .bind(column(|e| e.ppid.into()))
    .bind(text(|e| &e.comm))
    // A cgroup id is a u64; its bits are kept in a BIGINT and read back as they were.
    .bind(column(|e| e.cgroup_id as i64))
    .bind(data)
    .execute(&fleet.pool)
    .await?;
    Ok(())
}
