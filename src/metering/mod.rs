//! Metering and observability: every invocation is recorded once, when its instance is gone
//! (so time spent streaming a response is billed too), into
//!
//! - per-minute usage aggregates ([`UsageRow`]), flushed to the metadata database
//!   in batches off the request path (a crash loses at most one flush interval);
//! - rolling per-version health windows (request rate, 5xx rate, latency), the input for
//!   canary analysis;
//! - Prometheus metrics, encoded for `GET /metrics`.
//!
//! Labels are bounded: function, version, alias and status class only, never request ids
//! or paths.

mod health;
mod metrics;
mod shadow;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

pub use metrics::{HostGauges, KvStoreGauge, TraceSpans};
pub use shadow::ShadowOutcome;

use crate::model::{
    HealthSample, ShadowReport, UsageRow, VersionHealth, VersionLabel, billed_ms, mib_ms,
};
use health::HealthWindows;
use metrics::Metrics;

/// One finished (or refused) invocation of the version a [`VersionMeter`] meters.
#[derive(Debug)]
pub struct InvocationRecord<'a> {
    pub alias: Option<&'a Arc<str>>,
    pub status: u16,
    pub duration: Duration,
    pub memory_mb: u32,
    /// An instance was created on the request path for this invocation.
    pub cold_start: bool,
    pub instantiation: Option<Duration>,
    /// Refusals before any instance ran (overload, body too large) are counted but not billed.
    pub billable: bool,
    /// Key-value operations the invocation made (billed like Lambda's DynamoDB requests:
    /// by count).
    pub kv_operations: u64,
}

/// Usage rows kept in memory while the database cannot take them: one row per function,
/// version, alias and minute, about 1.2 KiB each (mostly the latency histogram), so at most
/// some 120 MiB: a thousand functions busy every minute keep 100 minutes of usage through an
/// outage, a hundred keep 16 hours.
pub const MAX_PENDING_ROWS: usize = 100_000;

/// How much usage waits for the database.
#[derive(Clone, Copy, Debug, Default)]
pub struct PendingUsage {
    pub rows: u64,
    pub dropped: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct UsageKey {
    function: Arc<str>,
    version: VersionLabel,
    alias: Option<Arc<str>>,
    minute: i64,
}

/// What recording one version's invocations needs, resolved once per version (when it is
/// first invoked) rather than per request: its metric handles and its health window. Held by
/// the version's deployment.
pub struct VersionMeter {
    function: Arc<str>,
    version: VersionLabel,
    metrics: metrics::VersionMetrics,
    health: health::Window,
}

impl VersionMeter {
    /// Requests of this version running now (admitted and not yet finished).
    pub fn in_flight(&self, delta: i64) {
        self.metrics.in_flight(delta);
    }
}

impl std::fmt::Debug for VersionMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VersionMeter({}@{})", self.function, self.version)
    }
}

pub struct Metering {
    meters: DashMap<(Arc<str>, VersionLabel), Arc<VersionMeter>>,
    pending: DashMap<UsageKey, UsageRow>,
    /// Rows [`Metering::restore`] had no room for.
    dropped_rows: std::sync::atomic::AtomicU64,
    health: HealthWindows,
    shadow: shadow::ShadowStats,
    metrics: Metrics,
}

impl Default for Metering {
    fn default() -> Self {
        Self {
            meters: DashMap::new(),
            pending: DashMap::new(),
            dropped_rows: std::sync::atomic::AtomicU64::new(0),
            health: HealthWindows::default(),
            shadow: shadow::ShadowStats::default(),
            metrics: Metrics::new(),
        }
    }
}

impl Metering {
    /// The meter of `function`'s `version`, the same one for every deployment of it until the
    /// function is forgotten.
    pub fn meter(&self, function: &Arc<str>, version: VersionLabel) -> Arc<VersionMeter> {
        self.meters
            .entry((function.clone(), version))
            .or_insert_with(|| {
                Arc::new(VersionMeter {
                    function: function.clone(),
                    version,
                    metrics: self.metrics.version(function, version),
                    health: self.health.window(function, version),
                })
            })
            .clone()
    }

