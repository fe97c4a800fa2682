//! The seccomp manager (the seed's "restrict a process with seccomp"): observe what a
//! workload calls, advise an OCI seccomp profile from it, enforce a profile on a command,
//! and verify a profile by running the workload under it with the syscall tracker on.
//!
//! - `profile`: OCI profiles (the runtime spec's types, from `oci-spec`): advise, read,
//!   compare, merge, and the Kubernetes forms;
//! - `filter`: a profile compiled to a kernel filter by `seccompiler`, installed in a
//!   child before it execs;
//! - `record`: a command run in a cgroup of its own with the syscall tracker filtered to
//!   it in the kernel, from its first instruction: what it called, what was refused.

pub mod filter;
pub mod profile;
pub mod record;

/// What goes wrong with a profile or a recording.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The text is not an OCI seccomp profile.
    #[error("not a seccomp profile: {0}")]
    Malformed(String),
    /// The profile is one, but not one this manager can install.
    #[error("cannot enforce this profile: {0}")]
    Unsupported(String),
    #[error("seccomp filter: {0}")]
    Filter(#[from] seccompiler::BackendError),
    #[error("recording needs cgroup v2, which is not mounted")]
    NoCgroupV2,
    #[error("docker: {0}")]
    Docker(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Tracker(#[from] crate::engine::TrackerError),
}
