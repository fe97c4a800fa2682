//! The GraphQL API: queries over trackers, sessions and their results, mutations that
//! start and stop sessions (audited), subscriptions for live events and session updates.
//!
//! Every error carries `extensions.code`: resolver errors say what was wrong
//! (UNKNOWN_TRACKER, BAD_DURATION, NOT_FOUND, ...), and [`ErrorCodes`] gives parse and
//! validation errors from async-graphql itself a code too.

mod events;
mod fleet;
mod seccomp;
mod security;
mod types;

use std::sync::Arc;
use std::time::Duration;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextRequest,
};
use async_graphql::{Context, ErrorExtensions, Object, Schema, Subscription, ID};
use futures_util::stream::{BoxStream, Stream, StreamExt};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

pub use events::{EventContainer, EventObject};
pub use seccomp::{DeniedCall, SeccompDiff, SeccompProfileInfo, SeccompVerification};
pub use security::{
    AlertConnection, AlertFilterInput, AlertObject, BaselineObject, GuardObject, RuleObject,
};
pub use types::*;

use crate::config::Role;
use crate::container::ResolveError;
use crate::fleet::Fleet;
use crate::handler::Predicate;
use crate::model::TrackerInfo;
use crate::model::{rfc3339_nanos, wall_clock_ns, SessionId, Severity};
use crate::results::query::{predicate, validate_conditions, Condition, EventsQuery};
use crate::results::store::{AuditEntry, SessionRecord, SessionStatus};
use crate::results::{ResultsError, SessionResults};
use crate::security::{BaselineError, LearnTarget};
use crate::session::{tracker_info, LiveSubscription, SessionError, SessionManager};

pub type EunomiaSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// What `startSession(wait: true)` keeps of the request timeout for ending the session
/// (detaching many tracepoints takes over a second) and answering.
const WAIT_MARGIN_SECS: i64 = 3;

/// Who is asking: set per request by the HTTP layer from the bearer token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// Builds the schema with the configured depth and complexity limits.
pub fn schema(manager: Arc<SessionManager>, fleet: Option<Arc<Fleet>>) -> EunomiaSchema {
    let limits = manager.config().limits.clone();
    let mut schema = Schema::build(QueryRoot, MutationRoot, SubscriptionRoot).data(manager);
    if let Some(fleet) = fleet {
        schema = schema.data(fleet);
    }
    schema
        .limit_depth(limits.query_depth)
        .limit_complexity(limits.query_complexity)
        .extension(ErrorCodes)
        .extension(OperationTimeout(Duration::from_secs(
            limits.request_timeout_secs,
        )))
        .finish()
}

/// The SDL of the schema, as checked in at schema/schema.graphql.
pub fn sdl() -> String {
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .finish()
        .sdl()
}

/// A GraphQL error with a code in `extensions`.
pub fn coded(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
}

/// A session error as a GraphQL error with its code.
pub fn api(err: SessionError) -> async_graphql::Error {
    {
        let code = match &err {
            SessionError::UnknownTracker { .. } => "UNKNOWN_TRACKER",
            SessionError::BadDuration { .. } => "BAD_DURATION",
            SessionError::BadConfig(_) => "BAD_CONFIG",
            SessionError::BadFilter(_) => "BAD_FILTER",
            SessionError::BadMetrics(_) => "BAD_METRICS",
            SessionError::Container(e) => container_code(e),
            SessionError::NotFound(_) => "NOT_FOUND",
            SessionError::StillRunning(_) | SessionError::NotSaved(_) => "SESSION_RUNNING",
            SessionError::TooManySessions { .. } => "TOO_MANY_SESSIONS",
            SessionError::TrackerFailed(_) => "TRACKER_FAILED",
            SessionError::Rules(_) => "BAD_RULES",
            SessionError::UnknownRule(_)
            | SessionError::Guard(crate::security::StandingError::UnknownRule(_)) => "UNKNOWN_RULE",
            SessionError::Guard(crate::security::StandingError::Running(_)) => "GUARD_RUNNING",
            SessionError::Guard(_) => "GUARD_FAILED",
            SessionError::Store(crate::results::StoreError::BadCursor(_)) => "BAD_USER_INPUT",
            SessionError::Store(_) | SessionError::Snapshot(_) | SessionError::StoreBehind(..) => {
                "INTERNAL"
            }
        };
        coded(code, err.to_string())
    }
}

fn container_code(err: &ResolveError) -> &'static str {
    match err {
        ResolveError::Unknown(_) => "UNKNOWN_CONTAINER",
        ResolveError::Ambiguous { .. } => "AMBIGUOUS_CONTAINER",
        ResolveError::Exited(_) => "CONTAINER_EXITED",
    }
}

fn container_error(err: ResolveError) -> async_graphql::Error {
    coded(container_code(&err), err.to_string())
}

