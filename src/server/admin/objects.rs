//! Buckets over the admin API: `PUT`, `GET` and `DELETE /v1/buckets/BUCKET/objects/KEY`
//! (streamed both ways) and `GET /v1/buckets/BUCKET/objects?prefix=P` to list. A `PUT` is
//! answered only after the events it fires are durably queued.

use crate::api::{Deleted, DeletedItem, ObjectList, ObjectView, StoredObject};
use crate::app::App;
use crate::events::buckets::{Room, guess_content_type};
use crate::server::body::{Body, BoxError, json};
use crate::server::error::ApiError;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;

pub async fn put(
    host: &App,
    bucket: &str,
    key: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // hyper takes the body's exact size from its content-length.
    let declared = http_body::Body::size_hint(request.body()).exact();
    if declared.is_some_and(|n| n > host.events.buckets.max_object_bytes) {
        let mut error = ApiError::from(crate::events::buckets::ObjectError::TooLarge(
            host.events.buckets.max_object_bytes,
        ));
        error.close_connection = true;
        return Err(error);
    }
    let room = match host.events.room(bucket, key).await {
        Ok(room) => room,
        Err(e) => {
            crate::drain::discard(request.into_body()).await;
            return Err(e.into());
        }
    };
    // A declared length past the quota is refused before the body is read.
    if let Some(declared) = declared
        && let Err(refused) = Room::check(room.as_ref(), declared)
    {
        let mut error = ApiError::from(refused);
        error.close_connection = true;
        return Err(error);
    }
    let stream = request.into_body().into_data_stream();
    let size = host
        .events
        .buckets
        .put(bucket, key, stream, room.as_ref())
        .await?;
    let events = host
        .registry
        .enqueue_object(bucket.to_string(), key.to_string(), content_type, size, 0)
        .await?;
    if !events.is_empty() {
        host.events.deliveries.notify_one();
    }
    Ok(json(
        StatusCode::CREATED,
        &StoredObject {
            bucket: bucket.to_string(),
            key: key.to_string(),
            size,
            events: events.into_iter().map(|e| e.id).collect(),
        },
    ))
}

pub async fn get(host: &App, bucket: &str, key: &str) -> Result<Response<Body>, ApiError> {
    use futures::TryStreamExt;
    let (size, stream) = host.events.buckets.get(bucket, key).await?;
    let frames = stream
        .map_ok(http_body::Frame::data)
        .map_err(|e| Box::new(e) as BoxError);
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(guess_content_type(key)),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    Ok(response)
}

pub async fn delete(host: &App, bucket: &str, key: &str) -> Result<Response<Body>, ApiError> {
    host.events.buckets.delete(bucket, key).await?;
    Ok(json(
        StatusCode::OK,
        &Deleted::new(DeletedItem {
            bucket: Some(bucket.to_string()),
            key: Some(key.to_string()),
            ..Default::default()
        }),
    ))
}

pub async fn list(
    host: &App,
    bucket: &str,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (mut prefix, mut limit) = (String::new(), 1000u32);
    for (name, value) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "prefix" => prefix = value.to_string(),
            "limit" => limit = super::limit_param(&value, 10_000)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}; use prefix or limit"
                )));
            }
        }
    }
    let objects = host
        .events
        .buckets
        .list(bucket, &prefix, limit as usize)
        .await?;
    Ok(json(
        StatusCode::OK,
        &ObjectList {
            bucket: bucket.to_string(),
            objects: objects
                .into_iter()
                .map(|o| ObjectView {
                    key: o.key,
                    size: o.size,
                    last_modified_ms: o.last_modified_ms,
                })
                .collect(),
        },
    ))
}
