//! `fnhost.toml`: a namespace's functions, their config, aliases, triggers, release strategy
//! and HTTP routes, declared in one file that `fnhost apply` makes true and `fnhost export`
//! writes from what a host runs.
//!
//! Loading reads the TOML into the schema (unknown fields refused), then checks every value
//! the way the host would, so a mistake is reported before anything is uploaded, as
//! `FILE:LINE:COLUMN: FIELD: what is wrong`. A config field the manifest leaves out is the
//! default: the manifest is the whole config, so deleting a line undoes it.

pub mod plan;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::de::{DeTable, DeValue};

use super::units::{parse_bytes, parse_mebibytes, parse_millis};
use crate::api::{AddTrigger, AliasRequest, HttpRouteView, Percent};
use crate::model::{
    Access, AsyncPatch, ConfigPatch, DEFAULT_NAMESPACE, FunctionConfig, FunctionName, HttpRoute,
    check_alias_name, check_namespace, check_routes, qualify,
};

/// The file as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The namespace every function and route of the file lives in (default: `default`, or
    /// the CLI's `--namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default)]
    pub functions: BTreeMap<String, FunctionSpec>,
    /// The namespace's HTTP routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<HttpRouteView>,
}

/// One function. Sizes are written like `128Mi`, durations like `3s` or `250ms`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// The component: a file relative to the manifest's directory, or an OCI artifact,
    /// `oci://REGISTRY/REPO:TAG` (or `@sha256:...`), resolved at each apply.
    pub component: String,
    /// A command run (by `sh -c`, in the manifest's directory) before the component is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_budget: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Instance reuse (WASI 0.3 versions): requests one instance serves; 0 or absent, a
    /// fresh instance per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<u32>,
    /// With `reuse`: requests one instance serves at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_per_instance: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_body: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_outbound: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv: Vec<String>,
    /// `wasi:config` values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Secrets read through `wasi:config` (values are set with `fnhost secret set`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Secrets read as environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    /// How asynchronous invocations run and where their results go.
    #[serde(default, rename = "async", skip_serializing_if = "Option::is_none")]
    pub async_policy: Option<AsyncSpec>,
    /// `public` (default) or `key`.
    #[serde(default, skip_serializing_if = "is_public")]
    pub access: Access,
    /// Instances kept warm for `$DEFAULT`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub provisioned: u32,
    /// Custom aliases, by name (`$DEFAULT` is the release's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, AliasRequest>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<AddTrigger>,
    /// How a changed `$LATEST` reaches `$DEFAULT` (default: `manual`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseSpec>,
}

/// `[functions.NAME.async]`: unset fields take their defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// The first retry's delay, e.g. `1s`; each later one doubles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// `bucket:NAME` or `function:NAME[@QUALIFIER]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
}

fn is_public(access: &Access) -> bool {
    *access == Access::Public
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The release strategy for `$DEFAULT`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSpec {
    pub strategy: Strategy,
    /// `manual`: `$DEFAULT`'s share to `$LATEST` (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_percent: Option<Percent>,
    /// `rollout`: the candidate's share at each step, ending at 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<Percent>>,
    /// `rollout`: how long each step is observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate_percent: Option<Percent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// `$LATEST` is updated; `$DEFAULT` keeps its versions (and `latest_percent`).
    #[default]
    Manual,
    /// A changed `$LATEST` is published and gets all of `$DEFAULT` at once.
    Immediate,
    /// A changed `$LATEST` is rolled out through `$DEFAULT` in steps, judged by its gates.
    Rollout,
}

/// What the manifest asks for, checked: ids qualified by the namespace, config complete.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub namespace: String,
    pub functions: BTreeMap<String, DesiredFunction>,
    pub routes: Vec<HttpRouteView>,
    /// Whether the file says anything about routes (an empty list then means none).
    pub has_routes: bool,
}

/// Where a function's component comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ComponentRef {
    /// A file, relative to the manifest's directory.
    File(PathBuf),
    /// An artifact in an OCI registry (`component = "oci://REGISTRY/REPO:TAG"`).
    Oci(crate::model::OciReference),
}

