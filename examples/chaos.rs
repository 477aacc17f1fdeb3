//! The crash test behind `scripts/chaos`: a mixed workload against a real `fnhost serve`
//! while the host is killed with SIGKILL at random moments; after every restart a checker
//! verifies that every acknowledged write is present and unchanged and nothing half-written
//! is visible; at the end, that every acknowledged object's events were delivered.
//!
//! Usage: `cargo run --example chaos -- --fnhost target/debug/fnhost --kills 50`
//! (see `--help`). Loopback only; bounded by `--kills` and `--max-seconds`. Exits non-zero
//! on the first violation, naming it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

const USAGE: &str =
    "chaos [--fnhost PATH] [--wasm DIR] [--kills N] [--seed N] [--max-seconds N] [--keep]";

struct Options {
    fnhost: PathBuf,
    wasm: PathBuf,
    kills: u32,
    seed: u64,
    max_seconds: u64,
    keep: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        fnhost: PathBuf::from("target/debug/fnhost"),
        wasm: PathBuf::from("functions/target/wasm32-wasip2/release"),
        kills: 50,
        seed: fastrand::u64(..),
        max_seconds: 900,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value; {USAGE}"))
        };
        match arg.as_str() {
            "--fnhost" => options.fnhost = value()?.into(),
            "--wasm" => options.wasm = value()?.into(),
            "--kills" => options.kills = value()?.parse().context("--kills")?,
            "--seed" => options.seed = value()?.parse().context("--seed")?,
            "--max-seconds" => options.max_seconds = value()?.parse().context("--max-seconds")?,
            "--keep" => options.keep = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    Ok(options)
}

/// A running host and how to reach it.
struct Host {
    child: Child,
    data_url: String,
    admin_url: String,
    token: String,
}

impl Host {
    fn start(fnhost: &Path, data_dir: &Path) -> anyhow::Result<Host> {
        // The host's log, kept beside the data directory for when a start fails.
        let log = data_dir.with_extension("log");
        let mut child = Command::new(fnhost)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(["--pool-instances", "64", "--usage-flush-interval", "1s"])
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&log)?,
            )
            .spawn()
            .with_context(|| format!("starting {}", fnhost.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let (mut data_url, mut admin_url) = (None, None);
        use std::io::BufRead as _;
        let mut lines = std::io::BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line?;
            let url = |prefix: &str| {
                line.trim()
                    .strip_prefix(prefix)
                    .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
            };
            if let Some(url) = url("data plane:") {
                data_url = Some(url);
            }
            if let Some(url) = url("admin plane:") {
                admin_url = Some(url);
                break;
            }
        }
        // Keep reading what the host prints, so it never writes into a closed pipe.
        std::thread::spawn(move || for _ in lines {});
        let (Some(data_url), Some(admin_url)) = (data_url, admin_url) else {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "the host did not start (no addresses printed); the end of its log ({}):\n{}",
                log.display(),
                tail.join("\n")
            );
        };
        let token = std::fs::read_to_string(data_dir.join("admin.token"))?
            .trim()
            .to_string();
        Ok(Host {
            child,
            data_url,
            admin_url,
            token,
        })
    }

    fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?; // SIGKILL
        self.child.wait()?;
        Ok(())
    }
}

/// Where the workers send requests; replaced after every restart.
#[derive(Clone)]
struct Target {
    data_url: String,
    admin_url: String,
    token: String,
}

/// One value a sequential worker writes over and over: what was last acknowledged and what
/// was tried since (any of which may have committed without its answer arriving).
#[derive(Default)]
struct Register<T> {
    acked: Option<T>,
    tried_since: Vec<T>,
}

impl<T: Clone + PartialEq + std::fmt::Debug> Register<T> {
    fn try_(&mut self, value: T) {
        self.tried_since.push(value);
    }

    fn ack(&mut self, value: T) {
        self.acked = Some(value);
        self.tried_since.clear();
    }

