//! The handler chain (the seed's handler / data collector), made real.
//!
//! A handler sees an event and either passes it on or stops it ("caught"). Handlers are
//! composed at run time into chains; the four kinds of the design are all here:
//! - pass-through: [`Filter`] passes or catches the same event type;
//! - converting: [`Convert`] and [`Aggregator`] turn events into another type;
//! - fan-out: [`FanOut`] gives one event to several next handlers;
//! - fan-in: [`FanIn`] lets several tracker threads feed one handler through a bounded
//!   channel whose overflow is counted, never silent.
//!
//! The hot path is synchronous: `handle` takes a reference and allocates nothing in the
//! built-in pass-through handlers.

mod aggregate;
mod chain;
mod fan_in;
mod filter;
mod histogram;
mod owned;
mod printer;

use std::io;

pub use aggregate::{
    is_numeric, nearest_rank, AggOp, AggRow, AggregateSpec, Aggregator, KeyValue, SortBy,
    MAX_GROUP_BY,
};
pub use chain::{build, ChainError, OutputFactory, Schema, Stage};
pub use fan_in::{FanIn, FanInSender};
pub use filter::{Filter, FilterError, Op, Predicate};
pub use histogram::{HistogramPrinter, Log2Bucket};
pub use owned::OwnedRecord;
pub use printer::{push_json_record, Clock, CsvPrinter, Format, JsonPrinter, TextPrinter};

/// What became of an event a handler was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// The event went on down the chain.
    Pass,
    /// A handler stopped it (filtered out, consumed by a sink, dropped by a full channel).
    Caught,
}

/// One link of a chain. `E` is the type of event it accepts.
pub trait Handler<E: ?Sized>: Send {
    fn handle(&mut self, event: &E) -> Flow;

    /// Pushes buffered output downstream (e.g. to a terminal) without ending the stream.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// The stream has ended: emit what was held back (aggregates) and flush.
    fn finish(&mut self) -> io::Result<()> {
        self.flush()
    }

    /// A periodic aggregate is about to hand on one period's rows: printers start a new
    /// table (the text table with the time and its header again). Handlers in between
    /// pass it on.
    fn begin_period(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A boxed handler, and a borrowed one (which lets a caller keep the end of a chain to
/// read it), are handlers.
macro_rules! forward_handler {
    ($($pointer:ty),+) => {$(
        impl<E: ?Sized, H: Handler<E> + ?Sized> Handler<E> for $pointer {
            fn handle(&mut self, event: &E) -> Flow {
                (**self).handle(event)
            }

            fn flush(&mut self) -> io::Result<()> {
                (**self).flush()
            }

            fn finish(&mut self) -> io::Result<()> {
                (**self).finish()
            }

            fn begin_period(&mut self) -> io::Result<()> {
                (**self).begin_period()
            }
        }
    )+};
}

forward_handler!(Box<H>, &mut H);

/// The end of a chain that keeps nothing: every event passes out of it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Discard;

impl<E: ?Sized> Handler<E> for Discard {
    fn handle(&mut self, _event: &E) -> Flow {
        Flow::Pass
    }
}

/// Fan-out: every event goes to each next handler. It passes when any branch passed it.
pub struct FanOut<E: ?Sized> {
    branches: Vec<Box<dyn Handler<E>>>,
}

impl<E: ?Sized> FanOut<E> {
    pub fn new(branches: Vec<Box<dyn Handler<E>>>) -> Self {
        Self { branches }
    }
}

impl<E: ?Sized> Handler<E> for FanOut<E> {
    fn handle(&mut self, event: &E) -> Flow {
        let mut flow = Flow::Caught;
        for branch in &mut self.branches {
            if branch.handle(event) == Flow::Pass {
                flow = Flow::Pass;
            }
        }
        flow
    }

    fn flush(&mut self) -> io::Result<()> {
        each_then_first_error(&mut self.branches, |b| b.flush())
    }

    fn finish(&mut self) -> io::Result<()> {
        each_then_first_error(&mut self.branches, |b| b.finish())
    }

    fn begin_period(&mut self) -> io::Result<()> {
        each_then_first_error(&mut self.branches, |b| b.begin_period())
    }
}

/// Runs `f` on every branch even when one fails, and reports the first failure.
fn each_then_first_error<T>(
    items: &mut [T],
    mut f: impl FnMut(&mut T) -> io::Result<()>,
) -> io::Result<()> {
    let mut result = Ok(());
    for item in items {
        let outcome = f(item);
        if result.is_ok() {
            result = outcome;
        }
    }
    result
}

/// Converting: maps each input to zero or one output of another type for the next handler.
pub struct Convert<F, N> {
    convert: F,
    next: N,
}

impl<F, N> Convert<F, N> {
    pub fn new(convert: F, next: N) -> Self {
        Self { convert, next }
    }
}

impl<I: ?Sized, O, F, N> Handler<I> for Convert<F, N>
where
    F: FnMut(&I) -> Option<O> + Send,
    N: Handler<O>,
{
    fn handle(&mut self, event: &I) -> Flow {
        match (self.convert)(event) {
            Some(out) => self.next.handle(&out),
            None => Flow::Caught,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.next.flush()
    }

    fn begin_period(&mut self) -> io::Result<()> {
        self.next.begin_period()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.next.finish()
    }
}
