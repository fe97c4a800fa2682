//! The standing guard: the security analyzer without a time window. It runs the trackers
//! its rules read, and only those (the security tracker with only the calls the rules
//! name), until it is stopped, and feeds their events through the rules. Its cost is
//! measured, not guessed: its BPF programs' run time (the kernel's bpf_stats, on while a
//! guard runs) and its tracker threads' CPU time.

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use super::baseline::{self, ActiveBaselines, AnomalyDetector};
use super::drift::WrittenFiles;
use super::matcher::{AlertSink, RuleMatcher};
use super::rules::{trackers_of, Action, Rule, RuleSet};
use crate::container::{ContainerManager, Enrich};
use crate::engine::{system, Stats, TrackerConfig, TrackerError, TrackerHandle};
use crate::handler::{FanOut, Handler};
use crate::metrics::Metrics;
use crate::trackers::files::FilesOptions;
use crate::trackers::{find_tracker, security};

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("the guard needs at least one enabled rule or a learned baseline")]
    NoRules,
    #[error("starting the guard's {tracker} tracker: {source}")]
    Tracker {
        tracker: String,
        source: TrackerError,
    },
}

/// What the guard has cost so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GuardCost {
    /// Its BPF programs' run time, and how many times they ran.
    pub bpf_run_time: Duration,
    pub bpf_runs: u64,
    /// Its tracker threads' CPU time (ring buffer reads, decoding, rules).
    pub cpu_time: Duration,
}

/// One running guard; dropping it stops it.
pub struct Guard {
    rules: Vec<String>,
    trackers: Vec<TrackerHandle>,
    /// The baselines it checks containers' events against, when it runs their trackers.
    enforced: Option<Arc<ActiveBaselines>>,
    /// Keeps the kernel's BPF run time accounting on while the guard runs.
    _stats: Option<OwnedFd>,
}

impl Guard {
    /// Starts the trackers `rules` (of `set`; the disabled ones left out) read, each
    /// feeding a matcher that raises alerts into `sink`, its events enriched with their
    /// containers; when there are `baselines`, also the trackers they read, whose events
    /// of containers are checked against them. The server's own process is not traced.
    pub fn start(
        set: &RuleSet,
        rules: &[Arc<Rule>],
        baselines: Arc<ActiveBaselines>,
        sink: impl AlertSink + Clone + 'static,
        containers: Arc<ContainerManager>,
        metrics: Metrics,
    ) -> Result<Guard, GuardError> {
        let rules: Vec<Arc<Rule>> = rules.iter().filter(|r| r.enabled()).cloned().collect();
        let enforces = !baselines.is_empty();
        if rules.is_empty() && !enforces {
            return Err(GuardError::NoRules);
        }
        let mut wanted = trackers_of(&rules);
        if enforces {
            wanted.extend(baseline::TRACKERS.map(String::from));
        }
        let stats = system::enable_bpf_stats()
            .inspect_err(|err| tracing::warn!("BPF run time accounting is off: {err}"))
            .ok();
        let mut trackers = Vec::new();
        // Files written while the guard runs, for rules that ask (drift).
        let written = Arc::new(WrittenFiles::default());
        for tracker in wanted {
            let Some(config) = config_for(&tracker, &rules) else {
                tracing::warn!(
                    tracker,
                    "the guard's rules read no call of the {tracker} tracker this kernel has"
                );
                continue;
            };
            let failed = |source| GuardError::Tracker {
                tracker: tracker.clone(),
                source,
            };
            let any = find_tracker(&tracker).map_err(failed)?;
            let matcher = RuleMatcher::new(set, &rules, &tracker, sink.clone(), metrics.clone())
                .with_written(set, written.clone());
            let mut links: Vec<Box<dyn Handler<_>>> = Vec::new();
            if !matcher.is_empty() {
                links.push(Box::new(matcher));
            }
            if enforces && baseline::TRACKERS.contains(&tracker.as_str()) {
                links.push(Box::new(AnomalyDetector::new(
                    baselines.clone(),
                    sink.clone(),
                    metrics.clone(),
                )));
            }
            let chain = Enrich::new(containers.clone(), FanOut::new(links));
            let handle = any
                .start(config, Box::new(chain), Default::default())
                .map_err(failed)?;
            trackers.push(handle);
        }
        Ok(Guard {
            rules: rules.iter().map(|r| r.id.clone()).collect(),
            trackers,
            enforced: enforces.then_some(baselines),
            _stats: stats,
        })
    }

    /// The ids of the rules it runs.
    pub fn rules(&self) -> &[String] {
        &self.rules
    }

    /// The ids of the baselines it enforces.
    pub fn baselines(&self) -> Vec<i64> {
        self.enforced.as_ref().map_or_else(Vec::new, |b| b.ids())
    }

