//! Lifecycle: a restart on the same data directory serves the same versions from the compiled
//! cache, SIGTERM drains in-flight requests, and the admin token stays private and stable.

use std::time::Duration;

use crate::common;
use crate::common::TestHost;
use serde_json::Value;

/// After a clean restart the same versions answer with the same digests and configs, and
/// their code is loaded from the compiled cache instead of being compiled again, WASI 0.3
/// code into its own engine as 0.2 code into its.
#[tokio::test]
async fn restart_serves_the_same_versions_without_recompiling() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = TestHost::start(&data).await;
    host.deploy("hello", "hello", "env=GREETING%3Done").await;
    host.publish("hello").await;
    host.deploy("echo", "echo", "").await;
    host.publish("echo").await;
    host.deploy("svc", "echo_p3", "").await;
    host.deploy("hello", "hello", "env=GREETING%3Dtwo").await;
    let (_, hello_before) = host.get_json("/v1/functions/hello").await;
    let (_, echo_before) = host.get_json("/v1/functions/echo").await;
    let token_before = host.token.clone();
    assert!(host.terminate(), "fnhost should exit cleanly on SIGTERM");
    // Compiled code of a module nothing references (as a crash mid-delete leaves) is swept.
    let compiled = data.join("compiled");
    let real = std::fs::read_dir(&compiled)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let real = real.to_string_lossy();
    let orphan = format!("{}{}", "ab".repeat(32), &real[64..]);
    std::fs::copy(compiled.join(real.as_ref()), compiled.join(&orphan)).unwrap();

    let host = TestHost::start(&data).await;
    assert_eq!(host.token, token_before);
    let (_, hello_after) = host.get_json("/v1/functions/hello").await;
    let (_, echo_after) = host.get_json("/v1/functions/echo").await;
    assert_eq!(hello_after, hello_before);
    assert_eq!(echo_after, echo_before);
    assert_eq!(
        host.call_text("/hello").await,
        (200, "1".into(), "one, world!\n".into())
    );
    assert_eq!(host.call_text("/hello@latest").await.2, "two, world!\n");
    assert_eq!(host.call("/echo/x").await.headers()["echo-path"], "/x");
    assert_eq!(
        host.call_text("/svc/hi").await.2,
        "echo-p3 Method::Get /hi\n"
    );

    assert!(
        !compiled.join(&orphan).exists(),
        "orphaned compiled code was kept"
    );
    let (_, status) = host.get_json("/v1/status").await;
    let engine = &status["engine"];
    assert_eq!(engine["compiles"], 0, "{status}");
    // hello's two versions share one digest; echo and svc have one each.
    assert_eq!(engine["compiled_cache_loads"], 3, "{status}");
}

/// SIGTERM stops new connections but lets a request that is still uploading finish.
#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("echo", "echo", "").await;

    let (chunks, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let stream = futures::stream::unfold(receiver, |mut r| async move {
        r.recv().await.map(|item| (item, r))
    });
    let request = host
        .http
        .post(format!("{}/echo/slow", host.data_url))
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let in_flight = tokio::spawn(request);
    chunks.send(Ok(b"first half, ".to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    host.send_sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = reqwest::Client::new()
        .get(format!("{}/healthz", host.data_url))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        fresh.is_err(),
        "a new connection was accepted after SIGTERM"
    );
    assert!(host.try_wait().is_none(), "exited with a request in flight");

    chunks.send(Ok(b"second half".to_vec())).await.unwrap();
    drop(chunks);
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "first half, second half");
    assert!(
        host.terminate_wait(),
        "fnhost should exit cleanly after draining"
    );
}

/// The admin token is created once, readable only by its owner, and the same after a
/// restart (scripts that saved it keep working).
#[cfg(unix)]
#[tokio::test]
async fn admin_token_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = TestHost::start(&data).await;
    let meta = std::fs::metadata(host.data_dir.join("admin.token")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(host.token.len(), 64);
    assert!(host.token.bytes().all(|b| b.is_ascii_hexdigit()));
    let (status, _): (u16, Value) = host.get_json("/v1/functions").await;
    assert_eq!(status, 200);
    let first = host.token.clone();
    host.kill9();
    let host = TestHost::start(&data).await;
    assert_eq!(host.token, first, "the token survives a restart");
    let (status, _): (u16, Value) = host.get_json("/v1/functions").await;
    assert_eq!(status, 200);
}

/// A second host on the same data directory is refused with a clear message.
#[tokio::test]
async fn a_second_host_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _first = TestHost::start(&data).await;
    let output = common::serve_command(&data).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("another fnhost is already serving"),
        "{stderr}"
    );
}

/// A zero usage-flush interval is refused at start with the flag named, not a panic later.
#[test]
fn a_zero_usage_flush_interval_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = common::serve_command(&dir.path().join("data"))
        .args(["--usage-flush-interval", "0s"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--usage-flush-interval must be above zero"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// With --drain-delay, SIGTERM first makes `/readyz` fail on both planes while the host keeps
/// serving requests (`/healthz` stays 200), so a load balancer moves traffic away before any
/// connection is refused; then the host stops accepting and exits.
#[tokio::test]
async fn sigterm_fails_readiness_first_and_keeps_serving_for_the_drain_delay() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = TestHost::start_with(&dir.path().join("data"), &["--drain-delay", "2s"]).await;
    host.deploy("hello", "hello", "").await;
    let get = |url: String| async move {
        let response = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(
        get(format!("{}/readyz", host.data_url)).await,
        (200, "ready\n".to_string())
    );
    host.send_sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for base in [&host.data_url, &host.admin_url] {
        assert_eq!(
            get(format!("{base}/readyz")).await,
            (503, "draining\n".to_string())
        );
        assert_eq!(get(format!("{base}/healthz")).await.0, 200);
    }
    let (status, body) = get(format!("{}/hello/", host.data_url)).await;
    assert_eq!((status, body.as_str()), (200, "Hello, world!\n"));
    assert!(host.try_wait().is_none(), "exited during the drain delay");
    assert!(host.terminate_wait(), "exits cleanly after the delay");
}
