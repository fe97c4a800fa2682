//! What a tracker instance is started with: the filter and ring buffer settings every
//! probe shares (the ring buffer's written into its read-only globals before load, the
//! filters into its `filter` global after load), and the tracker's own options, kept as JSON until the tracker parses them into its typed
//! [`TrackerOptions`](super::TrackerOptions).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::TrackerError;
use crate::model::common_h;

const DEFAULT_RINGBUF_BYTES: u32 = 4 << 20;
/// The largest ring buffer one instance may have: it is locked kernel memory, and a
/// larger one takes seconds to map.
pub const MAX_RINGBUF_BYTES: u32 = 256 << 20;
/// The cgroup filter map's capacity in the probes.
pub const MAX_CGROUP_FILTER: usize = common_h::CGROUP_FILTER_MAX;

/// Offsets in `struct filter_config`: the flags after four u32s, the comm after them.
pub const FILTER_FLAGS: usize = 16;
pub const FILTER_COMM: usize = FILTER_FLAGS + 2;
/// Its size, with the padding to its u32 alignment.
pub const FILTER_CONFIG_BYTES: usize = (FILTER_COMM + common_h::TASK_COMM_LEN).next_multiple_of(4);

/// Configuration that reaches the BPF side (the seed's `env`). As JSON it is
/// one flat object: the keys below, and any other key is an option of the tracker.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct TrackerConfig {
    /// Trace only this process (thread group id).
    pub target_pid: Option<u32>,
    /// Ignore processes whose parent is this pid (e.g. the tracer's own shell).
    pub exclude_current_ppid: Option<u32>,
    /// Ignore this process: the server's or the CLI's own, unless the user asks to see
    /// it (set by them, never from a request's JSON).
    #[serde(skip)]
    pub exclude_pid: Option<u32>,
    /// Trace only tasks in these cgroup v2 ids; empty means every cgroup.
    pub cgroup_ids: Vec<u64>,
    /// Match `cgroup_ids` against each task's ancestor cgroup at this level of the
    /// hierarchy rather than its own cgroup (0): a cgroup's whole subtree, the cgroups
    /// made in it later included. Set by the seccomp manager, not by requests.
    #[serde(skip)]
    pub cgroup_level: u32,
    /// Filter on cgroups even while `cgroup_ids` is empty: more are added as they appear
    /// ([`TrackerHandle::cgroup_filter`](super::TrackerHandle::cgroup_filter)). Set for
    /// sessions that follow containers, not by requests.
    #[serde(skip)]
    pub follow_cgroups: bool,
    /// Trace only tasks with this command name.
    pub comm: Option<String>,
    /// Ring buffer size: a power of two, at least one page.
    pub ringbuf_bytes: u32,
    /// Wake the reader for every record rather than once many wait or at its next poll
    /// (at most 50 ms later): for the guard's kill rules, which should not wait. Costs a
    /// wake-up per event.
    #[serde(skip)]
    pub wake_per_event: bool,
    /// The tracker's own options by name, checked when it starts.
    #[serde(flatten)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            target_pid: None,
            exclude_current_ppid: None,
            exclude_pid: None,
            cgroup_ids: Vec::new(),
            cgroup_level: 0,
            follow_cgroups: false,
            comm: None,
            ringbuf_bytes: DEFAULT_RINGBUF_BYTES,
            wake_per_event: false,
            options: serde_json::Map::new(),
        }
    }
}

impl TrackerConfig {
    /// This configuration with a tracker's typed options, e.g. in tests and benchmarks.
    pub fn with_options(mut self, options: impl Serialize) -> Self {
        match serde_json::to_value(options) {
            Ok(serde_json::Value::Object(map)) => self.options = map,
            other => panic!("tracker options serialize to a JSON object, not {other:?}"),
        }
        self
    }

