//! The trackers (the seed's probes) and their registry. Adding one: write
//! `probes/<name>.bpf.c`, add a folder `server/trackers/<name>/` whose module implements
//! [`Tracker`] (with its typed options) and [`EventBody`], and add one line to
//! `register_trackers!` below.

pub mod bind;
pub mod biolatency;
pub mod capable;
pub mod cgroup;
pub mod filelife;
pub mod files;
pub mod ipc;
pub mod memleak;
pub mod mount;
pub mod offcpu;
pub mod oomkill;
pub mod process;
pub mod profile;
pub mod runqlat;
pub mod security;
pub mod signal;
pub mod syscall;
pub mod tcp;
pub mod tcpretrans;
pub mod warm;

// The probes' compiled objects (`PROBE_OBJECTS`), for the engine's BTF cache.
include!(concat!(env!("OUT_DIR"), "/probe_objects.rs"));

use std::sync::Arc;

use crate::engine::{
    options, Counters, OptionInfo, Preloaded, Run, TrackerConfig, TrackerError, TrackerHandle,
    TrackerOptions,
};
use crate::handler::Handler;
use crate::model::{EventBody, TrackerInfo, Value};

/// One decoded kernel event of any registered tracker.
pub type Event = crate::model::Event<Body>;

/// What a tracker needs to be: a catalog entry, its options, and a body that runs it.
pub trait Tracker: Sync + 'static {
    /// Its own options ([`NoOptions`](crate::engine::NoOptions) if it takes none).
    type Options: TrackerOptions;
    /// Whether an instance can be loaded before its session's filters are known, in the
    /// server's warm pool: not when loading it reads them.
    const PRELOADS: bool = true;
    fn info(&self) -> &'static TrackerInfo;
    /// Opens, configures, loads and attaches the probe, then hands over to [`Run::serve`].
    fn run(&self, run: Run<'_, Event>, options: &Self::Options) -> Result<(), TrackerError>;
}

/// A [`Tracker`] as the registry holds it, whatever its options' type.
pub trait AnyTracker: Sync {
    fn info(&self) -> &'static TrackerInfo;
    /// The options it takes, for help texts and forms.
    fn options(&self) -> Vec<OptionInfo>;
    /// Whether `config` is one it can start with; [`start`](Self::start) checks it too.
    fn check(&self, config: &TrackerConfig) -> Result<(), TrackerError>;
    /// Whether a session with `config` stores interval totals (see
    /// [`TrackerOptions::reports_totals`](crate::engine::TrackerOptions::reports_totals)).
    fn reports_totals(&self, config: &TrackerConfig) -> bool;
    /// The total fields a histogram of is exact in a session with `config` (see
    /// [`TrackerOptions::totals_per_log2_bucket`](crate::engine::TrackerOptions::totals_per_log2_bucket)).
    fn totals_per_log2_bucket(&self, config: &TrackerConfig) -> &'static [&'static str];
    /// The fields no event of a session with `config` has (see
    /// [`TrackerOptions::empty_fields`](crate::engine::TrackerOptions::empty_fields)).
    fn empty_fields(&self, config: &TrackerConfig) -> Vec<&'static str>;
    /// Checks `config` and starts an instance feeding `chain`; returns once its programs
    /// are attached, or with why they are not.
    fn start(
        &'static self,
        config: TrackerConfig,
        chain: Box<dyn Handler<Event>>,
        counters: Arc<Counters>,
    ) -> Result<TrackerHandle, TrackerError> {
        self.preload(config.clone())?.start(config, chain, counters)
    }
    /// Checks `config` and starts loading an instance with it, for a session whose
    /// configuration [`fits`](Preloaded::fits) it to claim.
    fn preload(&'static self, config: TrackerConfig) -> Result<Preloaded<Event>, TrackerError>;
    /// See [`Tracker::PRELOADS`].
    fn preloads(&self) -> bool;
}

impl<T: Tracker> AnyTracker for T {
    fn info(&self) -> &'static TrackerInfo {
        Tracker::info(self)
    }

    fn options(&self) -> Vec<OptionInfo> {
        options::describe::<T::Options>()
    }

    fn check(&self, config: &TrackerConfig) -> Result<(), TrackerError> {
        parse_options(self, config).map(drop)
    }

    fn reports_totals(&self, config: &TrackerConfig) -> bool {
        parse_options(self, config).is_ok_and(|options| options.reports_totals())
    }

    fn totals_per_log2_bucket(&self, config: &TrackerConfig) -> &'static [&'static str] {
        parse_options(self, config).map_or(&[], |options| options.totals_per_log2_bucket())
    }

    fn empty_fields(&self, config: &TrackerConfig) -> Vec<&'static str> {
        parse_options(self, config).map_or(Vec::new(), |options| options.empty_fields())
    }

    fn preload(&'static self, config: TrackerConfig) -> Result<Preloaded<Event>, TrackerError> {
        let options = parse_options(self, &config)?;
        Preloaded::spawn(Tracker::info(self).name, config, move |run| {
            self.run(run, &options)
        })
    }

    fn preloads(&self) -> bool {
        T::PRELOADS
    }
}

