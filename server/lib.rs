//! Eunomia: an on-demand eBPF tracing server for Linux hosts and containers.
//!
//! The seed's components, one module each:
//! - `tracker_manager`: start and stop trackers, each on its own thread;
//! - `probes`: the trackers (BPF programs in `probes/`, decoding and catalog here);
//! - `handler`: the handler chain (filter, convert, fan-out, fan-in, aggregate, print);
//! - `system`: start-up checks (root, BTF, tracefs) and libbpf logging;
//! - `container`: the container manager (cgroups, runc, Docker; enrichment);
//! - `cli`: the command line (`cmd`);
//! - `config`: the TOML config loader;
//! - `session`: timed tracing sessions (tracker + filter + chain + window);
//! - `store` (SQLite) and `memory` (in-memory aggregators): where session results live;
//! - `query`: what users ask of results, answered alike by both stores;
//! - `graphql`, `http`, `server`: the GraphQL server, its HTTP routes, and `serve`;
//! - `metrics`: the Prometheus exporter.

pub mod cli;
pub mod config;
pub mod container;
pub mod event;
pub mod graphql;
pub mod handler;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod probes;
pub mod query;
pub mod server;
pub mod session;
pub mod store;
pub mod system;
pub mod tracker_manager;
