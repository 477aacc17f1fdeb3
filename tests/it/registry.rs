//! Components in OCI registries, on a real one: Debian's `docker-registry` (distribution
//! 2.8) on a loopback port, anonymous, behind basic auth, or behind token auth (the Docker
//! registry token flow, with a token service here that signs what the registry verifies). `fnhost push` and a third-party
//! client (oras-py, from PyPI) push; `fnhost deploy oci://...` and `apply` pull, check the
//! digests and keep the pinned reference with the version.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{TestHost, wasm_path};

/// A `docker-registry serve` of the test's own, stopped when dropped.
struct Registry {
    child: Child,
    port: u16,
    root: PathBuf,
}

/// How the registry authenticates clients.
enum Auth<'a> {
    Anonymous,
    /// htpasswd: `user` with `password`.
    Basic(&'a str, &'a str),
    /// Bearer tokens from `realm`, signed by the key of the certificate `cert`.
    Token {
        realm: String,
        cert: PathBuf,
    },
}

impl Registry {
    fn start(dir: &Path, auth: Auth<'_>) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let root = dir.join("registry");
        std::fs::create_dir_all(&root).unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            root.display()
        );
        match auth {
            Auth::Anonymous => {}
            Auth::Basic(user, password) => {
                let hash = bcrypt::hash(password, 4).unwrap();
                let htpasswd = dir.join("htpasswd");
                std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: fnhost-test\n    path: {}\n",
                    htpasswd.display()
                ));
            }
            Auth::Token { realm, cert } => config.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    \
                 issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                cert.display()
            )),
        }
        let config_path = dir.join("registry.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is not installed: run scripts/install-packages");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "docker-registry did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Registry { child, port, root }
    }

    fn reference(&self, repo: &str) -> String {
        format!("oci://127.0.0.1:{}/{repo}", self.port)
    }

    /// Where the registry keeps the blob `digest` (`sha256:...`) on disk.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.root
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the CLI against `host` with `env`; (success, stdout, stderr).
fn cli(host: &TestHost, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fnhost"));
    command
        .args(args)
        .env("FNHOST_ADMIN_URL", &host.admin_url)
        .env("FNHOST_DATA_DIR", &host.data_dir)
        // Never the credentials of whoever runs the tests.
        .env("DOCKER_CONFIG", host.data_dir.join("no-docker-config"))
        .env_remove("FNHOST_REGISTRY_USERNAME")
        .env_remove("FNHOST_REGISTRY_PASSWORD");
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn push(host: &TestHost, function: &str, reference: &str, env: &[(&str, &str)]) -> Value {
    let file = wasm_path(function);
    let (ok, out, err) = cli(
        host,
        &["push", file.to_str().unwrap(), reference, "--json"],
        env,
    );
    assert!(ok, "push failed: {err}");
    serde_json::from_str(&out).unwrap()
}

/// Asserts the CLI failed saying `expected`, and that `function` was not deployed.
async fn refused(host: &TestHost, args: &[&str], function: &str, expected: &str) -> String {
    let (ok, _, err) = cli(host, args, &[]);
    assert!(!ok, "{args:?} succeeded");
    assert!(err.contains(expected), "{args:?}: {err}");
    let (status, _) = host.get_json(&format!("/v1/functions/{function}")).await;
    assert_eq!(status, 404, "{function} was deployed anyway");
    err
}

/// Push, deploy by tag, pinned by digest: the version keeps the reference pinned to the
/// manifest's digest; moving the tag later changes nothing deployed; a pinned deploy gets
/// exactly what was pushed; `apply` with `component = "oci://..."` plans by digest (a second
/// apply changes nothing); `export` writes the pinned reference back.
#[tokio::test]
async fn components_are_pushed_deployed_and_pinned_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path(), Auth::Anonymous);
    let host = TestHost::start(&dir.path().join("data")).await;
    let tag = format!("{}:v1", registry.reference("shop/hello"));
    let pushed = push(&host, "hello", &tag, &[("SOURCE_DATE_EPOCH", "1700000000")]);
    let pinned = pushed["reference"].as_str().unwrap().to_string();
    assert_eq!(
        pinned,
        format!("{tag}@{}", pushed["manifest_digest"].as_str().unwrap())
    );
    let file_digest = format!(
        "sha256:{}",
        sha_hex(&std::fs::read(wasm_path("hello")).unwrap())
    );
    assert_eq!(pushed["digest"], file_digest.as_str());
    // Reproducible: the same file and time make the same artifact.
    let again = push(&host, "hello", &tag, &[("SOURCE_DATE_EPOCH", "1700000000")]);
    assert_eq!(again["reference"], pinned.as_str());

    let (ok, _, err) = cli(&host, &["deploy", "hello", &tag, "--publish"], &[]);
    assert!(ok, "{err}");
    let (code, _, body) = host.call_text("/hello").await;
    assert_eq!((code, body.as_str()), (200, "Hello, world!\n"));
    let (_, versions) = host.get_json("/v1/functions/hello/versions").await;
    let v1 = &versions["versions"][0];
    assert_eq!(v1["source"], pinned.as_str(), "{versions}");
    assert_eq!(v1["digest"], file_digest.as_str());
    let (_, table, _) = cli(&host, &["versions", "hello"], &[]);
    assert!(
        table.contains("SOURCE") && table.contains(":v1@sha256:"),
        "{table}"
    );

    // The tag moves to other code: what is deployed stays; a pinned deploy gets what it pins.
    let moved = push(&host, "echo", &tag, &[]);
    assert_ne!(moved["reference"], pinned.as_str());
    let (ok, _, err) = cli(&host, &["deploy", "other", &pinned], &[]);
    assert!(ok, "{err}");
    let (_, other) = host.get_json("/v1/functions/other").await;
    assert_eq!(other["latest"]["digest"], file_digest.as_str(), "{other}");
    assert_eq!(other["latest"]["source"], pinned.as_str());

    // A manifest naming the tag: applied once, then nothing to do.
    let manifest = dir.path().join("fnhost.toml");
    std::fs::write(
        &manifest,
        format!("[functions.echoer]\ncomponent = \"{tag}\"\n"),
    )
    .unwrap();
    let manifest = manifest.to_str().unwrap();
    let (ok, out, err) = cli(&host, &["apply", "-f", manifest], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("echoer"), "{out}");
    let (_, echoer) = host.get_json("/v1/functions/echoer").await;
    assert_eq!(echoer["latest"]["source"], moved["reference"], "{echoer}");
    assert_eq!(echoer["latest"]["digest"], moved["digest"]);
    let (ok, out, err) = cli(&host, &["apply", "-f", manifest], &[]);
    assert!(ok, "{err}");
    assert!(
        out.contains("no changes"),
        "the second apply changes nothing: {out}"
    );

    let exported = dir.path().join("exported.toml");
    let (ok, _, err) = cli(&host, &["export", "-o", exported.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&exported).unwrap();
    assert!(
        text.contains(&format!("component = \"{pinned}\"")),
        "a pulled function is exported as its pinned reference:\n{text}"
    );
}

