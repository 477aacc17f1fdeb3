//! Components built by other languages' official toolchains deploy and run unchanged: they
//! are large (the Python runtime is ~18 MB), import more than the proxy world, and take
//! seconds to compile, which the upload reports as progress.

use std::path::Path;
use std::process::Command;

use crate::common;
use crate::common::TestHost;
use reqwest::Method;

/// `functions/python-hello`, built with componentize-py, deploys (with compile progress),
/// sees its env and path, and serves repeatedly from fresh instances.
#[tokio::test]
async fn python_component_deploys_and_runs_unchanged() {
    let Some(componentize_py) = common::tool("FNHOST_COMPONENTIZE_PY", "Python components") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let wasm = out.path().join("python-hello.wasm");
    let status = Command::new(&componentize_py)
        .current_dir(root.join("functions/python-hello"))
        .arg("-d")
        .arg(root.join("wit"))
        .args(["-w", "wasi:http/proxy@0.2.12", "componentize", "app", "-o"])
        .arg(&wasm)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .status()
        .unwrap();
    assert!(status.success(), "componentize-py failed");
    let bytes = std::fs::read(&wasm).unwrap();
    assert!(bytes.len() > 5 << 20, "expected a large Python component");

    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    let response = host
        .admin(Method::PUT, "/v1/functions/py/code?env=GREETING%3DHej")
        .header("accept", "application/x-ndjson")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let progress = response.text().await.unwrap();
    assert!(progress.contains(r#""stage":"compiling""#), "{progress}");
    assert!(
        progress
            .lines()
            .last()
            .unwrap()
            .contains(r#""event":"done""#),
        "{progress}"
    );

    for _ in 0..5 {
        let (status, version, body) = host.call_text("/py/items?id=7").await;
        assert_eq!(
            (status, version.as_str(), body.as_str()),
            (200, "latest", "Hej from Python at /items?id=7\n")
        );
    }
}
