//! Warm capacity: provisioned concurrency and each version's warm pool.

use serde::{Deserialize, Serialize};

pub use crate::model::PoolStatus as PoolView;
use crate::model::ScalingPolicy;

/// `GET /v1/functions/NAME/scaling` (and what `PUT` answers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingView {
    pub function: String,
    /// The fleet-wide policy (alone: this node's).
    pub policy: ScalingPolicy,
    /// This node's warm pools, one per version with one (recently used or provisioned):
    /// their `provisioned` is this node's part of the policy's total.
    pub pools: Vec<PoolView>,
    /// Which of how many live nodes this one is (from 1), the split's inputs.
    #[serde(default = "one")]
    pub node: u32,
    #[serde(default = "one")]
    pub nodes: u32,
}

fn one() -> u32 {
    1
}

/// `PUT /v1/functions/NAME/scaling`: provisioned concurrency for the function (`$DEFAULT`'s
/// versions, split by weight) or, with `version`, for one version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetProvisioned {
    pub provisioned: Option<u32>,
    /// `latest` or a version number; absent for the whole function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}
