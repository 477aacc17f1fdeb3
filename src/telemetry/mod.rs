//! Distributed tracing: OpenTelemetry spans for every invocation, exported over OTLP/HTTP.
//!
//! Off unless an endpoint is given. A request's trace is decided when it arrives
//! ([`Tracing::start`]): the incoming `traceparent` is honoured (its sampling decision too:
//! parent-based), else a new trace is sampled by ratio. The ids of the request's spans are
//! made up front, so what the function sees (`traceparent` naming its guest span) and what
//! its outbound calls carry are right before any span is written; spans are written only
//! when the work they describe has ended, from timestamps, and only for sampled traces.

mod context;
mod export;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::{Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::{Span, Status, status::StatusCode};

pub use context::{TraceContext, new_span_id, new_trace_id, sampled_by_ratio};
pub use export::ExportStats;
use export::Exporter;

pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
pub const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// How traces are made and where they go.
#[derive(Clone, Debug)]
pub struct TracingConfig {
    /// The collector's traces URL (`.../v1/traces`).
    pub url: String,
    pub service_name: String,
    /// Share of new traces kept (a sampled parent is always followed).
    pub ratio: f64,
    /// Spans waiting for export, at most; more are dropped and counted.
    pub queue: usize,
}

impl TracingConfig {
    /// The traces URL from the OTLP environment variables' conventions: a base endpoint
    /// gets `/v1/traces` appended (`OTEL_EXPORTER_OTLP_ENDPOINT`), a traces endpoint is
    /// taken as it is (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
    pub fn traces_url(base: Option<&str>, traces: Option<&str>) -> Option<String> {
        if let Some(traces) = traces.filter(|t| !t.is_empty()) {
            return Some(traces.to_string());
        }
        base.filter(|b| !b.is_empty())
            .map(|b| format!("{}/v1/traces", b.trim_end_matches('/')))
    }

    /// The sampling ratio from `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (the
    /// standard names: `always_on`, `always_off`, `traceidratio`, and their `parentbased_`
    /// forms, which is how fnhost samples anyway).
    pub fn ratio_from(sampler: Option<&str>, arg: Option<&str>) -> Result<f64, String> {
        let sampler = sampler.unwrap_or("parentbased_always_on");
        let name = sampler.strip_prefix("parentbased_").unwrap_or(sampler);
        match name {
            "always_on" => Ok(1.0),
            "always_off" => Ok(0.0),
            "traceidratio" => {
                let arg = arg.unwrap_or("1.0");
                arg.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        format!("OTEL_TRACES_SAMPLER_ARG {arg:?} is not a ratio from 0 to 1")
                    })
            }
            other => Err(format!(
                "OTEL_TRACES_SAMPLER {other:?} is not one fnhost knows: use always_on, \
                 always_off or traceidratio (parent-based or not)"
            )),
        }
    }
}

/// The host's tracer.
pub struct Tracing {
    config: TracingConfig,
    exporter: Exporter,
}

impl Tracing {
    pub fn start(config: TracingConfig) -> anyhow::Result<Arc<Self>> {
        let resource = vec![
            attr("service.name", config.service_name.clone()),
            attr("service.version", env!("CARGO_PKG_VERSION")),
            attr("telemetry.sdk.name", "fnhost"),
        ];
        let exporter = Exporter::start(config.url.clone(), resource, config.queue)?;
        Ok(Arc::new(Self { config, exporter }))
    }

    pub fn stats(&self) -> &ExportStats {
        &self.exporter.stats
    }

    /// The trace of a request that arrived with `headers`: its parent's, or a new one.
    pub fn request(self: &Arc<Self>, headers: &http::HeaderMap, name: String) -> Arc<RequestTrace> {
        let header = |name: &http::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let incoming = header(&TRACEPARENT)
            .and_then(|parent| TraceContext::parse(parent, header(&TRACESTATE)));
        self.begin(incoming, name, SpanKind::Server, Vec::new())
    }

    /// The trace of work that continues `parent` (an event, an async run), linked to where
    /// it was caused: `links` are the spans that caused it.
    pub fn continued(
        self: &Arc<Self>,
        parent: Option<TraceContext>,
        name: String,
        links: Vec<TraceContext>,
    ) -> Arc<RequestTrace> {
        self.begin(parent, name, SpanKind::Consumer, links)
    }

    fn begin(
        self: &Arc<Self>,
        incoming: Option<TraceContext>,
        name: String,
        kind: SpanKind,
        links: Vec<TraceContext>,
    ) -> Arc<RequestTrace> {
        let (trace_id, parent, sampled, tracestate) = match incoming {
            Some(parent) => (
                parent.trace_id,
                Some(parent.span_id),
                parent.sampled,
                parent.tracestate,
            ),
            None => {
                let id = new_trace_id();
                (id, None, sampled_by_ratio(&id, self.config.ratio), None)
            }
        };
        Arc::new(RequestTrace {
            tracing: self.clone(),
            trace_id,
            parent,
            span_id: new_span_id(),
            guest_span: new_span_id(),
            sampled,
            tracestate,
            kind,
            start_ns: now_ns(),
            name: Mutex::new(name),
            links,
            recorded: Mutex::new(Recorded::default()),
            pending: AtomicU32::new(1),
        })
    }
}

#[derive(Default)]
struct Recorded {
    attributes: Vec<KeyValue>,
    children: Vec<Span>,
    error: Option<String>,
}

