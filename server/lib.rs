//! Eunomia: an on-demand eBPF tracing server for Linux hosts and containers.
//!
//! The seed's components, one module each, from the ground up (imports point down only;
//! `server/README.md` has the map and the path of one event):
//! - `model`: the record vocabulary (events, fields, catalog entries, `Record`);
//! - `handler`: the handler chain (filter, convert, fan-out, fan-in, aggregate, print);
//! - `engine`: running tracker instances, each on its own thread (the seed's
//!   tracker_manager), with start-up checks (root, BTF, tracefs) and libbpf logging;
//! - `trackers`: the trackers (the seed's probes: BPF programs in `probes/`, decoding and
//!   catalog here) and their registry;
//! - `container`: the container manager (cgroups, runc, Docker; enrichment);
//! - `results`: where session results live, SQLite or in-memory aggregators, and the
//!   query semantics both answer alike;
//! - `metrics`: the server's own Prometheus metrics; `exporter`: the metrics sessions
//!   export from their events; `config`: the TOML config loader;
//! - `seccomp`: the seccomp manager (record, advise, enforce, verify);
//! - `session`: timed tracing sessions (tracker + filter + chain + window);
//! - `fleet`: sessions run by several servers together over a shared PostgreSQL;
//! - `api`: the GraphQL API and its HTTP routes;
//! - `app`: the command line (the seed's cmd) and `serve`.

pub mod api;
pub mod app;
pub mod config;
pub mod container;
pub mod engine;
pub mod exporter;
pub mod fleet;
pub mod handler;
pub mod metrics;
pub mod model;
pub mod results;
pub mod seccomp;
pub mod security;
pub mod session;
pub mod trackers;
