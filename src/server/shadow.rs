//! Shadow traffic on the data plane. When an alias mirrors a share of its requests to a
//! candidate version, the primary answers the client exactly as without a mirror, and a copy
//! runs on the shadow version in its own task, marked with `fnhost-shadow: 1` so functions
//! can skip side effects. The request body is copied as the primary reads it ([`Tee`]), up to
//! [`SHADOW_BODY_LIMIT`]: the primary never waits for the copy, and a body that turns out
//! bigger (or that the primary leaves unread) cuts the copy off, which counts the shadow as
//! dropped. The shadow's status and body are compared with the primary's (by hash, as both
//! stream) and the outcome recorded per version; the client never waits for the shadow.
//!
//! Shadow work is bounded: at most [`crate::app::SHADOW_CONCURRENCY`] run at once host-wide, and a shadow
//! only runs if its function has a free concurrency slot right now. Otherwise it is dropped
//! (and counted), never queued.

use std::hash::{DefaultHasher, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{mpsc, oneshot};

use super::body::{Body, BoxError};
use crate::app::App;
use crate::engine::fairness::Work;
use crate::invocation::{Admit, Call, Caller, RequestBody};
use crate::metering::ShadowOutcome;
use crate::routing::Deployment;

/// Largest request body copied for a shadow; bigger requests are not mirrored.
pub const SHADOW_BODY_LIMIT: u64 = 1 << 20;
/// Marks a mirrored request.
pub const SHADOW_HEADER: HeaderName = HeaderName::from_static("fnhost-shadow");

/// Whether a request's body may fit the copy: not declared bigger than the limit. A body of
/// unknown length (chunked, or HTTP/2 without `content-length`) is copied as it streams and
/// cut off if it grows past the limit.
pub fn copyable(request: &Request<Incoming>) -> bool {
    use http_body::Body as _;
    request
        .body()
        .size_hint()
        .exact()
        .is_none_or(|n| n <= SHADOW_BODY_LIMIT)
}

/// A chunk of the copy, or word that the copy was cut off.
type Chunk = Result<Bytes, Cut>;

#[derive(Debug)]
struct Cut;

/// Splits the client's body into the primary's (which streams it) and the shadow's copy
/// (which receives each chunk as the primary reads it). `cut` is set if the copy could not
/// be made whole.
pub fn tee(body: Incoming) -> (RequestBody, RequestBody, Arc<AtomicBool>) {
    use http_body::Body as _;
    let (sender, receiver) = mpsc::unbounded_channel();
    let cut = Arc::new(AtomicBool::new(false));
    let copy = MirrorBody {
        receiver,
        ended: body.is_end_stream(),
        size_hint: body.size_hint(),
    };
    let primary = Tee {
        inner: body,
        copy: Some(sender),
        copied: 0,
        ended: false,
        cut: cut.clone(),
    };
    (
        RequestBody::Boxed(primary.boxed_unsync()),
        RequestBody::Boxed(copy.boxed_unsync()),
        cut,
    )
}

/// The primary's request body: the client's, each chunk also sent to the shadow until the
/// copy would pass [`SHADOW_BODY_LIMIT`]. Sending never waits (the copy is bounded by the
/// limit, not by the shadow's pace).
struct Tee {
    inner: Incoming,
    copy: Option<mpsc::UnboundedSender<Chunk>>,
    copied: u64,
    ended: bool,
    cut: Arc<AtomicBool>,
}

impl Tee {
    fn cut_off(&mut self) {
        if let Some(copy) = self.copy.take() {
            self.cut.store(true, Ordering::Release);
            let _ = copy.send(Err(Cut));
        }
    }
}

impl http_body::Body for Tee {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if this.copied + len > SHADOW_BODY_LIMIT {
                        this.cut_off();
                    } else if let Some(copy) = &this.copy {
                        this.copied += len;
                        if copy.send(Ok(data.clone())).is_err() {
                            // The shadow is gone (dropped for want of a slot, or done).
                            this.copy = None;
                        }
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => this.cut_off(),
            Poll::Ready(None) => {
                this.ended = true;
                this.copy = None; // the copy ends where the body does
            }
            Poll::Pending => {}
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        // Read to its end (hyper may not poll a body that says it has ended): the copy is
        // whole. Otherwise the primary left some unread, and the copy cannot be finished.
        let whole = self.ended || http_body::Body::is_end_stream(&self.inner);
        if whole {
            self.copy = None;
        } else {
            self.cut_off();
        }
    }
}

/// The shadow's request body: the chunks the primary has read so far, then its end.
struct MirrorBody {
    receiver: mpsc::UnboundedReceiver<Chunk>,
    ended: bool,
    size_hint: http_body::SizeHint,
}

impl http_body::Body for MirrorBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match this.receiver.poll_recv(cx) {
            Poll::Ready(Some(Ok(data))) => Poll::Ready(Some(Ok(http_body::Frame::data(data)))),
            Poll::Ready(Some(Err(Cut))) => {
                this.ended = true;
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionTerminated)))
            }
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.size_hint
    }
}

