//! The edges: the command line (the seed's cmd), `serve`, which assembles the server,
//! `remote`, the command line's client of a server, and `guard`, the standing guard from
//! the command line.

pub mod args;
pub mod cli;
pub mod guard;
pub mod remote;
pub mod serve;

/// How a command fails: the exit code tells the two apart.
pub enum RunError {
    /// The request itself is wrong: exit code 2.
    Usage(String),
    /// Tracing failed: exit code 1.
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for RunError {
    fn from(err: E) -> Self {
        RunError::Failed(err.into())
    }
}
