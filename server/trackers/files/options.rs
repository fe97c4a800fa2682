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
}

impl Default for FilesOptions {
    fn default() -> Self {
        Self {
            interval_ms: IntervalMs::default(),
            file_types: vec![FileType::Regular],
            opens: Mode::Aggregate,
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

    /// Reads and writes are always counted per interval.
    fn reports_totals(&self) -> bool {
        true
    }
}
