//! Reports computed from live counters, never stored, and shown as they are by the admin API
//! (`api` re-exports them): a version's rolling health, a shadow version's comparisons, and
//! the engine's status. Like `capacity.rs`, leaf types the services fill in.

use serde::{Deserialize, Serialize};

use super::VersionLabel;

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

/// The engine: its instance pool and compile work so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStatus {
    pub pooling_allocator: bool,
    /// Memory protection keys guard the pool's slots (asked for and available).
    pub memory_protection_keys: bool,
    pub pool_instances: u32,
    /// Virtual address space the pool reserves up front (not memory: pages are committed
    /// only as instances touch them).
    pub reserved_address_space_bytes: u64,
    pub compiles: u64,
    pub compile_ms_total: u64,
    pub compiled_cache_loads: u64,
    pub compiled_cache_load_failures: u64,
    /// Compiled code fetched from the fleet's shared store instead of compiled here.
    pub compiled_shared_loads: u64,
    pub loaded_components: usize,
}
