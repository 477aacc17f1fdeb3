//! The invocation pipeline, written once for every caller: live requests (the data plane),
//! shadow copies, event deliveries, and whatever comes next (async invocations, the
//! console's test button).
//!
//! `admit -> load -> warm-or-instantiate -> invoke -> record -> log`: the request-body limit
//! is checked, a concurrency slot is taken (or was taken by the caller), the compiled
//! component is loaded, a warm instance is taken from the version's pool (or one is created
//! on the spot, a cold start), the guest runs, and when its instance is gone the slot is
//! released, the invocation is metered and what the guest printed is logged. Callers route
//! (pick the deployment) before, and turn the outcome into HTTP, a shadow comparison or an
//! event's next state after.

use crate::engine::fairness::Work;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;

use crate::admission::{Admission, Permit, Rejected, Scope};
use crate::drain::discard;
use crate::engine::{Engine, Finished, GuestBody, InvokeError, PrepareError, RequestSecrets};
use crate::function_logs::FunctionLogs;
use crate::metering::{InvocationRecord, Metering, VersionMeter};
use crate::routing::Deployment;
use crate::scaling::Scaler;
use crate::telemetry::{self, RequestTrace};

/// The request body a function reads: streamed from the client, a copy held in memory (an
/// event's payload), or another body (a mirrored request's, as it streams).
pub enum RequestBody {
    Streaming(Incoming),
    Buffered(Option<Bytes>),
    Boxed(UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>),
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Streaming(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Self::Buffered(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(http_body::Frame::data(b))),
            ),
            Self::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Streaming(body) => body.is_end_stream(),
            Self::Buffered(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            Self::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Self::Streaming(body) => body.size_hint(),
            Self::Buffered(bytes) => {
                http_body::SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Self::Boxed(body) => body.size_hint(),
        }
    }
}

/// Who is calling: decides billing and how the guest's output is tagged in its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A client's request: metered and billed, refusals counted.
    Live,
    /// A mirrored copy: never billed (its outcome is counted as a shadow result), its log
    /// entries marked `(shadow)`.
    Shadow,
    /// An event delivery or an asynchronous invocation: billed like a live request, tagged
    /// with the event's or invocation's id.
    Event,
}

/// How the call gets its concurrency slot.
pub enum Admit {
    /// Wait in the function's bounded queue, then give up (live requests).
    Queue,
    /// The caller already holds one, taken with [`Invoker::try_admit`] before doing work
    /// worth skipping when the function is busy (shadows, events).
    Held(Permit),
}

/// One invocation of one deployment.
pub struct Call<'a> {
    pub deployment: &'a Arc<Deployment>,
    /// The alias that routed the request, for usage and metrics.
    pub alias: Option<&'a Arc<str>>,
    pub caller: Caller,
    pub admit: Admit,
    /// The request id (or event id) the guest's log entries carry.
    pub id: &'a str,
    /// How CPU fairness treats it: short (with a live request's count as short work since
    /// it was read) or background.
    pub work: Work,
}

/// Why an invocation produced no response.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("over capacity: {0}")]
    Overloaded(Rejected),
    #[error("the request body exceeds this function's limit of {0} bytes")]
    TooLarge(u64),
    #[error("the request body stopped arriving for {0:?}; send it without pauses")]
    BodyTimeout(Duration),
    /// Details are logged; clients only learn that the code could not be loaded.
    #[error("the function's code could not be loaded")]
    Load(PrepareError),
    /// This node has not fetched the version's code yet and the object store is down (the
    /// outage is logged once, by the dependencies).
    #[error(
        "this node has not fetched the function's code yet and the object store is \
         unreachable; retry shortly"
    )]
    CodeUnavailable,
    #[error(transparent)]
    Invoke(InvokeError),
}