/// What is compared: the status and a hash of the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    status: u16,
    body_hash: u64,
}

/// Runs `request` (already addressed to the function's path) on `shadow` in its own task
/// and records how its answer compares with the primary's, which arrives on `primary`.
pub fn spawn(
    host: Arc<App>,
    shadow: Arc<Deployment>,
    mut request: Request<RequestBody>,
    primary: oneshot::Receiver<Answer>,
    request_id: String,
    cut: Arc<AtomicBool>,
) {
    tokio::spawn(async move {
        let metering = host.metering.clone();
        let (function, version) = (shadow.function.clone(), shadow.label);
        let Ok(_slot) = host.shadow_slots.try_acquire() else {
            metering.shadow(&function, version, ShadowOutcome::Dropped, false, None);
            return;
        };
        let Some(permit) = host
            .invoker
            .try_admit(&shadow, shadow.config.max_concurrency)
        else {
            metering.shadow(&function, version, ShadowOutcome::Dropped, false, None);
            return;
        };
        request
            .headers_mut()
            .insert(SHADOW_HEADER, HeaderValue::from_static("1"));
        let started = Instant::now();
        let answer = run(&host, &shadow, request, permit, request_id).await;
        let duration = started.elapsed();
        let error = answer.status >= 500;
        let wait = Duration::from_millis(shadow.config.timeout_ms) + Duration::from_secs(5);
        let outcome = match tokio::time::timeout(wait, primary).await {
            // The copy of the body was not whole: nothing to compare.
            _ if cut.load(Ordering::Acquire) => ShadowOutcome::Dropped,
            Ok(Ok(primary)) if primary == answer => ShadowOutcome::Match,
            Ok(Ok(_)) => ShadowOutcome::Mismatch,
            _ => ShadowOutcome::Unknown,
        };
        metering.shadow(&function, version, outcome, error, Some(duration));
    });
}

/// One shadow invocation, to its answer (a failure answers with its error status).
async fn run(
    host: &App,
    shadow: &Arc<Deployment>,
    request: Request<RequestBody>,
    permit: crate::admission::Permit,
    request_id: String,
) -> Answer {
    let failed = |status: http::StatusCode| Answer {
        status: status.as_u16(),
        body_hash: 0,
    };
    let call = Call {
        deployment: shadow,
        alias: None,
        caller: Caller::Shadow,
        admit: Admit::Held(permit),
        work: Work::Short(None),
        id: &request_id,
    };
    match host.invoker.invoke(call, request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let mut hasher = DefaultHasher::new();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Some(data) = frame.data_ref() {
                            hasher.write(data);
                        }
                    }
                    Err(_) => return failed(http::StatusCode::INTERNAL_SERVER_ERROR),
                }
            }
            Answer {
                status,
                body_hash: hasher.finish(),
            }
        }
        Err(error) => failed(error.failure.status()),
    }
}

/// The primary's response body, hashed as it streams to the client; when it has been sent
/// in full its [`Answer`] goes to the shadow task.
pub struct ObservedBody {
    inner: Body,
    status: u16,
    hasher: DefaultHasher,
    ended: bool,
    sender: Option<oneshot::Sender<Answer>>,
}

impl ObservedBody {
    pub fn new(inner: Body, status: u16, sender: oneshot::Sender<Answer>) -> Self {
        Self {
            inner,
            status,
            hasher: DefaultHasher::new(),
            ended: false,
            sender: Some(sender),
        }
    }
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.hasher.write(data);
                }
            }
            Poll::Ready(None) => this.ended = true,
            Poll::Ready(Some(Err(_))) => this.sender = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        // Sent in full (hyper may stop polling once a body says it has ended).
        if (self.ended || http_body::Body::is_end_stream(&self.inner))
            && let Some(sender) = self.sender.take()
        {
            let _ = sender.send(Answer {
                status: self.status,
                body_hash: self.hasher.finish(),
            });
        }
    }
}
