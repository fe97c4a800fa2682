//! GraphQL object and input types.

use std::sync::Arc;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{
    Context, InputObject, InputValueError, InputValueResult, Json, Object, Scalar, ScalarType,
    SimpleObject, ID,
};

use super::events::EventObject;
use super::{api, coded, manager, page_size, results_error, EVENTS_PAGE};
use crate::container::{Container, ContainerState, Runtime};
use crate::exporter::MetricSpec;
use crate::fleet::{Fleet, Part};
use crate::handler::Op;
use crate::model::SessionId;
use crate::model::{rfc3339_nanos, wall_clock_ns};
use crate::results::query::{
    check_histogram, check_per_call, fill_buckets, AggOp, AggResult, AggregateQuery, Condition,
    EventsQuery, HistogramQuery, HistogramResult, TimeBucketResult, TimeseriesQuery,
};
use crate::results::store::{AuditEntry, SessionRecord, SessionStatus, StoreKind};
use crate::results::{ResultsError, SessionResults};
use crate::session::{reports_totals, totals_per_log2_bucket, tracker_info, StartRequest};
use crate::trackers::AnyTracker;

/// The most rows `timeseries(fill: true)` returns.
const MAX_FILLED_ROWS: usize = 100_000;

pub type SessionConnection = Connection<String, SessionObject, EmptyFields, EmptyFields>;
pub type EventConnection = Connection<String, EventObject, EmptyFields, EmptyFields>;