    /// Checks the stored value against what may be there, then adopts it.
    fn check(&mut self, stored: Option<T>, what: &str) -> anyhow::Result<()> {
        let allowed = stored == self.acked
            || stored
                .as_ref()
                .is_some_and(|s| self.tried_since.iter().any(|t| t == s));
        ensure!(
            allowed,
            "{what}: stored {stored:?}, but the last acknowledged write was {:?} (tried since: {:?})",
            self.acked,
            self.tried_since
        );
        self.acked = stored;
        self.tried_since.clear();
        Ok(())
    }
}

#[derive(Clone, Debug)]
struct AckedVersion {
    version: u64,
    digest: String,
    greeting: String,
}

#[derive(Clone, Debug)]
struct AckedObject {
    key: String,
    bytes: Vec<u8>,
    events: Vec<String>,
}

#[derive(Default)]
struct Ledger {
    latest: Register<(String, String)>,
    versions: Vec<AckedVersion>,
    versions_checked: usize,
    alias: Register<u32>,
    objects: Vec<AckedObject>,
    objects_checked: usize,
}

#[derive(Default)]
struct Counts {
    uploads: AtomicU64,
    publishes: AtomicU64,
    alias_flips: AtomicU64,
    object_puts: AtomicU64,
    invocations: AtomicU64,
    attempts: AtomicU64,
}

struct Shared {
    /// Workers hold it for reading during one operation; the killer takes it for writing
    /// after the kill, so no operation spans a restart and checks see a quiet host.
    gate: RwLock<Target>,
    ledger: Mutex<Ledger>,
    counts: Counts,
    stop: AtomicBool,
    http: reqwest::Client,
    hello: Vec<u8>,
}

/// `hello` with a custom section: a distinct digest, the same behaviour.
fn tagged(base: &[u8], tag: u64) -> Vec<u8> {
    let name = b"chaos";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&tag.to_le_bytes());
    let mut out = base.to_vec();
    out.push(0);
    out.push(section.len() as u8);
    out.extend_from_slice(&section);
    out
}

fn admin(
    shared: &Shared,
    target: &Target,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    shared
        .http
        .request(method, format!("{}{path}", target.admin_url))
        .bearer_auth(&target.token)
        .timeout(Duration::from_secs(30))
}

