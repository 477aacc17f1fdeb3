//! Isolation and limits over real HTTP: a hostile function gets a clear status for each kind
//! of misbehaviour, sees no host capability it was not given, cannot exhaust host memory, and
//! never stops the host from serving its neighbours.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use crate::common::{TestHost, rss_mib, urlencode};
use reqwest::Method;
use serde_json::{Value, json};

/// Deploys `hostile` as `name` with a JSON config change.
async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_string(),
        body["error"]["message"].as_str().unwrap_or("").to_string(),
    )
}

/// Each hostile behaviour gets its documented status and message, and a plain hello
/// function answers 200 after every one of them.
#[tokio::test]
async fn each_hostile_behaviour_gets_its_status_and_neighbours_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("hello", "hello", "").await;
    host.deploy_hostile("bad", json!({"timeout_ms": 1000, "memory_mb": 64}))
        .await;
    let cases = [
        ("/bad/loop", 504, "timeout", "1000 ms timeout"),
        ("/bad/sleep?ms=5000", 504, "timeout", "1000 ms timeout"),
        ("/bad/hog", 500, "memory_limit", "memory limit of 64 MiB"),
        ("/bad/recurse", 500, "trap", "stack overflow"),
    ];
    for (path, status, code, message) in cases {
        let started = Instant::now();
        let (got_status, got_code, got_message) = error_of(host.call(path).await).await;
        println!(
            "{path}: {got_status} {got_code} after {:?}",
            started.elapsed()
        );
        assert_eq!(
            (got_status, got_code.as_str()),
            (status, code),
            "{path}: {got_message}"
        );
        assert!(got_message.contains(message), "{path}: {got_message}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path} was not stopped in time"
        );
        assert_eq!(host.call_text("/hello").await.0, 200, "hello after {path}");
    }
}

/// A CPU budget stops a spinning request early but does not count time spent waiting.
#[tokio::test]
async fn cpu_budget_counts_running_not_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy_hostile("cpu", json!({"timeout_ms": 5000, "cpu_budget_ms": 100}))
        .await;
    let started = Instant::now();
    let (status, code, message) = error_of(host.call("/cpu/loop").await).await;
    assert_eq!((status, code.as_str()), (500, "cpu_budget"), "{message}");
    assert!(message.contains("CPU budget of 100 ms"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let (status, _, body) = host.call_text("/cpu/sleep?ms=400").await;
    assert_eq!((status, body.as_str()), (200, "slept 400 ms"));
}

/// The function sees no host file, no host environment variable and no socket: only its
/// own configured environment.
#[tokio::test]
async fn probe_sees_no_host_files_env_or_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy_hostile("probe", json!({"env": {"OWN_SETTING": "1"}}))
        .await;
    let (status, _, body) = host.call_text("/probe/probe").await;
    assert_eq!(status, 200);
    println!("{body}");
    assert!(body.contains("passwd: denied"), "{body}");
    assert!(body.contains("root: denied"), "{body}");
    assert!(
        body.contains("\nenv: OWN_SETTING\n"),
        "host environment leaked: {body}"
    );
    assert!(body.contains("tcp: denied"), "{body}");
}

/// Outbound HTTP fails unless the origin is allowlisted; the allowed call reaches a real
/// local server only because the operator allows loopback, and denials are logged. Without
/// that, an allowlisted loopback address, or a name that resolves to one (DNS rebinding
/// looks the same), is refused before any connection.
#[tokio::test]
async fn outbound_http_is_denied_unless_allowlisted() {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = upstream.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = upstream.accept().await.unwrap();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"pong"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let allowed = format!("http://127.0.0.1:{port}");
    let by_name = format!("http://localhost:{port}");
    let allow = json!({"allow_outbound": [allowed, by_name]});
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_with(
        &dir.path().join("data"),
        &[
            "--outbound-allow-private",
            "127.0.0.0/8",
            "--outbound-allow-private",
            "::1",
        ],
    )
    .await;
    host.deploy_hostile("caller", allow.clone()).await;
    host.deploy_hostile("jailed", json!({})).await;

    let call = |function: &str, url: &str| format!("/{function}/outbound?url={url}");
    for origin in [&allowed, &by_name] {
        let (_, _, body) = host
            .call_text(&call("caller", &format!("{origin}/ping")))
            .await;
        assert_eq!(body, "status 200", "{origin}");
    }
    let (_, _, body) = host
        .call_text(&call("jailed", &format!("{allowed}/ping")))
        .await;
    assert!(body.contains("HttpRequestDenied"), "{body}");
    let other_port = format!("http://127.0.0.1:{}/", port.wrapping_add(1).max(1));
    let (_, _, body) = host.call_text(&call("caller", &other_port)).await;
    assert!(body.contains("HttpRequestDenied"), "{body}");
    assert!(host.log().contains("outbound HTTP request denied"));
    let (_, details) = host.get_json("/v1/functions/caller").await;
    assert_eq!(
        details["latest"]["config"]["allow_outbound"],
        json!([allowed, by_name])
    );

    // The default network policy: public addresses only.
    let dir = tempfile::tempdir().unwrap();
    let strict = TestHost::start(&dir.path().join("data")).await;
    strict.deploy_hostile("caller", allow).await;
    let before = hits.load(std::sync::atomic::Ordering::SeqCst);
    for origin in [&allowed, &by_name] {
        let (_, _, body) = strict
            .call_text(&call("caller", &format!("{origin}/ping")))
            .await;
        assert!(body.contains("DestinationIpProhibited"), "{origin}: {body}");
    }
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        before,
        "no connection was made"
    );
    assert!(
        strict.log().contains("resolves to 127.0.0.1"),
        "the denial says where the name led"
    );
}

