//! Fleet mode: fnhost nodes on a real PostgreSQL server (`--registry postgres://...`).

use crate::common::TestHost;
use crate::postgres_server::TestPostgres;

/// Everything acknowledged on PostgreSQL survives kill -9: functions, versions, configs,
/// aliases and triggers come back, and nothing was written to SQLite meanwhile.
#[tokio::test]
async fn a_node_on_postgres_keeps_everything_across_kill_9() {
    let dsn = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flags = ["--registry", dsn.as_str()];
    let host = TestHost::start_with(&data, &flags).await;
    host.deploy("hello", "hello", "env=GREETING%3Done").await;
    host.publish("hello").await;
    host.deploy("hello", "hello", "env=GREETING%3Dtwo").await;
    let alias = host
        .admin(reqwest::Method::PUT, "/v1/functions/hello/aliases/prod")
        .json(&serde_json::json!({"routes": [{"version": 1, "percent": 100}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(alias.status(), 200, "{}", alias.text().await.unwrap());
    let trigger = host
        .admin(reqwest::Method::POST, "/v1/functions/hello/triggers")
        .json(&serde_json::json!({"cron": "0 0 * * * *"}))
        .send()
        .await
        .unwrap();
    assert_eq!(trigger.status(), 201, "{}", trigger.text().await.unwrap());
    let (_, before) = host.get_json("/v1/functions/hello").await;
    let (_, triggers_before) = host.get_json("/v1/functions/hello/triggers").await;
    host.kill9();

    let host = TestHost::start_with(&data, &flags).await;
    assert!(
        !data.join("metadata.sqlite3").exists(),
        "metadata went to SQLite although --registry names PostgreSQL"
    );
    let (_, after) = host.get_json("/v1/functions/hello").await;
    assert_eq!(after, before);
    let (_, triggers_after) = host.get_json("/v1/functions/hello/triggers").await;
    assert_eq!(triggers_after, triggers_before);
    assert_eq!(host.call_text("/hello@prod").await.2, "one, world!\n");
    assert_eq!(host.call_text("/hello@latest").await.2, "two, world!\n");
    let (_, history) = host.get_json("/v1/functions/hello/history").await;
    assert!(
        history["changes"].as_array().is_some_and(|e| e.len() >= 2),
        "{history}"
    );
}

/// A registry URL fnhost cannot use is refused at start with what to write instead, and a
/// server that is not there is named without its password.
#[tokio::test]
async fn unusable_registries_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (registry, expect) in [
        ("mysql://u:hunter2@db/x", "use postgres://"),
        (
            "postgres://u:hunter2@127.0.0.1:1/x?connect_timeout=2",
            "PostgreSQL postgres://u:***@127.0.0.1:1/x",
        ),
    ] {
        let out = crate::common::serve_command(&data)
            .args(["--registry", registry])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(expect), "{registry}: {stderr}");
        assert!(!stderr.contains("hunter2"), "password printed: {stderr}");
    }
}

/// A new database on the shared test server (its client blocks, so off the test's runtime).
async fn fresh_database() -> String {
    tokio::task::spawn_blocking(|| TestPostgres::shared().fresh_database())
        .await
        .unwrap()
}