impl Failure {
    /// The HTTP status this failure answers with. Decided here, not by the HTTP layer,
    /// because metering and health record it for every caller.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::Overloaded(rejected) if rejected.scope() == Scope::Namespace => {
                S::TOO_MANY_REQUESTS
            }
            Self::Overloaded(_) | Self::Invoke(InvokeError::Capacity) => S::SERVICE_UNAVAILABLE,
            Self::TooLarge(_) => S::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => S::REQUEST_TIMEOUT,
            Self::Load(_) => S::INTERNAL_SERVER_ERROR,
            Self::CodeUnavailable => S::SERVICE_UNAVAILABLE,
            Self::Invoke(InvokeError::Timeout(_)) => S::GATEWAY_TIMEOUT,
            Self::Invoke(InvokeError::BadRequest(_)) => S::BAD_REQUEST,
            Self::Invoke(
                InvokeError::MemoryLimit(_)
                | InvokeError::CpuBudget(_)
                | InvokeError::Trap(_)
                | InvokeError::Guest(_),
            ) => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable machine-readable code for API clients.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Overloaded(rejected) if rejected.scope() == Scope::Namespace => {
                "quota_concurrency"
            }
            Self::Overloaded(_) | Self::Invoke(InvokeError::Capacity) => "overloaded",
            Self::TooLarge(_) => "too_large",
            Self::BodyTimeout(_) => "request_timeout",
            Self::Load(_) => "internal",
            Self::CodeUnavailable => "object_store_unavailable",
            Self::Invoke(InvokeError::Timeout(_)) => "timeout",
            Self::Invoke(InvokeError::MemoryLimit(_)) => "memory_limit",
            Self::Invoke(InvokeError::CpuBudget(_)) => "cpu_budget",
            Self::Invoke(InvokeError::Trap(_)) => "trap",
            Self::Invoke(InvokeError::Guest(_)) => "function_error",
            Self::Invoke(InvokeError::BadRequest(_)) => "bad_request",
        }
    }
}

/// A failed invocation with what the guest printed before it failed, for the host's log.
#[derive(Debug)]
pub struct InvocationError {
    pub failure: Failure,
    pub guest_output: Option<String>,
}

impl From<Failure> for InvocationError {
    fn from(failure: Failure) -> Self {
        Self {
            failure,
            guest_output: None,
        }
    }
}

/// The subsystems an invocation passes through.
pub struct Invoker {
    /// How long a request body may stop arriving before the request fails with 408.
    pub body_timeout: Duration,
    pub engine: Arc<Engine>,
    pub scaler: Arc<Scaler>,
    pub admission: Admission,
    pub metering: Arc<Metering>,
    pub logs: Arc<FunctionLogs>,
    /// Opens the secrets a function reads; `None` when the host has no secrets key.
    pub secrets: Option<crate::secrets::SecretsKey>,
}

impl Invoker {
    /// The secrets `deployment`'s config reads, opened for this request (values never leave
    /// the function's `wasi:config` and environment). One that is not set, or does not open,
    /// is absent; the latter is logged by name only.
    fn open_secrets(&self, deployment: &Deployment) -> RequestSecrets {
        let config = &deployment.config;
        if config.secrets.is_empty() && config.secret_env.is_empty() {
            return RequestSecrets::default();
        }
        let Some(key) = &self.secrets else {
            tracing::warn!(function = %deployment.function, "the function reads secrets but this host has no secrets key");
            return RequestSecrets::default();
        };
        let open = |wanted: &[String]| -> Vec<(String, String)> {
            deployment
                .secrets
                .iter()
                .filter(|row| wanted.contains(&row.name))
                .filter_map(
                    |row| match key.open(&deployment.function, &row.name, &row.sealed) {
                        Ok(value) => Some((
                            row.name.clone(),
                            String::from_utf8_lossy(&value).into_owned(),
                        )),
                        Err(e) => {
                            tracing::error!(error = %e, secret = %row.name, "a secret could not be opened");
                            None
                        }
                    },
                )
                .collect()
        };
        RequestSecrets {
            config: open(&config.secrets),
            env: open(&config.secret_env),
        }
    }

    /// A slot of `deployment`'s function if one is free now, counting against at most
    /// `limit` running requests fleet-wide (this node's part of it), for callers that must
    /// never queue ahead of live traffic.
    pub fn try_admit(&self, deployment: &Deployment, limit: u32) -> Option<Permit> {
        let limit = self.scaler.share().concurrency(limit);
        self.admission.try_admit(&deployment.function, limit)
    }

