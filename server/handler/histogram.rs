//! Power-of-two histograms, as bpftrace's `hist()` and the libbpf-tools count: the
//! buckets both stores answer with, and the CLI's ASCII histogram printer.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};

use super::{Flow, Handler};
use crate::model::{calls_in, Record, Value};

/// Values in `[low, high)`: `index` -1 holds the negatives (no low bound), 0 holds
/// [0, 1), and k > 0 holds [2^(k-1), 2^k).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Log2Bucket {
    pub index: i32,
    pub count: u64,
}

impl Log2Bucket {
    /// The bucket a value falls in.
    pub fn index_of(v: i128) -> i32 {
        match v {
            ..=-1 => -1,
            0 => 0,
            _ => 128 - v.leading_zeros() as i32,
        }
    }

    /// The least value in the bucket; none for the negatives'.
    pub fn low(&self) -> Option<f64> {
        match self.index {
            ..=-1 => None,
            0 => Some(0.0),
            k => Some(2f64.powi(k - 1)),
        }
    }

    /// The bucket's bound above (not in it).
    pub fn high(&self) -> f64 {
        match self.index {
            ..=-1 => 0.0,
            k => 2f64.powi(k),
        }
    }

    /// Counts per bucket of `values` (value, how many), in bucket order, empty ones left out.
    pub fn count(values: impl IntoIterator<Item = (i128, u64)>) -> Vec<Log2Bucket> {
        let mut counts = std::collections::BTreeMap::new();
        for (v, n) in values {
            let count: &mut u64 = counts.entry(Self::index_of(v)).or_default();
            *count = count.saturating_add(n);
        }
        counts
            .into_iter()
            .map(|(index, count)| Log2Bucket { index, count })
            .collect()
    }
}

/// Width of the bars, in characters, as libbpf-tools draws them.
const BAR: u64 = 40;

/// Counts a numeric field's values in power-of-two buckets, per group of `group_by`
/// values, and prints each group's histogram as libbpf-tools do when the stream ends;
/// groups with the most values first. Records without a value of the field are left out.
/// A total field's value sums the calls its `weight` field counts: they are counted at
/// their mean.
pub struct HistogramPrinter<W: Write> {
    out: W,
    field: String,
    group_by: Vec<String>,
    weight: Option<String>,
    groups: HashMap<Vec<String>, BTreeMap<i32, u64>>,
}

impl<W: Write> HistogramPrinter<W> {
    pub fn new(out: W, field: String, group_by: Vec<String>, weight: Option<String>) -> Self {
        Self {
            out,
            field,
            group_by,
            weight,
            groups: HashMap::new(),
        }
    }

    fn print(&mut self) -> io::Result<()> {
        let mut groups: Vec<_> = self.groups.drain().collect();
        let total = |buckets: &BTreeMap<i32, u64>| buckets.values().sum::<u64>();
        groups.sort_by(|(a_key, a), (b_key, b)| total(b).cmp(&total(a)).then(a_key.cmp(b_key)));
        for (key, buckets) in groups {
            if !self.group_by.is_empty() {
                let named: Vec<String> = self
                    .group_by
                    .iter()
                    .zip(&key)
                    .map(|(name, value)| format!("{name} = {value}"))
                    .collect();
                writeln!(self.out, "\n{}", named.join(", "))?;
            }
            write_histogram(&mut self.out, &self.field, &buckets)?;
        }
        self.out.flush()
    }
}

/// One histogram: every bucket from the lowest to the highest that holds a value.
fn write_histogram(
    out: &mut impl Write,
    field: &str,
    buckets: &BTreeMap<i32, u64>,
) -> io::Result<()> {
    let (Some((&first, _)), Some((&last, _))) =
        (buckets.first_key_value(), buckets.last_key_value())
    else {
        return Ok(());
    };
    let most = buckets.values().copied().max().unwrap_or(1).max(1);
    writeln!(out, "{field:>24}{:20} : count    distribution", "")?;
    for index in first..=last {
        let count = buckets.get(&index).copied().unwrap_or(0);
        let range = match index {
            ..=-1 => format!("{:>20} -> {:<20}", "", "-1"),
            0 => format!("{:>20} -> {:<20}", 0, 0),
            k => format!("{:>20} -> {:<20}", 1u128 << (k - 1), (1u128 << k) - 1),
        };
        let stars = usize::try_from(count * BAR / most).unwrap_or(0);
        writeln!(
            out,
            "{range} : {count:<8} |{:<width$}|",
            "*".repeat(stars),
            width = BAR as usize
        )?;
    }
    Ok(())
}

impl<R: Record + ?Sized, W: Write + Send> Handler<R> for HistogramPrinter<W> {
    fn handle(&mut self, record: &R) -> Flow {
        let value = match record.get(&self.field) {
            Some(Value::U64(v)) => i128::from(v),
            Some(Value::I64(v)) => i128::from(v),
            _ => return Flow::Caught,
        };
        let calls = self
            .weight
            .as_deref()
            .map_or(1, |w| calls_in(record.get(w)))
            .max(1);
        let key: Vec<String> = self
            .group_by
            .iter()
            .map(|name| record.get(name).map_or_else(String::new, |v| v.to_string()))
            .collect();
        let count = self
            .groups
            .entry(key)
            .or_default()
            .entry(Log2Bucket::index_of(value / i128::from(calls)))
            .or_default();
        *count = count.saturating_add(calls);
        Flow::Caught
    }

    fn finish(&mut self) -> io::Result<()> {
        self.print()
    }
}
