//! The options and parsers `run` and `session` share: what to trace, how to group and
//! how to print, so that the same flag means the same everywhere.

use std::time::Duration;

use clap::builder::PossibleValuesParser;

use crate::engine::Mode;
use crate::handler::{AggOp, Clock, Format, Stage};
use crate::model::TrackerInfo;
use crate::trackers::files::FileType;
use crate::trackers::{AnyTracker, TRACKERS};

/// What to trace and how: the kernel's filters and the tracker's options, the same for
/// `run` and `session start`.
#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// Trace only this process id (filtered in the kernel); it must exist.
    #[arg(short = 'p', long, value_parser = clap::value_parser!(u32).range(1..))]
    pub pid: Option<u32>,
    /// Trace only tasks with this command name (filtered in the kernel).
    #[arg(short = 'c', long)]
    pub comm: Option<String>,
    /// Trace only tasks in this cgroup v2 id (filtered in the kernel); repeatable.
    #[arg(long = "cgroup-id", value_name = "ID")]
    pub cgroup_ids: Vec<u64>,
    /// Trace eunomia's own process too (left out by default: its threads would report
    /// their own polling and printing or storing).
    #[arg(long)]
    pub include_self: bool,
    /// Trace only this running container, through restarts: a name, an id or a unique id
    /// prefix (filtered in the kernel by its cgroups).
    #[arg(long, value_name = "NAME|ID", conflicts_with_all = ["cgroup_ids", "container_name", "image"])]
    pub container: Option<String>,
    /// Trace the containers of this name, running or started while tracing (from their
    /// first exec).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["cgroup_ids", "image"])]
    pub container_name: Option<String>,
    /// Trace the containers of this image, running or started while tracing.
    #[arg(long, value_name = "IMAGE", conflicts_with = "cgroup_ids")]
    pub image: Option<String>,
    /// Ring buffer size in bytes (a power of two); larger absorbs longer bursts.
    #[arg(long, value_name = "BYTES")]
    pub ringbuf_bytes: Option<u32>,
    /// Set one of the tracker's options (see `eunomia options <tracker>`); repeatable. The
    /// value is JSON, or else a string; a list may be given comma-separated.
    #[arg(long = "opt", value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// Shorthand for `--opt min_duration_ns=` in milliseconds (process tracker).
    #[arg(long, value_name = "MS")]
    pub min_duration_ms: Option<u64>,
    /// Shorthand for `--opt mode=` (syscall tracker).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Shorthand for `--opt interval_ms=` (syscall aggregate mode, files).
    #[arg(long, value_name = "MS")]
    pub interval_ms: Option<u64>,
    /// Shorthand for `--opt latency=` (syscall tracker).
    #[arg(long)]
    pub latency: Option<bool>,
    /// Shorthand for `--opt file_types=` (files tracker; comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub file_types: Option<Vec<FileType>>,
}

/// Grouping events: by which fields, and what to compute per group.
#[derive(Debug, clap::Args)]
pub struct GroupArgs {
    /// Count calls per group of these comma-separated fields and print the groups.
    #[arg(long, value_name = "FIELDS", value_delimiter = ',')]
    pub group_by: Vec<String>,
    /// With --group-by: what to compute per group over --field, besides the calls.
    #[arg(long, value_enum, default_value_t = AggOp::Count, requires = "group_by")]
    pub op: AggOp,
    /// With --op other than count: the numeric field it applies to.
    #[arg(long, value_name = "FIELD", requires = "group_by")]
    pub field: Option<String>,
    /// With --group-by: print only the first N groups.
    #[arg(long, value_name = "N", requires = "group_by")]
    pub top: Option<usize>,
}

/// How records are printed: the same options wherever eunomia prints them.
#[derive(Debug, clap::Args)]
pub struct PrintArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Columns of the text table (comma-separated); defaults to the main fields.
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Output as json, csv, text, or a text table of columns=F1,F2 (the short form of
    /// --format and --columns).
    #[arg(short = 'o', value_name = "json|csv|text|columns=F1,F2", conflicts_with_all = ["format", "columns"])]
    pub output: Option<String>,
    /// Values as they are in the text table: no errno or flag names, durations in ns,
    /// paths uncut.
    #[arg(long)]
    pub raw: bool,
    /// Times in the text table in UTC; by default local (with the date when TZ is set).
    #[arg(long)]
    pub utc: bool,
}

