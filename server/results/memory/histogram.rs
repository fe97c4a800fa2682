//! A measure's statistics within one base group: count, exact sum, min and max, and a
//! log-linear histogram for percentiles.

// Log-linear histogram buckets over a value's magnitude: values below 128 are their own
// bucket; above, each power of two is split into 64 buckets, so a bucket's midpoint is
// within 1/128 of any value in it. Negative values mirror positive ones (bucket -b-1).
const EXACT_BELOW: u32 = 128;
const SUB_BITS: u32 = 6;
/// Magnitude buckets up to 2^64 (the largest magnitude a u64 or i64 value has).
const MAGNITUDE_BUCKETS: u32 = EXACT_BELOW + (64 - SUB_BITS) * (1 << SUB_BITS);

fn magnitude_bucket(m: u128) -> u32 {
    if m < u128::from(EXACT_BELOW) {
        return m as u32;
    }
    let exp = 127 - m.leading_zeros(); // floor(log2 m), at least 7
    let sub = (m >> (exp - SUB_BITS)) as u32 & ((1 << SUB_BITS) - 1);
    EXACT_BELOW + (exp - 7) * (1 << SUB_BITS) + sub
}

fn bucket_of(v: i128) -> i32 {
    let b = magnitude_bucket(v.unsigned_abs()) as i32;
    if v < 0 {
        -b - 1
    } else {
        b
    }
}

/// The bucket's representative: its midpoint (the value itself below 128).
pub(super) fn bucket_value(bucket: i32) -> i128 {
    let (magnitude, sign) = if bucket < 0 {
        ((-(bucket + 1)) as u32, -1)
    } else {
        (bucket as u32, 1)
    };
    if magnitude < EXACT_BELOW {
        return sign * i128::from(magnitude);
    }
    let exp = (magnitude - EXACT_BELOW) / (1 << SUB_BITS) + 7;
    let sub = (magnitude - EXACT_BELOW) % (1 << SUB_BITS);
    let width = 1i128 << (exp - SUB_BITS);
    sign * (i128::from((1 << SUB_BITS) + sub) * width + width / 2)
}

pub(super) fn valid_bucket(bucket: i32) -> bool {
    let magnitude = if bucket < 0 {
        -(i64::from(bucket) + 1)
    } else {
        i64::from(bucket)
    };
    magnitude < i64::from(MAGNITUDE_BUCKETS)
}

/// One measure field within one base group.
#[derive(Clone, Debug, Default)]
pub(super) struct MeasureStats {
    /// Calls behind the non-null values seen (one per value, unless it is a total).
    pub(super) n: u64,
    pub(super) sum: i128,
    pub(super) min: i128,
    pub(super) max: i128,
    /// (bucket, count), sorted by bucket. Left empty while every value equals `min`: the
    /// common one-event group then allocates nothing, and the n values are at `min`.
    pub(super) hist: Vec<(i32, u64)>,
}

impl MeasureStats {
    /// Adds a record's value `v` that sums `calls` calls (1 for a per-call value): the
    /// sum takes `v`, the distribution `calls` values of `v / calls` each.
    pub(super) fn add(&mut self, v: i128, calls: u64) {
        let calls = calls.max(1);
        let per_call = v / i128::from(calls);
        if self.n == 0 {
            self.min = per_call;
            self.max = per_call;
        } else if self.hist.is_empty() && per_call != self.min {
            self.hist.push((bucket_of(self.min), self.n));
        }
        if !self.hist.is_empty() {
            let bucket = bucket_of(per_call);
            match self.hist.binary_search_by_key(&bucket, |&(b, _)| b) {
                Ok(i) => self.hist[i].1 = self.hist[i].1.saturating_add(calls),
                Err(i) => self.hist.insert(i, (bucket, calls)),
            }
        }
        self.min = self.min.min(per_call);
        self.max = self.max.max(per_call);
        self.n = self.n.saturating_add(calls);
        self.sum = self.sum.saturating_add(v);
    }

    pub(super) fn for_each_bucket(&self, mut f: impl FnMut(i32, u64)) {
        if self.hist.is_empty() {
            if self.n > 0 {
                f(bucket_of(self.min), self.n);
            }
        } else {
            for &(bucket, count) in &self.hist {
                f(bucket, count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_below_128_and_within_1_128_above() {
        for v in 0..128 {
            assert_eq!(bucket_value(bucket_of(v)), v);
            assert_eq!(bucket_value(bucket_of(-v)), -v);
        }
        let mut v: i128 = 128;
        while v <= i128::from(u64::MAX) {
            for x in [v, v + v / 3, v * 2 - 1] {
                let rep = bucket_value(bucket_of(x));
                assert!((rep - x).abs() * 128 <= x, "{x} -> {rep}");
                assert_eq!(bucket_value(bucket_of(-x)), -rep);
                assert!(valid_bucket(bucket_of(x)) && valid_bucket(bucket_of(-x)));
            }
            v *= 2;
        }
        assert!(valid_bucket(bucket_of(i64::MIN.into())));
        assert!(!valid_bucket(MAGNITUDE_BUCKETS as i32));
        // Buckets order like their values, so percentiles can walk them in order.
        let buckets: Vec<i32> = (-5000..5000).map(bucket_of).collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn measure_histogram_starts_only_at_a_second_distinct_value() {
        let mut m = MeasureStats::default();
        m.add(500, 1);
        m.add(500, 1);
        assert!(m.hist.is_empty());
        m.add(7, 1);
        assert_eq!(m.hist, vec![(7, 1), (bucket_of(500), 2)]);
        assert_eq!((m.n, m.sum, m.min, m.max), (3, 1007, 7, 500));
    }

    #[test]
    fn a_total_counts_its_calls_at_their_mean() {
        let mut m = MeasureStats::default();
        // 3 calls that took 3000 in all, then 1 that took 40.
        m.add(3000, 3);
        m.add(40, 1);
        assert_eq!(m.hist, vec![(40, 1), (bucket_of(1000), 3)]);
        assert_eq!((m.n, m.sum, m.min, m.max), (4, 3040, 40, 1000));
    }
}
