//! The tracker engine (the seed's tracker_manager): runs tracker instances, several kinds
//! and several instances of one kind at once. Each running instance owns its BPF skeleton
//! on its own thread, polls its ring buffer, decodes records into events and feeds them to
//! its handler chain; probes that aggregate in BPF maps are drained on a timer. The engine
//! knows no tracker: it is generic over the event type, and `trackers` plugs them in.

pub mod buckets;
pub mod config;
pub mod core_btf;
pub mod options;
pub mod stacks;
pub mod system;

pub use config::{IntervalMs, Mode, TrackerConfig, MAX_CGROUP_FILTER};
pub use core_btf::ProbeObject;
pub use options::{NoOptions, OptionInfo, TrackerOptions};

use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use libbpf_rs::skel::OpenSkel;
use libbpf_rs::{
    Link, MapCore, MapFlags, MapHandle, Object, OpenObject, ProgramHandle, ProgramMut,
    RingBufferBuilder,
};

use crate::handler::Handler;
use system::StartupError;

/// How often the ring buffer poll wakes to notice a stop request.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How often the kernel's count of skipped program runs is read (one syscall a program).
const SKIPPED_READ_INTERVAL: Duration = Duration::from_secs(1);
/// Records one poll takes at most before the loop looks at stop requests, drains and
/// flushes again: tens of milliseconds at the fastest streams.
const POLL_BUDGET: u32 = 1 << 16;

/// Writes what every probe reads before load into a skeleton's read-only globals. A macro
/// because each skeleton has its own `rodata` type with the same field names. The
/// filters are written after load ([`Run::load`]).
#[macro_export]
macro_rules! apply_common_config {
    ($rodata:expr, $config:expr) => {{
        let rodata = $rodata;
        let config: &$crate::engine::TrackerConfig = $config;
        rodata.task_struct_id = $crate::engine::system::kernel_struct_id("task_struct");
        // Batched records wake the reader once an eighth of the ring buffer waits; 0 wakes
        // it for each.
        rodata.wakeup_bytes = match config.wake_per_event {
            true => 0,
            false => u64::from(config.ringbuf_bytes / 8),
        };
    }};
}

/// Opens a skeleton with `$builder` into `$storage`, writes the common configuration into
/// its read-only globals and sizes its ring buffer; evaluates to the open skeleton.
#[macro_export]
macro_rules! open_probe {
    ($run:expr, $builder:ty, $storage:expr) => {{
        let config: &$crate::engine::TrackerConfig = $run.config();
        let mut builder = <$builder>::default();
        if let Some(btf) = $run.core_btf::<$builder>() {
            libbpf_rs::skel::SkelBuilder::object_builder_mut(&mut builder)
                .btf_custom_path(btf)
                .map_err($crate::engine::TrackerError::Open)?;
        }
        libbpf_rs::skel::SkelBuilder::open(builder, $storage)
            .map_err($crate::engine::TrackerError::Open)
            .and_then(|mut open| {
                let rodata = open
                    .maps
                    .rodata_data
                    .as_deref_mut()
                    .expect("every probe includes common.bpf.h's read-only globals");
                $crate::apply_common_config!(rodata, config);
                open.maps
                    .events
                    .set_max_entries(config.ringbuf_bytes)
                    .map_err($crate::engine::TrackerError::Map)?;
                Ok(open)
            })
    }};
}

/// The whole `Tracker::run` of a probe that reports only through its ring buffer; the
/// optional last argument configures the opened skeleton (its own read-only globals,
/// which programs load) before load.
#[macro_export]
macro_rules! run_ring_buffer_probe {
    ($run:expr, $builder:ty, $decode:expr) => {
        $crate::run_ring_buffer_probe!($run, $builder, $decode, |_open| {})
    };
    ($run:expr, $builder:ty, $decode:expr, |$open:ident| $configure:expr) => {{
        let run = $run;
        let mut storage = std::mem::MaybeUninit::uninit();
        let mut open = $crate::open_probe!(run, $builder, &mut storage)?;
        let $open = &mut open;
        $configure;
        let skel = run.load(open)?;
        run.fill_cgroup_filter(&skel.maps.cgroup_filter)?;
        let dropped = &skel
            .maps
            .bss_data
            .as_deref()
            .expect("every probe includes common.bpf.h's .bss")
            .ringbuf_dropped;
        run.serve(
            libbpf_rs::skel::Skel::object(&skel),
            &skel.maps.events,
            dropped,
            $decode,
        )
    }};
}