    /// Runs `request` (already addressed to the function's own path) through the pipeline.
    /// The response head comes back as soon as the guest sends it; the slot is held, and
    /// the invocation metered, until the guest's instance is gone (after the last body byte).
    pub async fn invoke<B>(
        &self,
        call: Call<'_>,
        request: Request<B>,
    ) -> Result<Response<GuestBody>, InvocationError>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error> + Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let deployment = call.deployment;
        let config = &deployment.config;
        let trace = request.extensions().get::<Arc<RequestTrace>>().cloned();
        let meter = deployment
            .meter
            .get_or_init(|| self.metering.meter(&deployment.function, deployment.label));
        let refused = |failure: Failure| {
            if call.caller != Caller::Shadow {
                self.metering.record(
                    meter,
                    &InvocationRecord {
                        alias: call.alias,
                        status: failure.status().as_u16(),
                        duration: Duration::ZERO,
                        memory_mb: config.memory_mb,
                        cold_start: false,
                        instantiation: None,
                        billable: false,
                        kv_operations: 0,
                    },
                );
            }
            InvocationError::from(failure)
        };
        // hyper takes the body's exact size from its content-length.
        let declared = http_body::Body::size_hint(request.body()).exact();
        if declared.is_some_and(|n| n > config.max_request_body_bytes) {
            discard(request.into_body()).await;
            return Err(refused(Failure::TooLarge(config.max_request_body_bytes)));
        }
        // A slot is taken only once the body is flowing (small bodies are read whole first),
        // so clients that send a head and stall cannot hold a function's slots.
        let (parts, body) = request.into_parts();
        let body = match Prefetched::read(body, PREFETCH_BYTES, self.body_timeout).await {
            Ok(body) => body,
            Err(failure) => return Err(refused(failure)),
        };
        let request = Request::from_parts(parts, body);
        let queued_at = telemetry::now_ns();
        let permit = match call.admit {
            Admit::Held(permit) => permit,
            Admit::Queue => match self
                .admission
                .admit(&deployment.function, self.scaler.max_of(deployment))
                .await
            {
                Ok(permit) => permit,
                Err(rejected) => return Err(refused(Failure::Overloaded(rejected))),
            },
        };
        if permit.waited {
            self.metering.queue_waited(meter);
        }
        if let Some(trace) = &trace {
            let span = telemetry::new_span_id();
            trace.child(
                span,
                trace.span_id,
                "admission",
                telemetry::Kind::Internal,
                queued_at,
                telemetry::now_ns(),
                vec![("fnhost.queued", permit.waited.into())],
                None,
            );
        }
        let slot = Slot::new(meter.clone(), permit);
        let component = match self.engine.load(deployment.digest).await {
            Ok(component) => component,
            Err(PrepareError::Unavailable(_)) => return Err(refused(Failure::CodeUnavailable)),
            Err(e) => {
                tracing::error!(function = %deployment.function, version = %deployment.label, error = %e, "the function's code could not be loaded");
                return Err(refused(Failure::Load(e)));
            }
        };
        let faults = Arc::new(BodyFaults::default());
        let mut request = request.map(|body| CappedBody {
            inner: body,
            remaining: config.max_request_body_bytes,
            stall: self.body_timeout,
            stall_timer: None,
            stall_armed: false,
            faults: faults.clone(),
        });
        let record = (call.caller != Caller::Shadow)
            .then(|| PendingRecord::new(&self.metering, meter, config, call.alias.cloned()));
        let shared = self.scaler.shared(deployment, &component);
        let (warm, lease) = self.scaler.take(deployment);
        let guest_started = telemetry::now_ns();
        if let Some(trace) = &trace {
            // The function sees its own span as the parent, and passes it on.
            trace.inject(request.headers_mut(), trace.guest_span);
            trace.hold();
        }
        let on_finish = {
            let trace = trace.clone();
            let logs = self.logs.clone();
            let record = record.clone();
            let (function, version) = (deployment.function.clone(), deployment.label);
            let id = match call.caller {
                Caller::Shadow => format!("{} (shadow)", call.id),
                _ => call.id.to_string(),
            };
            Box::new(move |finished: Finished| {
                drop(lease);
                drop(slot);
                if let Some(trace) = &trace {
                    guest_spans(trace, guest_started, &finished);
                }
                if let Some(record) = &record {
                    record.finished(finished.instantiation, finished.kv_operations);
                }
                if let Some(text) = finished.output {
                    tracing::info!(target: "fnhost::function_output", %function, %version, request_id = %id, "{text}");
                    logs.append(&function, &version.to_string(), &id, text);
                }
            })
        };
        let outcome = match &shared {
            Some(shared) => {
                let secrets = || self.open_secrets(deployment);
                self.engine
                    .invoke_shared(shared, secrets, request, on_finish, call.work)
                    .await
            }
            None => {
                self.engine
                    .invoke(
                        &component,
                        &deployment.function,
                        self.open_secrets(deployment),
                        config,
                        warm,
                        request,
                        on_finish,
                        call.work,
                    )
                    .await
            }
        }
        .map_err(|failure| InvocationError {
            failure: if faults.exceeded.load(Ordering::Acquire) {
                Failure::TooLarge(config.max_request_body_bytes)
            } else if faults.stalled.load(Ordering::Acquire) {
                Failure::BodyTimeout(self.body_timeout)
            } else {
                Failure::Invoke(failure.error)
            },
            guest_output: failure.guest_output,
        });
        if let Some(record) = &record {
            record.status(match &outcome {
                Ok(response) => response.status().as_u16(),
                Err(error) => error.failure.status().as_u16(),
            });
        }
        outcome
    }
}

