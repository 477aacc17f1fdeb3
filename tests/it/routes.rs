//! HTTP routes on the data plane: by host and by path prefix, the longest prefix winning, the
//! prefix stripped when asked, `/NAME@Q/` kept as the direct address, and changes made
//! through the CLI and the admin API (atomic, per namespace, surviving a restart).

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestHost;

/// GET `path` on the data plane with `Host: host`: (status, the path the function saw (the
/// echo function's `echo-path`), body).
async fn get(host: &TestHost, host_header: &str, path: &str) -> (u16, String, String) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", host.data_url))
        .header("host", host_header)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let seen = response
        .headers()
        .get("echo-path")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, seen, response.text().await.unwrap())
}

fn ok(output: std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Routes by host and path prefix, set through the CLI: the host's routes first, then routes
/// for any host, the longest prefix winning; stripping; the direct address still works;
/// unmatched requests get a 404 that says no route matched.
#[tokio::test]
async fn routes_by_host_and_longest_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    for name in ["cart", "apis", "site"] {
        host.deploy(name, "echo", "").await;
    }
    host.deploy("web", "hello", "env=GREETING%3DShop").await;
    assert_eq!(host.publish("cart").await.0, 201);
    let alias = host
        .admin(Method::PUT, "/v1/functions/cart/aliases/prod")
        .json(&json!({"routes": [{"version": 1, "percent": 100}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(alias.status(), 200);

    ok(host.fnhost(&[
        "route",
        "set",
        "shop.example.com/api/cart/*",
        "cart@prod",
        "--strip-prefix",
    ]));
    ok(host.fnhost(&["route", "set", "shop.example.com", "web"]));
    ok(host.fnhost(&["route", "set", "/api/*", "apis"]));
    let listed = ok(host.fnhost(&["route", "ls"]));
    assert!(
        listed.contains("shop.example.com/api/cart/*") && listed.contains("cart@prod"),
        "{listed}"
    );
    let json: Value = serde_json::from_str(&ok(host.fnhost(&["route", "ls", "--json"]))).unwrap();
    assert_eq!(json["routes"].as_array().unwrap().len(), 3, "{json}");

    // The longest prefix of the host's routes, stripped; the version is the alias's.
    let (status, seen, _) = get(&host, "shop.example.com", "/api/cart/items?x=1").await;
    assert_eq!((status, seen.as_str()), (200, "/items?x=1"));
    let (status, seen, _) = get(&host, "SHOP.example.com:8080", "/api/cart").await;
    assert_eq!((status, seen.as_str()), (200, "/"));
    // Segments, not characters: /api/cartoon is the host's catch-all, not the cart.
    let (status, _, body) = get(&host, "shop.example.com", "/api/cartoon").await;
    assert_eq!((status, body.as_str()), (200, "Shop, world!\n"));
    let (_, _, body) = get(&host, "shop.example.com", "/api/other").await;
    assert_eq!(
        body, "Shop, world!\n",
        "a host's routes come before any-host routes"
    );
    // Any host, not stripped.
    let (status, seen, _) = get(&host, "other.example", "/api/v2/x").await;
    assert_eq!((status, seen.as_str()), (200, "/api/v2/x"));
    // The direct address when no route matches.
    let (status, seen, _) = get(&host, "other.example", "/site/page").await;
    assert_eq!((status, seen.as_str()), (200, "/page"));
    let (status, seen, _) = get(&host, "127.0.0.1", "/cart@latest/x").await;
    assert_eq!((status, seen.as_str()), (200, "/x"));
    // Nothing matched: a 404 that says so.
    let (status, _, body) = get(&host, "other.example", "/nothing/here").await;
    assert_eq!(status, 404);
    assert!(
        body.contains("no route matches other.example/nothing/here"),
        "{body}"
    );

    // Replaced by match; removed by match.
    ok(host.fnhost(&["route", "set", "/api/*", "site", "--strip-prefix"]));
    let (_, seen, _) = get(&host, "other.example", "/api/v2").await;
    assert_eq!(seen, "/v2");
    ok(host.fnhost(&["route", "rm", "/api/*"]));
    let (status, _, _) = get(&host, "other.example", "/api/v2").await;
    assert_eq!(status, 404);
    let missing = host.fnhost(&["route", "rm", "/api/*"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no route /api/*"));

    // Every name under a domain, at any depth; the name's own routes come first.
    ok(host.fnhost(&["route", "set", "*.example.com/*", "site", "--strip-prefix"]));
    let (status, seen, _) = get(&host, "a.b.example.com", "/page").await;
    assert_eq!((status, seen.as_str()), (200, "/page"));
    let (_, _, body) = get(&host, "shop.example.com", "/about").await;
    assert_eq!(body, "Shop, world!\n", "the name's own routes first");

    // Routes are durable.
    let host = host.restart().await;
    let (status, seen, _) = get(&host, "shop.example.com", "/api/cart/items").await;
    assert_eq!((status, seen.as_str()), (200, "/items"));
}

/// Bad routes are refused with what is wrong, and change nothing; a namespace's routes are
/// replaced all at once; a host and path belong to one namespace.
#[tokio::test]
async fn route_changes_are_checked_atomic_and_per_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("cart", "echo", "").await;
    let routes = "/v1/namespaces/default/routes";
    let put = |body: Value| {
        let host = &host;
        async move {
            let response = host
                .admin(Method::PUT, routes)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, _) = put(json!({"routes": [
        {"match": "a.example/x/*", "target": "cart"},
        {"match": "b.example/", "target": "cart", "strip_prefix": true},
    ]}))
    .await;
    assert_eq!(status, 200);
    for (body, why) in [
        (
            json!({"routes": [{"match": "a.example/x", "target": "nosuch"}]}),
            "not found",
        ),
        (
            json!({"routes": [{"match": "a.example/x", "target": "cart@prod"}]}),
            "no version or alias",
        ),
        (
            json!({"routes": [{"match": "a.example:80/x", "target": "cart"}]}),
            "DNS name",
        ),
        (
            json!({"routes": [{"match": "/x/../y", "target": "cart"}]}),
            "segments",
        ),
        (
            json!({"routes": [
                {"match": "/x", "target": "cart"},
                {"match": "/x/*", "target": "cart"},
            ]}),
            "routed twice",
        ),
        (
            json!({"routes": [{"match": "/x", "target": "cart", "extra": 1}]}),
            "unknown field",
        ),
    ] {
        let (status, answer) = put(body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer.to_string().contains(why), "{why}: {answer}");
    }
    let (_, listed) = host.get_json(routes).await;
    assert_eq!(
        listed["routes"],
        json!([
            {"match": "a.example/x/*", "target": "cart"},
            {"match": "b.example/*", "target": "cart", "strip_prefix": true},
        ]),
        "refused changes changed nothing"
    );
    let (_, seen, _) = get(&host, "a.example", "/x/1").await;
    assert_eq!(seen, "/x/1");

    // All at once: a.example's route goes, c.example's comes, in one swap.
    let (status, _) = put(json!({"routes": [{"match": "c.example/", "target": "cart"}]})).await;
    assert_eq!(status, 200);
    assert_eq!(get(&host, "a.example", "/x/1").await.0, 404);
    assert_eq!(get(&host, "c.example", "/x/1").await.0, 200);

    // Another namespace cannot take c.example/.
    let create = host
        .admin(Method::POST, "/v1/namespaces")
        .json(&json!({"name": "blog"}))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 201);
    host.deploy("posts.blog", "echo", "").await;
    let taken = host
        .admin(Method::POST, "/v1/namespaces/blog/routes")
        .json(&json!({"match": "c.example/", "target": "posts"}))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 409);
    let answer: Value = taken.json().await.unwrap();
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("routed by namespace \"default\""),
        "{message}"
    );
    let outside = host
        .admin(Method::POST, "/v1/namespaces/blog/routes")
        .json(&json!({"match": "d.example/", "target": "cart.default"}))
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status(), 400);
    let own = host
        .admin(Method::POST, "/v1/namespaces/blog/routes")
        .json(&json!({"match": "blog.example/", "target": "posts"}))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    let (_, seen, _) = get(&host, "blog.example", "/p/1").await;
    assert_eq!(seen, "/p/1");
}
