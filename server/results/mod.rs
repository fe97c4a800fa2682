//! Where session results live and how they are asked: SQLite (`sqlite`) or in-memory
//! aggregators (`memory`), both answering the same `query` semantics.

pub mod memory;
pub mod query;
pub mod sqlite;
