//! Where session results live and how they are asked: the server's database ([`store`],
//! SQLite (`sqlite`) or PostgreSQL (`postgres`), fed by one [`writer`]) or in-memory
//! aggregators (`memory`), all answering the same `query` semantics, and all behind
//! [`SessionResults`], so that whoever asks need not know which store a session uses.

pub mod db;
pub mod memory;
pub mod postgres;
pub mod query;
pub mod sqlite;
pub mod stacks;
pub mod store;
pub mod writer;

pub use db::{StoreError, StoreOptions};

use memory::MemoryError;
use query::{
    AggResult, AggregateQuery, EventsQuery, HistogramQuery, HistogramResult, QueryError,
    StoredEvent, TimeBucketResult, TimeseriesQuery,
};

/// One session's results, whichever store keeps them.
#[async_trait::async_trait]
pub trait SessionResults: Send + Sync {
    /// A page of stored events (for a MEMORY session, of the most recent ones it keeps),
    /// and whether more follow.
    async fn events(&self, q: &EventsQuery) -> Result<(Vec<StoredEvent>, bool), ResultsError>;

    async fn aggregate(&self, q: &AggregateQuery) -> Result<Vec<AggResult>, ResultsError>;

    async fn timeseries(&self, q: &TimeseriesQuery) -> Result<Vec<TimeBucketResult>, ResultsError>;

    async fn histogram(&self, q: &HistogramQuery) -> Result<Vec<HistogramResult>, ResultsError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// The question does not fit the session's tracker: the asker's to fix.
    #[error(transparent)]
    Query(QueryError),
    /// The question asks more than a MEMORY session keeps: the asker's to fix too.
    #[error(transparent)]
    Memory(MemoryError),
    /// The database failed to answer.
    #[error("storage: {0}")]
    Store(StoreError),
    /// The question ran past its time in the fleet's database, which stopped it.
    #[error("{0}")]
    TooCostly(String),
    /// The fleet's database failed to answer.
    #[error("fleet database: {0}")]
    Fleet(String),
}

/// Both stores check queries with [`QueryError`]; it is one kind of error whichever did.
impl From<MemoryError> for ResultsError {
    fn from(err: MemoryError) -> Self {
        match err {
            MemoryError::Query(err) => Self::Query(err),
            other => Self::Memory(other),
        }
    }
}

impl From<QueryError> for ResultsError {
    fn from(err: QueryError) -> Self {
        Self::Query(err)
    }
}

impl From<StoreError> for ResultsError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Query(err) => Self::Query(err),
            other => Self::Store(other),
        }
    }
}

/// Returns free heap pages to the system, after a burst of rows or closed connections.
pub fn release_heap() {
    // SAFETY: malloc_trim has no preconditions; it only returns free heap pages.
    unsafe { libc::malloc_trim(0) };
}
