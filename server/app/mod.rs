//! The edges: the command line (the seed's cmd), `serve`, which assembles the server,
//! `remote`, the command line's client of a server, `guard`, the standing guard from
//! the command line, and `seccomp`, the seccomp manager's commands.

pub mod args;
pub mod cli;
pub mod guard;
pub mod remote;
pub mod seccomp;
pub mod serve;

use std::process::ExitCode;
use std::sync::Arc;

use crate::container::{ContainerManager, ContainerOptions};

/// How a command fails: the exit code tells the two apart.
pub enum RunError {
    /// The request itself is wrong: exit code 2.
    Usage(String),
    /// Tracing failed: exit code 1.
    Failed(anyhow::Error),
}

/// The exit code of a command's result, with its error on stderr.
pub fn exit_code(result: Result<(), RunError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError::Usage(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        Err(RunError::Failed(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for RunError {
    fn from(err: E) -> Self {
        RunError::Failed(err.into())
    }
}

/// A container manager for a command that traces here: synced once, then kept current
/// (Docker's events, rescans) on the returned runtime, which must live as long as it.
pub fn container_manager() -> Result<(tokio::runtime::Runtime, Arc<ContainerManager>), RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let containers = ContainerManager::new(ContainerOptions::default());
    runtime.block_on(containers.sync());
    runtime.block_on(async { containers.spawn_background() });
    Ok((runtime, containers))
}
