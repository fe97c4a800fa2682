//! The files tracker's options.

use serde::{Deserialize, Serialize};

use crate::engine::{IntervalMs, Mode, TrackerOptions};

/// The kind of file behind a file descriptor, as the files tracker reports it.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    Regular,
    Socket,
    Pipe,
    Other,
}

impl FileType {
    pub const ALL: [FileType; 4] = [
        FileType::Regular,
        FileType::Socket,
        FileType::Pipe,
        FileType::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FileType::Regular => "regular",
            FileType::Socket => "socket",
            FileType::Pipe => "pipe",
            FileType::Other => "other",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FilesOptions {
    /// How often read and write totals are reported, in milliseconds.
    pub interval_ms: IntervalMs,
    /// Which kinds of files to report.
    pub file_types: Vec<FileType>,
    /// `aggregate` (default) counts opens in the kernel per process, file, flags and
    /// result and reports the counts every interval, as reads and writes are: a server that
    /// opens a file per request is not slowed by an event per request. `stream` reports
    /// every call with the fd it returned.
    pub opens: Mode,
    /// Count reads and writes (default). Off, only openat is traced, on its own
    /// tracepoint, so that no other system call pays for the tracker: the guard's way of
    /// reading opens.
    pub io: bool,
}

impl FilesOptions {
    /// Each open as an event and no reads or writes, as a tracker config's options: how
    /// the guard and the baselines read files.
    pub fn opens_only() -> serde_json::Map<String, serde_json::Value> {
        let serde_json::Value::Object(options) =
            serde_json::json!({"opens": "stream", "io": false})
        else {
            unreachable!("an object literal");
        };
        options
    }
}

impl Default for FilesOptions {
    fn default() -> Self {
        Self {
            interval_ms: IntervalMs::default(),
            file_types: vec![FileType::Regular],
            opens: Mode::Aggregate,
            io: true,
        }
    }
}

impl TrackerOptions for FilesOptions {
    fn check(&self) -> Result<(), String> {
        if self.file_types.is_empty() {
            return Err("file_types must name at least one type".to_string());
        }
        Ok(())
    }

    /// Reads and writes are counted per interval, and so are opens by default.
    fn reports_totals(&self) -> bool {
        self.io || self.opens == Mode::Aggregate
    }

    /// Without `io`, no read or write counts.
    fn empty_fields(&self) -> Vec<&'static str> {
        match self.io {
            true => Vec::new(),
            false => vec!["reads", "writes", "read_bytes", "write_bytes"],
        }
    }
}