/// A results error as a GraphQL error: a question that does not fit the session is the
/// asker's to fix (BAD_QUERY); a store that fails is ours.
fn results_error(err: ResultsError) -> async_graphql::Error {
    let code = match &err {
        ResultsError::Query(_) | ResultsError::Memory(_) => "BAD_QUERY",
        ResultsError::Store(
            crate::results::StoreError::QueryBudget(_)
            | crate::results::StoreError::TooManyGroups(_),
        )
        | ResultsError::TooCostly(_) => "QUERY_TOO_COSTLY",
        ResultsError::Store(_) => "INTERNAL",
        ResultsError::Fleet(_) => "FLEET_UNAVAILABLE",
    };
    coded(code, err.to_string())
}

/// The caller, as `me` describes it.
#[derive(async_graphql::SimpleObject)]
pub struct Me {
    pub name: String,
    /// VIEWER: queries and subscriptions; OPERATOR: mutations too.
    pub role: Role,
}

fn manager<'a>(ctx: &Context<'a>) -> &'a Arc<SessionManager> {
    ctx.data_unchecked::<Arc<SessionManager>>()
}

fn caller<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Caller> {
    ctx.data_opt::<Caller>().ok_or_else(|| {
        coded(
            "UNAUTHENTICATED",
            "no credentials: send `Authorization: Bearer <token>`",
        )
    })
}

fn require_operator(ctx: &Context<'_>) -> async_graphql::Result<()> {
    match caller(ctx)?.role {
        Role::Operator => Ok(()),
        Role::Viewer => Err(coded(
            "FORBIDDEN",
            "this token is a viewer's: mutations need an operator token",
        )),
    }
}

pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// The trackers this server can run, with the fields their events carry.
    async fn trackers(&self) -> Vec<TrackerDesc> {
        crate::trackers::TRACKERS
            .iter()
            .map(|&t| TrackerDesc(t))
            .collect()
    }

    /// Sessions, newest first.
    async fn sessions(
        &self,
        ctx: &Context<'_>,
        status: Option<SessionStatus>,
        #[graphql(default_with = "Some(SESSIONS_PAGE)")] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<SessionConnection> {
        let first = page_size(first, SESSIONS_PAGE)?;
        let manager = manager(ctx);
        // The store holds a starting session as RUNNING; which of the two it is shows once
        // the live state is laid over it.
        let stored = status.map(|s| match s {
            SessionStatus::Starting => SessionStatus::Running,
            other => other,
        });
        let (rows, has_next) = manager
            .store()
            .list_sessions(stored, first, after.as_deref())
            .await
            .map_err(|e| api(e.into()))?;
        let mut connection = SessionConnection::new(after.is_some(), has_next);
        connection
            .edges
            .extend(rows.into_iter().filter_map(|(cursor, record)| {
                let record = manager.with_live_counts(record);
                status
                    .is_none_or(|s| record.status == s)
                    .then(|| async_graphql::connection::Edge::new(cursor, SessionObject(record)))
            }));
        Ok(connection)
    }

    /// The detection rules loaded now, each with whether it is on and its hits.
    async fn rules(&self, ctx: &Context<'_>) -> Vec<RuleObject> {
        security::rules(ctx)
    }

    /// The standing guard: whether it runs, its rules and trackers, and its cost.
    async fn guard(&self, ctx: &Context<'_>) -> GuardObject {
        manager(ctx).guard_status().into()
    }

    /// An allow-list seccomp profile (OCI JSON, as `docker run --security-opt seccomp=`
    /// takes it): of every call a syscall session saw (`sessionId`), or one stored by
    /// `name`. With `narrow`, a session's socket, clone and personality are allowed only
    /// with the first arguments they were given (the session's option `first_args`).
    /// Codes: NOT_A_SYSCALL_SESSION, UNKNOWN_PROFILE, BAD_USER_INPUT.
    async fn seccomp_profile(
        &self,
        ctx: &Context<'_>,
        session_id: Option<ID>,
        name: Option<String>,
        #[graphql(default = false)] narrow: bool,
    ) -> async_graphql::Result<async_graphql::Json<serde_json::Value>> {
        seccomp::profile(manager(ctx), session_id, name, narrow).await
    }

    /// The stored seccomp profiles, by name.
    async fn seccomp_profiles(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<SeccompProfileInfo>> {
        seccomp::list(manager(ctx)).await
    }

    /// The calls one stored profile allows and the other does not.
    async fn diff_seccomp_profiles(
        &self,
        ctx: &Context<'_>,
        first: String,
        second: String,
    ) -> async_graphql::Result<SeccompDiff> {
        seccomp::diff(manager(ctx), &first, &second).await
    }

    /// Learned baselines, oldest first.
    async fn baselines(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<BaselineObject>> {
        let all = manager(ctx).baselines().list().await;
        let all = all.map_err(|e| coded("INTERNAL", e.to_string()))?;
        Ok(all.into_iter().map(Into::into).collect())
    }

    /// Stored alerts, newest first.
    async fn alerts(
        &self,
        ctx: &Context<'_>,
        filter: Option<AlertFilterInput>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<AlertConnection> {
        security::alerts(ctx, filter, first, after).await
    }

    /// A session's stacks in the folded format (see `Session.foldedStacks`).
    async fn folded_stacks(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        r#where: Option<Vec<types::ConditionInput>>,
    ) -> async_graphql::Result<String> {
        self.session(ctx, session_id)
            .await?
            .folded_stacks(ctx, r#where)
            .await
    }

    /// Who the server takes the caller for: the token's name and role (without tokens
    /// configured, every loopback caller is an operator). Clients show what it may do.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Me> {
        let caller = caller(ctx)?;
        Ok(Me {
            name: caller.name.clone(),
            role: caller.role,
        })
    }

    /// The fleet's sessions (see `startSession`'s `nodes`), newest first; code NO_FLEET
    /// on a server in no fleet.
    async fn fleet_sessions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 1000))] first: i32,
    ) -> async_graphql::Result<Vec<SessionObject>> {
        let fleet = fleet::fleet(ctx)?;
        let records = fleet
            .list(first as usize)
            .await
            .map_err(fleet::fleet_error)?;
        Ok(records.into_iter().map(SessionObject).collect())
    }

    /// One session; an unknown id is a NOT_FOUND error.
    async fn session(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<SessionObject> {
        let record = fleet::find(ctx, &SessionId::from(id.0)).await?;
        Ok(SessionObject(record))
    }

    async fn health(&self, ctx: &Context<'_>) -> Health {
        let manager = manager(ctx);
        Health {
            version: env!("CARGO_PKG_VERSION").to_string(),
            kernel: kernel_release(),
            btf: std::path::Path::new("/sys/kernel/btf/vmlinux").exists(),
            uptime_secs: manager.uptime().as_secs(),
            active_sessions: manager.active_sessions(),
            node: ctx.data_opt::<Arc<Fleet>>().map(|f| f.node().to_string()),
            guard: manager.guard_status().into(),
            store: {
                let health = manager.store().health();
                StoreHealth {
                    ok: !health.failing,
                    last_error_at: health.last_error.as_ref().map(|(at, _)| rfc3339_nanos(*at)),
                    last_error: health.last_error.map(|(_, error)| error),
                    failed_batches: health.failed_batches,
                }
            },
            lost: manager
                .metrics()
                .losses()
                .into_iter()
                .map(|(tracker, stage, events)| StageLoss {
                    tracker,
                    stage,
                    events,
                })
                .collect(),
        }
    }

    /// Running and paused containers, by id; with `exited`, also the recently exited ones
    /// (newest first).
    async fn containers(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(false)")] exited: Option<bool>,
    ) -> Vec<ContainerObject> {
        manager(ctx)
            .containers()
            .list(exited.unwrap_or(false))
            .into_iter()
            .map(ContainerObject)
            .collect()
    }

    /// One container by id, name or unique id prefix (at least 3 characters); running
    /// ones first, then recently exited. Unknown: UNKNOWN_CONTAINER; several match:
    /// AMBIGUOUS_CONTAINER.
    async fn container(
        &self,
        ctx: &Context<'_>,
        id_or_name: String,
    ) -> async_graphql::Result<ContainerObject> {
        manager(ctx)
            .containers()
            .resolve(&id_or_name)
            .map(ContainerObject)
            .map_err(container_error)
    }

    /// The container a process runs in; null for a host process (or no such process).
    async fn container_of_pid(&self, ctx: &Context<'_>, pid: u32) -> Option<ContainerObject> {
        manager(ctx).containers().of_pid(pid).map(ContainerObject)
    }

    /// Every mutation, newest first (operators only).
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(AUDIT_PAGE)")] first: Option<i32>,
        after: Option<i64>,
    ) -> async_graphql::Result<Vec<AuditRow>> {
        require_operator(ctx)?;
        let (rows, _) = manager(ctx)
            .store()
            .audit_log(page_size(first, AUDIT_PAGE)?, after)
            .await
            .map_err(|e| api(e.into()))?;
        Ok(rows.into_iter().map(AuditRow).collect())
    }
}

