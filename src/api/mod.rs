//! The admin API's wire types: every JSON body the admin API reads or writes, defined once
//! and used by both ends, the server (`server::admin`) and the client (`cli`).
//!
//! These types are the API's contract, kept apart from what the store holds: a storage
//! record can change shape without changing the API, and a change to the API is a change to
//! this module, seen by both ends at compile time. Conversions from storage records live
//! here; reports computed from live counters (`model::capacity`, `model::health`) are
//! re-exported as they are. The module depends on `model` only.
//!
//! Percentages travel as JSON numbers with at most two decimals ([`Percent`]), read exactly
//! (0.01 stays 1 basis point, never 0.0099...).

mod events;
mod fleet;
mod functions;
mod invocations;
mod observe;
mod percent;
mod rollout;
mod routes;
mod scaling;
mod teams;
mod traffic;

use serde::{Deserialize, Serialize};

pub use events::{
    AddTrigger, EventList, EventView, ObjectList, ObjectView, StoredObject, TriggerList,
    TriggerView,
};
pub use fleet::{NodeList, NodeView};
pub use functions::{
    CodeView, FunctionDetail, FunctionList, FunctionView, PublishRequest, Published, SecretList,
    SecretView, StageView, UploadEvent, Uploaded, VersionList, VersionView,
};
pub use invocations::{InvocationAccepted, InvocationList, InvocationView};
pub use observe::{
    EngineView, Health, LimitsView, LogLine, LogPage, ScalerCounters, ScalingStatus, ShadowView,
    Status, UsageGrouping, UsageLine, UsageReport, VersionHealthView,
};
pub use percent::Percent;
pub use rollout::{
    JudgmentView, ObservedView, RolloutPhase, RolloutSpecView, RolloutView, StartRollout,
    StepHealthView,
};
pub use routes::{HttpRouteList, HttpRouteView};
pub use scaling::{PoolView, ScalingView, SetProvisioned};
pub use teams::{
    AuditLog, CreateKey, CreateNamespace, KeyCreated, KeyList, KeyView, KvKeys, NamespaceList,
    NamespaceUsage, NamespaceView, SetAccess, WhoAmI,
};
pub use traffic::{
    AliasList, AliasRequest, AliasView, HistoryChange, HistoryPage, PromoteRequest, Promoted,
    Route, Rule, TrafficRequest,
};

/// What a `DELETE` answers: `{"deleted": {...}}` naming what is gone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub deleted: DeletedItem,
}

/// The identifying fields of a deleted thing; only those that apply are present.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
}

impl Deleted {
    pub fn new(item: DeletedItem) -> Self {
        Self { deleted: item }
    }
}

/// Every error answer: `{"error": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable machine-readable `code` and a message that says what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    /// Set for server-side failures: the id the host logged the failure under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_id: Option<String>,
    /// The HTTP status, repeated inside progress streams (whose own status is already 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}
