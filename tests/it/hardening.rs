//! Hostile clients against the host's edges: each test is an attack that once hurt fnhost,
//! and checks the host (and its neighbours) stay well.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestHost, eventually, rss_mib};

/// Clients that hang up while queued for a busy function leave its queue: a later request
/// still queues and is served once the slot frees, instead of an instant 503 "queue full".
#[tokio::test]
async fn clients_that_hang_up_while_queued_leave_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(TestHost::start(&dir.path().join("data")).await);
    host.deploy_hostile("slow", json!({"max_concurrency": 1}))
        .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let hold = |ms: u64| {
        let host = host.clone();
        tokio::spawn(async move { host.call(&format!("/slow/sleep?ms={ms}")).await.status() })
    };
    let busy = hold(3000);
    holds_the_slot(&host).await;
    for _ in 0..2 {
        // The host notices a hang-up when it next polls that connection: on a loaded
        // machine a moment after the client left, so a full queue may answer 503 at once
        // meanwhile. If hung-up waiters never left, every later try would get that 503.
        let mut queued = false;
        for _ in 0..6 {
            match impatient
                .get(format!("{}/slow/sleep?ms=1", host.data_url))
                .send()
                .await
            {
                Err(_) => {
                    queued = true;
                    break;
                }
                Ok(answer) => {
                    assert_eq!(answer.status(), 503, "only a full queue answers at once");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        assert!(queued, "the queue stayed full of clients that hung up");
    }
    assert_eq!(busy.await.unwrap(), 200);
    let busy = hold(500);
    holds_the_slot(&host).await;
    let response = host.call("/slow/sleep?ms=1").await;
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "queued, then served: {body}");
    assert_eq!(busy.await.unwrap(), 200);
}

/// Waits until a request holds the only slot of `slow`: on a loaded machine the first request
/// may still be compiling or connecting after a fixed pause, and the "queued" one would run.
async fn holds_the_slot(host: &TestHost) {
    eventually(
        Duration::from_secs(10),
        "the slow request holding its slot",
        || async {
            let in_flight = host
                .metric("fnhost_in_flight", &[("function", "slow")])
                .await;
            (in_flight < 1.0).then(|| format!("{in_flight} in flight"))
        },
    )
    .await;
}

/// A live request cannot pose as a shadow or an event delivery: the function never sees a
/// client's `fnhost-*` or `ce-*` headers, while its other headers arrive untouched.
#[tokio::test]
async fn clients_cannot_set_reserved_headers() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("echo", "echo", "").await;
    let response = reqwest::Client::new()
        .get(format!("{}/echo/", host.data_url))
        .header("fnhost-shadow", "1")
        .header("fnhost-attempt", "3")
        .header("fnhost-event-hops", "0")
        .header("ce-id", "forged")
        .header("ce-type", "fnhost.object.created")
        .header("x-user", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen: Value =
        serde_json::from_str(response.headers()["echo-headers"].to_str().unwrap()).unwrap();
    let names: Vec<&str> = seen
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(names.contains(&"x-user"), "{names:?}");
    for reserved in [
        "fnhost-shadow",
        "fnhost-attempt",
        "fnhost-event-hops",
        "ce-id",
        "ce-type",
    ] {
        assert!(
            !names.contains(&reserved),
            "{reserved} reached the function: {names:?}"
        );
    }
}

/// The data directory and everything in it are private to the host's user (they hold
/// every function's environment and the admin token); an older, readable database is
/// tightened at start.
#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = TestHost::start(&data).await;
    host.deploy("hello", "hello", "env=SECRET%3Dx").await;
    assert_eq!(mode(&data), 0o700);
    for entry in walk(&data) {
        let m = mode(&entry);
        assert_eq!(m & 0o077, 0, "{} is mode {m:o}", entry.display());
    }
    host.kill9();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = data.join("metadata.sqlite3");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _host = TestHost::start(&data).await;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&db), 0o600);
}

/// A host refuses an admin token others can read, and says how to fix it.
#[cfg(unix)]
#[test]
fn a_readable_admin_token_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let token = data.join("admin.token");
    std::fs::write(&token, "a".repeat(64)).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = crate::common::serve_command(&data).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("readable by other users") && stderr.contains("chmod 600"),
        "{stderr}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// 120 connections that send half of a declared 2 MB body to an unknown function and go
/// silent do not pin memory (the host drops what it reads, and stops waiting), and the
/// admin plane and a neighbour keep answering meanwhile.
#[tokio::test]
async fn unread_bodies_of_early_answers_hold_no_memory() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("hello", "hello", "").await;
    assert_eq!(host.call("/hello/").await.status(), 200);
    let before = rss_mib(host.pid());
    let address = host.data_url.trim_start_matches("http://").to_string();
    let chunk = vec![b'x'; 64 << 10];
    let mut connections = Vec::new();
    for _ in 0..120 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(
                b"POST /no-such-function/ HTTP/1.1\r\nhost: x\r\ncontent-length: 2000000\r\n\r\n",
            )
            .await
            .unwrap();
        for _ in 0..16 {
            // The host may answer and close early; that is fine.
            if stream.write_all(&chunk).await.is_err() {
                break;
            }
        }
        connections.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = rss_mib(host.pid());
    let started = std::time::Instant::now();
    let (status, _) = host.get_json("/v1/functions").await;
    assert_eq!(status, 200);
    assert_eq!(host.call("/hello/").await.status(), 200);
    let answered = started.elapsed();
    println!(
        "RSS {before:.1} -> {during:.1} MiB with 120 silent uploads; admin and hello answered in {answered:?}"
    );
    assert!(
        during < before + 40.0,
        "unread bodies pinned memory: RSS {before:.1} -> {during:.1} MiB"
    );
    assert!(answered < Duration::from_secs(2), "{answered:?}");
    drop(connections);
}

