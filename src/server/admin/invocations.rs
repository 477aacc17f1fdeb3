//! Asynchronous invocations over the admin API: `POST /v1/functions/NAME/invocations`
//! queues one (`?qualifier=` a version or alias, `?path=` the path the function sees; the
//! body and its `content-type` are the request's), `GET .../invocations?status=` lists a
//! function's, `GET /v1/invocations/ID` shows one, `POST /v1/invocations/ID/retry` sends a
//! dead-lettered one again.

use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::triggers::{allowed, listing};
use crate::api::{InvocationList, InvocationView};
use crate::app::App;
use crate::invocation::RequestBody;
use crate::model::{Action, Lane, Principal};
use crate::routing::Resolved;
use crate::server::body::{Body, json};
use crate::server::error::ApiError;

pub async fn queue(
    host: &App,
    function: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (mut qualifier, mut path) = (None, "/".to_string());
    for (name, value) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "qualifier" => qualifier = Some(value.into_owned()),
            "path" if value.starts_with('/') => path = value.into_owned(),
            "path" => {
                return Err(ApiError::bad_request(format!(
                    "path={value:?}: give the path the function sees, starting with /"
                )));
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}; use qualifier or path"
                )));
            }
        }
    }
    // Only the body's type goes to the function: the rest of this request's head (the
    // admin credential above all) is the admin API's.
    let mut headers = HeaderMap::new();
    if let Some(content_type) = request.headers().get(header::CONTENT_TYPE) {
        headers.insert(header::CONTENT_TYPE, content_type.clone());
    }
    let table = host.router.snapshot();
    let deployment = match table.resolve(function, qualifier.as_deref()) {
        Ok(Resolved::Deployment(deployment)) => deployment.clone(),
        Ok(Resolved::Alias(alias)) => alias.choose(&headers).clone(),
        Err(e) => return Err(ApiError::not_found(e.to_string())),
    };
    let (parts, body) = request.into_parts();
    let mut queued = Request::builder()
        .method(Method::POST)
        .uri(&path)
        .body(RequestBody::Streaming(body))
        .map_err(|e| ApiError::bad_request(format!("path={path:?}: {e}")))?;
    if let Some(length) = parts.headers.get(header::CONTENT_LENGTH) {
        headers.insert(header::CONTENT_LENGTH, length.clone());
    }
    *queued.headers_mut() = headers;
    crate::server::asynchronous::accept(host, &deployment, queued).await
}

pub async fn list(
    host: &App,
    function: &str,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    super::ensure_function(host, function).await?;
    let (status, limit) = listing(request)?;
    let events = host
        .registry
        .events(function, Lane::Invocations, status, limit)
        .await?;
    Ok(json(
        StatusCode::OK,
        &InvocationList {
            function: function.to_string(),
            invocations: events.into_iter().filter_map(InvocationView::of).collect(),
        },
    ))
}

pub async fn get(host: &App, principal: &Principal, id: &str) -> Result<Response<Body>, ApiError> {
    allowed(host, principal, Action::Read, id).await?;
    let event = host.registry.event(id).await?;
    let invocation = InvocationView::of(event).ok_or_else(|| {
        ApiError::not_found(format!(
            "{id} is a trigger's event, not an invocation; see fnhost events"
        ))
    })?;
    Ok(json(StatusCode::OK, &invocation))
}
