//! The trackers (the seed's probes) and their registry. Adding one: write
//! `probes/<name>.bpf.c`, add a folder `server/trackers/<name>/` whose module implements
//! [`Tracker`] and [`EventBody`], and add one line to `register_trackers!` below.

pub mod files;
pub mod ipc;
pub mod process;
pub mod syscall;
pub mod tcp;

use std::sync::Arc;

use crate::engine::{Counters, Run, TrackerConfig, TrackerError, TrackerHandle};
use crate::handler::Handler;
use crate::model::{EventBody, TrackerInfo, Value};

/// One decoded kernel event of any registered tracker.
pub type Event = crate::model::Event<Body>;

/// What a tracker needs to be: a catalog entry and a body that runs it to the end.
pub trait Tracker: Sync {
    fn info(&self) -> &'static TrackerInfo;
    /// Opens, configures, loads and attaches the probe, then hands over to [`Run::serve`].
    fn run(&self, run: Run<'_, Event>) -> Result<(), TrackerError>;
    /// The tracker-specific [`TrackerConfig`] options this tracker takes (`OPTION_*`).
    fn options(&self) -> &'static [&'static str] {
        &[]
    }
}

/// Finds a registered tracker by name.
pub fn find_tracker(name: &str) -> Result<&'static dyn Tracker, TrackerError> {
    TRACKERS
        .iter()
        .copied()
        .find(|t| t.info().name == name)
        .ok_or_else(|| TrackerError::Unknown {
            name: name.to_string(),
            known: TRACKERS
                .iter()
                .map(|t| t.info().name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Checks `config` against `tracker` and starts an instance of it feeding `chain`;
/// returns once its programs are attached, or with why they are not.
pub fn start(
    tracker: &'static dyn Tracker,
    config: TrackerConfig,
    chain: Box<dyn Handler<Event>>,
    counters: Arc<Counters>,
) -> Result<TrackerHandle, TrackerError> {
    config.validate_for(tracker.info().name, tracker.options())?;
    TrackerHandle::spawn(tracker.info().name, config, chain, counters, move |run| {
        tracker.run(run)
    })
}

/// Declares the event body enum and the tracker registry from one list.
macro_rules! register_trackers {
    ($($variant:ident => $tracker:path, $body:ty;)+) => {
        /// The tracker-specific part of an event.
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum Body {
            $($variant($body),)+
        }

        $(impl From<$body> for Body {
            fn from(body: $body) -> Self {
                Body::$variant(body)
            }
        })+

        impl EventBody for Body {
            fn info(&self) -> &'static TrackerInfo {
                match self { $(Body::$variant(b) => b.info(),)+ }
            }
            fn kind(&self) -> &'static str {
                match self { $(Body::$variant(b) => b.kind(),)+ }
            }
            fn get(&self, name: &str) -> Option<Value<'_>> {
                match self { $(Body::$variant(b) => b.get(name),)+ }
            }
        }

        /// Every tracker this build knows, in catalog order.
        pub static TRACKERS: &[&dyn Tracker] = &[$(&$tracker,)+];
    };
}

register_trackers! {
    Process => process::ProcessTracker, process::ProcessEvent;
    Syscall => syscall::SyscallTracker, syscall::SyscallEvent;
    Tcp => tcp::TcpTracker, tcp::TcpEvent;
    Ipc => ipc::IpcTracker, ipc::IpcEvent;
    Files => files::FilesTracker, files::FilesEvent;
}
