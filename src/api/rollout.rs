//! Automatic rollouts: starting one and following it.

use serde::{Deserialize, Serialize};

use super::{Percent, ShadowView};
use crate::model::{BasisPoints, VersionLabel};

/// `POST /v1/functions/NAME/rollout`. Unset fields take the defaults below.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRollout {
    /// `latest` (through `$DEFAULT`) or a version number (through `alias`).
    pub to: Option<VersionLabel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The candidate's share at each step, ending at 100 (default 1, 5, 25, 50, 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<Percent>>,
    /// How long each step is observed (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// Default 1 %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate_percent: Option<Percent>,
    /// Default 1000 ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ms: Option<u64>,
    /// Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
}

impl StartRollout {
    pub const DEFAULT_STEPS_BP: [u32; 5] = [100, 500, 2500, 5000, 10_000];
    pub const DEFAULT_INTERVAL_MS: u64 = 30_000;
    pub const DEFAULT_MAX_ERROR_RATE_BP: u32 = 100;
    pub const DEFAULT_MAX_P99_MS: u64 = 1000;
    pub const DEFAULT_MIN_REQUESTS: u64 = 100;

    pub fn steps_bp(&self) -> Vec<BasisPoints> {
        match &self.steps {
            Some(steps) => steps.iter().map(|p| p.0).collect(),
            None => Self::DEFAULT_STEPS_BP
                .into_iter()
                .map(BasisPoints::new)
                .collect(),
        }
    }
}

/// Where a rollout is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutPhase {
    Running,
    Paused,
    Succeeded,
    RolledBack,
    Aborted,
}

impl RolloutPhase {
    /// Still moving traffic (or holding it, paused).
    pub fn is_active(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }
}

/// `GET /v1/functions/NAME/rollout` (and what starting or steering one answers).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutView {
    pub function: String,
    pub spec: RolloutSpecView,
    pub phase: RolloutPhase,
    /// Index in `spec.steps_bp` of the share now applied.
    pub step: usize,
    pub step_started_ms: i64,
    /// The latest decision, or why the rollout ended.
    pub reason: String,
    pub judgments: Vec<JudgmentView>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The candidate's share now.
    pub current_percent: Percent,
    /// The current step's health so far (running rollouts only).
    pub observing: Option<StepHealthView>,
    /// How mirrored requests to each version compared with the primary's answers.
    pub shadow: Vec<ShadowView>,
}

/// What the rollout was asked to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutSpecView {
    pub alias: String,
    pub candidate: VersionLabel,
    pub stable: VersionLabel,
    pub steps_bp: Vec<BasisPoints>,
    pub interval_ms: u64,
    pub max_error_rate_bp: BasisPoints,
    pub max_p99_ms: u64,
    pub min_requests: u64,
}

/// A version's health over (part of) a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObservedView {
    pub requests: u64,
    pub errors: u64,
    /// Errors per request (0 to 1).
    pub error_rate: f64,
    pub p99_ms: Option<f64>,
}

/// The decision on one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgmentView {
    pub at_ms: i64,
    pub step_percent: Percent,
    pub candidate: ObservedView,
    pub stable: ObservedView,
    pub passed: bool,
    pub reason: String,
}

/// The current step so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepHealthView {
    pub elapsed_ms: i64,
    pub candidate: ObservedView,
    pub stable: ObservedView,
}
