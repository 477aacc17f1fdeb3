//! Faults of the parts fnhost depends on, injected into the real parts: a PostgreSQL server
//! stopped as a crash would stop it and started again, its backends terminated, a data
//! directory on a full filesystem. Each test is bounded and stops by itself.

use std::time::{Duration, Instant};

use crate::common::{TestHost, eventually};
use crate::fleet::{Fleet, Traffic, answers_eventually, settled_invocations};
use crate::postgres_server::TestPostgres;

const ONE: &str = "one, world!\n";
const TWO: &str = "two, world!\n";

/// Two nodes on PostgreSQL under load while PostgreSQL is stopped (`pg_ctl stop -m
/// immediate`) for several seconds and restarted: no data-plane request fails; admin writes
/// during the outage are answered within seconds with a 503 naming the database; `/readyz`,
/// `/v1/status` and `fnhost_dependency_up` say the database is down (and the log says so
/// once); after the restart both nodes reconnect by themselves, a publish is in force on both
/// within 5 s, and the usage of requests served during the outage is not lost.
#[tokio::test]
async fn two_nodes_keep_serving_through_a_database_outage_and_recover_by_themselves() {
    let server = tokio::task::spawn_blocking(TestPostgres::dedicated)
        .await
        .unwrap()
        .expect("starting a PostgreSQL server of the test's own");
    let server = std::sync::Arc::new(server);
    let dsn = {
        let server = server.clone();
        tokio::task::spawn_blocking(move || server.fresh_database())
            .await
            .unwrap()
    };
    let fleet = Fleet::on(dsn, &["--usage-flush-interval", "500ms"]);
    let (a, b) = (fleet.node("a").await, fleet.node("b").await);
    a.deploy("hello", "hello", "env=GREETING%3Done").await;
    assert_eq!(a.publish("hello").await.0, 201);
    answers_eventually(&b, "/hello", ONE).await;

    let traffic: Vec<Traffic> = [&a, &b]
        .iter()
        .map(|node| Traffic::start(format!("{}/hello", node.data_url), 4, &[ONE, TWO]))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let stop = server.clone();
    tokio::task::spawn_blocking(move || stop.stop_immediately())
        .await
        .unwrap()
        .expect("stopping PostgreSQL");
    let outage = Instant::now();

    // Admin writes fail fast, naming the database and saying what to do.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for node in [&a, &b] {
        let message = refused_fast(
            node.upload("hello", crate::common::wasm("hello"), "env=GREETING%3Dlost"),
            503,
            "database_unavailable",
        )
        .await;
        assert!(
            message.contains("metadata database is unreachable") && message.contains("retry"),
            "{message}"
        );
    }
    // What is answered from memory still is; the probes say what is down.
    for node in [&a, &b] {
        eventually(
            Duration::from_secs(5),
            "status naming the database",
            || async {
                let (code, status) = node.get_json("/v1/status").await;
                let database = &status["dependencies"][0];
                (code != 200 || database["name"] != "database" || database["up"] != false)
                    .then(|| format!("{code} {status}"))
            },
        )
        .await;
        reported_down(node, "database").await;
    }
    // Down for several seconds, under load all along.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(outage.elapsed())).await;
    let restart = server.clone();
    tokio::task::spawn_blocking(move || restart.restart())
        .await
        .unwrap()
        .expect("restarting PostgreSQL");
    let down_for = outage.elapsed();

    for node in [&a, &b] {
        eventually(
            Duration::from_secs(15),
            "the node reconnecting to the database",
            || async {
                let (_, status) = node.get_json("/v1/status").await;
                (status["dependencies"][0]["up"] != true).then(|| format!("{status}"))
            },
        )
        .await;
    }
    // A release after the outage reaches both nodes within the usual propagation time.
    a.deploy("hello", "hello", "env=GREETING%3Dtwo").await;
    assert_eq!(a.publish("hello").await.0, 201);
    let published = Instant::now();
    for node in [&a, &b] {
        eventually(
            Duration::from_secs(5),
            "the publish on every node",
            || async {
                let answer = node.call_text("/hello").await;
                (answer.2 != TWO).then(|| format!("{answer:?}"))
            },
        )
        .await;
    }
    let propagated = published.elapsed();

    let served = served_without_failures(traffic).await;
    // Usage recorded while the database was down was kept and written once it was back.
    let recorded = settled_invocations(&a, "hello").await;
    assert!(
        recorded >= served,
        "usage of {served} requests served, {recorded} recorded: some was lost"
    );
    for node in [&a, &b] {
        let log = logged_once(node, "database");
        assert!(!log.contains("registry failure"), "{log}");
        // Background loops that meet the outage stay quiet: only the outage's line names it.
        assert_eq!(
            log.matches("unreachable").count(),
            1,
            "the outage is in the log once, not once per call:\n{log}"
        );
    }
    eprintln!(
        "database outage of {down_for:?}: {served} requests served, 0 failed; \
         publish after recovery in force on both nodes after {propagated:?}"
    );
}

