//! `wasi:keyvalue` through real functions: the flash-sale sample under 32 concurrent buyers,
//! durability across restarts and kill -9, stores a function may not open, namespaces, and
//! the host's limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Method;

use crate::common::{TestHost, urlencode};

/// The deploy query giving the function `stores` (and `env`, as `K=V` pairs).
fn config(stores: &[&str], env: &[(&str, &str)]) -> String {
    let config = serde_json::json!({
        "kv": stores,
        "env": env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
    });
    format!("config={}", urlencode(&config.to_string()))
}

async fn send(host: &TestHost, method: Method, path: &str, body: &str) -> (u16, String) {
    let response = host
        .http
        .request(method, format!("{}{path}", host.data_url))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// 32 clients buy from a stock of 150 at once: exactly 150 purchases succeed, everyone else
/// hears "sold out", and the stock ends at 0, never below.
#[tokio::test]
async fn thirty_two_buyers_never_oversell() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("sale", "flash_sale", &config(&["sale"], &[]))
        .await;
    assert_eq!(
        send(&host, Method::POST, "/sale/restock?n=150", "").await.0,
        200
    );
    let bought = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut buyers = Vec::new();
    for _ in 0..32 {
        let (http, url) = (host.http.clone(), format!("{}/sale/buy", host.data_url));
        let (bought, failed) = (bought.clone(), failed.clone());
        buyers.push(tokio::spawn(async move {
            loop {
                let response = http.post(&url).send().await.unwrap();
                match response.status().as_u16() {
                    200 => bought.fetch_add(1, Ordering::Relaxed),
                    409 => return,
                    other => {
                        let text = response.text().await.unwrap_or_default();
                        panic!("a purchase failed with {other}: {text}");
                    }
                };
                let _ = failed.load(Ordering::Relaxed);
            }
        }));
    }
    for buyer in buyers {
        buyer.await.unwrap();
    }
    assert_eq!(
        bought.load(Ordering::Relaxed),
        150,
        "purchases equal the stock exactly"
    );
    assert_eq!(
        send(&host, Method::GET, "/sale/stock", "").await,
        (200, "0\n".to_string())
    );
    assert_eq!(send(&host, Method::POST, "/sale/buy", "").await.0, 409);

    // Metered: every purchase read and swapped (more for those that lost a race).
    let store = [("namespace", "default"), ("store", "sale")];
    let operations = host.metric("fnhost_kv_operations_total", &store).await;
    assert!(operations >= 2.0 * 150.0 + 1.0, "{operations} operations");
    assert_eq!(host.metric("fnhost_kv_keys", &store).await, 1.0);
    assert_eq!(
        host.metric("fnhost_kv_stored_bytes", &store).await,
        ("stock".len() + "0".len()) as f64
    );
    // Billed in usage too: the operations each invocation made add up to the store's count.
    crate::common::eventually(Duration::from_secs(5), "usage of kv operations", || async {
        let (_, usage) = host.get_json("/v1/usage?function=sale").await;
        let billed = usage["rows"][0]["kv_operations"].as_f64().unwrap_or(0.0);
        (billed != operations).then(|| format!("{billed} billed of {operations}: {usage}"))
    })
    .await;
}

/// Values written survive a clean restart and kill -9; increments are atomic and durable.
#[tokio::test]
async fn values_survive_restarts_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = TestHost::start(&data).await;
    host.deploy("sale", "flash_sale", &config(&["sale"], &[]))
        .await;
    assert_eq!(
        send(&host, Method::PUT, "/sale/kv/greeting", "hello")
            .await
            .0,
        200
    );
    for _ in 0..5 {
        assert_eq!(
            send(&host, Method::POST, "/sale/count?by=2", "").await.0,
            200
        );
    }
    assert!(
        data.join("metadata-keyvalue.sqlite3").exists(),
        "values live in their own file, apart from the metadata"
    );
    let host = host.restart().await;
    assert_eq!(
        send(&host, Method::GET, "/sale/kv/greeting", "").await,
        (200, "hello".to_string())
    );
    assert_eq!(
        send(&host, Method::PUT, "/sale/kv/after", "restart")
            .await
            .0,
        200
    );
    host.kill9();
    let host = TestHost::start(&data).await;
    assert_eq!(
        send(&host, Method::GET, "/sale/kv/after", "").await,
        (200, "restart".to_string())
    );
    assert_eq!(
        send(&host, Method::POST, "/sale/count?by=1", "").await.1,
        "11\n"
    );
    assert_eq!(
        send(&host, Method::GET, "/sale/keys", "").await.1,
        "after\ncount\ngreeting\n"
    );
    assert_eq!(
        send(&host, Method::DELETE, "/sale/kv/after", "").await.0,
        200
    );
    assert_eq!(send(&host, Method::GET, "/sale/kv/after", "").await.0, 404);
}

