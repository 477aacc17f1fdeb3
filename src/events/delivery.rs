//! Event delivery: events queued in the outbox are claimed in batches and POSTed to their
//! function as CloudEvents 1.0 in binary mode (`ce-id`, `ce-type`, `ce-source`,
//! `ce-subject`, `ce-time` headers; the object as the body). A 2xx answer's body goes to the
//! trigger's output bucket, which may fire further triggers.
//!
//! Delivery is at least once. 5xx answers, timeouts and other failures are retried with
//! exponential backoff; after [`MAX_ATTEMPTS`] the event is dead-lettered with its last
//! error, as is an event the function refuses (4xx: retrying cannot help). Deliveries use at
//! most half of a function's concurrency limit and only free slots, so events never starve
//! HTTP traffic; a busy function's events simply wait.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, header};
use http_body_util::{BodyExt, Limited};

use super::Events;
use super::buckets::{ObjectError, check_key};
use crate::engine::fairness::Work;
use crate::invocation::{Admit, Call, Caller, RequestBody};
use crate::model::{EventRecord, EventStatus, Lane, Settlement, now_ms};
use crate::routing::Resolved;
use crate::shutdown::Stop;

/// Attempts before an event is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 5;
/// Events claimed per pass, and delivered at once host-wide.
const BATCH: u32 = 32;
const CONCURRENCY: usize = 8;
/// Retry delays double from this, up to the cap.
const BACKOFF_BASE_MS: u64 = 500;
const BACKOFF_MAX_MS: u64 = 60_000;
/// How soon an event whose function was busy is tried again (not counted as an attempt).
const BUSY_DELAY_MS: i64 = 200;
/// How long an event whose object cannot be read (the object store is down) waits before
/// it is tried again, without counting an attempt.
const OUTAGE_DELAY_MS: i64 = 2_000;
/// How often the outbox is polled when nothing wakes the loop (retries coming due).
const POLL: Duration = Duration::from_millis(200);

