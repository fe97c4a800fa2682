//! The config loader: one TOML file, every key optional. Command-line flags override
//! `listen` and `db`.
//!
//! ```toml
//! listen = "127.0.0.1:8527"
//! db = "./eunomia.db"
//! insecure_http = false   # true allows a non-loopback address without [tls]
//! [tls]
//! cert = "/etc/eunomia/cert.pem"   # PEM chain, leaf first; reloaded on SIGHUP
//! key = "/etc/eunomia/key.pem"
//! [sessions]
//! max_duration_secs = 3600
//! max_concurrent = 16
//! ringbuf_budget_bytes = 1073741824
//! warm = ["process", "syscall", "tcp", "files", "ipc"]   # trackers loaded ahead; [] for none
//! [retention]
//! max_age_secs = 604800
//! max_events = 50000000
//! [memory]
//! max_groups = 1000000
//! recent_events = 10000
//! [limits]
//! query_depth = 16
//! query_complexity = 10000
//! body_bytes = 1048576
//! request_timeout_secs = 30
//! websockets = 256
//! websockets_per_client = 32
//! websocket_init_timeout_secs = 10
//! [security]
//! rules_file = "/etc/eunomia/rules.yaml"   # instead of the built-in rules; reloaded by
//!                                          # SIGHUP and the reloadRules mutation
//! dedup_secs = 30       # the same rule, process and output within this counts up one alert
//! max_alerts = 100000   # stored alerts kept, oldest dropped first
//! [guard]
//! enabled = true        # run the standing guard from start-up
//! rules = ["*"]         # rule ids, "*" for all
//! [fleet]
//! database = "postgres://eunomia@db.example/eunomia"   # shared by the fleet's nodes
//! node = "web-1"        # this server's name in the fleet (default: the hostname)
//! cgroup = "/sys/fs/cgroup/node-a"   # optional: fleet sessions trace this cgroup only
//! [[tokens]]
//! name = "ci"
//! role = "operator"   # or "viewer"
//! token = "a long random string"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The longest session or CLI run anyone may ask for: a year.
pub const MAX_DURATION_SECS: u64 = 365 * 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub db: PathBuf,
    pub sessions: SessionLimits,
    pub retention: Retention,
    pub memory: Memory,
    pub limits: Limits,
    pub security: Security,
    pub guard: GuardConfig,
    pub metrics: MetricsConfig,
    /// Standing exporters: trackers run from start-up to feed metrics.
    pub exporters: Vec<ExporterConfig>,
    pub tokens: Vec<Token>,
    pub tls: Option<Tls>,
    /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy).
    pub insecure_http: bool,
    /// Where the minimal BTF of each probe is cached (faster session starts); empty: no
    /// cache.
    pub btf_cache: PathBuf,
    pub fleet: FleetConfig,
}

/// Membership of a fleet: servers that share one PostgreSQL database and run sessions
/// together (see `fleet`).
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// `postgres://...`; none: this server is in no fleet.
    pub database: Option<String>,
    /// This server's name among the nodes; empty: the hostname.
    pub node: String,
    /// A cgroup (v2 directory) that this node's fleet sessions are kept to, for nodes
    /// that share a host; none: the whole host.
    pub cgroup: Option<PathBuf>,
}

impl FleetConfig {
    /// This server's node name: `node`, else the hostname; `Err` with the name when it is
    /// not one (see [`is_node_name`]).
    pub fn node_name(&self) -> Result<String, String> {
        let name = match self.node.trim() {
            "" => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim()
                .to_string(),
            name => name.to_string(),
        };
        match is_node_name(&name) {
            true => Ok(name),
            false => Err(name),
        }
    }
}

/// Whether `name` can name a node: 1 to 64 letters, digits, `.`, `_` or `-`.
pub fn is_node_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The security analyzer's rules and alerts.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Security {
    /// A rules file to load instead of the built-in rules.
    pub rules_file: Option<PathBuf>,
    pub dedup_secs: u64,
    pub max_alerts: u64,
}

