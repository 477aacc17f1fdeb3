//! The lane's loop: claims due invocations while it has free slots (none of functions
//! already at their lane limit), runs each as background work, and records every attempt.
//!
//! An attempt that answers 2xx succeeds: its response goes to the `on_success`
//! destination, and its stored body is deleted. 5xx, 408, 429, timeouts and traps are
//! retried after the policy's backoff until its attempts run out; any other 4xx fails at
//! once (retrying cannot help). A failed invocation is dead-lettered (`failed`, kept with
//! its body for `retry`) and its record sent to `on_failure`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use http::{HeaderMap, HeaderName, HeaderValue, Request, header};
use http_body_util::{BodyExt, Limited};

use super::AsyncLane;
use super::destination::{self, Outcome as Sent};
use crate::engine::fairness::Work;
use crate::invocation::{Admit, Call, Caller, RequestBody};
use crate::model::{
    AsyncPolicy, EventRecord, EventStatus, InvocationDetail, InvocationResult, Lane, Settlement,
    now_ms,
};
use crate::routing::Resolved;
use crate::shutdown::Stop;

/// Invocations claimed per pass at most.
const BATCH: u32 = 32;
/// How soon an invocation whose function had no free lane slot is tried again (not counted
/// as an attempt).
const BUSY_DELAY_MS: i64 = 250;
/// How soon an invocation whose stored body cannot be read (the object store is down) is
/// tried again (not counted as an attempt: an outage must not dead-letter invocations).
const OUTAGE_DELAY_MS: i64 = 2_000;
/// How often the outbox is polled when nothing wakes the lane (retries coming due).
const POLL: Duration = Duration::from_millis(250);
/// How long shutdown waits for running invocations; the rest are stopped and run again
/// later (their records still say `running`: the next start, or another node once the
/// lease lapses, takes them over).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The id of the invocation, and which attempt this is, as the function sees them.
const INVOCATION_ID: HeaderName = HeaderName::from_static("fnhost-invocation-id");
const ATTEMPT: HeaderName = HeaderName::from_static("fnhost-attempt");