/// The largest page a connection returns.
const MAX_PAGE: usize = 1000;
/// Default page sizes. Arguments with a default are nullable, so that an omitted or null
/// variable takes the default (as the spec's CoerceArgumentValues does for an omitted one)
/// instead of failing on a non-null argument.
const SESSIONS_PAGE: i32 = 20;
const AUDIT_PAGE: i32 = 50;
const EVENTS_PAGE: i32 = 100;

fn page_size(first: Option<i32>, default: i32) -> async_graphql::Result<usize> {
    let first = first.unwrap_or(default);
    if first < 0 || first as usize > MAX_PAGE {
        return Err(coded(
            "BAD_USER_INPUT",
            format!("first must be between 0 and {MAX_PAGE}, got {first}"),
        ));
    }
    Ok(first as usize)
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub struct MutationRoot;

/// Runs a mutation and records it in the audit table, whatever the outcome; `session`
/// names the session it created or acted on, from its result when it has one. It runs on
/// its own task: a client that goes away mid-mutation neither cuts it short nor loses its
/// record. Auditing fails closed: a mutation whose record cannot be written is refused.
async fn audited<T: Send + 'static>(
    ctx: &Context<'_>,
    action: &str,
    args: serde_json::Value,
    session: impl FnOnce(Option<&T>) -> Option<SessionId> + Send + 'static,
    run: impl std::future::Future<Output = async_graphql::Result<T>> + Send + 'static,
) -> async_graphql::Result<T> {
    let caller = caller(ctx)?.clone();
    let allowed = require_operator(ctx);
    let manager = manager(ctx).clone();
    let mut entry = AuditEntry {
        id: 0,
        at_ns: wall_clock_ns(),
        actor: caller.name,
        role: format!("{:?}", caller.role).to_lowercase(),
        action: action.to_string(),
        args,
        outcome: "pending".to_string(),
        error: None,
        session_id: None,
    };
    tokio::spawn(async move {
        entry.id = manager.store().audit(&entry).await.map_err(|err| {
            coded(
                "AUDIT_FAILED",
                format!("the audit record cannot be written, so nothing was done: {err}"),
            )
        })?;
        let result = match allowed {
            Ok(()) => run.await,
            Err(err) => Err(err),
        };
        entry.outcome = if result.is_ok() { "ok" } else { "error" }.to_string();
        entry.error = result.as_ref().err().map(|e| e.message.clone());
        entry.session_id = session(result.as_ref().ok());
        if let Err(err) = manager.store().audit_outcome(&entry).await {
            tracing::error!(
                audit = entry.id,
                "recording the mutation's outcome failed: {err}"
            );
        }
        result
    })
    .await
    .map_err(|err| coded("INTERNAL", format!("the mutation failed: {err}")))?
}

