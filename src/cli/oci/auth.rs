//! Registry credentials and challenges: where a username and password come from (flags, then
//! the Docker client's `config.json` and its credential helpers), and what a `401`'s
//! `WWW-Authenticate` asks for (Basic, or a Bearer token from the registry's token service,
//! the Docker registry token flow).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use base64::Engine as _;
use serde::Deserialize;

/// A username and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

impl Credentials {
    pub fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// What a `401` asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    /// Get a token from `realm` (with `service` and `scope` as query parameters).
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value: a scheme, then `key="value"` pairs whose quoted values
/// may hold commas (`scope="repository:a:pull,push"`).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

fn parse_params(text: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if chars.next().is_none() {
            return params;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
}

/// The Docker client's config: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn docker_config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// `registry`'s credentials from the Docker config, if it has any: a helper named for the
/// registry (`credHelpers`), else the entry in `auths`, else the default `credsStore`.
pub fn from_docker_config(registry: &str) -> anyhow::Result<Option<Credentials>> {
    let Some(path) = docker_config_path() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let config: DockerConfig = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a Docker client config", path.display()))?;
    lookup(&config, registry, &path.display().to_string())
}

fn lookup(
    config: &DockerConfig,
    registry: &str,
    path: &str,
) -> anyhow::Result<Option<Credentials>> {
    if let Some(helper) = config.cred_helpers.get(registry) {
        return run_helper(helper, registry).map(Some);
    }
    let entry = config
        .auths
        .iter()
        .find(|(key, _)| normalize_key(key) == registry)
        .map(|(_, entry)| entry);
    if let Some(entry) = entry {
        if let Some(auth) = &entry.auth {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .with_context(|| format!("the auth of {registry} in {path} is not base64"))?;
            let (username, password) = decoded.split_once(':').with_context(|| {
                format!("the auth of {registry} in {path} is not USER:PASSWORD")
            })?;
            return Ok(Some(Credentials {
                username: username.to_string(),
                password: password.to_string(),
            }));
        }
        if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            }));
        }
        if entry.identitytoken.is_some() {
            anyhow::bail!(
                "{path} holds an identity token for {registry}, which fnhost cannot use; \
                 pass --registry-username and --registry-password instead"
            );
        }
    }
    match &config.creds_store {
        Some(store) => run_helper(store, registry).map(Some),
        None => Ok(None),
    }
}

/// `auths` keys are written as `host`, `host:port` or `https://host/v1/`.
fn normalize_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// Asks `docker-credential-HELPER get` (the Docker credential helper protocol).
fn run_helper(helper: &str, registry: &str) -> anyhow::Result<Credentials> {
    use std::io::Write as _;
    let program = format!("docker-credential-{helper}");
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "the Docker config names the credential helper {program} for {registry}, \
                 which could not be run"
            )
        })?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(registry.as_bytes())?;
    let output = child.wait_with_output()?;
    anyhow::ensure!(
        output.status.success(),
        "{program} has no credentials for {registry}: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        username: String,
        secret: String,
    }
    let answer: Answer = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("{program} answered something other than credentials"))?;
    Ok(Credentials {
        username: answer.username,
        password: answer.secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_commas_inside_quotes() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:acme/cart:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scope: Some("repository:acme/cart:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge("bearer realm=https://a/token"),
            Some(Challenge::Bearer {
                realm: "https://a/token".into(),
                service: None,
                scope: None,
            })
        );
        assert_eq!(parse_challenge("Bearer service=\"x\""), None, "no realm");
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn docker_config_entries_are_found_by_registry() {
        let config: DockerConfig = serde_json::from_str(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                "127.0.0.1:5000": {"username": "ci", "password": "pw"},
                "tokens.example.com": {"identitytoken": "x"}
            }}"#,
        )
        .unwrap();
        let hub = lookup(&config, "index.docker.io", "config.json").unwrap();
        assert_eq!(
            hub,
            Some(Credentials {
                username: "hub".into(),
                password: "secret".into()
            })
        );
        let local = lookup(&config, "127.0.0.1:5000", "config.json")
            .unwrap()
            .unwrap();
        assert_eq!(local.username, "ci");
        assert_eq!(lookup(&config, "ghcr.io", "config.json").unwrap(), None);
        let e = lookup(&config, "tokens.example.com", "config.json").unwrap_err();
        assert!(e.to_string().contains("identity token"), "{e}");
        assert_eq!(
            format!("{local:?}"),
            "Credentials(ci, ***)",
            "never printed"
        );
    }
}
