//! The admin API over real HTTP: upload, publish, versions, config, delete, validation of
//! uploads and names, authentication, and 404s.

use crate::common::{TestHost, wasm};
use reqwest::Method;
use serde_json::Value;

/// Upload, publish and invoke: by default (newest version, else $LATEST), by @N and @latest.
#[tokio::test]
async fn upload_publish_and_invoke_by_default_number_and_latest() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;

    host.deploy("hello", "hello", "env=GREETING%3Dv1").await;
    // No version yet: the default route is $LATEST.
    assert_eq!(
        host.call_text("/hello").await,
        (200, "latest".into(), "v1, world!\n".into())
    );
    let (status, published) = host.publish("hello").await;
    assert_eq!(status, 201, "{published}");
    assert_eq!(published["created"], true);
    assert_eq!(published["version"]["version"], 1);

    host.deploy("hello", "hello", "env=GREETING%3Dv2").await;
    // The default stays on the newest published version; $LATEST is reachable explicitly.
    assert_eq!(
        host.call_text("/hello/any/path").await,
        (200, "1".into(), "v1, world!\n".into())
    );
    assert_eq!(
        host.call_text("/hello@latest").await,
        (200, "latest".into(), "v2, world!\n".into())
    );
    assert_eq!(
        host.call_text("/hello@1/").await,
        (200, "1".into(), "v1, world!\n".into())
    );

    let (status, published) = host.publish("hello").await;
    assert_eq!(
        (status, published["version"]["version"].clone()),
        (201, Value::from(2))
    );
    assert_eq!(
        host.call_text("/hello").await,
        (200, "2".into(), "v2, world!\n".into())
    );
    assert_eq!(host.call_text("/hello@1").await.2, "v1, world!\n");

    let (_, versions) = host.get_json("/v1/functions/hello/versions").await;
    let versions = versions["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    // Same code, different config: same digest, two versions.
    assert_eq!(versions[0]["digest"], versions[1]["digest"]);
    assert_eq!(versions[0]["config"]["env"]["GREETING"], "v1");
    assert_eq!(versions[1]["config"]["env"]["GREETING"], "v2");
}

/// Publishing an unchanged $LATEST returns the newest version instead of a new one.
#[tokio::test]
async fn identical_republish_returns_the_same_version() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("hello", "hello", "").await;
    let (first_status, first) = host.publish("hello").await;
    let (second_status, second) = host.publish("hello").await;
    assert_eq!((first_status, second_status), (201, 200));
    assert_eq!(second["created"], false);
    assert_eq!(first["version"], second["version"]);
    // Re-uploading the same bytes changes nothing either.
    host.deploy("hello", "hello", "").await;
    assert_eq!(host.publish("hello").await.1["version"]["version"], 1);
}

/// Garbage, core modules, truncated files and wrong-world components get 400 with a message
/// that says what was found and what is expected, and nothing is stored.
#[tokio::test]
async fn invalid_uploads_are_refused_with_clear_text() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    let hello = wasm("hello");
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "garbage",
            b"#!/bin/sh\necho not wasm\n".to_vec(),
            &["not a WebAssembly binary"],
        ),
        ("empty", Vec::new(), &["not a WebAssembly binary"]),
        (
            "core-module",
            wat::parse_str("(module (func (export \"f\")))").unwrap(),
            &["core WebAssembly module, not a component", "wasm32-wasip2"],
        ),
        (
            "truncated",
            hello[..hello.len() / 2].to_vec(),
            &["malformed WebAssembly at byte offset", "truncated"],
        ),
        (
            "wrong-world",
            wasm("wrong-world"),
            &[
                "exports neither wasi:http/incoming-handler@0.2.x nor wasi:http/handler@0.3.x",
                "wasi:cli/run@0.2",
            ],
        ),
    ];
    for (name, bytes, expected) in cases {
        let response = host.upload(name, bytes, "").await;
        assert_eq!(response.status(), 400, "{name}");
        let body: Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        for fragment in expected {
            assert!(
                message.contains(fragment),
                "{name}: {message:?} lacks {fragment:?}"
            );
        }
        assert_eq!(body["error"]["code"], "invalid_component");
    }
    let (_, list) = host.get_json("/v1/functions").await;
    assert_eq!(list["functions"], serde_json::json!([]));
    let modules = std::fs::read_dir(host.data_dir.join("modules"))
        .unwrap()
        .count();
    assert_eq!(modules, 0, "refused uploads must not leave module files");
}

/// An upload above `--max-upload` gets 413, whether its length is declared or streamed.
#[tokio::test]
async fn oversized_uploads_get_413() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_with(&dir.path().join("data"), &["--max-upload", "16Ki"]).await;
    let response = host.upload("hello", wasm("hello"), "").await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("16384 bytes")
    );

    // Chunked, with no Content-Length: refused once the limit is crossed.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        wasm("hello").chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let response = host
        .admin(Method::PUT, "/v1/functions/hello/code")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(host.get_json("/v1/functions/hello").await.0, 404);
}

/// Names that are not lowercase DNS labels are refused with the rule.
#[tokio::test]
async fn invalid_names_are_refused_with_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    for name in [
        "Hello",
        "a_b",
        "-lead",
        &"x".repeat(64),
        "caf%C3%A9",
        "healthz",
    ] {
        let response = host.upload(name, wasm("hello"), "").await;
        assert_eq!(response.status(), 400, "{name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_name", "{name}");
    }
    let response = host.upload("Hello", wasm("hello"), "").await;
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lowercase DNS labels")
    );
}

