//! `eunomia guard`: the standing guard on this host, from the command line. Its alerts
//! are printed as they come: JSON Lines in the shape of Falco's JSON output (`time`,
//! `rule`, `priority`, `output`, `source`, `tags`, `hostname`, `output_fields`, plus
//! `rule_id` and `mitre`), or one line of text each.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::args::parse_duration;
use super::RunError;
use crate::handler::push_json_record;
use crate::metrics::Metrics;
use crate::model::{rfc3339_nanos, EventBody, Severity};
use crate::security::{AlertSink, Guard, Raised, RuleSet};

/// Alerts the printer may fall behind by before they are counted as lost.
const PRINT_QUEUE: usize = 4096;

#[derive(Debug, clap::Args)]
pub struct GuardArgs {
    /// A rules file (YAML, see the README) instead of the built-in rules.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Only these rules (comma-separated ids); default every enabled rule.
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub only: Vec<String>,
    /// How alerts are printed.
    #[arg(long, value_enum, default_value_t = GuardFormat::Json)]
    pub format: GuardFormat,
    /// Stop after this long (`30`, `30s`, `2m`, `1h`); without it, run until Ctrl-C.
    #[arg(short = 'd', long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GuardFormat {
    /// One JSON object per alert, in the shape of Falco's JSON output.
    Json,
    /// `time SEVERITY rule_id: output`.
    Text,
}

/// The guard's side of the printer's queue: never waits, counts what a full queue drops.
#[derive(Clone)]
struct PrintQueue {
    tx: mpsc::SyncSender<Raised>,
    lost: Arc<AtomicU64>,
}

impl AlertSink for PrintQueue {
    fn raise(&self, raised: Raised) {
        if self.tx.try_send(raised).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Falco's priority for a severity.
fn priority(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "Critical",
        Severity::High => "Error",
        Severity::Medium => "Warning",
        Severity::Low => "Notice",
        Severity::Info => "Informational",
    }
}

/// One alert as a JSON line, in the shape of Falco's JSON output.
fn json_line(raised: &Raised, hostname: &str) -> Vec<u8> {
    let rule = &raised.rule;
    let head = serde_json::json!({
        "time": rfc3339_nanos(raised.event.header.ts_ns),
        "rule": rule.name,
        "rule_id": rule.id,
        "priority": priority(rule.severity),
        "output": raised.output,
        "source": raised.event.body.info().name,
        "tags": rule.tags,
        "mitre": rule.mitre,
        "hostname": hostname,
    });
    let mut line = serde_json::to_vec(&head).expect("JSON values serialize");
    line.pop(); // the closing brace: output_fields follow
    line.extend_from_slice(b",\"output_fields\":");
    push_json_record(&mut line, &raised.event);
    line.extend_from_slice(b"}\n");
    line
}

fn text_line(raised: &Raised) -> Vec<u8> {
    format!(
        "{} {} {}: {}\n",
        rfc3339_nanos(raised.event.header.ts_ns),
        raised.rule.severity.as_str(),
        raised.rule.id,
        raised.output
    )
    .into_bytes()
}

pub fn guard(args: &GuardArgs) -> Result<(), RunError> {
    let set = match &args.rules {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| RunError::Usage(format!("--rules {}: {e}", path.display())))?;
            RuleSet::parse(&text).map_err(|e| RunError::Usage(e.to_string()))?
        }
        None => RuleSet::builtin(),
    };
    let selection = if args.only.is_empty() {
        vec!["*".to_string()]
    } else {
        args.only.clone()
    };
    let rules = set.select(&selection).map_err(RunError::Usage)?;
    crate::engine::system::check_ready()?;
    let (_runtime, containers) = super::container_manager()?;

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let (tx, rx) = mpsc::sync_channel(PRINT_QUEUE);
    let lost = Arc::new(AtomicU64::new(0));
    let queue = PrintQueue {
        tx,
        lost: lost.clone(),
    };
    let started = Instant::now();
    let guard = Guard::start(
        &set,
        &rules,
        Default::default(),
        queue,
        containers,
        Metrics::new(),
    )
    .map_err(|e| RunError::Failed(e.into()))?;
    eprintln!(
        "guard: {} rules on {}",
        guard.rules().len(),
        guard.trackers().join(", ")
    );
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| String::new(), |h| h.trim().to_string());
    let deadline = args.duration.map(|length| started + length);
    let mut out = io::stdout().lock();
    let mut alerts = 0u64;
    let mut print = |raised: Raised| -> io::Result<()> {
        alerts += 1;
        let line = match args.format {
            GuardFormat::Json => json_line(&raised, &hostname),
            GuardFormat::Text => text_line(&raised),
        };
        out.write_all(&line)?;
        out.flush()
    };
    let mut printed = Ok(());
    while printed.is_ok()
        && !stop.load(Ordering::Relaxed)
        && guard.failed_tracker().is_none()
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        if let Ok(raised) = rx.recv_timeout(Duration::from_millis(20)) {
            printed = print(raised);
        }
    }
    let failed = guard.failed_tracker();
    let cost = guard.cost();
    let stats = guard.stop()?;
    // What the trackers drained as they stopped.
    while let (true, Ok(raised)) = (printed.is_ok(), rx.try_recv()) {
        printed = print(raised);
    }
    eprintln!(
        "guard: {alerts} alerts ({} lost), {} events seen, {} lost, in {:.1} s; \
         BPF {:.1} ms in {} runs, CPU {:.1} ms",
        lost.load(Ordering::Relaxed),
        stats.seen,
        stats.lost(),
        started.elapsed().as_secs_f64(),
        cost.bpf_run_time.as_secs_f64() * 1e3,
        cost.bpf_runs,
        cost.cpu_time.as_secs_f64() * 1e3,
    );
    if let Some(tracker) = failed {
        return Err(RunError::Failed(anyhow::anyhow!(
            "the guard's {tracker} tracker stopped on its own"
        )));
    }
    match printed {
        // The reader went away (`| head`): that ends the guard, it is not a failure.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
