//! Sinks that print records: JSON Lines, a plain-text table, CSV.
//!
//! Printers keep going after a write error (a closed pipe, say) without writing more, and
//! report the first error at `flush`/`finish`, so the caller decides what it means.

use std::io::{self, Write};

use super::{Flow, Handler};
use crate::model::{rfc3339_nanos, FieldFormat, Record, TrackerInfo, Value};

/// Output format, as the CLI and chain specs name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Json,
    Text,
    Csv,
}

/// Remembers the first write error and stops writing after it.
struct Sink<W: Write> {
    out: W,
    error: Option<io::Error>,
}

impl<W: Write> Sink<W> {
    fn new(out: W) -> Self {
        Self { out, error: None }
    }

    fn write(&mut self, f: impl FnOnce(&mut W) -> io::Result<()>) {
        if self.error.is_none() {
            if let Err(err) = f(&mut self.out) {
                self.error = Some(err);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write(|out| out.flush());
        match &self.error {
            Some(err) => Err(io::Error::new(err.kind(), err.to_string())),
            None => Ok(()),
        }
    }
}

/// One JSON object per line; field names and order are the tracker's catalog.
pub struct JsonPrinter<W: Write> {
    sink: Sink<W>,
    line: Vec<u8>,
}

impl<W: Write> JsonPrinter<W> {
    pub fn new(out: W) -> Self {
        Self {
            sink: Sink::new(out),
            line: Vec::with_capacity(512),
        }
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_str(line: &mut Vec<u8>, s: &str) {
    line.push(b'"');
    for &byte in s.as_bytes() {
        match byte {
            b'"' => line.extend_from_slice(b"\\\""),
            b'\\' => line.extend_from_slice(b"\\\\"),
            b'\n' => line.extend_from_slice(b"\\n"),
            b'\r' => line.extend_from_slice(b"\\r"),
            b'\t' => line.extend_from_slice(b"\\t"),
            0..=0x1f => line.extend_from_slice(format!("\\u{byte:04x}").as_bytes()),
            _ => line.push(byte),
        }
    }
    line.push(b'"');
}

fn push_json_value(line: &mut Vec<u8>, value: Value<'_>) {
    match value {
        Value::Null => line.extend_from_slice(b"null"),
        Value::U64(v) => line.extend_from_slice(v.to_string().as_bytes()),
        Value::I64(v) => line.extend_from_slice(v.to_string().as_bytes()),
        Value::Str(s) => push_json_str(line, s),
        Value::Time(ns) => push_json_str(line, &rfc3339_nanos(ns)),
    }
}

/// Appends `record` as one JSON object (no newline) to `line`.
pub fn push_json_record<R: Record + ?Sized>(line: &mut Vec<u8>, record: &R) {
    let start = line.len();
    // Events visit their fields in catalog order: each field's entry is the next one.
    let mut catalog = record.catalog().map(TrackerInfo::all_fields);
    let mut text = String::new();
    line.push(b'{');
    record.visit(&mut |name, value| {
        if line.len() > start + 1 {
            line.push(b',');
        }
        push_json_str(line, name);
        line.push(b':');
        push_json_value(line, value);
        let format = catalog
            .as_mut()
            .and_then(Iterator::next)
            .filter(|f| f.name == name)
            .map_or(FieldFormat::Plain, |f| f.format);
        text.clear();
        if format.in_json() && format.write(value, &mut text) {
            // The number stays as it is; people's reading of it follows as `<name>_text`.
            line.push(b',');
            push_json_str(line, name);
            line.pop();
            line.extend_from_slice(b"_text\":");
            push_json_str(line, &text);
        }
    });
    line.push(b'}');
}

impl<R: Record + ?Sized, W: Write + Send> Handler<R> for JsonPrinter<W> {
    fn handle(&mut self, record: &R) -> Flow {
        self.line.clear();
        push_json_record(&mut self.line, record);
        self.line.push(b'\n');
        let line = &self.line;
        self.sink.write(|out| out.write_all(line));
        Flow::Caught
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }
}

/// Comma-separated values with a header line taken from the first record.
pub struct CsvPrinter<W: Write> {
    sink: Sink<W>,
    header_done: bool,
    line: String,
}

impl<W: Write> CsvPrinter<W> {
    pub fn new(out: W) -> Self {
        Self {
            sink: Sink::new(out),
            header_done: false,
            line: String::with_capacity(512),
        }
    }
}

/// RFC 4180: quote a cell when it holds a comma, a quote or a line break.
fn push_csv_cell(line: &mut String, cell: &str) {
    if cell.contains([',', '"', '\n', '\r']) {
        line.push('"');
        line.push_str(&cell.replace('"', "\"\""));
        line.push('"');
    } else {
        line.push_str(cell);
    }
}

impl<R: Record + ?Sized, W: Write + Send> Handler<R> for CsvPrinter<W> {
    fn handle(&mut self, record: &R) -> Flow {
        use std::fmt::Write as _;
        let line = &mut self.line;
        line.clear();
        if !self.header_done {
            self.header_done = true;
            record.visit(&mut |name, _| {
                if !line.is_empty() {
                    line.push(',');
                }
                push_csv_cell(line, name);
            });
            line.push('\n');
        }
        let mut first = true;
        record.visit(&mut |_, value| {
            if !first {
                line.push(',');
            }
            first = false;
            match value {
                Value::Str(s) => push_csv_cell(line, s),
                other => {
                    let _ = write!(line, "{other}");
                }
            }
        });
        line.push('\n');
        let line = &self.line;
        self.sink.write(|out| out.write_all(line.as_bytes()));
        Flow::Caught
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }
}

/// An aligned plain-text table: a header line, then one line per record.
///
/// `columns` picks and orders the fields shown; `None` shows every field. Column widths
/// come from the header and the value type; longer values widen their line, not the table.
/// Lines are built in one reused buffer: a busy tracker prints tens of thousands a second.
pub struct TextPrinter<W: Write> {
    sink: Sink<W>,
    columns: Option<Vec<String>>,
    widths: Vec<usize>,
    /// The least width of each column, where the caller knows its values beforehand.
    least: Vec<usize>,
    /// How people read each column (an errno name instead of -2, flag names ...).
    formats: Vec<FieldFormat>,
    /// Numbers as they are: every column plain.
    raw: bool,
    /// Whether a periodic table has begun (so the next one is set apart).
    started: bool,
    clock: Clock,
    line: String,
    /// One cell's text, before it is padded into `line`.
    cell: String,
}

impl<W: Write> TextPrinter<W> {
    pub fn new(out: W, columns: Option<Vec<String>>) -> Self {
        Self {
            sink: Sink::new(out),
            columns,
            widths: Vec::new(),
            least: Vec::new(),
            formats: Vec::new(),
            raw: false,
            started: false,
            clock: Clock::Utc,
            line: String::with_capacity(256),
            cell: String::with_capacity(64),
        }
    }

    /// With `raw`, numbers are printed as they are, not as people read them.
    pub fn raw(self, raw: bool) -> Self {
        Self { raw, ..self }
    }

    /// Columns at least this wide, in order: a table printed whole (a list of sessions)
    /// fits its longest values.
    pub fn widths_at_least(self, least: Vec<usize>) -> Self {
        Self { least, ..self }
    }

    /// How times are shown (UTC time of day unless told).
    pub fn clock(self, clock: Clock) -> Self {
        Self { clock, ..self }
    }

    /// Calls `f` with each shown field of `record`, in order.
    fn each_cell<R: Record + ?Sized>(
        columns: &Option<Vec<String>>,
        record: &R,
        f: &mut dyn FnMut(&str, Value<'_>),
    ) {
        match columns {
            Some(columns) => {
                for name in columns {
                    f(name, record.get(name).unwrap_or(Value::Null));
                }
            }
            None => record.visit(&mut |name, value| f(name, value)),
        }
    }
}

fn default_width(value: Value<'_>, format: FieldFormat, clock: Clock) -> usize {
    match value {
        _ if format == FieldFormat::Path => PATH_WIDTH,
        Value::Time(_) => clock.width(),
        Value::Str(_) => 16,
        Value::U64(_) | Value::I64(_) | Value::Null => 7,
    }
}

/// The width of a path column; longer paths are cut in the middle (but in the last column,
/// which may run on).
const PATH_WIDTH: usize = 32;

/// Appends `text` cut to `width` characters, its middle replaced by `…`: the start says
/// where, the end (kept longer) which file.
fn push_cut_in_the_middle(out: &mut String, text: &str, width: usize) {
    let n = text.chars().count();
    if n <= width || width < 3 {
        out.push_str(text);
        return;
    }
    let tail = (width - 1) * 3 / 5;
    let head = width - 1 - tail;
    out.extend(text.chars().take(head));
    out.push('…');
    out.extend(text.chars().skip(n - tail));
}

/// Writes the cell's text into `out`.
fn write_text_cell(out: &mut String, value: Value<'_>, clock: Clock) {
    use std::fmt::Write as _;
    match value {
        Value::Time(ns) => clock.push(out, ns, true),
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// How the text table shows times: the time of day is what a reader of a live table
/// wants; JSON and CSV keep the full UTC time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    /// UTC time of day.
    #[default]
    Utc,
    /// Local time of day (the zone of TZ, else of /etc/localtime).
    Local,
    /// Local date and time of day.
    LocalDate,
    /// UTC date and time of day.
    UtcDate,
}

impl Clock {
    fn width(self) -> usize {
        match self {
            Clock::Utc | Clock::Local => 15,
            Clock::LocalDate | Clock::UtcDate => 26,
        }
    }

    /// Appends the time `ns`, with microseconds when `micros`.
    pub fn push(self, out: &mut String, ns: u64, micros: bool) {
        use std::fmt::Write as _;
        let end = if micros { 26 } else { 19 };
        let local = match self {
            Clock::Utc | Clock::UtcDate => None,
            Clock::Local | Clock::LocalDate => local_time(ns),
        };
        let Some(tm) = local else {
            let utc = rfc3339_nanos(ns);
            if self == Clock::UtcDate {
                out.push_str(&utc[..10]);
                out.push(' ');
            }
            out.push_str(&utc[11..end]);
            return;
        };
        if self == Clock::LocalDate {
            let (year, month, day) = (tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
            let _ = write!(out, "{year:04}-{month:02}-{day:02} ");
        }
        let _ = write!(out, "{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec);
        if micros {
            let _ = write!(out, ".{:06}", ns % 1_000_000_000 / 1_000);
        }
    }
}

/// The local calendar time of `ns` (Unix nanoseconds), as the C library's zone says.
fn local_time(ns: u64) -> Option<libc::tm> {
    let secs = libc::time_t::try_from(ns / 1_000_000_000).ok()?;
    // SAFETY: localtime_r only writes the tm it is given; a zeroed tm is a valid one.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        (!libc::localtime_r(&secs, &mut tm).is_null()).then_some(tm)
    }
}

/// Lays out one line cell by cell: numbers right-aligned, text left-aligned, cells one
/// space apart, and nothing after the last cell's text.
struct Row<'a> {
    line: &'a mut String,
    widths: &'a [usize],
    column: usize,
    /// Where the line's content ends: the last cell's text, without its padding.
    end: usize,
}

impl Row<'_> {
    fn push(&mut self, text: &str, numeric: bool) {
        if self.column > 0 {
            self.line.push(' ');
        }
        let width = self.widths.get(self.column).copied().unwrap_or(0);
        let pad = width.saturating_sub(text.chars().count());
        if numeric {
            self.line.extend(std::iter::repeat_n(' ', pad));
            self.line.push_str(text);
            self.end = self.line.len();
        } else {
            self.line.push_str(text);
            self.end = self.line.len();
            self.line.extend(std::iter::repeat_n(' ', pad));
        }
        self.column += 1;
    }

    fn finish(self) {
        self.line.truncate(self.end);
        self.line.push('\n');
    }
}

impl<R: Record + ?Sized, W: Write + Send> Handler<R> for TextPrinter<W> {
    fn handle(&mut self, record: &R) -> Flow {
        self.line.clear();
        if self.widths.is_empty() {
            let widths = &mut self.widths;
            let least = &self.least;
            let formats = &mut self.formats;
            let catalog = record.catalog().filter(|_| !self.raw);
            let clock = self.clock;
            let mut numeric = Vec::new();
            let mut header = Vec::new();
            Self::each_cell(&self.columns, record, &mut |name, value| {
                let format = catalog.map_or(FieldFormat::Plain, |c| c.format_of(name));
                let at_least = least.get(widths.len()).copied().unwrap_or(0);
                widths.push(
                    name.len()
                        .max(default_width(value, format, clock))
                        .max(at_least),
                );
                formats.push(format);
                numeric.push(matches!(value, Value::U64(_) | Value::I64(_)));
                header.push(name.to_uppercase());
            });
            let mut row = Row {
                line: &mut self.line,
                widths: &self.widths,
                column: 0,
                end: 0,
            };
            for (name, numeric) in header.iter().zip(numeric) {
                row.push(name, numeric);
            }
            row.finish();
        }
        let cell = &mut self.cell;
        let formats = &self.formats;
        let mut row = Row {
            line: &mut self.line,
            widths: &self.widths,
            column: 0,
            end: 0,
        };
        let last = self.widths.len().saturating_sub(1);
        let clock = self.clock;
        Self::each_cell(&self.columns, record, &mut |_, value| {
            cell.clear();
            let format = formats.get(row.column).copied().unwrap_or_default();
            match value {
                Value::Str(path) if format == FieldFormat::Path && row.column < last => {
                    let width = row.widths.get(row.column).copied().unwrap_or(PATH_WIDTH);
                    push_cut_in_the_middle(cell, path, width);
                }
                _ if format.write(value, cell) => {}
                _ => write_text_cell(cell, value, clock),
            }
            row.push(cell, matches!(value, Value::U64(_) | Value::I64(_)));
        });
        row.finish();
        let line = &self.line;
        self.sink.write(|out| out.write_all(line.as_bytes()));
        Flow::Caught
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }

    /// A new table: a blank line after the last one, the time (UTC, as the TS column),
    /// then its header with the next row.
    fn begin_period(&mut self) -> io::Result<()> {
        let gap = if self.started { "\n" } else { "" };
        let mut now = String::new();
        self.clock
            .push(&mut now, crate::model::wall_clock_ns(), false);
        let line = format!("{gap}[{now}]\n");
        self.started = true;
        self.widths.clear();
        self.formats.clear();
        self.sink.write(|out| out.write_all(line.as_bytes()));
        Ok(())
    }
}