/// One request's (or event's) trace: its span, the guest's span under it, and the children
/// recorded as the work happens. Carried in the request's extensions.
pub struct RequestTrace {
    tracing: Arc<Tracing>,
    pub trace_id: [u8; 16],
    /// The incoming parent span, if any.
    parent: Option<[u8; 8]>,
    /// This request's own span (server, or consumer for an event).
    pub span_id: [u8; 8],
    /// The span of the guest's run, the parent of its outbound and key-value calls.
    pub guest_span: [u8; 8],
    pub sampled: bool,
    tracestate: Option<String>,
    kind: SpanKind,
    start_ns: u64,
    name: Mutex<String>,
    links: Vec<TraceContext>,
    recorded: Mutex<Recorded>,
    /// Who must still [`finish`](RequestTrace::finish) before the span ends: its starter,
    /// and each [`hold`](RequestTrace::hold) (a guest instance still streaming).
    pending: AtomicU32,
}

impl std::fmt::Debug for RequestTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestTrace({})", self.context(self.span_id))
    }
}

impl RequestTrace {
    /// This trace with `span` as the parent of what comes next, for `traceparent`.
    pub fn context(&self, span: [u8; 8]) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id,
            span_id: span,
            sampled: self.sampled,
            tracestate: self.tracestate.clone(),
        }
    }

    /// Sets `traceparent` (naming `span`) and `tracestate` on outgoing `headers`.
    pub fn inject(&self, headers: &mut http::HeaderMap, span: [u8; 8]) {
        let context = self.context(span);
        if let Ok(value) = http::HeaderValue::from_str(&context.traceparent()) {
            headers.insert(TRACEPARENT, value);
        }
        match context
            .tracestate
            .as_deref()
            .and_then(|s| http::HeaderValue::from_str(s).ok())
        {
            Some(value) => {
                headers.insert(TRACESTATE, value);
            }
            None => {
                headers.remove(TRACESTATE);
            }
        }
    }

    pub fn rename(&self, name: String) {
        *self.name.lock().unwrap_or_else(|p| p.into_inner()) = name;
    }

    /// An attribute of the request's own span.
    pub fn set(&self, key: &'static str, value: impl Into<Value>) {
        if self.sampled {
            let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
            recorded.attributes.push(kv(key, value.into()));
        }
    }

    /// A child span that ran from `start_ns` to `end_ns` under `parent`.
    #[allow(clippy::too_many_arguments)]
    pub fn child(
        &self,
        span_id: [u8; 8],
        parent: [u8; 8],
        name: impl Into<String>,
        kind: SpanKind,
        start_ns: u64,
        end_ns: u64,
        attributes: Vec<(&'static str, Value)>,
        error: Option<String>,
    ) {
        if !self.sampled {
            return;
        }
        let span = Span {
            trace_id: self.trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: parent.to_vec(),
            name: name.into(),
            kind: kind as i32,
            start_time_unix_nano: start_ns,
            end_time_unix_nano: end_ns.max(start_ns),
            attributes: attributes.into_iter().map(|(k, v)| kv(k, v)).collect(),
            status: error.map(|message| Status {
                message,
                code: StatusCode::Error as i32,
            }),
            ..Default::default()
        };
        let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        recorded.children.push(span);
    }

    /// One more party the span waits for (see [`finish`](Self::finish)).
    pub fn hold(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// This party is done, with `error` if it failed; the last one ends the request's span
    /// and exports it with its children.
    pub fn finish(&self, error: Option<String>) {
        if !self.sampled {
            return;
        }
        if let Some(error) = error {
            let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
            recorded.error.get_or_insert(error);
        }
        if self.pending.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let recorded =
            std::mem::take(&mut *self.recorded.lock().unwrap_or_else(|p| p.into_inner()));
        let error = recorded.error;
        let span = Span {
            trace_id: self.trace_id.to_vec(),
            span_id: self.span_id.to_vec(),
            trace_state: self.tracestate.clone().unwrap_or_default(),
            parent_span_id: self.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: self.name.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            kind: self.kind as i32,
            start_time_unix_nano: self.start_ns,
            end_time_unix_nano: now_ns(),
            attributes: recorded.attributes,
            links: self
                .links
                .iter()
                .map(|l| Link {
                    trace_id: l.trace_id.to_vec(),
                    span_id: l.span_id.to_vec(),
                    ..Default::default()
                })
                .collect(),
            status: error.map(|message| Status {
                message,
                code: StatusCode::Error as i32,
            }),
            ..Default::default()
        };
        let exporter = &self.tracing.exporter;
        exporter.send(span);
        for child in recorded.children {
            exporter.send(child);
        }
    }
}

/// An attribute value.
#[derive(Clone, Debug)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Str(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Str(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(match value {
                Value::Str(s) => any_value::Value::StringValue(s),
                Value::Int(i) => any_value::Value::IntValue(i),
                Value::Bool(b) => any_value::Value::BoolValue(b),
            }),
        }),
        ..Default::default()
    }
}

fn attr(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, Value::Str(value.into()))
}

pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind as Kind;

/// Unix time in nanoseconds, the unit of span timestamps.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_url_follows_the_otlp_variables() {
        assert_eq!(
            TracingConfig::traces_url(Some("http://collector:4318/"), None).as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            TracingConfig::traces_url(Some("http://a:4318"), Some("http://b/traces")).as_deref(),
            Some("http://b/traces")
        );
        assert_eq!(TracingConfig::traces_url(None, None), None);
    }

    #[test]
    fn samplers_read_as_ratios() {
        assert_eq!(TracingConfig::ratio_from(None, None), Ok(1.0));
        assert_eq!(
            TracingConfig::ratio_from(Some("parentbased_traceidratio"), Some("0.01")),
            Ok(0.01)
        );
        assert_eq!(TracingConfig::ratio_from(Some("always_off"), None), Ok(0.0));
        assert!(TracingConfig::ratio_from(Some("traceidratio"), Some("2")).is_err());
        assert!(TracingConfig::ratio_from(Some("jaeger_remote"), None).is_err());
    }
}
