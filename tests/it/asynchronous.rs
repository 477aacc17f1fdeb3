//! Asynchronous invocations over real HTTP with real functions: 202 and an id at once, the
//! job's result in its destination (a bucket, or another function as a CloudEvent), retries
//! then the dead-letter list and retry, nothing acknowledged lost to kill -9, HTTP requests
//! unhurt while the async lane is full, a 4 GiB function beside the pool, and a real AV1
//! transcode from a bucket trigger and from an asynchronous invocation.

use std::time::{Duration, Instant};

use crate::common::{TestHost, eventually, urlencode};
use reqwest::Method;
use serde_json::{Value, json};

/// Queues a call and waits (up to 30 s) until it is `status`.
async fn queue_until(host: &TestHost, function_path: &str, body: Vec<u8>, status: &str) -> Value {
    let accepted = host.queue_invocation(function_path, body).await;
    let id = accepted["id"].as_str().unwrap();
    host.invocation_settled(id, status, Duration::from_secs(30))
        .await
}

async fn object(host: &TestHost, bucket: &str, key: &str) -> (u16, Vec<u8>) {
    let response = host
        .admin(Method::GET, &format!("/v1/buckets/{bucket}/objects/{key}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// How many of `function`'s invocations are `status` now.
async fn count(host: &TestHost, function: &str, status: &str) -> usize {
    let (code, list) = host
        .get_json(&format!(
            "/v1/functions/{function}/invocations?status={status}&limit=1000"
        ))
        .await;
    assert_eq!(code, 200, "{list}");
    list["invocations"].as_array().unwrap().len()
}

fn config(value: Value) -> String {
    format!("config={}", urlencode(&value.to_string()))
}

#[tokio::test]
async fn async_invocations_answer_at_once_and_results_land_in_their_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy(
        "echo",
        "echo",
        &config(json!({"async": {"on_success": "bucket:results"}})),
    )
    .await;

    // 202 with an id at once; the job runs later and its response becomes an object.
    let started = Instant::now();
    let accepted = host
        .queue_invocation("/echo/orders?id=7", b"hello, later".to_vec())
        .await;
    println!("202 after {:?}", started.elapsed());
    let id = accepted["id"].as_str().unwrap().to_string();
    assert_eq!(accepted["function"], "echo");
    assert_eq!(accepted["location"], format!("/v1/invocations/{id}"));
    let done = host
        .invocation_settled(&id, "delivered", Duration::from_secs(20))
        .await;
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(done["method"], "POST");
    assert_eq!(done["path"], "/orders?id=7");
    assert_eq!(done["result"]["status"], 200, "{done}");
    assert_eq!(
        done["result"]["destination"],
        format!("bucket:results/{id}"),
        "{done}"
    );
    assert!(done["result"]["duration_ms"].as_u64().is_some());
    let (status, body) = object(&host, "results", &id).await;
    assert_eq!(status, 200);
    assert_eq!(body, b"hello, later");

    // The function saw the request as sent, plus its invocation id and attempt.
    host.deploy(
        "headers",
        "echo",
        &config(json!({"async": {"on_success": "bucket:seen"}})),
    )
    .await;
    let seen = host.queue_invocation("/headers/x", Vec::new()).await;
    let seen_id = seen["id"].as_str().unwrap();
    host.invocation_settled(seen_id, "delivered", Duration::from_secs(20))
        .await;
    let (_, list) = host.get_json("/v1/functions/headers/invocations").await;
    assert_eq!(list["invocations"][0]["id"], seen_id, "{list}");

    // The admin API queues the same way (no data-plane route needed).
    let response = host
        .admin(
            Method::POST,
            "/v1/functions/echo/invocations?path=/from-admin",
        )
        .header("content-type", "text/plain")
        .body("from the admin API")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let admin_id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = host
        .invocation_settled(&admin_id, "delivered", Duration::from_secs(20))
        .await;
    assert_eq!(done["path"], "/from-admin");
    assert_eq!(
        object(&host, "results", &admin_id).await.1,
        b"from the admin API"
    );

    // A function destination gets the response as a CloudEvent, queued as its own
    // invocation (which here writes it to a bucket).
    host.deploy(
        "sink",
        "echo",
        &config(json!({"async": {"on_success": "bucket:sunk"}})),
    )
    .await;
    host.deploy(
        "producer",
        "echo",
        &config(json!({"async": {"on_success": "function:sink"}})),
    )
    .await;
    let produced = host
        .queue_invocation("/producer/", b"made for sink".to_vec())
        .await;
    let produced_id = produced["id"].as_str().unwrap();
    let done = host
        .invocation_settled(produced_id, "delivered", Duration::from_secs(20))
        .await;
    let destination = done["result"]["destination"].as_str().unwrap().to_string();
    assert!(
        destination.starts_with("function:sink (inv-"),
        "{destination}"
    );
    let sink_id = destination
        .trim_start_matches("function:sink (")
        .trim_end_matches(')');
    let sunk = host
        .invocation_settled(sink_id, "delivered", Duration::from_secs(20))
        .await;
    assert_eq!(sunk["hops"], 1);
    assert_eq!(object(&host, "sunk", sink_id).await.1, b"made for sink");

    // Refusals: a bad invocation type, a body over the limit (declared), an unknown id.
    let bad = host
        .http
        .get(format!("{}/echo/", host.data_url))
        .header("fnhost-invocation", "later")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("use async"));
    host.deploy(
        "small",
        "echo",
        &config(json!({"max_request_body_bytes": 1024})),
    )
    .await;
    let big = host
        .http
        .post(format!("{}/small/", host.data_url))
        .header("fnhost-invocation", "async")
        .body(vec![0u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    let (code, _) = host.get_json("/v1/invocations/inv-missing").await;
    assert_eq!(code, 404);

    // The CLI: queue, follow to the end, list.
    let out = host.fnhost(&["invoke", "echo", "--async", "-d", "via the CLI"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(cli_id.starts_with("inv-"), "{cli_id}");
    let out = host.fnhost(&["invocations", "show", &cli_id, "--wait", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["status"], "delivered");
    let out = host.fnhost(&["invocations", "echo", "--status", "delivered"]);
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(
        listing.contains(&cli_id) && listing.contains(&id),
        "{listing}"
    );

    // Billed like any invocation.
    eventually(Duration::from_secs(20), "usage of echo", || async {
        let (_, usage) = host.get_json("/v1/usage?function=echo").await;
        let count: u64 = usage["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r["invocations"].as_u64().unwrap_or(0))
            .sum();
        (count < 3).then(|| usage.to_string())
    })
    .await;
}

#[tokio::test]
async fn failing_invocations_are_retried_then_dead_lettered_and_retry_works() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    // Fails its first two attempts (5xx), then succeeds.
    host.deploy_hostile(
        "flaky",
        json!({"env": {"FAIL_ATTEMPTS": "2"}, "async": {"retries": 3, "backoff_ms": 100}}),
    )
    .await;
    let done = queue_until(&host, "/flaky/", Vec::new(), "delivered").await;
    assert_eq!(done["attempts"], 3, "{done}");
    assert_eq!(done["max_attempts"], 4);

    // Always fails: dead-lettered after its two attempts, its record sent to a bucket.
    host.deploy_hostile(
        "broken",
        json!({
            "env": {"FAIL_PERCENT": "100"},
            "async": {"retries": 1, "backoff_ms": 50, "on_failure": "bucket:failures"}
        }),
    )
    .await;
    let broken = host
        .queue_invocation("/broken/job", b"payload".to_vec())
        .await;
    let id = broken["id"].as_str().unwrap().to_string();
    let failed = host
        .invocation_settled(&id, "failed", Duration::from_secs(20))
        .await;
    assert_eq!(failed["attempts"], 2, "{failed}");
    let error = failed["last_error"].as_str().unwrap();
    assert!(error.contains("gave up after 2 attempts"), "{error}");
    assert!(error.contains("500"), "{error}");
    assert_eq!(failed["result"]["status"], 500);
    let (status, record) = object(&host, "failures", &format!("{id}.json")).await;
    assert_eq!(status, 200);
    let record: Value = serde_json::from_slice(&record).unwrap();
    assert_eq!(record["id"], id.as_str());
    assert_eq!(record["request"]["path"], "/job");
    assert_eq!(record["attempts"], 2);
    assert_eq!(count(&host, "broken", "failed").await, 1);
    // Counted in /metrics: flaky's two failures and broken's first were retried.
    for (result, count) in [("dead_lettered", 1.0), ("retried", 3.0), ("succeeded", 1.0)] {
        let counted = host
            .metric("fnhost_async_attempts_total", &[("result", result)])
            .await;
        assert_eq!(counted, count, "{result}");
    }

    // Fixed, then retried: it runs again with its stored body and succeeds.
    let fixed = host
        .admin(Method::PATCH, "/v1/functions/broken/config")
        .json(&json!({"env": {"FAIL_PERCENT": "0"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(fixed.status(), 200, "{}", fixed.text().await.unwrap());
    let out = host.fnhost(&["invocations", "retry", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = host
        .invocation_settled(&id, "delivered", Duration::from_secs(20))
        .await;
    assert_eq!(done["attempts"], 1, "{done}");
    // Retrying what is not dead-lettered is refused.
    let again = host
        .admin(Method::POST, &format!("/v1/invocations/{id}/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
}

#[tokio::test]
async fn acknowledged_invocations_survive_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = TestHost::start(&data).await;
    host.deploy_hostile(
        "slow",
        json!({"env": {"DELAY_MS": "150"}, "async": {"concurrency": 2, "on_success": "bucket:done"}}),
    )
    .await;
    let mut acknowledged = Vec::new();
    for i in 0..40 {
        let accepted = host
            .queue_invocation(&format!("/slow/job-{i}"), vec![b'x'; 100])
            .await;
        acknowledged.push(accepted["id"].as_str().unwrap().to_string());
    }
    // Let some run, then kill mid-batch.
    eventually(Duration::from_secs(20), "a few done", || async {
        let n = count(&host, "slow", "delivered").await;
        (n < 4).then(|| format!("{n} done"))
    })
    .await;
    host.kill9();

    let host = TestHost::start(&data).await;
    eventually(Duration::from_secs(60), "all 40 delivered", || async {
        let n = count(&host, "slow", "delivered").await;
        (n < 40).then(|| format!("{n} delivered"))
    })
    .await;
    for id in &acknowledged {
        let (status, _) = object(&host, "done", id).await;
        assert_eq!(status, 200, "{id}'s result is missing");
    }
}

/// `n` sequential GETs of `path`: their latencies, sorted.
async fn latencies(host: &TestHost, path: &str, n: usize) -> Vec<Duration> {
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let response = host.call(path).await;
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
        all.push(started.elapsed());
    }
    all.sort();
    all
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::test]
async fn a_full_async_lane_leaves_http_requests_their_slots() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_with(&dir.path().join("data"), &["--async-concurrency", "2"]).await;
    host.deploy("hello", "hello", "").await;
    host.deploy_hostile(
        "crunch",
        json!({"max_concurrency": 2, "timeout_ms": 60000, "async": {"concurrency": 4}}),
    )
    .await;
    let before = latencies(&host, "/hello/", 200).await;
    // Eight CPU-bound jobs of a second or more each: the lane (2 host-wide) stays full.
    let mut jobs = Vec::new();
    for _ in 0..8 {
        let accepted = host
            .queue_invocation("/crunch/crunch?n=1500000000", Vec::new())
            .await;
        jobs.push(accepted["id"].as_str().unwrap().to_string());
    }
    eventually(Duration::from_secs(10), "the lane full", || async {
        let running = count(&host, "crunch", "running").await;
        (running < 2).then(|| format!("{running} running"))
    })
    .await;
    let during = latencies(&host, "/hello/", 200).await;
    // The lane takes none of the function's own HTTP slots either.
    let (status, _, body) = host.call_text("/crunch/crunch?n=1000").await;
    assert_eq!(status, 200, "{body}");
    let running = count(&host, "crunch", "running").await;
    println!(
        "hello p50/p99 before: {:?}/{:?}; with the async lane full ({running} running): {:?}/{:?}",
        percentile(&before, 0.5),
        percentile(&before, 0.99),
        percentile(&during, 0.5),
        percentile(&during, 0.99),
    );
    assert!(
        running <= 2,
        "the lane's host-wide limit is 2, {running} ran"
    );
    // Generous: a request queued behind a job's time slice would take a second.
    assert!(
        percentile(&during, 0.99) < Duration::from_millis(250),
        "hello waited behind the lane: {during:?}"
    );
    // The queued jobs all finish in the lane.
    for id in &jobs {
        host.invocation_settled(id, "delivered", Duration::from_secs(120))
            .await;
    }
}

#[tokio::test]
async fn a_4gib_function_runs_beside_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("hello", "hello", "").await;
    host.deploy_hostile("big", json!({"memory_mb": 4096, "timeout_ms": 900000}))
        .await;
    host.deploy_hostile("small", json!({"memory_mb": 128}))
        .await;
    let (_, detail) = host.get_json("/v1/functions/big").await;
    assert_eq!(detail["latest"]["config"]["timeout_ms"], 900000, "{detail}");
    // Past 15 minutes or 4 GiB is refused.
    for bad in [json!({"timeout_ms": 900001}), json!({"memory_mb": 4097})] {
        let refused = host
            .admin(Method::PATCH, "/v1/functions/big/config")
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{bad}");
    }
    let big = {
        let http = host.http.clone();
        let url = format!("{}/big/alloc?mib=3072", host.data_url);
        tokio::spawn(async move {
            let started = Instant::now();
            let response = http.get(url).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap(), started.elapsed())
        })
    };
    let mut served = 0;
    while !big.is_finished() {
        let (status, _, _) = host.call_text("/hello/").await;
        assert_eq!(status, 200);
        served += 1;
    }
    let (status, body, took) = big.await.unwrap();
    println!("3 GiB touched in {took:?} while hello answered {served} requests");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("allocated 3072 MiB"), "{body}");
    assert!(served > 0);
    // The same request under a 128 MiB limit fails cleanly, and the host serves on.
    let (status, _, body) = host.call_text("/small/alloc?mib=256").await;
    assert_eq!(status, 500, "{body}");
    let (status, _, _) = host.call_text("/hello/").await;
    assert_eq!(status, 200);
}

/// A Y4M clip (8-bit 4:2:0): a gradient with a moving square and some noise.
fn clip(width: usize, height: usize, frames: usize) -> Vec<u8> {
    let mut out = format!("YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n").into_bytes();
    let mut seed: u32 = 7;
    for f in 0..frames {
        out.extend_from_slice(b"FRAME\n");
        for y in 0..height {
            for x in 0..width {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let square = x / 16 == f % (width / 16) && y > height / 3 && y < height / 2;
                let luma = if square {
                    235
                } else {
                    (x + y + 2 * f) % 200 + 16
                };
                out.push((luma as u32 + (seed >> 29)).min(255) as u8);
            }
        }
        out.extend(std::iter::repeat_n(128, 2 * (width / 2) * (height / 2)));
    }
    out
}

/// The frame count an IVF file's header declares, after checking it is AV1.
fn ivf_frames(ivf: &[u8]) -> u32 {
    assert_eq!(&ivf[0..4], b"DKIF", "not IVF");
    assert_eq!(&ivf[8..12], b"AV01", "not AV1");
    u32::from_le_bytes(ivf[24..28].try_into().unwrap())
}

#[tokio::test]
async fn video_is_transcoded_to_av1_from_a_bucket_trigger_and_an_async_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy(
        "transcode",
        "transcode",
        &config(json!({
            "memory_mb": 1024,
            "timeout_ms": 900000,
            "max_request_body_bytes": 256 << 20,
            "async": {"on_success": "bucket:replays-av1"}
        })),
    )
    .await;
    let (width, height, frames) = (160, 96, 12);
    let input = clip(width, height, frames);

    // From a bucket: a replay uploaded, its AV1 written beside, named after it.
    let trigger = host
        .admin(Method::POST, "/v1/functions/transcode/triggers")
        .json(&json!({"bucket": "replays", "suffix": ".y4m", "output_bucket": "replays-av1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(trigger.status(), 201);
    let put = host
        .admin(Method::PUT, "/v1/buckets/replays/objects/live/match-1.y4m")
        .body(input.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    eventually(Duration::from_secs(120), "match-1.ivf", || async {
        let (status, _) = object(&host, "replays-av1", "live/match-1.ivf").await;
        (status != 200).then(|| status.to_string())
    })
    .await;
    let (_, ivf) = object(&host, "replays-av1", "live/match-1.ivf").await;
    assert_eq!(ivf_frames(&ivf), frames as u32);
    assert!(ivf.len() < input.len() / 10, "{} bytes of AV1", ivf.len());

    // As an asynchronous invocation with a bucket destination.
    let accepted = host
        .queue_invocation("/transcode/?key=match-2.ivf", input.clone())
        .await;
    let id = accepted["id"].as_str().unwrap();
    let done = host
        .invocation_settled(id, "delivered", Duration::from_secs(120))
        .await;
    assert_eq!(
        done["result"]["destination"], "bucket:replays-av1/match-2.ivf",
        "{done}"
    );
    let (_, ivf) = object(&host, "replays-av1", "match-2.ivf").await;
    assert_eq!(ivf_frames(&ivf), frames as u32);

    // A clip it cannot read is refused at once (4xx), not retried.
    let failed = queue_until(&host, "/transcode/", b"not video".to_vec(), "failed").await;
    assert_eq!(failed["attempts"], 1, "{failed}");
    assert!(
        failed["last_error"].as_str().unwrap().contains("Y4M"),
        "{failed}"
    );
}

#[tokio::test]
async fn bodies_no_invocation_needs_are_swept_and_dead_letters_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = TestHost::start_with(&data, &["--async-orphan-age", "0s"]).await;
    let bodies = || -> usize {
        std::fs::read_dir(data.join("objects/_fnhost/invocations"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    // A dead letter keeps its body (for retry).
    host.deploy_hostile(
        "broken",
        json!({"env": {"FAIL_PERCENT": "100"}, "async": {"retries": 0}}),
    )
    .await;
    queue_until(&host, "/broken/", b"keep me".to_vec(), "failed").await;
    // A delivered one's body is deleted at once.
    host.deploy("echo", "echo", "").await;
    queue_until(&host, "/echo/", b"done with".to_vec(), "delivered").await;
    assert_eq!(bodies(), 1);
    // Waiting invocations of a function then deleted leave their bodies behind...
    host.deploy_hostile(
        "slow",
        json!({"env": {"DELAY_MS": "5000"}, "async": {"concurrency": 1}}),
    )
    .await;
    for _ in 0..3 {
        host.queue_invocation("/slow/", b"orphan".to_vec()).await;
    }
    let deleted = host
        .admin(Method::DELETE, "/v1/functions/slow")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(bodies(), 4);
    // ... until the sweep (at start, then every ten minutes) takes them; the dead letter's
    // stays.
    let host = host.restart().await;
    eventually(Duration::from_secs(10), "the orphans swept", || async {
        (bodies() != 1).then(|| format!("{} bodies", bodies()))
    })
    .await;
    assert_eq!(count(&host, "broken", "failed").await, 1);
}