impl Default for Security {
    fn default() -> Self {
        Self {
            rules_file: None,
            dedup_secs: 30,
            max_alerts: 100_000,
        }
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, async_graphql::Enum,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MetricKind {
    /// Counts events (weighted, for records that stand for many calls), or sums `field`.
    Counter,
    /// The last event's `field`.
    Gauge,
    /// Each event's `field`, in `buckets`.
    Histogram,
}

/// One metric a session or a standing exporter exports (see `exporter`): in the API, a
/// session's `metrics` entry; in the config, an `[[exporters]]` entry's.
#[derive(
    Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, async_graphql::InputObject,
)]
#[serde(deny_unknown_fields)]
#[graphql(name = "SessionMetric")]
pub struct MetricSpec {
    /// Exported as `eunomia_session_<name>` (a session's) or `eunomia_exporter_<name>`,
    /// counters with `_total`.
    pub name: String,
    #[serde(rename = "type")]
    #[graphql(name = "type")]
    pub kind: MetricKind,
    /// The measure: needed by gauges and histograms; a COUNTER without one counts events
    /// (calls, for records that stand for many).
    pub field: Option<String>,
    /// Catalog fields whose values label the series.
    #[serde(default)]
    #[graphql(default)]
    pub labels: Vec<String>,
    /// Histogram bucket bounds, ascending; Prometheus's defaults when absent.
    pub buckets: Option<Vec<f64>>,
}

/// A standing exporter: a tracker run from start-up only to feed `metrics`.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExporterConfig {
    pub tracker: String,
    /// The tracker's options, as a session's `config` gives them.
    #[serde(default)]
    pub options: serde_json::Map<String, serde_json::Value>,
    pub metrics: Vec<MetricSpec>,
}

/// Metrics that sessions and standing exporters export.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// How long a session's metrics stay on /metrics after it ends (a scraper's last
    /// look at the final values).
    pub session_keep_secs: u64,
    /// Label sets one metric may have; past it, samples go to `other`.
    pub max_series: usize,
    /// Run the built-in standing exporters (per container: process starts and exits,
    /// TCP connections and bytes, file bytes, syscall errors).
    pub default_exporters: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            session_keep_secs: 300,
            max_series: 1000,
            default_exporters: false,
        }
    }
}

/// The standing guard started with the server.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    pub enabled: bool,
    /// Rule ids; `*` for all.
    pub rules: Vec<String>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            rules: vec!["*".to_string()],
        }
    }
}

/// HTTPS: without it the server speaks plain HTTP, which only loopback may carry.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionLimits {
    pub max_duration_secs: u64,
    pub max_concurrent: usize,
    /// Ring buffer bytes all running sessions may lock in the kernel together.
    pub ringbuf_budget_bytes: u64,
    /// Trackers the warm pool keeps an instance of, loaded ahead of its session.
    pub warm: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Ended sessions older than this are deleted.
    pub max_age_secs: Option<u64>,
    /// Oldest ended sessions are deleted until at most this many events are stored.
    pub max_events: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Memory {
    pub max_groups: usize,
    pub recent_events: usize,
}

#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub query_depth: usize,
    pub query_complexity: usize,
    pub body_bytes: usize,
    /// Bounds queries and mutations, over HTTP and websockets.
    pub request_timeout_secs: u64,
    /// Open websockets, in all and per client address.
    pub websockets: usize,
    pub websockets_per_client: usize,
    /// A websocket that has not sent `connection_init` by then is closed (4408).
    pub websocket_init_timeout_secs: u64,
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Deserialize,
    serde::Serialize,
    async_graphql::Enum,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Queries and subscriptions.
    Viewer,
    /// Mutations too.
    Operator,
}

#[derive(Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    pub name: String,
    pub role: Role,
    pub token: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8527)),
            db: PathBuf::from("./eunomia.db"),
            sessions: SessionLimits::default(),
            retention: Retention::default(),
            memory: Memory::default(),
            limits: Limits::default(),
            security: Security::default(),
            guard: GuardConfig::default(),
            metrics: MetricsConfig::default(),
            exporters: Vec::new(),
            tokens: Vec::new(),
            tls: None,
            insecure_http: false,
            btf_cache: PathBuf::from("/var/cache/eunomia/btf"),
            fleet: FleetConfig::default(),
        }
    }
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_duration_secs: 3600,
            max_concurrent: 16,
            ringbuf_budget_bytes: 1 << 30,
            warm: ["process", "syscall", "tcp", "files", "ipc"]
                .map(String::from)
                .to_vec(),
        }
    }
}

