//! The security analyzer's part of the API: its rules and the alerts they raised.

use std::sync::Arc;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, InputObject, Object, SimpleObject, ID};

use super::{coded, manager, page_size};
use crate::model::{parse_rfc3339_nanos, rfc3339_nanos, Severity};
use crate::results::store::{AlertFilter, AlertRecord};
use crate::security::{Baseline, BaselineError, GuardStatus, Rule, Scope};

pub type AlertConnection = Connection<String, AlertObject, EmptyFields, EmptyFields>;

const ALERTS_PAGE: i32 = 50;

/// A detection rule.
pub struct RuleObject(pub Arc<Rule>);

/// The MITRE ATT&CK technique a rule detects.
#[derive(SimpleObject)]
pub struct MitreObject {
    pub technique: String,
    pub name: String,
    pub tactic: String,
}

/// The events a rule reads: a tracker's, of these kinds (all when empty).
#[derive(SimpleObject)]
pub struct RuleSource {
    pub tracker: String,
    pub kinds: Vec<String>,
}

#[Object(name = "Rule")]
impl RuleObject {
    async fn id(&self) -> &str {
        &self.0.id
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn description(&self) -> &str {
        &self.0.description
    }

    async fn severity(&self) -> Severity {
        self.0.severity
    }

    async fn mitre(&self) -> MitreObject {
        let m = &self.0.mitre;
        MitreObject {
            technique: m.technique.clone(),
            name: m.name.clone(),
            tactic: m.tactic.clone(),
        }
    }

    async fn tags(&self) -> &[String] {
        &self.0.tags
    }

    async fn sources(&self) -> Vec<RuleSource> {
        self.0
            .sources
            .iter()
            .map(|s| RuleSource {
                tracker: s.tracker.clone(),
                kinds: s.kinds.clone(),
            })
            .collect()
    }

    /// The condition as written (CEL; macros by name).
    async fn condition(&self) -> &str {
        &self.0.condition
    }

    async fn output(&self) -> &str {
        &self.0.output
    }

    async fn enabled(&self) -> bool {
        self.0.enabled()
    }

    /// Events it matched since the rules were loaded.
    async fn hits(&self) -> u64 {
        self.0.hits()
    }
}

/// Which alerts to list; each part that is given must hold.
#[derive(Clone, Debug, Default, InputObject)]
pub struct AlertFilterInput {
    /// At least this severe.
    pub min_severity: Option<Severity>,
    pub rule: Option<String>,
    /// A container's name, id or id prefix.
    pub container: Option<String>,
    /// First raised at or after this time (RFC 3339).
    pub since: Option<String>,
}

impl AlertFilterInput {
    fn filter(self) -> async_graphql::Result<AlertFilter> {
        let since_ns = self
            .since
            .map(|text| {
                parse_rfc3339_nanos(&text).ok_or_else(|| {
                    coded("BAD_USER_INPUT", format!("since: `{text}` is not RFC 3339"))
                })
            })
            .transpose()?;
        Ok(AlertFilter {
            min_severity: self.min_severity,
            rule: self.rule,
            container: self.container,
            since_ns,
        })
    }
}

/// An alert: a rule matched an event (or several like it within the dedup window).
pub struct AlertObject(pub Arc<AlertRecord>);

#[Object(name = "Alert")]
impl AlertObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// When it was first raised (RFC 3339).
    async fn ts(&self) -> String {
        rfc3339_nanos(self.0.ts_ns)
    }

    /// When it was last raised again.
    async fn last_ts(&self) -> String {
        rfc3339_nanos(self.0.last_ts_ns)
    }

    /// Times raised within the dedup window.
    async fn count(&self) -> u64 {
        self.0.count
    }

    async fn rule(&self) -> &str {
        &self.0.rule
    }

    async fn severity(&self) -> Severity {
        self.0.severity
    }

    /// MITRE ATT&CK technique id.
    async fn technique(&self) -> &str {
        &self.0.technique
    }

    /// MITRE ATT&CK technique name.
    async fn technique_name(&self) -> &str {
        &self.0.technique_name
    }

    async fn tactic(&self) -> &str {
        &self.0.tactic
    }

    async fn tracker(&self) -> &str {
        &self.0.tracker
    }

    async fn session_id(&self) -> Option<ID> {
        self.0.session_id.as_ref().map(|id| ID(id.to_string()))
    }

    async fn pid(&self) -> u32 {
        self.0.pid
    }

    async fn ppid(&self) -> u32 {
        self.0.ppid
    }

    async fn comm(&self) -> &str {
        &self.0.comm
    }

    /// The process's executable; null when it had gone before it could be read.
    async fn exe(&self) -> Option<&str> {
        self.0.exe.as_deref()
    }

    async fn container_id(&self) -> Option<&str> {
        self.0.container_id.as_deref()
    }

    async fn container_name(&self) -> Option<&str> {
        self.0.container_name.as_deref()
    }

    async fn container_image(&self) -> Option<&str> {
        self.0.container_image.as_deref()
    }

    /// The rule's output for this event.
    async fn output(&self) -> &str {
        &self.0.output
    }

    /// The event that raised it first, as JSON.
    async fn event(&self) -> async_graphql::Json<serde_json::Value> {
        async_graphql::Json(serde_json::from_str(&self.0.event).unwrap_or_default())
    }
}

