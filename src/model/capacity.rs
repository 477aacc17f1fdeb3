//! Reports of warm capacity: each version's pool and the scaler's counters. Computed, never
//! stored, and shown as they are by the admin API (`api` re-exports them) and `/metrics`.

use serde::{Deserialize, Serialize};

use super::VersionLabel;

/// One version's warm capacity, for the admin API and metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatus {
    pub function: String,
    pub version: VersionLabel,
    /// Instances instantiated and waiting for a request.
    pub warm: u32,
    /// Instances the scaler keeps warm now.
    pub target: u32,
    /// The provisioned part of `target`.
    pub provisioned: u32,
    /// Requests running now.
    pub in_flight: u32,
    /// Milliseconds since the version last served a request (0 while one runs).
    pub idle_ms: u64,
}

/// Counters of work done off the request path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalerStats {
    pub prewarmed: u64,
    pub prewarm_failures: u64,
    pub discarded: u64,
    pub unloaded: u64,
}
