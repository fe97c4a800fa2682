//! The command line (the seed's `cmd`): `eunomia run <tracker>`, `eunomia trackers`,
//! `eunomia fields <tracker>`, `eunomia serve`, `eunomia session ...` (`remote`),
//! `eunomia guard` and `eunomia seccomp ...`.
//!
//! Bad input exits with code 2 and a one-line message; a failure to trace exits with 1.

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use super::args::{
    default_columns, parse_duration, tracker_names, tracker_options, GroupArgs, PrintArgs,
    TraceArgs,
};
use super::guard::{self, GuardArgs};
use super::remote::{self, SessionArgs};
use super::seccomp::{self, SeccompArgs};
use super::serve::{self, ServeArgs};
use super::{exit_code, RunError};
use crate::container::Enrich;
use crate::engine::{Counters, TrackerConfig};
use crate::handler::{self, FanIn, Filter, Predicate, Schema, SortBy, Stage};
use crate::model::TrackerInfo;
use crate::results::query::{check_histogram, check_per_call};
use crate::trackers::{find_tracker, Event, TRACKERS};

/// Events the output thread may fall behind by before they are counted as lost.
const OUTPUT_QUEUE: usize = 1 << 16;

#[derive(Debug, Parser)]
#[command(
    name = "eunomia",
    version,
    about = "On-demand eBPF tracing for Linux hosts and containers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one tracker and print its events until the duration ends or Ctrl-C.
    Run(RunArgs),
    /// List the trackers.
    Trackers,
    /// List the fields of a tracker's events (what --where, --group-by and --columns take).
    Fields {
        #[arg(value_parser = tracker_names())]
        tracker: String,
    },
    /// List a tracker's options (what --opt takes): name, type, default, description.
    Options {
        #[arg(value_parser = tracker_names())]
        tracker: String,
    },
    /// Serve the GraphQL API, the console and /metrics.
    Serve(ServeArgs),
    /// Start, list, show, tail, stop and delete sessions on a server, through its API.
    Session(SessionArgs),
    /// Print the GraphQL schema (SDL), as checked in at schema/schema.graphql.
    Schema,
    /// List the metric families /metrics can carry: the server's own and the built-in
    /// standing exporters' (sessions and `[[exporters]]` add the ones they declare).
    Metrics,
    /// Run the detection rules on this host until Ctrl-C, printing alerts (JSON Lines in
    /// Falco's shape, or text).
    Guard(GuardArgs),
    /// Record a command's calls into a seccomp profile, run a command under one (and
    /// verify it), compare and merge profiles.
    Seccomp(SeccompArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Which tracker to run (see `eunomia trackers`).
    #[arg(value_parser = tracker_names())]
    pub tracker: String,
    /// Stop after this long (`30`, `1.5`, `30s`, `500ms`, `2m`, `1h`; bare numbers are
    /// seconds); without it, run until Ctrl-C.
    #[arg(short = 'd', long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    #[command(flatten)]
    pub trace: TraceArgs,
    /// Keep only events for which `FIELD OP VALUE` holds (== != > >= < <= ~); repeatable.
    #[arg(long = "where", value_name = "EXPR")]
    pub filters: Vec<String>,
    #[command(flatten)]
    pub group: GroupArgs,
    /// With --group-by: print the table every INTERVAL (`5`, `5s`, `500ms`) and start
    /// again, as `syscount -i` does; the last table when the run ends.
    #[arg(long = "interval", value_name = "INTERVAL", value_parser = parse_duration, requires = "group_by")]
    pub period: Option<Duration>,
    /// Print a power-of-two histogram of this numeric field when the run ends, as the
    /// libbpf-tools do (one per group with --group-by).
    #[arg(
        long,
        value_name = "FIELD",
        conflicts_with_all = ["op", "field", "top", "period", "format", "columns", "output"]
    )]
    pub histogram: Option<String>,
    /// With --group-by: largest value first (default), most calls first, or by key.
    #[arg(long, value_enum, default_value_t = SortBy::Value, requires = "group_by")]
    pub sort: SortBy,
    #[command(flatten)]
    pub print: PrintArgs,
    /// The output chain as a JSON list of stages (filter, aggregate, tee, print), or
    /// `@FILE` holding one; replaces --group-by and the output options.
    #[arg(
        long,
        value_name = "JSON|@FILE",
        conflicts_with_all = ["group_by", "histogram", "format", "columns", "output", "raw", "utc"]
    )]
    pub pipeline: Option<String>,
}

