//! Buckets on S3: the same object API and triggers, with the store on a real S3-compatible
//! server (s3s-fs, installed from crates.io by `scripts/install-tools`), reached with the
//! usual AWS_* variables. The objects land in the server's storage, not in the data directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::TestHost;
use reqwest::Method;
use serde_json::{Value, json};

pub(crate) struct S3Server {
    child: Child,
    pub(crate) port: u16,
}

impl S3Server {
    /// Kills the server as a crash would (SIGKILL), keeping its storage.
    pub(crate) fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start_s3(binary: &PathBuf, root: &std::path::Path) -> S3Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    start_s3_on(binary, root, port)
}

/// Starts s3s-fs on `port` (a restart of a killed server), serving the bucket `fnhost-test`
/// from `root`; the AWS_* values of [`s3_env`] reach it.
pub(crate) fn start_s3_on(binary: &PathBuf, root: &std::path::Path, port: u16) -> S3Server {
    std::fs::create_dir_all(root.join("fnhost-test")).unwrap();
    let child = Command::new(binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", "fnhost", "--secret-key", "fnhost-secret"])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting s3s-fs");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "s3s-fs did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    S3Server { child, port }
}

/// What fnhost needs to reach the server on `port`: (name, value) pairs for its environment.
pub(crate) fn s3_env(endpoint: &str) -> [(&'static str, &str); 4] {
    [
        ("AWS_ACCESS_KEY_ID", "fnhost"),
        ("AWS_SECRET_ACCESS_KEY", "fnhost-secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT", endpoint),
    ]
}

#[tokio::test]
async fn buckets_and_triggers_work_on_s3() {
    let Some(binary) = common::tool("FNHOST_S3FS", "buckets on S3") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s3_root = dir.path().join("s3");
    let s3 = start_s3(&binary, &s3_root);
    let endpoint = format!("http://127.0.0.1:{}", s3.port);
    let host = TestHost::start_with_env(
        &dir.path().join("data"),
        &["--object-store", "s3://fnhost-test/prod"],
        &s3_env(&endpoint),
    )
    .await;
    host.deploy("copy", "hostile", "env=VARIANT%3Ds3").await;
    let trigger = host
        .admin(Method::POST, "/v1/functions/copy/triggers")
        .json(&json!({"bucket": "inbox", "output_bucket": "outbox"}))
        .send()
        .await
        .unwrap();
    assert_eq!(trigger.status(), 201);

    let put = host
        .admin(Method::PUT, "/v1/buckets/inbox/objects/orders/1.json")
        .header("content-type", "application/json")
        .body("{\"order\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{}", put.text().await.unwrap());
    // The object is in the S3 server's storage, under the configured prefix.
    let stored = s3_root.join("fnhost-test/prod/inbox/orders/1.json");
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), "{\"order\": 1}");
    assert!(!dir.path().join("data/objects").join("inbox").exists());

    let started = Instant::now();
    loop {
        let (_, events) = host
            .get_json("/v1/functions/copy/events?status=delivered")
            .await;
        if events["events"].as_array().is_some_and(|e| e.len() == 1) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{events}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = host
        .admin(Method::GET, "/v1/buckets/outbox/objects/orders/1.json")
        .send()
        .await
        .unwrap();
    assert_eq!(output.status(), 200);
    assert!(output.text().await.unwrap().ends_with("s3"));
    let (_, listing): (u16, Value) = host
        .get_json("/v1/buckets/inbox/objects?prefix=orders/")
        .await;
    assert_eq!(listing["objects"][0]["key"], "orders/1.json", "{listing}");
    let deleted = host
        .admin(Method::DELETE, "/v1/buckets/inbox/objects/orders/1.json")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert!(!stored.exists());
}
