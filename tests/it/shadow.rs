//! Shadow traffic: an alias mirrors its requests to a candidate; clients only ever get the
//! primary's answer, the shadow sees `fnhost-shadow: 1`, and matches and mismatches are
//! counted per version (admin API, `/metrics`).

use std::time::{Duration, Instant};

use crate::common::TestHost;
use reqwest::Method;
use serde_json::{Value, json};

async fn set_alias(host: &TestHost, body: Value) {
    let response = host
        .admin(Method::PUT, "/v1/functions/shop/aliases/prod")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(status, 200, "{}", response.text().await.unwrap());
}

async fn shadow_report(host: &TestHost, version: u64) -> Value {
    let (_, health) = host.get_json("/v1/functions/shop/health").await;
    health["shadow"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == version)
        .cloned()
        .unwrap_or(json!({"sent": 0, "dropped": 0, "matches": 0, "mismatches": 0}))
}

/// Waits until `version`'s shadow results account for `total` mirrored requests.
async fn settled(host: &TestHost, version: u64, total: u64) -> Value {
    let started = Instant::now();
    loop {
        let report = shadow_report(host, version).await;
        let seen = report["sent"].as_u64().unwrap() + report["dropped"].as_u64().unwrap();
        if seen >= total {
            return report;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{report}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn mirrored_requests_never_change_what_clients_get_and_are_compared() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    // Version 1 and 3 answer the same; version 2 answers differently.
    for variant in ["blue", "green", "blue"] {
        host.deploy("shop", "hostile", &format!("env=VARIANT%3D{variant}"))
            .await;
        assert_eq!(host.publish("shop").await.0, 201);
    }
    let expected = host.call_text("/shop@1/").await.2;
    assert!(expected.ends_with("blue"), "{expected}");

    set_alias(
        &host,
        json!({"routes": [{"version": 1, "percent": 100}], "mirror": {"version": 2, "percent": 100}}),
    )
    .await;
    for _ in 0..40 {
        let (status, version, body) = host.call_text("/shop@prod/").await;
        assert_eq!(
            (status, version.as_str(), body.as_str()),
            (200, "1", expected.as_str())
        );
    }
    // POST bodies are copied to the shadow too.
    for _ in 0..10 {
        let response = host
            .http
            .post(format!("{}/shop@prod/", host.data_url))
            .body("order=42")
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["fnhost-version"], "1");
        assert_eq!(response.text().await.unwrap(), expected);
    }
    let report = settled(&host, 2, 50).await;
    let dropped = report["dropped"].as_u64().unwrap();
    assert!(
        dropped <= 5,
        "sequential clients leave room for shadows: {report}"
    );
    assert_eq!(
        report["mismatches"].as_u64().unwrap(),
        50 - dropped,
        "{report}"
    );
    assert_eq!(report["matches"], 0);

    // The shadow knew it was one (and the primary did not).
    let (_, logs) = host
        .get_json("/v1/functions/shop/logs?version=2&limit=200")
        .await;
    let shadow_lines = logs["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["text"]
                .as_str()
                .unwrap_or("")
                .contains("fnhost-shadow: 1")
        })
        .count();
    assert!(shadow_lines as u64 >= 50 - dropped, "{logs}");
    let (_, primary_logs) = host.get_json("/v1/functions/shop/logs?version=1").await;
    assert!(!primary_logs.to_string().contains("fnhost-shadow"));

    // A shadow that answers the same is counted as matching.
    set_alias(
        &host,
        json!({"routes": [{"version": 1, "percent": 100}], "mirror": {"version": 3, "percent": 100}}),
    )
    .await;
    for _ in 0..20 {
        assert_eq!(host.call_text("/shop@prod/").await.2, expected);
    }
    let report = settled(&host, 3, 20).await;
    let dropped = report["dropped"].as_u64().unwrap();
    assert_eq!(
        report["matches"].as_u64().unwrap(),
        20 - dropped,
        "{report}"
    );
    assert_eq!(report["mismatches"], 0);

    let metrics = host.metrics().await;
    assert!(
        metrics.contains(
            r#"fnhost_shadow_requests_total{function="shop",version="2",result="mismatch"}"#
        ),
        "{metrics}"
    );
    // Shadows are not billed as invocations: usage counts only what clients sent.
    let usage = host.get_json("/v1/usage?function=shop&by=version").await.1;
    let versions: Vec<&str> = usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert!(
        !versions.contains(&"2") && !versions.contains(&"3"),
        "{usage}"
    );
}

/// A request body of unknown length (HTTP/2 without content-length) larger than the copy
/// limit is not mirrored: the primary streams it and answers as usual, and the shadow is
/// counted as dropped (it once got 400 because the copy hit its limit).
#[tokio::test]
async fn large_bodies_of_unknown_length_reach_the_primary_unmirrored() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    all_of_prod_mirrored_to_version_2(&host).await;
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..32)
        .map(|_| Ok(bytes::Bytes::from(vec![b'x'; 64 << 10])))
        .collect();
    let response = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .post(format!("{}/shop@prod/echo-size", host.data_url))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        format!("{} bytes", 32 << 16)
    );
    let report = settled(&host, 2, 1).await;
    assert_eq!(report["dropped"], 1, "{report}");
}

/// A body of unknown length that fits the copy limit is mirrored as it streams: the shadow
/// reads the same bytes the primary does, and the answers are compared (they were never
/// mirrored before the copy streamed).
#[tokio::test]
async fn bodies_of_unknown_length_are_mirrored_as_they_stream() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    all_of_prod_mirrored_to_version_2(&host).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for _ in 0..3 {
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..4)
            .map(|_| Ok(bytes::Bytes::from(vec![b'x'; 64 << 10])))
            .collect();
        let response = client
            .post(format!("{}/shop@prod/echo-size", host.data_url))
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), format!("{} bytes", 4 << 16));
    }
    let report = settled(&host, 2, 3).await;
    assert_eq!(report["dropped"], 0, "{report}");
    assert_eq!(report["sent"], 3, "{report}");
    assert_eq!(
        report["matches"], 3,
        "the shadow read the same 256 KiB: {report}"
    );
}

/// `shop`: versions 1 (blue) and 2 (green) of the hostile function; `prod` sends everything to
/// 1 and mirrors everything to 2.
async fn all_of_prod_mirrored_to_version_2(host: &TestHost) {
    for variant in ["blue", "green"] {
        host.deploy("shop", "hostile", &format!("env=VARIANT%3D{variant}"))
            .await;
        assert_eq!(host.publish("shop").await.0, 201);
    }
    set_alias(
        host,
        json!({"routes": [{"version": 1, "percent": 100}], "mirror": {"version": 2, "percent": 100}}),
    )
    .await;
}
