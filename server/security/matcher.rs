//! The security analyzer's link in a chain (a session's or the guard's): every event
//! through the rules asked for, on the tracker's thread. A rule reads only the events its
//! sources name, so most events cost a string comparison per rule. A rule whose action is
//! `kill` kills the process right there, before the alert is even queued.

use std::sync::Arc;

use cel::Context;

use super::alerts::{AlertSender, Raised};
use super::prefilter::Plan;
use super::rules::{Action, Rule, RuleSet};
use crate::handler::{Flow, Handler};
use crate::metrics::Metrics;
use crate::model::{wall_clock_ns, EventBody, SessionId};
use crate::trackers::Event;

/// Where a matcher's alerts go: the server's alert writer, or the CLI's printer. Called on
/// the tracker's thread: it must not wait.
pub trait AlertSink: Send {
    fn raise(&self, raised: Raised);
}

impl AlertSink for AlertSender {
    fn raise(&self, raised: Raised) {
        AlertSender::raise(self, raised)
    }
}

pub struct RuleMatcher {
    /// The selected rules that read this tracker's events.
    rules: Vec<Arc<Rule>>,
    /// Their prefilters, each distinct test run once per event.
    plan: Plan,
    /// Per kind of event seen so far, the indices of the rules that read it.
    by_kind: Vec<(&'static str, Vec<usize>)>,
    context: Context<'static, 'static>,
    alerts: Box<dyn AlertSink>,
    session: Option<SessionId>,
    metrics: Metrics,
}

impl RuleMatcher {
    /// Matches `rules` (selected from `set`) that read `tracker`'s events; alerts go to
    /// `alerts`.
    pub fn new(
        set: &RuleSet,
        rules: &[Arc<Rule>],
        tracker: &str,
        alerts: impl AlertSink + 'static,
        metrics: Metrics,
    ) -> Self {
        let rules: Vec<Arc<Rule>> = rules
            .iter()
            .filter(|r| r.sources.iter().any(|s| s.tracker == tracker))
            .cloned()
            .collect();
        Self {
            plan: Plan::new(rules.iter().map(|r| r.prefilter())),
            by_kind: Vec::new(),
            rules,
            context: set.context(),
            alerts: Box::new(alerts),
            session: None,
            metrics,
        }
    }

    /// Its alerts name `session`.
    pub fn for_session(mut self, session: SessionId) -> Self {
        self.session = Some(session);
        self
    }

    /// Whether any selected rule reads this tracker's events: a chain needs no matcher
    /// otherwise.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl RuleMatcher {
    /// Kills the event's process (never the server itself or pid 0) with SIGKILL, and
    /// says how it went for the alert's output.
    fn kill(&self, rule: &Rule, event: &Event) -> String {
        let pid = event.header.pid;
        if pid == 0 || pid == std::process::id() {
            return format!(" [not killed: pid {pid} is not to be killed]");
        }
        // SAFETY: kill(2) has no memory preconditions.
        let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0;
        let latency_ns = wall_clock_ns().saturating_sub(event.header.ts_ns);
        if !sent {
            let err = std::io::Error::last_os_error();
            return format!(" [not killed: {err}]");
        }
        self.metrics
            .kills
            .with_label_values(&[rule.id.as_str()])
            .inc();
        self.metrics.kill_latency.observe(latency_ns as f64 / 1e9);
        format!(
            " [killed {:.3} ms after the event]",
            latency_ns as f64 / 1e6
        )
    }
}

impl Handler<Event> for RuleMatcher {
    fn handle(&mut self, event: &Event) -> Flow {
        let (tracker, kind) = (event.body.info().name, event.body.kind());
        let readers = match self.by_kind.iter().position(|(k, _)| *k == kind) {
            Some(at) => at,
            None => {
                let readers = (0..self.rules.len())
                    .filter(|&i| self.rules[i].reads(tracker, kind))
                    .collect();
                self.by_kind.push((kind, readers));
                self.by_kind.len() - 1
            }
        };
        let mut fields = self.plan.begin(event);
        for &i in &self.by_kind[readers].1 {
            let rule = &self.rules[i];
            if !rule.enabled() || !self.plan.allows(i, &mut fields) {
                continue;
            }
            match rule.evaluate(&self.context, event) {
                Ok(true) => {
                    let mut output = rule.render(event);
                    if rule.action == Action::Kill {
                        output.push_str(&self.kill(rule, event));
                    }
                    self.alerts.raise(Raised {
                        rule: rule.clone(),
                        event: *event,
                        output,
                        session: self.session.clone(),
                    })
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::debug!(rule = %rule.id, "condition failed on an event: {err}");
                    self.metrics
                        .rule_errors
                        .with_label_values(&[rule.id.as_str()])
                        .inc();
                }
            }
        }
        Flow::Caught
    }
}
