//! The data plane: `/NAME[@QUALIFIER]/REST?QUERY` runs the function, which sees `/REST?QUERY`.
//!
//! The request path takes no lock and does no database or disk I/O when the function's code is
//! loaded: route lookup is a snapshot read (an alias then picks a version by rule, sticky
//! header or weight), then one fresh instance serves the request. Responses carry
//! `fnhost-version` and, when an alias chose it, `fnhost-alias`.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::Host;
use super::body::{Body, BoxError, discard, text};
use super::error::ApiError;
use super::shadow::{self, Answer, ObservedBody, RequestBody};
use crate::admission::{Permit, Rejected};
use crate::engine::Finished;
use crate::metering::{InvocationRecord, Metering, ShadowOutcome};
use crate::model::VersionLabel;
use crate::routing::{AliasRoutes, Deployment, Resolved};
use tokio::sync::oneshot;
use tracing::Instrument as _;

const VERSION_HEADER: HeaderName = HeaderName::from_static("fnhost-version");
const ALIAS_HEADER: HeaderName = HeaderName::from_static("fnhost-alias");
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("fnhost-request-id");
const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub async fn handle(host: &Arc<Host>, request: Request<Incoming>) -> Response<Body> {
    if request.uri().path() == "/healthz" {
        return text(StatusCode::OK, "ok\n");
    }
    let request_id = request_id(&request);
    let resolved = match Target::parse(request.uri().path()) {
        None => Err(ApiError::not_found(
            "no function named in the path; call /NAME/... or /NAME@VERSION/...",
        )),
        Some(target) => match host
            .router
            .snapshot()
            .resolve(target.function, target.qualifier)
        {
            Ok(Resolved::Deployment(deployment)) => {
                Ok((deployment.clone(), None, target.rest_start))
            }
            Ok(Resolved::Alias(alias)) => Ok((
                alias.choose(request.headers()).clone(),
                Some(alias.clone()),
                target.rest_start,
            )),
            Err(e) => Err(ApiError::from(e)),
        },
    };
    let (deployment, alias, rest_start) = match resolved {
        Ok(resolved) => resolved,
        Err(error) => {
            discard(request.into_body()).await;
            return with_request_id(error.into_response(), &request_id);
        }
    };
    let (request, observer) = match mirror(
        host,
        alias.as_deref(),
        &deployment,
        request,
        rest_start,
        &request_id,
    )
    .await
    {
        Ok(mirrored) => mirrored,
        Err(error) => return with_request_id(error.into_response(), &request_id),
    };
    let span = tracing::info_span!(
        "invoke",
        function = %deployment.function,
        version = %deployment.label,
        request_id = request_id.to_str().unwrap_or(""),
    );
    let alias_name = alias.as_ref().map(|a| a.name.clone());
    let mut response = match invoke(
        host,
        &deployment,
        alias_name.as_ref(),
        rest_start,
        request,
        &request_id,
    )
    .instrument(span.clone())
    .await
    {
        Ok(response) => response,
        Err((error, guest_output)) => {
            if error.status.is_server_error() {
                span.in_scope(|| {
                    tracing::warn!(
                        error_id = error.error_id.as_deref().unwrap_or(""),
                        status = error.status.as_u16(),
                        guest_output = guest_output.as_deref().unwrap_or(""),
                        "{}",
                        error.message
                    )
                });
            }
            error.into_response()
        }
    };
    let headers = response.headers_mut();
    headers.insert(VERSION_HEADER, deployment.version_header.clone());
    if let Some(alias) = alias {
        headers.insert(ALIAS_HEADER, alias.header_value.clone());
    }
    let response = with_request_id(response, &request_id);
    match observer {
        Some(sender) => {
            let status = response.status().as_u16();
            response.map(|body| ObservedBody::new(body, status, sender).boxed_unsync())
        }
        None => response,
    }
}

/// Starts a shadow copy of `request` when its alias mirrors it (and its body is small enough
/// to copy), returning the request for the primary and where to report the primary's answer.
async fn mirror(
    host: &Arc<Host>,
    alias: Option<&AliasRoutes>,
    deployment: &Arc<Deployment>,
    request: Request<Incoming>,
    rest_start: usize,
    request_id: &HeaderValue,
) -> Result<(Request<RequestBody>, Option<oneshot::Sender<Answer>>), ApiError> {
    let Some(target) = alias
        .and_then(AliasRoutes::mirror)
        .filter(|target| target.label != deployment.label)
    else {
        return Ok((request.map(RequestBody::Streaming), None));
    };
    let uri = match function_uri(request.uri(), rest_start) {
        Ok(uri) if shadow::copyable(&request) => uri,
        _ => {
            host.metering.shadow(
                &target.function,
                target.label,
                ShadowOutcome::Dropped,
                false,
                None,
            );
            return Ok((request.map(RequestBody::Streaming), None));
        }
    };
    let (parts, body) = request.into_parts();
    let bytes = shadow::buffer(body).await?;
    let mut copy = Request::new(RequestBody::Buffered(Some(bytes.clone())));
    *copy.method_mut() = parts.method.clone();
    *copy.uri_mut() = uri;
    *copy.version_mut() = parts.version;
    *copy.headers_mut() = parts.headers.clone();
    let (sender, receiver) = oneshot::channel();
    let id = request_id.to_str().unwrap_or("").to_string();
    shadow::spawn(host.clone(), target.clone(), copy, receiver, id);
    Ok((
        Request::from_parts(parts, RequestBody::Buffered(Some(bytes))),
        Some(sender),
    ))
}

