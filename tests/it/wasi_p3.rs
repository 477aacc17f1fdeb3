//! WASI 0.3 components (`wasi:http/service`, built with the `wasip3` crate) beside WASI 0.2
//! ones: they deploy, serve, stream bodies both ways, are versioned, split by an alias with a
//! 0.2 version of the same function, rolled out and rolled back; limits, timeouts, logs,
//! metering and warm pools hold for them; instance reuse keeps state only when asked.

use std::time::{Duration, Instant};

use crate::common::{TestHost, eventually, urlencode};
use crate::rollout::{Load, default_routes, finished, start_rollout};
use reqwest::Method;
use serde_json::json;

/// Sends `n` requests to `path`, 16 at a time; returns each body's count.
async fn tally(host: &TestHost, path: &str, n: usize) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let calls = chunk.iter().map(|_| host.call_text(path));
        for (status, _, body) in futures::future::join_all(calls).await {
            assert_eq!(status, 200, "{body}");
            *counts.entry(body.trim().to_string()).or_default() += 1;
        }
    }
    counts
}

/// A 0.3 component deploys (the upload names its world), serves, streams a 3 MiB request
/// body back as it arrives and a 5 MiB response it writes in chunks, gets a fresh instance
/// per request, reads its environment, and its output reaches the function's log.
#[tokio::test]
async fn a_wasip3_component_deploys_serves_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    let uploaded = host.deploy("svc", "echo_p3", "env=COLOUR%3Dteal").await;
    assert_eq!(uploaded["world"], "service", "{uploaded}");
    let export = uploaded["handler_export"].as_str().unwrap();
    assert!(export.starts_with("wasi:http/handler@0.3."), "{export}");

    let (status, _, body) = host.call_text("/svc/hi").await;
    assert_eq!((status, body.as_str()), (200, "echo-p3 Method::Get /hi\n"));
    assert_eq!(host.call_text("/svc/env?name=COLOUR").await.2, "teal\n");

    // Request body streamed in as 48 chunks and straight back out.
    let payload: Vec<u8> = (0..3 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        payload.chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
    let response = host
        .http
        .post(format!("{}/svc/echo", host.data_url))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed = response.bytes().await.unwrap();
    assert_eq!(echoed.len(), payload.len());
    assert!(
        echoed[..] == payload[..],
        "the echo differs from what was sent"
    );

    let big = host.call("/svc/bytes?n=5000000").await;
    assert_eq!(big.status(), 200);
    assert_eq!(big.bytes().await.unwrap().len(), 5_000_000);

    // A fresh instance per request, sequential or concurrent: the instance's counter is 1.
    let counts = tally(&host, "/svc/count", 48).await;
    assert_eq!(counts.get("1"), Some(&48), "{counts:?}");

    host.http
        .get(format!("{}/svc/log?sunrise", host.data_url))
        .header("x-request-id", "p3-log")
        .send()
        .await
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "the guest's output in the log",
        || async {
            let (_, page) = host.get_json("/v1/functions/svc/logs").await;
            let entries = page["entries"].as_array().cloned().unwrap_or_default();
            let found = entries
                .iter()
                .any(|e| e["request_id"] == "p3-log" && e["text"] == "echo-p3 says sunrise");
            (!found).then(|| page.to_string())
        },
    )
    .await;

    // Metered like any invocation.
    let invocations = invocations(&host, "svc").await;
    assert!(invocations >= 53, "{invocations}");
}

/// The function's timeout stops a 0.3 guest spinning in wasm and one waiting on its clock;
/// its memory limit stops an allocation; its response limit cuts a body off; the host and
/// the function serve on afterwards.
#[tokio::test]
async fn limits_and_timeouts_hold_for_wasip3() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    let config = json!({"timeout_ms": 500, "memory_mb": 64, "max_response_body_bytes": 1 << 20});
    let query = format!("config={}", crate::common::urlencode(&config.to_string()));
    host.deploy("svc", "echo_p3", &query).await;

    for path in ["/svc/spin", "/svc/sleep?ms=5000"] {
        let started = Instant::now();
        let (status, _, body) = host.call_text(path).await;
        let took = started.elapsed();
        assert_eq!(status, 504, "{path}: {body}");
        assert!(body.contains("500 ms timeout"), "{body}");
        assert!(took < Duration::from_secs(3), "{path} took {took:?}");
    }
    let (status, _, body) = host.call_text("/svc/alloc?mib=100").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("memory limit of 64 MiB"), "{body}");
    assert_eq!(host.call_text("/svc/alloc?mib=16").await.0, 200);

    let cut = host.call("/svc/bytes?n=3000000").await;
    assert_eq!(cut.status(), 200);
    let read = cut.bytes().await;
    assert!(
        read.as_ref().map_or(true, |b| b.len() <= 1 << 20),
        "a body over the limit must be cut off"
    );
    assert_eq!(host.call_text("/svc/sleep?ms=10").await.2, "slept 10 ms\n");
}