    /// Checks the settings every tracker shares; each tracker checks its own options.
    pub fn validate(&self) -> Result<(), TrackerError> {
        let bad = |msg: String| Err(TrackerError::Config(msg));
        if !self.ringbuf_bytes.is_power_of_two() || self.ringbuf_bytes < 4096 {
            return bad(format!(
                "ringbuf_bytes must be a power of two of at least 4096, got {}",
                self.ringbuf_bytes
            ));
        }
        if let Some(comm) = &self.comm {
            if comm.contains('\0') {
                return bad(format!("comm must not contain NUL, got {comm:?}"));
            }
            if comm.is_empty() || comm.len() >= common_h::TASK_COMM_LEN {
                return bad(format!(
                    "comm must be 1 to {} bytes (the kernel's TASK_COMM_LEN), got {comm:?}",
                    common_h::TASK_COMM_LEN - 1
                ));
            }
        }
        if self.cgroup_ids.len() > MAX_CGROUP_FILTER {
            return bad(format!(
                "at most {MAX_CGROUP_FILTER} cgroup ids, got {}",
                self.cgroup_ids.len()
            ));
        }
        if self.cgroup_ids.contains(&0) {
            return bad("cgroup id 0 is no cgroup".to_string());
        }
        if self.ringbuf_bytes > MAX_RINGBUF_BYTES {
            return bad(format!(
                "ringbuf_bytes must be at most {MAX_RINGBUF_BYTES} ({} MiB), got {}",
                MAX_RINGBUF_BYTES >> 20,
                self.ringbuf_bytes
            ));
        }
        if self.target_pid == Some(0) {
            return bad("target_pid 0 is not a process".to_string());
        }
        Ok(())
    }

    /// This configuration without its filters: what a probe is loaded with, since the
    /// filters are written after load. Two configurations with the same key load the
    /// same programs.
    pub fn load_key(&self) -> TrackerConfig {
        // Every field named: a new one must be put on one side or the other.
        let TrackerConfig {
            ringbuf_bytes,
            wake_per_event,
            options,
            target_pid: _,
            exclude_current_ppid: _,
            exclude_pid: _,
            cgroup_ids: _,
            cgroup_level: _,
            follow_cgroups: _,
            comm: _,
        } = self;
        TrackerConfig {
            ringbuf_bytes: *ringbuf_bytes,
            wake_per_event: *wake_per_event,
            options: options.clone(),
            ..TrackerConfig::default()
        }
    }

    /// The filters as the probes' `struct filter_config` (probes/common.h) lays them out:
    /// four u32s, two flags, then the NUL-padded comm.
    pub fn filter(&self) -> [u8; FILTER_CONFIG_BYTES] {
        let mut out = [0u8; FILTER_CONFIG_BYTES];
        let words = [
            self.target_pid.unwrap_or(0),
            self.exclude_current_ppid.unwrap_or(0),
            self.exclude_pid.unwrap_or(0),
            self.cgroup_level,
        ];
        for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        out[FILTER_FLAGS] = u8::from(!self.cgroup_ids.is_empty() || self.follow_cgroups);
        out[FILTER_FLAGS + 1] = u8::from(self.comm.is_some());
        let comm = self.comm.as_deref().unwrap_or("").as_bytes();
        let kept = comm.len().min(common_h::TASK_COMM_LEN - 1);
        out[FILTER_COMM..FILTER_COMM + kept].copy_from_slice(&comm[..kept]);
        out
    }
}

/// Whether a tracker counts calls in the kernel and reports totals per interval, or reports
/// each call: an option of the trackers that can do both.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Aggregate,
    Stream,
}

/// How often a tracker drains its in-kernel aggregates, in milliseconds: an option of
/// every tracker that aggregates in the kernel, checked for range as it is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct IntervalMs(u64);

impl IntervalMs {
    const MIN: u64 = 10;
    const MAX: u64 = 3_600_000;

    pub fn duration(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl schemars::JsonSchema for IntervalMs {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "IntervalMs".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "integer", "minimum": Self::MIN, "maximum": Self::MAX })
    }
}

impl Default for IntervalMs {
    fn default() -> Self {
        IntervalMs(1000)
    }
}

impl TryFrom<u64> for IntervalMs {
    type Error = String;

    fn try_from(ms: u64) -> Result<Self, String> {
        if (Self::MIN..=Self::MAX).contains(&ms) {
            Ok(IntervalMs(ms))
        } else {
            Err(format!(
                "interval_ms must be between {} and {}, got {ms}",
                Self::MIN,
                Self::MAX
            ))
        }
    }
}

impl From<IntervalMs> for u64 {
    fn from(interval: IntervalMs) -> u64 {
        interval.0
    }
}
