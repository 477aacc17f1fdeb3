//! Shared test harness: builds the sample functions from `functions/` for wasm32-wasip2, runs
//! the real `fnhost` binary on ephemeral ports with its own data directory, and talks to it
//! over HTTP with reqwest.

mod balancer;
mod browser;
mod wasm;

pub use balancer::Balancer;
pub use browser::Browser;

pub use wasm::{wasm, wasm_path};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

/// `fnhost serve` on ephemeral loopback ports with `data_dir`; callers add flags.
pub fn serve_command(data_dir: &Path) -> Command {
    serve_command_on(data_dir, "127.0.0.1:0", "127.0.0.1:0")
}

/// `fnhost serve` with `data_dir` on the given data and admin addresses.
fn serve_command_on(data_dir: &Path, data: &str, admin: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fnhost"));
    command
        .args(["serve", "--listen", data])
        .args(["--admin-listen", admin])
        .arg("--data-dir")
        .arg(data_dir);
    command
}

/// A running `fnhost serve` child process.
pub struct TestHost {
    child: Child,
    /// The flags and environment it was started with, for [`TestHost::restart`].
    extra: Vec<String>,
    env: Vec<(String, String)>,
    pub data_dir: PathBuf,
    pub data_url: String,
    pub admin_url: String,
    pub token: String,
    pub http: reqwest::Client,
    log_path: PathBuf,
}

