//! Fan-in: several producers (tracker threads) feed one handler on its own thread,
//! through one bounded channel. A full channel drops the event and counts the drop
//! against the producer that sent it.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use super::{Flow, Handler};

/// Longest the consumer goes without a flush while no event comes.
const IDLE_FLUSH: std::time::Duration = std::time::Duration::from_millis(100);

pub struct FanIn<E> {
    tx: SyncSender<E>,
    consumer: JoinHandle<io::Result<()>>,
    failed: Arc<AtomicBool>,
}

impl<E: Clone + Send + 'static> FanIn<E> {
    /// Starts the consumer thread that runs `handler` on everything the senders send.
    pub fn spawn<H: Handler<E> + 'static>(
        name: &str,
        capacity: usize,
        handler: H,
    ) -> io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let failed = Arc::new(AtomicBool::new(false));
        let flag = failed.clone();
        let consumer = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || consume(rx, handler, &flag))?;
        Ok(Self {
            tx,
            consumer,
            failed,
        })
    }

    /// A handler that forwards into the channel; its drops are added to `dropped`.
    pub fn sender(&self, dropped: Arc<AtomicU64>) -> FanInSender<E> {
        FanInSender {
            tx: self.tx.clone(),
            dropped,
        }
    }

    /// Whether the handler reported an error (its output went away, say).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Waits until every sender is gone and the consumer has finished its handler.
    pub fn join(self) -> io::Result<()> {
        drop(self.tx);
        self.consumer
            .join()
            .map_err(|_| io::Error::other("fan-in consumer thread panicked"))?
    }
}

fn consume<E, H: Handler<E>>(
    rx: Receiver<E>,
    mut handler: H,
    failed: &AtomicBool,
) -> io::Result<()> {
    let mut result = Ok(());
    loop {
        match rx.recv_timeout(IDLE_FLUSH) {
            Ok(event) => {
                handler.handle(&event);
                while let Ok(event) = rx.try_recv() {
                    handler.handle(&event);
                }
            }
            // Quiet: flushed all the same, so a periodic table is printed on time.
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // The channel ran dry: a good moment to let output reach its reader.
        if result.is_ok() {
            result = handler.flush();
            failed.store(result.is_err(), Ordering::Relaxed);
        }
    }
    let finished = handler.finish();
    result.and(finished)
}

pub struct FanInSender<E> {
    tx: SyncSender<E>,
    dropped: Arc<AtomicU64>,
}

impl<E: Clone + Send> Handler<E> for FanInSender<E> {
    fn handle(&mut self, event: &E) -> Flow {
        match self.tx.try_send(event.clone()) {
            Ok(()) => Flow::Pass,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Flow::Caught
            }
        }
    }
}
