//! The fleet in the API: sessions whose id names a fleet session are read from, started
//! in and stopped through the fleet database (see `crate::fleet`).

use std::sync::Arc;
use std::time::Duration;

use async_graphql::Context;

use super::{api, coded, manager};
use crate::fleet::{Fleet, FleetError};
use crate::model::SessionId;
use crate::results::store::SessionRecord;
use crate::session::StartRequest;

/// How often `startSession(wait: true)` looks at a fleet session's parts.
const WAIT_POLL: Duration = Duration::from_millis(250);

pub(super) fn fleet<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Arc<Fleet>> {
    ctx.data_opt::<Arc<Fleet>>().ok_or_else(|| {
        coded(
            "NO_FLEET",
            "this server is in no fleet: start it with [fleet] database (or --fleet) to run \
             sessions on several nodes",
        )
    })
}

pub(super) fn fleet_error(err: FleetError) -> async_graphql::Error {
    let message = err.to_string();
    let code = match err {
        FleetError::Session(err) => return api(err),
        FleetError::NotFound(_) => "NOT_FOUND",
        FleetError::NoNodes(_) => "NO_NODES",
        FleetError::BadNodeName(_) | FleetError::TooManyNodes(_) => "BAD_USER_INPUT",
        FleetError::Db(_)
        | FleetError::Migrate(_)
        | FleetError::Corrupt(_)
        | FleetError::Scope { .. } => "FLEET_UNAVAILABLE",
        FleetError::LocalEvents(_) => "INTERNAL",
    };
    coded(code, message)
}

/// A session by id, this server's own or the fleet's.
pub(super) async fn find(
    ctx: &Context<'_>,
    id: &SessionId,
) -> async_graphql::Result<SessionRecord> {
    if Fleet::is_fleet_id(id.as_str()) {
        return fleet(ctx)?.record(id.as_str()).await.map_err(fleet_error);
    }
    manager(ctx).find(id).await.map_err(api)
}

/// Starts a fleet session; with `wait`, returns once every part has ended.
pub(super) async fn start(
    fleet: &Fleet,
    request: StartRequest,
    nodes: &[String],
    wait: bool,
) -> async_graphql::Result<SessionRecord> {
    let started = fleet.start(request, nodes).await.map_err(fleet_error)?;
    let mut current = started;
    while wait && !current.status.has_ended() {
        tokio::time::sleep(WAIT_POLL).await;
        current = fleet
            .record(current.id.as_str())
            .await
            .map_err(fleet_error)?;
    }
    Ok(current)
}