/// Interoperability with a third-party client: an artifact oras pushes (its own manifest
/// and config types, the `application/wasm` layer) deploys; one fnhost pushed pulls with
/// oras byte for byte; an artifact whose layer is not wasm is refused, naming what it is.
#[tokio::test]
async fn artifacts_of_other_clients_deploy_and_ours_pull_with_them() {
    let Some(python) = crate::common::tool("FNHOST_PYTHON", "OCI artifacts of oras") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path(), Auth::Anonymous);
    let host = TestHost::start(&dir.path().join("data")).await;
    let wasm_dir = wasm_path("echo").parent().unwrap().to_path_buf();
    let address = format!("127.0.0.1:{}", registry.port);
    let oras = |script: &str| {
        let out = Command::new(&python)
            .arg("-c")
            .arg(format!(
                "import oras.client\nc = oras.client.OrasClient(hostname='{address}', insecure=True)\n{script}"
            ))
            .current_dir(&wasm_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "oras: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    oras(&format!(
        "c.push(target='{address}/tools/echo:v1', files=['echo.wasm:application/wasm'])"
    ));
    let (ok, _, err) = cli(
        &host,
        &[
            "deploy",
            "echo",
            &format!("{}:v1", registry.reference("tools/echo")),
        ],
        &[],
    );
    assert!(ok, "{err}");
    let answer = host
        .http
        .post(format!("{}/echo", host.data_url))
        .body("from oras")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.text().await.unwrap(), "from oras");

    // Ours, read by oras.
    let pushed = push(
        &host,
        "hello",
        &format!("{}:v1", registry.reference("tools/hello")),
        &[],
    );
    let out = dir.path().join("pulled");
    oras(&format!(
        "c.pull(target='{address}/tools/hello:v1', outdir='{}')",
        out.display()
    ));
    assert_eq!(
        std::fs::read(out.join("hello.wasm")).unwrap(),
        std::fs::read(wasm_path("hello")).unwrap()
    );
    assert!(
        pushed["manifest_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    // A layer of another type: refused, nothing deployed.
    oras(&format!(
        "c.push(target='{address}/tools/tarball:v1', files=['echo.wasm:application/vnd.oci.image.layer.v1.tar'])"
    ));
    refused(
        &host,
        &[
            "deploy",
            "tarball",
            &format!("{}:v1", registry.reference("tools/tarball")),
        ],
        "tarball",
        "is not a wasm component artifact",
    )
    .await;
}

/// Basic auth: without credentials the error says how to give them, wrong ones are refused
/// by name, and both the flags and the Docker client's `config.json` work.
#[tokio::test]
async fn a_registry_behind_basic_auth_takes_flags_or_the_docker_config() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path(), Auth::Basic("ci", "s3cret"));
    let host = TestHost::start(&dir.path().join("data")).await;
    let tag = format!("{}:v1", registry.reference("private/hello"));
    let file = wasm_path("hello");
    let file = file.to_str().unwrap();

    let (ok, _, err) = cli(&host, &["push", file, &tag], &[]);
    assert!(!ok);
    assert!(
        err.contains("needs credentials") && err.contains("--registry-username"),
        "{err}"
    );
    let (ok, _, err) = cli(
        &host,
        &[
            "push",
            file,
            &tag,
            "--registry-username",
            "ci",
            "--registry-password",
            "wrong",
        ],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("refused the credentials of ci"), "{err}");
    let (ok, _, err) = cli(
        &host,
        &["push", file, &tag],
        &[
            ("FNHOST_REGISTRY_USERNAME", "ci"),
            ("FNHOST_REGISTRY_PASSWORD", "s3cret"),
        ],
    );
    assert!(ok, "{err}");

    refused(
        &host,
        &["deploy", "hello", &tag],
        "hello",
        "needs credentials",
    )
    .await;
    let docker = dir.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths": {{"127.0.0.1:{}": {{"auth": "{}"}}}}}}"#,
            registry.port,
            base64_of("ci:s3cret")
        ),
    )
    .unwrap();
    let (ok, _, err) = cli(
        &host,
        &["deploy", "hello", &tag],
        &[("DOCKER_CONFIG", docker.to_str().unwrap())],
    );
    assert!(ok, "{err}");
    let (code, _, body) = host.call_text("/hello").await;
    assert_eq!((code, body.as_str()), (200, "Hello, world!\n"));
}