/// The client's `x-request-id` when it is a sane token, else a fresh id.
fn request_id(request: &Request<Incoming>) -> HeaderValue {
    request
        .headers()
        .get(CLIENT_REQUEST_ID)
        .filter(|v| {
            let bytes = v.as_bytes();
            !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            // Unique, not secret: a fast thread-local generator instead of a syscall per request.
            HeaderValue::from_str(&format!("{:016x}", fastrand::u64(..)))
                .expect("hex is a header value")
        })
}

fn with_request_id(mut response: Response<Body>, request_id: &HeaderValue) -> Response<Body> {
    response
        .headers_mut()
        .insert(REQUEST_ID_HEADER, request_id.clone());
    response
}

/// Admits, loads and runs the function, and meters it. A failure comes with what the guest
/// printed.
async fn invoke(
    host: &Host,
    deployment: &Arc<Deployment>,
    alias: Option<&Arc<str>>,
    rest_start: usize,
    mut request: Request<RequestBody>,
    request_id: &HeaderValue,
) -> Result<Response<Body>, (ApiError, Option<String>)> {
    let config = &deployment.config;
    let refused = |status: StatusCode| {
        host.metering.record(&InvocationRecord {
            function: &deployment.function,
            version: deployment.label,
            alias: alias.map(|a| &**a),
            status: status.as_u16(),
            duration: Duration::ZERO,
            memory_mb: config.memory_mb,
            cold_start: false,
            instantiation: None,
            billable: false,
        })
    };
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > config.max_request_body_bytes) {
        discard(request.into_body()).await;
        refused(StatusCode::PAYLOAD_TOO_LARGE);
        return Err((body_too_large(config.max_request_body_bytes), None));
    }
    let permit = match host
        .admission
        .admit(&deployment.function, config.max_concurrency)
        .await
    {
        Ok(permit) => permit,
        Err(rejected) => {
            refused(StatusCode::SERVICE_UNAVAILABLE);
            return Err((overloaded(&rejected), None));
        }
    };
    if permit.waited {
        host.metering.queue_waited(&deployment.function);
    }
    let slot = Slot::new(
        host.metering.clone(),
        deployment.function.clone(),
        deployment.label,
        permit,
    );
    let component = host
        .engine
        .load(deployment.digest, || {
            host.registry.modules().path(&deployment.digest)
        })
        .await
        .map_err(|e| {
            let error = ApiError::internal("the function's code could not be loaded");
            tracing::error!(error_id = ?error.error_id, error = %e, "load failed");
            refused(error.status);
            (error, None)
        })?;
    *request.uri_mut() = function_uri(request.uri(), rest_start).map_err(|e| (e, None))?;
    let exceeded = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| CappedRequestBody {
        inner: body,
        remaining: config.max_request_body_bytes,
        exceeded: exceeded.clone(),
    });
    let record = PendingRecord::new(&host.metering, deployment, alias.cloned());
    let (warm, lease) = host.scaler.take(deployment);
    let on_finish = {
        let logs = host.logs.clone();
        let record = record.clone();
        let request_id = request_id.to_str().unwrap_or("").to_string();
        Box::new(move |finished: Finished| {
            drop(lease);
            drop(slot);
            record.finished(finished.instantiation);
            if let Some(text) = finished.output {
                tracing::info!(target: "fnhost::function_output", function = %record.function, version = %record.version, request_id = %request_id, "{text}");
                logs.append(
                    &record.function,
                    &record.version.to_string(),
                    &request_id,
                    text,
                );
            }
        })
    };
    let outcome = host
        .engine
        .invoke(&component, config, warm, request, on_finish)
        .await
        .map_err(|failure| {
            if exceeded.load(Ordering::Acquire) {
                (
                    body_too_large(config.max_request_body_bytes),
                    failure.guest_output,
                )
            } else {
                (ApiError::from(failure.error), failure.guest_output)
            }
        });
    record.status(match &outcome {
        Ok(response) => response.status().as_u16(),
        Err((error, _)) => error.status.as_u16(),
    });
    let response = outcome?;
    Ok(response.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
}

/// A concurrency slot, counted in the version's in-flight gauge while held.
struct Slot {
    metering: Arc<Metering>,
    function: Arc<str>,
    version: VersionLabel,
    _permit: Permit,
}

