//! Accepting an asynchronous invocation over HTTP, for both planes: the data plane's
//! `fnhost-invocation: async` and the admin API's `POST /v1/functions/NAME/invocations`
//! answer the same 202 with the same body, and fail with the same statuses.

use http::{HeaderValue, Request, Response, StatusCode, header};

use super::body::{Body, json};
use super::error::ApiError;
use crate::api::InvocationAccepted;
use crate::app::App;
use crate::async_lane::{AcceptError, EnqueueError};
use crate::events::buckets::ObjectError;
use crate::invocation::RequestBody;
use crate::routing::Deployment;
use crate::store::StoreError;

/// Queues `request` for `deployment` and answers 202 with the invocation's id (also in
/// `fnhost-invocation-id`, and its admin URL in `Location`).
pub async fn accept(
    host: &App,
    deployment: &Deployment,
    request: Request<RequestBody>,
) -> Result<Response<Body>, ApiError> {
    let event = host
        .lane
        .accept(deployment, request)
        .await
        .map_err(accept_error)?;
    let location = format!("/v1/invocations/{}", event.id);
    let mut response = json(
        StatusCode::ACCEPTED,
        &InvocationAccepted {
            id: event.id.clone(),
            function: event.function,
            version: event.target,
            status: event.status,
            location: location.clone(),
        },
    );
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&event.id) {
        headers.insert("fnhost-invocation-id", id);
    }
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, location);
    }
    Ok(response)
}

fn accept_error(error: AcceptError) -> ApiError {
    match error {
        AcceptError::BadRequest(message) => ApiError::bad_request(message),
        AcceptError::Enqueue(EnqueueError::TooLarge(limit)) => {
            let mut error = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body exceeds this function's limit of {limit} bytes"),
            );
            error.close_connection = true;
            error
        }
        AcceptError::Enqueue(EnqueueError::Payload(ObjectError::Upload(message))) => {
            let mut error = ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", message);
            error.close_connection = true;
            error
        }
        AcceptError::Enqueue(EnqueueError::Store(StoreError::Limit(message))) => {
            let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", message);
            error.retry_after_secs = Some(5);
            error
        }
        AcceptError::Enqueue(EnqueueError::Payload(
            e @ (ObjectError::DiskFull(_) | ObjectError::Unavailable(_)),
        )) => ApiError::from(e),
        AcceptError::Enqueue(EnqueueError::Store(e)) => {
            let outage = e.outage().is_some();
            let error = ApiError::from(e);
            if error.status.is_server_error() && !outage {
                tracing::error!(message = %error.message, "could not queue an asynchronous invocation");
            }
            error
        }
        AcceptError::Enqueue(e @ EnqueueError::Payload(_)) => {
            let error = ApiError::internal(format!("the invocation could not be stored: {e}"));
            tracing::error!(error_id = error.error_id.as_deref().unwrap_or(""), error = %e, "could not store an asynchronous invocation's body");
            error
        }
    }
}