/// One function, a 0.2 version and a 0.3 `$LATEST`: `$DEFAULT` splits between them, rolls
/// back to the 0.2 version, a rollout takes the 0.3 release through its steps under load to
/// promotion, and provisioned concurrency keeps 0.3 instances warm.
#[tokio::test]
async fn wasip2_and_wasip3_versions_split_roll_out_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    // Room for every version's warm pool after the load (tests default to 16 warm).
    let host = TestHost::start_with(&dir.path().join("data"), &["--max-warm", "48"]).await;
    let v1 = host.deploy("shop", "hello", "env=GREETING%3Dtwo").await;
    assert_eq!(v1["world"], "proxy");
    assert_eq!(host.publish("shop").await.0, 201);
    host.deploy("shop", "hello_p3", "env=GREETING%3Dthree&traffic=50")
        .await;

    let counts = tally(&host, "/shop/", 400).await;
    let (two, three) = (
        counts.get("two, world!").copied().unwrap_or(0),
        counts.get("three, world!").copied().unwrap_or(0),
    );
    assert_eq!(two + three, 400, "{counts:?}");
    assert!((140..=260).contains(&three), "50% split: {counts:?}");

    let response = host
        .admin(Method::PUT, "/v1/functions/shop/traffic")
        .json(&json!({"latest_percent": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        tally(&host, "/shop/", 100).await.get("two, world!"),
        Some(&100)
    );

    let load = Load::start(&host, "shop", 3);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    start_rollout(
        &host,
        json!({"to": "latest", "steps": [30, 100], "interval_ms": 1000,
               "max_error_rate_percent": 1, "max_p99_ms": 2000, "min_requests": 10}),
    )
    .await;
    let done = finished(&host, Duration::from_secs(30)).await;
    let (ok, errors) = load.stop().await;
    assert_eq!(done["phase"], "succeeded", "{done:#}");
    assert_eq!(errors, 0, "{ok} ok");
    let routes = default_routes(&host).await;
    assert_eq!(
        routes[0],
        json!({"version": 2, "percent": 100.0}),
        "{routes}"
    );
    assert_eq!(
        tally(&host, "/shop/", 50).await.get("three, world!"),
        Some(&50)
    );
    // The 0.2 version is still there by name.
    assert_eq!(host.call_text("/shop@1/").await.2, "two, world!\n");

    let response = host
        .admin(Method::PUT, "/v1/functions/shop/scaling")
        .json(&json!({"provisioned": 3, "version": "2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    eventually(
        Duration::from_secs(5),
        "0.3 instances provisioned",
        || async {
            let (_, body) = host.get_json("/v1/functions/shop/scaling").await;
            let warm = body["pools"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["version"] == 2)
                .and_then(|p| p["warm"].as_u64());
            (warm < Some(3)).then(|| body.to_string())
        },
    )
    .await;
}

/// Invocations of `function` metered so far, over all its versions.
async fn invocations(host: &TestHost, function: &str) -> u64 {
    let usage = host
        .get_json(&format!("/v1/usage?function={function}"))
        .await
        .1;
    usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["invocations"].as_u64().unwrap())
        .sum()
}

async fn patch_config(host: &TestHost, function: &str, patch: serde_json::Value) {
    let response = host
        .admin(Method::PATCH, &format!("/v1/functions/{function}/config"))
        .json(&patch)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(status, 200, "{}", response.text().await.unwrap());
}

/// `GET path` `n` times in turn; the bodies.
async fn in_turn(host: &TestHost, path: &str, n: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    for _ in 0..n {
        let (status, _, body) = host.call_text(path).await;
        assert_eq!(status, 200, "{body}");
        bodies.push(body.trim().to_string());
    }
    bodies
}

/// Instance reuse is opt-in: by default every request of a 0.3 version sees a fresh
/// instance; with `reuse_requests` an instance's state carries over for that many requests,
/// then a new one starts; `concurrency_per_instance` lets one instance serve requests at
/// once; state never crosses versions; a timeout retires the instance; 0.2 versions stay
/// fresh whatever the config says; every request is metered.
#[tokio::test]
async fn instance_reuse_keeps_state_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("svc", "echo_p3", "").await;
    assert_eq!(in_turn(&host, "/svc/count", 6).await, ["1"; 6]);

    patch_config(
        &host,
        "svc",
        json!({"reuse_requests": 4, "timeout_ms": 1000}),
    )
    .await;
    assert_eq!(
        in_turn(&host, "/svc/count", 10).await,
        ["1", "2", "3", "4", "1", "2", "3", "4", "1", "2"]
    );

    // Four requests at once in one instance: each waits 400 ms on the clock, together.
    patch_config(
        &host,
        "svc",
        json!({"reuse_requests": 100, "concurrency_per_instance": 4}),
    )
    .await;
    let started = Instant::now();
    let sleeps = (0..4).map(|_| host.call_text("/svc/sleep?ms=400"));
    for (status, _, body) in futures::future::join_all(sleeps).await {
        assert_eq!((status, body.as_str()), (200, "slept 400 ms\n"));
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1200),
        "{took:?}: not concurrent"
    );
    assert_eq!(
        in_turn(&host, "/svc/count", 1).await,
        ["5"],
        "one instance served all"
    );

    // A version keeps its own instances: $LATEST's counter and version 1's never mix.
    assert_eq!(host.publish("svc").await.0, 201);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(host.call_text("/svc@1/count").await.2.trim().to_string());
        seen.push(
            host.call_text("/svc@latest/count")
                .await
                .2
                .trim()
                .to_string(),
        );
    }
    let (v1, latest): (Vec<_>, Vec<_>) =
        seen.chunks(2).map(|p| (p[0].clone(), p[1].clone())).unzip();
    assert_eq!(v1, ["1", "2", "3"], "{seen:?}");
    assert_eq!(latest, ["6", "7", "8"], "{seen:?}");

    // A request past its deadline retires its instance: the next starts afresh.
    let (status, _, body) = host.call_text("/svc/spin").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(in_turn(&host, "/svc/count", 2).await, ["1", "2"]);

    // A 0.2 function asking for reuse still gets a fresh instance per request.
    host.deploy("classic", "counter", "").await;
    patch_config(&host, "classic", json!({"reuse_requests": 10})).await;
    for _ in 0..4 {
        assert_eq!(host.call_text("/classic").await.2, "1 1\n");
    }

    // Secrets reach a reusing version's instance when it starts; it keeps them for the
    // requests it serves, and the next instance reads the rotated value.
    let query = format!("config={}", urlencode(r#"{"secret_env": ["COLOUR"]}"#));
    host.deploy("sealed", "echo_p3", &query).await;
    patch_config(&host, "sealed", json!({"reuse_requests": 3})).await;
    host.set_secret("sealed", "COLOUR", "teal");
    let colour = || async { host.call_text("/sealed/env?name=COLOUR").await.2 };
    assert_eq!(colour().await, "teal\n", "a new instance opens the secret");
    host.set_secret("sealed", "COLOUR", "plum");
    assert_eq!(
        colour().await,
        "teal\n",
        "the instance keeps what it started with"
    );
    assert_eq!(colour().await, "teal\n");
    assert_eq!(
        colour().await,
        "plum\n",
        "its successor opens the rotated secret"
    );

    // 6 + 10 + 4 + 1 + 6 + 1 + 2 requests, each metered once.
    eventually(Duration::from_secs(5), "every request metered", || async {
        let n = invocations(&host, "svc").await;
        (n != 30).then(|| format!("{n} metered"))
    })
    .await;
}

/// The rest of the pipeline serves 0.3 as it serves 0.2: a timer trigger delivers to it, an
/// asynchronous invocation runs in it with its body, and an alias mirrors requests to a 0.3
/// version as shadow traffic, compared with the primary's answers.
#[tokio::test]
async fn wasip3_serves_timers_async_invocations_and_shadows() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("svc", "echo_p3", "").await;
    assert_eq!(host.publish("svc").await.0, 201);
    host.deploy("svc", "echo_p3", "env=SHADOW%3D1").await;
    assert_eq!(host.publish("svc").await.0, 201);

    let response = host
        .admin(Method::POST, "/v1/functions/svc/triggers")
        .json(&json!({"cron": "* * * * * *"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let queued = host
        .queue_invocation("/svc/echo", b"queued body".to_vec())
        .await;
    let id = queued["id"].as_str().unwrap();
    let done = host
        .invocation_settled(id, "delivered", Duration::from_secs(10))
        .await;
    assert_eq!(done["result"]["status"], 200, "{done}");
    assert_eq!(
        done["result"]["response_bytes"], 11,
        "the body echoed: {done}"
    );

    let response = host
        .admin(Method::PUT, "/v1/functions/svc/aliases/prod")
        .json(&json!({"routes": [{"version": 1, "percent": 100}],
                      "mirror": {"version": 2, "percent": 100}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for _ in 0..20 {
        let (status, version, body) = host.call_text("/svc@prod/hi").await;
        assert_eq!(
            (status, version.as_str(), body.as_str()),
            (200, "1", "echo-p3 Method::Get /hi\n")
        );
    }
    eventually(Duration::from_secs(10), "shadows compared", || async {
        let (_, health) = host.get_json("/v1/functions/svc/health").await;
        let matches = health["shadow"]
            .as_array()
            .and_then(|s| s.iter().find(|r| r["version"] == 2))
            .and_then(|r| r["matches"].as_u64());
        (matches < Some(20)).then(|| health.to_string())
    })
    .await;

    eventually(
        Duration::from_secs(10),
        "timer events delivered",
        || async {
            let (_, events) = host
                .get_json("/v1/functions/svc/events?status=delivered")
                .await;
            let delivered = events["events"].as_array().map_or(0, Vec::len);
            (delivered < 2).then(|| events.to_string())
        },
    )
    .await;
}