/// Every /v1 call without the right bearer token gets 401 and changes nothing.
#[tokio::test]
async fn admin_calls_without_a_valid_token_get_401_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("hello", "hello", "env=GREETING%3Dkept").await;
    let url = |path: &str| format!("{}{path}", host.admin_url);
    let attempts = [
        (Method::GET, "/v1/functions"),
        (Method::PUT, "/v1/functions/hello/code"),
        (Method::POST, "/v1/functions/hello/versions"),
        (Method::DELETE, "/v1/functions/hello"),
        (Method::PATCH, "/v1/functions/hello/config"),
    ];
    for (method, path) in attempts {
        let without = host
            .http
            .request(method.clone(), url(path))
            .body(wasm("echo"));
        let wrong = host
            .http
            .request(method.clone(), url(path))
            .bearer_auth("0".repeat(64))
            .body(wasm("echo"));
        for request in [without, wrong] {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
        }
    }
    let (status, function) = host.get_json("/v1/functions/hello").await;
    assert_eq!(status, 200);
    assert_eq!(function["versions"], serde_json::json!([]));
    assert_eq!(host.call_text("/hello").await.2, "kept, world!\n");
    // Health checks need no token.
    assert_eq!(
        host.http
            .get(url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Unknown functions, versions and routes get 404 with a JSON error body.
#[tokio::test]
async fn unknown_names_get_404_with_json() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("hello", "hello", "").await;
    host.publish("hello").await;
    for (path, code) in [
        ("/nope", "unknown_function"),
        ("/nope@1/x", "unknown_function"),
        ("/hello@9", "unknown_version"),
        ("/hello@prod", "unknown_alias"),
        ("/", "not_found"),
    ] {
        let response = host.call(path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}");
    }
    for (method, path) in [
        (Method::GET, "/v1/functions/nope"),
        (Method::GET, "/v1/functions/hello/versions/7"),
        (Method::DELETE, "/v1/functions/hello/versions/7"),
        (Method::POST, "/v1/functions/nope/versions"),
        (Method::GET, "/v1/nothing-here"),
    ] {
        let response = host.admin(method.clone(), path).send().await.unwrap();
        assert_eq!(response.status(), 404, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["message"].is_string());
    }
    // The data plane never serves the admin API, even with the token.
    let response = host
        .http
        .get(format!("{}/v1/functions", host.data_url))
        .bearer_auth(&host.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

/// Config changes apply to $LATEST only; published versions keep theirs. Deleting a version
/// or a function removes its routes.
#[tokio::test]
async fn config_changes_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("hello", "hello", "env=GREETING%3Done").await;
    host.publish("hello").await;
    let response = host
        .admin(Method::PATCH, "/v1/functions/hello/config")
        .json(&serde_json::json!({ "env": { "GREETING": "two" }, "timeout_ms": 2500 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let info: Value = response.json().await.unwrap();
    assert_eq!(info["latest"]["config"]["timeout_ms"], 2500);
    assert_eq!(info["latest"]["config"]["memory_mb"], 128);
    assert_eq!(host.call_text("/hello@latest").await.2, "two, world!\n");
    assert_eq!(host.call_text("/hello@1").await.2, "one, world!\n");

    let bad = host
        .admin(Method::PATCH, "/v1/functions/hello/config")
        .json(&serde_json::json!({ "memory_mb": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    host.publish("hello").await;
    let deleted = host
        .admin(Method::DELETE, "/v1/functions/hello/versions/1")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(host.call("/hello@1").await.status(), 404);
    assert_eq!(
        host.call_text("/hello").await,
        (200, "2".into(), "two, world!\n".into())
    );

    let deleted = host
        .admin(Method::DELETE, "/v1/functions/hello")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(host.call("/hello").await.status(), 404);
    assert_eq!(host.get_json("/v1/functions/hello").await.0, 404);
    let modules = std::fs::read_dir(host.data_dir.join("modules"))
        .unwrap()
        .count();
    assert_eq!(modules, 0, "a deleted function's module is removed");
}

/// With `Accept: application/x-ndjson` an upload streams progress and ends with `done`;
/// a link-time failure arrives as an `error` event.
#[tokio::test]
async fn uploads_stream_progress_events() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    let response = host
        .admin(Method::PUT, "/v1/functions/echo/code")
        .header("accept", "application/x-ndjson")
        .body(wasm("echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"validated"), "{text}");
    assert_eq!(kinds.last(), Some(&"done"), "{text}");
    let stages: Vec<&str> = events
        .iter()
        .filter_map(|e| e["detail"]["stage"].as_str())
        .collect();
    assert!(
        stages.contains(&"compiling") && stages.contains(&"linked"),
        "{text}"
    );
    assert_eq!(events.last().unwrap()["result"]["function"]["name"], "echo");

    // A component importing an interface the host does not provide fails at link time.
    let alien = wat::parse_str(
        r#"(component
            (import "acme:secret/vault@1.0.0" (instance $vault))
            (instance $handler)
            (export "wasi:http/incoming-handler@0.2.0" (instance $handler)))"#,
    )
    .unwrap();
    let response = host
        .admin(Method::PUT, "/v1/functions/alien/code")
        .header("accept", "application/x-ndjson")
        .body(alien.clone())
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "error", "{text}");
    assert_eq!(last["error"]["status"], 400);
    // Without progress, the same failure is a plain 400.
    let response = host.upload("alien", alien, "").await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be linked"),
        "{body}"
    );
    assert_eq!(host.get_json("/v1/functions/alien").await.0, 404);
}
