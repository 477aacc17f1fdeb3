//! Aliases and gray release over real HTTP: `$DEFAULT` canary shares, rollback, promote,
//! custom weighted aliases, sticky users, rules, validation, and alias changes under load.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::TestHost;
use reqwest::Method;
use serde_json::{Value, json};

/// Sends `n` requests to `path` (32 at a time) and counts response bodies; every answer must
/// be a 200.
async fn tally(
    host: &TestHost,
    path: &str,
    n: usize,
    headers: &[(&str, &str)],
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(32) {
        let requests = chunk.iter().map(|_| {
            let mut request = host.http.get(format!("{}{path}", host.data_url));
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 200);
                response.text().await.unwrap()
            }
        });
        for body in futures::future::join_all(requests).await {
            *counts.entry(body.trim().to_string()).or_default() += 1;
        }
    }
    counts
}

async fn publish_greeting(host: &TestHost, greeting: &str) -> u64 {
    host.deploy("shop", "hello", &format!("env=GREETING%3D{greeting}"))
        .await;
    host.publish("shop").await.1["version"]["version"]
        .as_u64()
        .unwrap()
}

async fn admin_json(host: &TestHost, method: Method, path: &str, body: Value) -> (u16, Value) {
    let response = host.admin(method, path).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The SCF flow: a release goes to $LATEST with 10% of traffic, is rolled back to 0%, then
/// promoted to a version that takes everything.
#[tokio::test]
async fn default_canary_rollback_and_promote() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    publish_greeting(&host, "stable").await;
    host.deploy("shop", "hello", "env=GREETING%3Dcanary&traffic=10")
        .await;

    let response = host.call("/shop").await;
    assert_eq!(response.headers()["fnhost-alias"], "$DEFAULT");
    let counts = tally(&host, "/shop/", 2000, &[]).await;
    let canary = counts.get("canary, world!").copied().unwrap_or(0);
    let stable = counts.get("stable, world!").copied().unwrap_or(0);
    assert_eq!(canary + stable, 2000, "{counts:?}");
    let share = canary as f64 * 100.0 / 2000.0;
    println!("$DEFAULT at 10%: {canary} of 2000 requests went to $LATEST ({share:.1}%)");
    assert!((7.5..=12.5).contains(&share), "{share}% to $LATEST");

    let (status, default) = admin_json(
        &host,
        Method::PUT,
        "/v1/functions/shop/traffic",
        json!({"latest_percent": 0}),
    )
    .await;
    assert_eq!(status, 200, "{default}");
    assert_eq!(default["latest_percent"], 0.0);
    let counts = tally(&host, "/shop", 300, &[]).await;
    assert_eq!(
        counts.get("stable, world!"),
        Some(&300),
        "rollback leaks: {counts:?}"
    );

    let (status, promoted) =
        admin_json(&host, Method::POST, "/v1/functions/shop/promote", json!({})).await;
    assert_eq!(status, 201, "{promoted}");
    assert_eq!(promoted["version"]["version"], 2);
    let counts = tally(&host, "/shop", 200, &[]).await;
    assert_eq!(counts.get("canary, world!"), Some(&200), "{counts:?}");
    assert_eq!(host.call_text("/shop").await.1, "2");
}

/// A custom alias over three versions splits by weight, keeps each user on one version, and
/// survives a restart.
#[tokio::test]
async fn custom_alias_over_three_versions_with_sticky_users() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = TestHost::start(&data).await;
    for greeting in ["one", "two", "three"] {
        publish_greeting(&host, greeting).await;
    }
    let (status, alias) = admin_json(
        &host,
        Method::PUT,
        "/v1/functions/shop/aliases/prod",
        json!({
            "routes": [
                {"version": 1, "percent": 50},
                {"version": 2, "percent": 30},
                {"version": 3, "percent": 20}
            ],
            "sticky_header": "User-Id"
        }),
    )
    .await;
    assert_eq!(status, 200, "{alias}");
    assert_eq!(alias["sticky_header"], "user-id");

    let counts = tally(&host, "/shop@prod/", 2000, &[]).await;
    for (greeting, percent) in [("one", 50.0), ("two", 30.0), ("three", 20.0)] {
        let got = counts
            .get(&format!("{greeting}, world!"))
            .copied()
            .unwrap_or(0) as f64
            / 20.0;
        println!("prod: version {greeting} got {got:.1}% (weight {percent}%)");
        assert!(
            (got - percent).abs() <= 4.0,
            "{greeting}: {got}% vs {percent}%"
        );
    }

    let mut seen_versions = std::collections::HashSet::new();
    for user in ["ada", "grace", "linus", "barbara", "ken", "margaret"] {
        let counts = tally(&host, "/shop@prod", 50, &[("user-id", user)]).await;
        assert_eq!(counts.len(), 1, "user {user} saw {counts:?}");
        seen_versions.extend(counts.into_keys());
    }
    assert!(
        seen_versions.len() >= 2,
        "sticky users all landed on one version"
    );
    let sticky = tally(&host, "/shop@prod", 1, &[("user-id", "ada")]).await;
    assert_eq!(
        host.call("/shop@prod").await.headers()["fnhost-alias"],
        "prod"
    );

    assert!(host.terminate());
    let host = TestHost::start(&data).await;
    assert_eq!(
        tally(&host, "/shop@prod", 20, &[("user-id", "ada")])
            .await
            .keys()
            .collect::<Vec<_>>(),
        sticky.keys().collect::<Vec<_>>()
    );
}

