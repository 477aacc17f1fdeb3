//! OTLP/HTTP export off the request path: finished spans go into a bounded queue (a full one
//! drops the span and counts it, never blocks a request), and one thread of its own sends
//! them in batches, protobuf-encoded, to the collector's `/v1/traces`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;

/// Spans sent in one request to the collector, at most.
const BATCH: usize = 512;
/// How long a span waits for its batch to fill.
const LINGER: Duration = Duration::from_secs(1);
/// Limit on one export; a collector that hangs costs a batch, not the queue's thread forever.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts for `/metrics`.
#[derive(Debug, Default)]
pub struct ExportStats {
    pub exported: AtomicU64,
    /// Dropped because the queue was full (a slow or dead collector).
    pub dropped: AtomicU64,
    /// Lost because the collector refused or did not answer an export.
    pub failed: AtomicU64,
}

pub struct Exporter {
    queue: SyncSender<Span>,
    pub stats: Arc<ExportStats>,
}

impl Exporter {
    /// Starts the export thread for `url` (the full `.../v1/traces`), with spans described
    /// by `resource`.
    pub fn start(url: String, resource: Vec<KeyValue>, capacity: usize) -> anyhow::Result<Self> {
        let (queue, spans) = std::sync::mpsc::sync_channel(capacity);
        let stats = Arc::new(ExportStats::default());
        let client = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        let thread_stats = stats.clone();
        std::thread::Builder::new()
            .name("fnhost-otlp".into())
            .spawn(move || run(url, resource, client, spans, &thread_stats))?;
        Ok(Self { queue, stats })
    }

    /// Queues `span`, or drops it if the queue is full.
    pub fn send(&self, span: Span) {
        match self.queue.try_send(span) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn run(
    url: String,
    resource: Vec<KeyValue>,
    client: reqwest::Client,
    spans: Receiver<Span>,
    stats: &ExportStats,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "the trace exporter could not start; spans are dropped");
            return;
        }
    };
    let mut warned = false;
    loop {
        let first = match spans.recv() {
            Ok(span) => span,
            Err(_) => return,
        };
        let mut batch = vec![first];
        let deadline = std::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match spans.recv_timeout(left) {
                Ok(span) => batch.push(span),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let count = batch.len() as u64;
        let body = encode(&resource, batch);
        let sent = runtime.block_on(async {
            client
                .post(&url)
                .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                .body(body)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
        });
        match sent {
            Ok(_) => {
                stats.exported.fetch_add(count, Ordering::Relaxed);
                warned = false;
            }
            Err(e) => {
                stats.failed.fetch_add(count, Ordering::Relaxed);
                // Once per run of failures: a dead collector must not flood the log.
                if !warned {
                    tracing::warn!(%url, error = %e, "exporting spans failed; they are dropped (counted in fnhost_trace_spans_failed) until the collector answers");
                    warned = true;
                }
            }
        }
    }
}

/// One export request: every span under one resource and the `fnhost` scope.
pub fn encode(resource: &[KeyValue], spans: Vec<Span>) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource.to_vec(),
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "fnhost".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}
