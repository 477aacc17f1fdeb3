//! Fleet membership: what each node reports about itself in its heartbeat.

use serde::{Deserialize, Serialize};

/// One node's latest heartbeat. A node missing heartbeats for [`NODE_EXPIRY_MS`] has left
/// the fleet: it no longer counts for capacity splits and `fnhost nodes` drops it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Random per process start, so a restarted node is a new member.
    pub id: String,
    /// Where its data plane and admin API listen, as they reported them.
    pub data_address: String,
    pub admin_address: String,
    /// The fnhost release it runs.
    pub version: String,
    pub started_ms: i64,
    pub heartbeat_ms: i64,
    /// Requests running on it at the heartbeat.
    pub in_flight: u64,
    /// Warm instances it holds at the heartbeat.
    pub warm_instances: u64,
}

/// How often a node writes its heartbeat.
pub const HEARTBEAT_MS: i64 = 1_000;
/// A node silent this long has left (a few missed heartbeats, so one slow write is no exit).
pub const NODE_EXPIRY_MS: i64 = 5_000;
