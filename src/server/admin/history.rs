//! `GET /v1/functions/NAME/history?alias=ALIAS&limit=N`: the audit trail of traffic changes,
//! newest first, manual and automatic alike.

use super::ensure_function;
use crate::api::{HistoryChange, HistoryPage};
use crate::app::App;
use crate::server::body::{Body, json};
use crate::server::error::ApiError;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;

pub async fn get(
    host: &App,
    function: &str,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (mut alias, mut limit) = (None, DEFAULT_LIMIT);
    for (key, value) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "alias" => alias = Some(value.to_string()),
            "limit" => limit = super::limit_param(&value, MAX_LIMIT)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}; use alias or limit"
                )));
            }
        }
    }
    let changes = host.registry.alias_history(function, alias, limit).await?;
    if changes.is_empty() {
        // History outlives a deleted function, but an unknown name is still a mistake.
        ensure_function(host, function).await?;
    }
    Ok(json(
        StatusCode::OK,
        &HistoryPage {
            function: function.to_string(),
            changes: changes
                .into_iter()
                .map(|change| HistoryChange {
                    id: change.id,
                    function: change.function,
                    alias: change.alias,
                    at_ms: change.at_ms,
                    before: change.before,
                    after: change.after,
                    actor: change.actor,
                    reason: change.reason,
                })
                .collect(),
        },
    ))
}
