//! What the host reports: usage, health, logs and its own status.

use serde::{Deserialize, Serialize};

pub use crate::model::ScalerStats as ScalerCounters;
pub use crate::model::{
    DependencyReport as DependencyView, EngineStatus as EngineView, ShadowReport as ShadowView,
    VersionHealth as VersionHealthView,
};

/// How usage rows are grouped: within a function, or per namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageGrouping {
    Namespace,
    Function,
    Version,
    Alias,
    Minute,
}

impl UsageGrouping {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Namespace => "namespace",
            Self::Function => "function",
            Self::Version => "version",
            Self::Alias => "alias",
            Self::Minute => "minute",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "namespace" => Self::Namespace,
            "function" => Self::Function,
            "version" => Self::Version,
            "alias" => Self::Alias,
            "minute" => Self::Minute,
            _ => return None,
        })
    }
}

/// `GET /v1/usage`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    pub since_ms: i64,
    pub by: UsageGrouping,
    pub rows: Vec<UsageLine>,
}

/// One group's usage; `version`, `alias` or `minute` is set by the grouping.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageLine {
    /// The function's namespace.
    #[serde(default)]
    pub namespace: String,
    /// Empty when grouped by namespace.
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Empty for requests that named a version directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Unix minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minute: Option<i64>,
    pub invocations: u64,
    pub errors: u64,
    pub cold_starts: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub billed_ms: u64,
    pub gb_seconds: f64,
    /// Provisioned instance time, billed apart from invocations.
    pub provisioned_ms: u64,
    pub provisioned_gb_seconds: f64,
    /// Key-value operations the invocations made.
    #[serde(default)]
    pub kv_operations: u64,
}

/// `GET /v1/functions/NAME/health`: rolling per-version health and shadow comparisons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub function: String,
    pub versions: Vec<VersionHealthView>,
    /// Mirrored requests per shadow version, since the host started.
    pub shadow: Vec<ShadowView>,
}

/// `GET /v1/functions/NAME/logs`: what the function printed, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    pub function: String,
    pub entries: Vec<LogLine>,
    /// Pass as `after` to read on from here.
    pub next_after: u64,
}

/// What one invocation printed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Increases by one per entry of this function.
    pub seq: u64,
    pub time_ms: i64,
    pub request_id: String,
    pub version: String,
    pub text: String,
}

/// `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub uptime_secs: u64,
    pub functions: usize,
    pub limits: LimitsView,
    pub engine: EngineView,
    pub scaling: ScalingStatus,
    /// The database, the disk and the object store: up, or down since when and why.
    #[serde(default)]
    pub dependencies: Vec<DependencyView>,
}

/// Limits clients should check before sending (the CLI does, before a large upload).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsView {
    pub max_upload_bytes: u64,
}

/// Warm instances host-wide and the scaler's work off the request path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingStatus {
    pub warm_instances: u32,
    pub max_warm: u32,
    pub idle_timeout_ms: u64,
    #[serde(flatten)]
    pub counters: ScalerCounters,
}