/// Help and version as clap prints them; any other parse error as one line on stderr
/// (clap's several lines joined, its usage and "--help" hint left out), exit code 2.
fn clap_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    let text = err.render().to_string();
    let line: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    eprintln!("{}", line.join(" "));
    ExitCode::from(2)
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return clap_error(err),
    };
    match cli.command {
        Command::Trackers => {
            for tracker in TRACKERS {
                println!("{:<12} {}", tracker.info().name, tracker.info().description);
            }
            ExitCode::SUCCESS
        }
        Command::Fields { tracker } => {
            let info = find_tracker(&tracker)
                .expect("clap only accepts known trackers")
                .info();
            for field in info.all_fields() {
                println!(
                    "{:<12} {:<5} {}",
                    field.name,
                    format!("{:?}", field.ty).to_lowercase(),
                    field.description
                );
            }
            ExitCode::SUCCESS
        }
        Command::Options { tracker } => {
            let tracker = find_tracker(&tracker).expect("clap only accepts known trackers");
            for option in tracker.options() {
                let ty = match option.values.as_slice() {
                    [] => option.type_name.clone(),
                    values => option.type_name.replace("enum", &values.join("|")),
                };
                println!(
                    "{:<16} {:<32} default {:<10} {}",
                    option.name, ty, option.default, option.description
                );
            }
            ExitCode::SUCCESS
        }
        Command::Schema => {
            print!("{}", crate::api::graphql::sdl());
            ExitCode::SUCCESS
        }
        Command::Metrics => {
            for (name, help) in crate::metrics::Metrics::new().families() {
                println!("{name:<52} {help}");
            }
            for exporter in crate::exporter::default_exporters() {
                for metric in &exporter.metrics {
                    let name =
                        crate::exporter::exported_name(crate::exporter::STANDING_PREFIX, metric);
                    println!("{name:<52} built-in exporter: {} tracker", exporter.tracker);
                }
            }
            ExitCode::SUCCESS
        }
        Command::Serve(args) => exit_code(serve::serve(&args)),
        Command::Session(args) => exit_code(remote::session(&args)),
        Command::Run(args) => exit_code(run(&args)),
        Command::Guard(args) => exit_code(guard::guard(&args)),
        Command::Seccomp(args) => seccomp::seccomp(&args),
    }
}

/// What runs on the output thread: the `--pipeline`, or else optional aggregation, then
/// printing.
fn output_stages(args: &RunArgs, info: &TrackerInfo, empty: &[&str]) -> Result<Vec<Stage>, String> {
    if let Some(spec) = &args.pipeline {
        let text = match spec.strip_prefix('@') {
            Some(path) => {
                std::fs::read_to_string(path).map_err(|e| format!("--pipeline {spec}: {e}"))?
            }
            None => spec.clone(),
        };
        return serde_json::from_str(&text).map_err(|e| format!("--pipeline: {e}"));
    }
    let mut stages = Vec::new();
    let group = &args.group;
    if let Some(field) = &args.histogram {
        return Ok(vec![Stage::Histogram {
            field: field.clone(),
            group_by: group.group_by.clone(),
        }]);
    }
    if !group.group_by.is_empty() {
        stages.push(Stage::Aggregate {
            group_by: group.group_by.clone(),
            op: group.op,
            field: group.field.clone(),
            top: group.top,
            sort: args.sort,
            period_ms: args
                .period
                .map(|p| u64::try_from(p.as_millis()).unwrap_or(u64::MAX).max(1)),
        });
    }
    let events = group
        .group_by
        .is_empty()
        .then(|| default_columns(info, empty));
    stages.push(args.print.stage(events)?);
    Ok(stages)
}

/// Refuses per-call statistics of interval totals (see [`check_per_call`]) in every
/// aggregate stage that reads the tracker's records: `--group-by` and the pipeline's. A
/// stage after an aggregate reads its rows, not records.
fn check_aggregates(
    stages: &[Stage],
    info: &TrackerInfo,
    totals: bool,
    bucketed: &[&str],
) -> Result<(), crate::results::query::QueryError> {
    for stage in stages {
        match stage {
            Stage::Aggregate { op, field, .. } => {
                return check_per_call(info, *op, field.as_deref(), totals);
            }
            Stage::Tee { branches } => {
                return branches
                    .iter()
                    .try_for_each(|branch| check_aggregates(branch, info, totals, bucketed));
            }
            Stage::Histogram { field, .. } => {
                return check_histogram(info, field, totals, bucketed)
            }
            Stage::Filter { .. } | Stage::Print { .. } => {}
        }
    }
    Ok(())
}

