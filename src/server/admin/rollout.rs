//! Automatic rollouts: `POST /v1/functions/NAME/rollout` starts one, `GET` shows it,
//! `POST .../rollout/pause|resume|abort` steer it.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::ensure_function;
use super::json_body::read_json;
use crate::api::{
    JudgmentView, ObservedView, Percent, RolloutPhase, RolloutSpecView, RolloutView, StartRollout,
    StepHealthView,
};
use crate::app::App;
use crate::model::{BasisPoints, VersionLabel};
use crate::rollout::plan::{Observed, Phase};
use crate::rollout::{RolloutStatus, StartRequest};
use crate::server::body::{Body, json};
use crate::server::error::ApiError;

/// Steering a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steer {
    Pause,
    Resume,
    Abort,
}

pub async fn start(
    host: &App,
    function: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: StartRollout = read_json(request).await?;
    let to = body.to.ok_or_else(|| {
        ApiError::bad_request(r#"say which version to roll out: {"to": "latest"} or {"to": 3}"#)
    })?;
    let start = StartRequest {
        to,
        steps_bp: body.steps_bp(),
        alias: body.alias,
        interval_ms: body
            .interval_ms
            .unwrap_or(StartRollout::DEFAULT_INTERVAL_MS),
        max_error_rate_bp: body.max_error_rate_percent.map_or(
            BasisPoints::new(StartRollout::DEFAULT_MAX_ERROR_RATE_BP),
            |p| p.0,
        ),
        max_p99_ms: body.max_p99_ms.unwrap_or(StartRollout::DEFAULT_MAX_P99_MS),
        min_requests: body
            .min_requests
            .unwrap_or(StartRollout::DEFAULT_MIN_REQUESTS),
    };
    ensure_function(host, function).await?;
    if start.to == VersionLabel::Latest {
        // The rollout ends by publishing $LATEST: the versions quota is checked now, while
        // it can still refuse, not at the last step.
        host.registry.check_versions_quota(function).await?;
    }
    let status = host.rollouts.start(function, start).await?;
    Ok(json(StatusCode::CREATED, &view(status)))
}

pub async fn get(host: &App, function: &str) -> Result<Response<Body>, ApiError> {
    ensure_function(host, function).await?;
    Ok(json(
        StatusCode::OK,
        &view(host.rollouts.status(function).await?),
    ))
}

pub async fn steer(host: &App, function: &str, steer: Steer) -> Result<Response<Body>, ApiError> {
    let status = match steer {
        Steer::Pause => host.rollouts.pause(function).await?,
        Steer::Resume => host.rollouts.resume(function).await?,
        Steer::Abort => host.rollouts.abort(function).await?,
    };
    Ok(json(StatusCode::OK, &view(status)))
}

fn view(status: RolloutStatus) -> RolloutView {
    let record = status.record;
    let spec = record.spec;
    RolloutView {
        function: record.function,
        spec: RolloutSpecView {
            alias: spec.alias,
            candidate: spec.candidate,
            stable: spec.stable,
            steps_bp: spec.steps_bp,
            interval_ms: spec.interval_ms,
            max_error_rate_bp: spec.max_error_rate_bp,
            max_p99_ms: spec.max_p99_ms,
            min_requests: spec.min_requests,
        },
        phase: match record.phase {
            Phase::Running => RolloutPhase::Running,
            Phase::Paused => RolloutPhase::Paused,
            Phase::Succeeded => RolloutPhase::Succeeded,
            Phase::RolledBack => RolloutPhase::RolledBack,
            Phase::Aborted => RolloutPhase::Aborted,
        },
        step: record.step,
        step_started_ms: record.step_started_ms,
        reason: record.reason,
        judgments: record
            .judgments
            .into_iter()
            .map(|j| JudgmentView {
                at_ms: j.at_ms,
                // Stored as a percentage with at most two decimals; rounding undoes f64 error.
                step_percent: Percent(BasisPoints::new((j.step_percent * 100.0).round() as u32)),
                candidate: observed(j.candidate),
                stable: observed(j.stable),
                passed: j.passed,
                reason: j.reason,
            })
            .collect(),
        created_ms: record.created_ms,
        updated_ms: record.updated_ms,
        current_percent: Percent(status.current_bp),
        observing: status.observing.map(|health| StepHealthView {
            elapsed_ms: health.elapsed_ms,
            candidate: observed(health.candidate),
            stable: observed(health.stable),
        }),
        shadow: status.shadow,
    }
}

fn observed(o: Observed) -> ObservedView {
    ObservedView {
        requests: o.requests,
        errors: o.errors,
        error_rate: o.error_rate,
        p99_ms: o.p99_ms,
    }
}
