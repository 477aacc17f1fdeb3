//! Billing arithmetic and latency histograms, shared by usage records and health windows.
//!
//! Duration is billed per started millisecond (0.2 ms bills 1 ms, 1.01 ms bills 2 ms), as SCF
//! and Lambda bill; GB-seconds are configured memory in GB times billed seconds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Billed milliseconds: rounded up to the next whole millisecond, at least 1.
pub fn billed_ms(duration: Duration) -> u64 {
    let nanos = duration.as_nanos();
    (nanos.div_ceil(1_000_000) as u64).max(1)
}

/// Memory-time in MiB-milliseconds (exact integer), the unit usage is stored in.
pub fn mib_ms(memory_mb: u32, billed_ms: u64) -> u64 {
    memory_mb as u64 * billed_ms
}

/// GB-seconds from MiB-milliseconds (1 GB = 1024 MiB, as the clouds count memory).
pub fn gb_seconds(mib_ms: u64) -> f64 {
    mib_ms as f64 / 1024.0 / 1000.0
}

/// Sub-buckets per power of two: bucket bounds grow by 2^(1/4) ≈ 19 %, the worst relative
/// error of a percentile read from the histogram.
const SUB_BUCKETS: u32 = 4;
/// 1 µs to 2^32 µs (~72 minutes) in 128 buckets.
pub const BUCKETS: usize = 32 * SUB_BUCKETS as usize;

/// A fixed log-scale latency histogram in microseconds; mergeable across minutes, versions
/// and restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
        }
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, duration: Duration) {
        let micros = duration.as_micros().max(1) as f64;
        let index = (micros.log2() * SUB_BUCKETS as f64) as usize;
        self.counts[index.min(BUCKETS - 1)] += 1;
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0..=1) as the upper bound of its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let upper = 2f64.powf((index + 1) as f64 / SUB_BUCKETS as f64);
                return Some(Duration::from_micros(upper.ceil() as u64));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_bills_per_started_millisecond() {
        assert_eq!(billed_ms(Duration::from_micros(200)), 1);
        assert_eq!(billed_ms(Duration::from_micros(1000)), 1);
        assert_eq!(billed_ms(Duration::from_micros(1010)), 2);
        assert_eq!(billed_ms(Duration::from_nanos(1)), 1);
        assert_eq!(billed_ms(Duration::ZERO), 1);
        assert_eq!(billed_ms(Duration::from_millis(1500)), 1500);
    }

    #[test]
    fn gb_seconds_are_memory_times_billed_time() {
        // 128 MiB for 1 ms = 0.125 GB x 0.001 s.
        assert!((gb_seconds(mib_ms(128, 1)) - 0.000125).abs() < 1e-12);
        // 1 GiB for 1 s = 1 GB-s; 1,000 such requests = 1,000 GB-s.
        assert!((gb_seconds(mib_ms(1024, 1000)) - 1.0).abs() < 1e-12);
        assert!((gb_seconds(1000 * mib_ms(1024, 1000)) - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn quantiles_are_within_a_bucket_of_the_truth() {
        let mut h = LatencyHistogram::default();
        for micros in 1..=1000u64 {
            h.record(Duration::from_micros(micros * 10));
        }
        let p50 = h.quantile(0.5).unwrap().as_micros() as f64;
        let p99 = h.quantile(0.99).unwrap().as_micros() as f64;
        assert!((5000.0..=5000.0 * 1.2).contains(&p50), "{p50}");
        assert!((9900.0..=9900.0 * 1.2).contains(&p99), "{p99}");
        let mut other = LatencyHistogram::default();
        other.record(Duration::from_secs(10));
        h.merge(&other);
        assert_eq!(h.count(), 1001);
        assert!(LatencyHistogram::default().quantile(0.5).is_none());
    }
}

/// Usage of one function version (through one alias, or none) in one minute: what is billed
/// and what `fnhost usage` reports. Counts add up; histograms merge.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    pub function: String,
    /// A version number or `latest`.
    pub version: String,
    /// The alias that routed the requests, or empty for direct calls.
    pub alias: String,
    /// Unix minute (Unix seconds / 60).
    pub minute: i64,
    pub invocations: u64,
    /// Invocations answered with a 5xx status.
    pub errors: u64,
    pub cold_starts: u64,
    /// Invocations by status class: 2xx, 3xx, 4xx, 5xx.
    pub status: [u64; 4],
    pub duration_us: u64,
    pub billed_ms: u64,
    pub mib_ms: u64,
    pub histogram: LatencyHistogram,
    /// Provisioned instance time (instances x ms kept warm by provisioned concurrency,
    /// whether or not they served), billed separately as SCF and Lambda do. Rows that carry
    /// it have an empty alias.
    #[serde(default)]
    pub provisioned_ms: u64,
    #[serde(default)]
    pub provisioned_mib_ms: u64,
    /// Key-value operations (`wasi:keyvalue` calls, a batch counting each key).
    #[serde(default)]
    pub kv_operations: u64,
}

impl UsageRow {
    /// Adds `other`'s counts (same key or not: the caller decides what to group).
    pub fn add(&mut self, other: &UsageRow) {
        self.invocations += other.invocations;
        self.errors += other.errors;
        self.cold_starts += other.cold_starts;
        for (mine, theirs) in self.status.iter_mut().zip(other.status) {
            *mine += theirs;
        }
        self.duration_us += other.duration_us;
        self.billed_ms += other.billed_ms;
        self.mib_ms += other.mib_ms;
        self.histogram.merge(&other.histogram);
        self.provisioned_ms += other.provisioned_ms;
        self.kv_operations += other.kv_operations;
        self.provisioned_mib_ms += other.provisioned_mib_ms;
    }
}
