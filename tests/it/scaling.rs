//! Warm pools, provisioned concurrency and scaling to zero, over real HTTP: every request
//! gets a fresh instance (a counter function always sees 1), used pools refill in the
//! background, provisioned instances are warm before the first request, idle versions drop
//! their instances and code, and a full instance pool queues and then answers 503.

use std::time::Duration;

use crate::common::{TestHost, eventually};
use reqwest::Method;
use serde_json::{Value, json};

/// The warm pools of `function` from the admin API.
async fn pools(host: &TestHost, function: &str) -> Vec<Value> {
    let (status, body) = host
        .get_json(&format!("/v1/functions/{function}/scaling"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["pools"].as_array().unwrap().clone()
}

fn pool<'a>(pools: &'a [Value], version: &Value) -> Option<&'a Value> {
    pools.iter().find(|p| &p["version"] == version)
}

async fn status(host: &TestHost) -> Value {
    host.get_json("/v1/status").await.1
}

async fn set_provisioned(host: &TestHost, function: &str, body: Value) -> Value {
    let response = host
        .admin(Method::PUT, &format!("/v1/functions/{function}/scaling"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let code = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(code, 200, "{body}");
    body
}

/// A counter in a global and on the heap reads 1 on every request, sequential or concurrent,
/// while most requests are served by pre-warmed instances; the pool refills after use.
#[tokio::test]
async fn every_request_gets_a_fresh_instance_and_the_pool_refills() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("counter", "counter", "").await;

    for _ in 0..40 {
        let (code, _, body) = host.call_text("/counter").await;
        assert_eq!((code, body.as_str()), (200, "1 1\n"));
        // Leave the background refill a moment, as real traffic does between requests.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let concurrent = (0..16).map(|_| host.call_text("/counter"));
    for (code, _, body) in futures::future::join_all(concurrent).await {
        assert_eq!((code, body.as_str()), (200, "1 1\n"));
    }

    let latest = json!("$LATEST");
    eventually(Duration::from_secs(5), "the pool refilling", || async {
        let pools = pools(&host, "counter").await;
        let p = pool(&pools, &latest)?.clone();
        (p["warm"].as_u64() == p["target"].as_u64() && p["warm"].as_u64() >= Some(2))
            .then_some(())
            .map_or(Some(format!("{p}")), |_| None)
    })
    .await;

    let usage = host.get_json("/v1/usage?function=counter").await.1;
    let row = &usage["rows"][0];
    assert_eq!(row["invocations"], 56, "{usage}");
    let cold = row["cold_starts"].as_u64().unwrap();
    assert!(
        (1..=20).contains(&cold),
        "most requests should find a warm instance: {cold} cold starts of 56"
    );
    // Cold starts plus warm instances consumed account for every invocation.
    let scaling = &status(&host).await["scaling"];
    let consumed = scaling["prewarmed"].as_u64().unwrap()
        - scaling["discarded"].as_u64().unwrap()
        - scaling["warm_instances"].as_u64().unwrap();
    assert_eq!(cold + consumed, 56, "{scaling}");
}

/// Provisioned concurrency is warm before any request: function-wide counts split over the
/// versions `$DEFAULT` routes to, per-version counts stand alone, the first request is not a
/// cold start, and provisioned time is metered.
#[tokio::test]
async fn provisioned_instances_are_warm_before_the_first_request() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("shop", "counter", "").await;
    assert_eq!(host.publish("shop").await.0, 201);

    let answer = set_provisioned(&host, "shop", json!({"provisioned": 4})).await;
    assert_eq!(answer["policy"]["provisioned"], 4);
    set_provisioned(
        &host,
        "shop",
        json!({"provisioned": 2, "version": "latest"}),
    )
    .await;
    let (v1, latest) = (json!(1), json!("$LATEST"));
    eventually(Duration::from_secs(5), "provisioned warm-up", || async {
        let pools = pools(&host, "shop").await;
        let warm = |v: &Value| pool(&pools, v).and_then(|p| p["warm"].as_u64());
        (warm(&v1) == Some(4) && warm(&latest) == Some(2))
            .then_some(())
            .map_or(Some(format!("{pools:?}")), |_| None)
    })
    .await;
    let metrics = host.metrics().await;
    assert!(
        metrics.contains(
            r#"fnhost_warm_instances{namespace="default",function="shop",version="1"} 4"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"fnhost_provisioned_instances{namespace="default",function="shop",version="1"} 4"#
    ));

    // The first request finds a provisioned instance.
    assert_eq!(host.call_text("/shop").await.2, "1 1\n");
    let usage = host.get_json("/v1/usage?function=shop&by=version").await.1;
    let v1_usage = usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == "1")
        .unwrap()
        .clone();
    assert_eq!(
        (
            v1_usage["invocations"].as_u64(),
            v1_usage["cold_starts"].as_u64()
        ),
        (Some(1), Some(0)),
        "{usage}"
    );
    // Provisioned time is metered by the scaler's tick (1 s) apart from invocations.
    eventually(Duration::from_secs(5), "provisioned metering", || async {
        let usage = host.get_json("/v1/usage?function=shop&by=version").await.1;
        let ms = |v: &str| {
            usage["rows"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["version"] == v)
                .and_then(|r| r["provisioned_ms"].as_u64())
                .unwrap_or(0)
        };
        (ms("1") >= 4000 && ms("latest") >= 2000)
            .then_some(())
            .map_or(Some(format!("{usage}")), |_| None)
    })
    .await;

    // Removing provisioned concurrency leaves only what traffic asks for.
    set_provisioned(&host, "shop", json!({"provisioned": 0})).await;
    let (_, details) = host.get_json("/v1/functions/shop/scaling").await;
    assert_eq!(details["policy"]["versions"]["latest"], 2);
    // Unknown versions are refused with a clear error.
    let response = host
        .admin(Method::PUT, "/v1/functions/shop/scaling")
        .json(&json!({"provisioned": 1, "version": "9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().contains("no version 9"));
}

/// A version idle past `--idle-timeout` releases its warm instances, then its pool and its
/// compiled code; the next request loads the code from the disk cache and still works.
#[tokio::test]
async fn idle_versions_scale_to_zero_and_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_with(&dir.path().join("data"), &["--idle-timeout", "1s"]).await;
    host.deploy("nap", "counter", "").await;
    for _ in 0..5 {
        assert_eq!(host.call_text("/nap").await.0, 200);
    }
    assert!(!pools(&host, "nap").await.is_empty());

    eventually(Duration::from_secs(8), "scale to zero", || async {
        let status = status(&host).await;
        let idle = pools(&host, "nap").await.is_empty()
            && status["scaling"]["warm_instances"] == 0
            && status["engine"]["loaded_components"] == 0;
        (idle)
            .then_some(())
            .map_or(Some(format!("{status}")), |_| None)
    })
    .await;
    let status_now = status(&host).await;
    assert!(status_now["scaling"]["unloaded"].as_u64() >= Some(1));
    assert!(status_now["scaling"]["discarded"].as_u64() >= Some(1));

    let loads_before = status_now["engine"]["compiled_cache_loads"]
        .as_u64()
        .unwrap();
    assert_eq!(host.call_text("/nap").await.2, "1 1\n");
    let after = status(&host).await;
    assert_eq!(
        after["engine"]["compiled_cache_loads"].as_u64(),
        Some(loads_before + 1),
        "code comes back from the disk cache, not a recompile: {after}"
    );
    assert_eq!(after["engine"]["compiles"], 1);
}

/// When the instance pool is full, requests wait in the host's bounded queue and then get
/// 503 with Retry-After instead of failing to instantiate; the host keeps serving.
#[tokio::test]
async fn a_full_instance_pool_queues_then_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_with(
        &dir.path().join("data"),
        &[
            "--pool-instances",
            "4",
            "--max-warm",
            "1",
            "--queue-timeout",
            "300ms",
        ],
    )
    .await;
    host.deploy("slow", "hostile", "").await;
    host.deploy("hello", "hello", "").await;
    let requests = (0..8).map(|_| {
        host.http
            .get(format!("{}/slow/sleep?ms=1000", host.data_url))
            .send()
    });
    let mut statuses = Vec::new();
    for response in futures::future::join_all(requests).await {
        let response = response.unwrap();
        if response.status() == 503 {
            assert_eq!(response.headers()["retry-after"], "1");
            let body = response.text().await.unwrap();
            assert!(body.contains("the host"), "{body}");
            statuses.push(503);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 503, 503, 503, 503, 503]);
    assert_eq!(host.call_text("/hello").await.0, 200);
    assert!(!host.log().contains("panicked"));
}