/// A function opens only the stores its config lists, in its own namespace: anything else
/// is `no-such-store`, and the same store name in another namespace is another store.
#[tokio::test]
async fn functions_open_only_their_stores_in_their_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("plain", "flash_sale", "").await;
    let (status, body) = send(&host, Method::GET, "/plain/stock", "").await;
    assert_eq!(status, 500);
    assert!(body.contains("no such store"), "{body}");
    host.deploy(
        "nosy",
        "flash_sale",
        &config(&["sale"], &[("KV_STORE", "secrets")]),
    )
    .await;
    let (status, body) = send(&host, Method::GET, "/nosy/stock", "").await;
    assert_eq!(
        (status, body.contains("no such store")),
        (500, true),
        "{body}"
    );

    host.deploy("sale", "flash_sale", &config(&["sale"], &[]))
        .await;
    assert_eq!(
        send(&host, Method::PUT, "/sale/kv/k", "default's").await.0,
        200
    );
    let created = host
        .admin(Method::POST, "/v1/namespaces")
        .json(&serde_json::json!({"name": "other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    host.deploy("sale.other", "flash_sale", &config(&["sale"], &[]))
        .await;
    assert_eq!(
        send(&host, Method::GET, "/sale.other/kv/k", "").await.0,
        404
    );
    assert_eq!(
        send(&host, Method::PUT, "/sale.other/kv/k", "other's")
            .await
            .0,
        200
    );
    assert_eq!(
        send(&host, Method::GET, "/sale/kv/k", "").await.1,
        "default's"
    );

    // Allowed again by a config change, without a new upload.
    let patched = host
        .admin(Method::PATCH, "/v1/functions/plain/config")
        .json(&serde_json::json!({"kv": ["sale"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    assert_eq!(
        send(&host, Method::GET, "/plain@latest/kv/k", "").await.1,
        "default's"
    );
}

/// The host's limits refuse with errors that say which limit, and change nothing.
#[tokio::test]
async fn limits_refuse_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_with(
        &dir.path().join("data"),
        &[
            "--kv-max-value",
            "100",
            "--kv-max-keys",
            "3",
            "--kv-ops-per-request",
            "1",
        ],
    )
    .await;
    host.deploy("sale", "flash_sale", &config(&["sale"], &[]))
        .await;
    let (status, body) = send(&host, Method::PUT, "/sale/kv/big", &"x".repeat(101)).await;
    assert_eq!(status, 500);
    assert!(body.contains("over the limit of 100 bytes"), "{body}");
    assert_eq!(
        send(&host, Method::POST, "/sale/restock?n=5", "").await.0,
        200
    );
    for key in ["a", "b"] {
        assert_eq!(
            send(&host, Method::PUT, &format!("/sale/kv/{key}"), "1")
                .await
                .0,
            200
        );
    }
    let (status, body) = send(&host, Method::PUT, "/sale/kv/d", "1").await;
    assert_eq!(status, 500);
    assert!(
        body.contains("would hold 4 keys, over the limit of 3"),
        "{body}"
    );
    assert_eq!(
        send(&host, Method::GET, "/sale/kv/d", "").await.0,
        404,
        "nothing stored"
    );
    assert_eq!(
        send(&host, Method::PUT, "/sale/kv/a", "2").await.0,
        200,
        "overwrites fit"
    );
    // A purchase takes two operations (read, swap): past a limit of one per invocation.
    let (status, body) = send(&host, Method::POST, "/sale/buy", "").await;
    assert_eq!(status, 500);
    assert!(body.contains("limit of 1 key-value operations"), "{body}");
    assert_eq!(send(&host, Method::GET, "/sale/stock", "").await.1, "5\n");
}

/// Operators see the values functions write, through the admin API and `fnhost kv`, in
/// the namespace they name; a key of another namespace may not.
#[tokio::test]
async fn operators_read_and_write_stores_through_the_api_and_cli() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("sale", "flash_sale", &config(&["sale"], &[]))
        .await;
    assert_eq!(
        send(&host, Method::POST, "/sale/count?by=7", "").await.1,
        "7\n"
    );
    let fnhost = |args: &[&str], stdin: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fnhost"));
        command
            .args(args)
            .env("FNHOST_ADMIN_URL", &host.admin_url)
            .env("FNHOST_DATA_DIR", &host.data_dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().unwrap();
        if let Some(text) = stdin {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let output = child.wait_with_output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    assert_eq!(fnhost(&["kv", "get", "sale", "count"], None).1, "7");
    let (code, _, err) = fnhost(&["kv", "set", "sale", "greeting", "--value", "hi"], None);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        send(&host, Method::GET, "/sale/kv/greeting", "").await.1,
        "hi"
    );
    let (code, _, err) = fnhost(&["kv", "set", "sale", "from/stdin"], Some("piped"));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        send(&host, Method::GET, "/sale/kv/from/stdin", "").await.1,
        "piped"
    );
    assert_eq!(
        fnhost(&["kv", "ls", "sale"], None).1,
        "count\nfrom/stdin\ngreeting\n"
    );
    assert_eq!(
        fnhost(&["kv", "delete", "sale", "greeting"], None).0,
        Some(0)
    );
    let (code, _, err) = fnhost(&["kv", "get", "sale", "greeting"], None);
    assert_eq!(code, Some(1), "not found: {err}");
    assert!(err.contains("no key"), "{err}");

    let created = host
        .admin(Method::POST, "/v1/namespaces")
        .json(&serde_json::json!({"name": "shop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(
        fnhost(
            &[
                "kv",
                "set",
                "--namespace",
                "shop",
                "sale",
                "k",
                "--value",
                "shop's"
            ],
            None
        )
        .0,
        Some(0)
    );
    let (_, value) = (
        0,
        host.admin(Method::GET, "/v1/kv/sale.shop/k")
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(value.text().await.unwrap(), "shop's");
    assert_eq!(
        send(&host, Method::GET, "/sale/kv/k", "").await.0,
        404,
        "another namespace's store"
    );
    let key: serde_json::Value = host
        .admin(Method::POST, "/v1/namespaces/shop/keys")
        .json(&serde_json::json!({"role": "deployer"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let foreign = host
        .http
        .get(format!("{}/v1/kv/sale/count", host.admin_url))
        .bearer_auth(key["secret"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
}

/// `wasi:config` values come from the function's config: frozen into versions like env,
/// changed without a new upload.
#[tokio::test]
async fn wasi_config_values_come_from_the_functions_config() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    let query = format!("config={}", urlencode(r#"{"config": {"discount": "10%"}}"#));
    host.deploy("sale", "flash_sale", &query).await;
    assert_eq!(
        send(&host, Method::GET, "/sale/config/discount", "").await,
        (200, "10%".to_string())
    );
    assert_eq!(
        send(&host, Method::GET, "/sale/config/missing", "").await.0,
        404
    );
    assert_eq!(host.publish("sale").await.0, 201);
    let patched = host
        .admin(Method::PATCH, "/v1/functions/sale/config")
        .json(&serde_json::json!({"config": {"discount": "50%"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    assert_eq!(
        send(&host, Method::GET, "/sale@latest/config/discount", "")
            .await
            .1,
        "50%"
    );
    assert_eq!(
        send(&host, Method::GET, "/sale@1/config/discount", "")
            .await
            .1,
        "10%",
        "version 1 keeps its value"
    );
}

/// A secret reaches the function through `wasi:config` and nothing else: not the admin
/// API's answers, the history, the audit log, metrics, logs or the database file, where it is
/// sealed. Rotation needs no new version; the key survives a restart and a wrong key is
/// refused at start.
#[tokio::test]
async fn secrets_reach_the_function_and_appear_nowhere_else() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = TestHost::start(&data).await;
    let query = format!("config={}", urlencode(r#"{"secrets": ["API_KEY"]}"#));
    host.deploy("sale", "flash_sale", &query).await;
    let set = |value: &str| host.set_secret("sale", "API_KEY", value);
    let first = "plaintext-sekrit-4711";
    set(first);
    assert_eq!(
        send(&host, Method::GET, "/sale/config/API_KEY", "").await,
        (200, first.to_string())
    );
    assert_eq!(host.publish("sale").await.0, 201);
    let rotated = "rotated-sekrit-0815";
    set(rotated);
    assert_eq!(
        send(&host, Method::GET, "/sale@1/config/API_KEY", "")
            .await
            .1,
        rotated,
        "no new version needed"
    );
    assert_eq!(
        send(&host, Method::GET, "/sale/config/API_KEY", "").await.1,
        rotated
    );

    // As an environment variable, on a warm instance made before the rotation: the value is
    // set per request, so the next request sees the rotated one.
    let query = format!("config={}", urlencode(r#"{"secret_env": ["GREETING"]}"#));
    host.deploy("greeter", "hello", &query).await;
    let greet = |expected: String| {
        let host = &host;
        async move {
            assert_eq!(
                send(host, Method::GET, "/greeter/", "").await,
                (200, format!("{expected}, world!\n"))
            );
        }
    };
    greet("Hello".to_string()).await;
    let env_first = "env-sekrit-1234";
    host.set_secret("greeter", "GREETING", env_first);
    greet(env_first.to_string()).await;
    let provisioned = host
        .admin(Method::PUT, "/v1/functions/greeter/scaling")
        .json(&serde_json::json!({"provisioned": 2, "version": "latest"}))
        .send()
        .await
        .unwrap();
    assert_eq!(provisioned.status(), 200);
    crate::common::eventually(Duration::from_secs(10), "warm instances", || async {
        let (_, view) = host.get_json("/v1/functions/greeter/scaling").await;
        let warm = view["pools"][0]["warm"].as_u64().unwrap_or(0);
        (warm < 2).then(|| view.to_string())
    })
    .await;
    let cold_starts = || host.metric("fnhost_cold_starts_total", &[("function", "greeter")]);
    let before = cold_starts().await;
    assert!(before >= 1.0, "the first requests were cold starts");
    let env_rotated = "env-rotated-5678";
    host.set_secret("greeter", "GREETING", env_rotated);
    greet(env_rotated.to_string()).await;
    assert_eq!(cold_starts().await, before, "served by a warm instance");

    let mut seen = String::new();
    for path in [
        "/v1/functions/sale",
        "/v1/functions/sale/secrets",
        "/v1/functions/sale/history",
        "/v1/functions/sale/logs",
        "/v1/audit",
        "/v1/usage",
        "/metrics",
    ] {
        let response = host.admin(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        seen.push_str(&response.text().await.unwrap());
    }
    assert!(seen.contains("API_KEY"), "the name is listed");
    seen.push_str(&host.log());
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            seen.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    for secret in [first, rotated, env_first, env_rotated] {
        assert!(
            !seen.contains(secret),
            "{secret} appeared outside the function"
        );
    }

    let host = host.restart().await;
    assert_eq!(
        send(&host, Method::GET, "/sale/config/API_KEY", "").await.1,
        rotated
    );
    assert!(host.terminate());
    let wrong = crate::common::serve_command(&data)
        .env("FNHOST_SECRETS_KEY", "11".repeat(32))
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("not the one this registry's secrets were sealed with"),
        "{stderr}"
    );
}

/// A component written for Spin (spin-sdk 3: `fermyon:spin/key-value` and `variables`
/// 2.0.0) runs unchanged: its store is the function's key-value store (operators see what it
/// wrote), its variables are the function's `wasi:config` values, and without the store in
/// its config it cannot open it.
#[tokio::test]
async fn spin_components_run_unchanged_on_the_same_stores() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    let query = format!(
        "config={}",
        urlencode(r#"{"kv": ["default"], "config": {"greeting": "hej"}}"#)
    );
    host.deploy("spin", "spin_kv", &query).await;
    assert_eq!(
        send(&host, Method::PUT, "/spin/kv/colour", "blue").await,
        (200, "stored\n".to_string())
    );
    assert_eq!(
        send(&host, Method::GET, "/spin/kv/colour", "").await,
        (200, "blue".to_string())
    );
    assert_eq!(send(&host, Method::POST, "/spin/visits", "").await.1, "1\n");
    assert_eq!(send(&host, Method::POST, "/spin/visits", "").await.1, "2\n");
    assert_eq!(
        send(&host, Method::GET, "/spin/keys", "").await.1,
        "colour\nvisits"
    );
    assert_eq!(
        send(&host, Method::GET, "/spin/var/greeting", "").await,
        (200, "hej".to_string())
    );
    let (status, missing) = send(&host, Method::GET, "/spin/var/nope", "").await;
    assert_eq!(status, 404);
    assert!(
        missing.contains("Undefined") && missing.contains("nope"),
        "{missing}"
    );
    let stored = host
        .admin(Method::GET, "/v1/kv/default/colour")
        .send()
        .await
        .unwrap();
    assert_eq!(stored.text().await.unwrap(), "blue", "the same store");
    assert_eq!(
        send(&host, Method::DELETE, "/spin/kv/colour", "").await.0,
        200
    );
    assert_eq!(send(&host, Method::GET, "/spin/kv/colour", "").await.0, 404);

    host.deploy("closed", "spin_kv", "").await;
    let (status, refused) = send(&host, Method::GET, "/closed/keys", "").await;
    assert_eq!(status, 403);
    assert!(
        refused.to_lowercase().contains("no such store") || refused.contains("NoSuchStore"),
        "{refused}"
    );
}