#[derive(Clone, Debug, PartialEq)]
pub struct DesiredFunction {
    /// The function's id (`NAME.NS` outside the default namespace).
    pub id: String,
    /// The name as written.
    pub name: String,
    pub component: ComponentRef,
    pub build: Option<String>,
    pub config: FunctionConfig,
    pub access: Access,
    pub provisioned: u32,
    pub aliases: BTreeMap<String, AliasRequest>,
    pub triggers: Vec<AddTrigger>,
    pub release: Release,
}

/// A checked release strategy.
#[derive(Clone, Debug, PartialEq)]
pub enum Release {
    Manual { latest_percent: Percent },
    Immediate,
    Rollout(crate::api::StartRollout),
}

/// A mistake in a manifest, where it is.
#[derive(Debug, PartialEq, Eq)]
pub struct ManifestError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The dotted path of the field (`functions.cart.memory`), empty for a syntax error.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ManifestError {}

/// Reads and checks the manifest at `path`; `namespace` (the CLI's `--namespace`) applies
/// when the file names none, and must agree when it does.
pub fn load(path: &Path, namespace: Option<&str>) -> anyhow::Result<Desired> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    Ok(parse(&text, path, namespace)?)
}

/// [`load`] on text already read; `file` names it in errors and anchors relative paths.
pub fn parse(text: &str, file: &Path, namespace: Option<&str>) -> Result<Desired, ManifestError> {
    let located = Located::new(text, file)?;
    let manifest: Manifest = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        located.error_at(span, e.message())
    })?;
    check(&manifest, &located, namespace)
}

fn check(
    manifest: &Manifest,
    at: &Located<'_>,
    cli_namespace: Option<&str>,
) -> Result<Desired, ManifestError> {
    let namespace = match (&manifest.namespace, cli_namespace) {
        (Some(file), Some(cli)) if file != cli => {
            return Err(at.error(
                &["namespace"],
                format!("the file is for namespace {file:?} but --namespace says {cli:?}"),
            ));
        }
        (Some(file), _) => file.clone(),
        (None, Some(cli)) => cli.to_string(),
        (None, None) => DEFAULT_NAMESPACE.to_string(),
    };
    check_namespace(&namespace).map_err(|e| at.error(&["namespace"], e.to_string()))?;
    let base = at.file.parent().unwrap_or(Path::new("."));
    let mut functions = BTreeMap::new();
    for (name, spec) in &manifest.functions {
        let field = |rest: &[&str]| -> Vec<String> {
            ["functions", name.as_str()]
                .iter()
                .chain(rest)
                .map(|s| s.to_string())
                .collect()
        };
        let fail = |rest: &[&str], message: String| {
            let path = field(rest);
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            at.error(&path, message)
        };
        if name.contains('.') {
            return Err(fail(
                &[],
                "write the name without a namespace; the file's `namespace` applies".into(),
            ));
        }
        let id = qualify(name, &namespace);
        FunctionName::parse(&id).map_err(|e| fail(&[], e.to_string()))?;
        if spec.component.is_empty() {
            return Err(fail(&["component"], "the component's path is empty".into()));
        }
        let component = if crate::model::OciReference::is_oci(&spec.component) {
            let reference = crate::model::OciReference::parse(&spec.component)
                .map_err(|e| fail(&["component"], e.to_string()))?;
            if spec.build.is_some() {
                return Err(fail(
                    &["build"],
                    "a component pulled from a registry is built before it is pushed, not here"
                        .into(),
                ));
            }
            ComponentRef::Oci(reference)
        } else {
            ComponentRef::File(base.join(&spec.component))
        };
        let config = function_config(spec).map_err(|(field, message)| fail(&[field], message))?;
        for (alias, request) in &spec.aliases {
            check_alias_name(alias).map_err(|e| fail(&["aliases", alias], e.to_string()))?;
            if alias.starts_with('$') {
                return Err(fail(
                    &["aliases", alias],
                    "$DEFAULT is set by the release strategy, not as an alias".into(),
                ));
            }
            let mut spec = request
                .clone()
                .into_spec()
                .map_err(|e| fail(&["aliases", alias], e))?;
            spec.validate()
                .map_err(|e| fail(&["aliases", alias], e.to_string()))?;
        }
        for (i, trigger) in spec.triggers.iter().enumerate() {
            let index = i.to_string();
            trigger
                .source()
                .map_err(|e| fail(&["triggers", &index], e.to_string()))?;
        }
        let release = release(spec.release.as_ref()).map_err(|(field, message)| {
            let mut path = vec!["release"];
            path.extend(field);
            fail(&path, message)
        })?;
        functions.insert(
            id.clone(),
            DesiredFunction {
                id,
                name: name.clone(),
                component,
                build: spec.build.clone(),
                config,
                access: spec.access,
                provisioned: spec.provisioned,
                aliases: spec.aliases.clone(),
                triggers: spec.triggers.clone(),
                release,
            },
        );
    }
    let mut routes = Vec::new();
    for (i, view) in manifest.routes.iter().enumerate() {
        let index = i.to_string();
        let route = HttpRoute::parse(&namespace, &view.matches, &view.target, view.strip_prefix)
            .map_err(|e| at.error(&["routes", &index], e.to_string()))?;
        routes.push(route);
    }
    check_routes(&routes).map_err(|e| at.error(&["routes"], e.to_string()))?;
    Ok(Desired {
        namespace,
        functions,
        routes: manifest.routes.clone(),
        has_routes: at.has(&["routes"]),
    })
}