fn run(args: &RunArgs) -> Result<(), RunError> {
    let tracker = find_tracker(&args.tracker).map_err(|e| RunError::Usage(e.to_string()))?;
    let trace = &args.trace;
    // A pid filter on no process would trace nothing, silently.
    if let Some(pid) = trace
        .pid
        .filter(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    {
        return Err(RunError::Usage(format!("--pid {pid}: no such process")));
    }
    let info = tracker.info();
    let schema = Schema::of(info);
    let known: Vec<&str> = info.all_fields().map(|f| f.name).collect();
    let predicates = args
        .filters
        .iter()
        .map(|expr| Predicate::parse(expr, |f| schema.field_type(f), &known))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RunError::Usage(e.to_string()))?;
    let stdout =
        || Box::new(BufWriter::with_capacity(1 << 16, io::stdout())) as Box<dyn Write + Send>;
    let mut config = TrackerConfig {
        target_pid: trace.pid,
        exclude_pid: (!trace.include_self).then(std::process::id),
        comm: trace.comm.clone(),
        cgroup_ids: trace.cgroup_ids.clone(),
        ringbuf_bytes: trace
            .ringbuf_bytes
            .unwrap_or(TrackerConfig::default().ringbuf_bytes),
        options: tracker_options(trace, tracker).map_err(RunError::Usage)?,
        ..TrackerConfig::default()
    };
    tracker
        .check(&config)
        .map_err(|e| RunError::Usage(e.to_string()))?;
    let stages =
        output_stages(args, info, &tracker.empty_fields(&config)).map_err(RunError::Usage)?;
    let output = handler::build::<Event>(&stages, &schema, &stdout)
        .map_err(|e| RunError::Usage(e.to_string()))?;
    let bucketed = tracker.totals_per_log2_bucket(&config);
    check_aggregates(&stages, info, tracker.reports_totals(&config), bucketed)
        .map_err(|e| RunError::Usage(e.to_string()))?;
    // Before the container manager asks Docker anything: without root, that one error.
    crate::engine::system::check_ready()?;
    // The container manager's Docker client and rescans run on this runtime meanwhile.
    let (_runtime, containers) = super::container_manager()?;
    let selector = containers
        .selector(
            trace.container.as_deref(),
            trace.container_name.as_deref(),
            trace.image.as_deref(),
        )
        .map_err(|e| RunError::Usage(e.to_string()))?;
    if let Some(selector) = &selector {
        config.cgroup_ids = containers.cgroups_matching(selector);
        config.follow_cgroups = true;
        containers.watch_cgroups()?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }

    let counters = Arc::new(Counters::default());
    let fan_in = FanIn::spawn("output", OUTPUT_QUEUE, output)?;
    // Filters run on the tracker thread, so dropped events never cross the channel;
    // enrichment comes first so that filters can use the container.
    let chain = Box::new(Enrich::new(
        containers.clone(),
        Filter::new(predicates, fan_in.sender(counters.lost_channel.clone())),
    ));
    let started = Instant::now();
    let handle = tracker.start(config, chain, counters)?;
    if let (Some(selector), Some(filter)) = (selector, handle.cgroup_filter()) {
        containers.follow(selector, &filter);
    }
    tracing::info!(tracker = info.name, programs = ?handle.prog_ids(), "tracing");
    // A person at a terminal is told it runs and how to end it, as bpftrace does; a
    // pipeline's consumer reads stdout and the summary only.
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        let until = args
            .duration
            .map_or(String::new(), |d| format!(" for {:.1} s", d.as_secs_f64()));
        eprintln!("Tracing {}{until}... Ctrl-C to end.", info.name);
    }

    let deadline = args.duration.map(|length| started + length);
    while !stop.load(Ordering::Relaxed)
        && !handle.is_finished()
        && !fan_in.failed()
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = handle.stop()?;
    let output_result = fan_in.join();
    eprintln!(
        "{}: {} events seen, {} lost (kernel {}, channel {}, malformed {}) in {:.1} s",
        info.name,
        stats.seen,
        stats.lost(),
        stats.lost_kernel,
        stats.lost_channel,
        stats.malformed,
        started.elapsed().as_secs_f64()
    );
    match output_result {
        // The reader went away (`| head`): that ends the run, it is not a failure.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
