//! Teams: namespaces, API keys with roles, quotas, key-auth functions and the audit log,
//! against a real host over HTTP (and the CLI for the walk-through in the README).

use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestHost, wasm, wasm_path};

/// Creates namespace `name` (with `quotas`) with the host admin token.
async fn namespace(host: &TestHost, name: &str, quotas: Value) {
    let response = host
        .admin(Method::POST, "/v1/namespaces")
        .json(&json!({"name": name, "quotas": quotas}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

/// Creates a key of `namespace` with `role` using the host admin token; returns (id, secret).
async fn key(host: &TestHost, namespace: &str, role: &str, extra: Value) -> (String, String) {
    let mut body = json!({"role": role, "description": format!("{role} of {namespace}")});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let response = host
        .admin(Method::POST, &format!("/v1/namespaces/{namespace}/keys"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    (
        created["id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    )
}

/// An admin-plane request with `secret` instead of the host token.
async fn with_key(
    host: &TestHost,
    secret: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = host
        .http
        .request(method, format!("{}{path}", host.admin_url))
        .bearer_auth(secret);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn upload_with_key(host: &TestHost, secret: &str, name: &str, query: &str) -> (u16, Value) {
    let response = host
        .http
        .put(format!(
            "{}/v1/functions/{name}/code?{query}",
            host.admin_url
        ))
        .bearer_auth(secret)
        .body(wasm("hello"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A deployer of namespace A does everything a deployer does in A, and nothing in B: every
/// read, deploy, change or key creation there is 403 with what the key may do. A viewer
/// reads and cannot write.
#[tokio::test]
async fn keys_are_confined_to_their_namespace_and_role() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    namespace(&host, "team-a", json!({})).await;
    namespace(&host, "team-b", json!({})).await;
    host.deploy("hello.team-b", "hello", "").await;
    host.deploy("hello", "hello", "").await;
    let (_, deployer) = key(&host, "team-a", "deployer", json!({})).await;
    let (_, viewer) = key(&host, "team-a", "viewer", json!({})).await;

    // In its own namespace: deploy, publish, traffic, read.
    let (status, body) = upload_with_key(&host, &deployer, "hello.team-a", "").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = with_key(
        &host,
        &deployer,
        Method::POST,
        "/v1/functions/hello.team-a/versions",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = with_key(
        &host,
        &deployer,
        Method::PUT,
        "/v1/functions/hello.team-a/traffic",
        Some(json!({"latest_percent": 10})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, list) = with_key(&host, &deployer, Method::GET, "/v1/functions", None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["hello.team-a"],
        "a key lists its own namespace only"
    );
    assert_eq!(
        host.call("/hello.team-a/").await.status(),
        200,
        "a public function of a namespace is served at /NAME.NS/"
    );

    // Anything in B, the default namespace or host-wide: 403, saying what the key may do.
    let refusals: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::GET, "/v1/functions/hello.team-b", None),
        (Method::GET, "/v1/functions/hello.team-b/logs", None),
        (Method::GET, "/v1/functions?namespace=team-b", None),
        (Method::GET, "/v1/usage?function=hello.team-b", None),
        (
            Method::PATCH,
            "/v1/functions/hello.team-b/config",
            Some(json!({"memory_mb": 64})),
        ),
        (
            Method::PUT,
            "/v1/functions/hello.team-b/traffic",
            Some(json!({"latest_percent": 50})),
        ),
        (Method::DELETE, "/v1/functions/hello.team-b", None),
        (
            Method::PUT,
            "/v1/functions/hello/traffic",
            Some(json!({"latest_percent": 50})),
        ),
        (
            Method::POST,
            "/v1/namespaces/team-b/keys",
            Some(json!({"role": "admin"})),
        ),
        (
            Method::POST,
            "/v1/namespaces/team-a/keys",
            Some(json!({"role": "admin"})),
        ),
        (
            Method::POST,
            "/v1/namespaces",
            Some(json!({"name": "mine"})),
        ),
        (
            Method::PUT,
            "/v1/namespaces/team-a/quotas",
            Some(json!({"functions": null})),
        ),
        (Method::GET, "/metrics", None),
        (Method::GET, "/v1/nodes", None),
    ];
    for (method, path, body) in refusals {
        let (status, answer) = with_key(&host, &deployer, method.clone(), path, body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("deployer") && message.contains("may"),
            "{message}"
        );
    }
    let (status, _) = upload_with_key(&host, &deployer, "hello.team-b", "").await;
    assert_eq!(status, 403, "no deploy into another namespace");
    let (status, _) = upload_with_key(&host, &deployer, "intruder", "").await;
    assert_eq!(status, 403, "no deploy into the default namespace");
    // Nothing changed in B.
    let (_, detail) = host.get_json("/v1/functions/hello.team-b").await;
    assert_eq!(detail["version_count"], 0);
    assert_eq!(detail["latest"]["config"]["memory_mb"], 128);
    assert_eq!(host.get_json("/v1/functions/intruder").await.0, 404);

    // A viewer reads and writes nothing.
    let (status, _) = with_key(
        &host,
        &viewer,
        Method::GET,
        "/v1/functions/hello.team-a",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = with_key(
        &host,
        &viewer,
        Method::GET,
        "/v1/functions/hello.team-a/history",
        None,
    )
    .await;
    assert_eq!(status, 200);
    for (method, path, body) in [
        (
            Method::PATCH,
            "/v1/functions/hello.team-a/config",
            Some(json!({"memory_mb": 64})),
        ),
        (
            Method::POST,
            "/v1/functions/hello.team-a/versions",
            Some(json!({})),
        ),
        (
            Method::PUT,
            "/v1/functions/hello.team-a/traffic",
            Some(json!({"latest_percent": 0})),
        ),
    ] {
        let (status, answer) = with_key(&host, &viewer, method, path, body).await;
        assert_eq!(status, 403, "{path}: {answer}");
    }
    let (status, _) = upload_with_key(&host, &viewer, "hello.team-a", "").await;
    assert_eq!(status, 403);
}

/// Revoking a key refuses its next request on both planes; an expired key is refused with
/// the reason; keys survive a restart; the secret is never stored or listed.
#[tokio::test]
async fn revocation_and_expiry_take_effect_at_once_and_keys_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    namespace(&host, "shop", json!({})).await;
    host.deploy("cart.shop", "hello", "").await;
    let (admin_id, admin) = key(&host, "shop", "admin", json!({})).await;
    // A namespace admin manages its namespace's keys.
    let (status, created) = with_key(
        &host,
        &admin,
        Method::POST,
        "/v1/namespaces/shop/keys",
        Some(json!({"role": "invoker"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let invoker = created["secret"].as_str().unwrap().to_string();
    let invoker_id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["created_by"], format!("key:{admin_id}"));
    let (status, _) = with_key(
        &host,
        &admin,
        Method::PUT,
        "/v1/functions/cart.shop/access",
        Some(json!({"access": "key"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(call(&host, &invoker).await, 200);

    // Survives a restart (durable, and the ring is rebuilt at start).
    let host = host.restart().await;
    assert_eq!(call(&host, &invoker).await, 200);
    let (status, list) =
        with_key(&host, &admin, Method::GET, "/v1/namespaces/shop/keys", None).await;
    assert_eq!(status, 200);
    let listed = list.to_string();
    assert!(
        listed.contains(&invoker_id) && !listed.contains(&invoker[20..]),
        "{listed}"
    );
    let stored = std::fs::read(host.data_dir.join("metadata.sqlite3")).unwrap();
    let secret_part = invoker.rsplit('_').next().unwrap();
    assert!(
        !stored
            .windows(secret_part.len())
            .any(|w| w == secret_part.as_bytes()),
        "the secret itself is never stored"
    );

    let (status, revoked) = with_key(
        &host,
        &admin,
        Method::DELETE,
        &format!("/v1/keys/{invoker_id}"),
        None,
    )
    .await;
    assert_eq!((status, revoked["state"].as_str()), (200, Some("revoked")));
    assert_eq!(
        call(&host, &invoker).await,
        401,
        "revoked: refused on the next call"
    );
    let (status, _) = with_key(&host, &invoker, Method::GET, "/v1/status", None).await;
    assert_eq!(status, 401);

    let (status, _) = with_key(
        &host,
        &admin,
        Method::DELETE,
        &format!("/v1/keys/{admin_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "a key may revoke itself");
    let (status, answer) = with_key(&host, &admin, Method::GET, "/v1/functions", None).await;
    assert_eq!(status, 401);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{answer}"
    );

    let (_, short) = key(&host, "shop", "viewer", json!({"expires_in_secs": 1})).await;
    let (status, _) = with_key(&host, &short, Method::GET, "/v1/functions", None).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, answer) = with_key(&host, &short, Method::GET, "/v1/functions", None).await;
    assert_eq!(status, 401);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{answer}"
    );
    let (status, _) = with_key(
        &host,
        "fnk_000000000000_0000000000000000000000000000000000000000000000000000000000000000",
        Method::GET,
        "/v1/functions",
        None,
    )
    .await;
    assert_eq!(status, 401);
}

/// Each quota refuses the change that would pass it with 403 naming it (429 for concurrency,
/// at run time), and the refused change changes nothing.
#[tokio::test]
async fn quotas_refuse_with_their_name_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_with(&dir.path().join("data"), &["--queue-timeout", "300ms"]).await;
    namespace(
        &host,
        "q",
        json!({"functions": 1, "versions": 1, "memory_mb": 64, "provisioned": 1}),
    )
    .await;
    let code = |body: &Value| {
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };

    let created = host.upload("one.q", wasm("hello"), "memory_mb=64").await;
    assert_eq!(created.status(), 200);
    let refused = host.upload("two.q", wasm("hello"), "memory_mb=64").await;
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(code(&body), "quota_functions", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("quota functions")
    );
    assert_eq!(host.get_json("/v1/functions/two.q").await.0, 404);

    let too_big = host.upload("one.q", wasm("echo"), "memory_mb=128").await;
    assert_eq!(too_big.status(), 403);
    assert_eq!(code(&too_big.json().await.unwrap()), "quota_memory_mb");
    let response = host
        .admin(Method::PATCH, "/v1/functions/one.q/config")
        .json(&json!({"memory_mb": 256}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let (_, one) = host.get_json("/v1/functions/one.q").await;
    assert_eq!(one["latest"]["config"]["memory_mb"], 64, "{one}");
    let (_, hello_digest) = (0, one["latest"]["digest"].clone());

    assert_eq!(host.publish("one.q").await.0, 201);
    assert_eq!(
        host.publish("one.q").await.0,
        200,
        "an unchanged publish creates nothing"
    );
    let response = host
        .admin(Method::PATCH, "/v1/functions/one.q/config")
        .json(&json!({"env": {"A": "1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, body) = host.publish("one.q").await;
    assert_eq!(
        (status, code(&body)),
        (403, "quota_versions".to_string()),
        "{body}"
    );
    let rollout = host
        .admin(Method::POST, "/v1/functions/one.q/rollout")
        .json(&json!({"to": "latest"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        rollout.status(),
        403,
        "a rollout of $LATEST ends in a publish"
    );
    assert_eq!(code(&rollout.json().await.unwrap()), "quota_versions");
    let (_, one) = host.get_json("/v1/functions/one.q").await;
    assert_eq!(one["version_count"], 1);
    assert_eq!(one["latest"]["digest"], hello_digest);

    let set = |n: u32| {
        host.admin(Method::PUT, "/v1/functions/one.q/scaling")
            .json(&json!({"provisioned": n}))
            .send()
    };
    assert_eq!(set(1).await.unwrap().status(), 200);
    let refused = set(2).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(code(&refused.json().await.unwrap()), "quota_provisioned");

    // Lowering a quota below use is accepted: it stops growth, removes nothing.
    let response = host
        .admin(Method::PUT, "/v1/namespaces/q/quotas")
        .json(&json!({"functions": 0, "memory_mb": null}))
        .send()
        .await
        .unwrap();
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["usage"]["functions"], 1, "{view}");
    assert_eq!(view["quotas"]["functions"], 0);
    assert!(
        view["quotas"].get("memory_mb").is_none(),
        "null removes a limit: {view}"
    );
    assert_eq!(host.call("/one.q/").await.status(), 200);

    // Bucket bytes: over all the namespace's buckets; an overwrite counts only the growth.
    namespace(&host, "files", json!({"bucket_bytes": 1000})).await;
    let put = |bucket: &str, key: &str, size: usize| {
        host.admin(Method::PUT, &format!("/v1/buckets/{bucket}/objects/{key}"))
            .body(vec![b'x'; size])
            .send()
    };
    assert_eq!(put("images.files", "a", 600).await.unwrap().status(), 201);
    let refused = put("docs.files", "b", 600).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(code(&refused.json().await.unwrap()), "quota_bucket_bytes");
    let missing = host
        .admin(Method::GET, "/v1/buckets/docs.files/objects/b")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404, "a refused object is not stored");
    assert_eq!(put("images.files", "a", 900).await.unwrap().status(), 201);
    assert_eq!(
        put("uploads", "big", 5000).await.unwrap().status(),
        201,
        "other namespaces are not counted"
    );
    // Streamed without a length: refused once the stream passes the quota.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![b'y'; 80]), Ok(vec![b'y'; 80])];
    let streamed = host
        .admin(Method::PUT, "/v1/buckets/docs.files/objects/streamed")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 403);
    let missing = host
        .admin(Method::GET, "/v1/buckets/docs.files/objects/streamed")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let (_, files) = host.get_json("/v1/namespaces/files").await;
    assert_eq!(files["usage"]["bucket_bytes"], 900, "{files}");

    // Concurrency: two functions of one namespace share its limit of one.
    namespace(&host, "c", json!({"concurrency": 1})).await;
    host.deploy("slow.c", "hostile", "").await;
    host.deploy("fast.c", "hello", "").await;
    let slow = {
        let url = format!("{}/slow.c/sleep?ms=1500", host.data_url);
        tokio::spawn(async move { reqwest::get(url).await.unwrap().status().as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let blocked = host.call("/fast.c/").await;
    assert_eq!(blocked.status(), 429);
    let body: Value = blocked.json().await.unwrap();
    assert_eq!(code(&body), "quota_concurrency", "{body}");
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(
        host.call("/fast.c/").await.status(),
        200,
        "the slot is free again"
    );
    assert_eq!(
        host.call("/one.q/").await.status(),
        200,
        "other namespaces never waited"
    );
}

/// One call of `cart.shop` with `secret`; its status.
async fn call(host: &TestHost, secret: &str) -> u16 {
    host.http
        .get(format!("{}/cart.shop/", host.data_url))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A `key`-auth function refuses calls without a usable invoker key of its namespace before
/// any instance is touched (no invocation metered), strips the key from what the function
/// sees, and the CLI's `invoke --key` reaches it.
#[tokio::test]
async fn key_auth_functions_refuse_before_any_instance_runs() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    namespace(&host, "s", json!({})).await;
    namespace(&host, "other", json!({})).await;
    host.deploy("echo.s", "echo", "").await;
    let response = host
        .admin(Method::PUT, "/v1/functions/echo.s/access")
        .json(&json!({"access": "key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, detail) = host.get_json("/v1/functions/echo.s").await;
    assert_eq!(detail["access"], "key");
    let (_, invoker) = key(&host, "s", "invoker", json!({})).await;
    let (_, viewer) = key(&host, "s", "viewer", json!({})).await;
    let (_, foreign) = key(&host, "other", "invoker", json!({})).await;

    let send = |auth: Option<String>| {
        let request = host
            .http
            .post(format!("{}/echo.s/x", host.data_url))
            .body("hi");
        let request = match auth {
            Some(auth) => request.header("authorization", auth),
            None => request,
        };
        async move { request.send().await.unwrap() }
    };
    let anonymous = send(None).await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let message: Value = anonymous.json().await.unwrap();
    assert!(
        message["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invoker key"),
        "{message}"
    );
    assert_eq!(send(Some("Bearer not-a-key".into())).await.status(), 401);
    assert_eq!(
        send(Some(format!("Bearer {}", host.token))).await.status(),
        401,
        "the admin token is not an invoke key"
    );
    assert_eq!(send(Some(format!("Bearer {viewer}"))).await.status(), 403);
    assert_eq!(send(Some(format!("Bearer {foreign}"))).await.status(), 403);
    assert_eq!(
        host.metric("fnhost_invocations_total", &[("function", "echo.s")])
            .await,
        0.0,
        "no refused call reached an instance"
    );

    let allowed = send(Some(format!("Bearer {invoker}"))).await;
    assert_eq!(allowed.status(), 200);
    let seen = allowed.headers()["echo-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        !seen.contains("authorization") && !seen.contains(&invoker),
        "{seen}"
    );
    assert_eq!(allowed.text().await.unwrap(), "hi");
    assert_eq!(
        host.metric("fnhost_invocations_total", &[("function", "echo.s")])
            .await,
        1.0
    );

    assert_eq!(
        host.metric("fnhost_invocations_total", &[("namespace", "s")])
            .await,
        1.0,
        "metrics carry the namespace as a label of its own"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_fnhost"))
        .args(["invoke", "echo", "--namespace", "s", "-d", "from the cli"])
        .env("FNHOST_URL", &host.data_url)
        .env("FNHOST_INVOKE_KEY", &invoker)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "from the cli");
}

/// Every write is in the audit log with the key that made it (refusals too); a key reads its
/// own namespace's log only; the alias history names the key that moved traffic.
#[tokio::test]
async fn the_audit_log_names_who_did_what() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    namespace(&host, "a", json!({})).await;
    namespace(&host, "b", json!({})).await;
    host.deploy("f.b", "hello", "").await;
    let (id, deployer) = key(&host, "a", "deployer", json!({})).await;
    let (status, _) = upload_with_key(&host, &deployer, "f.a", "").await;
    assert_eq!(status, 200);
    let (status, _) = with_key(
        &host,
        &deployer,
        Method::PUT,
        "/v1/functions/f.a/traffic",
        Some(json!({"latest_percent": 20})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = with_key(&host, &deployer, Method::DELETE, "/v1/functions/f.b", None).await;
    assert_eq!(status, 403);

    let (status, log) = with_key(&host, &deployer, Method::GET, "/v1/audit", None).await;
    assert_eq!(status, 200, "{log}");
    let entries = log["entries"].as_array().unwrap();
    let actions: Vec<(String, String, u64)> = entries
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let actor = format!("key:{id}");
    assert_eq!(
        actions,
        [
            (
                actor.clone(),
                "PUT /v1/functions/f.a/traffic".to_string(),
                200
            ),
            (actor.clone(), "PUT /v1/functions/f.a/code".to_string(), 200),
            (
                "admin".to_string(),
                "POST /v1/namespaces/a/keys".to_string(),
                201
            ),
        ],
        "namespace a's log, newest first"
    );
    let (status, _) = with_key(&host, &deployer, Method::GET, "/v1/audit?namespace=b", None).await;
    assert_eq!(status, 403);
    let (_, b) = host.get_json("/v1/audit?namespace=b").await;
    let b = b["entries"].as_array().unwrap();
    assert!(
        b.iter().any(|e| e["actor"] == actor.as_str()
            && e["status"] == 403
            && e["action"] == "DELETE /v1/functions/f.b"),
        "the refusal is recorded in the namespace it aimed at: {b:?}"
    );
    assert!(
        b.iter()
            .any(|e| e["actor"] == "admin" && e["action"] == "PUT /v1/functions/f.b/code")
    );
    let (_, all) = host.get_json("/v1/audit").await;
    assert!(
        all["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "POST /v1/namespaces" && e["namespace"].is_null())
    );

    let (_, history) = host.get_json("/v1/functions/f.a/history").await;
    let newest = &history["changes"][0];
    assert_eq!(newest["actor"], actor.as_str(), "{history}");
}

/// The README's walk-through: the host admin makes a namespace and a deployer key; the team
/// deploys and calls with `--namespace` and the key alone.
#[tokio::test]
async fn the_cli_walk_through_for_teams() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    let hello = wasm_path("hello");
    let run = |args: &[&str], token: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fnhost"));
        command
            .args(args)
            .env("FNHOST_ADMIN_URL", &host.admin_url)
            .env("FNHOST_URL", &host.data_url)
            .env("FNHOST_DATA_DIR", &host.data_dir);
        if let Some(token) = token {
            command.env("FNHOST_TOKEN", token);
        }
        let output = command.output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let (code, out, err) = run(&["namespace", "create", "cart", "--functions", "5"], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("cart") && out.contains("0/5"), "{out}");
    let (code, secret, err) = run(
        &[
            "key",
            "create",
            "--namespace",
            "cart",
            "--role",
            "deployer",
            "--expires",
            "30d",
            "--description",
            "cart CI",
        ],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    let secret = secret.trim().to_string();
    assert!(
        secret.starts_with("fnk_") && err.contains("shown only now"),
        "{secret} {err}"
    );

    let team = Some(secret.as_str());
    let (code, _, err) = run(
        &[
            "deploy",
            "--namespace",
            "cart",
            "api",
            hello.to_str().unwrap(),
        ],
        team,
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run(&["publish", "--namespace", "cart", "api"], team);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, _) = run(&["functions", "--json"], team);
    assert_eq!(code, Some(0));
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["functions"][0]["name"], "api.cart");
    assert_eq!(list["functions"][0]["namespace"], "cart");
    let (code, out, _) = run(&["invoke", "--namespace", "cart", "api"], None);
    assert_eq!(code, Some(0));
    assert!(out.contains("Hello"), "{out}");
    let (code, _, err) = run(
        &["key", "create", "--namespace", "cart", "--role", "admin"],
        team,
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("deployer") && err.contains("may"), "{err}");
    let (code, out, _) = run(&["key", "list", "--namespace", "cart"], None);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("deployer") && out.contains("cart CI") && !out.contains(&secret),
        "{out}"
    );
    let (code, out, _) = run(&["audit", "--namespace", "cart"], None);
    assert_eq!(code, Some(0));
    assert!(out.contains("PUT /v1/functions/api.cart/code"), "{out}");
    let (code, _, err) = run(&["namespace", "delete", "cart"], None);
    assert_eq!(code, Some(2), "a namespace with functions stays");
    assert!(err.contains("delete them first"), "{err}");
}

/// Deleting a namespace leaves nothing a namespace re-created under its name would find: it
/// is refused while key-value data or bucket objects remain (saying which), and takes its
/// keys and HTTP routes with it.
#[tokio::test]
async fn a_deleted_namespace_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    namespace(&host, "blog", json!({})).await;
    host.deploy("posts.blog", "echo", "").await;
    let route = host
        .admin(Method::POST, "/v1/namespaces/blog/routes")
        .json(&json!({"match": "blog.example/", "target": "posts"}))
        .send()
        .await
        .unwrap();
    assert_eq!(route.status(), 200);
    let send = |method: Method, path: &str, body: &'static str| {
        let request = host.admin(method, path).body(body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        send(Method::PUT, "/v1/kv/drafts.blog/first", "text").await,
        200
    );
    assert_eq!(
        send(Method::PUT, "/v1/buckets/media.blog/objects/a.png", "png").await,
        201
    );
    assert_eq!(
        send(Method::DELETE, "/v1/functions/posts.blog", "").await,
        200
    );

    let refusal = |what: &'static str| {
        let host = &host;
        async move {
            let response = host
                .admin(Method::DELETE, "/v1/namespaces/blog")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 409);
            let text = response.text().await.unwrap();
            assert!(text.contains(what), "{what} in {text}");
        }
    };
    refusal("key-value data in drafts (1 keys)").await;
    assert_eq!(
        send(Method::DELETE, "/v1/kv/drafts.blog/first", "").await,
        200
    );
    refusal("1 object(s)").await;
    assert_eq!(
        send(Method::DELETE, "/v1/buckets/media.blog/objects/a.png", "").await,
        200
    );
    assert_eq!(send(Method::DELETE, "/v1/namespaces/blog", "").await, 200);

    namespace(&host, "blog", json!({})).await;
    let (_, routes) = host.get_json("/v1/namespaces/blog/routes").await;
    assert_eq!(
        routes["routes"],
        json!([]),
        "the old namespace's routes went with it"
    );
}
