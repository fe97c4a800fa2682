//! `eunomia seccomp`: record a command's calls into a profile, run a command under a
//! profile (and verify it: which calls it refused), compare, merge, and print the forms
//! Docker and Kubernetes take.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxSeccomp;

use super::args::parse_duration;
use super::{exit_code, RunError};
use crate::container::{ContainerSelector, ResolveError};
use crate::seccomp::filter::Filter;
use crate::seccomp::profile::{
    self, diff, docker_run_args, docker_run_line, localhost_security_context, merge,
    operator_object, to_json,
};
use crate::seccomp::record::{record, watch, Enforced, Recording, Workload};

#[derive(Debug, clap::Args)]
pub struct SeccompArgs {
    #[command(subcommand)]
    pub command: SeccompCommand,
}

/// Where the advised profile goes, and how narrow it is.
#[derive(Debug, clap::Args)]
pub struct AdviceArgs {
    /// Write the profile here instead of to stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Allow socket, clone and personality only with the first arguments they were
    /// given: socket's families, clone's namespace flags, the personalities.
    #[arg(long)]
    narrow: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum SeccompCommand {
    /// Run a command (or a fresh container) to its end, recording every call it and its
    /// children make from the first instruction, and print the allow-list profile of them
    /// (OCI JSON).
    Record {
        #[command(flatten)]
        advice: AdviceArgs,
        #[command(flatten)]
        workload: WorkloadArgs,
    },
    /// Record a container for a while (the calls its processes make under their seccomp
    /// filter) and print the allow-list profile of them. A container that is not running
    /// yet is waited for by name and recorded from its first instruction; a restart is
    /// followed.
    Advise {
        /// The container: a name, an id or a unique id prefix.
        #[arg(long, value_name = "NAME|ID")]
        container: String,
        /// How long to watch (`30`, `30s`, `2m`); Ctrl-C ends it sooner.
        #[arg(short = 'd', long, value_parser = parse_duration)]
        duration: Duration,
        #[command(flatten)]
        advice: AdviceArgs,
    },
    /// Run a command under a profile (installed before it execs, with no_new_privs) and
    /// exit with its exit code.
    Exec {
        #[arg(long, value_name = "FILE")]
        profile: PathBuf,
        /// Also record the run and print on stderr each call the profile refused (name,
        /// calls, commands) and how the command ended (needs root).
        #[arg(long)]
        verify: bool,
        #[command(flatten)]
        workload: WorkloadArgs,
    },
    /// The calls one profile allows and the other does not.
    Diff { first: PathBuf, second: PathBuf },
    /// One profile allowing what any of these does.
    Merge {
        #[arg(required = true, num_args = 2..)]
        profiles: Vec<PathBuf>,
    },
    /// For Kubernetes: the pod securityContext of a `Localhost` profile (and where the
    /// file goes on each node), or with --operator a security-profiles-operator
    /// `SeccompProfile` object (YAML).
    Kubernetes {
        #[arg(long)]
        name: String,
        #[arg(long)]
        operator: bool,
        profile: PathBuf,
    },
    /// The `docker run` line that runs an image under the profile.
    Docker {
        profile: PathBuf,
        image: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

/// A command to run here, or with `--image` in a fresh container (then the words are the
/// container's command, the image's own without them).
#[derive(Debug, clap::Args)]
pub struct WorkloadArgs {
    /// Run the words in a fresh container of this image (`docker run --rm`).
    #[arg(long)]
    image: Option<String>,
    #[arg(
        required_unless_present = "image",
        trailing_var_arg = true,
        value_name = "CMD"
    )]
    command: Vec<OsString>,
}

impl WorkloadArgs {
    fn workload(&self) -> Workload {
        match &self.image {
            Some(image) => Workload::Container {
                image: image.clone(),
                command: self
                    .command
                    .iter()
                    .map(|w| w.to_string_lossy().into_owned())
                    .collect(),
            },
            None => {
                let mut command = Command::new(&self.command[0]);
                command.args(&self.command[1..]);
                Workload::Command(command)
            }
        }
    }
}

pub fn seccomp(args: &SeccompArgs) -> ExitCode {
    match run(&args.command) {
        Ok(code) => code,
        Err(err) => exit_code(Err(err)),
    }
}

fn run(command: &SeccompCommand) -> Result<ExitCode, RunError> {
    match command {
        SeccompCommand::Record { advice, workload } => {
            crate::engine::system::check_ready()?;
            let recording = record(workload.workload(), None, None).map_err(anyhow::Error::from)?;
            advised(&recording, advice)
        }
        SeccompCommand::Advise {
            container,
            duration,
            advice,
        } => {
            crate::engine::system::check_ready()?;
            // The container manager follows Docker and new cgroups on this runtime meanwhile.
            let (_runtime, containers) = super::container_manager()?;
            containers.watch_cgroups().map_err(anyhow::Error::from)?;
            let selector = match containers.resolve_running(container) {
                Ok(running) => ContainerSelector::Id(running.id),
                Err(ResolveError::Unknown(_)) => ContainerSelector::Name(container.clone()),
                Err(err) => return Err(RunError::Usage(err.to_string())),
            };
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(signal, stop.clone())?;
            }
            let deadline = Instant::now() + *duration;
            let recording = watch(
                |filter| {
                    // Once the tracker is attached: a container started from now on is
                    // recorded from its first instruction.
                    if let ContainerSelector::Name(name) = &selector {
                        eprintln!("no container {name} runs: waiting for one to start");
                    }
                    containers.follow(selector, filter)
                },
                || stop.load(Ordering::Relaxed) || Instant::now() >= deadline,
            )
            .map_err(anyhow::Error::from)?;
            if recording.calls.is_empty() {
                return Err(
                    anyhow::anyhow!("recorded no call: container {container} did not run").into(),
                );
            }
            advised(&recording, advice)
        }
        SeccompCommand::Exec {
            profile: path,
            verify,
            workload,
        } => {
            let profile = read(path)?;
            let filter = Filter::compile(&profile).map_err(|e| RunError::Usage(e.to_string()))?;
            if !filter.unknown.is_empty() {
                eprintln!(
                    "left out, no x86_64 call has these names: {}",
                    filter.unknown.join(", ")
                );
            }
            if *verify {
                crate::engine::system::check_ready()?;
                let enforced = Enforced {
                    filter: &filter,
                    path,
                };
                let recording = record(workload.workload(), Some(enforced), None)
                    .map_err(anyhow::Error::from)?;
                report(&recording, &profile);
                return Ok(exit_of(
                    recording.status.expect("a workload started here ends"),
                ));
            }
            let mut child = match workload.workload() {
                Workload::Command(mut command) => {
                    filter.install(&mut command);
                    command
                }
                Workload::Container { image, command } => {
                    let words = docker_run_args(&path.to_string_lossy(), &image, &command);
                    let mut docker = Command::new(&words[0]);
                    docker.args(&words[1..]);
                    docker
                }
            };
            let status = child
                .status()
                .map_err(|e| RunError::Usage(format!("{child:?}: {e}")))?;
            Ok(exit_of(status))
        }
        SeccompCommand::Diff { first, second } => {
            let diff = diff(&read(first)?, &read(second)?);
            println!(
                "{}",
                serde_json::to_string_pretty(&diff).expect("serializes")
            );
            Ok(ExitCode::SUCCESS)
        }
        SeccompCommand::Merge { profiles } => {
            let profiles = profiles
                .iter()
                .map(|p| read(p))
                .collect::<Result<Vec<_>, _>>()?;
            let merged = merge(&profiles).map_err(|e| RunError::Usage(e.to_string()))?;
            println!("{}", to_json(&merged));
            Ok(ExitCode::SUCCESS)
        }
        SeccompCommand::Kubernetes {
            name,
            operator,
            profile,
        } => {
            let profile = read(profile)?;
            match operator {
                true => print!("{}", operator_object(name, &profile)),
                false => print!("{}", localhost_security_context(name)),
            }
            Ok(ExitCode::SUCCESS)
        }
        SeccompCommand::Docker {
            profile,
            image,
            command,
        } => {
            read(profile)?;
            let path = std::fs::canonicalize(profile)?;
            println!(
                "{}",
                docker_run_line(&path.to_string_lossy(), image, command)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints (or writes) the profile advised from a recording, and on stderr what it saw.
fn advised(recording: &Recording, advice: &AdviceArgs) -> Result<ExitCode, RunError> {
    let text = to_json(&recording.profile(advice.narrow));
    match &advice.output {
        Some(path) => std::fs::write(path, text + "\n")?,
        None => println!("{text}"),
    }
    eprintln!(
        "recorded {} calls of {} kinds; the workload {}; {} events lost",
        recording.calls.values().map(|c| c.count).sum::<u64>(),
        recording.calls.len(),
        ended(recording),
        recording.lost
    );
    Ok(ExitCode::SUCCESS)
}

/// A profile file; one that cannot be read or is no profile is the caller's mistake.
fn read(path: &Path) -> Result<LinuxSeccomp, RunError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RunError::Usage(format!("{}: {e}", path.display())))?;
    profile::parse(&text).map_err(|e| RunError::Usage(format!("{}: {e}", path.display())))
}

fn ended(recording: &Recording) -> String {
    let Some(status) = recording.status else {
        return "was watched".into();
    };
    match (status.code(), ExitStatusExt::signal(&status)) {
        (Some(code), _) => format!("exited {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "ended".into(),
    }
}

/// What verification found, on stderr: the command's stdout stays its own.
fn report(recording: &Recording, profile: &LinuxSeccomp) {
    let denied = recording.denied(profile);
    eprintln!(
        "verify: the workload {}; {} calls refused by the profile; {} events lost",
        ended(recording),
        denied.values().map(|c| c.count).sum::<u64>(),
        recording.lost
    );
    for (name, calls) in denied {
        eprintln!(
            "denied {name}: {} calls by {}",
            calls.count,
            calls.comms.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
}

/// The command's own exit code; 128 + the signal that killed it, as a shell says.
fn exit_of(status: std::process::ExitStatus) -> ExitCode {
    let code = status
        .code()
        .unwrap_or_else(|| 128 + ExitStatusExt::signal(&status).unwrap_or(0));
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}