impl PrintArgs {
    /// The format, and the text table's columns when chosen: `-o` is the short way to
    /// say both.
    pub fn format(&self) -> Result<(Format, Vec<String>), String> {
        let (format, chosen) = match self.output.as_deref() {
            None => (self.format, self.columns.clone()),
            Some("json") => (Format::Json, Vec::new()),
            Some("csv") => (Format::Csv, Vec::new()),
            Some("text") => (Format::Text, Vec::new()),
            Some(other) => match other.strip_prefix("columns=") {
                Some(list) => (Format::Text, list.split(',').map(str::to_string).collect()),
                None => {
                    return Err(format!(
                        "-o takes json, csv, text or columns=F1,F2, got `{other}`"
                    ))
                }
            },
        };
        if !chosen.is_empty() && format != Format::Text {
            return Err(
                "--columns chooses the text table's columns; json and csv print every field".into(),
            );
        }
        Ok((format, chosen))
    }

    /// How the text table shows times: local, as bpftrace and the libbpf-tools print
    /// them, with the date when the user chose a zone; UTC with --utc.
    pub fn clock(&self) -> Clock {
        match (self.utc, std::env::var_os("TZ").is_some()) {
            (true, _) => Clock::Utc,
            (false, true) => Clock::LocalDate,
            (false, false) => Clock::Local,
        }
    }

    /// The print stage; a text table without chosen columns shows `default_columns`
    /// (every field without them).
    pub fn stage(&self, default_columns: Option<Vec<String>>) -> Result<Stage, String> {
        let (format, chosen) = self.format()?;
        let columns = if !chosen.is_empty() {
            Some(chosen)
        } else if format == Format::Text {
            default_columns
        } else {
            None
        };
        Ok(Stage::Print {
            format,
            columns,
            raw: self.raw,
            clock: self.clock(),
        })
    }
}

pub fn tracker_names() -> PossibleValuesParser {
    PossibleValuesParser::new(TRACKERS.iter().map(|t| t.info().name))
}

/// A run's length: a number with an optional unit (ms, s, m, h; seconds without one),
/// more than 0 and at most a year.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let at = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(at);
    let scale = match unit {
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown unit `{unit}`: use ms, s, m or h")),
    };
    let secs = number
        .parse::<f64>()
        .map_err(|_| "not a duration: give e.g. 30, 1.5, 30s, 500ms, 2m or 1h".to_string())?
        * scale;
    let max = crate::config::MAX_DURATION_SECS;
    if !(secs > 0.0 && secs <= max as f64) {
        return Err(format!("must be more than 0 and at most {max} s (a year)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The text table's default columns: who and what, then the tracker's own fields but
/// those no event of the run has (`empty`).
pub fn default_columns(info: &TrackerInfo, empty: &[&str]) -> Vec<String> {
    ["ts", "kind", "pid", "ppid", "comm"]
        .iter()
        .copied()
        .chain(info.fields.iter().map(|f| f.name))
        .filter(|name| !empty.contains(name))
        .map(String::from)
        .collect()
}

/// The tracker's options from `--opt` and the shorthand flags; each option once.
pub fn tracker_options(
    args: &TraceArgs,
    tracker: &dyn AnyTracker,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    use serde_json::json;
    let shorthands = [
        (
            "min_duration_ns",
            args.min_duration_ms
                .map(|ms| json!(ms.saturating_mul(1_000_000))),
        ),
        ("mode", args.mode.map(|m| json!(m))),
        ("interval_ms", args.interval_ms.map(|ms| json!(ms))),
        ("latency", args.latency.map(|on| json!(on))),
        ("file_types", args.file_types.as_ref().map(|t| json!(t))),
    ];
    let declared = tracker.options();
    let given = args.options.iter().map(|pair| {
        let (key, text) = pair
            .split_once('=')
            .ok_or_else(|| format!("--opt takes KEY=VALUE, got `{pair}`"))?;
        let list = declared
            .iter()
            .any(|o| o.name == key && o.type_name.starts_with('['));
        Ok::<_, String>((key.to_string(), option_value(text, list)))
    });
    let mut options = serde_json::Map::new();
    for entry in shorthands
        .into_iter()
        .filter_map(|(key, value)| value.map(|v| Ok((key.to_string(), v))))
        .chain(given)
    {
        let (key, value) = entry?;
        if options.insert(key.clone(), value).is_some() {
            return Err(format!("option `{key}` is given twice"));
        }
    }
    Ok(options)
}

/// An `--opt` value: JSON if it parses as JSON, else the text itself; for a list option,
/// comma-separated text is a list of such values.
fn option_value(text: &str, list: bool) -> serde_json::Value {
    let one = |text: &str| {
        serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
    };
    match one(text) {
        serde_json::Value::Array(values) => serde_json::Value::Array(values),
        _ if list => text.split(',').map(one).collect(),
        value => value,
    }
}