/// The header of a row drained from a map at `$context` (a [`DrainContext`]): decoded as
/// an event's, with the drain's time, since the row covers the interval up to it.
#[macro_export]
macro_rules! drained_header {
    ($raw:expr, $context:expr) => {{
        let context: &$crate::engine::DrainContext = $context;
        let mut header = $crate::decode_header!($raw, context.clock_offset);
        header.ts_ns = context.now_ns;
        header
    }};
}

/// Decodes the common event header of any skeleton's event type (see probes/common.h).
#[macro_export]
macro_rules! decode_header {
    ($raw:expr, $clock_offset:expr) => {{
        let raw = &$raw;
        $crate::model::Header {
            ts_ns: raw.ts_ns.wrapping_add($clock_offset),
            pid: raw.pid,
            ppid: raw.ppid,
            comm: $crate::model::Comm::from_c_chars(&raw.comm),
            cgroup_id: raw.cgroup_id,
            user_ns: raw.user_ns,
            pid_ns: raw.pid_ns,
            mnt_ns: raw.mnt_ns,
            container: None,
        }
    }};
}

#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("unknown tracker `{name}`; known trackers: {known}")]
    Unknown { name: String, known: String },
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("tracepoint {category}:{name} does not exist on this kernel (no {tracefs}/events/{category}/{name})", tracefs = system::TRACEFS)]
    MissingTracepoint { category: String, name: String },
    #[error("invalid tracker configuration: {0}")]
    Config(String),
    #[error("opening the BPF object failed: {0}")]
    Open(libbpf_rs::Error),
    #[error("the kernel refused to load the BPF programs: {0}")]
    Load(String),
    #[error("attaching BPF program `{program}` failed: {source}")]
    Attach {
        program: String,
        source: libbpf_rs::Error,
    },
    #[error("BPF map set-up failed: {0}")]
    Map(libbpf_rs::Error),
    #[error("ring buffer polling failed: {0}")]
    Poll(libbpf_rs::Error),
    #[error("handler chain: {0}")]
    Chain(std::io::Error),
    #[error("starting the tracker thread failed: {0}")]
    Thread(std::io::Error),
    #[error("the tracker thread panicked")]
    Panicked,
    #[error("no session claimed the instance")]
    Unclaimed,
}

/// Live counters of one tracker instance. Loss is never silent: every stage that can
/// drop an event adds to one of these.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records decoded and handed to the chain.
    pub seen: AtomicU64,
    /// Lost in the kernel: reserve failures in BPF (the ring buffer was full), and runs of
    /// the probe's programs the kernel skipped (each may have been an event).
    pub lost_kernel: AtomicU64,
    /// Events a full channel in user space could not take (shared with fan-in senders).
    pub lost_channel: Arc<AtomicU64>,
    /// Records too short or of an unknown kind to decode.
    pub malformed: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> Stats {
        Stats {
            seen: self.seen.load(Ordering::Relaxed),
            lost_kernel: self.lost_kernel.load(Ordering::Relaxed),
            lost_channel: self.lost_channel.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub seen: u64,
    pub lost_kernel: u64,
    pub lost_channel: u64,
    pub malformed: u64,
}

impl std::ops::Add for Stats {
    type Output = Stats;

    /// Counts over two instances (the trackers of one guard).
    fn add(self, other: Stats) -> Stats {
        Stats {
            seen: self.seen + other.seen,
            lost_kernel: self.lost_kernel + other.lost_kernel,
            lost_channel: self.lost_channel + other.lost_channel,
            malformed: self.malformed + other.malformed,
        }
    }
}

impl Stats {
    pub fn lost(&self) -> u64 {
        self.lost_kernel + self.lost_channel + self.malformed
    }
}

/// What a tracker's `run` gets: its configuration and the engine's side of the bargain.
pub struct Run<'a, E> {
    /// What the probe is loaded with: the session's configuration, or for an instance
    /// loaded ahead of its session, one that differs from it in the filters alone (see
    /// [`TrackerConfig::load_key`]).
    config: &'a TrackerConfig,
    /// The session, once the probe is loaded ([`load`](Self::load) waits for it).
    assignment: &'a RefCell<Option<Assignment<E>>>,
    assignments: &'a Receiver<Assignment<E>>,
    /// The probe's cgroup filter map, kept when the configuration follows cgroups.
    cgroup_filter: RefCell<Option<MapHandle>>,
    /// How programs are attached, when not by their section name.
    attach: Option<Attach>,
    /// The size of the probe's records when it sends several as one ring buffer sample.
    batched: Option<usize>,
    /// The probe whose cached minimal BTF the skeleton was opened with, if it was.
    core_btf: &'a Cell<Option<&'static str>>,
}

