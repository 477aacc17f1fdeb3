//! Event triggers and their events over the admin API: `POST/GET .../triggers`,
//! `DELETE .../triggers/ID`, `GET .../events?status=failed` (the dead-letter list) and
//! `POST /v1/events/ID/retry`.

use super::ensure_function;
use super::json_body::read_json;
use crate::api::{
    AddTrigger, Deleted, DeletedItem, EventList, EventView, TriggerList, TriggerView,
};
use crate::app::App;
use crate::model::{Action, EventStatus, Lane, Principal, namespace_of};
use crate::server::body::{Body, json};
use crate::server::error::ApiError;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

pub async fn add(
    host: &App,
    function: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: AddTrigger = read_json(request).await?;
    let source = body.source().map_err(ApiError::bad_request)?;
    let namespace = namespace_of(function);
    for bucket in [&body.bucket, &body.output_bucket].into_iter().flatten() {
        if namespace_of(bucket) != namespace {
            return Err(ApiError::forbidden(format!(
                "bucket {bucket:?} belongs to namespace {:?}: a trigger of {function:?} watches \
                 and writes only buckets of namespace {namespace:?} ({})",
                namespace_of(bucket),
                if namespace == crate::model::DEFAULT_NAMESPACE {
                    "names without a dot".to_string()
                } else {
                    format!("BUCKET.{namespace}")
                }
            )));
        }
    }
    if let Some(target) = &body.target {
        host.router
            .snapshot()
            .resolve(function, Some(target))
            .map_err(ApiError::from)?;
    } else {
        ensure_function(host, function).await?;
    }
    let trigger = host
        .registry
        .add_trigger(function, body.target, source)
        .await?;
    host.events.timers_changed.notify_one();
    Ok(json(StatusCode::CREATED, &TriggerView::from(trigger)))
}

pub async fn list(host: &App, function: &str) -> Result<Response<Body>, ApiError> {
    ensure_function(host, function).await?;
    let triggers = host.registry.triggers(Some(function.to_string())).await?;
    Ok(json(
        StatusCode::OK,
        &TriggerList {
            function: function.to_string(),
            triggers: triggers.into_iter().map(TriggerView::from).collect(),
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
        &Deleted::new(DeletedItem {
            function: Some(function.to_string()),
            trigger: Some(id),
            ..Default::default()
        }),
    ))
}

pub async fn events(
    host: &App,
    function: &str,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    ensure_function(host, function).await?;
    let (status, limit) = listing(request)?;
    let events = host
        .registry
        .events(function, Lane::Events, status, limit)
        .await?;
    Ok(json(
        StatusCode::OK,
        &EventList {
            function: function.to_string(),
            events: events.into_iter().map(EventView::from).collect(),
        },
    ))
}

/// `?status=S&limit=N` of a listing of events or invocations.
pub(super) fn listing(request: &Request<Incoming>) -> Result<(Option<EventStatus>, u32), ApiError> {
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
    Ok((status, limit))
}

/// Sends a dead-lettered event or invocation again (`/v1/events/ID/retry` and
/// `/v1/invocations/ID/retry` are the same outbox), answering with its record.
pub async fn retry(
    host: &App,
    principal: &Principal,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    allowed(host, principal, Action::Write, id).await?;
    let event = host.registry.retry_event(id).await?;
    match event.lane() {
        Lane::Events => host.events.deliveries.notify_one(),
        Lane::Invocations => host.lane.wake.notify_one(),
    }
    Ok(match crate::api::InvocationView::of(event.clone()) {
        Some(invocation) => json(StatusCode::OK, &invocation),
        None => json(StatusCode::OK, &EventView::from(event)),
    })
}

/// Checks that `principal` may do `action` to event `id`, whose namespace is known only
/// once it is read.
pub(super) async fn allowed(
    host: &App,
    principal: &Principal,
    action: Action,
    id: &str,
) -> Result<(), ApiError> {
    if let Principal::Key { .. } = principal {
        let event = host.registry.event(id).await?;
        principal
            .check(action, Some(namespace_of(&event.function)))
            .map_err(|denied| ApiError::forbidden(denied.0))?;
    }
    Ok(())
}
