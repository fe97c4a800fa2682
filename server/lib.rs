//! Eunomia: an on-demand eBPF tracing server for Linux hosts and containers.
//!
//! The seed's components, one module each:
//! - `tracker_manager`: start and stop trackers, each on its own thread;
//! - `probes`: the trackers (BPF programs in `probes/`, decoding and catalog here);
//! - `handler`: the handler chain (filter, convert, fan-out, fan-in, aggregate, print);
//! - `system`: start-up checks (root, BTF, tracefs) and libbpf logging;
//! - `cli`: the command line (`cmd`).

pub mod cli;
pub mod event;
pub mod handler;
pub mod metrics;
pub mod probes;
pub mod query;
pub mod system;
pub mod tracker_manager;
