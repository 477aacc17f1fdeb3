//! Asynchronous invocations (Lambda's `Event` invocation type): a request sent with
//! `fnhost-invocation: async`, or to `POST /v1/functions/NAME/invocations`, is stored
//! durably and answered at once with 202 and an id; it runs later in a lane of its own, with
//! retries, a dead-letter list, and destinations for its outcome.
//!
//! The queue is the event outbox (`crate::events`): an invocation is an event whose record
//! holds the request's head, with its body in the object store beside the buckets, so it
//! shares the outbox's durability, leases (any node of a fleet runs it; a dead node's are
//! taken over), retry bookkeeping and dead letters. What differs is the lane
//! ([`run`]): claimed by a loop of its own, admitted through gates of its own
//! (`Admission::try_admit_async`: a per-function `concurrency` apart from `max_concurrency`,
//! and a host-wide limit), and run as background work for CPU fairness, so a backlog of
//! heavy jobs never takes the slots or the threads of HTTP requests.

mod destination;
pub mod run;
pub mod sweep;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use dashmap::DashMap;
use futures::Stream;
use tokio::sync::Notify;

use crate::events::Events;
use crate::events::buckets::ObjectError;
use crate::invocation::RequestBody;
use crate::model::{EventRecord, InvocationDetail, LaneStats, StoredRequest, now_ms};
use crate::routing::Deployment;
use crate::store::StoreError;

/// The lane's settings.
#[derive(Clone, Copy, Debug)]
pub struct LaneOptions {
    /// Asynchronous invocations running at once on this node, across all functions.
    pub concurrency: u32,
    /// Most invocations of one function waiting or running; past it, new ones get 429.
    pub max_queued: u32,
    /// A stored body this old with no invocation waiting for it is deleted (see [`sweep`]).
    pub orphan_age: std::time::Duration,
}

/// Why an invocation was not queued.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("the request body exceeds this function's limit of {0} bytes")]
    TooLarge(u64),
    #[error("storing the request body: {0}")]
    Payload(ObjectError),
    #[error(transparent)]
    Store(StoreError),
}

pub struct AsyncLane {
    pub events: Arc<Events>,
    pub options: LaneOptions,
    /// Wakes the lane: an invocation was queued, or one finished and freed a slot.
    pub(crate) wake: Notify,
    /// Each function's lane limit when one of its invocations was last admitted: the loop
    /// claims none of a function already running that many.
    limits: DashMap<Arc<str>, u32>,
    /// Attempts since start: succeeded, to be retried, dead-lettered (for metrics).
    pub(crate) outcomes: [AtomicU64; 3],
}

/// One invocation to queue: its target, head and where it came from.
pub struct NewInvocation {
    pub function: String,
    /// A version or alias; `None` is `$DEFAULT`, resolved when it runs.
    pub target: Option<String>,
    pub request: StoredRequest,
    /// Attempts in all (the function's async retries plus one).
    pub max_attempts: u32,
    /// Largest body accepted (the function's request-body limit).
    pub body_limit: u64,
    /// How many invocations led to this one (destinations chained): stops loops.
    pub hops: u32,
}

impl AsyncLane {
    pub fn new(events: Arc<Events>, options: LaneOptions) -> Self {
        Self {
            events,
            options,
            wake: Notify::new(),
            limits: DashMap::new(),
            outcomes: Default::default(),
        }
    }

