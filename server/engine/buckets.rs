//! Trackers that either stream an event per occurrence or, in aggregate mode, count them
//! in the kernel per key and power-of-two latency bucket (see probes/buckets.bpf.h), as
//! libbpf-tools' biolatency and runqlat do. A row's latency sum over its count lies in its
//! bucket, so the stores rebuild the kernel's histogram exactly from rows (see
//! `TrackerOptions::totals_per_log2_bucket`).

use std::time::Duration;

use super::{IntervalMs, Mode};

/// How often a bucketing tracker drains its rows: every `interval_ms` in aggregate mode,
/// never in stream mode.
pub fn interval(mode: Mode, interval_ms: IntervalMs) -> Option<Duration> {
    (mode == Mode::Aggregate).then(|| interval_ms.duration())
}

/// The whole `Tracker::run` of a bucketing tracker. `$configure` sets the opened
/// skeleton's own globals; in stream mode (`$interval` is `None`) events come through the
/// ring buffer and `$decode`, otherwise every interval each row (`$key`, `$row`) becomes
/// an event whose body `$body` builds. `types` is the caller's skeleton's.
#[macro_export]
macro_rules! run_bucket_probe {
    (
        $run:expr, $builder:ty, $decode:expr, $interval:expr,
        |$open:ident| $configure:expr,
        |$key:ident: $key_ty:ty, $row:ident: $row_ty:ty| $body:expr
    ) => {{
        let run = $run;
        let interval: Option<std::time::Duration> = $interval;
        let mut storage = std::mem::MaybeUninit::uninit();
        let mut open = $crate::open_probe!(run, $builder, &mut storage)?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect("buckets.bpf.h declares read-only globals")
            .aggregate = interval.is_some();
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
