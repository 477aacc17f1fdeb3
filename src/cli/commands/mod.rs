//! The client commands, each a thin wrapper over one or two admin API calls (and `bench`,
//! which measures a component in process).

mod apply;
mod bench;
mod deploy;
mod history;
mod invocations;
mod invoke;
mod kv;
mod logs;
mod manage;
mod objects;
mod registry;
mod rollout;
mod routes;
mod secrets;
mod teams;
mod traffic;
mod triggers;
mod usage;

use std::path::PathBuf;

use clap::Args;

pub use apply::{ApplyArgs, ExportArgs};
pub use bench::BenchCommand;
pub use deploy::DeployArgs;
pub use invocations::InvocationsArgs;
pub use invoke::InvokeArgs;
pub use kv::KvCommand;
pub use logs::LogsArgs;
pub use objects::ObjectCommand;
pub use registry::PushArgs;
pub use rollout::RolloutArgs;
pub use routes::RouteCommand;
pub use secrets::SecretCommand;
pub use teams::{AccessArgs, AuditArgs, KeyCommand, NamespaceCommand};
pub use traffic::{AliasCommand, PromoteArgs, TrafficArgs};
pub use triggers::{EventsArgs, TriggerCommand};
pub use usage::UsageArgs;

use super::units::{parse_bytes, parse_key_value, parse_mebibytes, parse_millis};
use super::{ClientArgs, Command};
use crate::model::{AsyncPatch, ConfigPatch};

/// Commands that take just a function name.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The function's name.
    pub name: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The function whose $LATEST to publish.
    pub name: String,
    /// A note stored with the version (what changed, a ticket, a commit).
    #[arg(long, default_value = "")]
    pub description: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Per-function limits and capabilities, shared by `deploy` and `config`. Unset flags keep
