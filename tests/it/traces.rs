//! OpenTelemetry traces, checked by a real OTLP/HTTP receiver: `tools/otlp_receiver.py`
//! decodes what fnhost sends with the official protobuf definitions (opentelemetry-proto,
//! from PyPI) and writes each span as a JSON line.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestHost, eventually};

/// The receiver, stopped when dropped; its spans land in `spans`.
struct Receiver {
    child: Child,
    port: u16,
    spans: PathBuf,
}

impl Receiver {
    fn start(python: &Path, dir: &Path) -> Receiver {
        let spans = dir.join("spans.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/tools/otlp_receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(&spans)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the receiver prints its port");
        Receiver { child, port, spans }
    }

    /// Every span received so far of trace `trace_id`.
    fn trace(&self, trace_id: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.spans)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|s| s["trace_id"] == trace_id)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SERVER: u64 = 2;
const CLIENT: u64 = 3;

/// A request that calls a second function over outbound HTTP is one trace: the incoming
/// `traceparent` is its parent; the front function's server span holds its admission and
/// guest spans; the guest's outbound call is a client span, and the second function's
/// server span is that client span's child (the call carried `traceparent`). Attributes
/// follow the HTTP semantic conventions and name function, version and cold start.
#[tokio::test]
async fn a_call_across_two_functions_is_one_trace_with_its_parents_right() {
    let Some(python) = crate::common::tool("FNHOST_PYTHON", "traces against an OTLP receiver")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(&python, dir.path());
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let host = TestHost::start_with_env(
        &dir.path().join("data"),
        &["--outbound-allow-private", "127.0.0.0/8"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "shop"),
        ],
    )
    .await;
    let origin = host.data_url.trim_end_matches('/').to_string();
    let allow = json!({"allow_outbound": [origin]});
    host.deploy(
        "front",
        "hostile",
        &format!("config={}", crate::common::urlencode(&allow.to_string())),
    )
    .await;
    host.deploy("back", "hello", "").await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let answer = host
        .http
        .get(format!("{origin}/front/outbound?url={origin}/back/"))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .header("tracestate", "shop=checkout")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "status 200");

    // front: server, admission, guest, client; back: server, admission, guest.
    eventually(Duration::from_secs(15), "the trace exported", || async {
        let spans = receiver.trace(trace_id);
        (spans.len() < 7).then(|| format!("{spans:#?}"))
    })
    .await;
    let spans = receiver.trace(trace_id);
    let by_id: BTreeMap<String, &Value> = spans
        .iter()
        .map(|s| (s["span_id"].as_str().unwrap().to_string(), s))
        .collect();
    let find = |name: &str| -> &Value {
        spans
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no span {name}: {spans:#?}"))
    };
    let front = find("GET /front");
    let back = find("GET /back");
    assert_eq!(front["kind"], SERVER);
    assert_eq!(
        front["parent"], caller_span,
        "the caller's span is the parent"
    );
    assert_eq!(front["service"], "shop");
    let attributes = &front["attributes"];
    assert_eq!(attributes["http.request.method"], "GET");
    assert_eq!(attributes["url.path"], "/front/outbound");
    assert_eq!(attributes["http.route"], "/front");
    assert_eq!(attributes["http.response.status_code"], 200);
    assert_eq!(attributes["faas.name"], "front");
    assert_eq!(attributes["faas.version"], "latest");
    assert!(attributes["faas.coldstart"].is_boolean(), "{attributes}");

    let children_of = |parent: &Value| -> Vec<&Value> {
        spans
            .iter()
            .filter(|s| s["parent"] == parent["span_id"])
            .collect()
    };
    let names = |spans: Vec<&Value>| -> Vec<String> {
        let mut names: Vec<String> = spans
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        names(children_of(front)),
        ["admission", "guest"],
        "{spans:#?}"
    );
    let guest = children_of(front)
        .into_iter()
        .find(|s| s["name"] == "guest")
        .unwrap();
    let client = children_of(guest)
        .into_iter()
        .find(|s| s["kind"] == CLIENT)
        .unwrap_or_else(|| panic!("no client span under the guest: {spans:#?}"));
    assert_eq!(client["name"], "GET");
    assert_eq!(client["attributes"]["url.full"], format!("{origin}/back/"));
    assert_eq!(client["attributes"]["http.response.status_code"], 200);
    assert_eq!(
        back["parent"], client["span_id"],
        "the outbound call carried traceparent"
    );
    assert_eq!(names(children_of(back)), ["admission", "guest"]);
    // Every parent is in the trace (or is the caller's), and children sit inside parents.
    for span in &spans {
        let parent = span["parent"].as_str().unwrap();
        if parent == caller_span {
            continue;
        }
        let parent = by_id
            .get(parent)
            .unwrap_or_else(|| panic!("{span} has a parent outside the trace"));
        assert!(
            span["start"].as_u64() >= parent["start"].as_u64(),
            "{span} {parent}"
        );
    }

    // Without a traceparent, a request starts a trace of its own.
    let (code, _, _) = host.call_text("/back").await;
    assert_eq!(code, 200);
    eventually(Duration::from_secs(15), "a root span", || async {
        let text = std::fs::read_to_string(&receiver.spans).unwrap_or_default();
        let root = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|s| s["name"] == "GET /back" && s["parent"] == "" && s["trace_id"] != trace_id);
        (!root).then(|| "no root span of its own yet".to_string())
    })
    .await;
}

/// A collector that is down costs requests nothing: every request is answered, and the
/// spans that could not be sent are counted as failed or dropped, not waited for.
#[tokio::test]
async fn a_dead_collector_changes_nothing_for_requests() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let host = TestHost::start_with(
        &dir.path().join("data"),
        &[
            "--otlp-endpoint",
            &format!("http://127.0.0.1:{port}"),
            "--trace-queue",
            "64",
        ],
    )
    .await;
    host.deploy("hello", "hello", "").await;
    let mut ok = 0;
    for _ in 0..300 {
        let (code, _, _) = host.call_text("/hello").await;
        ok += u32::from(code == 200);
    }
    assert_eq!(ok, 300);
    eventually(
        Duration::from_secs(15),
        "the lost spans counted",
        || async {
            let failed = host.metric("fnhost_trace_spans_failed_total", &[]).await;
            let dropped = host.metric("fnhost_trace_spans_dropped_total", &[]).await;
            (failed + dropped < 300.0).then(|| format!("{failed} failed, {dropped} dropped"))
        },
    )
    .await;
    assert_eq!(
        host.metric("fnhost_trace_spans_exported_total", &[]).await,
        0.0
    );
}