/// Checks the shared settings of `config`, then parses its options as `T`'s.
fn parse_options<T: Tracker>(
    tracker: &T,
    config: &TrackerConfig,
) -> Result<T::Options, TrackerError> {
    config.validate()?;
    options::parse::<T::Options>(Tracker::info(tracker).name, &config.options)
}

/// Finds a registered tracker by name.
pub fn find_tracker(name: &str) -> Result<&'static dyn AnyTracker, TrackerError> {
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

/// Declares the event body enum and the tracker registry from one list.
macro_rules! register_trackers {
    ($($variant:ident => $tracker:path, $body:ty;)+) => {
        /// The tracker-specific part of an event.
        #[derive(Clone, Debug, PartialEq)]
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
        pub static TRACKERS: &[&dyn AnyTracker] = &[$(&$tracker,)+];
    };
}

register_trackers! {
    Process => process::ProcessTracker, process::ProcessEvent;
    Syscall => syscall::SyscallTracker, syscall::SyscallEvent;
    Tcp => tcp::TcpTracker, tcp::TcpEvent;
    Ipc => ipc::IpcTracker, ipc::IpcEvent;
    Files => files::FilesTracker, files::FilesEvent;
    Signal => signal::SignalTracker, signal::SignalEvent;
    Capable => capable::CapableTracker, capable::CapableEvent;
    Oomkill => oomkill::OomkillTracker, oomkill::OomkillEvent;
    Bind => bind::BindTracker, bind::BindEvent;
    Mount => mount::MountTracker, mount::MountEvent;
    Filelife => filelife::FilelifeTracker, filelife::FilelifeEvent;
    Biolatency => biolatency::BiolatencyTracker, biolatency::BiolatencyEvent;
    Runqlat => runqlat::RunqlatTracker, runqlat::RunqlatEvent;
    Tcpretrans => tcpretrans::TcpretransTracker, tcpretrans::TcpretransEvent;
    Profile => profile::ProfileTracker, profile::ProfileEvent;
    Offcpu => offcpu::OffcpuTracker, offcpu::OffcpuEvent;
    Memleak => memleak::MemleakTracker, memleak::MemleakEvent;
    Security => security::SecurityTracker, security::SecurityEvent;
    Cgroup => cgroup::CgroupTracker, cgroup::CgroupEvent;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event is copied at the size of the largest tracker's body plus the header
    /// (into the memory store's ring, through channels): 904 bytes, an exec's two inline
    /// paths (624 before the cwd). Longer text (an exec's arguments) is kept out of line,
    /// behind an `Arc`, rather than making every event bigger.
    /// The filters user space writes after load are laid out as the probes' own
    /// `struct filter_config`, as the generated skeleton types it.
    #[test]
    fn filters_are_written_as_the_probes_lay_them_out() {
        use process::skel::types::filter_config;
        let config = TrackerConfig {
            target_pid: Some(7),
            exclude_current_ppid: Some(8),
            exclude_pid: Some(9),
            cgroup_ids: vec![5],
            cgroup_level: 2,
            comm: Some("nginx".into()),
            ..TrackerConfig::default()
        };
        let bytes = config.filter();
        assert_eq!(bytes.len(), std::mem::size_of::<filter_config>());
        // SAFETY: as many bytes as the type, which is made of integers only.
        let written: filter_config =
            unsafe { bytes.as_ptr().cast::<filter_config>().read_unaligned() };
        let comm: Vec<u8> = written.target_comm.iter().map(|&c| c as u8).collect();
        assert_eq!(
            (
                written.target_pid,
                written.exclude_current_ppid,
                written.exclude_pid,
                written.cgroup_level,
                written.filter_cgroup,
                written.filter_comm,
                comm.as_slice()
            ),
            (7, 8, 9, 2, 1, 1, b"nginx\0\0\0\0\0\0\0\0\0\0\0".as_slice())
        );
        let none = TrackerConfig::default().filter();
        assert!(none.iter().all(|&b| b == 0), "no filter is all zeros");
    }

    #[test]
    fn events_stay_within_an_execs_two_paths() {
        let size = std::mem::size_of::<Event>();
        assert!(size <= 904, "an event takes {size} bytes");
    }
}
