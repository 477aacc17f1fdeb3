//! Automatic rollouts: `POST /v1/functions/NAME/rollout` starts one, `GET` shows it,
//! `POST .../rollout/pause|resume|abort` steer it.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::ensure_function;
use super::json_body::read_json;
use crate::app::App;
use crate::model::BasisPoints;
use crate::model::VersionLabel;
use crate::rollout::StartRequest;
use crate::server::body::{Body, json};
use crate::server::error::ApiError;

/// The body of `POST .../rollout`; percentages may be fractional (`0.5`).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    to: Option<VersionLabel>,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    steps: Option<Vec<serde_json::Number>>,
    #[serde(default)]
    interval_ms: Option<u64>,
    #[serde(default)]
    max_error_rate_percent: Option<serde_json::Number>,
    #[serde(default)]
    max_p99_ms: Option<u64>,
    #[serde(default)]
    min_requests: Option<u64>,
}

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
    let body: StartBody = read_json(request).await?;
    let percent =
        |n: &serde_json::Number| BasisPoints::parse(&n.to_string()).map_err(ApiError::bad_request);
    let to = body.to.ok_or_else(|| {
        ApiError::bad_request(r#"say which version to roll out: {"to": "latest"} or {"to": 3}"#)
    })?;
    let steps_bp = match &body.steps {
        Some(steps) => steps.iter().map(percent).collect::<Result<_, _>>()?,
        None => [100, 500, 2500, 5000, 10_000]
            .into_iter()
            .map(BasisPoints::new)
            .collect(),
    };
    let start = StartRequest {
        to,
        alias: body.alias,
        steps_bp,
        interval_ms: body.interval_ms.unwrap_or(30_000),
        max_error_rate_bp: match &body.max_error_rate_percent {
            Some(p) => percent(p)?,
            None => BasisPoints::new(100),
        },
        max_p99_ms: body.max_p99_ms.unwrap_or(1000),
        min_requests: body.min_requests.unwrap_or(100),
    };
    let status = host.rollouts.start(function, start).await?;
    Ok(json(StatusCode::CREATED, &status))
}

pub async fn get(host: &App, function: &str) -> Result<Response<Body>, ApiError> {
    ensure_function(host, function)?;
    Ok(json(StatusCode::OK, &host.rollouts.status(function).await?))
}

pub async fn steer(host: &App, function: &str, steer: Steer) -> Result<Response<Body>, ApiError> {
    let status = match steer {
        Steer::Pause => host.rollouts.pause(function).await?,
        Steer::Resume => host.rollouts.resume(function).await?,
        Steer::Abort => host.rollouts.abort(function).await?,
    };
    Ok(json(StatusCode::OK, &status))
}