/// A tracker of the catalog.
pub struct TrackerDesc(pub &'static dyn AnyTracker);

#[Object(name = "Tracker")]
impl TrackerDesc {
    async fn name(&self) -> &str {
        self.0.info().name
    }

    async fn description(&self) -> &str {
        self.0.info().description
    }

    /// The field saying how many calls a record stands for, where the kernel counts calls
    /// (COUNT sums it); null where every record is one event.
    async fn weight(&self) -> Option<&str> {
        self.0.info().weight
    }

    /// For trackers that record stacks (a `stack` field): the measure `foldedStacks` and
    /// flame graphs weigh each stack by; null for the others.
    async fn stack_measure(&self) -> Option<&str> {
        self.0.info().stacks
    }

    /// What each event carries, common fields first; all can be filtered and grouped by.
    async fn fields(&self) -> Vec<FieldDesc> {
        self.0
            .info()
            .all_fields()
            .map(|f| FieldDesc {
                name: f.name.to_string(),
                r#type: format!("{:?}", f.ty).to_lowercase(),
                description: f.description.to_string(),
                measure: f.measure,
                total: f.total,
                format: f.format,
            })
            .collect()
    }

    /// The tracker's own options, set as keys of `startSession`'s `config`.
    async fn options(&self) -> Vec<OptionDesc> {
        self.0
            .options()
            .into_iter()
            .map(|o| OptionDesc {
                name: o.name,
                r#type: o.type_name,
                values: o.values,
                default: Json(o.default),
                description: o.description,
            })
            .collect()
    }
}

/// One option of a tracker.
#[derive(SimpleObject)]
#[graphql(name = "TrackerOption")]
pub struct OptionDesc {
    pub name: String,
    /// boolean, integer, string, enum, or [T] for a list of T.
    pub r#type: String,
    /// The values an enum (or a list of them) takes; empty otherwise.
    pub values: Vec<String>,
    /// The value without the option; null when the tracker decides, as the description says.
    pub default: Json<serde_json::Value>,
    pub description: String,
}

#[derive(SimpleObject)]
#[graphql(name = "Field")]
pub struct FieldDesc {
    pub name: String,
    /// One of str, u64, i64, time.
    pub r#type: String,
    pub description: String,
    /// A quantity (count, size, duration): MEMORY sessions sum it and cannot group by it.
    pub measure: bool,
    /// A quantity that a record standing for many calls holds the sum of: AVG, MIN, MAX
    /// and percentiles of it are refused in sessions of such records.
    pub total: bool,
    /// How people read it: DURATION values are nanoseconds, ERRNO a return value,
    /// OPEN_FLAGS open(2) flags, OCTAL and HEX numbers written so, PATH a path.
    pub format: crate::model::FieldFormat,
}

#[derive(SimpleObject)]
pub struct Health {
    pub version: String,
    pub kernel: String,
    pub btf: bool,
    pub uptime_secs: u64,
    pub active_sessions: usize,
    /// This server's name in its fleet; null when it is in none.
    pub node: Option<String>,
    /// The standing guard and its cost.
    pub guard: super::security::GuardObject,
    pub store: StoreHealth,
    /// Events lost since the server started, per tracker and stage (what
    /// `eunomia_events_lost_total` counts); only those that lost any.
    pub lost: Vec<StageLoss>,
}

/// Events one tracker lost at one stage: kernel (a full ring buffer, or program runs the
/// kernel skipped), channel, malformed, sqlite, memory, subscription or alerts.
#[derive(SimpleObject)]
pub struct StageLoss {
    pub tracker: String,
    pub stage: String,
    pub events: u64,
}

/// How the SQLite store fares.
#[derive(SimpleObject)]
pub struct StoreHealth {
    /// False while event batches fail to commit (a full disk, say); true again once one
    /// commits.
    pub ok: bool,
    /// The last failure's error, kept after the store recovers.
    pub last_error: Option<String>,
    /// When the last failure happened, RFC 3339.
    pub last_error_at: Option<String>,
    /// Event batches that failed since the server started (their events are counted lost).
    pub failed_batches: u64,
}

/// `field op value`; the value is read as a number for numeric fields.
#[derive(Clone, Debug, InputObject)]
#[graphql(name = "Condition")]
pub struct ConditionInput {
    pub field: String,
    #[graphql(default_with = "Some(Op::Eq)")]
    pub op: Option<Op>,
    pub value: ConditionValue,
}

/// A condition's value, written as a string or a number (`value: 0` and `value: "0"`
/// mean the same); compared as the field's type.
#[derive(Clone, Debug)]
pub struct ConditionValue(pub String);

#[Scalar(name = "ConditionValue")]
impl ScalarType for ConditionValue {
    fn parse(value: async_graphql::Value) -> InputValueResult<Self> {
        match value {
            async_graphql::Value::String(text) => Ok(Self(text)),
            async_graphql::Value::Number(number) => Ok(Self(number.to_string())),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> async_graphql::Value {
        async_graphql::Value::String(self.0.clone())
    }
}

pub(super) fn conditions(input: Option<Vec<ConditionInput>>) -> Vec<Condition> {
    input
        .unwrap_or_default()
        .into_iter()
        .map(|c| Condition {
            field: c.field,
            op: c.op.unwrap_or(Op::Eq),
            value: c.value.0,
        })
        .collect()
}

/// Filters applied in the kernel.
#[derive(Clone, Debug, Default, InputObject)]
#[graphql(name = "SessionFilter")]
pub struct SessionFilterInput {
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub cgroup_id: Option<u64>,
    /// A running container's name, id or unique id prefix: only its processes are traced,
    /// through restarts.
    pub container: Option<String>,
    /// Containers of this name, running now or created during the session: each is traced
    /// from its first instruction, since its cgroup joins the kernel filter as it is made.
    pub container_name: Option<String>,
    /// Containers of this image (`bb` is `bb:latest`), running now or created during the
    /// session, from their first instruction.
    pub image: Option<String>,
    /// Trace the server's own process too (left out by default: its threads would report
    /// their own polling and storing among the results).
    #[graphql(default = false)]
    pub include_self: bool,
}

#[derive(Clone, Debug, InputObject)]
pub struct StartSessionInput {
    pub tracker: String,
    pub duration_secs: i64,
    pub filter: Option<SessionFilterInput>,
    /// Tracker settings as a JSON object (or a string holding one), e.g. {"min_duration_ns": 1000000}.
    pub config: Option<Json<serde_json::Value>>,
    #[graphql(default_with = "Some(StoreKind::Sqlite)")]
    pub store: Option<StoreKind>,
    pub label: Option<String>,
    /// Detection rules to run on the session's events, by id (`["*"]`: every rule that
    /// reads this tracker's events); what they match is an alert (see `alerts`).
    pub rules: Option<Vec<String>>,
    /// Metrics exported from the session's events while it runs and for
    /// `metrics.session_keep_secs` after (code BAD_METRICS when one does not fit the
    /// tracker's fields or clashes with another session's).
    pub metrics: Option<Vec<MetricSpec>>,
    /// Run the session on these nodes of the fleet (`["*"]`: every node heard from in
    /// the last few seconds), each with the same tracker, filters and window; the
    /// session is then the fleet's (see `Session.nodes`). Code NO_FLEET on a server in
    /// no fleet.
    pub nodes: Option<Vec<String>>,
}

impl StartSessionInput {
    fn store(&self) -> StoreKind {
        self.store.unwrap_or(StoreKind::Sqlite)
    }

    pub fn audit_args(&self) -> serde_json::Value {
        let filter = self.filter.clone().unwrap_or_default();
        serde_json::json!({
            "tracker": self.tracker,
            "durationSecs": self.duration_secs,
            "filter": {
                "pid": filter.pid,
                "comm": filter.comm,
                "cgroupId": filter.cgroup_id,
                "container": filter.container,
                "containerName": filter.container_name,
                "image": filter.image,
                "includeSelf": filter.include_self,
            },
            "config": self.config.as_ref().map(|c| c.0.clone()),
            "store": format!("{:?}", self.store()).to_uppercase(),
            "label": self.label,
            "rules": self.rules,
            "metrics": self.metrics,
            "nodes": self.nodes,
        })
    }

    pub fn into_request(self) -> async_graphql::Result<StartRequest> {
        let store = self.store();
        let config = match self.config.map(|c| c.0) {
            Some(serde_json::Value::String(text)) => Some(
                serde_json::from_str(&text)
                    .map_err(|e| coded("BAD_CONFIG", format!("config is not valid JSON: {e}")))?,
            ),
            other => other,
        };
        let filter = self.filter.unwrap_or_default();
        Ok(StartRequest {
            tracker: self.tracker,
            duration_secs: self.duration_secs,
            pid: filter.pid,
            comm: filter.comm,
            cgroup_id: filter.cgroup_id,
            container: filter.container,
            container_name: filter.container_name,
            image: filter.image,
            include_self: filter.include_self,
            config,
            store,
            label: self.label,
            rules: self.rules.unwrap_or_default(),
            metrics: self.metrics.unwrap_or_default(),
        })
    }
}

/// A tracing session.
pub struct SessionObject(pub SessionRecord);

#[Object(name = "Session")]
impl SessionObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn tracker(&self) -> &str {
        &self.0.tracker
    }

    async fn label(&self) -> Option<&str> {
        self.0.label.as_deref()
    }

    async fn status(&self) -> SessionStatus {
        self.0.status
    }

    async fn store(&self) -> StoreKind {
        self.0.store
    }

    /// The node that recorded the session: this server's name (`--node`, `[fleet] node`,
    /// else its hostname), which its events carry in PostgreSQL. Null for a fleet
    /// session, recorded by every node in `nodes`.
    async fn node(&self, ctx: &Context<'_>) -> Option<String> {
        if Fleet::is_fleet_id(self.0.id.as_str()) {
            return None;
        }
        super::manager(ctx).config().fleet.node_name().ok()
    }

    /// A fleet session's parts, one per node, by node name: each node's status, counts
    /// and lost events. Null for a session of this server alone. The session's
    /// `aggregate`, `timeseries`, `histogram` and `events` read every node's events,
    /// and group and filter by the field `node` too.
    async fn nodes(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Vec<Part>>> {
        if !Fleet::is_fleet_id(self.0.id.as_str()) {
            return Ok(None);
        }
        let fleet = super::fleet::fleet(ctx)?;
        let parts = fleet.parts(self.0.id.as_str()).await;
        Ok(Some(parts.map_err(super::fleet::fleet_error)?))
    }

    /// RFC 3339.
    async fn started_at(&self) -> String {
        rfc3339_nanos(self.0.started_at_ns)
    }

    async fn ends_at(&self) -> String {
        rfc3339_nanos(self.0.ends_at_ns)
    }

    async fn ended_at(&self) -> Option<String> {
        self.0.ended_at_ns.map(rfc3339_nanos)
    }

    async fn filter(&self) -> Json<serde_json::Value> {
        Json(self.0.filter.clone())
    }

    async fn config(&self) -> Json<serde_json::Value> {
        Json(self.0.config.clone())
    }

    /// Events stored (live while running).
    async fn event_count(&self) -> u64 {
        self.0.event_count
    }

    /// Events lost at any stage (in the kernel: a full ring buffer or program runs the kernel
    /// skipped; channels; store).
    async fn lost_count(&self) -> u64 {
        self.0.lost_count
    }

    /// Live `sessionEvents` subscriptions to this session right now (0 once it ended); a
    /// client can wait for its own subscription to count before it acts.
    async fn subscribers(&self, ctx: &Context<'_>) -> usize {
        manager(ctx).event_subscribers(&self.0.id)
    }

    /// eventCount / (eventCount + lostCount); 1 when nothing happened.
    async fn completeness(&self) -> f64 {
        let total = self.0.event_count + self.0.lost_count;
        if total == 0 {
            1.0
        } else {
            self.0.event_count as f64 / total as f64
        }
    }

    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }

    /// Kernel ids of the session's BPF programs while it runs (`bpftool prog show id N`);
    /// empty once it has ended, when none of them remains loaded.
    async fn program_ids(&self, ctx: &Context<'_>) -> Vec<u32> {
        manager(ctx).program_ids(&self.0.id)
    }

    /// Stored events in arrival order (for MEMORY sessions, the most recent ones kept).
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(EVENTS_PAGE)")] first: Option<i32>,
        after: Option<String>,
        r#where: Option<Vec<ConditionInput>>,
    ) -> async_graphql::Result<EventConnection> {
        let query = EventsQuery {
            first: page_size(first, EVENTS_PAGE)?,
            after: after
                .map(|a| {
                    a.parse::<i64>().map_err(|_| {
                        coded("BAD_USER_INPUT", format!("`{a}` is not an events cursor"))
                    })
                })
                .transpose()?,
            through: None,
            conditions: conditions(r#where),
        };
        let results = self.results(ctx)?;
        let (events, has_next) = results.events(&query).await.map_err(results_error)?;
        let mut connection = EventConnection::new(query.after.is_some(), has_next);
        connection.edges.extend(
            events
                .into_iter()
                .map(|e| Edge::new(e.id.to_string(), EventObject(e))),
        );
        Ok(connection)
    }

    /// Groups the session's events by `groupBy` and applies `op` (to `field` unless COUNT).
    async fn aggregate(
        &self,
        ctx: &Context<'_>,
        group_by: Vec<String>,
        #[graphql(default_with = "Some(AggOp::Count)")] op: Option<AggOp>,
        field: Option<String>,
        top: Option<i32>,
        r#where: Option<Vec<ConditionInput>>,
    ) -> async_graphql::Result<Vec<AggRow>> {
        let query = AggregateQuery {
            group_by,
            op: op.unwrap_or(AggOp::Count),
            field,
            top: top_rows(top)?,
            conditions: conditions(r#where),
        };
        self.check_per_call(query.op, query.field.as_deref())?;
        let results = self.results(ctx)?;
        let rows = results.aggregate(&query).await.map_err(results_error)?;
        Ok(rows
            .into_iter()
            .map(|r| AggRow::new(r, &query.group_by))
            .collect())
    }

    /// Like aggregate, per time bucket of `bucketSecs` (buckets start at multiples of it
    /// since the epoch). Only buckets with events, unless `fill`: then every bucket from
    /// the session's start to its end (now, while it runs), for every group, with value
    /// and count 0 where there is nothing; BAD_QUERY past 100,000 rows.
    #[allow(clippy::too_many_arguments)]
    async fn timeseries(
        &self,
        ctx: &Context<'_>,
        bucket_secs: i32,
        #[graphql(default_with = "Some(Vec::new())")] group_by: Option<Vec<String>>,
        #[graphql(default_with = "Some(AggOp::Count)")] op: Option<AggOp>,
        field: Option<String>,
        r#where: Option<Vec<ConditionInput>>,
        #[graphql(default)] fill: bool,
    ) -> async_graphql::Result<Vec<TimeBucket>> {
        let bucket_secs = u64::try_from(bucket_secs)
            .map_err(|_| coded("BAD_QUERY", "bucketSecs must be at least 1"))?;
        let query = TimeseriesQuery {
            bucket_secs,
            group_by: group_by.unwrap_or_default(),
            op: op.unwrap_or(AggOp::Count),
            field,
            conditions: conditions(r#where),
        };
        self.check_per_call(query.op, query.field.as_deref())?;
        let results = self.results(ctx)?;
        let mut rows = results.timeseries(&query).await.map_err(results_error)?;
        if fill {
            let range = (
                self.0.started_at_ns,
                self.0.ended_at_ns.unwrap_or_else(wall_clock_ns),
            );
            let grouped = !query.group_by.is_empty();
            rows = fill_buckets(rows, bucket_secs, range, grouped, MAX_FILLED_ROWS).map_err(
                |would| {
                    coded(
                        "BAD_QUERY",
                        format!(
                            "filled, this is {would} rows (at most {MAX_FILLED_ROWS}): use larger buckets"
                        ),
                    )
                },
            )?;
        }
        Ok(rows
            .into_iter()
            .map(|r| TimeBucket::new(r, &query.group_by))
            .collect())
    }

    /// The session's stacks in the folded format flame graph tools read: a line per
    /// process name and stack, `comm;root;...;leaf WEIGHT`, weighted by the tracker's
    /// `stackMeasure` over the events that meet `where`, heaviest first. Drawn at
    /// `/sessions/<id>/flamegraph.svg`. BAD_QUERY for a tracker without stacks.
    pub async fn folded_stacks(
        &self,
        ctx: &Context<'_>,
        r#where: Option<Vec<ConditionInput>>,
    ) -> async_graphql::Result<String> {
        let info = tracker_info(&self.0.tracker).map_err(api)?;
        let results = self.results(ctx)?;
        crate::results::stacks::folded_stacks(&*results, info, conditions(r#where))
            .await
            .map_err(results_error)
    }

    /// How a numeric field's values spread, per group: counts in power-of-two buckets
    /// (negatives, [0, 1), [1, 2), [2, 4), ...), as bpftrace's `hist()`. Groups ordered by
    /// their number of values, largest first; `top` keeps the first N.
    async fn histogram(
        &self,
        ctx: &Context<'_>,
        field: String,
        #[graphql(default_with = "Some(Vec::new())")] group_by: Option<Vec<String>>,
        top: Option<i32>,
        r#where: Option<Vec<ConditionInput>>,
    ) -> async_graphql::Result<Vec<HistogramRow>> {
        let query = HistogramQuery {
            group_by: group_by.unwrap_or_default(),
            field,
            top: top_rows(top)?,
            conditions: conditions(r#where),
        };
        let info = tracker_info(&self.0.tracker).map_err(api)?;
        let bucketed = totals_per_log2_bucket(&self.0);
        check_histogram(info, &query.field, reports_totals(&self.0), bucketed)
            .map_err(|e| results_error(ResultsError::Query(e)))?;
        let results = self.results(ctx)?;
        let rows = results.histogram(&query).await.map_err(results_error)?;
        Ok(rows
            .into_iter()
            .map(|r| HistogramRow::new(r, &query.group_by))
            .collect())
    }
}

fn top_rows(top: Option<i32>) -> async_graphql::Result<Option<usize>> {
    top.map(|t| usize::try_from(t).map_err(|_| coded("BAD_USER_INPUT", "top must not be negative")))
        .transpose()
}

/// Outside the `#[Object]` block, which would make it a field.
impl SessionObject {
    fn results(&self, ctx: &Context<'_>) -> async_graphql::Result<Arc<dyn SessionResults>> {
        if Fleet::is_fleet_id(self.0.id.as_str()) {
            return super::fleet::fleet(ctx)?
                .results(&self.0)
                .map_err(super::fleet::fleet_error);
        }
        manager(ctx).results(&self.0).map_err(api)
    }

    /// See [`check_per_call`].
    fn check_per_call(&self, op: AggOp, field: Option<&str>) -> async_graphql::Result<()> {
        let info = tracker_info(&self.0.tracker).map_err(api)?;
        check_per_call(info, op, field, reports_totals(&self.0))
            .map_err(|e| results_error(ResultsError::Query(e)))
    }
}

/// One part of a group's key: a field grouped by, and the group's value of it.
#[derive(Clone, Debug, SimpleObject)]
pub struct GroupKey {
    pub field: String,
    /// As in `keys`: text, and `"null"` for no value.
    pub value: String,
}

/// `keys` named by the `groupBy` fields they belong to.
fn named_keys(group_by: &[String], keys: &[String]) -> Vec<GroupKey> {
    group_by
        .iter()
        .zip(keys)
        .map(|(field, value)| GroupKey {
            field: field.clone(),
            value: value.clone(),
        })
        .collect()
}

#[derive(SimpleObject)]
pub struct AggRow {
    /// The group's values of the `groupBy` fields, in their order.
    pub keys: Vec<String>,
    /// The same values, each with its field.
    pub group_keys: Vec<GroupKey>,
    pub value: f64,
    pub count: u64,
}

impl AggRow {
    fn new(r: AggResult, group_by: &[String]) -> Self {
        Self {
            group_keys: named_keys(group_by, &r.keys),
            keys: r.keys,
            value: r.value,
            count: r.count,
        }
    }
}

/// One group's histogram.
#[derive(SimpleObject)]
pub struct HistogramRow {
    pub keys: Vec<String>,
    pub group_keys: Vec<GroupKey>,
    /// The group's values: the buckets' counts summed.
    pub count: u64,
    /// The values added up (with `count`, the mean).
    pub sum: f64,
    /// The non-empty buckets, lowest first.
    pub buckets: Vec<HistogramBucket>,
}

/// Values in [low, high).
#[derive(SimpleObject)]
pub struct HistogramBucket {
    /// Null for the bucket of negative values.
    pub low: Option<f64>,
    pub high: f64,
    /// The largest value the bucket holds (values are whole numbers): high - 1, as
    /// Prometheus's `le` names a bucket.
    pub le: f64,
    pub count: u64,
}

impl HistogramRow {
    fn new(r: HistogramResult, group_by: &[String]) -> Self {
        Self {
            group_keys: named_keys(group_by, &r.keys),
            keys: r.keys,
            count: r.count,
            sum: r.sum,
            buckets: r
                .buckets
                .iter()
                .map(|b| HistogramBucket {
                    low: b.low(),
                    high: b.high(),
                    le: b.high() - 1.0,
                    count: b.count,
                })
                .collect(),
        }
    }
}

#[derive(SimpleObject)]
pub struct TimeBucket {
    /// The bucket's start, RFC 3339.
    pub start: String,
    pub keys: Vec<String>,
    pub group_keys: Vec<GroupKey>,
    pub value: f64,
    pub count: u64,
}

impl TimeBucket {
    fn new(r: TimeBucketResult, group_by: &[String]) -> Self {
        Self {
            start: rfc3339_nanos(r.start_ns),
            group_keys: named_keys(group_by, &r.keys),
            keys: r.keys,
            value: r.value,
            count: r.count,
        }
    }
}

/// A container the server knows of.
pub struct ContainerObject(pub Container);

#[Object(name = "Container")]
impl ContainerObject {
    async fn id(&self) -> &str {
        &self.0.id
    }

    /// The engine's name for it; null when no engine names it (runc, or no Docker socket).
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }

    async fn image(&self) -> Option<&str> {
        self.0.image.as_deref()
    }

    async fn runtime(&self) -> Runtime {
        self.0.runtime
    }

    async fn state(&self) -> ContainerState {
        self.0.state
    }

    /// Its processes (thread group ids), as of the last exec, exit or rescan.
    async fn pids(&self) -> Vec<u32> {
        self.0.pids.iter().copied().collect()
    }

    /// Its cgroup v2 id first, then those of its sub-cgroups: what sessions filter on.
    async fn cgroup_ids(&self) -> &[u64] {
        &self.0.cgroup_ids
    }

    /// Its cgroup v2 path, below the cgroup v2 mount.
    async fn cgroup_path(&self) -> &str {
        &self.0.cgroup_path
    }

    async fn namespaces(&self) -> ContainerNamespaces {
        let ns = &self.0.namespaces;
        ContainerNamespaces {
            pid: ns.pid,
            mnt: ns.mnt,
            user: ns.user,
            net: ns.net,
            uts: ns.uts,
        }
    }

    /// When its first process started (RFC 3339).
    async fn started_at(&self) -> Option<String> {
        self.0.started_at_ns.map(rfc3339_nanos)
    }

    /// When it was seen to end (RFC 3339); null while it runs.
    async fn ended_at(&self) -> Option<String> {
        self.0.ended_at_ns.map(rfc3339_nanos)
    }

    /// The Kubernetes pod's UID, when it runs in a pod.
    async fn pod_uid(&self) -> Option<&str> {
        self.0.pod_uid.as_deref()
    }

    async fn labels(&self) -> Json<&std::collections::BTreeMap<String, String>> {
        Json(&self.0.labels)
    }
}

/// A container's namespaces, as inode numbers (`ls -l /proc/<pid>/ns`).
#[derive(SimpleObject)]
pub struct ContainerNamespaces {
    pub pid: Option<u64>,
    pub mnt: Option<u64>,
    pub user: Option<u64>,
    pub net: Option<u64>,
    pub uts: Option<u64>,
}

pub struct AuditRow(pub AuditEntry);

#[Object(name = "AuditEntry")]
impl AuditRow {
    async fn id(&self) -> i64 {
        self.0.id
    }

    async fn at(&self) -> String {
        rfc3339_nanos(self.0.at_ns)
    }

    async fn actor(&self) -> &str {
        &self.0.actor
    }

    async fn role(&self) -> &str {
        &self.0.role
    }

    async fn action(&self) -> &str {
        &self.0.action
    }

    async fn args(&self) -> Json<serde_json::Value> {
        Json(self.0.args.clone())
    }

    async fn outcome(&self) -> &str {
        &self.0.outcome
    }

    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }

    /// The session the mutation created or acted on.
    async fn session_id(&self) -> Option<&str> {
        self.0.session_id.as_ref().map(SessionId::as_str)
    }
}
