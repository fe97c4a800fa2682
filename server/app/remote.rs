//! `eunomia session ...`: a server's sessions from the command line. A client of the
//! server's own GraphQL API (POST /graphql, and graphql-transport-ws at /graphql/ws for
//! `tail`), printing what it gets as `run` prints: the same printers, formats and options.
//!
//! As elsewhere in the CLI, bad input exits with code 2 and one line; so does an error
//! the server puts down to the request (BAD_QUERY, NOT_FOUND, a refused token ...). A
//! server that cannot be reached or fails exits with 1.

use std::io::{self, BufWriter, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::Subcommand;
use serde_json::{json, Value as Json};

use super::args::{
    default_columns, parse_duration, tracker_names, tracker_options, GroupArgs, PrintArgs,
    TraceArgs,
};
use super::RunError;
use crate::engine::TrackerConfig;
use crate::handler::{
    self, AggRow, AggregateSpec, Clock, CsvPrinter, Format, Handler, KeyValue, OutputFactory,
    OwnedRecord, Predicate, Schema, TextPrinter,
};
use crate::model::{parse_rfc3339_nanos, FieldType, Record, TrackerInfo, Value};
use crate::results::store::{SessionStatus, StoreKind};
use crate::trackers::{find_tracker, AnyTracker};

/// Where `eunomia serve` listens by default.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8527";
/// How long `tail` keeps events it printed in its buffer at most, and how long a read
/// of its websocket waits (so that Ctrl-C is seen).
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// The largest page the API returns.
const PAGE: usize = 1000;
/// Error codes of requests the asker has to fix (exit code 2); any other is the server's.
const INPUT_CODES: &[&str] = &[
    "BAD_QUERY",
    "BAD_DURATION",
    "BAD_CONFIG",
    "BAD_FILTER",
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "UNKNOWN_TRACKER",
    "UNKNOWN_CONTAINER",
    "AMBIGUOUS_CONTAINER",
    "CONTAINER_EXITED",
    "SESSION_RUNNING",
    "SESSION_ENDED",
    "QUERY_TOO_COSTLY",
    "UNAUTHENTICATED",
    "FORBIDDEN",
];
/// What the commands ask of a session.
const SESSION_FIELDS: &str =
    "id tracker label status store startedAt endsAt endedAt eventCount lostCount error filter config \
     nodes { node status eventCount lostCount error }";

#[derive(Debug, clap::Args)]
pub struct SessionArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(subcommand)]
    pub command: SessionCommand,
}

/// Which server, and how to prove who is asking. The token is never an argument: other
/// users of the machine see a command line in `ps`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The server's URL, http:// or https://.
    #[arg(long, global = true, value_name = "URL", env = "EUNOMIA_SERVER", default_value = DEFAULT_SERVER, help_heading = "Server")]
    pub server: String,
    /// A file holding the bearer token; without it, the token is taken from
    /// EUNOMIA_TOKEN, if set.
    #[arg(long, global = true, value_name = "FILE", help_heading = "Server")]
    pub token_file: Option<PathBuf>,
    /// Trust only the certificate authorities in this PEM file (a private CA) rather than
    /// the public ones.
    #[arg(long, global = true, value_name = "FILE", help_heading = "Server")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Start a session on the server; prints its id.
    Start(StartArgs),
    /// List the server's sessions, newest first.
    List(ListArgs),
    /// Print a session and its counts; with --events its stored events, with --group-by
    /// its groups.
    Show(ShowArgs),
    /// Print a running session's events as they happen, until it ends or Ctrl-C.
    Tail(TailArgs),
    /// End a running session now; prints it with its final counts.
    Stop {
        /// The session's id.
        id: String,
        #[command(flatten)]
        print: PrintArgs,
    },
    /// Delete an ended session and its results.
    Delete {
        /// The session's id.
        id: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Which tracker to run (see `eunomia trackers`).
    #[arg(value_parser = tracker_names())]
    pub tracker: String,
    /// How long the session runs, in whole seconds (`30`, `30s`, `2m`, `1h`).
    #[arg(short = 'd', long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Duration,
    #[command(flatten)]
    pub trace: TraceArgs,
    /// Where its events go: every event in SQLite, or in-memory aggregates.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    pub store: StoreKind,
    /// A label to know it by.
    #[arg(long)]
    pub label: Option<String>,
    /// Run it on these nodes of the server's fleet, comma-separated (`'*'`: every node
    /// heard from in the last few seconds): a fleet session.
    #[arg(long, value_delimiter = ',', value_name = "NODES")]
    pub nodes: Vec<String>,
    /// Return when the session ends, and print it with its final counts (the window
    /// must end within the server's request timeout).
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub print: PrintArgs,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only sessions in this state.
    #[arg(long, value_enum)]
    pub status: Option<SessionStatus>,
    /// At most this many, the newest.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub print: PrintArgs,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The session's id.
    pub id: String,
    /// Print the session's stored events (for a MEMORY session, the most recent it keeps)
    /// as `run` prints events.
    #[arg(long, conflicts_with = "group_by")]
    pub events: bool,
    /// With --events or --group-by: only events for which `FIELD OP VALUE` holds (== !=
    /// > >= < <= ~); repeatable.
    #[arg(long = "where", value_name = "EXPR")]
    pub filters: Vec<String>,
    /// With --events: at most this many, the first.
    #[arg(long, value_name = "N", requires = "events")]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub group: GroupArgs,
    #[command(flatten)]
    pub print: PrintArgs,
}

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The session's id.
    pub id: String,
    /// Only events for which `FIELD OP VALUE` holds (== != > >= < <= ~), checked on the
    /// server before its live sample; repeatable.
    #[arg(long = "where", value_name = "EXPR")]
    pub filters: Vec<String>,
    /// Print the events the session has stored first, then the live ones, none missed
    /// or twice; on an ended session, print its stored events and end.
    #[arg(long)]
    pub from_start: bool,
    #[command(flatten)]
    pub print: PrintArgs,
}

