//! Functions, their `$LATEST` code and config, and published versions.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Digest;

/// Default linear-memory limit per instance, as SCF and Lambda default to 128 MB.
pub const DEFAULT_MEMORY_MB: u32 = 128;
/// Default wall-clock limit per request.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Upper bounds keep a typo (`--timeout 3000s`) from becoming a stuck instance.
pub const MAX_MEMORY_MB: u32 = 4096;
pub const MAX_TIMEOUT_MS: u64 = 15 * 60 * 1000;
/// Total size of a function's environment (names + values), like Lambda's 4 KB but roomier.
pub const MAX_ENV_BYTES: usize = 64 * 1024;
/// Default concurrent requests per function; more wait briefly in a bounded queue, then 503.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 100;
pub const MAX_MAX_CONCURRENCY: u32 = 10_000;
/// Default request and response body limits (Lambda allows 6 MB; we allow more).
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 16 << 20;
pub const DEFAULT_MAX_RESPONSE_BODY: u64 = 64 << 20;
pub const MAX_BODY_LIMIT: u64 = 1 << 30;

/// Most warm instances one function or version may have provisioned.
pub const MAX_PROVISIONED: u32 = 1000;

/// Provisioned concurrency: instances kept warm whatever the traffic, as SCF and Lambda offer.
/// A scaling setting, not part of the code's behaviour, so it can change on published
/// versions (unlike [`FunctionConfig`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingPolicy {
    /// Warm instances for the function's `$DEFAULT` traffic, split over the versions it
    /// routes to by weight.
    #[serde(default)]
    pub provisioned: u32,
    /// Per-version counts (`latest` or a number) that replace the version's share.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<String, u32>,
}

impl ScalingPolicy {
    /// Sets the function's count (`version` None) or one version's (0 removes it).
    pub fn set(&mut self, version: Option<VersionLabel>, count: u32) {
        match version {
            None => self.provisioned = count,
            Some(label) if count == 0 => {
                self.versions.remove(&label.to_string());
            }
            Some(label) => {
                self.versions.insert(label.to_string(), count);
            }
        }
    }

    /// Instances provisioned in all: the function's count plus every version's.
    pub fn total(&self) -> u64 {
        u64::from(self.provisioned) + self.versions.values().map(|&n| u64::from(n)).sum::<u64>()
    }
}

/// The WASI world a component serves HTTP in, found from its handler export at upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HttpWorld {
    /// WASI 0.2 `wasi:http/proxy`: exports `wasi:http/incoming-handler@0.2.x`.
    Proxy,
    /// WASI 0.3 `wasi:http/service`: exports `wasi:http/handler@0.3.x` (async, streams and
    /// futures in the component model).
    Service,
}

impl HttpWorld {
    pub const ALL: [HttpWorld; 2] = [HttpWorld::Proxy, HttpWorld::Service];
}

impl fmt::Display for HttpWorld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Proxy => "wasi:http/proxy (WASI 0.2)",
            Self::Service => "wasi:http/service (WASI 0.3)",
        })
    }
}