    /// Stores the body, then the record, and wakes the lane. Returns the record once both
    /// are durable: acknowledged means it will run (at least once).
    pub async fn enqueue<S, E>(
        &self,
        new: NewInvocation,
        body: Option<S>,
    ) -> Result<EventRecord, EnqueueError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let id = format!("inv-{:032x}", fastrand::u128(..));
        let (payload, body_bytes) = match body {
            None => (None, 0),
            Some(body) => {
                let buckets = &self.events.buckets;
                match buckets.put_payload(&id, body, new.body_limit).await {
                    Ok((location, size)) => (Some(location), size),
                    Err(ObjectError::TooLarge(limit)) => {
                        return Err(EnqueueError::TooLarge(limit));
                    }
                    Err(e) => return Err(EnqueueError::Payload(e)),
                }
            }
        };
        let event = EventRecord::invocation(
            id.clone(),
            new.function,
            new.target,
            InvocationDetail {
                request: new.request,
                payload: payload.clone(),
                body_bytes,
                max_attempts: new.max_attempts,
                result: None,
            },
            new.hops,
            now_ms(),
        );
        if let Err(e) = self
            .events
            .registry
            .enqueue_invocation(event.clone(), self.options.max_queued)
            .await
        {
            if let Some(location) = &payload
                && let Err(e) = self.events.buckets.delete_payload(location).await
            {
                tracing::warn!(invocation = %id, error = %e, "could not delete the body of an invocation that was not queued");
            }
            return Err(EnqueueError::Store(e));
        }
        self.wake.notify_one();
        Ok(event)
    }

    /// What the lane is doing now, for metrics.
    pub fn stats(&self) -> LaneStats {
        let admission = &self.events.invoker.admission;
        let (_, running) = admission.lane_in_flight();
        let count = |i: usize| self.outcomes[i].load(Ordering::Relaxed);
        LaneStats {
            limit: admission.lane_limit(),
            running: running
                .into_iter()
                .map(|(function, n)| (function.to_string(), n))
                .collect(),
            succeeded: count(0),
            retried: count(1),
            dead_lettered: count(2),
        }
    }

    /// Forgets a deleted function's lane limit.
    pub fn forget(&self, function: &str) {
        self.limits.remove(function);
    }

    /// Functions running as many lane invocations as their limit allows now.
    fn busy_functions(&self) -> Vec<String> {
        let (_, running) = self.events.invoker.admission.lane_in_flight();
        running
            .into_iter()
            .filter(|(function, n)| self.limits.get(function).is_some_and(|limit| *n >= *limit))
            .map(|(function, _)| function.to_string())
            .collect()
    }
}

/// Headers not kept with a stored request: about the connection it came on, its framing
/// (recomputed when it runs), or this host's own.
const NOT_STORED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
    INVOCATION_TYPE,
];

/// The header that asks the data plane for an asynchronous invocation (`async`).
pub const INVOCATION_TYPE: &str = "fnhost-invocation";

/// Why a request was not accepted for asynchronous invocation.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Enqueue(#[from] EnqueueError),
}

impl AsyncLane {
    /// Accepts `request` (already addressed to the function's own path) for an asynchronous
    /// invocation of `deployment`, the version a live request would have gone to: the one
    /// way in for the data plane and the admin API.
    pub async fn accept(
        &self,
        deployment: &Deployment,
        request: http::Request<RequestBody>,
    ) -> Result<EventRecord, AcceptError> {
        let config = &deployment.config;
        let (parts, body) = request.into_parts();
        let declared = http_body::Body::size_hint(&body).exact();
        if declared.is_some_and(|n| n > config.max_request_body_bytes) {
            crate::drain::discard(body).await;
            return Err(EnqueueError::TooLarge(config.max_request_body_bytes).into());
        }
        let mut headers = Vec::with_capacity(parts.headers.len());
        for (name, value) in &parts.headers {
            if NOT_STORED.contains(&name.as_str()) {
                continue;
            }
            let Ok(value) = value.to_str() else {
                crate::drain::discard(body).await;
                return Err(AcceptError::BadRequest(format!(
                    "header {name} is not visible ASCII; an asynchronous request's headers are \
                     stored as text: percent-encode the value, or send it in the body"
                )));
            };
            headers.push((name.to_string(), value.to_string()));
        }
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let new = NewInvocation {
            function: deployment.function.to_string(),
            target: Some(deployment.label.to_string()),
            request: StoredRequest {
                method: parts.method.to_string(),
                path,
                headers,
            },
            max_attempts: config.async_policy.retries + 1,
            body_limit: config.max_request_body_bytes,
            hops: 0,
        };
        let body = (declared != Some(0)).then(|| {
            stall_limited(
                http_body_util::BodyDataStream::new(body),
                self.events.invoker.body_timeout,
            )
        });
        Ok(self.enqueue(new, body).await?)
    }
}

/// `body`'s chunks, failing when none arrives for `stall` (a client that sends a head and
/// stops cannot hold the upload open).
fn stall_limited<S, E>(
    body: S,
    stall: std::time::Duration,
) -> impl Stream<Item = Result<Bytes, String>> + Unpin + Send
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send + 'static,
    E: std::fmt::Display,
{
    use futures::StreamExt as _;
    Box::pin(futures::stream::unfold(
        Some(body),
        move |body| async move {
            let mut body = body?;
            match tokio::time::timeout(stall, body.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
                Ok(Some(Err(e))) => Some((Err(format!("reading the request body: {e}")), None)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(format!(
                        "the request body stopped arriving for {stall:?}; send it without pauses"
                    )),
                    None,
                )),
            }
        },
    ))
}
