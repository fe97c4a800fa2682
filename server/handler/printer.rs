//! Sinks that print records: JSON Lines, a plain-text table, CSV.
//!
//! Printers keep going after a write error (a closed pipe, say) without writing more, and
//! report the first error at `flush`/`finish`, so the caller decides what it means.

use std::io::{self, Write};

use super::{Flow, Handler};
use crate::model::{rfc3339_nanos, Record, Value};

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
    line.push(b'{');
    record.visit(&mut |name, value| {
        if line.len() > start + 1 {
            line.push(b',');
        }
        push_json_str(line, name);
        line.push(b':');
        push_json_value(line, value);
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
pub struct TextPrinter<W: Write> {
    sink: Sink<W>,
    columns: Option<Vec<String>>,
    widths: Vec<usize>,
    line: String,
}

impl<W: Write> TextPrinter<W> {
    pub fn new(out: W, columns: Option<Vec<String>>) -> Self {
        Self {
            sink: Sink::new(out),
            columns,
            widths: Vec::new(),
            line: String::with_capacity(256),
        }
    }
}

fn default_width(value: Value<'_>) -> usize {
    match value {
        Value::Time(_) => 15,
        Value::Str(_) => 16,
        Value::U64(_) | Value::I64(_) | Value::Null => 7,
    }
}

fn text_cell(value: Value<'_>) -> String {
    match value {
        // Time of day is what a reader of a live table wants; JSON and CSV keep the date.
        Value::Time(ns) => rfc3339_nanos(ns)[11..26].to_string(),
        other => other.to_string(),
    }
}

impl<W: Write> TextPrinter<W> {
    fn cells<R: Record + ?Sized>(&self, record: &R) -> Vec<(String, Value<'static>, String)> {
        let mut cells = Vec::new();
        match &self.columns {
            Some(columns) => {
                for name in columns {
                    let value = record.get(name).unwrap_or(Value::Null);
                    cells.push((name.clone(), kind_of(value), text_cell(value)));
                }
            }
            None => record.visit(&mut |name, value| {
                cells.push((name.to_string(), kind_of(value), text_cell(value)))
            }),
        }
        cells
    }
}

/// The value's type without its borrow, for width decisions.
fn kind_of(value: Value<'_>) -> Value<'static> {
    match value {
        Value::Str(_) => Value::Str(""),
        Value::Null => Value::Null,
        Value::U64(v) => Value::U64(v),
        Value::I64(v) => Value::I64(v),
        Value::Time(v) => Value::Time(v),
    }
}

impl<R: Record + ?Sized, W: Write + Send> Handler<R> for TextPrinter<W> {
    fn handle(&mut self, record: &R) -> Flow {
        let cells = self.cells(record);
        self.line.clear();
        if self.widths.is_empty() {
            self.widths = cells
                .iter()
                .map(|(name, kind, _)| name.len().max(default_width(*kind)))
                .collect();
            let header: Vec<String> = cells
                .iter()
                .map(|(name, _, _)| name.to_uppercase())
                .collect();
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            push_row(&mut self.line, &header, &self.widths, &cells);
        }
        let texts: Vec<&str> = cells.iter().map(|(_, _, text)| text.as_str()).collect();
        push_row(&mut self.line, &texts, &self.widths, &cells);
        let line = &self.line;
        self.sink.write(|out| out.write_all(line.as_bytes()));
        Flow::Caught
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }
}

/// Numbers right-aligned, text left-aligned, the last column unpadded.
fn push_row(
    line: &mut String,
    texts: &[&str],
    widths: &[usize],
    cells: &[(String, Value<'static>, String)],
) {
    let last = texts.len().saturating_sub(1);
    for (i, text) in texts.iter().enumerate() {
        let width = widths.get(i).copied().unwrap_or(0);
        let numeric = matches!(cells[i].1, Value::U64(_) | Value::I64(_));
        if i == last && !numeric {
            line.push_str(text);
        } else if numeric {
            line.push_str(&format!("{text:>width$}"));
        } else {
            line.push_str(&format!("{text:<width$}"));
        }
        if i != last {
            line.push(' ');
        }
    }
    line.push('\n');
}