/// The guest's run (and its cold start, if it had one) as spans under the request's, which
/// this ends (the instance is gone).
fn guest_spans(trace: &RequestTrace, started_ns: u64, finished: &Finished) {
    let ended = telemetry::now_ns();
    let cold = finished.instantiation.is_some();
    trace.set("faas.coldstart", cold);
    if let Some(took) = finished.instantiation {
        trace.child(
            telemetry::new_span_id(),
            trace.guest_span,
            "instantiate",
            telemetry::Kind::Internal,
            started_ns,
            started_ns + took.as_nanos() as u64,
            vec![("faas.coldstart", true.into())],
            None,
        );
    }
    trace.child(
        trace.guest_span,
        trace.span_id,
        "guest",
        telemetry::Kind::Internal,
        started_ns,
        ended,
        vec![
            ("faas.coldstart", cold.into()),
            (
                "fnhost.kv_operations",
                (finished.kv_operations as i64).into(),
            ),
        ],
        None,
    );
    trace.finish(None);
}

/// A concurrency slot, counted in the version's in-flight gauge while held.
struct Slot {
    meter: Arc<VersionMeter>,
    _permit: Permit,
}

impl Slot {
    fn new(meter: Arc<VersionMeter>, permit: Permit) -> Self {
        meter.in_flight(1);
        Self {
            meter,
            _permit: permit,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.meter.in_flight(-1);
    }
}

/// One invocation's usage record, completed by whichever comes last: the response status
/// (known when the head is back) or the instance being gone (after streaming).
struct PendingRecord {
    metering: Arc<Metering>,
    meter: Arc<VersionMeter>,
    alias: Option<Arc<str>>,
    memory_mb: u32,
    admitted: Instant,
    state: Mutex<RecordState>,
}

#[derive(Default)]
struct RecordState {
    status: Option<u16>,
    /// Duration, instantiation (a cold start's), key-value operations.
    finished: Option<(Duration, Option<Duration>, u64)>,
    recorded: bool,
}

impl PendingRecord {
    /// Starts timing an invocation, admitted now, of the version `meter` meters.
    fn new(
        metering: &Arc<Metering>,
        meter: &Arc<VersionMeter>,
        config: &crate::model::FunctionConfig,
        alias: Option<Arc<str>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            metering: metering.clone(),
            meter: meter.clone(),
            alias,
            memory_mb: config.memory_mb,
            admitted: Instant::now(),
            state: Mutex::new(RecordState::default()),
        })
    }

    fn status(&self, status: u16) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.status = Some(status);
        self.record_if_complete(&mut state);
    }

    fn finished(&self, instantiation: Option<Duration>, kv_operations: u64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.finished = Some((self.admitted.elapsed(), instantiation, kv_operations));
        self.record_if_complete(&mut state);
    }

    fn record_if_complete(&self, state: &mut RecordState) {
        let (Some(status), Some((duration, instantiation, kv_operations))) =
            (state.status, state.finished)
        else {
            return;
        };
        if std::mem::replace(&mut state.recorded, true) {
            return;
        }
        tracing::debug!(
            status,
            duration_us = duration.as_micros() as u64,
            "invocation"
        );
        self.metering.record(
            &self.meter,
            &InvocationRecord {
                alias: self.alias.as_ref(),
                status,
                duration,
                memory_mb: self.memory_mb,
                // A request served by a warm instance did no instantiation of its own.
                cold_start: instantiation.is_some(),
                instantiation,
                billable: true,
                kv_operations,
            },
        );
    }
}

