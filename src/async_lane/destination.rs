//! Where an invocation's outcome goes: a bucket object (the response on success, under the
//! key the function names in `fnhost-output-key` or the invocation id; a JSON record of the
//! failure as `ID.json`), or another function, as a CloudEvent queued as an asynchronous
//! invocation of its own (`fnhost.invocation.succeeded` / `.failed`, `ce-subject` the
//! invocation id), with that function's retries and dead letters.
//!
//! Destinations lie in the invoking function's namespace (checked when the config is set
//! and again here). Each hop counts, as for triggers' output buckets, so a chain of
//! destinations that loops stops after `MAX_HOPS`.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, header};

use super::{AsyncLane, NewInvocation};
use crate::events::buckets::check_key;
use crate::model::{
    Destination, EventRecord, InvocationDetail, MAX_HOPS, StoredRequest, namespace_of,
};
use crate::routing::{Deployment, Resolved};

pub(super) enum Outcome {
    /// Where it went: `bucket:NAME/KEY` or `function:NAME (ID)`.
    Sent(String),
    Retry(String),
    Refused(String),
}

/// Sends a successful attempt's response to `target`.
pub(super) async fn send_success(
    lane: &Arc<AsyncLane>,
    event: &EventRecord,
    deployment: &Deployment,
    target: &Destination,
    headers: &HeaderMap,
    body: Bytes,
) -> Outcome {
    if target.namespace() != namespace_of(&deployment.function) {
        return Outcome::Refused(format!(
            "destination {target} is outside the function's namespace"
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match target {
        Destination::Bucket(bucket) => {
            let key = headers
                .get(crate::events::OUTPUT_KEY)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(&event.id)
                .to_string();
            if let Err(e) = check_key(&key) {
                return Outcome::Refused(format!("the function named an invalid output key: {e}"));
            }
            match lane
                .events
                .write_output(bucket, &key, body, content_type, event.hops + 1)
                .await
            {
                Ok(()) => Outcome::Sent(format!("bucket:{bucket}/{key}")),
                Err(e) => Outcome::Retry(e),
            }
        }
        Destination::Function { name, qualifier } => {
            let cloud_event = CloudEvent {
                kind: "fnhost.invocation.succeeded",
                content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()),
                body,
            };
            match queue_for(lane, event, name, qualifier.as_deref(), cloud_event).await {
                Ok(id) => Outcome::Sent(format!("function:{name} ({id})")),
                Err(Refusal::Permanent(e)) => Outcome::Refused(e),
                Err(Refusal::Transient(e)) => Outcome::Retry(e),
            }
        }
    }
}

/// The JSON record of a dead-lettered invocation its failure destination receives.
pub(super) fn failure_record(
    event: &EventRecord,
    detail: &InvocationDetail,
    attempts: u32,
    error: Option<&str>,
) -> Bytes {
    let record = serde_json::json!({
        "id": event.id,
        "function": event.function,
        "target": event.target,
        "attempts": attempts,
        "error": error,
        "status": detail.result.as_ref().map(|r| r.status),
        "version": detail.result.as_ref().map(|r| r.version.clone()),
        "request": {
            "method": detail.request.method,
            "path": detail.request.path,
            "body_bytes": detail.body_bytes,
        },
        "created_ms": event.created_ms,
    });
    Bytes::from(serde_json::to_vec_pretty(&record).expect("JSON values serialize"))
}

/// Sends a dead-lettered invocation's record to `target`; returns where it went.
pub(super) async fn send_failure(
    lane: &Arc<AsyncLane>,
    event: &EventRecord,
    target: &Destination,
    record: Bytes,
) -> Result<String, String> {
    if target.namespace() != namespace_of(&event.function) {
        return Err(format!(
            "destination {target} is outside the function's namespace"
        ));
    }
    match target {
        Destination::Bucket(bucket) => {
            let key = format!("{}.json", event.id);
            lane.events
                .write_output(
                    bucket,
                    &key,
                    record,
                    Some("application/json".into()),
                    event.hops + 1,
                )
                .await?;
            Ok(format!("bucket:{bucket}/{key}"))
        }
        Destination::Function { name, qualifier } => {
            let cloud_event = CloudEvent {
                kind: "fnhost.invocation.failed",
                content_type: "application/json".into(),
                body: record,
            };
            let id = queue_for(lane, event, name, qualifier.as_deref(), cloud_event)
                .await
                .map_err(|e| match e {
                    Refusal::Permanent(e) | Refusal::Transient(e) => e,
                })?;
            Ok(format!("function:{name} ({id})"))
        }
    }
}

struct CloudEvent {
    kind: &'static str,
    content_type: String,
    body: Bytes,
}

enum Refusal {
    Permanent(String),
    Transient(String),
}

/// Queues `cloud_event` (about `event`) as an asynchronous invocation of `name`.
async fn queue_for(
    lane: &Arc<AsyncLane>,
    event: &EventRecord,
    name: &str,
    qualifier: Option<&str>,
    cloud_event: CloudEvent,
) -> Result<String, Refusal> {
    let hops = event.hops + 1;
    if hops > MAX_HOPS {
        return Err(Refusal::Permanent(format!(
            "{hops} invocations chained through destinations; not sending to {name} (a loop?)"
        )));
    }
    let (max_attempts, body_limit) = match lane.events.router.snapshot().resolve(name, qualifier) {
        Ok(Resolved::Deployment(deployment)) => limits_of(deployment),
        Ok(Resolved::Alias(alias)) => limits_of(alias.choose(&HeaderMap::new())),
        Err(e) => {
            return Err(Refusal::Permanent(format!(
                "destination function:{name}: {e}"
            )));
        }
    };
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let suffix = cloud_event.kind.rsplit('.').next().unwrap_or("result");
    let headers = [
        ("ce-specversion", "1.0".to_string()),
        ("ce-id", format!("{}-{suffix}", event.id)),
        ("ce-type", cloud_event.kind.to_string()),
        ("ce-source", format!("/functions/{}", event.function)),
        ("ce-subject", event.id.clone()),
        ("ce-time", time),
        ("content-type", cloud_event.content_type),
    ];
    let new = NewInvocation {
        function: name.to_string(),
        target: qualifier.map(str::to_string),
        request: StoredRequest {
            method: "POST".into(),
            path: "/".into(),
            headers: headers
                .into_iter()
                .map(|(name, value)| (name.to_string(), value))
                .collect(),
        },
        max_attempts,
        body_limit,
        hops,
    };
    let body = futures::stream::iter([Ok::<_, std::convert::Infallible>(cloud_event.body)]);
    match lane.enqueue(new, Some(body)).await {
        Ok(queued) => Ok(queued.id),
        Err(super::EnqueueError::TooLarge(limit)) => Err(Refusal::Permanent(format!(
            "the result is larger than function {name}'s request-body limit of {limit} bytes"
        ))),
        Err(e) => Err(Refusal::Transient(format!(
            "queueing for function {name}: {e}"
        ))),
    }
}

/// Attempts in all and the request-body limit of a deployment's async policy and config.
pub(super) fn limits_of(deployment: &Deployment) -> (u32, u64) {
    let config = &deployment.config;
    (
        config.async_policy.retries + 1,
        config.max_request_body_bytes,
    )
}