/// The complete config a spec asks for; an error names the field.
fn function_config(spec: &FunctionSpec) -> Result<FunctionConfig, (&'static str, String)> {
    let mut patch = ConfigPatch::default();
    let mut fields: Vec<(&'static str, ConfigPatch)> = Vec::new();
    let mut one = |field: &'static str, set: &dyn Fn(&mut ConfigPatch)| {
        let mut single = ConfigPatch::default();
        set(&mut single);
        set(&mut patch);
        fields.push((field, single));
    };
    let unit =
        |field: &'static str, value: &Option<String>, parse: fn(&str) -> Result<u64, String>| {
            value
                .as_deref()
                .map(parse)
                .transpose()
                .map_err(|e| (field, e))
        };
    let memory = spec
        .memory
        .as_deref()
        .map(parse_mebibytes)
        .transpose()
        .map_err(|e| ("memory", e))?;
    let timeout = unit("timeout", &spec.timeout, parse_millis)?;
    let cpu_budget = unit("cpu_budget", &spec.cpu_budget, parse_millis)?;
    let request_body = unit("max_request_body", &spec.max_request_body, parse_bytes)?;
    let response_body = unit("max_response_body", &spec.max_response_body, parse_bytes)?;
    one("memory", &|p| p.memory_mb = memory);
    one("timeout", &|p| p.timeout_ms = timeout);
    one("cpu_budget", &|p| p.cpu_budget_ms = cpu_budget);
    one("max_concurrency", &|p| {
        p.max_concurrency = spec.max_concurrency
    });
    one("max_request_body", &|p| {
        p.max_request_body_bytes = request_body
    });
    one("reuse", &|p| {
        p.reuse_requests = spec.reuse;
        p.concurrency_per_instance = spec.concurrency_per_instance;
    });
    one("max_response_body", &|p| {
        p.max_response_body_bytes = response_body
    });
    one("allow_outbound", &|p| {
        p.allow_outbound = Some(spec.allow_outbound.clone())
    });
    one("env", &|p| p.env = Some(spec.env.clone()));
    one("kv", &|p| p.kv = Some(spec.kv.clone()));
    one("config", &|p| p.config = Some(spec.config.clone()));
    one("secrets", &|p| p.secrets = Some(spec.secrets.clone()));
    one("secret_env", &|p| {
        p.secret_env = Some(spec.secret_env.clone())
    });
    if let Some(asynchronous) = &spec.async_policy {
        let backoff = unit("async.backoff", &asynchronous.backoff, parse_millis)?;
        one("async", &|p| {
            p.async_policy = AsyncPatch {
                retries: asynchronous.retries,
                backoff_ms: backoff,
                concurrency: asynchronous.concurrency,
                on_success: asynchronous.on_success.clone(),
                on_failure: asynchronous.on_failure.clone(),
            }
        });
    }
    let defaults = FunctionConfig::default();
    // Each field alone first, so an error names the field that causes it.
    for (field, single) in &fields {
        single.apply(&defaults).map_err(|e| (*field, e.0))?;
    }
    patch.apply(&defaults).map_err(|e| ("", e.0))
}

