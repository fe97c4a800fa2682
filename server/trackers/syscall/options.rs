//! The syscall tracker's options.

use serde::{Deserialize, Serialize};

use crate::engine::{IntervalMs, Mode, TrackerOptions};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SyscallOptions {
    /// `aggregate` counts calls per process and syscall in the kernel and reports totals
    /// every interval (cheapest); `stream` reports every call.
    pub mode: Mode,
    /// How often aggregate mode reports, in milliseconds.
    pub interval_ms: IntervalMs,
    /// Time every call, at the cost of a second probe per call; on by default in stream
    /// mode, off in aggregate mode.
    pub latency: Option<bool>,
    /// Count only the calls of tasks that run under a seccomp filter: what a container's
    /// seccomp profile must allow, without its runtime's set-up before it installs one.
    pub seccomp_only: bool,
    /// Keep the first argument of the calls a seccomp profile can narrow by it: socket's
    /// family, clone's flags and personality's persona (field `arg0`; their totals are
    /// split by it).
    pub first_args: bool,
}

impl SyscallOptions {
    pub fn stream(&self) -> bool {
        self.mode == Mode::Stream
    }

    /// Whether calls are timed: as syscount, counting alone is the cheap default.
    pub fn latency(&self) -> bool {
        self.latency.unwrap_or(self.stream())
    }
}

impl TrackerOptions for SyscallOptions {
    fn reports_totals(&self) -> bool {
        !self.stream()
    }

    /// Totals have no single return value; untimed calls no latency.
    fn empty_fields(&self) -> Vec<&'static str> {
        let ret = (!self.stream()).then_some("ret");
        let latency = (!self.latency()).then_some("latency_ns");
        let arg0 = (!self.first_args).then_some("arg0");
        ret.into_iter().chain(latency).chain(arg0).collect()
    }
}