/// Configuration that travels with code into every published version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionConfig {
    /// Environment variables the function sees; the host's own environment is never passed.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Maximum linear memory per instance, in MiB.
    #[serde(default = "default_memory")]
    pub memory_mb: u32,
    /// Wall-clock limit per request, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// CPU time a request may spend running wasm, in milliseconds (measured in 1 ms epoch
    /// ticks); 0 means no budget beyond the timeout.
    #[serde(default)]
    pub cpu_budget_ms: u64,
    /// Origins (`scheme://host[:port]`) the function may call with outbound HTTP; empty
    /// denies all outbound requests.
    #[serde(default)]
    pub allow_outbound: Vec<String>,
    /// Requests served at once; more wait in a bounded queue, then get 503.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: u32,
    /// Largest request body the function accepts; bigger ones get 413.
    #[serde(default = "default_max_request_body")]
    pub max_request_body_bytes: u64,
    /// Largest response body the function may send; past it the response is cut off.
    #[serde(default = "default_max_response_body")]
    pub max_response_body_bytes: u64,
    /// Key-value stores of its namespace the function may open (`wasi:keyvalue`); none by
    /// default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv: Vec<String>,
    /// Runtime configuration the function reads through `wasi:config/store`; like `env`,
    /// part of `$LATEST` and frozen into versions, changeable without a new upload.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// The function's secrets it reads through `wasi:config`, by name (the values are set
    /// apart with `fnhost secret set`, rotate without a new version, and are never shown).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// The function's secrets it reads as environment variables of the same name. Set per
    /// request, so a rotated value reaches the next request even on a warm instance (a
    /// guest that reads its environment while being instantiated sees `env` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    /// How asynchronous invocations of the function run: retries, their backoff, the
    /// lane's concurrency, and where results go.
    #[serde(
        default,
        rename = "async",
        skip_serializing_if = "super::AsyncPolicy::is_default"
    )]
    pub async_policy: super::AsyncPolicy,
    /// Instance reuse, opted into per function (WASI 0.3 versions only): up to this many
    /// requests share one instance, so its memory (globals, caches) persists between them;
    /// never across versions or functions. 0, the default, gives every request a fresh
    /// instance.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reuse_requests: u32,
    /// With reuse: requests one instance serves at once (WASI 0.3 handlers are async).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub concurrency_per_instance: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// Most requests one reused instance may serve, and at once.
pub const MAX_REUSE_REQUESTS: u32 = 1_000_000;
pub const MAX_CONCURRENCY_PER_INSTANCE: u32 = 1_000;

impl FunctionConfig {
    /// Whether instances of this config's WASI 0.3 versions serve more than one request.
    pub fn reuses_instances(&self) -> bool {
        self.reuse_requests > 1
    }
}

fn default_memory() -> u32 {
    DEFAULT_MEMORY_MB
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn default_max_concurrency() -> u32 {
    DEFAULT_MAX_CONCURRENCY
}

fn default_max_request_body() -> u64 {
    DEFAULT_MAX_REQUEST_BODY
}

fn default_max_response_body() -> u64 {
    DEFAULT_MAX_RESPONSE_BODY
}

impl Default for FunctionConfig {
    fn default() -> Self {
        Self {
            env: BTreeMap::new(),
            memory_mb: DEFAULT_MEMORY_MB,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            cpu_budget_ms: 0,
            allow_outbound: Vec::new(),
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY,
            max_response_body_bytes: DEFAULT_MAX_RESPONSE_BODY,
            kv: Vec::new(),
            config: BTreeMap::new(),
            secrets: Vec::new(),
            secret_env: Vec::new(),
            async_policy: super::AsyncPolicy::default(),
            reuse_requests: 0,
            concurrency_per_instance: 1,
        }
    }
}

/// A partial config change: fields left `None` keep their current value; `env`, when given,
/// replaces the whole environment so a variable can be removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_budget_ms: Option<u64>,
    /// When given, replaces the whole allowlist (an empty list denies all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_outbound: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_body_bytes: Option<u64>,
    /// When given, replaces the list of key-value stores the function may open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<Vec<String>>,
    /// When given, replaces the whole `wasi:config` map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
    /// When given, replaces the list of secrets the function reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<String>>,
    /// When given, replaces the list of secrets the function reads as environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<Vec<String>>,
    /// Changes to the async policy, field by field.
    #[serde(
        default,
        rename = "async",
        skip_serializing_if = "super::AsyncPatch::is_empty"
    )]
    pub async_policy: super::AsyncPatch,
    /// Requests one instance may serve (0 or 1: a fresh instance per request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_per_instance: Option<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid config: {0}")]
pub struct InvalidConfig(pub String);