/// A session's side of an instance, handed to it once its probe is loaded.
struct Assignment<E> {
    /// The session's whole configuration, filters included.
    config: TrackerConfig,
    chain: Box<dyn Handler<E>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    ready: SyncSender<Ready>,
}

/// Attaches one program, for probes whose programs' sections name no target (perf events,
/// uprobes): the links it made.
pub type Attach = Box<dyn FnMut(&ProgramMut<'_>) -> Result<Vec<Link>, libbpf_rs::Error>>;

impl<'a, E> Run<'a, E> {
    pub fn config(&self) -> &TrackerConfig {
        self.config
    }

    /// Attaches each program with `attach` rather than by its section name.
    pub fn attach_with(mut self, attach: Attach) -> Self {
        self.attach = Some(attach);
        self
    }

    /// The probe sends its records of `size` bytes several to a ring buffer sample: each
    /// is decoded on its own.
    pub fn batched(mut self, size: usize) -> Self {
        self.batched = Some(size);
        self
    }

    /// Loads an opened skeleton (checks its tracepoints first, and on failure reports the
    /// gist of the verifier log rather than a bare errno), then waits for its session if
    /// it has none yet and writes the session's filters into the loaded probe.
    pub fn load<'obj, O: OpenSkel<'obj>>(&self, open: O) -> Result<O::Output, TrackerError> {
        check_tracepoints(open.open_object())?;
        let (loaded, log) = system::capture_libbpf_log(|| open.load());
        let skel = loaded.map_err(|err| {
            if let Some(probe) = self.core_btf.get() {
                tracing::warn!(
                    probe,
                    "a load against the cached minimal BTF failed: not used again"
                );
                core_btf::discard(probe);
            }
            TrackerError::Load(system::verifier_gist(&log).unwrap_or_else(|| err.to_string()))
        })?;
        if self.assignment.borrow().is_none() {
            let assignment = self
                .assignments
                .recv()
                .map_err(|_| TrackerError::Unclaimed)?;
            *self.assignment.borrow_mut() = Some(assignment);
        }
        write_filter(
            libbpf_rs::skel::Skel::object(&skel),
            &*self.session_config()?,
        )?;
        Ok(skel)
    }

    /// The session's own configuration, once [`load`](Self::load) has it.
    fn session_config(&self) -> Result<std::cell::Ref<'_, TrackerConfig>, TrackerError> {
        std::cell::Ref::filter_map(self.assignment.borrow(), |a| a.as_ref().map(|a| &a.config))
            .map_err(|_| TrackerError::Unclaimed)
    }

    /// The cached minimal BTF to open probe `P` with, if there is one (see [`core_btf`]).
    pub fn core_btf<P: ProbeObject>(&self) -> Option<std::path::PathBuf> {
        let path = core_btf::cached::<P>()?;
        self.core_btf.set(Some(P::NAME));
        Some(path)
    }

    /// Fills the probe's cgroup filter map from the configuration, and keeps a handle on
    /// it when cgroups are to be added while the instance runs.
    pub fn fill_cgroup_filter(&self, map: &dyn MapCore) -> Result<(), TrackerError> {
        let config = self.session_config()?;
        for &id in &config.cgroup_ids {
            add_cgroup(map, id)?;
        }
        if config.follow_cgroups {
            let id = map.info().map_err(TrackerError::Map)?.info.id;
            *self.cgroup_filter.borrow_mut() =
                Some(MapHandle::from_map_id(id).map_err(TrackerError::Map)?);
        }
        Ok(())
    }

    /// Attaches every program of `object`, reports readiness, then polls `ring` until asked
    /// to stop. `decode` turns one record into an event; `dropped` is the probe's
    /// `ringbuf_dropped` counter in its mmapped `.bss`.
    pub fn serve<D>(
        self,
        object: &Object,
        ring: &dyn MapCore,
        dropped: &u64,
        decode: D,
    ) -> Result<(), TrackerError>
    where
        D: FnMut(&[u8], u64) -> Option<E>,
    {
        self.serve_draining(object, ring, dropped, decode, None)
    }

    /// [`serve`](Self::serve) for probes that also aggregate in BPF maps: every
    /// `drain.every`, and once more after the programs are detached, `drain.pull` hands
    /// the aggregates to the chain.
    pub fn serve_draining<D>(
        self,
        object: &Object,
        ring: &dyn MapCore,
        dropped: &u64,
        mut decode: D,
        mut drain: Option<Drain<'_, E>>,
    ) -> Result<(), TrackerError>
    where
        D: FnMut(&[u8], u64) -> Option<E>,
    {
        let Assignment {
            config,
            mut chain,
            counters,
            stop,
            ready,
        } = self.assignment.take().ok_or(TrackerError::Unclaimed)?;
        let mut attach = self.attach;
        let mut links: Vec<Link> = Vec::new();
        let mut programs = Vec::new();
        // Programs the tracker chose not to load (optional features) are not attached.
        for prog in object.progs_mut().filter(|prog| prog.autoload()) {
            let program = prog.name().to_string_lossy().into_owned();
            let attached = match attach.as_mut() {
                Some(attach) => attach(&prog),
                None => prog.attach().map(|link| vec![link]),
            };
            links.extend(attached.map_err(|source| TrackerError::Attach {
                program: program.clone(),
                source,
            })?);
            programs.push(
                ProgramHandle::try_from(&prog)
                    .map_err(|source| TrackerError::Attach { program, source })?,
            );
        }
        let cgroup_filter = self.cgroup_filter.take();
        if config.follow_cgroups && cgroup_filter.is_none() {
            return Err(TrackerError::Config(
                "this tracker cannot follow containers as they start".into(),
            ));
        }
        let _ = ready.send(Ready {
            prog_ids: programs.iter().map(ProgramHandle::id).collect(),
            cgroup_filter,
        });

        // Taken now, not at load: an instance loaded ahead may have waited for hours.
        let clock_offset = boot_to_wall_offset();
        // Shared by the ring buffer callback (events) and this loop (drain, flush, finish).
        let chain = RefCell::new(&mut *chain);
        // Records one poll may still take: libbpf reads for as long as records keep coming,
        // so under a steady stream a poll would never return to notice a stop request.
        let budget = Cell::new(u32::MAX);
        let record_size = self.batched.unwrap_or(usize::MAX);
        let mut builder = RingBufferBuilder::new();
        builder
            .add(ring, |sample: &[u8]| {
                let mut records = 0;
                for bytes in sample.chunks(record_size) {
                    records += 1;
                    match decode(bytes, clock_offset) {
                        Some(event) => {
                            counters.seen.fetch_add(1, Ordering::Relaxed);
                            chain.borrow_mut().handle(&event);
                        }
                        None => {
                            counters.malformed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                // Handled first: libbpf has consumed the sample whatever this returns.
                budget.set(budget.get().saturating_sub(records));
                if budget.get() == 0 {
                    -libc::EINTR
                } else {
                    0
                }
            })
            .map_err(TrackerError::Map)?;
        let ringbuf = builder.build().map_err(TrackerError::Map)?;
        let read_dropped = || {
            // SAFETY: `dropped` points into the live, mmapped .bss that BPF updates; a
            // volatile read sees the kernel's writes.
            unsafe { std::ptr::read_volatile(dropped) }
        };
        // Runs the kernel skipped may each have been an event: counted lost too.
        let mut skipped_read = Instant::now();
        let mut lost_kernel = |every: Duration| {
            if skipped_read.elapsed() >= every {
                skipped_read = Instant::now();
                let lost = read_dropped() + skipped_runs(&programs);
                counters.lost_kernel.store(lost, Ordering::Relaxed);
            }
        };
        let pull = |drain: &mut Drain<'_, E>, last: bool| {
            let context = DrainContext {
                clock_offset,
                now_ns: wall_clock_ns(),
                last,
            };
            (drain.pull)(&context, &mut |event: E| {
                counters.seen.fetch_add(1, Ordering::Relaxed);
                chain.borrow_mut().handle(&event);
            })
        };

        let mut result = Ok(());
        let mut last_drain = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let timeout = match &drain {
                Some(d) => POLL_INTERVAL.min(d.every.saturating_sub(last_drain.elapsed())),
                None => POLL_INTERVAL,
            };
            budget.set(POLL_BUDGET);
            // Probes may submit without waking the reader (high-rate streams): poll's
            // timer is then what brings their records in, through consume.
            let read = ringbuf.poll(timeout).and_then(|()| ringbuf.consume());
            // A spent budget ends a read early with EINTR, as a signal does: not an error.
            if let Err(err) = read {
                if err.kind() != libbpf_rs::ErrorKind::Interrupted {
                    result = Err(TrackerError::Poll(err));
                    break;
                }
            }
            if let Some(d) = drain.as_mut().filter(|d| last_drain.elapsed() >= d.every) {
                last_drain = Instant::now();
                if let Err(err) = pull(d, false) {
                    result = Err(err);
                    break;
                }
            }
            lost_kernel(SKIPPED_READ_INTERVAL);
            if let Err(err) = chain.borrow_mut().flush() {
                result = Err(TrackerError::Chain(err));
                break;
            }
        }
        // Detach first, then drain: nothing can arrive after the last read, once the
        // programs that were running at the detach have finished.
        detach(links);
        wait_for_running_programs();
        budget.set(u32::MAX);
        let drained = ringbuf.consume().map_err(TrackerError::Poll);
        let pulled = drain.as_mut().map_or(Ok(()), |d| pull(d, true));
        lost_kernel(Duration::ZERO);
        drop(ringbuf);
        let finished = chain.borrow_mut().finish().map_err(TrackerError::Chain);
        result.and(drained).and(pulled).and(finished)
    }
}

/// Runs of `programs` the kernel skipped so far: a classic tracepoint's program while
/// another tracing program (or a map update from user space) ran on that CPU, any program
/// that would have run inside itself.
fn skipped_runs(programs: &[ProgramHandle]) -> u64 {
    programs
        .iter()
        .map(|program| {
            let mut info = libbpf_sys::bpf_prog_info::default();
            let mut len = std::mem::size_of_val(&info) as u32;
            // SAFETY: `info` is a bpf_prog_info of `len` bytes; the kernel fills at most
            // that many. Its counted fields (no pointers set) make it write nothing else.
            let rc = unsafe {
                libbpf_sys::bpf_prog_get_info_by_fd(
                    program.as_fd().as_raw_fd(),
                    &mut info,
                    &mut len,
                )
            };
            if rc == 0 {
                info.recursion_misses
            } else {
                0
            }
        })
        .sum()
}

/// Detaches links in parallel: each waits for an RCU grace period (tens of milliseconds),
/// which one after the other adds up for trackers with many tracepoints.
fn detach(links: Vec<Link>) {
    std::thread::scope(|scope| {
        for link in links {
            scope.spawn(move || drop(link));
        }
    });
}

/// How a probe that aggregates in BPF maps hands its aggregates over.
pub struct Drain<'a, E> {
    pub every: Duration,
    /// Emits one event per aggregate and resets them.
    #[allow(clippy::type_complexity)]
    pub pull: Box<dyn FnMut(&DrainContext, &mut dyn FnMut(E)) -> Result<(), TrackerError> + 'a>,
}

