//! The web console in a real browser (headless Chromium over WebDriver): signing in, a
//! function deployed with the CLI appearing, traffic shifted and rolled back in the console
//! with the data plane following, and a viewer key seeing no write controls. With
//! `FNHOST_CONSOLE_SCREENSHOTS=DIR` it saves screenshots of the pages it visits there (the
//! README's come from `docs/console/`).

use std::time::Duration;

use crate::common::{Browser, TestHost, eventually};
use reqwest::Method;
use serde_json::{Value, json};

async fn shot(browser: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("FNHOST_CONSOLE_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        let file = std::path::Path::new(&dir).join(format!("{name}.png"));
        std::fs::write(file, browser.screenshot().await).unwrap();
    }
}

/// What the data plane's `$DEFAULT` of `shop` answers, over `n` calls: (from v1, from
/// `$LATEST`).
async fn split(host: &TestHost, n: usize) -> (usize, usize) {
    let mut counts = (0, 0);
    for _ in 0..n {
        let (status, version, _) = host.call_text("/shop/").await;
        assert_eq!(status, 200);
        if version == "1" {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
    }
    counts
}

#[tokio::test]
async fn the_console_shows_functions_and_steers_traffic_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("shop", "hostile", "env=VARIANT%3Dold").await;
    assert_eq!(host.publish("shop").await.0, 201);
    // $LATEST as if pulled from a registry: the page shows where it came from.
    let source = format!(
        "oci://registry.example.com/shop:v2@sha256:{}",
        "e".repeat(64)
    );
    host.deploy(
        "shop",
        "hostile",
        &format!(
            "env=VARIANT%3Dnew&source={}",
            crate::common::urlencode(&source)
        ),
    )
    .await;
    let console = format!("{}/console/", host.admin_url);

    // The files are served with a strict policy; a wrong token is refused on the page.
    let page = host.http.get(&console).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.contains("script-src 'self'"), "{policy}");

    let browser = Browser::start().await;
    browser.goto(&console).await;
    browser.type_into("#token", "not-a-token").await;
    browser.click("#sign-in-form button").await;
    eventually(Duration::from_secs(10), "a refusal", || async {
        let text = browser.text("#sign-in-error").await;
        (!text.contains("not accepted")).then_some(text)
    })
    .await;
    shot(&browser, "sign-in").await;

    // Signed in: the function list, and a function deployed meanwhile with the CLI appears.
    browser.type_into("#token", &host.token).await;
    browser.click("#sign-in-form button").await;
    browser
        .wait_for("tr[data-function='shop']", Duration::from_secs(10))
        .await;
    assert!(browser.text("#who").await.contains("host admin"));
    let wasm = crate::common::wasm_path("hello");
    let out = host.fnhost(&["deploy", "fresh", wasm.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    browser
        .wait_for("tr[data-function='fresh']", Duration::from_secs(10))
        .await;
    shot(&browser, "functions").await;

    // The search narrows the list.
    browser.type_into("#search", "fre").await;
    eventually(Duration::from_secs(5), "the search to apply", || async {
        let shop_shown = browser.exists("tr[data-function='shop']").await;
        shop_shown.then(|| "shop still listed".to_string())
    })
    .await;

    // Traffic: all of $DEFAULT to $LATEST in the console, and the data plane follows.
    browser.goto(&format!("{console}#/functions/shop")).await;
    browser
        .wait_for("#latest-percent", Duration::from_secs(10))
        .await;
    let shown = browser.text("td.source").await;
    assert_eq!(
        shown, "oci://registry.example.com/shop:v2@sha256:eeeeeeeeeeee",
        "$LATEST's source in the versions table"
    );
    assert_eq!(split(&host, 20).await, (20, 0));
    browser
        .script(
            "const s = document.getElementById('latest-percent'); s.focus(); s.value = '100'; \
             s.dispatchEvent(new Event('input'));",
            json!([]),
        )
        .await;
    browser.click("#apply-traffic").await;
    eventually(
        Duration::from_secs(10),
        "all traffic on $LATEST",
        || async {
            let (old, new) = split(&host, 20).await;
            (old != 0).then(|| format!("{old} old, {new} new"))
        },
    )
    .await;
    eventually(Duration::from_secs(10), "the split drawn", || async {
        let bar = browser.text("[data-alias='$DEFAULT'] .split").await;
        (!bar.contains("$LATEST 100%")).then_some(bar)
    })
    .await;
    // The change went through the admin API, under the admin's name, and the page's
    // history shows it.
    let (_, history) = host.get_json("/v1/functions/shop/history").await;
    assert_eq!(history["changes"][0]["actor"], "admin", "{history}");
    eventually(
        Duration::from_secs(10),
        "the change in the history",
        || async {
            let shown = browser.text("#history").await;
            (!shown.contains("$LATEST 100%")).then_some(shown)
        },
    )
    .await;

    // Roll back in one click.
    browser.click("#rollback").await;
    eventually(Duration::from_secs(10), "traffic back on v1", || async {
        let (old, new) = split(&host, 20).await;
        (new != 0).then(|| format!("{old} old, {new} new"))
    })
    .await;

    // Usage per minute (drawn once the host has metered the requests above), and what the
    // function printed, as it comes.
    eventually(Duration::from_secs(20), "usage drawn", || async {
        let caption = browser
            .text("#usage figure[data-series='invocations'] figcaption")
            .await;
        (!caption.starts_with("Requests / min: ") || caption.contains(": 0 in all"))
            .then_some(caption)
    })
    .await;
    let (status, _, _) = host.call_text("/shop/flood?kib=1").await;
    assert_eq!(status, 200);
    eventually(Duration::from_secs(10), "the log line shown", || async {
        let logs = browser.text("#logs").await;
        (!logs.contains("xxxx")).then(|| format!("logs: {logs:.200}"))
    })
    .await;
    assert!(browser.exists("#pools").await);
    shot(&browser, "function").await;
    // Readable on a phone: nothing wider than the screen.
    browser.window_size(390, 844).await;
    let overflow = browser
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            json!([]),
        )
        .await;
    shot(&browser, "function-phone").await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "the page scrolls sideways by {overflow} px"
    );
    browser.window_size(1280, 900).await;

    // The node, and the namespaces with their keys (the host admin manages every one).
    browser.goto(&format!("{console}#/nodes")).await;
    browser
        .wait_for("#nodes tr[data-node]", Duration::from_secs(10))
        .await;
    browser.goto(&format!("{console}#/namespaces")).await;
    browser
        .wait_for("[data-namespace='default']", Duration::from_secs(10))
        .await;
    // A namespace and a key made in the console; the key's secret, shown once, works.
    browser.type_into("#new-namespace", "team").await;
    browser.click("#namespace-form button").await;
    browser
        .wait_for("form[data-namespace-form='team']", Duration::from_secs(10))
        .await;
    browser
        .script(
            "const f = document.querySelector(\"form[data-namespace-form='team']\"); \
             f.querySelector('select').value = 'deployer'; \
             f.querySelector('button').click();",
            json!([]),
        )
        .await;
    browser
        .wait_for("#new-secret-value", Duration::from_secs(10))
        .await;
    let secret = browser.text("#new-secret-value").await;
    let whoami: Value = host
        .http
        .get(format!("{}/v1/whoami", host.admin_url))
        .bearer_auth(secret.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(whoami["role"], "deployer", "{whoami}");
    assert_eq!(whoami["namespace"], "team", "{whoami}");
    shot(&browser, "namespaces").await;
    browser.quit().await;

    // A viewer key sees the same pages without a single write control.
    let created: Value = host
        .admin(Method::POST, "/v1/namespaces/default/keys")
        .json(&json!({"role": "viewer", "description": "console test"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"));
    let viewer = Browser::start().await;
    viewer.goto(&format!("{console}#/functions/shop")).await;
    viewer.type_into("#token", secret).await;
    viewer.click("#sign-in-form button").await;
    viewer.wait_for("#read-only", Duration::from_secs(10)).await;
    assert!(viewer.text("#who").await.contains("viewer"));
    for control in ["#apply-traffic", "#rollback", "#promote", "#latest-percent"] {
        assert!(!viewer.exists(control).await, "a viewer sees {control}");
    }
    viewer.quit().await;
}

/// Calls `path` on the data plane until `stop` is set, so a rollout has traffic to judge.
fn traffic(
    host: &TestHost,
    path: &str,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    tokio::task::JoinHandle<()>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (http, url, flag) = (
        host.http.clone(),
        format!("{}{path}", host.data_url),
        stop.clone(),
    );
    let task = tokio::spawn(async move {
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = http.get(&url).send().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (stop, task)
}

#[tokio::test]
async fn the_console_watches_a_rollout_roll_back_and_retries_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    // v1 is healthy; the candidate fails every request.
    host.deploy("cart", "hostile", "").await;
    assert_eq!(host.publish("cart").await.0, 201);
    host.deploy_hostile("cart", json!({"env": {"FAIL_PERCENT": "100"}}))
        .await;
    let console = format!("{}/console/", host.admin_url);
    let browser = Browser::start().await;
    browser.goto(&format!("{console}#/functions/cart")).await;
    browser.type_into("#token", &host.token).await;
    browser.click("#sign-in-form button").await;

    // Started from the console's form, judged on live traffic, rolled back, shown live.
    browser
        .wait_for("#rollout-form", Duration::from_secs(10))
        .await;
    browser
        .script(
            "document.getElementById('rollout-steps').focus();\
             document.getElementById('rollout-steps').value = '50, 100';\
             document.getElementById('rollout-interval').value = '1';\
             document.getElementById('rollout-min-requests').value = '5';",
            json!([]),
        )
        .await;
    let (stop, task) = traffic(&host, "/cart/");
    browser.click("#rollout-start").await;
    eventually(Duration::from_secs(30), "the rollback shown", || async {
        let phase = browser.text("#rollout-phase").await;
        let page = browser.text("#view").await;
        (phase != "rolled back").then(|| format!("phase {phase:?}; the page: {page}"))
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    task.await.unwrap();
    assert!(browser.exists("#judgments tr[data-passed='false']").await);
    shot(&browser, "rollout").await;
    let (_, rollout) = host.get_json("/v1/functions/cart/rollout").await;
    assert_eq!(rollout["phase"], "rolled_back", "{rollout}");
    let (status, version, _) = host.call_text("/cart/").await;
    assert_eq!((status, version.as_str()), (200, "1"));

    // A dead-lettered invocation is listed and retried from the console.
    host.deploy_hostile(
        "broken",
        json!({"env": {"FAIL_PERCENT": "100"}, "async": {"retries": 0}}),
    )
    .await;
    let queued: Value = host
        .http
        .post(format!("{}/broken/", host.data_url))
        .header("fnhost-invocation", "async")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = queued["id"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(20), "dead-lettered", || async {
        let (_, found) = host.get_json(&format!("/v1/invocations/{id}")).await;
        (found["status"] != "failed").then(|| found.to_string())
    })
    .await;
    let fixed = host
        .admin(Method::PATCH, "/v1/functions/broken/config")
        .json(&json!({"env": {"FAIL_PERCENT": "0"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(fixed.status(), 200);
    browser.goto(&format!("{console}#/functions/broken")).await;
    let row = format!("tr[data-dead-letter='{id}'] button.retry");
    browser.wait_for(&row, Duration::from_secs(10)).await;
    shot(&browser, "dead-letters").await;
    browser.click(&row).await;
    eventually(Duration::from_secs(20), "the retry delivered", || async {
        let (_, found) = host.get_json(&format!("/v1/invocations/{id}")).await;
        (found["status"] != "delivered").then(|| found.to_string())
    })
    .await;
    browser.quit().await;
}

/// 1,000 functions: the list pages them 100 at a time and searching stays instant. Prints
/// how long the first page and a search took in the browser.
#[tokio::test]
async fn the_console_lists_a_thousand_functions_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    let wasm = crate::common::wasm("hello");
    for i in 0..1000 {
        let response = host.upload(&format!("fn-{i:04}"), wasm.clone(), "").await;
        assert_eq!(response.status(), 200);
    }
    let browser = Browser::start().await;
    browser.goto(&format!("{}/console/", host.admin_url)).await;
    browser.type_into("#token", &host.token).await;
    let started = std::time::Instant::now();
    browser.click("#sign-in-form button").await;
    eventually(Duration::from_secs(20), "the first page", || async {
        let info = browser.text("#page-info").await;
        (info != "1000 functions, page 1 of 10").then_some(info)
    })
    .await;
    let first_page = started.elapsed();
    let rows = browser
        .script(
            "return document.querySelectorAll('#function-rows tr').length",
            json!([]),
        )
        .await;
    assert_eq!(rows, 100);
    browser.click("#page-next").await;
    browser
        .wait_for("tr[data-function='fn-0100']", Duration::from_secs(5))
        .await;
    let started = std::time::Instant::now();
    browser.type_into("#search", "fn-0999").await;
    eventually(Duration::from_secs(5), "the search", || async {
        let info = browser.text("#page-info").await;
        (info != "1 function, page 1 of 1").then_some(info)
    })
    .await;
    println!(
        "1,000 functions: first page shown {first_page:?} after signing in; a search narrowed \
         the list in {:?}",
        started.elapsed()
    );
    browser.quit().await;
}

/// Live (not zombie) processes in process group `group`, from /proc.
fn live_in_group(group: u32) -> Vec<u32> {
    let mut live = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state, parent, process group.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        if fields.get(2) == Some(&group.to_string().as_str()) && fields.first() != Some(&"Z") {
            live.push(pid);
        }
    }
    live
}

#[tokio::test]
async fn a_dropped_browser_leaves_no_chromium_behind() {
    let browser = Browser::start().await;
    let group = browser.driver_pid();
    assert!(
        live_in_group(group).len() > 1,
        "Chromium runs in the driver's group"
    );
    drop(browser);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !live_in_group(group).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "left running: {:?}",
            live_in_group(group)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