/// Request bodies over the function's limit get 413, declared or streamed; response bodies
/// over it are cut off rather than completed.
#[tokio::test]
async fn body_limits_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy_hostile("small", json!({"max_request_body_bytes": 1024}))
        .await;
    let url = format!("{}/small/echo-size", host.data_url);
    let ok = host
        .http
        .post(&url)
        .body(vec![7u8; 512])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.text().await.unwrap(), "512 bytes");
    let declared = host
        .http
        .post(&url)
        .body(vec![7u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(declared).await.0, 413);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..4).map(|_| Ok(vec![7u8; 1024])).collect();
    let streamed = host
        .http
        .post(&url)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(streamed).await.0, 413);

    let query = format!(
        "config={}",
        urlencode(&json!({"max_response_body_bytes": 1024}).to_string())
    );
    host.deploy("echo", "echo", &query).await;
    let outcome = match host
        .http
        .post(format!("{}/echo", host.data_url))
        .body(vec![1u8; 64 * 1024])
        .send()
        .await
    {
        Ok(response) => response.bytes().await.map(|b| b.len()),
        Err(e) => Err(e),
    };
    assert!(
        outcome.is_err(),
        "an oversized response completed: {outcome:?}"
    );
    assert_eq!(host.call_text("/small/echo-size").await.2, "0 bytes");
}

/// Past its concurrency limit a function's requests wait briefly in a bounded queue, then get
/// 503 with Retry-After; the host stays healthy.
#[tokio::test]
async fn concurrency_limit_queues_then_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_with(&dir.path().join("data"), &["--queue-timeout", "300ms"]).await;
    host.deploy_hostile("slow", json!({"max_concurrency": 2}))
        .await;
    host.deploy("hello", "hello", "").await;
    let requests = (0..8).map(|_| {
        host.http
            .get(format!("{}/slow/sleep?ms=1000", host.data_url))
            .send()
    });
    let responses = futures::future::join_all(requests).await;
    let mut statuses: Vec<u16> = Vec::new();
    for response in responses {
        let response = response.unwrap();
        if response.status() == 503 {
            assert_eq!(response.headers()["retry-after"], "1");
        }
        statuses.push(response.status().as_u16());
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 200, 503, 503, 503, 503, 503, 503],
        "{statuses:?}"
    );
    assert_eq!(host.call_text("/hello").await.0, 200);
    assert_eq!(host.call_text("/slow/sleep?ms=1").await.0, 200);
}

