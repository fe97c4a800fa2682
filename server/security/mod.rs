//! The security analyzer (the seed's security_analyzer): detection rules over the event
//! stream. Rules are YAML files of `list`, `macro` and `rule` entries, shaped as Falco
//! writes them, with conditions in CEL (`rules`); a session's chain runs the rules it asks
//! for on every event (`matcher`); what matches is an alert, stored and published
//! (`alerts`). The standing guard runs rules with no time window (`guard`); the server keeps
//! one (`standing`). Learned baselines (`baseline`) are the second method: what a
//! container did while learning, and an anomaly alert for anything else.

pub mod alerts;
pub mod baseline;
pub mod drift;
pub mod guard;
pub mod learning;
pub mod matcher;
mod prefilter;
pub mod rules;
pub mod standing;

pub use alerts::{AlertOptions, AlertSender, Alerts, Raised};
pub use baseline::{ActiveBaselines, Profile, Scope};
pub use guard::{Guard, GuardCost, GuardError};
pub use learning::{Baseline, BaselineError, BaselineState, Baselines, LearnTarget};
pub use matcher::{AlertSink, RuleMatcher};
pub use rules::{Rule, RuleError, RuleSet};
pub use standing::{GuardStatus, StandingError, StandingGuard};
