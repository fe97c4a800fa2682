//! The security analyzer's link in a session's chain: every event through the rules the
//! session asked for, on the tracker's thread. A rule reads only the events its sources
//! name, so most events cost a string comparison per rule.

use std::sync::Arc;

use cel::Context;

use super::alerts::{AlertSender, Raised};
use super::rules::{Rule, RuleSet};
use crate::handler::{Flow, Handler};
use crate::metrics::Metrics;
use crate::model::{EventBody, SessionId};
use crate::trackers::Event;

pub struct RuleMatcher {
    /// The selected rules that read this tracker's events.
    rules: Vec<Arc<Rule>>,
    context: Context<'static, 'static>,
    alerts: AlertSender,
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
        alerts: AlertSender,
        metrics: Metrics,
    ) -> Self {
        Self {
            rules: rules
                .iter()
                .filter(|r| r.sources.iter().any(|s| s.tracker == tracker))
                .cloned()
                .collect(),
            context: set.context(),
            alerts,
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

impl Handler<Event> for RuleMatcher {
    fn handle(&mut self, event: &Event) -> Flow {
        let (tracker, kind) = (event.body.info().name, event.body.kind());
        for rule in &self.rules {
            if !rule.enabled() || !rule.reads(tracker, kind) {
                continue;
            }
            match rule.matches(&self.context, event) {
                Ok(true) => self.alerts.raise(Raised {
                    rule: rule.clone(),
                    event: *event,
                    output: rule.render(event),
                    session: self.session.clone(),
                }),
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