/// Most of a request body read before a concurrency slot is taken.
const PREFETCH_BYTES: usize = 16 << 10;

/// A request body whose start was read ahead (up to a bound, or all of it), then the rest.
struct Prefetched<B> {
    /// What was read ahead, an error of the body included (the function must see it, not a
    /// body that seems to end early).
    head: std::collections::VecDeque<Result<http_body::Frame<Bytes>, wasmtime_wasi_http::Error>>,
    /// The rest of the body; `None` once it ended or failed.
    rest: Option<B>,
}

impl<B> Prefetched<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    /// Reads frames until the body ends or fails, or `bound` bytes are in, each within
    /// `stall`.
    async fn read(mut body: B, bound: usize, stall: Duration) -> Result<Self, Failure> {
        use http_body_util::BodyExt as _;
        let mut head = std::collections::VecDeque::new();
        let mut read = 0;
        while read < bound && !body.is_end_stream() {
            match tokio::time::timeout(stall, body.frame()).await {
                Err(_) => return Err(Failure::BodyTimeout(stall)),
                Ok(None) => return Ok(Self { head, rest: None }),
                Ok(Some(Err(e))) => {
                    head.push_back(Err(e.into()));
                    return Ok(Self { head, rest: None });
                }
                Ok(Some(Ok(frame))) => {
                    read += frame.data_ref().map_or(0, Bytes::len);
                    head.push_back(Ok(frame));
                }
            }
        }
        Ok(Self {
            head,
            rest: Some(body),
        })
    }
}

impl<B> http_body::Body for Prefetched<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(item) = this.head.pop_front() {
            return Poll::Ready(Some(item));
        }
        match &mut this.rest {
            Some(rest) => Pin::new(rest).poll_frame(cx).map_err(Into::into),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_empty() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }
}

/// How the client's body failed the function, so the pipeline answers 413 or 408 rather than
/// blame the function.
#[derive(Default)]
struct BodyFaults {
    exceeded: AtomicBool,
    stalled: AtomicBool,
}

/// The request body as the function reads it: past the function's limit it fails (and sets
/// `faults.exceeded`); a body that stops arriving for `stall` fails too (`faults.stalled`).
struct CappedBody<B> {
    inner: B,
    remaining: u64,
    stall: Duration,
    stall_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether `stall_timer` counts the current pause (cleared by every frame).
    stall_armed: bool,
    faults: Arc<BodyFaults>,
}

impl<B> http_body::Body for CappedBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.stall_armed = false;
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > this.remaining {
                    this.faults.exceeded.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                        None,
                    ))));
                }
                this.remaining -= len;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                // One timer per body, re-armed at each pause rather than allocated anew.
                let deadline = tokio::time::Instant::now() + this.stall;
                let timer = match &mut this.stall_timer {
                    Some(timer) => {
                        if !this.stall_armed {
                            timer.as_mut().reset(deadline);
                        }
                        timer
                    }
                    None => this
                        .stall_timer
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                this.stall_armed = true;
                if timer.as_mut().poll(cx).is_ready() {
                    this.faults.stalled.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(
                        wasmtime_wasi_http::Error::ConnectionReadTimeout,
                    )));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt as _, StreamBody};

    /// A client that breaks off while its body is read ahead: the function still sees the
    /// error, not a body that seems complete.
    #[tokio::test]
    async fn a_body_error_read_ahead_reaches_the_function() {
        let frames: Vec<Result<http_body::Frame<Bytes>, wasmtime_wasi_http::Error>> = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"part"))),
            Err(wasmtime_wasi_http::Error::ConnectionTerminated),
        ];
        let body = StreamBody::new(futures::stream::iter(frames));
        let prefetched = Prefetched::read(body, PREFETCH_BYTES, Duration::from_secs(1))
            .await
            .unwrap();
        assert!(prefetched.collect().await.is_err());
    }
}
