//! Crash safety: a host killed with SIGKILL in the middle of uploads and publishes restarts
//! with every acknowledged version intact and nothing half-written visible.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{TestHost, wasm};
use reqwest::Method;

/// What a client was told had been stored.
#[derive(Debug, Clone)]
struct Acked {
    function: String,
    version: u64,
    digest: String,
    greeting: String,
}

/// `hello` with a custom section appended: a distinct digest (so a new blob is written and
/// compiled) with the same behaviour.
fn unique_hello(base: &[u8], tag: u32) -> Vec<u8> {
    let name = b"fnhost-test";
    let payload = tag.to_le_bytes();
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = base.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8);
    out.extend_from_slice(&section);
    out
}

/// SIGKILL while three clients upload and publish as fast as they can: after a restart every
/// acknowledged version has its digest and config, answers requests, and no partial files or
/// orphaned modules remain.
#[tokio::test]
async fn sigkill_during_uploads_and_publishes_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = Arc::new(TestHost::start(&data).await);
    let pid = host.pid().to_string();
    let hello = Arc::new(wasm("hello"));
    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));

    let workers: Vec<_> = (0..3)
        .map(|worker| {
            let (host, hello, acked) = (host.clone(), hello.clone(), acked.clone());
            tokio::spawn(async move {
                for i in 0u32.. {
                    let function = format!("crash-{worker}");
                    let greeting = format!("w{worker}-{i}");
                    // Worker 0 writes a new module each time; the others reuse one.
                    let bytes = if worker == 0 {
                        unique_hello(&hello, i)
                    } else {
                        hello.to_vec()
                    };
                    let query = format!("env=GREETING%3D{greeting}");
                    let Ok(response) = host
                        .admin(
                            Method::PUT,
                            &format!("/v1/functions/{function}/code?{query}"),
                        )
                        .body(bytes)
                        .send()
                        .await
                    else {
                        return;
                    };
                    if response.status() != 200 {
                        return;
                    }
                    let Ok(response) = host
                        .admin(Method::POST, &format!("/v1/functions/{function}/versions"))
                        .send()
                        .await
                    else {
                        return;
                    };
                    if response.status() != 201 {
                        return;
                    }
                    let Ok(body) = response.json::<serde_json::Value>().await else {
                        return;
                    };
                    acked.lock().unwrap().push(Acked {
                        function,
                        version: body["version"]["version"].as_u64().unwrap(),
                        digest: body["version"]["digest"].as_str().unwrap().to_string(),
                        greeting,
                    });
                }
            })
        })
        .collect();

    // Let the workers get going, then kill the host mid-flight.
    while acked.lock().unwrap().len() < 30 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(137)).await;
    // Workers hold clones of the harness, so kill by pid.
    std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    for worker in workers {
        worker.await.unwrap();
    }
    drop(host);
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 30);

    let host = TestHost::start(&data).await;
    for ack in &acked {
        let (status, version) = host
            .get_json(&format!(
                "/v1/functions/{}/versions/{}",
                ack.function, ack.version
            ))
            .await;
        assert_eq!(status, 200, "acknowledged {ack:?} is missing");
        assert_eq!(version["digest"], ack.digest.as_str(), "{ack:?}");
        assert_eq!(version["config"]["env"]["GREETING"], ack.greeting.as_str());
        let (status, _, body) = host
            .call_text(&format!("/{}@{}", ack.function, ack.version))
            .await;
        assert_eq!((status, body), (200, format!("{}, world!\n", ack.greeting)));
    }
    // Whatever else is listed (acknowledged or not) is whole and serves.
    let (_, list) = host.get_json("/v1/functions").await;
    for function in list["functions"].as_array().unwrap() {
        let name = function["name"].as_str().unwrap();
        assert_eq!(
            host.call_text(&format!("/{name}@latest")).await.0,
            200,
            "{name}"
        );
        let (_, versions) = host
            .get_json(&format!("/v1/functions/{name}/versions"))
            .await;
        for version in versions["versions"].as_array().unwrap() {
            let path = format!("/{name}@{}", version["version"]);
            assert_eq!(host.call_text(&path).await.0, 200, "{path}");
        }
    }
    for sub in ["modules", "compiled"] {
        for entry in std::fs::read_dir(data.join(sub)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().to_string();
            assert!(!name.ends_with(".partial"), "leftover {sub}/{name}");
        }
    }
    // Every module on disk is one the metadata references (orphans are collected at start).
    let mut referenced = std::collections::HashSet::new();
    for function in list["functions"].as_array().unwrap() {
        let name = function["name"].as_str().unwrap();
        let (_, details) = host.get_json(&format!("/v1/functions/{name}")).await;
        referenced.insert(details["latest"]["digest"].as_str().unwrap().to_string());
        for version in details["versions"].as_array().unwrap() {
            referenced.insert(version["digest"].as_str().unwrap().to_string());
        }
    }
    let on_disk: std::collections::HashSet<String> = std::fs::read_dir(data.join("modules"))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            format!("sha256:{}", name.trim_end_matches(".wasm"))
        })
        .collect();
    assert_eq!(on_disk, referenced);
}