/// Rules route matching requests before weights apply.
#[tokio::test]
async fn rules_apply_before_weights() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    for greeting in ["old", "new"] {
        publish_greeting(&host, greeting).await;
    }
    let (status, _) = admin_json(
        &host,
        Method::PUT,
        "/v1/functions/shop/aliases/app",
        json!({
            "routes": [{"version": 1, "percent": 100}],
            "rules": [
                {"header": "app-version", "prefix": "2.", "version": 2},
                {"header": "x-tester", "exact": "yes", "version": "latest"}
            ]
        }),
    )
    .await;
    assert_eq!(status, 200);
    let counts = tally(&host, "/shop@app", 30, &[("app-version", "2.4.1")]).await;
    assert_eq!(counts.get("new, world!"), Some(&30), "{counts:?}");
    let counts = tally(&host, "/shop@app", 30, &[("app-version", "1.9")]).await;
    assert_eq!(counts.get("old, world!"), Some(&30), "{counts:?}");
    assert_eq!(host.call_text("/shop@app").await.2, "old, world!\n");
}

/// Bad weights, unknown versions and deleting a pinned version are refused clearly; $DEFAULT
/// is listed first.
#[tokio::test]
async fn aliases_are_validated_and_pin_their_versions() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    publish_greeting(&host, "one").await;
    publish_greeting(&host, "two").await;
    let path = "/v1/functions/shop/aliases/prod";
    let (status, body) = admin_json(
        &host,
        Method::PUT,
        path,
        json!({"routes": [
            {"version": 1, "percent": 90}, {"version": 2, "percent": 9.99}
        ]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sum to 99.99%"),
        "{body}"
    );
    let (status, body) = admin_json(
        &host,
        Method::PUT,
        path,
        json!({"routes": [
            {"version": 1, "percent": 99.99}, {"version": 7, "percent": 0.01}
        ]}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = admin_json(
        &host,
        Method::PUT,
        "/v1/functions/shop/aliases/7",
        json!({"routes": [
            {"version": 1, "percent": 100}
        ]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = admin_json(
        &host,
        Method::PUT,
        path,
        json!({"routes": [
            {"version": 1, "percent": 99.99}, {"version": 2, "percent": 0.01}
        ]}),
    )
    .await;
    assert_eq!(status, 200);

    let response = host
        .admin(Method::DELETE, "/v1/functions/shop/versions/1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("alias prod"),
        "{body}"
    );

    let (_, list) = host.get_json("/v1/functions/shop/aliases").await;
    let names: Vec<&str> = list["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["$DEFAULT", "prod"]);
    assert_eq!(list["aliases"][1]["routes"][1]["percent"], 0.01);

    let response = host.admin(Method::DELETE, path).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(host.call("/shop@prod").await.status(), 404);
    let response = host
        .admin(Method::DELETE, "/v1/functions/shop/versions/1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Flipping an alias back and forth many times a second never fails a request: each gets a
/// 200 from one of the alias's versions.
#[tokio::test]
async fn flipping_an_alias_under_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(TestHost::start(&dir.path().join("data")).await);
    publish_greeting(&host, "blue").await;
    publish_greeting(&host, "green").await;
    let set = |version: u32| {
        let host = host.clone();
        async move {
            let (status, _) = admin_json(
                &host,
                Method::PUT,
                "/v1/functions/shop/aliases/live",
                json!({"routes": [{"version": version, "percent": 100}]}),
            )
            .await;
            assert_eq!(status, 200);
        }
    };
    set(1).await;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (host, stop) = (host.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = HashMap::<String, usize>::new();
                while !stop.load(Ordering::Relaxed) {
                    let (status, _, body) = host.call_text("/shop@live").await;
                    assert_eq!(status, 200, "{body}");
                    assert!(
                        body == "blue, world!\n" || body == "green, world!\n",
                        "{body}"
                    );
                    *seen.entry(body).or_default() += 1;
                }
                seen
            })
        })
        .collect();
    let mut flips = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        set(if flips % 2 == 0 { 2 } else { 1 }).await;
        flips += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = HashMap::<String, usize>::new();
    for client in clients {
        for (body, n) in client.await.unwrap() {
            *total.entry(body).or_default() += n;
        }
    }
    println!("{flips} alias flips in 2 s; responses: {total:?}");
    assert!(flips > 40, "only {flips} flips");
    assert_eq!(
        total.len(),
        2,
        "both versions should have served: {total:?}"
    );
}
