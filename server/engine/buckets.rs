//! Trackers that either stream an event per occurrence or, in aggregate mode, count them
//! in the kernel per key and power-of-two latency bucket (see probes/buckets.bpf.h), as
//! libbpf-tools' biolatency and runqlat do. A row's latency sum over its count lies in its
//! bucket, so the stores rebuild the kernel's histogram exactly from rows (see
//! `TrackerOptions::totals_per_log2_bucket`).

use std::time::Duration;

use super::{IntervalMs, Mode};

/// How a bucketing tracker runs, from the options they all have.
pub struct BucketSettings {
    /// How often it drains its rows: every `interval_ms` in aggregate mode, never in
    /// stream mode.
    pub interval: Option<Duration>,
    /// Latencies below this are left out in the kernel.
    pub min_latency_ns: u64,
}

impl BucketSettings {
    pub fn new(mode: Mode, interval_ms: IntervalMs, min_latency_us: u64) -> Self {
        Self {
            interval: (mode == Mode::Aggregate).then(|| interval_ms.duration()),
            min_latency_ns: min_latency_us.saturating_mul(1000),
        }
    }
}

/// The whole `Tracker::run` of a bucketing tracker. `$configure` sets the opened
/// skeleton's own globals; in stream mode (`$settings`, a [`BucketSettings`], has no
/// interval) events come through the ring buffer and `$decode`, otherwise every interval
/// each row (`$key`, `$row`) becomes an event whose body `$body` builds. `types` is the
/// caller's skeleton's.
#[macro_export]
macro_rules! run_bucket_probe {
    (
        $run:expr, $builder:ty, $decode:expr, $settings:expr,
        |$open:ident| $configure:expr,
        |$key:ident: $key_ty:ty, $row:ident: $row_ty:ty| $body:expr
    ) => {{
        let run = $run;
        let settings: $crate::engine::buckets::BucketSettings = $settings;
        let interval = settings.interval;
        let mut storage = std::mem::MaybeUninit::uninit();
        let mut open = $crate::open_probe!(run, $builder, &mut storage)?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect("buckets.bpf.h declares read-only globals");
        rodata.aggregate = interval.is_some();
        rodata.min_latency_ns = settings.min_latency_ns;
        if interval.is_none() {
            for map in [&mut open.maps.rows_0, &mut open.maps.rows_1] {
                map.set_max_entries(1)
                    .map_err($crate::engine::TrackerError::Map)?;
            }
        }
        let $open = &mut open;
        $configure;
        let mut skel = run.load(open)?;
        run.fill_cgroup_filter(&skel.maps.cgroup_filter)?;
        let (dropped, mut switch) = $crate::bss_generations!(skel);
        let maps = &skel.maps;
        let generations = [&maps.rows_0, &maps.rows_1];
        let drain = interval.map(|every| $crate::engine::Drain {
            every,
            pull: Box::new(
                move |context: &$crate::engine::DrainContext, emit: &mut dyn FnMut(Event)| {
                    for &quiet in switch.quiet(context) {
                        $crate::engine::take_rows(generations[quiet], |key, row| {
                            $crate::engine::with_record(key, |$key: &$key_ty| {
                                $crate::engine::with_record(row, |$row: &$row_ty| {
                                    emit(Event {
                                        header: $crate::drained_header!($row.header, context),
                                        body: $body.into(),
                                    })
                                })
                            });
                            Ok(())
                        })?;
                    }
                    Ok(())
                },
            ),
        });
        run.serve_draining(
            libbpf_rs::skel::Skel::object(&skel),
            &maps.events,
            dropped,
            $decode,
            drain,
        )
    }};
}
