//! Reports of warm capacity: each version's pool and the scaler's counters. Computed, never
//! stored, and shown as they are by the admin API (`api` re-exports them) and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

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

/// This node's part of the fleet's capacity. A function's `max_concurrency` and provisioned
/// concurrency are fleet totals; each of the `nodes` live nodes (ordered by node id, the
/// same order on every node) takes `total / nodes`, and the first `total % nodes` of them
/// one more, so the parts add up to the total exactly. A node's concurrency limit is at
/// least 1 (the balancer sends every node requests, and a node that may run none would fail
/// them all), so a limit below the node count is exceeded by design. Re-split whenever the
/// membership changes (a node joins, leaves or stops heartbeating). Alone: the totals.
#[derive(Debug)]
pub struct NodeShare {
    /// `index << 32 | nodes`, read on every request without a lock.
    packed: AtomicU64,
}

impl Default for NodeShare {
    fn default() -> Self {
        Self {
            packed: AtomicU64::new(1),
        }
    }
}

impl NodeShare {
    /// This node is number `index` (from 0) of `nodes` live nodes; returns whether that
    /// changed the split.
    pub fn set(&self, index: u32, nodes: u32) -> bool {
        let nodes = nodes.max(1);
        let packed = (u64::from(index.min(nodes - 1)) << 32) | u64::from(nodes);
        self.packed.swap(packed, Ordering::AcqRel) != packed
    }

    /// (index, nodes).
    pub fn get(&self) -> (u32, u32) {
        let packed = self.packed.load(Ordering::Acquire);
        ((packed >> 32) as u32, packed as u32)
    }

    /// This node's part of a provisioned-concurrency total (may be 0).
    pub fn provisioned(&self, total: u32) -> u32 {
        let (index, nodes) = self.get();
        split(total, index, nodes)
    }

    /// This node's part of a `max_concurrency` total (at least 1).
    pub fn concurrency(&self, total: u32) -> u32 {
        let (index, nodes) = self.get();
        split(total, index, nodes).max(1)
    }
}

fn split(total: u32, index: u32, nodes: u32) -> u32 {
    total / nodes + u32::from(index < total % nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_add_up_to_the_total_and_alone_is_everything() {
        let share = NodeShare::default();
        assert_eq!((share.provisioned(7), share.concurrency(100)), (7, 100));
        for nodes in 1..=7 {
            for total in [0, 1, 2, 5, 7, 100] {
                let parts: Vec<u32> = (0..nodes)
                    .map(|i| {
                        share.set(i, nodes);
                        share.provisioned(total)
                    })
                    .collect();
                assert_eq!(parts.iter().sum::<u32>(), total, "{total} over {nodes}");
                assert!(parts.iter().max().unwrap() - parts.iter().min().unwrap() <= 1);
            }
        }
        share.set(2, 3);
        assert_eq!(
            share.provisioned(1),
            0,
            "the first nodes take the remainder"
        );
        assert_eq!(share.concurrency(1), 1, "every node may run a request");
        assert!(!share.set(2, 3), "unchanged");
        assert!(share.set(0, 2));
        assert_eq!(share.concurrency(5), 3);
    }
}