/// Bad input, each a clear error with nothing deployed: a missing tag, a digest the
/// registry does not have, bytes that do not match the manifest's digest (the registry's
/// storage tampered with), and a registry that accepts connections but never answers.
#[tokio::test]
async fn bad_references_and_bad_registries_deploy_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path(), Auth::Anonymous);
    let host = TestHost::start(&dir.path().join("data")).await;
    let repo = registry.reference("shop/cart");
    let pushed = push(&host, "hello", &format!("{repo}:v1"), &[]);

    refused(
        &host,
        &["deploy", "cart", &format!("{repo}:v9")],
        "cart",
        "has no tag \"v9\"",
    )
    .await;
    let unknown = format!("{repo}@sha256:{}", "0".repeat(64));
    refused(
        &host,
        &["deploy", "cart", &unknown],
        "cart",
        "has no manifest with digest",
    )
    .await;
    refused(
        &host,
        &["deploy", "cart", "oci://127.0.0.1/Cart:v1"],
        "cart",
        "lowercase",
    )
    .await;

    // The registry's copy of the component altered on its disk: same size, other bytes.
    let blob = registry.blob_file(pushed["digest"].as_str().unwrap());
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let err = refused(
        &host,
        &["deploy", "cart", pushed["reference"].as_str().unwrap()],
        "cart",
        "nothing was deployed",
    )
    .await;
    assert!(err.contains("not the sha256:"), "{err}");

    // Accepts, never answers.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    let started = Instant::now();
    refused(
        &host,
        &[
            "deploy",
            "cart",
            &format!("oci://127.0.0.1:{hung_port}/shop/cart:v1"),
            "--registry-timeout",
            "1s",
        ],
        "cart",
        "did not answer within 1s",
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(hung);
}