    pub fn record(&self, meter: &VersionMeter, record: &InvocationRecord<'_>) {
        self.metrics.record(&meter.metrics, record);
        HealthWindows::record(&meter.health, record);
        if !record.billable {
            return;
        }
        let key = UsageKey {
            function: meter.function.clone(),
            version: meter.version,
            alias: record.alias.cloned(),
            minute: crate::model::now_ms().div_euclid(60_000),
        };
        let billed = billed_ms(record.duration);
        let mut row = self.pending.entry(key).or_default();
        row.invocations += 1;
        row.errors += u64::from(record.status >= 500);
        row.cold_starts += u64::from(record.cold_start);
        let class = (record.status / 100).clamp(2, 5) as usize - 2;
        row.status[class] += 1;
        row.duration_us += record.duration.as_micros() as u64;
        row.billed_ms += billed;
        row.mib_ms += mib_ms(record.memory_mb, billed);
        row.histogram.record(record.duration);
        row.kv_operations += record.kv_operations;
    }

    /// `instances` provisioned instances of one version were kept warm for `elapsed`.
    pub fn provisioned(
        &self,
        function: &Arc<str>,
        version: VersionLabel,
        instances: u32,
        memory_mb: u32,
        elapsed: Duration,
    ) {
        if instances == 0 {
            return;
        }
        let key = UsageKey {
            function: function.clone(),
            version,
            alias: None,
            minute: crate::model::now_ms().div_euclid(60_000),
        };
        let ms = (elapsed.as_micros() as u64 * u64::from(instances) + 500) / 1000;
        let mut row = self.pending.entry(key).or_default();
        row.provisioned_ms += ms;
        row.provisioned_mib_ms += mib_ms(memory_mb, ms);
    }

    /// One mirrored request's outcome (`error`: the shadow answered 5xx or failed).
    pub fn shadow(
        &self,
        function: &Arc<str>,
        version: VersionLabel,
        outcome: ShadowOutcome,
        error: bool,
        duration: Option<Duration>,
    ) {
        self.shadow
            .record(function, version, outcome, error, duration);
        self.metrics.shadow(function, version, outcome, duration);
    }

    /// Shadow results of each mirrored version of `function`.
    pub fn shadow_report(&self, function: &str) -> Vec<ShadowReport> {
        self.shadow.report(function)
    }

    /// A request that had to wait for a concurrency slot.
    pub fn queue_waited(&self, meter: &VersionMeter) {
        self.metrics.queue_waited(&meter.metrics);
    }

    /// Takes everything recorded since the last call, keyed and ready to persist.
    pub fn take_pending(&self) -> Vec<UsageRow> {
        let keys: Vec<UsageKey> = self.pending.iter().map(|e| e.key().clone()).collect();
        keys.into_iter()
            .filter_map(|key| self.pending.remove(&key))
            .map(|(key, row)| with_key(row, &key))
            .collect()
    }

    /// Puts back rows a flush could not write (the database is down), merged with what was
    /// recorded since, to be written by a later flush. Past [`MAX_PENDING_ROWS`] the oldest
    /// minutes go first, counted in `fnhost_usage_dropped_rows`.
    pub fn restore(&self, rows: Vec<UsageRow>) {
        self.restore_within(rows, MAX_PENDING_ROWS)
    }

    fn restore_within(&self, rows: Vec<UsageRow>, max_rows: usize) {
        for row in rows {
            let Some(version) = VersionLabel::parse(&row.version) else {
                continue;
            };
            let key = UsageKey {
                function: Arc::from(row.function.as_str()),
                version,
                alias: (!row.alias.is_empty()).then(|| Arc::from(row.alias.as_str())),
                minute: row.minute,
            };
            self.pending.entry(key).or_default().add(&row);
        }
        let excess = self.pending.len().saturating_sub(max_rows);
        if excess > 0 {
            let mut keys: Vec<UsageKey> = self.pending.iter().map(|e| e.key().clone()).collect();
            keys.sort_by_key(|k| k.minute);
            for key in keys.into_iter().take(excess) {
                self.pending.remove(&key);
            }
            let dropped = self
                .dropped_rows
                .fetch_add(excess as u64, std::sync::atomic::Ordering::Relaxed);
            if dropped == 0 {
                tracing::error!(
                    rows = excess,
                    limit = max_rows,
                    "usage not written for so long that the oldest rows are being dropped"
                );
            }
        }
    }

