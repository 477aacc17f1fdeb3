//! Reports computed from live counters and shown as they are by the admin API (`api`
//! re-exports them): a version's rolling health, a shadow version's comparisons, and the
//! engine's status. Like `capacity.rs`, leaf types the services fill in. Health is also kept
//! as per-second [`HealthSample`]s, which a fleet's nodes publish so a rollout is judged on
//! every node's traffic; [`summarize`] turns samples from anywhere into [`VersionHealth`].

use serde::{Deserialize, Serialize};

use super::{LatencyHistogram, VersionLabel};

/// One version's requests in one second on one node: the unit health windows keep and fleet
/// nodes publish. Samples of the same version add up (histograms merge).
#[derive(Clone, Debug, PartialEq)]
pub struct HealthSample {
    pub function: String,
    pub version: VersionLabel,
    /// Unix second.
    pub second: i64,
    pub requests: u64,
    /// Requests answered with a 5xx status (timeouts included).
    pub errors: u64,
    pub latency: LatencyHistogram,
}

/// Each version's health over `window_secs`, summed from `samples` (any nodes, any seconds:
/// the caller picked them), ordered by version with `$LATEST` last.
pub fn summarize(samples: &[HealthSample], window_secs: u64) -> Vec<VersionHealth> {
    let mut by_version: std::collections::BTreeMap<
        u32,
        (VersionLabel, u64, u64, LatencyHistogram),
    > = std::collections::BTreeMap::new();
    for sample in samples {
        let order = match sample.version {
            VersionLabel::Number(n) => n,
            VersionLabel::Latest => u32::MAX,
        };
        let entry = by_version
            .entry(order)
            .or_insert_with(|| (sample.version, 0, 0, LatencyHistogram::default()));
        entry.1 += sample.requests;
        entry.2 += sample.errors;
        entry.3.merge(&sample.latency);
    }
    by_version
        .into_values()
        .map(|(version, requests, errors, latency)| {
            let ms = |q| latency.quantile(q).map(|d| d.as_secs_f64() * 1000.0);
            VersionHealth {
                version,
                window_secs,
                requests,
                errors,
                error_rate: if requests == 0 {
                    0.0
                } else {
                    errors as f64 / requests as f64
                },
                p50_ms: ms(0.5),
                p99_ms: ms(0.99),
            }
        })
        .collect()
}

/// One version's health over a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionHealth {
    pub version: VersionLabel,
    pub window_secs: u64,
    pub requests: u64,
    pub errors: u64,
    /// Errors (5xx, timeouts included) per request; 0 when there were no requests.
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// One shadow version's results, and how its answers compared with the primary's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShadowReport {
    pub version: VersionLabel,
    pub sent: u64,
    pub matches: u64,
    pub mismatches: u64,
    /// No verdict: the primary's answer was not seen in full (its client went away).
    pub unknown: u64,
    /// Not sent: the host or the shadow version was busy, or the body was too big to copy.
    pub dropped: u64,
    /// Shadow answers with a 5xx status or a failed invocation.
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// One part the host depends on (the database, the disk, the object store) as the host last saw it: up, or
/// down since when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencyReport {
    /// `database`, `disk` or `object_store`.
    pub name: String,
    /// What it is: "PostgreSQL postgres://fnhost:***@db/fnhost", the data directory.
    pub what: String,
    pub up: bool,
    /// When the current outage began (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_since_ms: Option<i64>,
    /// The last failure seen during the current outage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Failed calls during the current outage.
    pub failures: u64,
    /// Outages since the host started.
    pub outages: u64,
}

/// The engine: its instance pool and compile work so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStatus {
    /// Whether the WASI 0.2 engine's instances come from a pool (the WASI 0.3 engine has one
    /// of the same size when the address space allowed it).
    pub pooling_allocator: bool,
    /// Memory protection keys guard the pool's slots (asked for and available).
    pub memory_protection_keys: bool,
    /// Slots in each pool.
    pub pool_instances: u32,
    /// Virtual address space the pools reserve up front, together (not memory: pages are
    /// committed only as instances touch them).
    pub reserved_address_space_bytes: u64,
    pub compiles: u64,
    pub compile_ms_total: u64,
    pub compiled_cache_loads: u64,
    pub compiled_cache_load_failures: u64,
    /// Compiled code fetched from the fleet's shared store instead of compiled here.
    pub compiled_shared_loads: u64,
    pub loaded_components: usize,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sample(
        version: VersionLabel,
        second: i64,
        requests: u64,
        errors: u64,
        ms: u64,
    ) -> HealthSample {
        let mut latency = LatencyHistogram::default();
        for _ in 0..requests {
            latency.record(Duration::from_millis(ms));
        }
        HealthSample {
            function: "f".into(),
            version,
            second,
            requests,
            errors,
            latency,
        }
    }

    #[test]
    fn samples_from_many_nodes_add_up_per_version() {
        let one = VersionLabel::Number(1);
        let latest = VersionLabel::Latest;
        let samples = [
            sample(latest, 10, 90, 0, 5),
            sample(one, 10, 100, 1, 5),
            sample(latest, 11, 10, 10, 400),
            sample(one, 11, 100, 1, 5),
        ];
        let health = summarize(&samples, 2);
        assert_eq!(health.len(), 2);
        assert_eq!(health[0].version, one, "numbers first, $LATEST last");
        assert_eq!((health[0].requests, health[0].errors), (200, 2));
        assert!((health[0].error_rate - 0.01).abs() < 1e-9);
        assert_eq!((health[1].requests, health[1].errors), (100, 10));
        // 10 of 100 took 400 ms: the p99 sits among them, the p50 does not.
        assert!(health[1].p99_ms.unwrap() >= 400.0, "{:?}", health[1].p99_ms);
        assert!(health[1].p50_ms.unwrap() < 10.0);
        assert!(summarize(&[], 5).is_empty());
    }
}