/// A terminated backend (`pg_terminate_backend`, what a failover or an operator does to
/// every connection) costs no admin call: the pooled connection found dead at `BEGIN` is
/// replaced and the call goes through, and the change feed reconnects and still carries
/// changes to the other node.
#[tokio::test]
async fn terminated_backends_are_replaced_without_failing_a_call() {
    let dsn = tokio::task::spawn_blocking(|| TestPostgres::shared().fresh_database())
        .await
        .unwrap();
    let fleet = Fleet::on(dsn.clone(), &[]);
    let (a, b) = (fleet.node("a").await, fleet.node("b").await);
    a.deploy("hello", "hello", "env=GREETING%3Done").await;
    assert_eq!(a.publish("hello").await.0, 201);
    answers_eventually(&b, "/hello", ONE).await;

    let database = dsn
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let terminated = tokio::task::spawn_blocking(move || {
        let mut admin = postgres::Client::connect(&dsn, postgres::NoTls).unwrap();
        admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&database],
            )
            .unwrap()
            .len()
    })
    .await
    .unwrap();
    assert!(
        terminated >= 2,
        "both nodes' connections were cut ({terminated})"
    );

    // Every node's next calls go through on new connections.
    a.deploy("hello", "hello", "env=GREETING%3Dtwo").await;
    let (status, body) = a.publish("hello").await;
    assert_eq!(status, 201, "{body}");
    let (code, versions) = b.get_json("/v1/functions/hello/versions").await;
    assert_eq!(code, 200, "{versions}");
    // The feed reconnected: b hears of the publish (well before the 30 s resync).
    eventually(Duration::from_secs(5), "the publish reaching b", || async {
        let answer = b.call_text("/hello").await;
        (answer.2 != TWO).then(|| format!("{answer:?}"))
    })
    .await;
}

/// A tmpfs of `bytes` mounted on a temporary directory (the test runs as root, as CI does);
/// unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` only when `FNHOST_SKIP_TOOL_TESTS=1` says this run cannot mount (a skipped
    /// test must not look like a passing one).
    fn mount(bytes: u64, options: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},{options}"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if mounted {
            return Some(Tmpfs { dir });
        }
        if std::env::var_os("FNHOST_SKIP_TOOL_TESTS").is_some_and(|v| v == "1") {
            eprintln!("SKIPPED (FNHOST_SKIP_TOOL_TESTS=1): a full disk is not tested in this run");
            return None;
        }
        panic!(
            "could not mount a tmpfs (mount needs root, as scripts/test in CI has); set \
             FNHOST_SKIP_TOOL_TESTS=1 to skip this knowingly"
        )
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the filesystem under `dir` with a file until it is full, to the last block.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    for chunk in [1 << 20, 4096, 512] {
        let zeros = vec![0u8; chunk];
        while file.write_all(&zeros).is_ok() {}
    }
    let _ = file.sync_all();
    path
}