impl Slot {
    fn new(
        metering: Arc<Metering>,
        function: Arc<str>,
        version: VersionLabel,
        permit: Permit,
    ) -> Self {
        metering.in_flight(&function, version, 1);
        Self {
            metering,
            function,
            version,
            _permit: permit,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metering.in_flight(&self.function, self.version, -1);
    }
}

/// One invocation's usage record, completed by whichever comes last: the response status
/// (known here) or the instance being gone (known to the engine, after streaming).
pub(super) struct PendingRecord {
    metering: Arc<Metering>,
    function: Arc<str>,
    version: VersionLabel,
    alias: Option<Arc<str>>,
    memory_mb: u32,
    admitted: Instant,
    state: Mutex<RecordState>,
}

#[derive(Default)]
struct RecordState {
    status: Option<u16>,
    finished: Option<(Duration, Option<Duration>)>,
    recorded: bool,
}

impl PendingRecord {
    /// Starts timing an invocation of `deployment` admitted now.
    pub(super) fn new(
        metering: &Arc<Metering>,
        deployment: &Deployment,
        alias: Option<Arc<str>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            metering: metering.clone(),
            function: deployment.function.clone(),
            version: deployment.label,
            alias,
            memory_mb: deployment.config.memory_mb,
            admitted: Instant::now(),
            state: Mutex::new(RecordState::default()),
        })
    }

    pub(super) fn status(&self, status: u16) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.status = Some(status);
        self.record_if_complete(&mut state);
    }

    pub(super) fn finished(&self, instantiation: Option<Duration>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.finished = Some((self.admitted.elapsed(), instantiation));
        self.record_if_complete(&mut state);
    }

    fn record_if_complete(&self, state: &mut RecordState) {
        let (Some(status), Some((duration, instantiation))) = (state.status, state.finished) else {
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
        self.metering.record(&InvocationRecord {
            function: &self.function,
            version: self.version,
            alias: self.alias.as_deref(),
            status,
            duration,
            memory_mb: self.memory_mb,
            // A request served by a warm instance did no instantiation of its own.
            cold_start: instantiation.is_some(),
            instantiation,
            billable: true,
        });
    }
}

fn body_too_large(limit: u64) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the request body exceeds this function's limit of {limit} bytes"),
    );
    error.close_connection = true;
    error
}

fn overloaded(rejected: &Rejected) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        format!("over capacity: {rejected}"),
    );
    error.retry_after_secs = Some(1);
    error
}

/// The request body as the function reads it: past the function's limit it fails, and
/// `exceeded` tells the data plane to answer 413 rather than blame the function.
struct CappedRequestBody {
    inner: RequestBody,
    remaining: u64,
    exceeded: Arc<AtomicBool>,
}

impl http_body::Body for CappedRequestBody {
    type Data = bytes::Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > this.remaining {
                    this.exceeded.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                        None,
                    ))));
                }
                this.remaining -= len;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The URI the function sees: the path after its name, the query, and the authority.
fn function_uri(original: &Uri, rest_start: usize) -> Result<Uri, ApiError> {
    let path = &original.path()[rest_start..];
    let path = if path.is_empty() { "/" } else { path };
    let path_and_query = match original.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    let mut parts = original.clone().into_parts();
    parts.path_and_query = Some(
        PathAndQuery::try_from(path_and_query)
            .map_err(|e| ApiError::bad_request(format!("invalid request path: {e}")))?,
    );
    Uri::from_parts(parts).map_err(|e| ApiError::bad_request(format!("invalid request URI: {e}")))
}

/// The parts of `/NAME[@QUALIFIER]/REST`.
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    function: &'a str,
    qualifier: Option<&'a str>,
    /// Byte offset in the path where `/REST` begins.
    rest_start: usize,
}

impl<'a> Target<'a> {
    fn parse(path: &'a str) -> Option<Self> {
        let after_slash = path.strip_prefix('/')?;
        let segment_len = after_slash.find('/').unwrap_or(after_slash.len());
        let segment = &after_slash[..segment_len];
        let (function, qualifier) = match segment.split_once('@') {
            Some((function, qualifier)) => (function, Some(qualifier)),
            None => (segment, None),
        };
        if function.is_empty() {
            return None;
        }
        Some(Self {
            function,
            qualifier,
            rest_start: 1 + segment_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_function_qualifier_and_rest() {
        let t = Target::parse("/hello@3/a/b").unwrap();
        assert_eq!((t.function, t.qualifier), ("hello", Some("3")));
        assert_eq!(&"/hello@3/a/b"[t.rest_start..], "/a/b");
        let t = Target::parse("/hello").unwrap();
        assert_eq!((t.function, t.qualifier, t.rest_start), ("hello", None, 6));
        assert!(Target::parse("/").is_none());
        assert!(Target::parse("/@3/x").is_none());
    }

    #[test]
    fn function_sees_rest_and_query() {
        let uri: Uri = "/hello@latest/a/b?x=1".parse().unwrap();
        let rewritten = function_uri(&uri, "/hello@latest".len()).unwrap();
        assert_eq!(rewritten.to_string(), "/a/b?x=1");
        let uri: Uri = "http://example.com/hello?q".parse().unwrap();
        let rewritten = function_uri(&uri, "/hello".len()).unwrap();
        assert_eq!(rewritten.to_string(), "http://example.com/?q");
    }
}