pub fn session(args: &SessionArgs) -> Result<(), RunError> {
    // Bad output options are refused before the server is asked anything (or a session
    // started for nothing); columns of events are checked against the session's tracker,
    // known once the session is read.
    let (print, sessions) = match &args.command {
        SessionCommand::Start(StartArgs { print, .. })
        | SessionCommand::List(ListArgs { print, .. })
        | SessionCommand::Stop { print, .. } => (Some(print), true),
        SessionCommand::Show(show) => (
            Some(&show.print),
            !show.events && show.group.group_by.is_empty(),
        ),
        SessionCommand::Tail(TailArgs { print, .. }) => (Some(print), false),
        SessionCommand::Delete { .. } => (None, false),
    };
    if let Some(print) = print {
        let (_, columns) = print.format().map_err(RunError::Usage)?;
        if let Some(unknown) = columns
            .iter()
            .find(|c| sessions && !SESSION_COLUMNS.contains(&c.as_str()))
        {
            return Err(RunError::Usage(format!(
                "unknown column `{unknown}`; a session's: {}",
                SESSION_COLUMNS.join(", ")
            )));
        }
    }
    let client = Client::new(&args.server)?;
    let stdout = || Box::new(BufWriter::new(io::stdout())) as Box<dyn Write + Send>;
    let result = match &args.command {
        SessionCommand::Start(start) => start_session(&client, start, &stdout),
        SessionCommand::List(list) => list_sessions(&client, list, &stdout),
        SessionCommand::Show(show) => show_session(&client, show, &stdout),
        SessionCommand::Tail(tail) => tail_session(&client, tail, &stdout),
        SessionCommand::Stop { id, print } => {
            let data = client.request(
                &format!("mutation($id: ID!) {{ stopSession(id: $id) {{ {SESSION_FIELDS} }} }}"),
                json!({ "id": id }),
            )?;
            print_session(&data["stopSession"], print, &stdout)
        }
        SessionCommand::Delete { id } => {
            let data = client.request(
                "mutation($id: ID!) { deleteSession(id: $id) }",
                json!({ "id": id }),
            )?;
            match data["deleteSession"].as_bool() {
                Some(true) => Ok(()),
                // As `session(id)` says it.
                _ => Err(RunError::Usage(format!(
                    "no session with id `{id}` (NOT_FOUND)"
                ))),
            }
        }
    };
    match result {
        // The reader went away (`| head`): that ends the command, it is not a failure.
        Err(RunError::Failed(err))
            if err
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn start_session(client: &Client, args: &StartArgs, stdout: OutputFactory) -> Result<(), RunError> {
    let tracker = find_tracker(&args.tracker).map_err(|e| RunError::Usage(e.to_string()))?;
    if args.duration.subsec_nanos() != 0 {
        return Err(RunError::Usage(format!(
            "--duration: a session lasts whole seconds, got {:?}",
            args.duration
        )));
    }
    let trace = &args.trace;
    let cgroup_id = match trace.cgroup_ids.as_slice() {
        [] => None,
        [id] => Some(id),
        _ => {
            return Err(RunError::Usage(
                "a session filters on one --cgroup-id".into(),
            ))
        }
    };
    let mut config = tracker_options(trace, tracker).map_err(RunError::Usage)?;
    if let Some(bytes) = trace.ringbuf_bytes {
        config.insert("ringbuf_bytes".into(), json!(bytes));
    }
    let input = json!({
        "tracker": args.tracker,
        "durationSecs": args.duration.as_secs(),
        "filter": {
            "pid": trace.pid,
            "comm": trace.comm,
            "cgroupId": cgroup_id,
            "container": trace.container,
            "containerName": trace.container_name,
            "image": trace.image,
            "includeSelf": trace.include_self,
        },
        "config": config,
        "store": args.store.as_str(),
        "label": args.label,
        "nodes": (!args.nodes.is_empty()).then_some(&args.nodes),
    });
    let data = client.request(
        &format!(
            "mutation($input: StartSessionInput!, $wait: Boolean!) {{ \
             startSession(input: $input, wait: $wait) {{ {SESSION_FIELDS} }} }}"
        ),
        json!({ "input": input, "wait": args.wait }),
    )?;
    let session = &data["startSession"];
    // Its id alone, for `id=$(eunomia session start ...)`; once it ended, what it found.
    let (format, chosen) = args.print.format().map_err(RunError::Usage)?;
    if !args.wait && format == Format::Text && chosen.is_empty() {
        let mut out = stdout();
        writeln!(out, "{}", text(&session["id"]))?;
        out.flush()?;
        return Ok(());
    }
    print_session(session, &args.print, stdout)
}

fn list_sessions(client: &Client, args: &ListArgs, stdout: OutputFactory) -> Result<(), RunError> {
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut sessions = Vec::new();
    let mut after = Json::Null;
    while sessions.len() < limit {
        let data = client.request(
            &format!(
                "query($status: SessionStatus, $first: Int, $after: String) {{ \
                 sessions(status: $status, first: $first, after: $after) {{ \
                 edges {{ node {{ {SESSION_FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"
            ),
            json!({
                "status": args.status.map(SessionStatus::as_str),
                "first": PAGE.min(limit - sessions.len()),
                "after": after,
            }),
        )?;
        let page = &data["sessions"];
        sessions.extend(edges(page).map(|edge| edge["node"].clone()));
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    let (format, chosen) = args.print.format().map_err(RunError::Usage)?;
    let mut out = stdout();
    match format {
        // The API's own objects: every field, as the schema names them.
        Format::Json => {
            for session in &sessions {
                writeln!(out, "{session}")?;
            }
        }
        Format::Csv => {
            let mut printer = CsvPrinter::new(&mut out);
            for session in &sessions {
                printer.handle(&session_record(session)?);
            }
            Handler::<OwnedRecord>::finish(&mut printer)?;
        }
        Format::Text => {
            let columns = if chosen.is_empty() {
                [
                    "id", "tracker", "label", "status", "started", "events", "lost",
                ]
                .map(String::from)
                .to_vec()
            } else {
                chosen
            };
            let records = sessions
                .iter()
                .map(session_record)
                .collect::<Result<Vec<_>, _>>()?;
            // The whole list is at hand: each column as wide as its longest value.
            let widths = columns
                .iter()
                .map(|column| {
                    records
                        .iter()
                        .filter_map(|r| match r.get(column) {
                            Some(Value::Str(s)) => Some(s.chars().count()),
                            _ => None,
                        })
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let mut printer = TextPrinter::new(&mut out, Some(columns))
                .raw(args.print.raw)
                .clock(session_clock(&args.print))
                .widths_at_least(widths);
            for record in &records {
                printer.handle(record);
            }
            Handler::<OwnedRecord>::finish(&mut printer)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn show_session(client: &Client, args: &ShowArgs, stdout: OutputFactory) -> Result<(), RunError> {
    let grouped = !args.group.group_by.is_empty();
    if !args.events && !grouped && !args.filters.is_empty() {
        return Err(RunError::Usage(
            "--where chooses events: give --events or --group-by too".into(),
        ));
    }
    let data = client.request(
        &format!("query($id: ID!) {{ session(id: $id) {{ {SESSION_FIELDS} }} }}"),
        json!({ "id": args.id }),
    )?;
    let session = &data["session"];
    if !args.events && !grouped {
        return print_session(session, &args.print, stdout);
    }
    let tracker = session_tracker(session)?;
    let info = tracker.info();
    let conditions = conditions(&args.filters, info)?;
    if grouped {
        return print_groups(client, args, info, conditions, stdout);
    }
    let stages = [args
        .print
        .stage(Some(default_columns(
            info,
            &tracker.empty_fields(&session_config(session)),
        )))
        .map_err(RunError::Usage)?];
    let mut output = handler::build::<OwnedRecord>(&stages, &Schema::of(info), stdout)
        .map_err(|e| RunError::Usage(e.to_string()))?;
    let limit = args.limit.unwrap_or(usize::MAX);
    let (mut printed, mut after) = (0, Json::Null);
    while printed < limit {
        let data = client.request(
            "query($id: ID!, $first: Int, $after: String, $where: [Condition!]) { session(id: $id) { \
             events(first: $first, after: $after, where: $where) { \
             edges { node { data } } pageInfo { hasNextPage endCursor } } } }",
            json!({
                "id": args.id,
                "first": PAGE.min(limit - printed),
                "after": after,
                "where": conditions,
            }),
        )?;
        let page = &data["session"]["events"];
        for edge in edges(page) {
            output.handle(&event_record(info, &edge["node"]["data"])?);
            printed += 1;
        }
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    output.finish()?;
    Ok(())
}

/// The session's groups, computed by the server (over all its events, not a page of
/// them), printed as `run --group-by` prints its own.
fn print_groups(
    client: &Client,
    args: &ShowArgs,
    info: &'static TrackerInfo,
    conditions: Json,
    stdout: OutputFactory,
) -> Result<(), RunError> {
    let group = &args.group;
    let spec = AggregateSpec {
        op: group.op,
        field: group.field.clone(),
        top: group.top,
        ..AggregateSpec::count(group.group_by.clone(), None)
    };
    let schema = Schema::of(info)
        .of_groups(&spec)
        .map_err(|e| RunError::Usage(e.to_string()))?;
    let stages = [args.print.stage(None).map_err(RunError::Usage)?];
    let mut output = handler::build::<AggRow>(&stages, &schema, stdout)
        .map_err(|e| RunError::Usage(e.to_string()))?;
    let data = client.request(
        "query($id: ID!, $groupBy: [String!]!, $op: AggOp, $field: String, $top: Int, \
         $where: [Condition!]) { session(id: $id) { \
         aggregate(groupBy: $groupBy, op: $op, field: $field, top: $top, where: $where) { \
         keys value count } } }",
        json!({
            "id": args.id,
            "groupBy": group.group_by,
            "op": graphql_enum(&group.op)?,
            "field": group.field,
            "top": group.top,
            "where": conditions,
        }),
    )?;
    let names: Arc<[String]> = group.group_by.clone().into();
    let value_name: Option<Arc<str>> = spec.value_name().map(Into::into);
    for row in data["session"]["aggregate"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let keys = names
            .iter()
            .zip(row["keys"].as_array().into_iter().flatten())
            .map(|(name, key)| group_key(schema.field_type(name), key))
            .collect();
        output.handle(&AggRow {
            names: names.clone(),
            keys,
            count: row["count"].as_u64().unwrap_or(0),
            // Rounded, as `run` rounds an average.
            value: value_name
                .clone()
                .map(|name| (name, row["value"].as_f64().map(|v| v.round() as i64))),
        });
    }
    output.finish()?;
    Ok(())
}

fn tail_session(client: &Client, args: &TailArgs, stdout: OutputFactory) -> Result<(), RunError> {
    let data = client.request(
        "query($id: ID!) { session(id: $id) { tracker config } }",
        json!({ "id": args.id }),
    )?;
    let session = &data["session"];
    let tracker = session_tracker(session)?;
    let info = tracker.info();
    let conditions = conditions(&args.filters, info)?;
    let stages = [args
        .print
        .stage(Some(default_columns(
            info,
            &tracker.empty_fields(&session_config(session)),
        )))
        .map_err(RunError::Usage)?];
    let mut output = handler::build::<OwnedRecord>(&stages, &Schema::of(info), stdout)
        .map_err(|e| RunError::Usage(e.to_string()))?;

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let mut ws = client.subscribe(
        "subscription($id: ID!, $where: [Condition!], $fromStart: Boolean) {
           sessionEvents(id: $id, where: $where, fromStart: $fromStart) { data } }",
        json!({ "id": args.id, "where": conditions, "fromStart": args.from_start }),
    )?;
    if io::IsTerminal::is_terminal(&io::stdout()) {
        eprintln!("Tailing session {}... Ctrl-C to end.", args.id);
    }
    // Events are printed as they come: the output is flushed when none has come for a
    // read's timeout, and at least every FLUSH_EVERY while they keep coming.
    let mut flushed = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match ws.next()? {
            Message::Idle => {}
            Message::Data(data) => {
                output.handle(&event_record(info, &data["sessionEvents"]["data"])?);
                if flushed.elapsed() < FLUSH_EVERY {
                    continue;
                }
            }
            Message::Complete => break,
        }
        output.flush()?;
        flushed = Instant::now();
    }
    ws.close();
    output.finish()?;
    Ok(())
}

/// Prints one session: its fields one a line (text), the API's object (json), or a row
/// with a header (csv).
fn print_session(session: &Json, print: &PrintArgs, stdout: OutputFactory) -> Result<(), RunError> {
    let (format, chosen) = print.format().map_err(RunError::Usage)?;
    let mut out = stdout();
    match format {
        Format::Json => writeln!(out, "{session}")?,
        Format::Csv => {
            let mut printer = CsvPrinter::new(&mut out);
            printer.handle(&session_record(session)?);
            Handler::<OwnedRecord>::finish(&mut printer)?;
        }
        Format::Text => {
            let record = session_record(session)?;
            let clock = session_clock(print);
            let mut line = String::new();
            let mut fields = Vec::new();
            record.visit(&mut |name, value| {
                line.clear();
                match value {
                    Value::Time(ns) => clock.push(&mut line, ns, true),
                    other => line.push_str(&other.to_string()),
                }
                fields.push((name.to_string(), line.clone()));
            });
            for (name, value) in fields
                .iter()
                .filter(|(name, _)| chosen.is_empty() || chosen.contains(name))
            {
                writeln!(out, "{name:<8} {value}")?;
            }
            // A fleet session's parts, one line per node.
            for part in session["nodes"].as_array().into_iter().flatten() {
                let error = part["error"].as_str().map(|e| format!(" ({e})"));
                writeln!(
                    out,
                    "node     {} {} events={} lost={}{}",
                    text(&part["node"]),
                    text(&part["status"]),
                    part["eventCount"],
                    part["lostCount"],
                    error.unwrap_or_default()
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// A session's times are days apart: the text shows the date too.
fn session_clock(print: &PrintArgs) -> Clock {
    if print.utc {
        Clock::UtcDate
    } else {
        Clock::LocalDate
    }
}

/// The fields of a session as a record: the columns of `session list`, then the rest.
const SESSION_COLUMNS: [&str; 13] = [
    "id", "tracker", "label", "status", "started", "events", "lost", "store", "ends", "ended",
    "filter", "config", "error",
];

/// A session of the API as a record, its fields named by [`SESSION_COLUMNS`].
fn session_record(session: &Json) -> Result<OwnedRecord, RunError> {
    let time = |key: &str| match &session[key] {
        Json::Null => Ok(KeyValue::Null),
        value => value
            .as_str()
            .and_then(parse_rfc3339_nanos)
            .map(KeyValue::Time)
            .ok_or_else(|| anyhow!("the server sent a session whose {key} is `{value}`")),
    };
    let string = |key: &str| match &session[key] {
        Json::Null => KeyValue::Null,
        value => KeyValue::Str(text(value).into()),
    };
    let count = |key: &str| KeyValue::U64(session[key].as_u64().unwrap_or(0));
    let values = [
        string("id"),
        string("tracker"),
        string("label"),
        string("status"),
        time("startedAt")?,
        count("eventCount"),
        count("lostCount"),
        string("store"),
        time("endsAt")?,
        time("endedAt")?,
        string("filter"),
        string("config"),
        string("error"),
    ];
    Ok(OwnedRecord {
        catalog: None,
        fields: SESSION_COLUMNS.into_iter().zip(values).collect(),
    })
}

/// A JSON value as text: a string's own text, anything else as JSON.
fn text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The edges of a connection page.
fn edges(page: &Json) -> impl Iterator<Item = &Json> {
    page["edges"].as_array().into_iter().flatten()
}

/// The tracker of a session, from this eunomia's catalog.
fn session_tracker(session: &Json) -> Result<&'static dyn AnyTracker, RunError> {
    let name = text(&session["tracker"]);
    find_tracker(&name).map_err(|_| {
        anyhow!("the server runs tracker `{name}`, which this eunomia does not know").into()
    })
}

/// A session's tracker configuration, for the fields its events cannot have; the
/// default when it does not read as one (then no column is left out).
fn session_config(session: &Json) -> TrackerConfig {
    serde_json::from_value(session["config"].clone()).unwrap_or_default()
}

/// `--where` expressions as the API's conditions, checked here first as `run` checks
/// them.
fn conditions(filters: &[String], info: &TrackerInfo) -> Result<Json, RunError> {
    let schema = Schema::of(info);
    let known: Vec<&str> = info.all_fields().map(|f| f.name).collect();
    filters
        .iter()
        .map(|expr| {
            let predicate = Predicate::parse(expr, |f| schema.field_type(f), &known)
                .map_err(|e| RunError::Usage(e.to_string()))?;
            Ok(json!({
                "field": predicate.field(),
                "op": graphql_enum(&predicate.op())?,
                "value": predicate.text(),
            }))
        })
        .collect()
}

/// An enum value as the API spells it (`EQ`, `P99`).
fn graphql_enum<T: async_graphql::InputType>(value: &T) -> Result<Json, RunError> {
    Ok(async_graphql::InputType::to_value(value).into_json()?)
}

/// An event of tracker `info` from its JSON (`data` in the API, the JSON Lines of
/// `run`): its catalog's fields in order, typed as the catalog says.
fn event_record(info: &'static TrackerInfo, data: &Json) -> Result<OwnedRecord, RunError> {
    let fields = info
        .all_fields()
        .map(|field| {
            let value = &data[field.name];
            let typed = match (value, field.ty) {
                (Json::Null, _) => Some(KeyValue::Null),
                (Json::String(s), FieldType::Time) => parse_rfc3339_nanos(s).map(KeyValue::Time),
                (Json::String(s), _) => Some(KeyValue::Str(s.as_str().into())),
                (Json::Number(n), FieldType::I64) => n.as_i64().map(KeyValue::I64),
                (Json::Number(n), _) => n
                    .as_u64()
                    .map(KeyValue::U64)
                    .or_else(|| n.as_i64().map(KeyValue::I64)),
                _ => None,
            };
            typed.map(|v| (field.name, v)).ok_or_else(|| {
                anyhow!(
                    "the server sent a {} event whose `{}` is `{value}`",
                    info.name,
                    field.name
                )
                .into()
            })
        })
        .collect::<Result<_, RunError>>()?;
    Ok(OwnedRecord {
        catalog: Some(info),
        fields,
    })
}

/// A group's key as the API gives it (text), typed as its field is, so that numbers line
/// up as numbers.
fn group_key(ty: Option<FieldType>, key: &Json) -> KeyValue {
    let shown = text(key);
    let number = match ty {
        Some(FieldType::U64) => shown.parse().ok().map(KeyValue::U64),
        Some(FieldType::I64) => shown.parse().ok().map(KeyValue::I64),
        _ => None,
    };
    number.unwrap_or_else(|| KeyValue::Str(shown.into()))
}

/// The server's endpoint and the caller's credentials.
struct Client {
    /// `http(s)://host:port`, without a path.
    base: String,
    http: reqwest::blocking::Client,
    token: Option<String>,
    tls: Arc<rustls::ClientConfig>,
}

impl Client {
    fn new(args: &ServerArgs) -> Result<Client, RunError> {
        let url = args.server.trim_end_matches('/');
        // The server says it listens on `.../graphql`: that will do too.
        let base = url.strip_suffix("/graphql").unwrap_or(url).to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(RunError::Usage(format!(
                "--server takes an http:// or https:// URL, got `{}`",
                args.server
            )));
        }
        let tls = Arc::new(tls_config(args.ca_file.as_deref())?);
        let http = reqwest::blocking::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .connect_timeout(Duration::from_secs(10))
            // The server bounds each request by its own timeout; `startSession(wait: true)`
            // takes as long as the window.
            .timeout(None)
            .build()
            .map_err(|e| anyhow!("cannot set up the HTTP client: {e}"))?;
        Ok(Client {
            base,
            http,
            token: token(args.token_file.as_deref())?,
            tls,
        })
    }

    fn endpoint(&self) -> String {
        format!("{}/graphql", self.base)
    }

    /// Runs a query or mutation; returns its `data`, or its first error.
    fn request(&self, query: &str, variables: Json) -> Result<Json, RunError> {
        let mut request = self
            .http
            .post(self.endpoint())
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .map_err(|e| anyhow!("cannot reach {}: {}", self.endpoint(), root_cause(&e)))?;
        let status = response.status();
        let body = response.text().map_err(|e| {
            anyhow!(
                "reading the answer of {}: {}",
                self.endpoint(),
                root_cause(&e)
            )
        })?;
        match serde_json::from_str::<Json>(&body) {
            Ok(body) if body["errors"][0].is_object() => {
                Err(api_error(&body["errors"][0], self.token.is_some()))
            }
            Ok(mut body) if status.is_success() => Ok(body["data"].take()),
            _ => Err(anyhow!(
                "{} answered {status}: {}",
                self.endpoint(),
                body.lines().next().unwrap_or("")
            )
            .into()),
        }
    }

    /// Opens a graphql-transport-ws connection to `/graphql/ws`, authenticates and starts
    /// the subscription.
    fn subscribe(&self, query: &str, variables: Json) -> Result<Subscription, RunError> {
        use tungstenite::client::IntoClientRequest;
        let url = format!(
            "{}/graphql/ws",
            self.base
                .replacen("https://", "wss://", 1)
                .replacen("http://", "ws://", 1)
        );
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| RunError::Usage(format!("--server {}: {e}", self.base)))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            tungstenite::http::HeaderValue::from_static("graphql-transport-ws"),
        );
        let uri = request.uri().clone();
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("wss") => 443,
            _ => 80,
        });
        let stream =
            TcpStream::connect((host, port)).map_err(|e| anyhow!("cannot reach {url}: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let connector = tungstenite::Connector::Rustls(self.tls.clone());
        let ws = match tungstenite::client_tls_with_config(request, stream, None, Some(connector)) {
            Ok((ws, _)) => ws,
            Err(tungstenite::HandshakeError::Failure(e)) => {
                return Err(anyhow!("cannot open {url}: {}", root_cause(&e)).into())
            }
            Err(tungstenite::HandshakeError::Interrupted(_)) => {
                return Err(anyhow!("cannot open {url}: no answer").into())
            }
        };
        let mut subscription = Subscription {
            ws,
            url,
            token_given: self.token.is_some(),
        };
        let payload = match &self.token {
            Some(token) => json!({ "Authorization": format!("Bearer {token}") }),
            None => json!({}),
        };
        subscription.send(json!({ "type": "connection_init", "payload": payload }))?;
        match subscription.read()? {
            Some(message) if message["type"] == "connection_ack" => {}
            other => {
                return Err(anyhow!(
                    "{} did not acknowledge the connection: {}",
                    subscription.url,
                    other.unwrap_or_default()
                )
                .into())
            }
        }
        subscription.send(json!({
            "id": "1", "type": "subscribe", "payload": { "query": query, "variables": variables },
        }))?;
        // From now on a read returns after FLUSH_EVERY at most, so that Ctrl-C is seen and
        // the output flushed while no event comes.
        subscription.set_read_timeout(FLUSH_EVERY)?;
        Ok(subscription)
    }
}

/// A GraphQL error as one line; a Usage error when its code says the request was at
/// fault. `token_given`: whether the request carried a token (else a refusal says how to
/// give one).
fn api_error(error: &Json, token_given: bool) -> RunError {
    let code = error["extensions"]["code"].as_str().unwrap_or("");
    let mut line = format!("{} ({code})", text(&error["message"]));
    if code == "UNAUTHENTICATED" && !token_given {
        line.push_str("; give the token in EUNOMIA_TOKEN or a --token-file");
    }
    if INPUT_CODES.contains(&code) {
        RunError::Usage(line)
    } else {
        RunError::Failed(anyhow!(line))
    }
}

/// The innermost cause of an error: what went wrong (`Connection refused`, a certificate
/// from an unknown issuer), without the layers that carried it.
fn root_cause(err: &dyn std::error::Error) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The bearer token, from --token-file or else EUNOMIA_TOKEN; none when neither is given.
fn token(file: Option<&Path>) -> Result<Option<String>, RunError> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| RunError::Usage(format!("--token-file {}: {e}", path.display())))?,
        None => std::env::var("EUNOMIA_TOKEN").unwrap_or_default(),
    };
    let token = token.trim();
    match (token.is_empty(), file) {
        (false, _) => Ok(Some(token.to_string())),
        (true, None) => Ok(None),
        (true, Some(path)) => Err(RunError::Usage(format!(
            "--token-file {} holds no token",
            path.display()
        ))),
    }
}

/// TLS for HTTPS and wss alike: rustls on ring, as the server, trusting the public
/// authorities (Mozilla's list) or only those of `ca_file`.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, RunError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| {
                RunError::Usage(format!("--ca-file {}: {e}", path.display()))
            };
            let pem = std::fs::read(path).map_err(|e| bad(&e))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            if roots.is_empty() {
                return Err(bad(&"no PEM certificate in it"));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// What the subscription's connection brought.
enum Message {
    /// Nothing for a while.
    Idle,
    /// The payload's `data` of one result.
    Data(Json),
    /// The subscription ended: the session ended.
    Complete,
}

/// A graphql-transport-ws connection with one subscription (id "1").
struct Subscription {
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    url: String,
    token_given: bool,
}

impl Subscription {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        use tungstenite::stream::MaybeTlsStream;
        match self.ws.get_mut() {
            MaybeTlsStream::Plain(socket) => socket.set_read_timeout(Some(timeout)),
            MaybeTlsStream::Rustls(tls) => tls.sock.set_read_timeout(Some(timeout)),
            _ => unreachable!("only plain and rustls streams are made"),
        }
    }

    fn send(&mut self, message: Json) -> Result<(), RunError> {
        self.ws
            .send(tungstenite::Message::text(message.to_string()))
            .map_err(|e| anyhow!("{}: {e}", self.url).into())
    }

    /// The next protocol message (answering pings on the way); `None` when the read timed
    /// out or a signal came, or Err with the close frame's reason when the server closed
    /// the connection.
    fn read(&mut self) -> Result<Option<Json>, RunError> {
        loop {
            let frame = match self.ws.read() {
                Ok(frame) => frame,
                // Ctrl-C interrupts the read: the caller looks at its flag.
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(anyhow!("{}: {e}", self.url).into()),
            };
            match frame {
                tungstenite::Message::Text(text) => {
                    let message: Json = serde_json::from_str(&text)
                        .map_err(|e| anyhow!("{}: not JSON ({e}): {text}", self.url))?;
                    if message["type"] == "ping" {
                        self.send(json!({ "type": "pong" }))?;
                        continue;
                    }
                    return Ok(Some(message));
                }
                tungstenite::Message::Close(frame) => {
                    let (code, reason) = frame.map_or((0, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    });
                    // 4403: the server refused the token in connection_init.
                    let reason = reason.trim_start_matches("Forbidden: ");
                    return Err(if code == 4403 {
                        api_error(
                            &json!({ "message": reason, "extensions": { "code": "UNAUTHENTICATED" } }),
                            self.token_given,
                        )
                    } else {
                        anyhow!("{} closed ({code}): {reason}", self.url).into()
                    });
                }
                _ => {}
            }
        }
    }

    fn next(&mut self) -> Result<Message, RunError> {
        let Some(message) = self.read()? else {
            return Ok(Message::Idle);
        };
        let payload = &message["payload"];
        match message["type"].as_str() {
            Some("next") if payload["errors"][0].is_object() => {
                Err(api_error(&payload["errors"][0], self.token_given))
            }
            Some("next") => Ok(Message::Data(payload["data"].clone())),
            Some("error") => Err(api_error(&payload[0], self.token_given)),
            Some("complete") => Ok(Message::Complete),
            _ => Err(anyhow!("{}: unexpected {message}", self.url).into()),
        }
    }

    /// Ends the subscription and the connection, as a polite client does.
    fn close(mut self) {
        let _ = self.send(json!({ "id": "1", "type": "complete" }));
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}