/// `Query.rules`.
pub fn rules(ctx: &Context<'_>) -> Vec<RuleObject> {
    manager(ctx)
        .rules()
        .rules()
        .iter()
        .cloned()
        .map(RuleObject)
        .collect()
}

/// `Query.alerts`.
pub async fn alerts(
    ctx: &Context<'_>,
    filter: Option<AlertFilterInput>,
    first: Option<i32>,
    after: Option<String>,
) -> async_graphql::Result<AlertConnection> {
    let first = page_size(first, ALERTS_PAGE)?;
    let filter = filter.unwrap_or_default().filter()?;
    let after_id = after
        .as_deref()
        .map(|a| {
            a.parse::<i64>()
                .map_err(|_| coded("BAD_USER_INPUT", format!("`{a}` is not an alerts cursor")))
        })
        .transpose()?;
    let (rows, has_next) = manager(ctx)
        .alerts()
        .list(&filter, first, after_id)
        .await
        .map_err(|e| coded("INTERNAL", e.to_string()))?;
    let mut connection = AlertConnection::new(after.is_some(), has_next);
    connection.edges.extend(
        rows.into_iter()
            .map(|a| Edge::new(a.id.to_string(), AlertObject(Arc::new(a)))),
    );
    Ok(connection)
}

/// The standing guard: the rules it runs, the trackers they read, and what it has cost.
#[derive(SimpleObject)]
#[graphql(name = "Guard")]
pub struct GuardObject {
    pub running: bool,
    /// Rule ids.
    pub rules: Vec<String>,
    pub trackers: Vec<String>,
    /// The learned baselines it enforces.
    pub baselines: Vec<ID>,
    /// RFC 3339.
    pub started_at: Option<String>,
    pub events_seen: u64,
    pub events_lost: u64,
    /// Its BPF programs' run time so far (the kernel's bpf_stats, on while it runs), and
    /// how many times they ran.
    pub bpf_run_time_ns: u64,
    pub bpf_runs: u64,
    /// CPU time of its tracker threads so far (ring buffer reads, decoding, rules).
    pub cpu_time_ns: u64,
    /// A tracker that stopped on its own: the guard no longer sees its events.
    pub failed_tracker: Option<String>,
}

impl From<GuardStatus> for GuardObject {
    fn from(s: GuardStatus) -> Self {
        Self {
            running: s.running,
            rules: s.rules,
            trackers: s.trackers,
            baselines: s.baselines.iter().map(|id| ID(id.to_string())).collect(),
            started_at: s.started_ns.map(rfc3339_nanos),
            events_seen: s.events_seen,
            events_lost: s.events_lost,
            bpf_run_time_ns: s.cost.bpf_run_time.as_nanos() as u64,
            bpf_runs: s.cost.bpf_runs,
            cpu_time_ns: s.cost.cpu_time.as_nanos() as u64,
            failed_tracker: s.failed_tracker,
        }
    }
}

/// A learned baseline: what a container, or every container of an image, did while it
/// learned. The guard raises an `anomaly` alert for what lies outside it.
#[derive(SimpleObject)]
#[graphql(name = "Baseline")]
pub struct BaselineObject {
    pub id: ID,
    /// The container's name, when it is one container's.
    pub container: Option<String>,
    /// The image, when it is every container's of an image.
    pub image: Option<String>,
    /// LEARNING, READY, FAILED, or INTERRUPTED (the server stopped while it learned).
    pub state: String,
    /// RFC 3339.
    pub started_at: String,
    pub duration_secs: u64,
    /// Files executed, as the exec named them.
    pub execs: Vec<String>,
    /// Syscall names.
    pub syscalls: Vec<String>,
    /// Outbound connects, `address:port`.
    pub connects: Vec<String>,
    /// Directories of files opened for writing.
    pub write_dirs: Vec<String>,
    /// Events seen and lost while learning: a baseline that lost events may miss
    /// behaviour and raise anomalies for it.
    pub events_seen: u64,
    pub events_lost: u64,
    pub error: Option<String>,
}

impl From<Baseline> for BaselineObject {
    fn from(b: Baseline) -> Self {
        let (container, image) = match b.scope {
            Scope::Container(name) => (Some(name), None),
            Scope::Image(image) => (None, Some(image)),
        };
        let list = |items: std::collections::BTreeSet<String>| items.into_iter().collect();
        Self {
            id: ID(b.id.to_string()),
            container,
            image,
            state: format!("{:?}", b.state).to_uppercase(),
            started_at: rfc3339_nanos(b.started_ns),
            duration_secs: b.duration_secs,
            execs: list(b.profile.execs),
            syscalls: list(b.profile.syscalls),
            connects: list(b.profile.connects),
            write_dirs: list(b.profile.write_dirs),
            events_seen: b.events,
            events_lost: b.lost,
            error: b.error,
        }
    }
}

/// A baselines error as a GraphQL error with its code.
pub fn baseline_error(err: BaselineError) -> async_graphql::Error {
    let code = match &err {
        BaselineError::BadDuration(_) => "BAD_DURATION",
        BaselineError::BadScope => "BAD_USER_INPUT",
        BaselineError::Container(e) => super::container_code(e),
        BaselineError::NoContainerOfImage(_) => "UNKNOWN_CONTAINER",
        BaselineError::TooMany => "TOO_MANY_BASELINES",
        BaselineError::Store(_) => "INTERNAL",
    };
    coded(code, err.to_string())
}