/// Runs a mutation on the session `id` names, audited with that id as its arguments.
async fn audited_on_session<T: Send + 'static>(
    ctx: &Context<'_>,
    action: &str,
    id: &SessionId,
    run: impl std::future::Future<Output = async_graphql::Result<T>> + Send + 'static,
) -> async_graphql::Result<T> {
    let args = serde_json::json!({ "id": id.as_str() });
    let id = id.clone();
    audited(ctx, action, args, move |_| Some(id), run).await
}

#[Object]
impl MutationRoot {
    /// Injects a tracker for `durationSecs`; returns at once with status RUNNING.
    async fn start_session(
        &self,
        ctx: &Context<'_>,
        input: StartSessionInput,
        #[graphql(
            default = false,
            desc = "Return when the window ends, with the final counts and results: one \
                    request for one question. The window must end within the request timeout."
        )]
        wait: bool,
    ) -> async_graphql::Result<SessionObject> {
        let manager = manager(ctx).clone();
        let timeout = manager.config().limits.request_timeout_secs;
        if wait
            && input.duration_secs.saturating_add(WAIT_MARGIN_SECS)
                > i64::try_from(timeout).unwrap_or(i64::MAX)
        {
            return Err(coded(
                "BAD_DURATION",
                format!(
                    "with wait: true the window must end within the request timeout: \
                     durationSecs at most {}, got {}; for longer windows, poll session(id) \
                     or subscribe to sessionUpdated",
                    timeout.saturating_sub(WAIT_MARGIN_SECS as u64),
                    input.duration_secs
                ),
            ));
        }
        let args = input.audit_args();
        let created = |s: Option<&SessionObject>| s.map(|s| s.0.id.clone());
        let fleet = match &input.nodes {
            Some(_) => Some(fleet::fleet(ctx)?.clone()),
            None => None,
        };
        audited(ctx, "startSession", args, created, async move {
            let nodes = input.nodes.clone();
            let request = input.into_request()?;
            if let (Some(fleet), Some(nodes)) = (fleet, nodes) {
                return Ok(SessionObject(
                    fleet::start(&fleet, request, &nodes, wait).await?,
                ));
            }
            let started = manager.start(request).await.map_err(api)?;
            if !wait {
                return Ok(SessionObject(started));
            }
            Ok(SessionObject(
                manager.wait_ended(&started.id).await.map_err(api)?,
            ))
        })
        .await
    }

    /// Ends a running session now (status STOPPED); a session that already ended is returned as it is.
    async fn stop_session(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<SessionObject> {
        let id = SessionId::from(id.0);
        if Fleet::is_fleet_id(id.as_str()) {
            let (fleet, target) = (fleet::fleet(ctx)?.clone(), id.clone());
            let stop = async move {
                let record = fleet.stop(target.as_str()).await;
                Ok(SessionObject(record.map_err(fleet::fleet_error)?))
            };
            return audited_on_session(ctx, "stopSession", &id, stop).await;
        }
        let (manager, target) = (manager(ctx).clone(), id.clone());
        let stop = async move { Ok(SessionObject(manager.stop(&target).await.map_err(api)?)) };
        audited_on_session(ctx, "stopSession", &id, stop).await
    }

    /// Turns a detection rule on or off, in running sessions too.
    async fn set_rule_enabled(
        &self,
        ctx: &Context<'_>,
        id: String,
        enabled: bool,
    ) -> async_graphql::Result<RuleObject> {
        let args = serde_json::json!({ "id": id, "enabled": enabled });
        let manager = manager(ctx).clone();
        let set = async move {
            let rule = manager.set_rule_enabled(&id, enabled).map_err(api)?;
            Ok(RuleObject(rule))
        };
        audited(ctx, "setRuleEnabled", args, |_| None, set).await
    }

    /// Loads the rules again (the configured rules file, or the built-in rules), as SIGHUP
    /// does: sessions that start from now on use them. A file that fails to load is a
    /// BAD_RULES error naming the entry, and the rules loaded before stay. Returns how
    /// many rules were loaded.
    async fn reload_rules(&self, ctx: &Context<'_>) -> async_graphql::Result<usize> {
        let manager = manager(ctx).clone();
        let reload = async move { manager.reload_rules().map_err(api) };
        audited(ctx, "reloadRules", serde_json::json!({}), |_| None, reload).await
    }

    /// Starts the standing guard on the rules named (`*`, the default: every rule loaded):
    /// it runs the trackers they read, with no time window, until stopGuard, and a
    /// restarted server starts it again. GUARD_RUNNING when it runs already.
    async fn start_guard(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(vec![\"*\".to_string()])")] rules: Option<Vec<String>>,
    ) -> async_graphql::Result<GuardObject> {
        let rules = rules.unwrap_or_default();
        let args = serde_json::json!({ "rules": rules });
        let manager = manager(ctx).clone();
        let start = async move {
            manager
                .start_guard(rules)
                .await
                .map(Into::into)
                .map_err(api)
        };
        audited(ctx, "startGuard", args, |_| None, start).await
    }

    /// Stops the standing guard (nothing happens when it does not run).
    async fn stop_guard(&self, ctx: &Context<'_>) -> async_graphql::Result<GuardObject> {
        let manager = manager(ctx).clone();
        let stop = async move { manager.stop_guard().await.map(Into::into).map_err(api) };
        audited(ctx, "stopGuard", serde_json::json!({}), |_| None, stop).await
    }

    /// Learns a baseline of one running container (`container`: name or id) or of every
    /// running container of an image (`image`) for `durationSecs` (1 to 86400), in the
    /// background: `baselines` shows it LEARNING, then READY. While the standing guard
    /// runs, each thing a covered container does outside a ready baseline raises one
    /// `anomaly` alert. Codes: UNKNOWN_CONTAINER, BAD_DURATION, BAD_USER_INPUT (neither or
    /// both named), TOO_MANY_BASELINES (4 learn at once at most).
    async fn learn_baseline(
        &self,
        ctx: &Context<'_>,
        container: Option<String>,
        image: Option<String>,
        duration_secs: u64,
    ) -> async_graphql::Result<BaselineObject> {
        let args = serde_json::json!({
            "container": container, "image": image, "durationSecs": duration_secs,
        });
        let baselines = manager(ctx).baselines().clone();
        let learn = async move {
            let target = match (container, image) {
                (Some(c), None) => LearnTarget::Container(c),
                (None, Some(i)) => LearnTarget::Image(i),
                _ => return Err(security::baseline_error(BaselineError::BadScope)),
            };
            let learning = baselines.learn(target, duration_secs).await;
            learning.map(Into::into).map_err(security::baseline_error)
        };
        audited(ctx, "learnBaseline", args, |_| None, learn).await
    }

    /// Deletes a learned baseline (the guard stops enforcing it at once); false when
    /// there was none with this id.
    async fn delete_baseline(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let args = serde_json::json!({ "id": id.0 });
        let baselines = manager(ctx).baselines().clone();
        let delete = async move {
            let id: i64 = id.parse().map_err(|_| {
                coded(
                    "BAD_USER_INPUT",
                    format!("no baseline has the id `{}`", id.0),
                )
            })?;
            let deleted = baselines.delete(id).await;
            deleted.map_err(|e| coded("INTERNAL", e.to_string()))
        };
        audited(ctx, "deleteBaseline", args, |_| None, delete).await
    }

    /// Stores a seccomp profile under `name` (replacing one of that name): advised from
    /// syscall sessions (merged when several: what any of them called; `narrow` as for
    /// `seccompProfile`), merged from stored profiles (`merge`: what any of them allows),
    /// or given whole. Codes: BAD_USER_INPUT, BAD_PROFILE, NOT_A_SYSCALL_SESSION,
    /// UNKNOWN_PROFILE.
    async fn save_seccomp_profile(
        &self,
        ctx: &Context<'_>,
        name: String,
        session_ids: Option<Vec<ID>>,
        merge: Option<Vec<String>>,
        profile: Option<async_graphql::Json<serde_json::Value>>,
        #[graphql(default = false)] narrow: bool,
    ) -> async_graphql::Result<SeccompProfileInfo> {
        let args = serde_json::json!({
            "name": name, "sessionIds": session_ids, "merge": merge,
            "profile": profile.as_ref().map(|p| &p.0), "narrow": narrow,
        });
        let manager = manager(ctx).clone();
        let source = seccomp::SaveSource {
            session_ids,
            merge,
            given: profile,
        };
        let save = async move { seccomp::save(&manager, name, source, narrow).await };
        audited(ctx, "saveSeccompProfile", args, |_| None, save).await
    }

    /// Runs a fresh container of `image` (with `command`, or the image's own) under a
    /// seccomp profile, stored (`name`) or given (`profile`), for at most `durationSecs`
    /// (then it is killed), recorded from its first instruction: how it ended and each
    /// call the profile refused. Codes: BAD_PROFILE, UNKNOWN_PROFILE, BAD_DURATION,
    /// BAD_USER_INPUT, SECCOMP (Docker or the recording failed).
    async fn verify_seccomp_profile(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
        profile: Option<async_graphql::Json<serde_json::Value>>,
        image: String,
        #[graphql(default)] command: Vec<String>,
        #[graphql(default = 60)] duration_secs: u64,
    ) -> async_graphql::Result<SeccompVerification> {
        let args = serde_json::json!({
            "name": name, "profile": profile.as_ref().map(|p| &p.0), "image": image,
            "command": command, "durationSecs": duration_secs,
        });
        let manager = manager(ctx).clone();
        let verify = async move {
            seccomp::verify(&manager, name, profile, image, command, duration_secs).await
        };
        audited(ctx, "verifySeccompProfile", args, |_| None, verify).await
    }

    /// Deletes a stored seccomp profile; false when there was none of this name.
    async fn delete_seccomp_profile(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<bool> {
        let args = serde_json::json!({ "name": name });
        let manager = manager(ctx).clone();
        let delete = async move { seccomp::delete(&manager, &name).await };
        audited(ctx, "deleteSeccompProfile", args, |_| None, delete).await
    }

    /// Deletes an ended session and its results; false when there was no such session.
    async fn delete_session(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let id = SessionId::from(id.0);
        if Fleet::is_fleet_id(id.as_str()) {
            let (fleet, target) = (fleet::fleet(ctx)?.clone(), id.clone());
            let delete = async move {
                fleet
                    .delete(target.as_str())
                    .await
                    .map_err(fleet::fleet_error)
            };
            return audited_on_session(ctx, "deleteSession", &id, delete).await;
        }
        let (manager, target) = (manager(ctx).clone(), id.clone());
        let delete = async move { manager.delete(&target).await.map_err(api) };
        audited_on_session(ctx, "deleteSession", &id, delete).await
    }
}

pub struct SubscriptionRoot;

/// The session a subscription watches, and the manager to watch it through: the caller
/// must have authenticated (a websocket does so once, in `connection_init`), and the
/// session must exist.
async fn subscribed_session(
    ctx: &Context<'_>,
    id: ID,
) -> async_graphql::Result<(Arc<SessionManager>, SessionRecord)> {
    caller(ctx)?;
    let manager = manager(ctx).clone();
    let record = manager.find(&SessionId::from(id.0)).await.map_err(api)?;
    Ok((manager, record))
}

#[Subscription]
impl SubscriptionRoot {
    /// Live events of a running session that meet every `where` condition (checked on the
    /// server, before the live sample: a rare match is not sampled away); ends when the
    /// session ends. With `fromStart`, the events the session has stored come first (for
    /// a MEMORY session, its recent-events ring), then the live ones, with no gap and none
    /// twice; an ended session's stored events are replayed and the stream ends.
    async fn session_events(
        &self,
        ctx: &Context<'_>,
        id: ID,
        r#where: Option<Vec<ConditionInput>>,
        #[graphql(default = false)] from_start: bool,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<EventObject>>> {
        let (manager, record) = subscribed_session(ctx, id).await?;
        events_of(manager, record, types::conditions(r#where), from_start).await
    }

    /// The events `sessionEvents` gives, gathered into batches: one message at most every
    /// `intervalMs` (10 to 5,000) unless `maxEvents` (1 to 10,000) fill it first, so that
    /// a browser watching thousands of events a second handles a few messages a second.
    /// Codes: BAD_USER_INPUT, and those of `sessionEvents`.
    async fn session_event_batches(
        &self,
        ctx: &Context<'_>,
        id: ID,
        r#where: Option<Vec<ConditionInput>>,
        #[graphql(default = false)] from_start: bool,
        #[graphql(default = 100)] interval_ms: u32,
        #[graphql(default = 1000)] max_events: u32,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<EventBatch>>> {
        if !(10..=5000).contains(&interval_ms) || !(1..=10_000).contains(&max_events) {
            return Err(coded(
                "BAD_USER_INPUT",
                format!(
                    "intervalMs must be 10 to 5000 and maxEvents 1 to 10000, got {interval_ms} and {max_events}"
                ),
            ));
        }
        let (manager, record) = subscribed_session(ctx, id).await?;
        let events = events_of(manager, record, types::conditions(r#where), from_start).await?;
        let interval = Duration::from_millis(u64::from(interval_ms));
        Ok(
            tokio_stream::StreamExt::chunks_timeout(events, max_events as usize, interval).map(
                |chunk| {
                    let events = chunk
                        .into_iter()
                        .collect::<async_graphql::Result<Vec<_>>>()?;
                    Ok(EventBatch { events })
                },
            ),
        )
    }

    /// One request for one question: starts a session (as `startSession` does), streams
    /// its events that meet `where` from the first one, and ends with the session's final
    /// record, whose results can be asked in the same selection
    /// (`session { aggregate(groupBy: ["comm"]) { keys count } }`). Dropping the
    /// subscription stops the session.
    async fn trace(
        &self,
        ctx: &Context<'_>,
        input: StartSessionInput,
        r#where: Option<Vec<ConditionInput>>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<TraceUpdate>>> {
        let manager = manager(ctx).clone();
        let conditions = types::conditions(r#where);
        // Checked before the session starts: a bad condition starts nothing.
        let info = tracker_info(&input.tracker).map_err(api)?;
        live_filter(info, &conditions)?;
        let args = input.audit_args();
        let created = |s: Option<&(SessionRecord, StopOnDrop)>| s.map(|(s, _)| s.id.clone());
        let starting = manager.clone();
        // The guard is made on the mutation's own task: should this subscriber go away
        // while the session starts, the task drops it on finishing, and the session stops.
        let (started, stop) = audited(ctx, "startSession", args, created, async move {
            let request = input.into_request()?;
            let started = starting.start(request).await.map_err(api)?;
            let stop = StopOnDrop {
                manager: starting,
                id: Some(started.id.clone()),
            };
            Ok((started, stop))
        })
        .await?;
        let events = events_of(manager.clone(), started.clone(), conditions, true).await?;
        let end = futures_util::stream::once(async move {
            let mut stop = stop;
            let ended = manager.wait_ended(&started.id).await.map_err(api);
            // Ended on its own: nothing to stop.
            stop.id = None;
            ended.map(|record| TraceUpdate {
                event: None,
                session: Some(SessionObject(record)),
            })
        });
        let events = events.map(|event| {
            event.map(|event| TraceUpdate {
                event: Some(event),
                session: None,
            })
        });
        Ok(events.chain(end))
    }

    /// Alerts as they are raised (repeats within the dedup window are counted up in the
    /// stored alert, not sent again), at least `minSeverity`.
    async fn alert_raised(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(Severity::Info)")] min_severity: Option<Severity>,
    ) -> impl Stream<Item = AlertObject> {
        let least = min_severity.unwrap_or(Severity::Info);
        BroadcastStream::new(manager(ctx).alerts().subscribe()).filter_map(move |item| {
            let alert = item.ok().filter(|a| a.severity >= least).map(AlertObject);
            async move { alert }
        })
    }

    /// The session's status and counts: now, about every second while it runs, and when it
    /// ends. Without `id`, every session's updates (a list kept current), until dropped.
    async fn session_updated(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
    ) -> async_graphql::Result<BoxStream<'static, SessionObject>> {
        // Subscribed before the session is read, so that no update falls in between.
        let receiver = manager(ctx).subscribe_updates();
        let Some(id) = id else {
            caller(ctx)?;
            let all = BroadcastStream::new(receiver)
                .filter_map(|item| futures_util::future::ready(item.ok().map(SessionObject)));
            return Ok(all.boxed());
        };
        let (_, current) = subscribed_session(ctx, id).await?;
        let ended = current.status.has_ended();
        let id = current.id.clone();
        let updates = BroadcastStream::new(receiver).filter_map(move |item| {
            let record = item.ok().filter(|r| r.id == id);
            async move { record }
        });
        let first = futures_util::stream::once(async move { current });
        let stream = if ended {
            first.boxed()
        } else {
            first.chain(updates).boxed()
        };
        // End right after the update that ends the session.
        Ok(stream
            .flat_map(|record| {
                let last = record.status.has_ended();
                futures_util::stream::iter(
                    std::iter::once(Some(record)).chain(last.then_some(None)),
                )
            })
            .take_while(|item| futures_util::future::ready(item.is_some()))
            .filter_map(|item| futures_util::future::ready(item.map(SessionObject)))
            .boxed())
    }
}

/// The predicates a live subscriber's `conditions` make for `info`'s events.
fn live_filter(
    info: &'static TrackerInfo,
    conditions: &[Condition],
) -> async_graphql::Result<Vec<Predicate>> {
    validate_conditions(info, conditions)
        .and_then(|()| conditions.iter().map(|c| predicate(info, c)).collect())
        .map_err(|e| results_error(ResultsError::Query(e)))
}

/// The events of the session `record` that meet `conditions`: live while it runs; with
/// `from_start`, its stored ones first (all of them when it has ended).
async fn events_of(
    manager: Arc<SessionManager>,
    record: SessionRecord,
    conditions: Vec<Condition>,
    from_start: bool,
) -> async_graphql::Result<BoxStream<'static, async_graphql::Result<EventObject>>> {
    let info = tracker_info(&record.tracker).map_err(api)?;
    let filter = live_filter(info, &conditions)?;
    let results = if from_start {
        Some(manager.results(&record).map_err(api)?)
    } else {
        None
    };
    let Some(subscription) = manager.subscribe_events(&record.id, filter) else {
        let Some(results) = results else {
            return Err(coded(
                "SESSION_ENDED",
                format!("session `{}` is not running", record.id),
            ));
        };
        // Ending: its last events are stored once its final record is.
        manager.wait_ended(&record.id).await.map_err(api)?;
        return Ok(replay(results, conditions, None).boxed());
    };
    let through = subscription.replay_through;
    let live = live_events(manager.clone(), record.tracker.clone(), subscription)
        .filter(move |event| futures_util::future::ready(event.0.id > through))
        .map(Ok);
    match results {
        None => Ok(live.boxed()),
        Some(results) => {
            manager
                .stored_through(&record.id, through)
                .await
                .map_err(api)?;
            Ok(replay(results, conditions, Some(through))
                .chain(live)
                .boxed())
        }
    }
}

/// Events a replay reads from the store at a time.
const REPLAY_PAGE: usize = 1000;

/// A session's stored events that meet `conditions`, numbered up to `through`, in order,
/// read a page at a time as the subscriber takes them.
fn replay(
    results: Arc<dyn SessionResults>,
    conditions: Vec<Condition>,
    through: Option<i64>,
) -> impl Stream<Item = async_graphql::Result<EventObject>> {
    // The state is the next page's cursor; None once the last page was read.
    futures_util::stream::unfold(Some(None), move |after| {
        let (results, conditions) = (results.clone(), conditions.clone());
        async move {
            let query = EventsQuery {
                first: REPLAY_PAGE,
                after: after?,
                through,
                conditions,
            };
            Some(match results.events(&query).await {
                Ok((events, more)) => {
                    let next = events.last().filter(|_| more).map(|e| Some(e.id));
                    (Ok(events), next)
                }
                Err(err) => (Err(results_error(err)), None),
            })
        }
    })
    .flat_map(|page| {
        let items: Vec<_> = match page {
            Ok(events) => events.into_iter().map(|e| Ok(EventObject(e))).collect(),
            Err(err) => vec![Err(err)],
        };
        futures_util::stream::iter(items)
    })
}

/// A subscription's live events that meet its filter; a subscriber that falls behind
/// has what it missed counted.
fn live_events(
    manager: Arc<SessionManager>,
    tracker: String,
    subscription: LiveSubscription,
) -> impl Stream<Item = EventObject> {
    let LiveSubscription {
        receiver,
        filter,
        registration,
        ..
    } = subscription;
    BroadcastStream::new(receiver).filter_map(move |item| {
        // Held by the stream: the filter is withdrawn when the subscription ends.
        let _registered = &registration;
        let event = match item {
            Ok(live) => filter
                .iter()
                .all(|p| p.matches(&live.event))
                .then(|| EventObject(live.stored())),
            Err(BroadcastStreamRecvError::Lagged(lost)) => {
                manager.count_subscriber_loss(&tracker, lost);
                None
            }
        };
        async move { event }
    })
}

/// Events of a live session that arrived together (`sessionEventBatches`).
#[derive(async_graphql::SimpleObject)]
pub struct EventBatch {
    pub events: Vec<EventObject>,
}

/// What `trace` streams: one of the session's events, or, last, its final record.
#[derive(async_graphql::SimpleObject)]
pub struct TraceUpdate {
    pub event: Option<EventObject>,
    pub session: Option<SessionObject>,
}

/// Stops a traced session whose subscriber went away before it ended.
struct StopOnDrop {
    manager: Arc<SessionManager>,
    id: Option<SessionId>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let manager = self.manager.clone();
            tokio::spawn(async move {
                if let Err(err) = manager.stop(&id).await {
                    tracing::warn!(session = %id, "stopping an abandoned trace failed: {err}");
                }
            });
        }
    }
}

/// Gives every error without a code one: parse and validation errors from async-graphql.
pub struct ErrorCodes;

/// Bounds how long a query or mutation may take, over HTTP and websockets alike (the HTTP
/// layer's timeout does not reach operations sent over a websocket). Subscriptions last
/// as long as their session and are not bounded; a mutation cut off here still runs to its
/// end on its own task.
struct OperationTimeout(Duration);

impl ExtensionFactory for OperationTimeout {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OperationTimeoutExtension(self.0))
    }
}