    /// The trackers it runs.
    pub fn trackers(&self) -> Vec<&'static str> {
        self.trackers.iter().map(|t| t.tracker()).collect()
    }

    /// Events seen and lost so far, over its trackers.
    pub fn stats(&self) -> Stats {
        self.trackers
            .iter()
            .map(TrackerHandle::stats)
            .fold(Stats::default(), |sum, s| sum + s)
    }

    /// A tracker that ended by itself (an error on its thread): the guard is then blind to
    /// its events.
    pub fn failed_tracker(&self) -> Option<&'static str> {
        self.trackers
            .iter()
            .find(|t| t.is_finished())
            .map(|t| t.tracker())
    }

    pub fn cost(&self) -> GuardCost {
        let mut cost = GuardCost::default();
        for tracker in &self.trackers {
            for &id in tracker.prog_ids() {
                if let Some((ns, runs)) = system::prog_run_time(id) {
                    cost.bpf_run_time += Duration::from_nanos(ns);
                    cost.bpf_runs += runs;
                }
            }
            cost.cpu_time += tracker.thread_cpu_time().unwrap_or_default();
        }
        cost
    }

    /// Stops every tracker (each drains what its ring buffer still holds through the
    /// rules); returns the final counts.
    pub fn stop(self) -> Result<Stats, TrackerError> {
        let mut sum = Stats::default();
        for tracker in self.trackers {
            sum = sum + tracker.stop()?;
        }
        Ok(sum)
    }
}

/// How the guard runs `tracker` for `rules`: for the security tracker only the calls the
/// rules name that this kernel has (None when it has none of them), for the files tracker
/// each open and no reads or writes, for the process tracker each exec's arguments and
/// parent; the server's own process left out. Its events wake the guard one by one, so that an alert or a kill
/// does not wait for the next poll, except the files tracker's: an event per open of the
/// whole host is batched unless a kill rule reads it.
fn config_for(tracker: &str, rules: &[Arc<Rule>]) -> Option<TrackerConfig> {
    let mut options = serde_json::Map::new();
    let reads = |r: &&Arc<Rule>| r.sources.iter().any(|s| s.tracker == tracker);
    let kills = rules.iter().filter(reads).any(|r| r.action == Action::Kill);
    let mut wake_per_event = true;
    match tracker {
        "files" => {
            options = FilesOptions::opens_only();
            wake_per_event = kills;
        }
        "process" => {
            options.insert("exec_details".into(), true.into());
        }
        // The kernel checks capabilities all the time (one per memory reservation): only
        // those the rules name are sent, when every rule names some.
        "capable" => {
            let named: Option<Vec<Vec<String>>> = rules
                .iter()
                .filter(reads)
                .map(|r| r.required_texts("capability"))
                .collect();
            if let Some(named) = named {
                let mut capabilities: Vec<String> = named.concat();
                capabilities.sort();
                capabilities.dedup();
                options.insert("capabilities".into(), capabilities.into());
            }
        }
        "security" => {
            let sources = rules
                .iter()
                .flat_map(|r| &r.sources)
                .filter(|s| s.tracker == tracker);
            let mut calls = BTreeSet::new();
            for source in sources {
                if source.kinds.is_empty() {
                    calls.extend(security::CALLS.iter().map(|c| c.to_string()));
                } else {
                    calls.extend(source.kinds.iter().cloned());
                }
            }
            calls.retain(|call| security::traceable(call));
            if calls.is_empty() {
                return None;
            }
            options.insert("calls".into(), calls.into_iter().collect());
        }
        _ => {}
    }
    Some(TrackerConfig {
        exclude_pid: Some(std::process::id()),
        wake_per_event,
        options,
        ..TrackerConfig::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capabilities_sent(yaml: Option<&str>, ids: &[&str]) -> Option<serde_json::Value> {
        let set = yaml.map_or_else(RuleSet::builtin, |y| RuleSet::parse(y).unwrap());
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        let rules = set.select(&ids).unwrap();
        let config = config_for("capable", &rules).unwrap();
        config.options.get("capabilities").cloned()
    }

    #[test]
    fn the_capable_tracker_sends_only_the_capabilities_the_rules_require() {
        let sent = capabilities_sent(None, &["container_unneeded_capability"]).unwrap();
        let sent: Vec<&str> = sent
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(sent.len(), 15, "{sent:?}");
        assert!(sent.contains(&"CAP_NET_ADMIN") && !sent.contains(&"CAP_SYS_ADMIN"));

        let yaml = r#"
- rule: admin
  name: n
  description: d
  severity: LOW
  mitre: {technique: T1, name: n, tactic: t}
  sources: [{tracker: capable}]
  condition: capability == "CAP_SYS_ADMIN"
  output: o
- rule: any_denial
  name: n
  description: d
  severity: LOW
  mitre: {technique: T1, name: n, tactic: t}
  sources: [{tracker: capable}]
  condition: verdict == "denied"
  output: o
"#;
        assert_eq!(
            capabilities_sent(Some(yaml), &["admin"]),
            Some(serde_json::json!(["CAP_SYS_ADMIN"]))
        );
        // A rule that reads every capability: the kernel sends them all.
        assert_eq!(
            capabilities_sent(Some(yaml), &["admin", "any_denial"]),
            None
        );
    }
}