impl ConfigPatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Applies the patch to `base` and checks the result, so no invalid config is ever stored.
    pub fn apply(&self, base: &FunctionConfig) -> Result<FunctionConfig, InvalidConfig> {
        let mut config = base.clone();
        if let Some(env) = &self.env {
            config.env = env.clone();
        }
        if let Some(memory) = self.memory_mb {
            config.memory_mb = memory;
        }
        if let Some(timeout) = self.timeout_ms {
            config.timeout_ms = timeout;
        }
        if let Some(budget) = self.cpu_budget_ms {
            config.cpu_budget_ms = budget;
        }
        if let Some(origins) = &self.allow_outbound {
            config.allow_outbound = origins
                .iter()
                .map(|o| normalize_origin(o))
                .collect::<Result<_, _>>()?;
        }
        if let Some(n) = self.max_concurrency {
            config.max_concurrency = n;
        }
        if let Some(n) = self.max_request_body_bytes {
            config.max_request_body_bytes = n;
        }
        if let Some(n) = self.max_response_body_bytes {
            config.max_response_body_bytes = n;
        }
        if let Some(values) = &self.config {
            config.config = values.clone();
        }
        if let Some(names) = &self.secrets {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            config.secrets = names;
        }
        if let Some(names) = &self.secret_env {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            config.secret_env = names;
        }
        if let Some(stores) = &self.kv {
            let mut stores = stores.clone();
            stores.sort();
            stores.dedup();
            config.kv = stores;
        }
        config.async_policy = self.async_policy.apply(&config.async_policy)?;
        if let Some(n) = self.reuse_requests {
            config.reuse_requests = n;
        }
        if let Some(n) = self.concurrency_per_instance {
            config.concurrency_per_instance = n;
        }
        config.validate()?;
        Ok(config)
    }
}

impl FunctionConfig {
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let bad = |msg: String| Err(InvalidConfig(msg));
        self.async_policy.validate(None)?;
        if self.memory_mb == 0 || self.memory_mb > MAX_MEMORY_MB {
            return bad(format!(
                "memory limit {} MiB is out of range; use 1 to {MAX_MEMORY_MB} MiB",
                self.memory_mb
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return bad(format!(
                "timeout {} ms is out of range; use 1 ms to {} s",
                self.timeout_ms,
                MAX_TIMEOUT_MS / 1000
            ));
        }
        if self.max_concurrency == 0 || self.max_concurrency > MAX_MAX_CONCURRENCY {
            return bad(format!(
                "max concurrency {} is out of range; use 1 to {MAX_MAX_CONCURRENCY}",
                self.max_concurrency
            ));
        }
        for (what, value) in [
            ("max request body", self.max_request_body_bytes),
            ("max response body", self.max_response_body_bytes),
        ] {
            if value == 0 || value > MAX_BODY_LIMIT {
                return bad(format!(
                    "{what} {value} bytes is out of range; use 1 byte to 1 GiB"
                ));
            }
        }
        if self.reuse_requests > MAX_REUSE_REQUESTS {
            return bad(format!(
                "instance reuse of {} requests is out of range; use 0 (a fresh instance per \
                 request) to {MAX_REUSE_REQUESTS}",
                self.reuse_requests
            ));
        }
        if self.concurrency_per_instance == 0
            || self.concurrency_per_instance > MAX_CONCURRENCY_PER_INSTANCE
        {
            return bad(format!(
                "concurrency per instance {} is out of range; use 1 to \
                 {MAX_CONCURRENCY_PER_INSTANCE}",
                self.concurrency_per_instance
            ));
        }
        if self.concurrency_per_instance > 1 && self.reuse_requests < 2 {
            return bad(format!(
                "concurrency per instance {} needs instance reuse: an instance serving one \
                 request serves it alone; set --reuse to at least {0}",
                self.concurrency_per_instance
            ));
        }
        if self.cpu_budget_ms > MAX_TIMEOUT_MS {
            return bad(format!(
                "CPU budget {} ms is out of range; use 0 (none) to {} s",
                self.cpu_budget_ms,
                MAX_TIMEOUT_MS / 1000
            ));
        }
        if self.kv.len() > super::kv::MAX_STORES_PER_FUNCTION {
            return bad(format!(
                "{} key-value stores named; a function may open at most {}",
                self.kv.len(),
                super::kv::MAX_STORES_PER_FUNCTION
            ));
        }
        for store in &self.kv {
            super::kv::check_store_name(store)?;
        }
        let mut total = 0;
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return bad(format!(
                    "environment variable name {key:?} must be non-empty without '=' or NUL"
                ));
            }
            if value.contains('\0') {
                return bad(format!("environment variable {key} contains a NUL byte"));
            }
            total += key.len() + value.len();
        }
        if total > MAX_ENV_BYTES {
            return bad(format!(
                "environment is {total} bytes; the limit is {MAX_ENV_BYTES} bytes"
            ));
        }
        let config_bytes: usize = self.config.iter().map(|(k, v)| k.len() + v.len()).sum();
        for name in &self.secrets {
            check_secret_name(name)?;
            if self.config.contains_key(name) {
                return bad(format!(
                    "{name:?} is both a config value and a secret; wasi:config would answer one of them"
                ));
            }
        }
        for name in &self.secret_env {
            check_secret_name(name)?;
            if self.env.contains_key(name) {
                return bad(format!(
                    "{name:?} is both an environment variable and a secret read as one; the function would see one of them"
                ));
            }
        }
        if self.config.keys().any(String::is_empty) {
            return bad("wasi:config keys must be non-empty".to_string());
        }
        if config_bytes > MAX_ENV_BYTES {
            return bad(format!(
                "wasi:config values are {config_bytes} bytes; the limit is {MAX_ENV_BYTES} bytes"
            ));
        }
        Ok(())
    }
}

