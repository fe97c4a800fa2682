//! The security analyzer's link in a chain (a session's or the guard's): every event
//! through the rules asked for, on the tracker's thread. A rule reads only the events its
//! sources name, so most events cost a string comparison per rule. A rule whose action is
//! `kill` kills the process right there, before the alert is even queued.

use std::sync::Arc;

use cel::Context;

use super::alerts::{AlertSender, Raised};
use super::drift::{observed_write, WrittenFiles};
use super::prefilter::Plan;
use super::rules::{Action, Rule, RuleSet};
use crate::handler::{Flow, Handler};
use crate::metrics::Metrics;
use crate::model::{wall_clock_ns, EventBody, SessionId, Value};
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
    /// Where a files matcher records the files written, when a rule asks for them.
    written: Option<Arc<WrittenFiles>>,
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
            written: None,
            alerts: Box::new(alerts),
            session: None,
            metrics,
        }
    }

    /// Its rules' `written_during_run` asks `written`, which this matcher, when it has
    /// such a rule, fills with each file opened for writing and the execs that matched
    /// nothing (see `drift`).
    pub fn with_written(mut self, set: &RuleSet, written: Arc<WrittenFiles>) -> Self {
        self.context = set.context_with(written.clone());
        if self.rules.iter().any(|r| r.asks_written()) {
            self.written = Some(written);
        }
        self
    }

    /// Records a file `event` opened for writing, and checks again the execs of it that
    /// were checked before the write was recorded.
    fn record_write(&self, written: &WrittenFiles, event: &Event) {
        let Some(path) = observed_write(event) else {
            return;
        };
        if !matches!(event.body.get("ret"), Some(Value::I64(fd)) if fd >= 0) {
            return;
        }
        let h = &event.header;
        for exec in written.record(h.mnt_ns, path, h.ts_ns) {
            let (tracker, kind) = (exec.body.info().name, exec.body.kind());
            for rule in &self.rules {
                if rule.asks_written() && rule.enabled() && rule.reads(tracker, kind) {
                    self.check(rule, &exec);
                }
            }
        }
    }

    /// Runs `rule`'s condition (its prefilter passed) on `event`, and raises an alert
    /// when it holds. Returns whether it held.
    fn check(&self, rule: &Arc<Rule>, event: &Event) -> bool {
        match rule.evaluate(&self.context, event) {
            Ok(true) => {
                let mut output = rule.render(event);
                if rule.action == Action::Kill {
                    output.push_str(&self.kill(rule, event));
                }
                self.alerts.raise(Raised {
                    rule: rule.clone(),
                    event: event.clone(),
                    output,
                    session: self.session.clone(),
                });
                true
            }
            Ok(false) => false,
            Err(err) => {
                tracing::debug!(rule = %rule.id, "condition failed on an event: {err}");
                self.metrics
                    .rule_errors
                    .with_label_values(&[rule.id.as_str()])
                    .inc();
                false
            }
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
        if let Some(written) = &self.written {
            self.record_write(written, event);
        }
        let mut fields = self.plan.begin(event);
        let mut unmatched_drift = false;
        for &i in &self.by_kind[readers].1 {
            let rule = &self.rules[i];
            if !rule.enabled() || !self.plan.allows(i, &mut fields) {
                continue;
            }
            if !self.check(rule, event) && rule.asks_written() {
                unmatched_drift = true;
            }
        }
        // An exec in a container that may yet turn out to be of a file written before it.
        if let (true, Some(written), Some(_)) =
            (unmatched_drift, &self.written, event.header.container)
        {
            if let Some(Value::Str(filename)) = event.body.get("filename") {
                written.park(filename, event);
            }
        }
        Flow::Caught
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::model::{ContainerTag, FixedStr, Header};
    use crate::trackers::files::{FileRef, FileType, FilesEvent};

    /// Counts the alerts raised.
    #[derive(Clone, Default)]
    pub(crate) struct Count(pub Arc<AtomicUsize>);

    impl AlertSink for Count {
        fn raise(&self, _: Raised) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn header(ts_ns: u64) -> Header {
        Header {
            ts_ns,
            pid: 9,
            mnt_ns: 7,
            container: Some(ContainerTag::new("abc", Some("web"), None)),
            ..Header::default()
        }
    }

    fn exec(ts_ns: u64) -> Event {
        crate::trackers::process::exec_event(header(ts_ns), "/tmp/dropped")
    }

    fn write(ts_ns: u64) -> Event {
        Event {
            header: header(ts_ns),
            body: FilesEvent::Open {
                file: FileRef {
                    path: FixedStr::from("/tmp/dropped"),
                    file_type: Some(FileType::Regular),
                },
                flags: (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u32,
                ret: 3,
                opens: 1,
            }
            .into(),
        }
    }

    /// A process and a files matcher of the drift rule, sharing their written files, and
    /// the count of their alerts.
    fn drift_matchers(set: &RuleSet) -> (Count, RuleMatcher, RuleMatcher) {
        let rules = set
            .select(&["new_binary_exec_in_container".to_string()])
            .unwrap();
        let (count, written) = (Count::default(), Arc::new(WrittenFiles::default()));
        let matcher = |tracker| {
            RuleMatcher::new(set, &rules, tracker, count.clone(), Metrics::new())
                .with_written(set, written.clone())
        };
        let (process, files) = (matcher("process"), matcher("files"));
        (count, process, files)
    }

    /// The files and process trackers run on two threads: an exec checked before the
    /// write it followed is recorded still raises its alert, once, when the write is.
    #[test]
    fn drift_is_found_whichever_tracker_is_read_first() {
        let set = RuleSet::builtin();
        let raised = |count: &Count| count.0.load(Ordering::Relaxed);

        // In order: the write is recorded, then the exec matches.
        let (count, mut process, mut files) = drift_matchers(&set);
        files.handle(&write(100));
        process.handle(&exec(200));
        assert_eq!(raised(&count), 1);

        // The exec first: parked, and raised when the write comes.
        let (count, mut process, mut files) = drift_matchers(&set);
        process.handle(&exec(50));
        process.handle(&exec(200));
        assert_eq!(raised(&count), 0);
        files.handle(&write(100));
        // The exec from before the write is no drift.
        assert_eq!(raised(&count), 1);
        files.handle(&write(300));
        assert_eq!(raised(&count), 1);
    }
}