/// A data directory on a filesystem that fills up: the data plane keeps serving; an upload,
/// an object put and a key-value write are refused with 507 (or the key-value error) saying
/// the disk is full, and nothing half-written is left; `/v1/status` and `/readyz` name the
/// disk; once space is freed the same writes succeed without a restart, and after kill -9
/// every acknowledged write is there and the database passes SQLite's integrity check.
#[tokio::test]
async fn a_full_disk_refuses_writes_clearly_keeps_serving_and_recovers() {
    let Some(disk) = Tmpfs::mount(48 << 20, "mode=0700") else {
        return;
    };
    let data = disk.path().to_path_buf();
    let host = TestHost::start_with(&data, &[]).await;
    host.deploy("hello", "hello", "env=GREETING%3Done").await;
    assert_eq!(host.publish("hello").await.0, 201);
    let kv = format!("config={}", crate::common::urlencode(r#"{"kv": ["sale"]}"#));
    host.deploy("sale", "flash_sale", &kv).await;
    let put_object = |key: &str, size: usize| {
        host.admin(
            reqwest::Method::PUT,
            &format!("/v1/buckets/media/objects/{key}"),
        )
        .body(vec![7u8; size])
        .send()
    };
    let put_kv = |key: &str, size: usize| {
        host.http
            .put(format!("{}/sale/kv/{key}", host.data_url))
            .body(vec![b'v'; size])
            .send()
    };
    assert_eq!(put_object("before", 100_000).await.unwrap().status(), 201);
    assert_eq!(put_kv("before", 1000).await.unwrap().status(), 200);

    let traffic = Traffic::start(format!("{}/hello", host.data_url), 2, &[ONE]);
    let filler = tokio::task::spawn_blocking({
        let data = data.clone();
        move || fill(&data)
    })
    .await
    .unwrap();

    // A new module (other bytes than any stored) does not fit.
    let message = refused_fast(
        host.upload("other", crate::common::wasm("echo"), ""),
        507,
        "disk_full",
    )
    .await;
    assert!(message.contains("disk is full"), "{message}");
    refused_fast(
        async { put_object("during", 1 << 20).await.unwrap() },
        507,
        "disk_full",
    )
    .await;
    let value = put_kv("during", 256 * 1024).await.unwrap();
    assert_eq!(value.status(), 500);
    let text = value.text().await.unwrap();
    assert!(
        text.contains("out of disk space"),
        "the function hears why: {text}"
    );

    let (_, status) = host.get_json("/v1/status").await;
    let disk_report = status["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "disk")
        .cloned()
        .unwrap();
    assert_eq!(disk_report["up"], false, "{status}");
    reported_down(&host, "disk").await;

    // Space freed: the host notices by itself and takes the same writes.
    std::fs::remove_file(&filler).unwrap();
    eventually(Duration::from_secs(10), "the disk coming back", || async {
        let (_, status) = host.get_json("/v1/status").await;
        let up = status["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "disk" && d["up"] == true);
        (!up).then(|| format!("{status}"))
    })
    .await;
    host.deploy("other", "echo", "").await;
    assert_eq!(put_object("after", 1 << 20).await.unwrap().status(), 201);
    assert_eq!(put_kv("after", 256 * 1024).await.unwrap().status(), 200);
    let (served, failures) = traffic.stop().await;
    assert!(
        failures.is_empty(),
        "{} requests failed while the disk was full, first: {}",
        failures.len(),
        failures[0]
    );
    assert!(served > 50, "only {served} requests served");
    assert_eq!(
        host.log().matches("disk is down").count(),
        1,
        "the outage is logged once: {}",
        host.log()
    );
    assert!(host.log().contains("disk is back"));

    // Nothing half-written anywhere, and everything acknowledged survives kill -9.
    host.kill9();
    for dir in ["modules", "compiled"] {
        for entry in std::fs::read_dir(data.join(dir)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.ends_with(".partial"), "{dir}/{name} left behind");
        }
    }
    for file in ["metadata.sqlite3", "metadata-keyvalue.sqlite3"] {
        let db = rusqlite::Connection::open(data.join(file)).unwrap();
        let check: String = db
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(check, "ok", "{file}");
    }
    let host = TestHost::start_with(&data, &[]).await;
    assert_eq!(host.call_text("/hello").await.2, ONE);
    assert_eq!(host.call("/other@latest").await.status(), 200);
    for key in ["before", "after"] {
        let (code, _) = host
            .get_json(&format!("/v1/buckets/media/objects?prefix={key}"))
            .await;
        assert_eq!(code, 200);
        let value = host
            .http
            .get(format!("{}/sale/kv/{key}", host.data_url))
            .send()
            .await
            .unwrap();
        assert_eq!(value.status(), 200, "kv {key}");
    }
    let (_, listing) = host.get_json("/v1/buckets/media/objects").await;
    let keys: Vec<&str> = listing["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["after", "before"], "{listing}");
}

/// A data directory on a read-only filesystem is refused at start, saying why and what to do.
#[tokio::test]
async fn a_read_only_data_directory_is_refused_at_start() {
    let Some(disk) = Tmpfs::mount(1 << 20, "ro") else {
        return;
    };
    let out = crate::common::serve_command(disk.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is not writable") && stderr.contains("Read-only file system"),
        "{stderr}"
    );
    assert!(stderr.contains("--data-dir"), "{stderr}");
}

/// Two nodes on PostgreSQL and an S3 store (s3s-fs) under load while the S3 server is
/// killed for several seconds and started again on the same storage: no data-plane request
/// fails, including to a version node b fetched ahead of its first request; object puts,
/// asynchronous invocations with a body and uploads are answered within seconds with a 503
/// naming the object store, and nothing of them is registered; a publish (database only)
/// still works; the status and `/readyz` name the object store; once it is back, writes work
/// again by themselves, an event put just before the kill is delivered, and every
/// acknowledged object is there.
#[tokio::test]
async fn two_nodes_keep_serving_through_an_object_store_outage_and_recover_by_themselves() {
    let Some(binary) = crate::common::tool("FNHOST_S3FS", "object store faults") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s3_root = dir.path().join("s3");
    let s3 = crate::s3::start_s3(&binary, &s3_root);
    let endpoint = format!("http://127.0.0.1:{}", s3.port);
    let dsn = crate::fleet::fresh_database().await;
    let flags = [
        "--registry",
        &dsn,
        "--object-store",
        "s3://fnhost-test/fleet",
    ];
    let env = crate::s3::s3_env(&endpoint);
    let a = TestHost::start_with_env(&dir.path().join("a"), &flags, &env).await;
    let b = TestHost::start_with_env(&dir.path().join("b"), &flags, &env).await;
    a.deploy("hello", "hello", "env=GREETING%3Done").await;
    assert_eq!(a.publish("hello").await.0, 201);
    answers_eventually(&b, "/hello", ONE).await;
    a.deploy("copy", "hostile", "env=VARIANT%3Ds3").await;
    let trigger = a
        .admin(reqwest::Method::POST, "/v1/functions/copy/triggers")
        .json(&serde_json::json!({"bucket": "inbox", "output_bucket": "outbox"}))
        .send()
        .await
        .unwrap();
    assert_eq!(trigger.status(), 201);
    // Deployed on a and never requested on b: b fetches it ahead of its requests.
    a.deploy("greeter", "echo", "").await;
    eventually(
        Duration::from_secs(20),
        "b fetching greeter ahead of its requests",
        || async {
            let (_, status) = b.get_json("/v1/status").await;
            (status["engine"]["loaded_components"] != 3).then(|| format!("{status}"))
        },
    )
    .await;

    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let key = format!("orders/{i}.json");
        let put = a
            .admin(
                reqwest::Method::PUT,
                &format!("/v1/buckets/inbox/objects/{key}"),
            )
            .body(format!("{{\"order\": {i}}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201);
        acknowledged.push(key);
    }
    let traffic: Vec<Traffic> = [&a, &b]
        .iter()
        .map(|node| Traffic::start(format!("{}/hello", node.data_url), 4, &[ONE, TWO]))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // An event whose object is read while the store is down (or just before): delivered.
    let last = a
        .admin(
            reqwest::Method::PUT,
            "/v1/buckets/inbox/objects/orders/last.json",
        )
        .body("{\"order\": \"last\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(last.status(), 201);
    acknowledged.push("orders/last.json".to_string());
    let port = s3.kill();
    let outage = Instant::now();

    // b serves the version it fetched ahead, with the store gone.
    let (code, _, _) = b.call_text("/greeter").await;
    assert_eq!(code, 200, "b serves what it fetched ahead");
    for node in [&a, &b] {
        let put = node
            .admin(reqwest::Method::PUT, "/v1/buckets/inbox/objects/lost.json")
            .body("{}")
            .send();
        let message = refused_fast(
            async { put.await.unwrap() },
            503,
            "object_store_unavailable",
        )
        .await;
        assert!(message.contains("object store is unreachable"), "{message}");
        refused_fast(
            node.upload("hello", crate::common::wasm("hello"), "env=GREETING%3Dlost"),
            503,
            "object_store_unavailable",
        )
        .await;

        let queued = node
            .http
            .post(format!("{}/hello", node.data_url))
            .header("fnhost-invocation", "async")
            .body("a body that must be stored first")
            .send()
            .await
            .unwrap();
        assert_eq!(queued.status(), 503, "{}", queued.text().await.unwrap());

        reported_down(node, "object_store").await;
    }
    // Nothing of the refused upload was registered; what needs only the database works.
    let (_, versions) = a.get_json("/v1/functions/hello/versions").await;
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        1,
        "{versions}"
    );
    assert_eq!(b.publish("greeter").await.0, 201);

    tokio::time::sleep(Duration::from_secs(4).saturating_sub(outage.elapsed())).await;
    let s3 = crate::s3::start_s3_on(&binary, &s3_root, port);
    let down_for = outage.elapsed();
    let restarted = Instant::now();
    for node in [&a, &b] {
        eventually(
            Duration::from_secs(15),
            "the node seeing the object store back",
            || async {
                let (_, status) = node.get_json("/v1/status").await;
                let store = &status["dependencies"][2];
                (store["name"] != "object_store" || store["up"] != true)
                    .then(|| format!("{status}"))
            },
        )
        .await;
    }
    let recovered = restarted.elapsed();
    let put = b
        .admin(reqwest::Method::PUT, "/v1/buckets/inbox/objects/after.json")
        .body("{\"order\": \"after\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    acknowledged.push("after.json".to_string());
    a.deploy("hello", "hello", "env=GREETING%3Dtwo").await;
    assert_eq!(a.publish("hello").await.0, 201);
    answers_eventually(&b, "/hello", TWO).await;

    // Every event was delivered, none dead-lettered, every acknowledged object is there.
    eventually(Duration::from_secs(30), "every event delivered", || async {
        let (_, events) = a
            .get_json("/v1/functions/copy/events?status=delivered")
            .await;
        let delivered = events["events"].as_array().map_or(0, Vec::len);
        (delivered != acknowledged.len()).then(|| format!("{events}"))
    })
    .await;
    let (_, failed) = a.get_json("/v1/functions/copy/events?status=failed").await;
    assert_eq!(failed["events"].as_array().unwrap().len(), 0, "{failed}");
    for key in &acknowledged {
        let stored = s3_root.join("fnhost-test/fleet/inbox").join(key);
        assert!(stored.exists(), "{key} acknowledged but missing");
        let copied = s3_root.join("fnhost-test/fleet/outbox").join(key);
        assert!(copied.exists(), "{key}'s trigger output missing");
    }
    assert!(!s3_root.join("fnhost-test/fleet/inbox/lost.json").exists());

    let served = served_without_failures(traffic).await;
    for node in [&a, &b] {
        logged_once(node, "object_store");
    }
    drop(s3);
    eprintln!(
        "object store outage of {down_for:?}: {served} requests served, 0 failed; \
         writes refused with 503 within seconds; back on both nodes {recovered:?} after the \
         restart"
    );
}

/// Stops `traffic`, asserting no request failed and enough were served; returns how many.
async fn served_without_failures(traffic: Vec<Traffic>) -> u64 {
    let mut served = 0;
    for traffic in traffic {
        let (ok, failures) = traffic.stop().await;
        assert!(
            failures.is_empty(),
            "{} data-plane requests failed during the outage, first: {}",
            failures.len(),
            failures[0]
        );
        served += ok;
    }
    assert!(served > 100, "only {served} requests served");
    served
}

/// Awaits `answer`, asserting it came within seconds (never a hang) as `status` with the
/// error `code`, and for a 503 with a Retry-After; returns the error's message.
async fn refused_fast(
    answer: impl std::future::Future<Output = reqwest::Response>,
    status: u16,
    code: &str,
) -> String {
    let started = Instant::now();
    let answer = answer.await;
    let took = started.elapsed();
    let got = answer.status();
    let retry_after = answer.headers().get("retry-after").cloned();
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(got, status, "{body}");
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    assert_eq!(body["error"]["code"], code, "{body}");
    if status == 503 {
        assert!(retry_after.is_some(), "a 503 says when to retry");
    }
    body["error"]["message"].as_str().unwrap().to_string()
}

/// Asserts `node` names `part` as down in `/readyz` (still 200: the data plane serves) and
/// in `fnhost_dependency_up`.
async fn reported_down(node: &TestHost, part: &str) {
    let ready = node
        .http
        .get(format!("{}/readyz", node.data_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "the data plane still serves");
    let text = ready.text().await.unwrap();
    assert!(text.contains(&format!("degraded: {part}")), "{text}");
    assert_eq!(
        node.metric("fnhost_dependency_up", &[("name", part)]).await,
        0.0
    );
}

/// Asserts `node` logged the outage of `part` once and its end; returns the log.
fn logged_once(node: &TestHost, part: &str) -> String {
    let log = node.log();
    assert_eq!(
        log.matches(&format!("{part} is down")).count(),
        1,
        "the outage is logged once per node:\n{log}"
    );
    assert!(log.contains(&format!("{part} is back")), "{log}");
    log
}