async fn upload_and_publish(shared: &Shared, i: u64) -> anyhow::Result<()> {
    let target = shared.gate.read().await;
    let greeting = format!("u{i}");
    let bytes = tagged(&shared.hello, i);
    let digest = format!("sha256:{}", sha256_hex(&bytes));
    shared
        .ledger
        .lock()
        .await
        .latest
        .try_((digest.clone(), greeting.clone()));
    shared.counts.attempts.fetch_add(1, Ordering::Relaxed);
    let response = admin(
        shared,
        &target,
        reqwest::Method::PUT,
        &format!("/v1/functions/chaos-up/code?env=GREETING%3D{greeting}"),
    )
    .body(bytes)
    .send()
    .await?;
    ensure!(response.status() == 200, "upload: {}", response.status());
    shared
        .ledger
        .lock()
        .await
        .latest
        .ack((digest.clone(), greeting.clone()));
    shared.counts.uploads.fetch_add(1, Ordering::Relaxed);
    if i.is_multiple_of(2) {
        shared.counts.attempts.fetch_add(1, Ordering::Relaxed);
        let response = admin(
            shared,
            &target,
            reqwest::Method::POST,
            "/v1/functions/chaos-up/versions",
        )
        .send()
        .await?;
        ensure!(response.status() == 201, "publish: {}", response.status());
        let body: Value = response.json().await?;
        shared.ledger.lock().await.versions.push(AckedVersion {
            version: body["version"]["version"].as_u64().context("version")?,
            digest: body["version"]["digest"]
                .as_str()
                .context("digest")?
                .to_string(),
            greeting,
        });
        shared.counts.publishes.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

async fn flip_alias(shared: &Shared, i: u64) -> anyhow::Result<()> {
    let target = shared.gate.read().await;
    let percent = (i % 101) as u32;
    shared.ledger.lock().await.alias.try_(percent);
    shared.counts.attempts.fetch_add(1, Ordering::Relaxed);
    let body = serde_json::json!({"routes": [
        {"version": 1, "percent": percent},
        {"version": 2, "percent": 100 - percent},
    ]});
    let response = admin(
        shared,
        &target,
        reqwest::Method::PUT,
        "/v1/functions/chaos-a/aliases/flip",
    )
    .json(&body)
    .send()
    .await?;
    ensure!(response.status() == 200, "alias: {}", response.status());
    shared.ledger.lock().await.alias.ack(percent);
    shared.counts.alias_flips.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

async fn put_object(shared: &Shared, i: u64) -> anyhow::Result<()> {
    let target = shared.gate.read().await;
    let key = format!("in/object-{i}.bin");
    let size = 1 + (i * 7919 % 65_536) as usize;
    let bytes: Vec<u8> = (0..size).map(|n| (n as u64 ^ i) as u8).collect();
    shared.counts.attempts.fetch_add(1, Ordering::Relaxed);
    let response = admin(
        shared,
        &target,
        reqwest::Method::PUT,
        &format!("/v1/buckets/chaos-in/objects/{key}"),
    )
    .body(bytes.clone())
    .send()
    .await?;
    ensure!(response.status() == 201, "object: {}", response.status());
    let body: Value = response.json().await?;
    let events = body["events"]
        .as_array()
        .context("events")?
        .iter()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    shared
        .ledger
        .lock()
        .await
        .objects
        .push(AckedObject { key, bytes, events });
    shared.counts.object_puts.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

async fn invoke(shared: &Shared) -> anyhow::Result<()> {
    let target = shared.gate.read().await;
    let response = shared
        .http
        .get(format!("{}/chaos-a@flip/", target.data_url))
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    ensure!(response.status() == 200, "invoke: {}", response.status());
    shared.counts.invocations.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Runs one kind of operation until told to stop; failures (the host is down) are expected.
fn worker(shared: Arc<Shared>, kind: u8) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i = 0u64;
        while !shared.stop.load(Ordering::Relaxed) {
            i += 1;
            let result = match kind {
                0 => upload_and_publish(&shared, i).await,
                1 => flip_alias(&shared, i).await,
                2 => put_object(&shared, i).await,
                _ => invoke(&shared).await,
            };
            if result.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
}

async fn get_json(shared: &Shared, target: &Target, path: &str) -> anyhow::Result<Value> {
    let response = admin(shared, target, reqwest::Method::GET, path)
        .send()
        .await?;
    ensure!(
        response.status() == 200,
        "GET {path}: {}",
        response.status()
    );
    Ok(response.json().await?)
}

/// Everything acknowledged is there and unchanged; nothing half-written is visible.
async fn check(shared: &Shared, target: &Target, data_dir: &Path) -> anyhow::Result<u64> {
    let mut checked = 0u64;
    let mut ledger = shared.ledger.lock().await;

    let up = get_json(shared, target, "/v1/functions/chaos-up").await;
    let stored_latest = match &up {
        Ok(details) => Some((
            details["latest"]["digest"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            details["latest"]["config"]["env"]["GREETING"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )),
        Err(_) => None,
    };
    ledger.latest.check(stored_latest, "chaos-up $LATEST")?;
    checked += 1;

    if !ledger.versions.is_empty() {
        let details = up.context("chaos-up has acknowledged versions but is missing")?;
        let stored: HashMap<u64, (String, String)> = details["versions"]
            .as_array()
            .context("versions")?
            .iter()
            .map(|v| {
                (
                    v["version"].as_u64().unwrap_or(0),
                    (
                        v["digest"].as_str().unwrap_or("").to_string(),
                        v["config"]["env"]["GREETING"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                    ),
                )
            })
            .collect();
        for ack in &ledger.versions {
            let found = stored.get(&ack.version);
            ensure!(
                found == Some(&(ack.digest.clone(), ack.greeting.clone())),
                "acknowledged version {ack:?} is {found:?}"
            );
            checked += 1;
        }
        // Versions acknowledged since the last check answer with their greeting.
        for ack in &ledger.versions[ledger.versions_checked..] {
            let body = shared
                .http
                .get(format!("{}/chaos-up@{}/", target.data_url, ack.version))
                .send()
                .await?
                .text()
                .await?;
            ensure!(
                body == format!("{}, world!\n", ack.greeting),
                "version {} answers {body:?}",
                ack.version
            );
            checked += 1;
        }
        ledger.versions_checked = ledger.versions.len();
    }

    let alias = get_json(shared, target, "/v1/functions/chaos-a/aliases/flip").await;
    let stored_alias = alias.ok().and_then(|a| {
        a["routes"].as_array()?.iter().find(|r| r["version"] == 1)?["percent"]
            .as_f64()
            .map(|p| p as u32)
    });
    ledger.alias.check(stored_alias, "alias chaos-a@flip")?;
    checked += 1;

    // New objects in full, and a sample of older ones.
    let fresh = ledger.objects_checked..ledger.objects.len();
    let mut indices: Vec<usize> = fresh.collect();
    for _ in 0..10.min(ledger.objects_checked) {
        indices.push(fastrand::usize(..ledger.objects_checked));
    }
    for index in indices {
        let object = &ledger.objects[index];
        let response = admin(
            shared,
            target,
            reqwest::Method::GET,
            &format!("/v1/buckets/chaos-in/objects/{}", object.key),
        )
        .send()
        .await?;
        ensure!(
            response.status() == 200,
            "acknowledged object {} is missing ({})",
            object.key,
            response.status()
        );
        let bytes = response.bytes().await?;
        ensure!(
            bytes.as_ref() == object.bytes.as_slice(),
            "acknowledged object {} changed: {} bytes, {} expected",
            object.key,
            bytes.len(),
            object.bytes.len()
        );
        checked += 1;
    }
    ledger.objects_checked = ledger.objects.len();

    // Nothing half-written: no partial module or compiled file, no staging object.
    for sub in ["modules", "compiled"] {
        for entry in std::fs::read_dir(data_dir.join(sub))? {
            let name = entry?.file_name().to_string_lossy().to_string();
            ensure!(!name.ends_with(".partial"), "half-written {sub}/{name}");
        }
    }
    Ok(checked)
}

/// Waits until every acknowledged object's events are delivered; returns how many.
async fn events_delivered(shared: &Shared, target: &Target) -> anyhow::Result<(usize, usize)> {
    let ledger = shared.ledger.lock().await;
    let wanted: Vec<&String> = ledger.objects.iter().flat_map(|o| &o.events).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let listed = get_json(shared, target, "/v1/functions/chaos-ev/events?limit=10000").await?;
        let status: BTreeMap<String, String> = listed["events"]
            .as_array()
            .context("events")?
            .iter()
            .map(|e| {
                (
                    e["id"].as_str().unwrap_or("").to_string(),
                    e["status"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let missing: Vec<&&String> = wanted
            .iter()
            .filter(|id| !status.contains_key(id.as_str()))
            .collect();
        ensure!(
            missing.is_empty(),
            "{} acknowledged events are gone, e.g. {:?}",
            missing.len(),
            missing.first()
        );
        let delivered = wanted
            .iter()
            .filter(|id| status[id.as_str()] == "delivered")
            .count();
        if delivered == wanted.len() {
            return Ok((delivered, wanted.len()));
        }
        ensure!(
            Instant::now() < deadline,
            "only {delivered} of {} acknowledged events delivered after 120 s",
            wanted.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

async fn setup(shared: &Shared, target: &Target) -> anyhow::Result<()> {
    let put = |name: &str, bytes: Vec<u8>, query: &str| {
        admin(
            shared,
            target,
            reqwest::Method::PUT,
            &format!("/v1/functions/{name}/code?{query}"),
        )
        .body(bytes)
        .send()
    };
    for (name, tag) in [("chaos-a", 1u64), ("chaos-a", 2), ("chaos-ev", 3)] {
        let response = put(name, tagged(&shared.hello, 1_000_000 + tag), "").await?;
        ensure!(response.status() == 200, "setup upload {name}");
        let response = admin(
            shared,
            target,
            reqwest::Method::POST,
            &format!("/v1/functions/{name}/versions"),
        )
        .send()
        .await?;
        ensure!(response.status().is_success(), "setup publish {name}");
    }
    let response = admin(
        shared,
        target,
        reqwest::Method::POST,
        "/v1/functions/chaos-ev/triggers",
    )
    .json(&serde_json::json!({"bucket": "chaos-in", "prefix": "in/"}))
    .send()
    .await?;
    ensure!(
        response.status() == 201,
        "setup trigger: {}",
        response.status()
    );
    let response = admin(
        shared,
        target,
        reqwest::Method::PUT,
        "/v1/functions/chaos-a/aliases/flip",
    )
    .json(&serde_json::json!({"routes": [{"version": 1, "percent": 50}, {"version": 2, "percent": 50}]}))
    .send()
    .await?;
    ensure!(response.status() == 200, "setup alias");
    shared.ledger.lock().await.alias.ack(50);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    fastrand::seed(options.seed);
    let hello = std::fs::read(options.wasm.join("hello.wasm")).with_context(|| {
        format!(
            "reading hello.wasm from {} (run scripts/build-functions)",
            options.wasm.display()
        )
    })?;
    let work = tempfile::Builder::new().prefix("fnhost-chaos").tempdir()?;
    let data_dir = work.path().join("data");
    let started = Instant::now();
    let bound = Duration::from_secs(options.max_seconds);

    let mut host = Host::start(&options.fnhost, &data_dir)?;
    let target = Target {
        data_url: host.data_url.clone(),
        admin_url: host.admin_url.clone(),
        token: host.token.clone(),
    };
    let shared = Arc::new(Shared {
        gate: RwLock::new(target.clone()),
        ledger: Mutex::new(Ledger::default()),
        counts: Counts::default(),
        stop: AtomicBool::new(false),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()?,
        hello,
    });
    setup(&shared, &target).await?;
    println!(
        "chaos: seed {}, {} kills, data in {}",
        options.seed,
        options.kills,
        data_dir.display()
    );
    let workers: Vec<_> = (0..5u8)
        .map(|kind| worker(shared.clone(), kind.min(3)))
        .collect();

    let mut checked_total = 0u64;
    let mut kills = 0u32;
    let outcome: anyhow::Result<()> = async {
        while kills < options.kills {
            ensure!(
                started.elapsed() < bound,
                "--max-seconds {} reached after {kills} kills",
                options.max_seconds
            );
            tokio::time::sleep(Duration::from_millis(fastrand::u64(100..1200))).await;
            host.kill()?;
            kills += 1;
            let mut gate = shared.gate.write().await;
            host = Host::start(&options.fnhost, &data_dir)?;
            *gate = Target {
                data_url: host.data_url.clone(),
                admin_url: host.admin_url.clone(),
                token: host.token.clone(),
            };
            let checked = check(&shared, &gate, &data_dir)
                .await
                .with_context(|| format!("after kill {kills}"))?;
            checked_total += checked;
            if kills.is_multiple_of(10) || kills == options.kills {
                println!(
                    "  {kills} kills, {:.0} s, {checked_total} acknowledged writes checked",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Ok(())
    }
    .await;
    shared.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    let result = match outcome {
        Ok(()) => {
            let target = shared.gate.read().await.clone();
            events_delivered(&shared, &target).await
        }
        Err(e) => Err(e),
    };
    let _ = host.kill();
    let counts = &shared.counts;
    let ledger = shared.ledger.lock().await;
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "kills: {kills}; operations attempted: {}; acknowledged: {} uploads, {} publishes, {} alias flips, {} object puts; invocations answered: {}; acknowledged writes checked: {checked_total}; objects with events: {}",
        load(&counts.attempts),
        load(&counts.uploads),
        load(&counts.publishes),
        load(&counts.alias_flips),
        load(&counts.object_puts),
        load(&counts.invocations),
        ledger.objects.len(),
    );
    if options.keep {
        println!("kept {}", work.keep().display());
    }
    match result {
        Ok((delivered, events)) => {
            println!(
                "events of acknowledged objects delivered: {delivered} of {events}; lost: 0; {:.0} s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Err(e) => {
            println!("FAILED: {e:#}");
            std::process::exit(1);
        }
    }
}