/// Secret names: 1-128 of letters, digits, `_`, `-` and `.` (what config keys and
/// environment variable names usually are).
pub fn check_secret_name(name: &str) -> Result<(), InvalidConfig> {
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(InvalidConfig(format!(
            "secret name {name:?}: use 1 to 128 letters, digits, '_', '-' and '.'"
        )))
    }
}

/// A function's secret as stored: sealed (see `crate::secrets`), never the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRow {
    pub name: String,
    pub sealed: Vec<u8>,
    pub updated_ms: i64,
}

/// Normalizes an outbound origin to `scheme://host:port` (lowercase, default port filled in),
/// the form the outbound policy compares against.
pub fn normalize_origin(text: &str) -> Result<String, InvalidConfig> {
    let bad = || {
        InvalidConfig(format!(
            "outbound origin {text:?} must be scheme://host[:port] with scheme http or https, \
             e.g. https://api.example.com"
        ))
    };
    let uri: http::Uri = text.parse().map_err(|_| bad())?;
    let scheme = uri.scheme_str().ok_or_else(bad)?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(bad()),
    };
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?;
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(bad());
    }
    let port = uri.port_u16().unwrap_or(default_port);
    Ok(format!("{scheme}://{}:{port}", host.to_ascii_lowercase()))
}

/// Which code of a function a request runs: the mutable `$LATEST` or a frozen version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VersionLabel {
    Latest,
    Number(u32),
}

impl fmt::Display for VersionLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::Number(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for VersionLabel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Latest => s.serialize_str("$LATEST"),
            Self::Number(n) => s.serialize_u32(*n),
        }
    }
}

impl VersionLabel {
    /// Parses a version number (from 1) or `latest` / `$LATEST`.
    pub fn parse(text: &str) -> Option<Self> {
        match super::Qualifier::parse(text)? {
            super::Qualifier::Latest => Some(Self::Latest),
            super::Qualifier::Version(n) => Some(Self::Number(n)),
        }
    }
}

/// Accepts a version number (`3` or `"3"`) or `latest` / `$LATEST`.
impl<'de> Deserialize<'de> for VersionLabel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u32),
            Text(String),
        }
        let parsed = match Raw::deserialize(d)? {
            Raw::Number(n) if n > 0 => Some(Self::Number(n)),
            Raw::Number(_) => None,
            Raw::Text(text) => Self::parse(&text),
        };
        parsed
            .ok_or_else(|| serde::de::Error::custom("a version is a number from 1, or \"latest\""))
    }
}

/// A function as the admin API shows it.
#[derive(Clone, Debug)]
pub struct FunctionInfo {
    pub name: String,
    /// `$LATEST`: the code and config the next `publish` freezes.
    pub latest: CodeInfo,
    /// The newest published version, if any.
    pub newest_version: Option<u32>,
    pub version_count: u32,
    pub created_at_ms: i64,
}