    /// Rows waiting for a flush, and rows dropped since start.
    pub fn pending_stats(&self) -> PendingUsage {
        PendingUsage {
            rows: self.pending.len() as u64,
            dropped: self.dropped_rows.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// What has been recorded but not flushed yet (so queries are current).
    pub fn peek_pending(&self) -> Vec<UsageRow> {
        self.pending
            .iter()
            .map(|e| with_key(e.value().clone(), e.key()))
            .collect()
    }

    /// Health of each version of `function` over the last `window`.
    pub fn health(&self, function: &str, window: Duration) -> Vec<VersionHealth> {
        self.health.snapshot(function, window)
    }

    /// `function`'s per-second health samples with `from <= second < to` (Unix seconds).
    pub fn health_samples(&self, function: &str, from: i64, to: i64) -> Vec<HealthSample> {
        self.health.samples(function, from, to)
    }

    /// Forgets a deleted function's health windows. Its usage stays (billing history) and
    /// its Prometheus series stay until restart, as counters should not go backwards.
    pub fn forget(&self, function: &str) {
        self.meters.retain(|(f, _), _| &**f != function);
        self.health.remove(function);
        self.shadow.remove(function);
    }

    /// The Prometheus text exposition, with host-wide gauges read at scrape time.
    pub fn encode_metrics(&self, gauges: &HostGauges) -> String {
        self.metrics.encode(gauges)
    }
}

fn with_key(mut row: UsageRow, key: &UsageKey) -> UsageRow {
    row.function = key.function.to_string();
    row.version = key.version.to_string();
    row.alias = key.alias.as_deref().unwrap_or("").to_string();
    row.minute = key.minute;
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(metering: &Metering, function: &Arc<str>, version: u32, status: u16, micros: u64) {
        let meter = metering.meter(function, VersionLabel::Number(version));
        metering.record(
            &meter,
            &InvocationRecord {
                alias: Some(&Arc::from("prod")),
                status,
                duration: Duration::from_micros(micros),
                memory_mb: 128,
                cold_start: true,
                instantiation: Some(Duration::from_micros(20)),
                billable: true,
                kv_operations: 0,
            },
        );
    }

    #[test]
    fn aggregates_by_key_and_takes_everything_once() {
        let metering = Metering::default();
        let f: Arc<str> = Arc::from("f");
        record(&metering, &f, 1, 200, 200);
        record(&metering, &f, 1, 500, 1010);
        record(&metering, &f, 2, 200, 300);
        let mut rows = metering.take_pending();
        rows.sort_by(|a, b| a.version.cmp(&b.version));
        assert_eq!(rows.len(), 2);
        let v1 = &rows[0];
        assert_eq!((v1.invocations, v1.errors, v1.cold_starts), (2, 1, 2));
        assert_eq!(v1.billed_ms, 1 + 2);
        assert_eq!(v1.mib_ms, 128 * 3);
        assert_eq!(v1.status, [1, 0, 0, 1]);
        assert_eq!(v1.alias, "prod");
        assert!(metering.take_pending().is_empty());
    }

    #[test]
    fn provisioned_time_is_instances_times_elapsed() {
        let metering = Metering::default();
        let f: Arc<str> = Arc::from("f");
        let v = VersionLabel::Number(1);
        metering.provisioned(&f, v, 3, 256, Duration::from_millis(1000));
        metering.provisioned(&f, v, 3, 256, Duration::from_micros(500_400));
        metering.provisioned(&f, v, 0, 256, Duration::from_secs(5));
        let rows = metering.take_pending();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].provisioned_ms, 3000 + 1501);
        assert_eq!(rows[0].provisioned_mib_ms, 256 * 4501);
        assert_eq!((rows[0].invocations, rows[0].billed_ms), (0, 0));
    }