/// Reads from `stream` until the host closes it or `limit` passes; returns what it sent and
/// whether it closed.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> (String, bool) {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&received).into(), true),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => return (String::from_utf8_lossy(&received).into(), false),
        }
    }
}

/// Half-sent request heads and idle keep-alive connections are closed after the
/// header-read timeout, on both planes.
#[tokio::test]
async fn half_sent_heads_and_idle_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let host =
        TestHost::start_with(&dir.path().join("data"), &["--header-read-timeout", "1s"]).await;
    host.deploy("hello", "hello", "").await;
    for url in [&host.data_url, &host.admin_url] {
        let address = url.trim_start_matches("http://");
        let mut half = tokio::net::TcpStream::connect(address).await.unwrap();
        half.write_all(b"GET /hello/ HTTP/1.1\r\nhost: x\r\nx-slow:")
            .await
            .unwrap();
        let silent = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        for (what, mut stream) in [
            ("half-sent head", half),
            ("silent", silent),
            ("idle keep-alive", idle),
        ] {
            let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
            assert!(closed, "{url}: a {what} connection stayed open");
        }
    }
}

/// A request body that stops arriving fails with 408 after the body timeout, and clients
/// that send only a head (a declared body that never comes) hold none of the function's
/// slots: a neighbour request to the same function is served meanwhile.
#[tokio::test]
async fn stalled_bodies_get_408_and_hold_no_slots() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_with(&dir.path().join("data"), &["--body-timeout", "1s"]).await;
    host.deploy_hostile("busy", json!({"max_concurrency": 2}))
        .await;
    let address = host.data_url.trim_start_matches("http://").to_string();
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(b"POST /busy/echo-size HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n0123456789")
            .await
            .unwrap();
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let response = host.call("/busy/sleep?ms=1").await;
    assert_eq!(response.status(), 200, "the function's slots were free");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let (answer, closed) = read_until_closed(&mut stalled[0], Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(closed);
}

/// With the host near its file-descriptor limit, idle clients filling the data plane cannot
/// lock the operator out: the data plane's budget stays below the limit and the admin plane
/// has its own.
#[tokio::test]
async fn a_full_data_plane_leaves_the_admin_plane_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_with_env(
        &dir.path().join("data"),
        &[
            "--header-read-timeout",
            "30s",
            "--max-admin-connections",
            "16",
        ],
        &[("FNHOST_TEST_NOFILE", "128")],
    )
    .await;
    let address = host.data_url.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let (status, _) = host.get_json("/v1/functions").await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
}

/// The same attack over one HTTP/2 connection: 100 streams each send 1 MB of a declared
/// 2 MB body to an unknown function and stall. Memory stays bounded and the host answers.
#[tokio::test]
async fn unread_bodies_over_http2_hold_no_memory() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    host.deploy("hello", "hello", "").await;
    let before = rss_mib(host.pid());
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut senders = Vec::new();
    let mut requests = Vec::new();
    for _ in 0..100 {
        let (sender, receiver) =
            tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(32);
        let body = reqwest::Body::wrap_stream(tokio_stream_of(receiver));
        let request = client
            .post(format!("{}/no-such-function/", host.data_url))
            .header("content-length", "2000000")
            .body(body)
            .send();
        requests.push(tokio::spawn(request));
        for _ in 0..16 {
            let _ = sender
                .send(Ok(bytes::Bytes::from(vec![b'x'; 64 << 10])))
                .await;
        }
        senders.push(sender);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = rss_mib(host.pid());
    let (status, _) = host.get_json("/v1/functions").await;
    assert_eq!(status, 200);
    assert_eq!(host.call("/hello/").await.status(), 200);
    println!("RSS {before:.1} -> {during:.1} MiB with 100 stalled HTTP/2 uploads");
    assert!(
        during < before + 40.0,
        "unread bodies pinned memory: RSS {before:.1} -> {during:.1} MiB"
    );
    drop(senders);
    for request in requests {
        let _ = request.await;
    }
}

/// A stream of the chunks `receiver` yields.
fn tokio_stream_of(
    mut receiver: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// The serving process runs under its seccomp filter (mode 2 in /proc), unless switched off,
/// and still serves: every other test runs with it on.
#[tokio::test]
async fn the_host_runs_under_its_seccomp_filter() {
    let mode = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .map(|v| v.trim().to_string())
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("on")).await;
    // The filter goes on after the listeners are bound, just before serving starts.
    let pid = host.pid();
    crate::common::eventually(Duration::from_secs(10), "seccomp mode 2", || async move {
        let mode = mode(pid);
        (mode != "2").then(|| format!("mode {mode}"))
    })
    .await;
    host.deploy("hello", "hello", "").await;
    assert_eq!(host.call_text("/hello/").await.0, 200);
    let off = TestHost::start_with(&dir.path().join("off"), &["--seccomp", "off"]).await;
    assert_eq!(mode(off.pid()), "0");
}