fn release(spec: Option<&ReleaseSpec>) -> Result<Release, (Vec<&'static str>, String)> {
    let Some(spec) = spec else {
        return Ok(Release::Manual {
            latest_percent: Percent::default(),
        });
    };
    let rollout_only = [
        ("steps", spec.steps.is_some()),
        ("interval", spec.interval.is_some()),
        (
            "max_error_rate_percent",
            spec.max_error_rate_percent.is_some(),
        ),
        ("max_p99", spec.max_p99.is_some()),
        ("min_requests", spec.min_requests.is_some()),
    ];
    if spec.strategy != Strategy::Rollout
        && let Some((field, _)) = rollout_only.iter().find(|(_, set)| *set)
    {
        return Err((
            vec![field],
            "only a rollout has steps and gates; set strategy = \"rollout\"".into(),
        ));
    }
    if spec.strategy != Strategy::Manual && spec.latest_percent.is_some() {
        return Err((
            vec!["latest_percent"],
            "latest_percent is for strategy = \"manual\"; the other strategies move $DEFAULT themselves"
                .into(),
        ));
    }
    Ok(match spec.strategy {
        Strategy::Manual => Release::Manual {
            latest_percent: spec.latest_percent.unwrap_or_default(),
        },
        Strategy::Immediate => Release::Immediate,
        Strategy::Rollout => {
            let millis = |field: &'static str, value: &Option<String>| {
                value
                    .as_deref()
                    .map(parse_millis)
                    .transpose()
                    .map_err(|e| (vec![field], e))
            };
            let start = crate::api::StartRollout {
                to: Some(crate::model::VersionLabel::Latest),
                alias: None,
                steps: spec.steps.clone(),
                interval_ms: millis("interval", &spec.interval)?,
                max_error_rate_percent: spec.max_error_rate_percent,
                max_p99_ms: millis("max_p99", &spec.max_p99)?,
                min_requests: spec.min_requests,
            };
            if let Some(steps) = &start.steps {
                let ascending = steps.windows(2).all(|w| w[0] < w[1]);
                if steps.is_empty() || !ascending || steps.last().map(|p| p.0.get()) != Some(10_000)
                {
                    return Err((
                        vec!["steps"],
                        "steps are rising percentages ending at 100, e.g. [1, 5, 25, 50, 100]"
                            .into(),
                    ));
                }
            }
            Release::Rollout(start)
        }
    })
}

/// The text with its spans: errors point at the line and column of the field they concern.
struct Located<'a> {
    text: &'a str,
    file: &'a Path,
    document: DeValue<'a>,
}

impl<'a> Located<'a> {
    fn new(text: &'a str, file: &'a Path) -> Result<Self, ManifestError> {
        let table = DeTable::parse(text).map_err(|e| {
            let offset = e.span().map_or(0, |span| span.start);
            ManifestError::at(text, file, offset, String::new(), e.message())
        })?;
        Ok(Self {
            text,
            file,
            document: DeValue::Table(table.into_inner()),
        })
    }

    fn has(&self, path: &[&str]) -> bool {
        self.find(path).is_some()
    }

    /// The span of the value at `path` (a number indexes an array).
    fn find(&self, path: &[&str]) -> Option<Range<usize>> {
        let mut value = &self.document;
        let mut span = None;
        for key in path {
            let next = match key.parse::<usize>() {
                Ok(i) => value.as_array().and_then(|a| a.get(i)),
                Err(_) => value.get(*key),
            }?;
            span = Some(next.span());
            value = next.get_ref();
        }
        span
    }

    /// An error about the field at `path`, or at its nearest ancestor present in the text.
    fn error(&self, path: &[&str], message: String) -> ManifestError {
        let span = (0..=path.len())
            .rev()
            .find_map(|n| self.find(&path[..n]))
            .unwrap_or(0..0);
        ManifestError::at(self.text, self.file, span.start, path.join("."), &message)
    }

    /// An error at a span (from the deserializer), naming the deepest field there.
    fn error_at(&self, span: Range<usize>, message: &str) -> ManifestError {
        let mut path = Vec::new();
        field_at(&self.document, span.start, &mut path);
        ManifestError::at(self.text, self.file, span.start, path.join("."), message)
    }
}

impl ManifestError {
    /// An error about `field` at byte `offset` of `text`, the contents of `file`.
    fn at(text: &str, file: &Path, offset: usize, field: String, message: &str) -> Self {
        let (line, column) = line_column(text, offset);
        Self {
            file: file.to_path_buf(),
            line,
            column,
            field,
            message: message.trim_end().to_string(),
        }
    }
}