struct OperationTimeoutExtension(Duration);

#[async_trait::async_trait]
impl Extension for OperationTimeoutExtension {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> async_graphql::Response {
        match tokio::time::timeout(self.0, next.run(ctx, operation_name)).await {
            Ok(response) => response,
            Err(_) => async_graphql::Response::from_errors(vec![coded(
                "TIMEOUT",
                format!(
                    "the operation took longer than {} s and was cancelled",
                    self.0.as_secs()
                ),
            )
            .into_server_error(Default::default())]),
        }
    }
}

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodesExtension)
    }
}

struct ErrorCodesExtension;

#[async_trait::async_trait]
impl Extension for ErrorCodesExtension {
    async fn request(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextRequest<'_>,
    ) -> async_graphql::Response {
        let mut response = next.run(ctx).await;
        for error in &mut response.errors {
            let has_code = error
                .extensions
                .as_ref()
                .is_some_and(|e| e.get("code").is_some());
            if !has_code {
                let code = if error.message.contains("Parse error")
                    || error.message.starts_with(" --> ")
                {
                    "GRAPHQL_PARSE_FAILED"
                } else {
                    "GRAPHQL_VALIDATION_FAILED"
                };
                error
                    .extensions
                    .get_or_insert_with(Default::default)
                    .set("code", code);
            }
        }
        response
    }
}