/// Reads and empties every row of `rows`, a hash map no program adds to while this runs,
/// handing each key and value to `take`.
pub fn take_rows(
    rows: &dyn MapCore,
    mut take: impl FnMut(&[u8], &[u8]) -> Result<(), TrackerError>,
) -> Result<(), TrackerError> {
    let keys: Vec<Vec<u8>> = rows.keys().collect();
    for key in &keys {
        let row = rows.lookup(key, MapFlags::ANY).map_err(TrackerError::Map)?;
        rows.delete(key).map_err(TrackerError::Map)?;
        if let Some(row) = row {
            take(key, &row)?;
        }
    }
    Ok(())
}

/// How long to wait after a switch when the kernel cannot wait for an RCU grace period
/// (programs run for microseconds).
const SWITCH_GRACE: Duration = Duration::from_millis(5);

/// Returns once every BPF program that started before the call has finished. Programs run
/// inside RCU read-side sections, and membarrier's global command waits for a grace
/// period: a program that read the old generation, and whose CPU the hypervisor then
/// stalled for longer than any fixed grace, is still waited for.
fn wait_for_running_programs() {
    // MEMBARRIER_CMD_GLOBAL from <linux/membarrier.h>; libc does not name it.
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    // SAFETY: membarrier takes no pointers.
    let waited = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if waited != 0 {
        // Refused under nohz_full, or a kernel without membarrier.
        std::thread::sleep(SWITCH_GRACE);
    }
}

