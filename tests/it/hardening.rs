//! Hostile clients against the host's edges: each test is an attack that once hurt fnhost,
//! and checks the host (and its neighbours) stay well.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::TestHost;

async fn deploy_hostile(host: &TestHost, name: &str, config: Value) {
    let query = format!(
        "config={}",
        form_urlencoded::byte_serialize(config.to_string().as_bytes()).collect::<String>()
    );
    host.deploy(name, "hostile", &query).await;
}

/// Clients that hang up while queued for a busy function leave its queue: a later request
/// still queues and is served once the slot frees, instead of an instant 503 "queue full".
#[tokio::test]
async fn clients_that_hang_up_while_queued_leave_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(TestHost::start(&dir.path().join("data")).await);
    deploy_hostile(&host, "slow", json!({"max_concurrency": 1})).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let hold = |ms: u64| {
        let host = host.clone();
        tokio::spawn(async move { host.call(&format!("/slow/sleep?ms={ms}")).await.status() })
    };
    let busy = hold(1500);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..2 {
        let hung_up = impatient
            .get(format!("{}/slow/sleep?ms=1", host.data_url))
            .send()
            .await;
        assert!(hung_up.is_err(), "the client gave up while queued");
    }
    assert_eq!(busy.await.unwrap(), 200);
    let busy = hold(500);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = host.call("/slow/sleep?ms=1").await;
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "queued, then served: {body}");
    assert_eq!(busy.await.unwrap(), 200);
}