/// Runs the lane until shutdown.
pub async fn run(lane: Arc<AsyncLane>, mut stop: Stop) {
    let mut running = tokio::task::JoinSet::new();
    while !stop.is_stopped() {
        while running.try_join_next().is_some() {}
        // Every attempt under way, admitted or not yet, so a pass never claims past the limit.
        let free = lane
            .options
            .concurrency
            .saturating_sub(running.len() as u32)
            .min(BATCH);
        let mut claimed = Vec::new();
        if free > 0 {
            match lane
                .events
                .registry
                .claim_due_events(
                    free,
                    lane.events.lease_ms(),
                    Lane::Invocations,
                    lane.busy_functions(),
                )
                .await
            {
                Ok(events) => claimed = events,
                Err(e) if e.outage().is_some() => {}
                Err(e) => {
                    tracing::error!(error = %e, "could not read the invocation queue; retrying")
                }
            }
        }
        let full = free > 0 && claimed.len() as u32 == free;
        lane.events
            .in_hand
            .lock()
            .unwrap()
            .extend(claimed.iter().map(|e| e.id.clone()));
        for event in claimed {
            let lane = lane.clone();
            running.spawn(async move {
                // Given up however the attempt ends (a panic included), so its lease lapses
                // and the invocation runs again rather than being renewed for ever.
                let _in_hand = InHand(lane.clone(), event.id.clone());
                attempt(&lane, event).await;
            });
        }
        if !full {
            tokio::select! {
                () = stop.stopped() => {}
                () = lane.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, async {
        while running.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            invocations = running.len(),
            "stopping asynchronous invocations still running; they will run again"
        );
        running.shutdown().await;
    }
}

/// An invocation this node holds: its lease is renewed until this is dropped.
struct InHand(Arc<AsyncLane>, String);

impl Drop for InHand {
    fn drop(&mut self) {
        let lane = &self.0;
        lane.events
            .in_hand
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
        lane.wake.notify_one();
    }
}

/// How one attempt ended.
enum Outcome {
    Succeeded(InvocationResult),
    /// No free lane slot for the function; try again soon, without counting an attempt.
    Busy,
    /// A part the run needs is down; try again once it may be back, without counting an
    /// attempt.
    Waiting(String),
    /// Worth retrying (5xx, 408, 429, timeout, store trouble).
    Retry {
        reason: String,
        result: Option<InvocationResult>,
        policy: AsyncPolicy,
    },
    /// Retrying cannot help (a 4xx, or it can no longer be routed).
    Refused {
        reason: String,
        result: Option<InvocationResult>,
        policy: Option<AsyncPolicy>,
    },
}

/// Runs one attempt of `event` and records how it went.
async fn attempt(lane: &Arc<AsyncLane>, event: EventRecord) {
    let Some(mut detail) = event.invocation.clone() else {
        return;
    };
    let attempt = event.attempts + 1;
    let now = now_ms();
    let (status, attempts, next, error, policy) =
        match run_once(lane, &event, &detail, attempt).await {
            Outcome::Busy => (
                EventStatus::Pending,
                event.attempts,
                now + BUSY_DELAY_MS,
                None,
                None,
            ),
            Outcome::Waiting(reason) => (
                EventStatus::Pending,
                event.attempts,
                now + OUTAGE_DELAY_MS,
                Some(reason),
                None,
            ),
            Outcome::Succeeded(result) => {
                detail.result = Some(result);
                (EventStatus::Delivered, attempt, now, None, None)
            }
            Outcome::Retry {
                reason,
                result,
                policy,
            } if attempt < detail.max_attempts => {
                detail.result = result;
                let delay = i64::try_from(policy.delay_after(attempt)).unwrap_or(i64::MAX / 2);
                (
                    EventStatus::Pending,
                    attempt,
                    now + delay,
                    Some(reason),
                    None,
                )
            }
            Outcome::Retry {
                reason,
                result,
                policy,
            } => {
                detail.result = result;
                let reason = format!("gave up after {attempt} attempts; the last: {reason}");
                (
                    EventStatus::Failed,
                    attempt,
                    now,
                    Some(reason),
                    Some(policy),
                )
            }
            Outcome::Refused {
                reason,
                result,
                policy,
            } => {
                detail.result = result;
                (EventStatus::Failed, attempt, now, Some(reason), policy)
            }
        };
    let outcome = match status {
        EventStatus::Delivered => Some(0),
        EventStatus::Pending if error.is_some() && attempts == attempt => Some(1),
        EventStatus::Failed => Some(2),
        _ => None,
    };
    if let Some(i) = outcome {
        lane.outcomes[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    match status {
        EventStatus::Failed => tracing::warn!(
            invocation = %event.id,
            function = %event.function,
            error = error.as_deref().unwrap_or(""),
            "asynchronous invocation dead-lettered"
        ),
        // Waiting on an outage is logged once, by the dependencies.
        EventStatus::Pending if error.is_some() && attempts == attempt => tracing::info!(
            invocation = %event.id,
            function = %event.function,
            attempt,
            error = error.as_deref().unwrap_or(""),
            "asynchronous invocation failed; will retry"
        ),
        _ => {}
    }
    // The failure destination is told before the record says `failed`: if the host stops
    // in between, the invocation runs again rather than its failure going unreported.
    if status == EventStatus::Failed
        && let Some(target) = policy.as_ref().and_then(|p| p.on_failure.as_ref())
    {
        let record = destination::failure_record(&event, &detail, attempts, error.as_deref());
        match destination::send_failure(lane, &event, target, record).await {
            Ok(sent) => {
                if let Some(result) = &mut detail.result {
                    result.destination = Some(sent);
                }
            }
            Err(e) => tracing::error!(
                invocation = %event.id,
                destination = %target,
                error = %e,
                "could not send a dead-lettered invocation's record to its destination"
            ),
        }
    }
    let settled = Settlement {
        status,
        attempts,
        next_attempt_ms: next,
        error,
        invocation: Some(detail.clone()),
    };
    if let Err(e) = lane
        .events
        .registry
        .settle_event(event.id.clone(), settled)
        .await
    {
        // It stays `running` until the next start, which runs it again (at least once).
        tracing::error!(invocation = %event.id, error = %e, "could not record an invocation's attempt");
        return;
    }
    if status == EventStatus::Delivered
        && let Some(location) = &detail.payload
        && let Err(e) = lane.events.buckets.delete_payload(location).await
    {
        tracing::warn!(invocation = %event.id, error = %e, "could not delete a finished invocation's request body");
    }
}

async fn run_once(
    lane: &Arc<AsyncLane>,
    event: &EventRecord,
    detail: &InvocationDetail,
    attempt: u32,
) -> Outcome {
    let request_headers = match stored_headers(detail) {
        Ok(headers) => headers,
        Err(reason) => {
            return Outcome::Refused {
                reason,
                result: None,
                policy: None,
            };
        }
    };
    let events = &lane.events;
    let deployment = match events
        .router
        .snapshot()
        .resolve(&event.function, event.target.as_deref())
    {
        Ok(Resolved::Deployment(deployment)) => deployment.clone(),
        Ok(Resolved::Alias(alias)) => alias.choose(&request_headers).clone(),
        Err(e) => {
            return Outcome::Refused {
                reason: format!("the invocation cannot be routed: {e}"),
                result: None,
                policy: None,
            };
        }
    };
    let config = &deployment.config;
    let policy = config.async_policy.clone();
    let retry = |reason: String, result: Option<InvocationResult>| Outcome::Retry {
        reason,
        result,
        policy: policy.clone(),
    };
    lane.limits
        .insert(deployment.function.clone(), policy.concurrency);
    let Some(permit) = events
        .invoker
        .admission
        .try_admit_async(&deployment.function, policy.concurrency)
    else {
        return Outcome::Busy;
    };
    let body = match &detail.payload {
        None => (0, RequestBody::Buffered(None)),
        Some(location) => match events
            .buckets
            .get_payload(location, config.max_request_body_bytes)
            .await
        {
            Ok((size, stream)) => {
                let frames = stream.map(|chunk| {
                    chunk.map(http_body::Frame::data).map_err(|e| {
                        wasmtime_wasi_http::Error::InternalError(Some(format!(
                            "reading the stored request body: {e}"
                        )))
                    })
                });
                let body = http_body_util::StreamBody::new(frames);
                (size, RequestBody::Boxed(BodyExt::boxed_unsync(body)))
            }
            Err(e @ crate::events::buckets::ObjectError::TooLarge(_)) => {
                return Outcome::Refused {
                    reason: format!("the request body is now too large: {e}"),
                    result: None,
                    policy: Some(policy),
                };
            }
            Err(e @ crate::events::buckets::ObjectError::Unavailable(_)) => {
                return Outcome::Waiting(format!("waiting to read the request body: {e}"));
            }
            Err(e) => return retry(format!("reading the request body: {e}"), None),
        },
    };
    let request = match build_request(detail, request_headers, &event.id, attempt, body) {
        Ok(request) => request,
        Err(reason) => {
            return Outcome::Refused {
                reason,
                result: None,
                policy: Some(policy),
            };
        }
    };
    let started = Instant::now();
    let call = Call {
        deployment: &deployment,
        alias: None,
        caller: Caller::Event,
        admit: Admit::Held(permit),
        work: Work::Background,
        id: &event.id,
    };
    let result = |status: u16, response_bytes: u64| InvocationResult {
        status,
        version: deployment.label.to_string(),
        duration_ms: started.elapsed().as_millis() as u64,
        response_bytes,
        destination: None,
    };
    let response = match events.invoker.invoke(call, request).await {
        Ok(response) => response,
        Err(error) => {
            let failure = error.failure;
            let status = failure.status();
            let reason = format!("{failure} ({status})");
            return classify(status, reason, result(status.as_u16(), 0), &policy);
        }
    };
    let status = response.status();
    let headers = response.headers().clone();
    let limit = usize::try_from(config.max_response_body_bytes).unwrap_or(usize::MAX);
    let body = match Limited::new(response.into_body(), limit).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return retry(
                format!("reading the function's answer: {e}"),
                Some(result(status.as_u16(), 0)),
            );
        }
    };
    let mut outcome = result(status.as_u16(), body.len() as u64);
    if !status.is_success() {
        let excerpt = String::from_utf8_lossy(&body[..body.len().min(500)])
            .trim()
            .to_string();
        let reason = format!("the function answered {status}: {excerpt}");
        return classify(status, reason, outcome, &policy);
    }
    if let Some(target) = &policy.on_success {
        match destination::send_success(lane, event, &deployment, target, &headers, body).await {
            Sent::Sent(place) => outcome.destination = Some(place),
            Sent::Retry(reason) => return retry(reason, Some(outcome)),
            Sent::Refused(reason) => {
                return Outcome::Refused {
                    reason,
                    result: Some(outcome),
                    policy: Some(policy),
                };
            }
        }
    }
    Outcome::Succeeded(outcome)
}

/// A failed attempt by status: retried when a later attempt may succeed.
fn classify(
    status: http::StatusCode,
    reason: String,
    result: InvocationResult,
    policy: &AsyncPolicy,
) -> Outcome {
    match status.as_u16() {
        408 | 429 | 500..=599 => Outcome::Retry {
            reason,
            result: Some(result),
            policy: policy.clone(),
        },
        _ => Outcome::Refused {
            reason,
            result: Some(result),
            policy: Some(policy.clone()),
        },
    }
}

fn stored_headers(detail: &InvocationDetail) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &detail.request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("stored header {name:?}: {e}"))?;
        let value =
            HeaderValue::from_str(value).map_err(|e| format!("stored header {name}: {e}"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// The stored request as the function receives it, marked with the invocation's id and the
/// attempt's number.
fn build_request(
    detail: &InvocationDetail,
    mut headers: HeaderMap,
    id: &str,
    attempt: u32,
    (size, body): (u64, RequestBody),
) -> Result<Request<RequestBody>, String> {
    let method = http::Method::from_bytes(detail.request.method.as_bytes())
        .map_err(|e| format!("stored method {:?}: {e}", detail.request.method))?;
    let mut request = Request::builder()
        .method(method)
        .uri(&detail.request.path)
        .body(body)
        .map_err(|e| format!("stored request: {e}"))?;
    headers.insert(
        INVOCATION_ID,
        HeaderValue::from_str(id).map_err(|e| e.to_string())?,
    );
    headers.insert(ATTEMPT, HeaderValue::from(attempt));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers.remove(header::TRANSFER_ENCODING);
    if !headers.contains_key(header::HOST) {
        headers.insert(header::HOST, HeaderValue::from_static("localhost"));
    }
    *request.headers_mut() = headers;
    Ok(request)
}
