//! The trackers (the seed's probes). Adding one: write `probes/<name>.bpf.c`, add a module
//! here that implements [`Tracker`] and [`EventBody`], and add one line to
//! `register_trackers!` below.

pub mod files;
pub mod ipc;
pub mod process;
pub mod syscall;
mod syscall_names;
pub mod tcp;

use crate::event::{EventBody, Value};
use crate::tracker_manager::{Tracker, TrackerInfo};

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