impl TestHost {
    /// Queues `function_path` (a data-plane path) as an asynchronous invocation, with an
    /// `x-order: 42` header the function sees; returns the 202's body.
    pub async fn queue_invocation(&self, function_path: &str, body: Vec<u8>) -> Value {
        let response = self
            .http
            .post(format!("{}{function_path}", self.data_url))
            .header("fnhost-invocation", "async")
            .header("x-order", "42")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let id = response
            .headers()
            .get("fnhost-invocation-id")
            .map(|v| v.to_str().unwrap().to_string());
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 202, "{body}");
        assert_eq!(id.as_deref(), body["id"].as_str());
        body
    }

    /// Sets secret `name` of `function` to `value` with `fnhost secret set` (the value on
    /// stdin, as an operator types it).
    pub fn set_secret(&self, function: &str, name: &str, value: &str) {
        let output = run_with_stdin(
            Command::new(env!("CARGO_BIN_EXE_fnhost"))
                .args(["secret", "set", function, name])
                .env("FNHOST_ADMIN_URL", &self.admin_url)
                .env("FNHOST_DATA_DIR", &self.data_dir),
            format!("{value}\n").as_bytes(),
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Asynchronous invocation `id` as the admin API shows it.
    pub async fn invocation(&self, id: &str) -> Value {
        let (code, body) = self.get_json(&format!("/v1/invocations/{id}")).await;
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Waits (up to `limit`) until invocation `id` is `status`, and returns it.
    pub async fn invocation_settled(&self, id: &str, status: &str, limit: Duration) -> Value {
        eventually(limit, &format!("{id} {status}"), || async {
            let found = self.invocation(id).await;
            (found["status"] != status).then(|| found.to_string())
        })
        .await;
        self.invocation(id).await
    }

    pub async fn start(data_dir: &Path) -> TestHost {
        Self::start_with(data_dir, &[]).await
    }

    pub async fn start_with(data_dir: &Path, extra: &[&str]) -> TestHost {
        Self::start_with_env(data_dir, extra, &[]).await
    }

    /// Starts with extra flags and environment variables.
    pub async fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> TestHost {
        let data_dir = data_dir.to_path_buf();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tokio::task::spawn_blocking(move || Self::spawn(data_dir, extra, env, None))
            .await
            .unwrap()
    }

    /// SIGTERM, an (asynchronous) wait for a clean exit, and a start on the same data
    /// directory, flags and addresses: a node of a rolling restart.
    pub async fn restart(mut self) -> TestHost {
        self.send_sigterm();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "fnhost ignored SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.success(), "{status}: {}", self.log());
        let ports = (
            self.data_url.trim_start_matches("http://").to_string(),
            self.admin_url.trim_start_matches("http://").to_string(),
        );
        let (data_dir, extra, env) = (self.data_dir.clone(), self.extra.clone(), self.env.clone());
        tokio::task::spawn_blocking(move || Self::spawn(data_dir, extra, env, Some(ports)))
            .await
            .unwrap()
    }

    fn spawn(
        data_dir: PathBuf,
        extra: Vec<String>,
        env: Vec<(String, String)>,
        ports: Option<(String, String)>,
    ) -> TestHost {
        std::fs::create_dir_all(&data_dir).unwrap();
        let log_path = data_dir.with_extension("log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut command = match &ports {
            Some((data, admin)) => serve_command_on(&data_dir, data, admin),
            None => serve_command(&data_dir),
        };
        if !extra.iter().any(|a| a == "--pool-instances") {
            // Small pools keep many parallel test hosts' address space reservations modest.
            command.args(["--pool-instances", "64"]);
        }
        // A test may lower the host's file-descriptor limit (soft and hard) to see it cope.
        #[cfg(unix)]
        if let Some(limit) = env
            .iter()
            .find(|(k, _)| k == "FNHOST_TEST_NOFILE")
            .map(|(_, v)| v.parse::<u64>().unwrap())
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let rlimit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command
            .args(&extra)
            .envs(env.iter().cloned())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting fnhost");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (mut data_url, mut admin_url) = (None, None);
        let started = Instant::now();
        while data_url.is_none() || admin_url.is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "fnhost did not start"
            );
            let Some(Ok(line)) = lines.next() else {
                panic!(
                    "fnhost exited before listening:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            };
            let url = |l: &str| l.split_whitespace().nth(2).map(str::to_string);
            if line.trim_start().starts_with("data plane:") {
                data_url = url(&line);
            } else if line.trim_start().starts_with("admin plane:") {
                admin_url = url(&line);
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let token = std::fs::read_to_string(data_dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        TestHost {
            child,
            extra,
            env,
            data_dir,
            data_url: data_url.unwrap(),
            admin_url: admin_url.unwrap(),
            token,
            http: reqwest::Client::new(),
            log_path,
        }
    }

    /// An authenticated admin request.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.admin_url))
            .bearer_auth(&self.token)
    }

    /// Runs the `fnhost` CLI against this host (admin token from its data directory).
    pub fn fnhost(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_fnhost"))
            .args(args)
            .env("FNHOST_ADMIN_URL", &self.admin_url)
            .env("FNHOST_URL", &self.data_url)
            .env("FNHOST_DATA_DIR", &self.data_dir)
            .output()
            .unwrap()
    }

    /// Uploads `wasm` as `name`'s $LATEST with `query` config; returns the raw response.
    pub async fn upload(&self, name: &str, wasm: Vec<u8>, query: &str) -> Response {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        self.admin(Method::PUT, &format!("/v1/functions/{name}/code{q}"))
            .body(wasm)
            .send()
            .await
            .unwrap()
    }

    /// Uploads and asserts success.
    pub async fn deploy(&self, name: &str, function: &str, query: &str) -> Value {
        let response = self.upload(name, wasm(function), query).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "deploy {name}: {body}");
        body
    }

    /// Deploys `functions/hostile` as `name` with `config` (a JSON config patch).
    pub async fn deploy_hostile(&self, name: &str, config: serde_json::Value) -> Value {
        let query = format!("config={}", urlencode(&config.to_string()));
        self.deploy(name, "hostile", &query).await
    }

    /// Publishes and returns (status, body).
    pub async fn publish(&self, name: &str) -> (u16, Value) {
        let response = self
            .admin(Method::POST, &format!("/v1/functions/{name}/versions"))
            .json(&serde_json::json!({ "description": "test" }))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let response = self.admin(Method::GET, "/metrics").send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// The sum of the `/metrics` samples of `name` whose labels include `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.metrics().await;
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("valid Prometheus text");
        sample_sum(&scrape, name, labels)
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.admin(Method::GET, path).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// GET on the data plane.
    pub async fn call(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.data_url))
            .send()
            .await
            .unwrap()
    }

    /// GET on the data plane, returning status, `fnhost-version` and body text.
    pub async fn call_text(&self, path: &str) -> (u16, String, String) {
        let response = self.call(path).await;
        let status = response.status().as_u16();
        let version = response
            .headers()
            .get("fnhost-version")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, version, response.text().await.unwrap())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush or clean up, like a crash or an OOM kill.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for the process to exit; returns whether it exited cleanly.
    pub fn terminate(mut self) -> bool {
        self.send_sigterm();
        self.terminate_wait()
    }

    /// Waits for an exit after SIGTERM was sent; returns whether it exited cleanly.
    pub fn terminate_wait(&mut self) -> bool {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "fnhost ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn send_sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 50 ms for up to `limit`; panics with `what` when it never holds.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let started = Instant::now();
    loop {
        let failure = match check().await {
            None => return,
            Some(failure) => failure,
        };
        if started.elapsed() > limit {
            panic!("{what} did not happen within {limit:?}: {failure}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `command` with `input` on its stdin; its output (stdout and stderr captured).
pub fn run_with_stdin(command: &mut Command, input: &[u8]) -> std::process::Output {
    use std::io::Write as _;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// The outside tool `scripts/install-tools` provides through `variable`. A test that needs
/// it fails without it (a skipped test looks like a passing one), unless
/// `FNHOST_SKIP_TOOL_TESTS=1` says, loudly, that this run does without `what`.
pub fn tool(variable: &str, what: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Some(PathBuf::from(path));
    }
    if std::env::var_os("FNHOST_SKIP_TOOL_TESTS").is_some_and(|v| v == "1") {
        eprintln!("SKIPPED (FNHOST_SKIP_TOOL_TESTS=1): {what} are not tested in this run");
        return None;
    }
    panic!(
        "{variable} is not set, so {what} cannot be tested: run the tests with scripts/test \
         (which installs the tool), or set FNHOST_SKIP_TOOL_TESTS=1 to skip them knowingly"
    )
}

/// Resident memory of process `pid`, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

/// `text` encoded for a URL query value.
pub fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The sum of the samples of `name` whose labels include `labels`.
pub fn sample_sum(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}