/// A loaded skeleton's loss counter and [`Generations`], from its `.bss`
/// (`ringbuf_dropped` and `generation`); evaluates to `(&u64, Generations)`. A macro
/// because each skeleton has its own `.bss` type with the same field names.
#[macro_export]
macro_rules! bss_generations {
    ($skel:expr) => {{
        // The kernel writes `ringbuf_dropped` and this thread writes `generation` through
        // the same mmapped .bss, so both are reached by raw pointer, never a reference.
        let bss: *mut _ = $skel
            .maps
            .bss_data
            .as_deref_mut()
            .expect("a probe with generations declares .bss");
        // SAFETY: the .bss mapping lives as long as the skeleton, which outlives the
        // tracker's serve loop and so every use of both.
        unsafe {
            (
                &(*bss).ringbuf_dropped,
                $crate::engine::Generations::new(&raw mut (*bss).generation),
            )
        }
    }};
}

/// User space's side of a probe that keeps its aggregates in two generations of maps:
/// programs add to the one the low bit of the probe's `generation` global names, and the
/// other can be read and emptied without racing an update.
pub struct Generations {
    generation: *mut u32,
    current: u32,
}

impl Generations {
    /// # Safety
    /// `generation` points at the probe's `generation` in its mmapped `.bss`, which must
    /// outlive this value.
    pub unsafe fn new(generation: *mut u32) -> Self {
        Self {
            generation,
            current: 0,
        }
    }

