//! Metering and observability over real HTTP: usage totals match what was sent, survive a
//! restart and a kill -9 (up to the flush interval), `/metrics` parses as Prometheus text with
//! matching counters, and per-version health reports error rates.

use std::time::Duration;

use crate::common::{TestHost, sample_sum};
use reqwest::Method;
use serde_json::Value;

async fn send(host: &TestHost, path: &str, n: usize) {
    for _ in 0..n {
        host.call(path).await.bytes().await.unwrap();
    }
}

/// Deploys `shop` (version 1 and a different $LATEST) and `boom` (always panics), then sends
/// 30 requests to shop@1, 20 to shop@latest, 10 through $DEFAULT and 7 to boom.
async fn traffic(host: &TestHost) {
    host.deploy("shop", "hello", "env=GREETING%3Done").await;
    host.publish("shop").await;
    host.deploy("shop", "hello", "env=GREETING%3Dtwo").await;
    host.deploy("boom", "panic", "").await;
    send(host, "/shop@1", 30).await;
    send(host, "/shop@latest", 20).await;
    send(host, "/shop", 10).await;
    send(host, "/boom", 7).await;
}

async fn usage(host: &TestHost, query: &str) -> Vec<Value> {
    let (status, report) = host.get_json(&format!("/v1/usage?{query}")).await;
    assert_eq!(status, 200, "{report}");
    report["rows"].as_array().unwrap().clone()
}

fn row<'a>(rows: &'a [Value], function: &str, field: &str, value: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["function"] == function && r[field] == value)
        .unwrap_or_else(|| panic!("no {function} {field}={value} in {rows:?}"))
}

/// Usage counts match the requests sent, by version, by alias and by status; billing rounds
/// each invocation up to whole milliseconds and GB-s follow from the configured memory.
#[tokio::test]
async fn usage_totals_match_the_requests_sent() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    traffic(&host).await;

    let rows = usage(&host, "by=version").await;
    let v1 = row(&rows, "shop", "version", "1");
    let latest = row(&rows, "shop", "version", "latest");
    let boom = row(&rows, "boom", "version", "latest");
    assert_eq!(v1["invocations"], 40, "30 direct + 10 via $DEFAULT: {v1}");
    assert_eq!(latest["invocations"], 20);
    assert_eq!(
        (v1["errors"].as_u64(), v1["status_2xx"].as_u64()),
        (Some(0), Some(40))
    );
    assert_eq!(boom["invocations"], 7);
    assert_eq!(
        (boom["errors"].as_u64(), boom["status_5xx"].as_u64()),
        (Some(7), Some(7))
    );
    // The first request instantiates on the request path; later ones mostly find a
    // pre-warmed instance (tests/scaling.rs checks the accounting exactly).
    let cold = v1["cold_starts"].as_u64().unwrap();
    assert!((1..=40).contains(&cold), "{v1}");
    for r in [v1, latest, boom] {
        let invocations = r["invocations"].as_u64().unwrap();
        let billed = r["billed_ms"].as_u64().unwrap();
        assert!(
            billed >= invocations,
            "each invocation bills at least 1 ms: {r}"
        );
        let gb_s = r["gb_seconds"].as_f64().unwrap();
        let expected = 128.0 / 1024.0 * billed as f64 / 1000.0;
        assert!((gb_s - expected).abs() < 1e-9, "{gb_s} vs {expected}");
        assert!(r["p50_ms"].as_f64().unwrap() <= r["p99_ms"].as_f64().unwrap());
    }

    let by_alias = usage(&host, "by=alias&function=shop").await;
    assert_eq!(
        row(&by_alias, "shop", "alias", "$DEFAULT")["invocations"],
        10
    );
    assert_eq!(row(&by_alias, "shop", "alias", "")["invocations"], 50);
    let by_function = usage(&host, "by=function").await;
    assert_eq!(by_function.len(), 2);

    // Health: boom fails every request, shop none.
    let (_, health) = host.get_json("/v1/functions/boom/health?window=60").await;
    assert_eq!(health["versions"][0]["error_rate"], 1.0);
    let (_, health) = host.get_json("/v1/functions/shop/health").await;
    let versions = health["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert!(versions.iter().all(|v| v["error_rate"] == 0.0));
    assert_eq!(versions[0]["version"], 1);
    assert_eq!(versions[0]["requests"], 40);
}

/// Usage is persisted: all of it across a clean restart, and everything older than the flush
/// interval across a kill -9.
#[tokio::test]
async fn usage_survives_restarts_and_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = TestHost::start(&data).await;
    traffic(&host).await;
    assert!(host.terminate());
    let host = TestHost::start_with(&data, &["--usage-flush-interval", "200ms"]).await;
    let rows = usage(&host, "by=function&since=86400").await;
    assert_eq!(row(&rows, "shop", "function", "shop")["invocations"], 60);
    assert_eq!(row(&rows, "boom", "function", "boom")["invocations"], 7);

    send(&host, "/shop@1", 5).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    host.kill9();
    let host = TestHost::start(&data).await;
    let rows = usage(&host, "by=function&since=86400").await;
    assert_eq!(row(&rows, "shop", "function", "shop")["invocations"], 65);
}

/// `/metrics` needs the token, parses as Prometheus text, and its counters match.
#[tokio::test]
async fn metrics_parse_and_match_the_requests_sent() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    traffic(&host).await;
    let anonymous = host
        .http
        .get(format!("{}/metrics", host.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let response = host.admin(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let value = |name: &str, labels: &[(&str, &str)]| sample_sum(&scrape, name, labels);
    let invocations = "fnhost_invocations_total";
    assert_eq!(
        value(
            invocations,
            &[
                ("function", "shop"),
                ("version", "1"),
                ("alias", ""),
                ("status", "2xx")
            ]
        ),
        30.0
    );
    assert_eq!(
        value(invocations, &[("function", "shop"), ("alias", "$DEFAULT")]),
        10.0
    );
    assert_eq!(
        value(invocations, &[("function", "boom"), ("status", "5xx")]),
        7.0
    );
    let cold = value("fnhost_cold_starts_total", &[("function", "shop")]);
    assert!((1.0..=60.0).contains(&cold), "{cold}");
    // Cold starts are counted once per instantiation on the request path: cold starts plus
    // the pre-warmed instances requests consumed equal the 67 invocations. A refill may be
    // between its steps at one scrape, so read until the books balance.
    let mut books = String::new();
    for _ in 0..60 {
        let text = host.metrics().await;
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        let total = |name: &str| sample_sum(&scrape, name, &[]);
        let (cold, made, discarded, warm) = (
            total("fnhost_cold_starts_total"),
            total("fnhost_prewarmed_instances_total"),
            total("fnhost_warm_discarded_total"),
            total("fnhost_warm_instances"),
        );
        books = format!("cold {cold} + made {made} - discarded {discarded} - warm {warm}");
        if cold + made - discarded - warm == 67.0 {
            books.clear();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(books.is_empty(), "{books} != 67 invocations");
    assert_eq!(value("fnhost_compiles_total", &[]), 2.0, "{text}");
    assert!(value("fnhost_resident_memory_bytes", &[]) > 1e6);
    // In flight per version: every request has finished.
    assert!(scrape.samples.iter().any(|s| s.metric == "fnhost_in_flight"
        && s.labels.get("function") == Some("shop")
        && s.labels.get("version") == Some("1")));
    assert_eq!(value("fnhost_in_flight", &[("function", "shop")]), 0.0);
    // Bounded labels: no request ids or paths anywhere.
    assert!(!text.contains("request_id") && !text.contains("path="));
}