    #[test]
    fn refusals_are_counted_but_not_billed() {
        let metering = Metering::default();
        let f: Arc<str> = Arc::from("f");
        let meter = metering.meter(&f, VersionLabel::Latest);
        metering.record(
            &meter,
            &InvocationRecord {
                alias: None,
                status: 503,
                duration: Duration::ZERO,
                memory_mb: 128,
                cold_start: false,
                instantiation: None,
                billable: false,
                kv_operations: 0,
            },
        );
        assert!(metering.take_pending().is_empty());
        let health = metering.health("f", Duration::from_secs(60));
        assert_eq!(health[0].requests, 1);
        assert_eq!(health[0].errors, 1);
    }

    /// A version's meter resolves its series once; what it records lands in the same series
    /// the exposition shows, per alias and status class, and a forgotten function's next
    /// meter is a new one.
    #[test]
    fn meters_count_per_alias_and_status_class() {
        let metering = Metering::default();
        let f: Arc<str> = Arc::from("f");
        let prod: Arc<str> = Arc::from("prod");
        let meter = metering.meter(&f, VersionLabel::Number(1));
        assert!(Arc::ptr_eq(
            &meter,
            &metering.meter(&f, VersionLabel::Number(1))
        ));
        let call = |alias: Option<&Arc<str>>, status: u16| {
            metering.record(
                &meter,
                &InvocationRecord {
                    alias,
                    status,
                    duration: Duration::from_millis(1),
                    memory_mb: 128,
                    cold_start: false,
                    instantiation: None,
                    billable: status != 503,
                    kv_operations: 0,
                },
            )
        };
        call(Some(&prod), 200);
        call(Some(&prod), 200);
        call(None, 200);
        call(Some(&prod), 503);
        metering.queue_waited(&meter);
        let text = metering.encode_metrics(&HostGauges::default());
        let value = |series: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        };
        let invocations = |alias: &str, status: &str| {
            value(&format!(
                "fnhost_invocations_total{{namespace=\"default\",function=\"f\",version=\"1\",alias=\"{alias}\",status=\"{status}\"}}"
            ))
        };
        assert_eq!(invocations("prod", "2xx"), 2.0);
        assert_eq!(invocations("", "2xx"), 1.0);
        assert_eq!(invocations("prod", "5xx"), 1.0);
        assert_eq!(value("fnhost_overloaded_total{function=\"f\"}"), 1.0);
        assert_eq!(value("fnhost_queue_waits_total{function=\"f\"}"), 1.0);
        assert_eq!(
            value(
                "fnhost_invocation_duration_seconds_count{namespace=\"default\",function=\"f\",version=\"1\"}"
            ),
            4.0
        );
        assert!(!text.contains("fnhost_cold_starts_total{"), "{text}");
        assert_eq!(metering.health("f", Duration::from_secs(60))[0].requests, 4);
        metering.forget("f");
        assert!(!Arc::ptr_eq(
            &meter,
            &metering.meter(&f, VersionLabel::Number(1))
        ));
    }

    /// Rows a flush could not write come back merged with what was recorded since, and past
    /// the bound the oldest minutes go first, counted.
    #[test]
    fn usage_a_flush_could_not_write_is_kept_merged_and_bounded() {
        let metering = Metering::default();
        let f: Arc<str> = Arc::from("f");
        record(&metering, &f, 1, 200, 1500);
        let failed = metering.take_pending();
        assert_eq!(failed.len(), 1);
        record(&metering, &f, 1, 500, 1500);
        metering.restore(failed);
        let rows = metering.take_pending();
        assert_eq!(
            rows.len(),
            1,
            "same function, version, alias and minute: one row"
        );
        assert_eq!((rows[0].invocations, rows[0].errors), (2, 1));
        assert_eq!(rows[0].alias, "prod");

        let old = |minute| UsageRow {
            function: "f".into(),
            version: "1".into(),
            alias: String::new(),
            minute,
            invocations: 1,
            ..UsageRow::default()
        };
        metering.restore_within((0..5).map(old).collect(), 3);
        let mut kept: Vec<i64> = metering.take_pending().iter().map(|r| r.minute).collect();
        kept.sort();
        assert_eq!(kept, [2, 3, 4], "the oldest minutes are dropped first");
        assert_eq!(metering.pending_stats().dropped, 2);
    }
}
