//! The trackers (the seed's probes). Adding one: write `probes/<name>.bpf.c`, add a module
//! here that implements [`Tracker`] and [`EventBody`], and add one line to
//! `register_trackers!` below.

pub mod files;
pub mod process;
pub mod syscall;
mod syscall_names;

use crate::event::{EventBody, Value};
use crate::tracker_manager::Tracker;

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
            fn tracker(&self) -> &'static str {
                match self { $(Body::$variant(b) => b.tracker(),)+ }
            }
            fn kind(&self) -> &'static str {
                match self { $(Body::$variant(b) => b.kind(),)+ }
            }
            fn visit(&self, visit: &mut dyn FnMut(&str, Value<'_>)) {
                match self { $(Body::$variant(b) => b.visit(visit),)+ }
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
    Files => files::FilesTracker, files::FilesEvent;
}