/// Delivers events until shutdown, then waits for the deliveries under way (an event cut
/// off mid-delivery would only be sent again at the next start).
pub async fn run(events: Arc<Events>, mut stop: Stop) {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    while !stop.is_stopped() {
        let claimed = match events
            .registry
            .claim_due_events(BATCH, events.lease_ms(), Lane::Events, Vec::new())
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                if e.outage().is_none() {
                    tracing::error!(error = %e, "could not read the event outbox; retrying");
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        let full = claimed.len() as u32 == BATCH;
        events
            .in_hand
            .lock()
            .unwrap()
            .extend(claimed.iter().map(|e| e.id.clone()));
        for event in claimed {
            let slot = slots.clone().acquire_owned().await.expect("never closed");
            let events = events.clone();
            tokio::spawn(async move {
                let id = event.id.clone();
                deliver(&events, event).await;
                events.in_hand.lock().unwrap().remove(&id);
                drop(slot);
            });
        }
        if !full {
            tokio::select! {
                () = stop.stopped() => {}
                () = events.deliveries.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
    // Every slot back means every delivery under way has settled.
    let _ = slots.acquire_many(CONCURRENCY as u32).await;
}

/// Renews the leases of the events this node holds, three times per lease, until shutdown.
pub async fn renew_leases(events: Arc<Events>, mut stop: Stop) {
    let mut ticker = tokio::time::interval(events.lease / 3);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.stopped() => return,
        }
        let ids: Vec<String> = events.in_hand.lock().unwrap().iter().cloned().collect();
        if let Err(e) = events
            .registry
            .renew_event_leases(ids, events.lease_ms())
            .await
            && e.outage().is_none()
        {
            tracing::warn!(error = %e, "could not renew event leases; other nodes may deliver them again");
        }
    }
}

/// How often delivered events past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Deletes delivered events older than `retention` at start and every [`PRUNE_EVERY`]
/// until shutdown, so the outbox does not grow for ever. Dead letters stay.
pub async fn prune(events: Arc<Events>, retention: Duration, mut stop: Stop) {
    loop {
        match events.registry.prune_delivered_events(retention).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(
                events = pruned,
                "deleted delivered events past their retention"
            ),
            Err(e) if e.outage().is_some() => {}
            Err(e) => tracing::warn!(error = %e, "could not prune delivered events"),
        }
        tokio::select! {
            () = stop.stopped() => return,
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

/// How one attempt ended.
enum Outcome {
    Delivered,
    /// The function had no free slot; try again soon, without counting an attempt.
    Busy,
    /// A part the delivery needs is down; try again once it may be back, without counting
    /// an attempt (an outage must not dead-letter events).
    Waiting(String),
    /// Worth retrying (5xx, timeout, store trouble).
    Retry(String),
    /// Retrying cannot help (the function refused the event, or it can no longer be sent).
    Refused(String),
}

async fn deliver(events: &Arc<Events>, event: EventRecord) {
    let attempt = event.attempts + 1;
    let now = now_ms();
    let (status, attempts, next, error) = match attempt_delivery(events, &event, attempt).await {
        Outcome::Delivered => (EventStatus::Delivered, attempt, now, None),
        Outcome::Busy => (
            EventStatus::Pending,
            event.attempts,
            now + BUSY_DELAY_MS,
            None,
        ),
        Outcome::Waiting(reason) => (
            EventStatus::Pending,
            event.attempts,
            now + OUTAGE_DELAY_MS,
            Some(reason),
        ),
        Outcome::Refused(reason) => (EventStatus::Failed, attempt, now, Some(reason)),
        Outcome::Retry(reason) if attempt >= MAX_ATTEMPTS => (
            EventStatus::Failed,
            attempt,
            now,
            Some(format!(
                "gave up after {attempt} attempts; the last: {reason}"
            )),
        ),
        Outcome::Retry(reason) => (
            EventStatus::Pending,
            attempt,
            now + backoff(attempt),
            Some(reason),
        ),
    };
    match status {
        EventStatus::Failed => tracing::warn!(
            event = %event.id,
            function = %event.function,
            error = error.as_deref().unwrap_or(""),
            "event dead-lettered"
        ),
        // Waiting on an outage is logged once, by the dependencies.
        EventStatus::Pending if error.is_some() && attempts == attempt => tracing::info!(
            event = %event.id,
            function = %event.function,
            attempt,
            error = error.as_deref().unwrap_or(""),
            "event delivery failed; will retry"
        ),
        _ => {}
    }
    if let Err(e) = events
        .registry
        .settle_event(
            event.id.clone(),
            Settlement {
                status,
                attempts,
                next_attempt_ms: next,
                error,
                invocation: None,
            },
        )
        .await
    {
        // It stays `running` until the next start, which sends it again (at least once).
        tracing::error!(event = %event.id, error = %e, "could not record an event's delivery");
    }
}

/// `BASE * 2^(attempt-1)`, capped, with up to 20 % jitter so retries of a burst spread out.
fn backoff(attempt: u32) -> i64 {
    crate::model::backoff_ms(BACKOFF_BASE_MS, BACKOFF_MAX_MS, attempt) as i64
}

async fn attempt_delivery(events: &Arc<Events>, event: &EventRecord, attempt: u32) -> Outcome {
    let deployment = match events
        .router
        .snapshot()
        .resolve(&event.function, event.target.as_deref())
    {
        Ok(Resolved::Deployment(deployment)) => deployment.clone(),
        Ok(Resolved::Alias(alias)) => alias.choose(&HeaderMap::new()).clone(),
        Err(e) => return Outcome::Refused(format!("the event cannot be routed: {e}")),
    };
    let config = &deployment.config;
    let Some(permit) = events
        .invoker
        .try_admit(&deployment, (config.max_concurrency / 2).max(1))
    else {
        return Outcome::Busy;
    };
    let body = match (&event.bucket, &event.subject) {
        (Some(bucket), Some(key)) => {
            match events
                .buckets
                .get_bytes(bucket, key, config.max_request_body_bytes)
                .await
            {
                Ok(bytes) => bytes,
                Err(e @ (ObjectError::NotFound { .. } | ObjectError::TooLarge(_))) => {
                    return Outcome::Refused(format!("the object cannot be delivered: {e}"));
                }
                Err(e @ ObjectError::Unavailable(_)) => {
                    return Outcome::Waiting(format!("waiting to read the object: {e}"));
                }
                Err(e) => return Outcome::Retry(format!("reading the object: {e}")),
            }
        }
        _ => Bytes::new(),
    };
    let request = match cloud_event(event, attempt, body) {
        Ok(request) => request,
        Err(e) => return Outcome::Refused(e),
    };
    let call = Call {
        deployment: &deployment,
        alias: None,
        caller: Caller::Event,
        admit: Admit::Held(permit),
        work: Work::Short(None),
        id: &event.id,
    };
    let response = match events.invoker.invoke(call, request).await {
        Ok(response) => response,
        Err(error) => {
            let failure = error.failure;
            return Outcome::Retry(format!("{failure} ({})", failure.status()));
        }
    };
    let status = response.status();
    let output_key = response
        .headers()
        .get(super::OUTPUT_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let limit = usize::try_from(config.max_response_body_bytes).unwrap_or(usize::MAX);
    let body = match Limited::new(response.into_body(), limit).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return Outcome::Retry(format!("reading the function's answer: {e}")),
    };
    if !status.is_success() {
        let excerpt = String::from_utf8_lossy(&body[..body.len().min(500)])
            .trim()
            .to_string();
        let text = format!("the function answered {status}: {excerpt}");
        return match status.as_u16() {
            408 | 429 | 500..=599 => Outcome::Retry(text),
            _ => Outcome::Refused(text),
        };
    }
    let (Some(output), Some(key)) = (
        &event.output_bucket,
        output_key.as_ref().or(event.subject.as_ref()),
    ) else {
        return Outcome::Delivered;
    };
    if let Err(e) = check_key(key) {
        return Outcome::Refused(format!("the function named an invalid output key: {e}"));
    }
    match events
        .write_output(output, key, body, content_type, event.hops + 1)
        .await
    {
        Ok(()) => Outcome::Delivered,
        Err(e) => Outcome::Retry(e),
    }
}

/// The event as a CloudEvents 1.0 binary-mode HTTP request.
fn cloud_event(
    event: &EventRecord,
    attempt: u32,
    body: Bytes,
) -> Result<Request<RequestBody>, String> {
    let time = chrono::DateTime::from_timestamp_millis(event.created_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut request = Request::post("/")
        .header(header::HOST, "localhost")
        .header("ce-specversion", "1.0")
        .header("ce-id", &event.id)
        .header("ce-type", &event.event_type)
        .header("ce-source", &event.source)
        .header("ce-time", time)
        .header("fnhost-attempt", attempt)
        .header("fnhost-event-hops", event.hops)
        .header(header::CONTENT_LENGTH, body.len())
        .body(RequestBody::Buffered(Some(body)))
        .map_err(|e| format!("building the request: {e}"))?;
    let headers = request.headers_mut();
    if let Some(subject) = &event.subject {
        let value = HeaderValue::from_bytes(subject.as_bytes())
            .map_err(|_| format!("the key {subject:?} cannot be sent as ce-subject"))?;
        headers.insert("ce-subject", value);
    }
    if let Some(content_type) = event
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        headers.insert(header::CONTENT_TYPE, content_type);
    } else if event.bucket.is_some() {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_a_cap() {
        for (attempt, base) in [(1, 500), (2, 1000), (3, 2000), (8, 60_000), (30, 60_000)] {
            let delay = backoff(attempt);
            assert!(
                (base..=base + base / 5).contains(&delay),
                "{attempt}: {delay}"
            );
        }
    }
}
