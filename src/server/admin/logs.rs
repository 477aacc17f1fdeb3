//! `GET /v1/functions/NAME/logs`: what the function printed, newest last.
//!
//! Query: `after=SEQ` (entries after that sequence number), `version=N|latest`, `limit`
//! (default 200), `follow=1` (if nothing is newer than `after`, wait up to 25 s for it:
//! a long poll, so `fnhost logs --follow` needs no busy polling).

use std::time::Duration;

use super::ensure_function;
use crate::api::{LogLine, LogPage};
use crate::app::App;
use crate::server::body::{Body, json};
use crate::server::error::ApiError;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

const FOLLOW_WAIT: Duration = Duration::from_secs(25);
const DEFAULT_LIMIT: usize = 200;

pub async fn read(
    host: &App,
    function: &str,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    ensure_function(host, function).await?;
    let (mut after, mut version, mut limit, mut follow) = (0u64, None, DEFAULT_LIMIT, false);
    for (key, value) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "after" => after = value.parse().map_err(|_| bad("after", &value))?,
            "limit" => limit = value.parse().map_err(|_| bad("limit", &value))?,
            "follow" => follow = value == "1" || value == "true",
            "version" => {
                version = Some(
                    crate::model::VersionLabel::parse(&value)
                        .ok_or_else(|| bad("version", &value))?
                        .to_string(),
                )
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}; use after, version, limit or follow"
                )));
            }
        }
    }
    let mut entries = host.logs.read(function, after, version.as_deref(), limit);
    if entries.is_empty() && follow {
        host.logs.wait(function, after, FOLLOW_WAIT).await;
        entries = host.logs.read(function, after, version.as_deref(), limit);
    }
    let next_after = entries.last().map_or(after, |e| e.seq);
    Ok(json(
        StatusCode::OK,
        &LogPage {
            function: function.to_string(),
            entries: entries
                .into_iter()
                .map(|e| LogLine {
                    seq: e.seq,
                    time_ms: e.time_ms,
                    request_id: e.request_id,
                    version: e.version,
                    text: e.text,
                })
                .collect(),
            next_after,
        },
    ))
}

fn bad(key: &str, value: &str) -> ApiError {
    ApiError::bad_request(format!("{key}={value:?} is not valid"))
}