/// the function's current value (or the default, for a new function).
#[derive(Debug, Args, Default)]
pub struct LimitArgs {
    /// Maximum linear memory per instance, e.g. 128Mi or 1Gi (default: 128Mi). Exceeding it
    /// fails the request with 500, never the host.
    #[arg(long, value_parser = parse_mebibytes, value_name = "SIZE")]
    pub memory: Option<u32>,
    /// Wall-clock limit per request, e.g. 3s or 500ms (default: 10s); the client gets 504.
    #[arg(long, value_parser = parse_millis, value_name = "DURATION")]
    pub timeout: Option<u64>,
    /// CPU time a request may spend running wasm, e.g. 200ms (default: none; 0ms removes it).
    #[arg(long, value_parser = parse_millis, value_name = "DURATION")]
    pub cpu_budget: Option<u64>,
    /// Allow outbound HTTP to this origin, e.g. https://api.example.com (repeat for several;
    /// replaces the list). Without it, outbound requests are denied.
    #[arg(long, value_name = "ORIGIN")]
    pub allow_outbound: Vec<String>,
    /// Deny all outbound HTTP again.
    #[arg(long, conflicts_with = "allow_outbound")]
    pub deny_outbound: bool,
    /// Requests served at once (default: 100); more wait briefly, then get 503.
    #[arg(long, value_name = "N")]
    pub max_concurrency: Option<u32>,
    /// Largest request body, e.g. 16Mi (default); bigger ones get 413.
    #[arg(long, value_parser = parse_bytes, value_name = "SIZE")]
    pub max_request_body: Option<u64>,
    /// Largest response body, e.g. 64Mi (default); past it the response is cut off.
    #[arg(long, value_parser = parse_bytes, value_name = "SIZE")]
    pub max_response_body: Option<u64>,
    /// A key-value store of the function's namespace it may open with `wasi:keyvalue`
    /// (repeat for several; replaces the list). Without it, opening any store fails.
    #[arg(long, value_name = "STORE")]
    pub kv: Vec<String>,
    /// Open no key-value store any more.
    #[arg(long, conflicts_with = "kv")]
    pub no_kv: bool,
    /// A runtime configuration value the function reads through `wasi:config` (repeat for
    /// several; replaces them all). Changeable later with `config`, without a new upload.
    #[arg(long = "config-value", value_parser = parse_key_value, value_name = "KEY=VALUE")]
    pub config_values: Vec<(String, String)>,
    /// Remove every `wasi:config` value.
    #[arg(long, conflicts_with = "config_values")]
    pub clear_config_values: bool,
    /// A secret of the function it reads through `wasi:config` under this name (repeat for
    /// several; replaces the list). Set its value with `fnhost secret set`.
    #[arg(long = "secret", value_name = "NAME")]
    pub secrets: Vec<String>,
    /// A secret of the function it reads as the environment variable of the same name
    /// (repeat for several; replaces the list). Set per request, so a rotated value reaches
    /// the next request without a new version.
    #[arg(long = "secret-env", value_name = "NAME")]
    pub secret_env: Vec<String>,
    /// Read no secrets any more (neither through `wasi:config` nor as environment variables).
    #[arg(long, conflicts_with_all = ["secrets", "secret_env"])]
    pub no_secrets: bool,
    /// Asynchronous invocations: attempts after a failed one (5xx, 408, 429, timeout),
    /// 0 to 10 (default: 2). Then the invocation is dead-lettered.
    #[arg(long, value_name = "N", help_heading = "Asynchronous invocations")]
    pub async_retries: Option<u32>,
    /// Delay before the first retry, e.g. 1s (default); each later one doubles, up to 1h.
    #[arg(long, value_parser = parse_millis, value_name = "DURATION", help_heading = "Asynchronous invocations")]
    pub async_backoff: Option<u64>,
    /// Asynchronous invocations of this function running at once per node (default: 4), in
    /// a lane of their own: they never take the slots of its HTTP requests.
    #[arg(long, value_name = "N", help_heading = "Asynchronous invocations")]
    pub async_concurrency: Option<u32>,
    /// Where a successful invocation's response goes: bucket:NAME (an object named by the
    /// function's fnhost-output-key header, else the invocation id) or
    /// function:NAME[@VERSION|ALIAS] (a CloudEvent); `none` removes it.
    #[arg(
        long,
        value_name = "DESTINATION",
        help_heading = "Asynchronous invocations"
    )]
    pub on_success: Option<String>,
    /// Where a dead-lettered invocation's record goes (JSON): bucket:NAME (as ID.json) or
    /// function:NAME[@VERSION|ALIAS]; `none` removes it.
    #[arg(
        long,
        value_name = "DESTINATION",
        help_heading = "Asynchronous invocations"
    )]
    pub on_failure: Option<String>,
    /// Opt in to instance reuse (WASI 0.3 versions): one instance serves up to N requests
    /// in turn, instead of a fresh instance per request (the default; 0 or 1 restores it).
    /// Faster, but NOT ISOLATED: whatever a request leaves in the instance's memory
    /// (globals, caches, a previous user's data) is there for the next requests of that
    /// version. Never shared across versions or functions. WASI 0.2 versions always get a
    /// fresh instance.
    #[arg(long = "reuse", value_name = "N", help_heading = "Instance reuse")]
    pub reuse_requests: Option<u32>,
    /// With --reuse: requests one instance serves at once (default 1). WASI 0.3 handlers
    /// are async, so an instance waiting on I/O for one request can serve others; they
    /// share its memory and its CPU budget.
    #[arg(long, value_name = "M", help_heading = "Instance reuse")]
    pub concurrency_per_instance: Option<u32>,
}

impl LimitArgs {
    /// The config change these flags (and `env`, when given) ask for.
    pub fn patch(&self, env: Option<std::collections::BTreeMap<String, String>>) -> ConfigPatch {
        ConfigPatch {
            env,
            memory_mb: self.memory,
            timeout_ms: self.timeout,
            cpu_budget_ms: self.cpu_budget,
            allow_outbound: replacing(self.deny_outbound, &self.allow_outbound),
            max_concurrency: self.max_concurrency,
            max_request_body_bytes: self.max_request_body,
            max_response_body_bytes: self.max_response_body,
            config: replacing(self.clear_config_values, &self.config_values)
                .map(|pairs| pairs.into_iter().collect()),
            secrets: replacing(self.no_secrets, &self.secrets),
            secret_env: replacing(self.no_secrets, &self.secret_env),
            kv: replacing(self.no_kv, &self.kv),
            async_policy: AsyncPatch {
                retries: self.async_retries,
                backoff_ms: self.async_backoff,
                concurrency: self.async_concurrency,
                on_success: self.on_success.clone(),
                on_failure: self.on_failure.clone(),
            },
            reuse_requests: self.reuse_requests,
            concurrency_per_instance: self.concurrency_per_instance,
        }
    }
}