/// The keys (and array indexes) leading to the deepest key or value containing `offset`.
/// Every branch is searched: a table written as a `[header]` section has no span around its
/// fields.
fn field_at(value: &DeValue<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    type Child<'v, 'i> = (String, Option<Range<usize>>, &'v toml::Spanned<DeValue<'i>>);
    let children: Vec<Child<'_, '_>> = match value {
        DeValue::Table(table) => table
            .iter()
            .map(|(key, item)| (key.get_ref().to_string(), Some(key.span()), item))
            .collect(),
        DeValue::Array(array) => array
            .iter()
            .enumerate()
            .map(|(i, item)| (i.to_string(), None, item))
            .collect(),
        _ => return false,
    };
    for (name, key_span, item) in children {
        path.push(name);
        if field_at(item.get_ref(), offset, path) {
            return true;
        }
        if key_span.is_some_and(|s| s.contains(&offset)) || item.span().contains(&offset) {
            return true;
        }
        path.pop();
    }
    false
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOP: &str = r#"
namespace = "shop"

[functions.cart]
component = "target/cart.wasm"
memory = "64Mi"
timeout = "3s"
env = { GREETING = "Hi" }
kv = ["cart"]
provisioned = 2

[functions.cart.async]
retries = 5
backoff = "2s"
on_failure = "bucket:cart-failures.shop"

[functions.cart.release]
strategy = "rollout"
steps = [10, 50, 100]
interval = "2s"
max_p99 = "250ms"

[functions.cart.aliases.prod]
routes = [{ version = 1, percent = 90 }, { version = "latest", percent = 10 }]
sticky_header = "user-id"

[[functions.cart.triggers]]
cron = "0 * * * * *"

[[routes]]
match = "shop.example.com/api/cart/*"
target = "cart@prod"
strip_prefix = true
"#;

    fn parse_text(text: &str) -> Result<Desired, ManifestError> {
        parse(text, Path::new("deploy/fnhost.toml"), None)
    }

    #[test]
    fn a_full_manifest_reads_into_ids_and_complete_configs() {
        let desired = parse_text(SHOP).unwrap();
        assert_eq!(desired.namespace, "shop");
        let cart = &desired.functions["cart.shop"];
        assert_eq!(
            cart.component,
            ComponentRef::File("deploy/target/cart.wasm".into())
        );
        assert_eq!(cart.config.memory_mb, 64);
        assert_eq!(cart.config.timeout_ms, 3000);
        assert_eq!(
            cart.config.max_concurrency,
            FunctionConfig::default().max_concurrency
        );
        assert_eq!(cart.config.kv, ["cart"]);
        let policy = &cart.config.async_policy;
        assert_eq!((policy.retries, policy.backoff_ms), (5, 2000));
        assert_eq!(
            policy.concurrency,
            crate::model::AsyncPolicy::default().concurrency
        );
        assert_eq!(
            policy
                .on_failure
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("bucket:cart-failures.shop")
        );
        assert_eq!(cart.provisioned, 2);
        match &cart.release {
            Release::Rollout(start) => {
                assert_eq!(start.interval_ms, Some(2000));
                assert_eq!(start.max_p99_ms, Some(250));
                assert_eq!(start.steps.as_ref().unwrap().len(), 3);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(cart.aliases["prod"].routes.len(), 2);
        assert_eq!(cart.triggers.len(), 1);
        assert!(desired.has_routes);
        assert_eq!(desired.routes[0].target, "cart@prod");
    }

    fn error_of(text: &str) -> ManifestError {
        parse_text(text).unwrap_err()
    }

    #[test]
    fn an_oci_component_is_a_reference_not_a_path() {
        let desired =
            parse_text("[functions.cart]\ncomponent = \"oci://127.0.0.1:5000/shop/cart:v3\"\n")
                .unwrap();
        let ComponentRef::Oci(reference) = &desired.functions["cart"].component else {
            panic!("not a reference: {:?}", desired.functions["cart"].component)
        };
        assert_eq!(reference.repository, "shop/cart");
        assert_eq!(reference.tag.as_deref(), Some("v3"));
        let e = error_of("[functions.cart]\ncomponent = \"oci://ghcr.io/Shop:v3\"\n");
        assert_eq!(e.field, "functions.cart.component", "{e}");
        assert!(e.message.contains("lowercase"), "{e}");
        let e =
            error_of("[functions.cart]\ncomponent = \"oci://ghcr.io/shop:v3\"\nbuild = \"make\"\n");
        assert_eq!(e.field, "functions.cart.build", "{e}");
    }

    #[test]
    fn mistakes_name_the_file_line_and_field() {
        let e = error_of("[functions.cart]\ncomponent = \"c.wasm\"\nmemroy = \"64Mi\"\n");
        assert_eq!((e.line, e.field.as_str()), (3, "functions.cart.memroy"));
        assert!(e.message.contains("unknown field"), "{e}");
        assert!(
            e.to_string()
                .starts_with("deploy/fnhost.toml:3:1: functions.cart.memroy: "),
            "{e}"
        );

        let e = error_of("[functions.cart]\ncomponent = \"c.wasm\"\nmemory = \"lots\"\n");
        assert_eq!((e.line, e.field.as_str()), (3, "functions.cart.memory"));
        assert!(e.message.contains("not a size"), "{e}");

        let e = error_of("[functions.cart]\ncomponent = \"c.wasm\"\n\ntimeout = \"99h\"\n");
        assert_eq!((e.line, e.field.as_str()), (4, "functions.cart.timeout"));
        assert!(e.message.contains("out of range"), "{e}");

        let e = error_of("[functions.cart]\ncomponent = \"c.wasm\"\nmax_concurrency = \"many\"\n");
        assert_eq!(
            (e.line, e.field.as_str()),
            (3, "functions.cart.max_concurrency")
        );

        let e = error_of("[functions.cart]\n");
        assert!(e.message.contains("component"), "{e}");

        let e = error_of(
            "[functions.cart]\ncomponent = \"c.wasm\"\n[functions.cart.aliases.prod]\nroutes = [{ version = 1, percent = 90 }]\n",
        );
        assert_eq!(e.field, "functions.cart.aliases.prod");
        assert!(e.message.contains("100"), "{e}");

        let e = error_of(
            "[functions.cart]\ncomponent = \"c.wasm\"\n[functions.cart.release]\nstrategy = \"immediate\"\nsteps = [100]\n",
        );
        assert_eq!(
            (e.line, e.field.as_str()),
            (5, "functions.cart.release.steps")
        );

        let e = error_of(
            "[[routes]]\nmatch = \"/a\"\ntarget = \"x\"\n[[routes]]\nmatch = \"bad:80/a\"\ntarget = \"x\"\n",
        );
        assert_eq!((e.line, e.field.as_str()), (4, "routes.1"));

        let e = error_of(
            "[functions.cart]\ncomponent = \"c.wasm\"\n[functions.cart.async]\nretries = 99\n",
        );
        assert_eq!(e.field, "functions.cart.async");
        assert!(e.message.contains("retries 99"), "{e}");
        let e = error_of(
            "[functions.cart]\ncomponent = \"c.wasm\"\n[functions.cart.async]\non_success = \"queue:x\"\n",
        );
        assert!(e.message.contains("bucket:NAME"), "{e}");

        let e = error_of("namespace = \"Shop\"\n");
        assert_eq!((e.line, e.field.as_str()), (1, "namespace"));

        let e = error_of("[functions.cart\n");
        assert_eq!((e.line, e.field.as_str()), (1, ""));
    }

    /// The manifests the docs show, and the samples' own, stay valid.
    #[test]
    fn the_documented_manifests_are_valid() {
        let readme = include_str!("../../../README.md");
        let blocks: Vec<&str> = readme
            .split("```toml\n")
            .skip(1)
            .map(|rest| rest.split("```").next().unwrap())
            .collect();
        assert!(!blocks.is_empty());
        for block in blocks {
            parse(block, Path::new("README.md"), None).unwrap_or_else(|e| panic!("{e}\n{block}"));
        }
        let samples = parse(
            include_str!("../../../fnhost.toml"),
            Path::new("fnhost.toml"),
            None,
        )
        .unwrap();
        assert_eq!(samples.functions.len(), 3);
    }

    #[test]
    fn the_cli_namespace_applies_or_must_agree() {
        let text = "[functions.cart]\ncomponent = \"c.wasm\"\n";
        let desired = parse(text, Path::new("f.toml"), Some("team")).unwrap();
        assert!(desired.functions.contains_key("cart.team"));
        assert!(!desired.has_routes);
        let e = parse(SHOP, Path::new("f.toml"), Some("other")).unwrap_err();
        assert_eq!(e.field, "namespace");
    }
}