/// The token flow: the registry answers `401 Bearer realm=...,scope=...`; fnhost asks the
/// token service with the credentials for that scope and retries with the token. Without
/// credentials the token service refuses, and the error says how to give them.
#[tokio::test]
async fn a_registry_with_token_auth_is_answered_with_its_token_service() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = TokenService::start(dir.path(), "ci", "t0ken");
    let registry = Registry::start(
        dir.path(),
        Auth::Token {
            realm: format!("http://127.0.0.1:{}/token", tokens.port),
            cert: tokens.cert.clone(),
        },
    );
    let host = TestHost::start(&dir.path().join("data")).await;
    let tag = format!("{}:v1", registry.reference("team/hello"));
    let creds = [
        ("FNHOST_REGISTRY_USERNAME", "ci"),
        ("FNHOST_REGISTRY_PASSWORD", "t0ken"),
    ];
    let file = wasm_path("hello");
    let (ok, _, err) = cli(&host, &["push", file.to_str().unwrap(), &tag], &[]);
    assert!(!ok);
    assert!(err.contains("needs credentials"), "{err}");
    let pushed = push(&host, "hello", &tag, &creds);
    let (ok, _, err) = cli(&host, &["deploy", "hello", &tag], &creds);
    assert!(ok, "{err}");
    let (code, _, body) = host.call_text("/hello").await;
    assert_eq!((code, body.as_str()), (200, "Hello, world!\n"));
    let (_, function) = host.get_json("/v1/functions/hello").await;
    assert_eq!(function["latest"]["source"], pushed["reference"]);
    let scopes = tokens.scopes.lock().unwrap().clone();
    assert!(
        scopes
            .iter()
            .any(|s| s == "repository:team/hello:pull,push"),
        "push asked for a push token: {scopes:?}"
    );
    assert!(
        scopes.iter().any(|s| s == "repository:team/hello:pull"),
        "deploy asked for a pull token: {scopes:?}"
    );
}

const TOKEN_SERVICE: &str = "fnhost-test-registry";
const TOKEN_ISSUER: &str = "fnhost-test-issuer";

/// A registry token service (what Docker Hub's auth.docker.io or Harbor's core does): checks
/// Basic credentials and answers a JWT, signed RS256 with a key whose certificate the
/// registry trusts, granting the scope asked for. Signing is openssl's.
struct TokenService {
    port: u16,
    cert: PathBuf,
    /// Every scope a token was issued for.
    scopes: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl TokenService {
    fn start(dir: &Path, user: &str, password: &str) -> TokenService {
        let key = dir.join("token-key.pem");
        let cert = dir.join("token-cert.pem");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            key.to_str().unwrap(),
        ]);
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            key.to_str().unwrap(),
            "-subj",
            "/CN=fnhost-test-token",
            "-days",
            "2",
            "-out",
            cert.to_str().unwrap(),
        ]);
        let der = openssl(&["x509", "-in", cert.to_str().unwrap(), "-outform", "DER"]);
        let x5c = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let scopes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let expected = format!("Basic {}", base64_of(&format!("{user}:{password}")));
        let (seen, stopped) = (scopes.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let head = read_head(&mut stream);
                let authorized = head.lines().any(|l| {
                    l.to_ascii_lowercase().starts_with("authorization:")
                        && l[14..].trim() == expected
                });
                let answer = if authorized {
                    let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let url = url::Url::parse(&format!("http://x{target}")).unwrap();
                    let scope = url
                        .query_pairs()
                        .find(|(k, _)| k == "scope")
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default();
                    seen.lock().unwrap().push(scope.clone());
                    let token = sign_token(&key, &x5c, &scope);
                    let body = format!("{{\"token\": \"{token}\", \"expires_in\": 300}}");
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                };
                use std::io::Write as _;
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        TokenService {
            port,
            cert,
            scopes,
            stop,
        }
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn read_head(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read as _;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A JWT granting `scope` (`repository:NAME:ACTIONS`), signed RS256 by `key`, its
/// certificate in `x5c` so the registry can check it against its root bundle.
fn sign_token(key: &Path, x5c: &str, scope: &str) -> String {
    use base64::Engine as _;
    let url = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let mut parts = scope.splitn(3, ':');
    let (kind, name, actions) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER, "sub": "ci", "aud": TOKEN_SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{name}"),
        "access": [{"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}],
    });
    let signed = format!(
        "{}.{}",
        url(header.to_string().as_bytes()),
        url(claims.to_string().as_bytes())
    );
    let signature = crate::common::run_with_stdin(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(key),
        signed.as_bytes(),
    )
    .stdout;
    format!("{signed}.{}", url(&signature))
}

fn sha_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
