//! The data plane over real HTTP: what a function sees, streaming in both directions,
//! HTTP/1.1 keep-alive and h2c, and a failing function next to a healthy one.

use crate::common::TestHost;
use serde_json::Value;

/// The function sees the path after its name, the query, method, headers and the whole body,
/// and streams a large body back unchanged.
#[tokio::test]
async fn echo_sees_the_request_and_streams_large_bodies_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("echo", "echo", "").await;
    host.publish("echo").await;

    let body: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let response = host
        .http
        .put(format!("{}/echo@1/items/42?colour=blue&n=1", host.data_url))
        .header("x-user", "ada")
        .header("content-type", "application/octet-stream")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["echo-method"], "PUT");
    assert_eq!(response.headers()["echo-path"], "/items/42?colour=blue&n=1");
    assert_eq!(response.headers()["fnhost-version"], "1");
    let seen: Value =
        serde_json::from_str(response.headers()["echo-headers"].to_str().unwrap()).unwrap();
    assert_eq!(seen["x-user"], serde_json::json!(["ada"]));
    let echoed = response.bytes().await.unwrap();
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "echoed body differs");

    // A bare /NAME reaches the function as "/".
    let response = host.call("/echo").await;
    assert_eq!(response.headers()["echo-path"], "/");
}

/// HTTP/2 over cleartext (prior knowledge) and HTTP/1.1 keep-alive both work.
#[tokio::test]
async fn serves_h2c_and_http1_keep_alive() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("hello", "hello", "env=GREETING%3Dh2").await;

    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let requests = (0..20).map(|_| {
        let h2 = h2.clone();
        let url = format!("{}/hello", host.data_url);
        async move { h2.get(url).send().await.unwrap() }
    });
    for response in futures::future::join_all(requests).await {
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "h2, world!\n");
    }

    let h1 = reqwest::Client::builder().http1_only().build().unwrap();
    for _ in 0..50 {
        let response = h1
            .get(format!("{}/hello", host.data_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_11);
        assert_eq!(response.text().await.unwrap(), "h2, world!\n");
    }
    let health = h1
        .get(format!("{}/healthz", host.data_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// A function that panics gets 500 with an error id that is also in the host log (with the
/// guest's own panic message), leaks no host internals, and the host keeps serving other
/// functions, also while panics continue.
#[tokio::test]
async fn a_panicking_function_gets_500_and_the_host_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("panic", "panic", "").await;
    host.deploy("hello", "hello", "").await;

    let response = host.call("/panic/now").await;
    assert_eq!(response.status(), 500);
    assert_eq!(response.headers()["fnhost-version"], "latest");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "trap");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("trapped"), "{message}");
    assert!(
        !message.contains(host.data_dir.to_str().unwrap()),
        "leaks a host path: {message}"
    );
    let error_id = body["error"]["error_id"].as_str().unwrap().to_string();
    assert_eq!(error_id.len(), 16);

    let mixed = (0..40).map(|i| {
        let path = if i % 2 == 0 { "/panic" } else { "/hello" };
        host.call_text(path)
    });
    for (i, (status, _, _)) in futures::future::join_all(mixed)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(status, if i % 2 == 0 { 500 } else { 200 });
    }
    assert_eq!(host.call_text("/hello").await.0, 200);
    // The log names the same error id, function and version.
    let log = host.log();
    let line = log
        .lines()
        .find(|l| l.contains(&error_id))
        .expect("error id in the log");
    assert!(line.contains("panic") && line.contains("latest"), "{line}");
    // ...and what the guest printed before failing: its panic message.
    assert!(line.contains("panic function called with /now"), "{line}");
}
