//! The edges: the command line (the seed's cmd) and `serve`, which assembles the server.

pub mod cli;
pub mod serve;