impl Default for Memory {
    fn default() -> Self {
        Self {
            max_groups: 1_000_000,
            recent_events: 10_000,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            query_depth: 16,
            query_complexity: 10_000,
            body_bytes: 1 << 20,
            request_timeout_secs: 30,
            websockets: 256,
            websockets_per_client: 32,
            websocket_init_timeout_secs: 10,
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(config)
    }

    /// Checks what the types cannot: ranges, and no open port without tokens and TLS.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if !(1..=MAX_DURATION_SECS).contains(&self.sessions.max_duration_secs) {
            return invalid(format!(
                "sessions.max_duration_secs must be between 1 and {MAX_DURATION_SECS} (a year)"
            ));
        }
        if self.sessions.max_concurrent == 0 {
            return invalid("sessions.max_concurrent must be at least 1".into());
        }
        if let Some(short) = self.tokens.iter().find(|t| t.token.len() < 16) {
            return invalid(format!(
                "token `{}` is shorter than 16 characters",
                short.name
            ));
        }
        for (i, token) in self.tokens.iter().enumerate() {
            if let Some(other) = self.tokens[..i].iter().find(|t| t.token == token.token) {
                return invalid(format!(
                    "tokens `{}` and `{}` have the same secret; each needs its own",
                    other.name, token.name
                ));
            }
        }
        if !self.listen.ip().is_loopback() && self.tokens.is_empty() {
            return invalid(format!(
                "refusing to listen on {} (not loopback) without any [[tokens]] in the config",
                self.listen
            ));
        }
        if !self.listen.ip().is_loopback() && self.tls.is_none() && !self.insecure_http {
            return invalid(format!(
                "refusing to serve {} (not loopback) over plain HTTP, where tokens cross the \
                 network in clear text: give --tls-cert and --tls-key, or --insecure-http \
                 behind a TLS-terminating proxy",
                self.listen
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_section_and_refuses_open_ports_without_tokens() {
        let config: Config = toml::from_str(
            r#"
            listen = "0.0.0.0:9000"
            [tls]
            cert = "cert.pem"
            key = "key.pem"
            [sessions]
            max_duration_secs = 60
            [[tokens]]
            name = "ops"
            role = "operator"
            token = "0123456789abcdef0123"
            "#,
        )
        .unwrap();
        assert_eq!(config.sessions.max_duration_secs, 60);
        assert_eq!(config.sessions.max_concurrent, 16);
        assert_eq!(config.tokens[0].role, Role::Operator);
        config.validate().unwrap();
        assert!(
            !format!("{:?}", config.tokens[0]).contains("0123456789"),
            "tokens never reach logs"
        );

        let clear_text = Config {
            tls: None,
            ..config.clone()
        };
        assert!(clear_text
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("refusing to serve 0.0.0.0:9000 (not loopback) over plain HTTP"));
        Config {
            insecure_http: true,
            ..clear_text
        }
        .validate()
        .unwrap();
        let open = Config {
            tokens: vec![],
            ..config
        };
        assert!(open
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("refusing to listen on 0.0.0.0:9000"));
        assert!(toml::from_str::<Config>("nonsense = 1").is_err());
    }

    /// The README's example configuration is one this loader takes, every key of it.
    #[test]
    fn the_readme_example_loads() {
        let readme = include_str!("../README.md");
        let section = &readme[readme.find("### Configuration").expect("the section")..];
        let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let text = &section[start..start + section[start..].find("```").unwrap()];
        let config: Config = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.metrics.max_series, 1000);
        assert_eq!(config.exporters[0].metrics[0].name, "execs");
        assert_eq!(config.guard.rules, ["*"]);
    }

    #[test]
    fn refuses_shared_token_secrets_and_endless_sessions() {
        let config: Config = toml::from_str(
            r#"
            [[tokens]]
            name = "ops"
            role = "operator"
            token = "0123456789abcdef0123"
            [[tokens]]
            name = "viewer"
            role = "viewer"
            token = "0123456789abcdef0123"
            "#,
        )
        .unwrap();
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "tokens `ops` and `viewer` have the same secret; each needs its own"
        );
        let mut endless = Config::default();
        endless.sessions.max_duration_secs = u64::MAX;
        assert_eq!(
            endless.validate().unwrap_err().to_string(),
            "sessions.max_duration_secs must be between 1 and 31536000 (a year)"
        );
    }
}
