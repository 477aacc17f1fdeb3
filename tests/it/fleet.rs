//! Fleet mode: fnhost nodes on a real PostgreSQL server (`--registry postgres://...`).

use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::common::{Balancer, TestHost, eventually};
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
    set_alias(&host, "prod", 1).await;
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
pub(crate) async fn fresh_database() -> String {
    tokio::task::spawn_blocking(|| TestPostgres::shared().fresh_database())
        .await
        .unwrap()
}

/// Three nodes on one PostgreSQL and one shared object store: they share the admin token;
/// a function deployed on one serves on the others (compiled once, the others load the
/// shared code); alias flips and deletes reach every node; `nodes` lists the members and a
/// node killed with -9 drops out.
#[tokio::test]
async fn three_nodes_share_functions_token_changes_and_membership() {
    let fleet = Fleet::new(&[]).await;
    let (a, b, c) = (
        fleet.node("a").await,
        fleet.node("b").await,
        fleet.node("c").await,
    );
    assert_eq!(a.token, b.token, "one admin token for the fleet");
    assert_eq!(a.token, c.token);

    a.deploy("hello", "hello", "env=GREETING%3Done").await;
    a.publish("hello").await;
    set_alias(&a, "prod", 1).await;
    for node in [&b, &c] {
        answers_eventually(node, "/hello@prod", "one, world!\n").await;
    }
    let (_, status) = b.get_json("/v1/status").await;
    assert_eq!(
        status["engine"]["compiles"], 0,
        "compiled once per fleet: {status}"
    );
    assert_eq!(status["engine"]["compiled_shared_loads"], 1, "{status}");

    // A flip on one node is in force on the others.
    a.deploy("hello", "hello", "env=GREETING%3Dtwo").await;
    a.publish("hello").await;
    set_alias(&b, "prod", 2).await;
    for node in [&a, &c] {
        answers_eventually(node, "/hello@prod", "two, world!\n").await;
    }

    let (_, nodes) = c.get_json("/v1/nodes").await;
    assert_eq!(nodes["fleet"], true);
    let addresses: Vec<&str> = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["data_address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses.len(), 3, "{nodes}");
    let c_address = c.data_url.trim_start_matches("http://").to_string();
    assert!(addresses.contains(&c_address.as_str()), "{nodes}");

    // Deleted on one node: gone everywhere.
    let deleted = c
        .admin(reqwest::Method::DELETE, "/v1/functions/hello")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    eventually(
        Duration::from_secs(10),
        "the delete on another node",
        || async {
            let code = a.call("/hello").await.status();
            (code != 404).then(|| format!("status {code}"))
        },
    )
    .await;

    // Namespaces, keys and access are the fleet's: made on one node, in force on the others
    // (the admin plane reads keys from the store; data planes hear of changes on the feed).
    let created = a
        .admin(reqwest::Method::POST, "/v1/namespaces")
        .json(&serde_json::json!({"name": "team"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    b.deploy("api.team", "hello", "").await;
    let access = c
        .admin(reqwest::Method::PUT, "/v1/functions/api.team/access")
        .json(&serde_json::json!({"access": "key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(access.status(), 200);
    let key: serde_json::Value = a
        .admin(reqwest::Method::POST, "/v1/namespaces/team/keys")
        .json(&serde_json::json!({"role": "invoker"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = key["secret"].as_str().unwrap();
    keyed_status_everywhere(&[&a, &b, &c], secret, 200, "a new key on every node").await;
    let revoked = b
        .admin(
            reqwest::Method::DELETE,
            &format!("/v1/keys/{}", key["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    keyed_status_everywhere(&[&a, &b, &c], secret, 401, "a revocation on every node").await;

    // Key-value stores are the fleet's: written through one node, read through another.
    let kv = format!("config={}", crate::common::urlencode(r#"{"kv": ["sale"]}"#));
    a.deploy("sale", "flash_sale", &kv).await;
    answers_eventually(&b, "/sale/stock", "0\n").await;
    let stored = b
        .http
        .put(format!("{}/sale/kv/seen-by", b.data_url))
        .body("node b")
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200);
    answers_eventually(&c, "/sale/kv/seen-by", "node b").await;

    // HTTP routes are the fleet's: set through one node, followed by the others' data planes.
    let route = c
        .admin(reqwest::Method::POST, "/v1/namespaces/default/routes")
        .json(&serde_json::json!({"match": "shop.example/stock/*", "target": "sale"}))
        .send()
        .await
        .unwrap();
    assert_eq!(route.status(), 200);
    for node in [&a, &b] {
        eventually(Duration::from_secs(10), "a route on every node", || async {
            let answer = node
                .http
                .get(format!("{}/stock", node.data_url))
                .header("host", "shop.example")
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            (status != 200).then(|| format!("status {status}"))
        })
        .await;
    }

    c.kill9();
    eventually(Duration::from_secs(15), "a killed node leaving", || async {
        let (_, nodes) = a.get_json("/v1/nodes").await;
        let count = nodes["nodes"].as_array().map_or(0, Vec::len);
        (count != 2).then(|| format!("{nodes}"))
    })
    .await;
}

/// Waits until every node's data plane answers `api.team` called with `secret` with `want`.
async fn keyed_status_everywhere(nodes: &[&TestHost], secret: &str, want: u16, what: &str) {
    for node in nodes {
        eventually(Duration::from_secs(10), what, || async {
            let response = node
                .http
                .get(format!("{}/api.team/", node.data_url))
                .bearer_auth(secret)
                .send()
                .await
                .unwrap();
            let code = response.status().as_u16();
            (code != want).then(|| format!("status {code}"))
        })
        .await;
    }
}

/// Waits until `node` answers `path` with `body` (a change made on another node arrived).
pub(crate) async fn answers_eventually(node: &TestHost, path: &str, body: &str) {
    eventually(Duration::from_secs(10), path, || async {
        let answer = node.call_text(path).await;
        (answer.2 != body).then(|| format!("{answer:?}"))
    })
    .await;
}

async fn set_alias(host: &TestHost, alias: &str, version: u32) {
    let answer = host
        .admin(
            reqwest::Method::PUT,
            &format!("/v1/functions/hello/aliases/{alias}"),
        )
        .json(&serde_json::json!({"routes": [{"version": version, "percent": 100}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
}

/// Events across nodes: a node killed with -9 mid-delivery loses nothing (another node
/// delivers once the lease expires), and a timer every node runs fires once per tick.
#[tokio::test]
async fn events_and_async_invocations_survive_a_dead_node_and_ticks_fire_once_fleet_wide() {
    let fleet = Fleet::new(&["--event-lease", "2s"]).await;
    let a = fleet.node("a").await;
    a.deploy("slow", "hostile", "env=DELAY_MS%3D3000").await;
    let trigger = a
        .admin(reqwest::Method::POST, "/v1/functions/slow/triggers")
        .json(&serde_json::json!({"bucket": "inbox"}))
        .send()
        .await
        .unwrap();
    assert_eq!(trigger.status(), 201);
    let put = a
        .admin(reqwest::Method::PUT, "/v1/buckets/inbox/objects/order-1")
        .body("order")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{}", put.text().await.unwrap());
    // An asynchronous invocation queued on node a, running there when a dies.
    let queued = a
        .http
        .post(format!("{}/slow/job", a.data_url))
        .header("fnhost-invocation", "async")
        .body("job")
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), 202);
    let job = queued.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(Duration::from_secs(10), "node a delivering", || async {
        let (_, running) = a.get_json("/v1/functions/slow/events?status=running").await;
        let (_, jobs) = a
            .get_json("/v1/functions/slow/invocations?status=running")
            .await;
        let count = running["events"].as_array().map_or(0, Vec::len);
        let jobs = jobs["invocations"].as_array().map_or(0, Vec::len);
        (count != 1 || jobs != 1).then(|| format!("{running} {jobs}"))
    })
    .await;
    a.kill9();

    let b = fleet.node("b").await;
    eventually(
        Duration::from_secs(20),
        "node b delivering a's event",
        || async {
            let (_, done) = b
                .get_json("/v1/functions/slow/events?status=delivered")
                .await;
            let count = done["events"].as_array().map_or(0, Vec::len);
            (count != 1).then(|| format!("{done}"))
        },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "node b running a's invocation",
        || async {
            let (_, job) = b.get_json(&format!("/v1/invocations/{job}")).await;
            (job["status"] != "delivered").then(|| format!("{job}"))
        },
    )
    .await;

    // Two nodes run the same timer: each tick is queued once.
    let c = fleet.node("c").await;
    b.deploy("tick", "hostile", "").await;
    // Straight to node c, before its change feed may have caught up: admin checks there
    // look a function they have not routed yet up in the store.
    let trigger = c
        .admin(reqwest::Method::POST, "/v1/functions/tick/triggers")
        .json(&serde_json::json!({"cron": "* * * * * *"}))
        .send()
        .await
        .unwrap();
    assert_eq!(trigger.status(), 201);
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let (_, ticks) = b.get_json("/v1/functions/tick/events?limit=100").await;
    let ticks = ticks["events"].as_array().unwrap();
    assert!(
        (3..=6).contains(&ticks.len()),
        "{} ticks in 4.5 s from two nodes: {ticks:#?}",
        ticks.len()
    );
}

/// A rollout in a fleet is one rollout: started on any node, shown the same by every node,
/// driven by the lease holder and judged on the requests every node served (the driver here
/// serves none). Killed with -9 after the first step passed, the driver is replaced within
/// the lease's expiry and the next driver judges the second step: no step skipped, none
/// judged twice, and `$DEFAULT` ends promoted on every node.
#[tokio::test]
async fn a_rollout_is_judged_on_the_whole_fleet_and_survives_its_driver() {
    use crate::rollout::{Load, default_routes, finished, rollout, shop, start_rollout};

    let fleet = Fleet::new(&[]).await;
    let mut nodes: Vec<Option<TestHost>> = fleet.nodes(3).await.into_iter().map(Some).collect();
    shop(at(&nodes, 0), "RELEASE%3D2").await;
    for i in 1..3 {
        answers_eventually_status(at(&nodes, i), "/shop@latest", 200).await;
    }
    let driver = driver_index(&nodes).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != driver).collect();

    // Traffic only to the two other nodes: the driver judges on what they publish.
    let loads: Vec<Load> = others
        .iter()
        .map(|i| Load::start(at(&nodes, *i), "shop", 3))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = start_rollout(
        at(&nodes, others[0]),
        serde_json::json!({"to": "latest", "steps": [50, 100], "interval_ms": 2000,
               "max_error_rate_percent": 1, "max_p99_ms": 2000, "min_requests": 30}),
    )
    .await;
    assert_eq!(started["phase"], "running");
    eventually(Duration::from_secs(20), "the first step judged", || async {
        let status = rollout(at(&nodes, others[1])).await;
        let judged = status["judgments"].as_array().map_or(0, Vec::len);
        (judged < 1).then(|| format!("{status:#}"))
    })
    .await;
    nodes[driver].take().unwrap().kill9();

    let done = finished(at(&nodes, others[1]), Duration::from_secs(40)).await;
    let mut errors = 0;
    for load in loads {
        errors += load.stop().await.1;
    }
    assert_eq!(done["phase"], "succeeded", "{done:#}");
    assert_eq!(
        errors, 0,
        "a rollout across nodes and a dead driver cost no request"
    );
    let judgments = done["judgments"].as_array().unwrap();
    let steps: Vec<f64> = judgments
        .iter()
        .map(|j| j["step_percent"].as_f64().unwrap())
        .collect();
    assert_eq!(steps, [50.0, 100.0], "each step judged once: {done:#}");
    for j in judgments {
        assert_eq!(j["passed"], true, "{j}");
        assert!(j["candidate"]["requests"].as_u64() >= Some(30), "{j}");
    }
    // Every node tells the same story and routes the promoted version.
    let elsewhere = rollout(at(&nodes, others[0])).await;
    assert_eq!(elsewhere["judgments"], done["judgments"]);
    for i in &others {
        assert_eq!(
            default_routes(at(&nodes, *i)).await[0],
            serde_json::json!({"version": 2, "percent": 100.0})
        );
    }
    let (_, list) = at(&nodes, others[0]).get_json("/v1/nodes").await;
    let new_driver = list["rollout_driver"].as_str().unwrap_or("");
    let ids: Vec<&str> = list["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&new_driver),
        "a live node drives now: {list:#}"
    );
}

fn at(nodes: &[Option<TestHost>], i: usize) -> &TestHost {
    nodes[i].as_ref().expect("a live node")
}

/// Which of `nodes` drives rollouts (by the fleet's node list).
async fn driver_index(nodes: &[Option<TestHost>]) -> usize {
    let started = std::time::Instant::now();
    loop {
        let (_, list) = at(nodes, 0).get_json("/v1/nodes").await;
        let driver = list["rollout_driver"].as_str().unwrap_or_default();
        let address = list["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == driver)
            .and_then(|n| n["data_address"].as_str());
        let found = address.and_then(|address| {
            nodes.iter().position(|n| {
                n.as_ref()
                    .is_some_and(|n| n.data_url.trim_start_matches("http://") == address)
            })
        });
        if let Some(found) = found {
            return found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no rollout driver: {list:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `node` answers `path` with `status` (a function made elsewhere arrived).
async fn answers_eventually_status(node: &TestHost, path: &str, status: u16) {
    eventually(Duration::from_secs(10), path, || async {
        let code = node.call(path).await.status().as_u16();
        (code != status).then(|| format!("status {code}"))
    })
    .await;
}

/// Nodes on one registry and object store, each started with `extra` flags too.
pub(crate) struct Fleet {
    dir: tempfile::TempDir,
    flags: Vec<String>,
}

impl Fleet {
    async fn new(extra: &[&str]) -> Fleet {
        Fleet::on(fresh_database().await, extra)
    }

    /// Nodes on the database `dsn` (of a server a test may stop).
    pub(crate) fn on(dsn: String, extra: &[&str]) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        let mut flags = vec![
            "--registry".to_string(),
            dsn,
            "--object-store".to_string(),
            format!("file://{}", shared.display()),
        ];
        flags.extend(extra.iter().map(|s| s.to_string()));
        Fleet { dir, flags }
    }

    pub(crate) async fn node(&self, name: &str) -> TestHost {
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        TestHost::start_with(&self.dir.path().join(name), &flags).await
    }

    async fn nodes(&self, count: usize) -> Vec<TestHost> {
        let mut nodes = Vec::new();
        for i in 0..count {
            nodes.push(self.node(&format!("node{i}")).await);
        }
        nodes
    }
}

/// Clients calling `url` in a loop through the balancer until stopped, half with GET and
/// half with POST (which a balancer may not send twice, so it cannot hide a node that drops
/// one): every answer must be a 200 whose body is one of `bodies`; anything else is a
/// failure, kept for the report.
pub(crate) struct Traffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    pub(crate) fn start(url: String, clients: usize, bodies: &'static [&'static str]) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|client| {
                let (stop, ok, failures, url) =
                    (stop.clone(), ok.clone(), failures.clone(), url.clone());
                let http = reqwest::Client::new();
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let request = if client % 2 == 0 {
                            http.get(&url)
                        } else {
                            http.post(&url).body("order")
                        };
                        let answer = match request.send().await {
                            Ok(r) => {
                                let status = r.status();
                                r.text().await.map(|body| (status, body))
                            }
                            Err(e) => Err(e),
                        };
                        match answer {
                            Ok((status, body))
                                if status == 200 && bodies.contains(&body.as_str()) =>
                            {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failures.lock().unwrap().push(format!("{other:?}")),
                        }
                    }
                })
            })
            .collect();
        Traffic {
            stop,
            ok,
            failures,
            tasks,
        }
    }

    /// Stops the clients; (answers that were right, failures).
    pub(crate) async fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

/// Every invocation of `function` the fleet has recorded (all nodes flush quickly here).
async fn invocations(node: &TestHost, function: &str) -> u64 {
    let (_, usage) = node
        .get_json(&format!("/v1/usage?function={function}&by=version"))
        .await;
    usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["invocations"].as_u64().unwrap())
        .sum()
}

/// The invocations recorded once every node has flushed what it served so far.
pub(crate) async fn settled_invocations(node: &TestHost, function: &str) -> u64 {
    let mut last = invocations(node, function).await;
    loop {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let now = invocations(node, function).await;
        if now == last {
            return now;
        }
        last = now;
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Alias flips made on any node while clients call the alias through HAProxy: no request
/// fails or sees anything but the two versions, each flip is in force on every node within
/// milliseconds (measured from the flip's acknowledgement to each node answering with the
/// new version), and the fleet's usage adds up to exactly the requests sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_flips_under_load_through_haproxy_fail_nothing_and_propagate_at_once() {
    const ONE: &str = "one, world!\n";
    const TWO: &str = "two, world!\n";
    let fleet = Fleet::new(&["--usage-flush-interval", "200ms"]).await;
    let nodes = fleet.nodes(3).await;
    nodes[0]
        .deploy("hello", "hello", "env=GREETING%3Done")
        .await;
    nodes[0].publish("hello").await;
    nodes[0]
        .deploy("hello", "hello", "env=GREETING%3Dtwo")
        .await;
    nodes[0].publish("hello").await;
    set_alias(&nodes[0], "prod", 1).await;
    for node in &nodes[1..] {
        answers_eventually(node, "/hello@prod", ONE).await;
    }
    let before = settled_invocations(&nodes[1], "hello").await;
    let urls: Vec<&str> = nodes.iter().map(|n| n.data_url.as_str()).collect();
    let balancer = Balancer::start(&urls).await;
    let traffic = Traffic::start(format!("{}/hello@prod", balancer.url), 4, &[ONE, TWO]);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut propagation = Vec::new();
    let mut probes = 0u64;
    let http = reqwest::Client::new();
    for flip in 0..12 {
        let (version, body) = if flip % 2 == 0 { (2, TWO) } else { (1, ONE) };
        set_alias(&nodes[flip % 3], "prod", version).await;
        let acknowledged = Instant::now();
        for node in &nodes {
            loop {
                let answer = http
                    .get(format!("{}/hello@prod", node.data_url))
                    .send()
                    .await
                    .unwrap();
                probes += 1;
                if answer.text().await.unwrap() == body {
                    break;
                }
                assert!(
                    acknowledged.elapsed() < Duration::from_secs(10),
                    "flip {flip} never reached {}",
                    node.data_url
                );
            }
            propagation.push(acknowledged.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (ok, failures) = traffic.stop().await;
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 100, "only {ok} requests went through");
    propagation.sort();
    println!(
        "alias flip in force on every node: p50 {:?}, p99 {:?}, max {:?} over {} node-flips; {ok} requests through HAProxy",
        percentile(&propagation, 0.5),
        percentile(&propagation, 0.99),
        propagation.last().unwrap(),
        propagation.len()
    );
    // Usage from every node adds up to exactly what was sent (balanced and direct calls).
    let sent = before + ok + probes;
    eventually(Duration::from_secs(10), "usage adding up", || async {
        let counted = invocations(&nodes[1], "hello").await;
        (counted != sent).then(|| format!("{counted} invocations recorded, {sent} sent"))
    })
    .await;
}

/// Every node restarted in turn (SIGTERM, drain, start again on the same address) while
/// clients call through HAProxy: the balancer's /readyz checks move traffic away before
/// each node stops accepting, and no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_through_haproxy_fails_no_request() {
    const HELLO: &str = "Hello, world!\n";
    let fleet = Fleet::new(&["--drain-delay", "2s"]).await;
    let mut nodes = fleet.nodes(3).await;
    nodes[0].deploy("hello", "hello", "").await;
    for node in &nodes[1..] {
        answers_eventually(node, "/hello", HELLO).await;
    }
    let urls: Vec<&str> = nodes.iter().map(|n| n.data_url.as_str()).collect();
    let balancer = Balancer::start(&urls).await;
    let traffic = Traffic::start(format!("{}/hello", balancer.url), 4, &[HELLO]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..nodes.len() {
        let node = nodes.remove(i);
        let node = node.restart().await;
        answers_eventually(&node, "/hello", HELLO).await;
        // Back in rotation after two passing checks (500 ms apart while down).
        tokio::time::sleep(Duration::from_millis(2500)).await;
        nodes.insert(i, node);
    }
    let (ok, failures) = traffic.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {} failed during the rolling restart: {:?}\n{}",
        failures.len(),
        ok as usize + failures.len(),
        &failures[..failures.len().min(5)],
        balancer.log()
    );
    assert!(ok > 100, "only {ok} requests went through");
    println!("rolling restart of 3 nodes: {ok} requests through HAProxy, none failed");
}

/// Provisioned concurrency is a fleet total split over the live nodes: 5 over 3 nodes is
/// 2 + 2 + 1, each node keeping its part warm; when a node dies the survivors re-split it
/// (3 + 2) once the dead one's heartbeat expires.
#[tokio::test]
async fn provisioned_concurrency_is_split_over_the_live_nodes() {
    let fleet = Fleet::new(&[]).await;
    let mut nodes = fleet.nodes(3).await;
    nodes[0].deploy("shop", "hello", "").await;
    let set = nodes[0]
        .admin(reqwest::Method::PUT, "/v1/functions/shop/scaling")
        .json(&serde_json::json!({"provisioned": 5, "version": "latest"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200, "{}", set.text().await.unwrap());
    provisioned_parts(&nodes, &[1, 2, 2]).await;
    nodes.pop().unwrap().kill9();
    provisioned_parts(&nodes, &[2, 3]).await;
}

/// Waits until the nodes' parts of `shop`'s provisioned concurrency, sorted, are `want`,
/// each warm, and each node knows how many nodes share it.
async fn provisioned_parts(nodes: &[TestHost], want: &[u32]) {
    eventually(Duration::from_secs(20), "the provisioned split", || async {
        let mut parts = Vec::new();
        let mut seen = Vec::new();
        for node in nodes {
            let (_, view) = node.get_json("/v1/functions/shop/scaling").await;
            let pool = view["pools"]
                .as_array()
                .and_then(|p| p.iter().find(|p| p["version"] == "$LATEST"));
            let provisioned = pool.map_or(0, |p| p["provisioned"].as_u64().unwrap() as u32);
            let warm = pool.map_or(0, |p| p["warm"].as_u64().unwrap() as u32);
            if warm < provisioned || view["nodes"] != nodes.len() {
                seen.push(view.to_string());
            }
            parts.push(provisioned);
        }
        parts.sort();
        (parts != want || !seen.is_empty()).then(|| format!("{parts:?}: {seen:?}"))
    })
    .await;
}