/// What a function prints is kept per invocation (with the request id the client got) and
/// bounded, so flooding neither loses the host's memory nor other functions' logs.
#[tokio::test]
async fn logs_are_captured_per_invocation_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy_hostile("loud", json!({})).await;
    let response = host
        .http
        .get(format!("{}/loud/flood?kib=1", host.data_url))
        .header("x-request-id", "req-abc-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["fnhost-request-id"], "req-abc-1");
    response.text().await.unwrap();
    let rss_before = rss_mib(host.pid());
    for _ in 0..20 {
        let requests = (0..10).map(|_| host.call_text("/loud/flood?kib=512"));
        for (status, _, _) in futures::future::join_all(requests).await {
            assert_eq!(status, 200);
        }
    }
    let rss_after = rss_mib(host.pid());
    println!(
        "host RSS during log flood: {rss_before:.1} MiB -> {rss_after:.1} MiB (200 x 1 MiB printed)"
    );
    assert!(
        rss_after - rss_before < 100.0,
        "RSS grew {rss_before} -> {rss_after}"
    );

    // The logs hold the newest entries, each capped, the first one long gone.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, page) = host.get_json("/v1/functions/loud/logs?limit=1000").await;
    assert_eq!(status, 200);
    let entries = page["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|e| e["request_id"] != "req-abc-1"));
    let total: usize = entries
        .iter()
        .map(|e| e["text"].as_str().unwrap().len())
        .sum();
    assert!(total <= 300 * 1024, "{total} bytes of logs kept");
    assert!(
        entries[0]["text"]
            .as_str()
            .unwrap()
            .contains("more bytes dropped")
    );
    assert_eq!(entries[0]["version"], "latest");

    // A fresh function's log shows the request id and its output.
    host.deploy_hostile("quiet", json!({})).await;
    host.http
        .get(format!("{}/quiet/flood?kib=1", host.data_url))
        .header("x-request-id", "req-xyz")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, page) = host.get_json("/v1/functions/quiet/logs").await;
    assert_eq!(page["entries"][0]["request_id"], "req-xyz");
    assert!(
        page["entries"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("xxxx")
    );
    let (_, page) = host.get_json("/v1/functions/quiet/logs?version=1").await;
    assert_eq!(page["entries"], json!([]));
}

/// While loops, memory hogs and log flooders run at their limits, a hello function next to
/// them answers every request with 200 and never waits for a neighbour to finish (its p99
/// stays under the neighbours' 500 ms timeout, which it would reach if a hog held a worker
/// thread); memory hogs leave the host's RSS bounded.
#[tokio::test]
async fn noisy_neighbours_do_not_hurt_hello() {
    let dir = tempfile::tempdir().unwrap();
    let host = std::sync::Arc::new(TestHost::start(&dir.path().join("data")).await);
    host.deploy("hello", "hello", "").await;
    host.deploy_hostile("noisy", json!({"timeout_ms": 500, "memory_mb": 128}))
        .await;
    let rss_before = rss_mib(host.pid());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise: Vec<_> = [
        "/noisy/loop",
        "/noisy/hog",
        "/noisy/flood?kib=256",
        "/noisy/hog",
    ]
    .into_iter()
    .map(|path| {
        let (host, stop) = (host.clone(), stop.clone());
        tokio::spawn(async move {
            let mut count = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let status = host.call(path).await.status().as_u16();
                assert!(matches!(status, 200 | 500 | 504), "{path}: {status}");
                count += 1;
            }
            count
        })
    })
    .collect();
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let sent = Instant::now();
        let (status, _, _) = host.call_text("/hello").await;
        assert_eq!(status, 200);
        latencies.push(sent.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut noisy_requests = 0;
    for task in noise {
        noisy_requests += task.await.unwrap();
    }
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let rss_after = rss_mib(host.pid());
    println!(
        "hello under noise: {} requests, p50 {:?}, p99 {:?}, max {:?}; {noisy_requests} hostile requests; RSS {rss_before:.1} -> {rss_after:.1} MiB",
        latencies.len(),
        p(0.5),
        p(0.99),
        latencies.last().unwrap()
    );
    assert!(
        rss_after < rss_before + 400.0,
        "RSS grew {rss_before} -> {rss_after}"
    );
    assert!(
        latencies.len() >= 30,
        "hello answered only {} times in 3 s next to the hogs",
        latencies.len()
    );
    assert!(
        p(0.99) < Duration::from_millis(500),
        "hello waited for its neighbours: p99 {:?}",
        p(0.99)
    );
    assert!(noisy_requests >= 4, "the neighbours ran: {noisy_requests}");
    let _ = Method::GET;
}

/// Host memory a function holds outside its linear memory is capped: a guest that creates
/// thousands of 48 KiB header-field resources and holds them all is stopped by the resource
/// table and field caps, the host's memory stays bounded, and it keeps serving.
#[tokio::test]
async fn header_fields_and_resources_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy_hostile("fields", json!({})).await;
    let before = crate::common::rss_mib(host.pid());
    // Uncapped, 4,000 fields of 48 KiB are about 190 MiB of host memory per request.
    let (status, _, body) = host.call_text("/fields/fields?n=4000&kib=48").await;
    let peak = crate::common::rss_mib(host.pid());
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("more than 1000 resources"), "{body}");
    assert!(
        peak - before < 96.0,
        "host memory grew {:.0} MiB (from {before:.0} MiB)",
        peak - before
    );
    // Fields bigger than their cap stop the function too (wasi-http traps), with the cap.
    let (status, _, body) = host.call_text("/fields/fields?n=1&kib=100").await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("header fields over the limit of 64 KiB"),
        "{body}"
    );
    // Normal use is untouched.
    let (status, _, body) = host.call_text("/fields/fields?n=100&kib=1").await;
    assert_eq!((status, body.as_str()), (200, "holding 100 fields"));
}