    /// The generation the programs add to now.
    pub fn current(&self) -> usize {
        (self.current & 1) as usize
    }

    /// The generations that are quiet and may be drained now: both on the last call (the
    /// programs are detached); otherwise the programs are switched to the other one, and
    /// once those still adding to the old one are done, the old one.
    pub fn quiet(&mut self, context: &DrainContext) -> &'static [usize] {
        if context.last {
            return &[0, 1];
        }
        let old = self.current & 1;
        self.current = self.current.wrapping_add(1);
        // SAFETY: see `new`; a volatile write is what the programs read.
        unsafe { self.generation.write_volatile(self.current) };
        wait_for_running_programs();
        if old == 0 {
            &[0]
        } else {
            &[1]
        }
    }
}

/// What a [`Drain`] is told on each call.
pub struct DrainContext {
    /// Added to CLOCK_BOOTTIME stamps from BPF to get wall-clock time (as for `decode`).
    pub clock_offset: u64,
    /// The drain's wall-clock time, the `ts` of the events it emits.
    pub now_ns: u64,
    /// The call after the programs were detached: nothing can change the maps any more.
    pub last: bool,
}

/// Fails with the tracepoint's name when a `tp/<category>/<name>` program that is to load
/// has no target.
fn check_tracepoints(object: &OpenObject) -> Result<(), TrackerError> {
    for prog in object.progs().filter(|prog| prog.autoload()) {
        let section = prog.section().to_string_lossy();
        let Some(rest) = section
            .strip_prefix("tp/")
            .or_else(|| section.strip_prefix("tracepoint/"))
        else {
            continue;
        };
        if let Some((category, name)) = rest.split_once('/') {
            if !system::tracepoint_exists(category, name) {
                return Err(TrackerError::MissingTracepoint {
                    category: category.to_string(),
                    name: name.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Reads a `#[repr(C)]` record generated from the probe's C headers out of a ring buffer
/// sample and hands it to `f`. Only for types made of integers and integer arrays (any bit
/// pattern is valid). Ring buffer samples are 8-byte aligned, so this borrows in place;
/// a misaligned buffer (only in tests) is copied first.
pub fn with_record<T: Copy, R>(bytes: &[u8], f: impl FnOnce(&T) -> R) -> Option<R> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    let ptr = bytes.as_ptr().cast::<T>();
    if ptr.is_aligned() {
        // SAFETY: aligned, large enough, and every bit pattern is a valid T (see above).
        return Some(f(unsafe { &*ptr }));
    }
    // SAFETY: as above; read_unaligned copes with the alignment.
    let copy = unsafe { ptr.read_unaligned() };
    Some(f(&copy))
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; the clocks used exist on every Linux kernel.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn wall_clock_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Nanoseconds to add to CLOCK_BOOTTIME to get CLOCK_REALTIME.
fn boot_to_wall_offset() -> u64 {
    wall_clock_ns().wrapping_sub(clock_ns(libc::CLOCK_BOOTTIME))
}

fn add_cgroup(map: &dyn MapCore, id: u64) -> Result<(), TrackerError> {
    map.update(&id.to_ne_bytes(), &[1u8], MapFlags::ANY)
        .map_err(TrackerError::Map)
}

/// Writes `config`'s filters into a loaded probe's `filter` global (`struct filter_config`
/// in probes/common.h, alone in its section `.data.filter`). Written after load, so that
/// an instance loaded ahead of its session takes any session's filters.
fn write_filter(object: &Object, config: &TrackerConfig) -> Result<(), TrackerError> {
    let map = object
        .maps()
        .find(|map| map.name() == FILTER_SECTION)
        .ok_or_else(|| TrackerError::Config(format!("the probe has no {FILTER_SECTION}")))?;
    let mut value = vec![0u8; map.value_size() as usize];
    let filter = config.filter();
    if value.len() < filter.len() {
        return Err(TrackerError::Config(format!(
            "the probe's {FILTER_SECTION} is {} bytes, not {}",
            value.len(),
            filter.len()
        )));
    }
    value[..filter.len()].copy_from_slice(&filter);
    map.update(&0u32.to_ne_bytes(), &value, MapFlags::ANY)
        .map_err(TrackerError::Map)
}

/// The section (and so the map) of every probe's `filter` global.
const FILTER_SECTION: &str = ".data.filter";

/// What a tracker thread hands back once its programs are attached.
struct Ready {
    prog_ids: Vec<u32>,
    cgroup_filter: Option<MapHandle>,
}

/// A running instance's cgroup filter, open to cgroups that appear while it runs: a
/// container created or restarted during a session.
#[derive(Debug)]
pub struct CgroupFilter(MapHandle);

impl CgroupFilter {
    /// Traces the tasks of cgroup `id` from now on; fails when the filter is full.
    pub fn add(&self, id: u64) -> Result<(), TrackerError> {
        add_cgroup(&self.0, id)
    }
}

/// One running tracker instance on its own thread.
pub struct TrackerHandle {
    tracker: &'static str,
    prog_ids: Vec<u32>,
    cgroup_filter: Option<Arc<CgroupFilter>>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<Result<(), TrackerError>>>,
}

/// An instance whose probe is loading or loaded on its own thread, with no program
/// attached, until a session claims it ([`start`](Self::start)). Dropped unclaimed, its
/// thread unloads the probe and ends.
pub struct Preloaded<E> {
    tracker: &'static str,
    /// What the probe was loaded with.
    config: TrackerConfig,
    assign: SyncSender<Assignment<E>>,
    thread: JoinHandle<Result<(), TrackerError>>,
}

impl<E: 'static> Preloaded<E> {
    /// Starts tracker `name`'s thread, where `run` opens and loads its probe with
    /// `config` and then, once a session claims it, attaches and serves it
    /// ([`Run::serve`]). Returns at once; the configuration is checked by the caller.
    pub fn spawn(
        name: &'static str,
        config: TrackerConfig,
        run: impl Fn(Run<'_, E>) -> Result<(), TrackerError> + Send + 'static,
    ) -> Result<Self, TrackerError> {
        system::check_ready()?;
        let (assign, assignments) = mpsc::sync_channel(1);
        let loaded_with = config.clone();
        let thread = thread::Builder::new()
            .name(format!("tracker-{name}"))
            .spawn(move || {
                let core_btf = Cell::new(None);
                let assignment = RefCell::new(None);
                let attempt = || {
                    run(Run {
                        config: &loaded_with,
                        assignment: &assignment,
                        assignments: &assignments,
                        cgroup_filter: RefCell::new(None),
                        attach: None,
                        batched: None,
                        core_btf: &core_btf,
                    })
                };
                let result = match attempt() {
                    // Discarded by the failed load: the second attempt uses the full BTF.
                    Err(TrackerError::Load(_)) if core_btf.take().is_some() => attempt(),
                    result => result,
                };
                // A session that claimed the instance hears of its failure; an instance
                // loaded ahead fails unheard otherwise.
                match &result {
                    Err(TrackerError::Unclaimed) => {}
                    Err(err)
                        if assignment.borrow().is_none() && assignments.try_recv().is_err() =>
                    {
                        tracing::warn!(tracker = name, "an instance loaded ahead failed: {err}")
                    }
                    _ => {}
                }
                result
            })
            .map_err(TrackerError::Thread)?;
        Ok(Self {
            tracker: name,
            config,
            assign,
            thread,
        })
    }

    /// Whether a session with `config` can claim this instance: it is loaded (or still
    /// loading) with the same configuration but for the filters.
    pub fn fits(&self, config: &TrackerConfig) -> bool {
        !self.thread.is_finished() && self.config.load_key() == config.load_key()
    }

    /// Hands the instance to a session with `config` (which [`fits`](Self::fits) it) and
    /// `chain`; returns once its programs are attached, or with why they are not.
    pub fn start(
        self,
        config: TrackerConfig,
        chain: Box<dyn Handler<E>>,
        counters: Arc<Counters>,
    ) -> Result<TrackerHandle, TrackerError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, ready_rx) = mpsc::sync_channel(1);
        let mut handle = TrackerHandle {
            tracker: self.tracker,
            prog_ids: Vec::new(),
            cgroup_filter: None,
            stop: stop.clone(),
            counters: counters.clone(),
            thread: Some(self.thread),
        };
        let assignment = Assignment {
            config,
            chain,
            counters,
            stop,
            ready,
        };
        // A thread that ended (its load failed) has dropped its receiver, and one that
        // fails later drops `ready`: either way its result says why.
        if self.assign.send(assignment).is_ok() {
            if let Ok(ready) = ready_rx.recv() {
                handle.prog_ids = ready.prog_ids;
                handle.cgroup_filter = ready.cgroup_filter.map(|map| Arc::new(CgroupFilter(map)));
                return Ok(handle);
            }
        }
        Err(handle.join().err().unwrap_or(TrackerError::Panicked))
    }
}

impl TrackerHandle {
    pub fn tracker(&self) -> &'static str {
        self.tracker
    }

    /// Kernel ids of this instance's BPF programs.
    pub fn prog_ids(&self) -> &[u32] {
        &self.prog_ids
    }

    /// The cgroup filter, when the configuration follows cgroups.
    pub fn cgroup_filter(&self) -> Option<Arc<CgroupFilter>> {
        self.cgroup_filter.clone()
    }

    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// The CPU time its thread (ring buffer reads, decoding, the handler chain) has used;
    /// None once it has ended.
    pub fn thread_cpu_time(&self) -> Option<std::time::Duration> {
        use std::os::unix::thread::JoinHandleExt;
        let thread = self.thread.as_ref().filter(|t| !t.is_finished())?;
        let mut clock: libc::clockid_t = 0;
        let mut time = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: the thread is joinable (not joined: we hold its handle), so its pthread_t
        // is valid; both out-pointers point to live locals.
        let ok = unsafe {
            libc::pthread_getcpuclockid(thread.as_pthread_t(), &mut clock) == 0
                && libc::clock_gettime(clock, &mut time) == 0
        };
        ok.then(|| std::time::Duration::new(time.tv_sec as u64, time.tv_nsec as u32))
    }

    /// True when the tracker thread has ended (stopped or failed).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Detaches every program, drains the ring buffer, finishes the chain, and returns
    /// the final counts.
    pub fn stop(mut self) -> Result<Stats, TrackerError> {
        self.join()?;
        Ok(self.counters.snapshot())
    }

    fn join(&mut self) -> Result<(), TrackerError> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| TrackerError::Panicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for TrackerHandle {
    fn drop(&mut self) {
        if let Err(err) = self.join() {
            tracing::warn!(tracker = self.tracker, "tracker ended with an error: {err}");
        }
    }
}
