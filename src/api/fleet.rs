//! The fleet's membership: `GET /v1/nodes`.

use serde::{Deserialize, Serialize};

pub use crate::model::NodeRecord as NodeView;

/// `GET /v1/nodes`: the nodes alive now (one on SQLite), with the answering node's clock so
/// readers can show heartbeat ages and uptimes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeList {
    /// Whether the registry is shared (fleet mode).
    pub fleet: bool,
    pub now_ms: i64,
    pub nodes: Vec<NodeView>,
    /// The id of the node driving the fleet's rollouts (fleet mode; absent alone, where the
    /// one node drives, and for the few seconds between a dead driver and the next).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_driver: Option<String>,
}