/// Code plus config, as held by `$LATEST` or a version.
#[derive(Clone, Debug)]
pub struct CodeInfo {
    pub digest: Digest,
    pub size: u64,
    /// Where the code came from, when pulled from a registry (see [`NewCode::source`]).
    pub source: Option<String>,
    pub config: FunctionConfig,
    pub updated_at_ms: i64,
}

/// New code for `$LATEST`: the module's identity and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCode {
    pub digest: Digest,
    pub size: u64,
    /// `oci://REGISTRY/REPO:TAG@sha256:...` for a component pulled from a registry (pinned
    /// by the manifest's digest); `None` for an upload of a file.
    pub source: Option<String>,
}

impl NewCode {
    /// `wasm` uploaded as a file.
    pub fn of(wasm: &[u8]) -> Self {
        Self {
            digest: Digest::of(wasm),
            size: wasm.len() as u64,
            source: None,
        }
    }
}

/// A published, immutable version.
#[derive(Clone, Debug)]
pub struct VersionInfo {
    pub function: String,
    pub version: u32,
    pub digest: Digest,
    pub size: u64,
    /// Where the code came from, when pulled from a registry.
    pub source: Option<String>,
    pub config: FunctionConfig,
    pub description: String,
    pub created_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_keeps_unset_fields_and_replaces_env() {
        let mut base = FunctionConfig::default();
        base.env.insert("A".into(), "1".into());
        let patch = ConfigPatch {
            timeout_ms: Some(500),
            ..Default::default()
        };
        let out = patch.apply(&base).unwrap();
        assert_eq!(out.timeout_ms, 500);
        assert_eq!(out.env, base.env);
        let patch = ConfigPatch {
            env: Some(BTreeMap::new()),
            ..Default::default()
        };
        assert!(patch.apply(&base).unwrap().env.is_empty());
    }

    #[test]
    fn a_secret_read_as_env_may_not_shadow_an_env_variable() {
        let mut base = FunctionConfig::default();
        base.env.insert("DB_PASSWORD".into(), "visible".into());
        let patch = ConfigPatch {
            secret_env: Some(vec!["DB_PASSWORD".into(), "DB_PASSWORD".into()]),
            ..Default::default()
        };
        assert!(patch.apply(&base).unwrap_err().0.contains("both"));
        base.env.clear();
        let out = patch.apply(&base).unwrap();
        assert_eq!(out.secret_env, ["DB_PASSWORD"], "deduplicated");
        let bad = ConfigPatch {
            secret_env: Some(vec!["A=B".into()]),
            ..Default::default()
        };
        assert!(bad.apply(&base).is_err());
    }

    #[test]
    fn refuses_out_of_range_values_with_the_range() {
        let base = FunctionConfig::default();
        let zero = ConfigPatch {
            memory_mb: Some(0),
            ..Default::default()
        };
        assert!(zero.apply(&base).unwrap_err().0.contains("1 to 4096"));
        let bad_env = ConfigPatch {
            env: Some([("A=B".to_string(), "x".to_string())].into()),
            ..Default::default()
        };
        assert!(bad_env.apply(&base).is_err());
        let huge = ConfigPatch {
            env: Some([("A".to_string(), "x".repeat(MAX_ENV_BYTES))].into()),
            ..Default::default()
        };
        assert!(huge.apply(&base).unwrap_err().0.contains("limit"));
    }

    #[test]
    fn outbound_origins_normalize_and_bad_ones_are_refused() {
        assert_eq!(
            normalize_origin("https://API.example.com").unwrap(),
            "https://api.example.com:443"
        );
        assert_eq!(
            normalize_origin("http://127.0.0.1:8123/").unwrap(),
            "http://127.0.0.1:8123"
        );
        for bad in ["api.example.com", "ftp://x", "https://x/path", "https://"] {
            assert!(normalize_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn old_configs_without_new_fields_still_load() {
        let config: FunctionConfig = serde_json::from_str(r#"{"env":{"A":"b"}}"#).unwrap();
        assert_eq!(config.memory_mb, DEFAULT_MEMORY_MB);
        assert_eq!(config.timeout_ms, DEFAULT_TIMEOUT_MS);
    }
}
