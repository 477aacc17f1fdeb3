//! Warm capacity of one function: `GET /v1/functions/NAME/scaling` shows its provisioned
//! concurrency and each version's warm pool; `PUT` sets provisioned concurrency for the
//! function (`$DEFAULT`'s versions, split by weight) or for one version.

use super::ensure_function;
use super::json_body::read_json;
use crate::api::{ScalingView, SetProvisioned};
use crate::app::App;
use crate::model::{ScalingPolicy, VersionLabel};
use crate::server::body::{Body, json};
use crate::server::error::ApiError;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

pub async fn get(host: &App, name: &str) -> Result<Response<Body>, ApiError> {
    let policy = match host.router.snapshot().function(name) {
        Some(routes) => routes.scaling.clone(),
        None => {
            ensure_function(host, name).await?;
            ScalingPolicy::default()
        }
    };
    Ok(view(host, name, policy))
}

pub async fn set(
    host: &App,
    name: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let change: SetProvisioned = read_json(request).await?;
    let count = change.provisioned.ok_or_else(|| {
        ApiError::bad_request(r#"send {"provisioned": N} (and "version" to set one version)"#)
    })?;
    let version = change
        .version
        .as_deref()
        .map(|text| {
            VersionLabel::parse(text).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "version {text:?} is not `latest` or a version number"
                ))
            })
        })
        .transpose()?;
    let policy = host.registry.set_provisioned(name, version, count).await?;
    // Apply now rather than at the next tick, so provisioned instances start warming at once.
    host.scaler.tick(std::time::Duration::ZERO);
    Ok(view(host, name, policy))
}

fn view(host: &App, name: &str, policy: ScalingPolicy) -> Response<Body> {
    let pools = host
        .scaler
        .status()
        .into_iter()
        .filter(|pool| pool.function == name)
        .collect();
    let (index, nodes) = host.scaler.share().get();
    json(
        StatusCode::OK,
        &ScalingView {
            function: name.to_string(),
            policy,
            pools,
            node: index + 1,
            nodes,
        },
    )
}