/// A list flag's change: cleared, replaced by the values given, or (neither) kept.
fn replacing<T: Clone>(clear: bool, given: &[T]) -> Option<Vec<T>> {
    if clear {
        Some(Vec::new())
    } else if given.is_empty() {
        None
    } else {
        Some(given.to_vec())
    }
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The function to show or change. NAME@VERSION (a number or `latest`) with
    /// --provisioned sets that version's provisioned concurrency only.
    pub name: String,
    /// Instances kept warm at all times, like SCF/Lambda provisioned concurrency. For NAME,
    /// split over the versions $DEFAULT routes to by weight; for NAME@VERSION, that version's
    /// own count (0 removes it). Provisioned instance time is metered.
    #[arg(long, value_name = "N")]
    pub provisioned: Option<u32>,
    /// Set the environment to exactly these variables (repeat for several); the host's own
    /// environment is never visible to functions.
    #[arg(long, value_parser = parse_key_value, value_name = "KEY=VALUE")]
    pub env: Vec<(String, String)>,
    /// Remove every environment variable.
    #[arg(long, conflicts_with = "env")]
    pub clear_env: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The function to delete.
    pub name: String,
    /// Delete only this published version (the function and $LATEST stay).
    #[arg(long, value_name = "N")]
    pub version: Option<u32>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) => unreachable!("serve runs its own runtime"),
        Command::Deploy(args) => deploy::run(args).await,
        Command::Push(args) => registry::push(args).await,
        Command::Publish(args) => manage::publish(args).await,
        Command::Versions(args) => manage::versions(args).await,
        Command::Functions(args) => manage::functions(args).await,
        Command::Config(args) => manage::config(args).await,
        Command::Delete(args) => manage::delete(args).await,
        Command::Invoke(args) => invoke::run(args).await,
        Command::Invocations(args) => invocations::run(args).await,
        Command::Status(args) => manage::status(args).await,
        Command::Nodes(args) => manage::nodes(args).await,
        Command::Traffic(args) => traffic::traffic(args).await,
        Command::Rollback(args) => traffic::rollback(args).await,
        Command::Promote(args) => traffic::promote(args).await,
        Command::Alias(command) => traffic::alias(command).await,
        Command::Logs(args) => logs::run(args).await,
        Command::Usage(args) => usage::run(args).await,
        Command::Bench(command) => bench::run(command).await,
        Command::Rollout(args) => rollout::run(args).await,
        Command::Object(command) => objects::run(command).await,
        Command::Trigger(command) => triggers::trigger(command).await,
        Command::Events(args) => triggers::events(args).await,
        Command::Namespace(command) => teams::namespace(command).await,
        Command::Key(command) => teams::key(command).await,
        Command::Access(args) => teams::access(args).await,
        Command::Audit(args) => teams::audit(args).await,
        Command::Kv(command) => kv::run(command).await,
        Command::Secret(command) => secrets::run(command).await,
        Command::Route(command) => routes::run(command).await,
        Command::Apply(args) => apply::apply(args).await,
        Command::Export(args) => apply::export(args).await,
    }
}

/// GETs `path` from the admin API as the API type `T`. With `--json` the answer is printed
/// and `None` returned; otherwise the caller renders it as a table.
async fn fetch_for_table<T: serde::de::DeserializeOwned + serde::Serialize>(
    client: &ClientArgs,
    path: &str,
) -> anyhow::Result<Option<T>> {
    let answer: T = super::client::AdminClient::new(client)?.get(path).await?;
    if print_json(client, &answer)? {
        return Ok(None);
    }
    Ok(Some(answer))
}

/// A Unix-millisecond time as `YYYY-MM-DD HH:MM:SS` UTC.
fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// A key (of an object or a key-value store) for a path: each `/`-separated segment
/// percent-encoded, the slashes kept.
fn encoded_key(key: &str) -> String {
    key.split('/')
        .map(|segment| {
            percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// With `--json`, prints `answer` as the API's JSON (pretty) and returns true.
fn print_json(client: &ClientArgs, answer: &impl serde::Serialize) -> anyhow::Result<bool> {
    if client.json {
        println!("{}", serde_json::to_string_pretty(answer)?);
    }
    Ok(client.json)
}

/// A version as users read it in output: a number, or `$LATEST`.
fn version_label(version: crate::model::VersionLabel) -> String {
    match version {
        crate::model::VersionLabel::Latest => "$LATEST".into(),
        crate::model::VersionLabel::Number(n) => n.to_string(),
    }
}

/// `sha256:` plus 12 hex digits: enough to tell versions apart in a table.
fn short_digest(digest: &crate::model::Digest) -> String {
    digest
        .to_string()
        .chars()
        .take("sha256:".len() + 12)
        .collect()
}

/// Reads a file named on the command line, saying which file failed.
fn read_file(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
