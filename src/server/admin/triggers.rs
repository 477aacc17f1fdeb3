//! Event triggers and their events over the admin API: `POST/GET .../triggers`,
//! `DELETE .../triggers/ID`, `GET .../events?status=failed` (the dead-letter list) and
//! `POST /v1/events/ID/retry`.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::ensure_function;
use super::json_body::read_json;
use crate::app::App;
use crate::model::{EventRecord, EventStatus, Trigger, TriggerSource};
use crate::server::body::{Body, json};
use crate::server::error::ApiError;

/// `POST .../triggers`: an object trigger (`bucket` ...) or a timer (`cron` ...).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddTrigger {
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    suffix: String,
    #[serde(default)]
    output_bucket: Option<String>,
    #[serde(default)]
    cron: Option<String>,
    #[serde(default)]
    allow_overlap: bool,
    /// The alias or version events go to; `$DEFAULT` when absent.
    #[serde(default)]
    target: Option<String>,
}

#[derive(Serialize)]
struct Triggers {
    function: String,
    triggers: Vec<Trigger>,
}

#[derive(Serialize)]
struct Events {
    function: String,
    events: Vec<EventRecord>,
}

pub async fn add(
    host: &App,
    function: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: AddTrigger = read_json(request).await?;
    let source = match (body.bucket, body.cron) {
        (Some(bucket), None) => TriggerSource::Object {
            bucket,
            prefix: body.prefix,
            suffix: body.suffix,
            output_bucket: body.output_bucket,
        },
        (None, Some(cron)) => TriggerSource::Timer {
            cron,
            allow_overlap: body.allow_overlap,
        },
        _ => {
            return Err(ApiError::bad_request(
                r#"give either {"bucket": "uploads", ...} for object events or {"cron": "0 */5 * * * *"} for a timer"#,
            ));
        }
    };
    if let Some(target) = &body.target {
        host.router
            .snapshot()
            .resolve(function, Some(target))
            .map_err(ApiError::from)?;
    } else {
        ensure_function(host, function)?;
    }
    let trigger = host
        .registry
        .add_trigger(function, body.target, source)
        .await?;
    host.events.timers_changed.notify_one();
    Ok(json(StatusCode::CREATED, &trigger))
}

pub async fn list(host: &App, function: &str) -> Result<Response<Body>, ApiError> {
    ensure_function(host, function)?;
    let triggers = host.registry.triggers(Some(function.to_string())).await?;
    Ok(json(
        StatusCode::OK,
        &Triggers {
            function: function.to_string(),
            triggers,
        },
    ))
}

pub async fn delete(host: &App, function: &str, id: &str) -> Result<Response<Body>, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("no trigger {id:?}; trigger ids are numbers")))?;
    host.registry.delete_trigger(function, id).await?;
    host.events.timers_changed.notify_one();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "deleted": { "function": function, "trigger": id } }),
    ))
}

pub async fn events(
    host: &App,
    function: &str,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    ensure_function(host, function)?;
    let (mut status, mut limit) = (None, 100u32);
    for (name, value) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "status" => {
                status = Some(EventStatus::parse(&value).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "status={value:?}: use pending, running, delivered or failed"
                    ))
                })?)
            }
            "limit" => limit = super::limit_param(&value, 10_000)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}; use status or limit"
                )));
            }
        }
    }
    let events = host.registry.events(function, status, limit).await?;
    Ok(json(
        StatusCode::OK,
        &Events {
            function: function.to_string(),
            events,
        },
    ))
}

pub async fn retry(host: &App, id: &str) -> Result<Response<Body>, ApiError> {
    let event = host.registry.retry_event(id).await?;
    host.events.deliveries.notify_one();
    Ok(json(StatusCode::OK, &event))
}
