//! `fnhost apply` and `fnhost export` against a real host: a namespace from scratch, re-apply
//! (nothing changes, nothing uploaded), one env change, a rollout started by apply,
//! `--dry-run`, export then apply, and invalid manifests refused with file, line and field.

use std::path::Path;

use serde_json::Value;

use crate::common::{TestHost, wasm_path};

const MANIFEST: &str = r#"
[functions.web]
component = "built/hello.wasm"
build = "mkdir -p built && cp hello.wasm built/hello.wasm"
env = { GREETING = "Welcome" }
memory = "64Mi"
release = { strategy = "immediate" }

[functions.web.aliases.prod]
routes = [{ version = 1, percent = 100 }]

[functions.cart]
component = "echo.wasm"
timeout = "2s"
env = { MODE = "a" }

[[functions.cart.triggers]]
bucket = "uploads"
prefix = "carts/"

[functions.shop]
component = "hello.wasm"
env = { GREETING = "Shop" }

[functions.shop.release]
strategy = "rollout"
steps = [50, 100]
interval = "1s"
min_requests = 0

[[routes]]
match = "shop.example/api/cart/*"
target = "cart"
strip_prefix = true

[[routes]]
match = "shop.example/"
target = "web@prod"
"#;

/// `fnhost ARGS` in `dir`: (exit code, stdout, stderr).
fn fnhost(host: &TestHost, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fnhost"))
        .args(args)
        .current_dir(dir)
        .env("FNHOST_ADMIN_URL", &host.admin_url)
        .env("FNHOST_DATA_DIR", &host.data_dir)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn applied(result: (i32, String, String)) -> String {
    assert_eq!(result.0, 0, "{}\n{}", result.1, result.2);
    result.1
}

/// The number of admin writes so far (every non-GET call is audited).
async fn writes(host: &TestHost) -> usize {
    let (_, log) = host.get_json("/v1/audit?limit=1000").await;
    log["entries"].as_array().unwrap().len()
}

async fn routed(host: &TestHost, path: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", host.data_url))
        .header("host", "shop.example")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let seen = response
        .headers()
        .get("echo-path")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.text().await.unwrap();
    (status, seen.unwrap_or(body))
}

#[tokio::test]
async fn apply_makes_the_host_match_and_twice_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    let work = dir.path().join("release");
    std::fs::create_dir(&work).unwrap();
    for name in ["hello", "echo"] {
        std::fs::copy(wasm_path(name), work.join(format!("{name}.wasm"))).unwrap();
    }
    std::fs::write(work.join("fnhost.toml"), MANIFEST).unwrap();

    // From scratch.
    let out = applied(fnhost(&host, &work, &["apply"]));
    for line in [
        "+ web: create with code sha256:",
        "~ web: publish $LATEST and send it all of $DEFAULT",
        "+ web: alias prod",
        "+ cart: trigger objects in uploads/carts/*",
        "+ route shop.example/api/cart/* -> cart (prefix stripped)",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
    assert_eq!(
        routed(&host, "/api/cart/items").await,
        (200, "/items".into())
    );
    assert_eq!(routed(&host, "/").await, (200, "Welcome, world!\n".into()));
    let (_, web) = host.get_json("/v1/functions/web").await;
    assert_eq!(web["latest"]["config"]["memory_mb"], 64);
    assert_eq!(web["version_count"], 1);
    let (_, shop) = host.get_json("/v1/functions/shop").await;
    assert_eq!(
        shop["version_count"], 1,
        "a rollout's first release is published"
    );

    // Twice: nothing to do, nothing written.
    let before = writes(&host).await;
    let out = applied(fnhost(&host, &work, &["apply"]));
    assert!(out.contains("no changes"), "{out}");
    assert_eq!(writes(&host).await, before);

    // One env value: one config change of $LATEST, no upload, no version.
    let changed = MANIFEST.replace(r#"MODE = "a""#, r#"MODE = "b""#);
    std::fs::write(work.join("fnhost.toml"), &changed).unwrap();
    let (_, cart_before) = host.get_json("/v1/functions/cart").await;
    let dry = applied(fnhost(&host, &work, &["apply", "--dry-run"]));
    assert!(dry.contains(r#"~ cart: env.MODE: "a" -> "b""#), "{dry}");
    assert_eq!(writes(&host).await, before, "--dry-run changes nothing");
    let out = applied(fnhost(&host, &work, &["apply"]));
    assert!(
        out.contains("plan for namespace default (1 change)"),
        "{out}"
    );
    assert_eq!(writes(&host).await, before + 1);
    let (_, cart) = host.get_json("/v1/functions/cart").await;
    assert_eq!(cart["latest"]["config"]["env"]["MODE"], "b");
    assert_eq!(cart["latest"]["digest"], cart_before["latest"]["digest"]);
    assert_eq!(cart["version_count"], cart_before["version_count"]);

    // Export, then apply the export: nothing changes.
    let export = dir.path().join("export");
    std::fs::create_dir(&export).unwrap();
    applied(fnhost(&host, &export, &["export", "-o", "exported.toml"]));
    let text = std::fs::read_to_string(export.join("exported.toml")).unwrap();
    assert!(text.contains("components/web.wasm"), "{text}");
    assert!(export.join("components/cart.wasm").exists());
    let out = applied(fnhost(&host, &export, &["apply", "-f", "exported.toml"]));
    assert!(out.contains("no changes"), "{out}\n{text}");

    // A rollout started by apply, waited for.
    let release = changed.replace(r#"GREETING = "Shop""#, r#"GREETING = "Shop v2""#);
    std::fs::write(work.join("fnhost.toml"), &release).unwrap();
    let out = applied(fnhost(&host, &work, &["apply", "--wait"]));
    assert!(
        out.contains("~ shop: roll $LATEST out through $DEFAULT (50%, 100%)"),
        "{out}"
    );
    let (_, rollout) = host.get_json("/v1/functions/shop/rollout").await;
    assert_eq!(rollout["phase"], "succeeded", "{rollout}");
    assert_eq!(host.call_text("/shop/").await.2, "Shop v2, world!\n");
    let out = applied(fnhost(&host, &work, &["apply"]));
    assert!(out.contains("no changes"), "{out}");

    // --prune removes what the manifest no longer names.
    let fewer = release.replace(
        "[[functions.cart.triggers]]\nbucket = \"uploads\"\nprefix = \"carts/\"\n",
        "",
    );
    std::fs::write(work.join("fnhost.toml"), &fewer).unwrap();
    let out = applied(fnhost(&host, &work, &["apply"]));
    assert!(
        out.contains("no changes"),
        "without --prune nothing goes: {out}"
    );
    let out = applied(fnhost(&host, &work, &["apply", "--prune"]));
    assert!(out.contains("- cart: trigger"), "{out}");
    let (_, triggers) = host.get_json("/v1/functions/cart/triggers").await;
    assert_eq!(triggers["triggers"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn invalid_manifests_are_refused_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    let work = dir.path();
    std::fs::copy(wasm_path("hello"), work.join("hello.wasm")).unwrap();
    for (text, expected) in [
        (
            "[functions.web]\ncomponent = \"hello.wasm\"\nmemroy = \"64Mi\"\n",
            "fnhost.toml:3:1: functions.web.memroy: unknown field `memroy`",
        ),
        (
            "[functions.web]\ncomponent = \"hello.wasm\"\ntimeout = \"2 weeks\"\n",
            "fnhost.toml:3:11: functions.web.timeout: ",
        ),
        (
            "[functions.web]\ncomponent = \"hello.wasm\"\n\n[[routes]]\nmatch = \"x.example:80/\"\ntarget = \"web\"\n",
            "fnhost.toml:4:1: routes.0: invalid route",
        ),
        (
            "[functions.web]\ncomponent = \"missing.wasm\"\n",
            "functions.web.component",
        ),
    ] {
        std::fs::write(work.join("fnhost.toml"), text).unwrap();
        let (code, _, stderr) = fnhost(&host, work, &["apply"]);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    }
    let (_, list) = host.get_json("/v1/functions").await;
    assert_eq!(
        list["functions"],
        Value::Array(Vec::new()),
        "nothing applied"
    );
}

/// A manifest targets one namespace: its functions and routes are that namespace's, and a
/// deployer key of the namespace can apply it.
#[tokio::test]
async fn a_manifest_applies_to_its_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    let created = host
        .admin(reqwest::Method::POST, "/v1/namespaces")
        .json(&serde_json::json!({"name": "team"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let key: Value = host
        .admin(reqwest::Method::POST, "/v1/namespaces/team/keys")
        .json(&serde_json::json!({"role": "deployer"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let work = dir.path();
    std::fs::copy(wasm_path("echo"), work.join("echo.wasm")).unwrap();
    std::fs::write(
        work.join("fnhost.toml"),
        "namespace = \"team\"\n\n[functions.api]\ncomponent = \"echo.wasm\"\nrelease = { strategy = \"immediate\" }\n\n[[routes]]\nmatch = \"team.example/v1/*\"\ntarget = \"api\"\nstrip_prefix = true\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fnhost"))
        .args(["apply"])
        .current_dir(work)
        .env("FNHOST_ADMIN_URL", &host.admin_url)
        .env("FNHOST_TOKEN", key["secret"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (status, function) = host.get_json("/v1/functions/api.team").await;
    assert_eq!((status, function["version_count"].as_u64()), (200, Some(1)));
    let (_, routes) = host.get_json("/v1/namespaces/team/routes").await;
    assert_eq!(routes["routes"][0]["target"], "api", "{routes}");
    let response = reqwest::Client::new()
        .get(format!("{}/v1/x", host.data_url))
        .header("host", "team.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["echo-path"], "/x");
    let (status, _) = host.get_json("/v1/functions/api").await;
    assert_eq!(status, 404, "nothing in the default namespace");
}
