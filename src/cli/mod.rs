//! The `fnhost` command line. `serve` runs the host; every other command is a thin client of
//! the admin API, so scripts can use either the CLI (with `--json`) or HTTP directly.

mod client;
mod commands;
mod manifest;
mod oci;
mod serve;
mod table;
pub mod units;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use client::ApiFailure;
pub use serve::ServeArgs;

/// Default address of the admin API the client commands talk to.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:8081";
/// Default address of the data plane `invoke` calls.
pub const DEFAULT_DATA_URL: &str = "http://127.0.0.1:8080";
/// Default data directory, relative to the current directory.
pub const DEFAULT_DATA_DIR: &str = ".fnhost";

/// fnhost: a serverless host for WebAssembly functions.
///
/// Upload a `wasi:http/proxy` component with `deploy`; it becomes the function's $LATEST.
/// `publish` freezes $LATEST as an immutable numbered version. Call functions at
/// http://HOST/NAME/... (newest version, else $LATEST) or http://HOST/NAME@VERSION/... where
/// VERSION is a number or `latest`, or at http://HOST/NAME@ALIAS/... through a custom alias.
///
/// Gray release: `deploy --traffic 5` sends 5% of the function's traffic to the new $LATEST;
/// `traffic NAME 25` grows it; `rollback NAME` sends none; `promote NAME` publishes it and
/// sends it everything.
///
/// Exit codes: 0 success, 1 not found, 2 any other error.
#[derive(Debug, Parser)]
#[command(name = "fnhost", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host: the data plane and the admin API.
    Serve(ServeArgs),
    /// Upload a component as a function's $LATEST (creating the function if needed), from
    /// a file or pulled from an OCI registry (`deploy NAME oci://REGISTRY/REPO:TAG`).
    Deploy(commands::DeployArgs),
    /// Push a component to an OCI registry as a wasm artifact (the CNCF layout `wkg oci
    /// push` makes), for CI pipelines: `push FILE.wasm oci://REGISTRY/REPO:TAG`. Prints the
    /// reference pinned by digest, which `deploy` takes.
    Push(commands::PushArgs),
    /// Freeze $LATEST (code and config) as the next immutable version.
    Publish(commands::PublishArgs),
    /// List a function's published versions.
    Versions(commands::NameArgs),
    /// List all functions.
    Functions(ClientArgs),
    /// Show a function, or change its $LATEST config when flags are given.
    Config(commands::ConfigArgs),
    /// Delete a function with all its versions, or one version with --version.
    Delete(commands::DeleteArgs),
    /// Call a function through the data plane and print its response body; `--async`
    /// queues the call instead and prints its id.
    Invoke(commands::InvokeArgs),
    /// A function's asynchronous invocations (`--status failed`: the dead letters);
    /// `invocations show ID [--wait]`, `invocations retry ID`.
    Invocations(commands::InvocationsArgs),
    /// Show the host's status: engine, pool and compiled-cache counters.
    Status(ClientArgs),
    /// List the fleet's live nodes: address, fnhost version, uptime, requests in flight,
    /// warm instances and the age of the last heartbeat (a node silent for 5s drops out).
    Nodes(ClientArgs),
    /// Set the share of the function's traffic ($DEFAULT) that goes to $LATEST; the rest
    /// goes to the newest published version. Grow it while the release looks healthy.
    Traffic(commands::TrafficArgs),
    /// Send no $DEFAULT traffic to $LATEST any more (the same as `traffic NAME 0`).
    Rollback(commands::NameArgs),
    /// Publish $LATEST as a new version and send all $DEFAULT traffic to it, in one step.
    Promote(commands::PromoteArgs),
    /// Roll a version out automatically, step by step, gated on its error rate and p99;
    /// `rollout status|pause|resume|abort NAME` to follow and steer it.
    Rollout(commands::RolloutArgs),
    /// Manage custom aliases that split traffic between versions by weight or rule.
    #[command(subcommand)]
    Alias(commands::AliasCommand),
    /// Show what a function printed (stdout and stderr), per invocation.
    Logs(commands::LogsArgs),
    /// Show usage: invocations, errors, cold starts, p50/p99, billed ms (per started ms) and
    /// GB-seconds, by version, alias or minute.
    Usage(commands::UsageArgs),
    /// Store, fetch and list objects in buckets (which triggers watch).
    #[command(subcommand)]
    Object(commands::ObjectCommand),
    /// Invoke a function for each object created in a bucket, or on a schedule.
    #[command(subcommand)]
    Trigger(commands::TriggerCommand),
    /// List a function's events (`--failed`: the dead-letter list); `events retry ID`.
    Events(commands::EventsArgs),
    /// Namespaces and their quotas (host admin token): `namespace create|list|show|quota|delete`.
    /// A function NAME in namespace NS is NAME.NS, called at http://HOST/NAME.NS/...
    #[command(subcommand)]
    Namespace(commands::NamespaceCommand),
    /// API keys of a namespace, with a role: `key create --role deployer`, `key list`,
    /// `key revoke ID`. Only a hash of the secret is stored.
    #[command(subcommand)]
    Key(commands::KeyCommand),
    /// Who may call a function on the data plane: `access NAME key` needs an invoker key.
    Access(commands::AccessArgs),
    /// Show who changed what (every admin write, refusals included), newest first.
    Audit(commands::AuditArgs),
    /// A function's secrets, sealed at rest and never shown again: `secret set NAME KEY`
    /// (value from stdin or --file), `secret ls NAME`, `secret delete NAME KEY`.
    #[command(subcommand)]
    Secret(commands::SecretCommand),
    /// Make the host what a manifest says: `apply [-f fnhost.toml] [--dry-run] [--prune]
    /// [--wait]`. Prints the plan (a diff), then applies it; uploads only components whose
    /// digest changed; applying twice changes nothing. See README.md, "Manifests".
    Apply(commands::ApplyArgs),
    /// Write what a namespace runs as a manifest, with its components:
    /// `export [-o fnhost.toml] [--code-dir components]`. `apply` of it changes nothing.
    Export(commands::ExportArgs),
    /// HTTP routes on the data plane by host and path prefix: `route set
    /// shop.example.com/api/cart/* cart@prod [--strip-prefix]`, `route ls`, `route rm MATCH`.
    /// `/NAME@Q/` stays the direct address.
    #[command(subcommand)]
    Route(commands::RouteCommand),
    /// Read and write key-value stores (`wasi:keyvalue`): `kv get|set|delete|ls STORE [KEY]`.
    #[command(subcommand)]
    Kv(commands::KvCommand),
    /// Measure fnhost on your own component, in process: `bench cold-start FILE.wasm`.
    #[command(subcommand)]
    Bench(commands::BenchCommand),
}

/// How client commands reach and authenticate to the admin API.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Admin API base URL.
    #[arg(long = "admin", env = "FNHOST_ADMIN_URL", default_value = DEFAULT_ADMIN_URL, value_name = "URL")]
    pub admin_url: String,
    /// The namespace of the functions and buckets named: NAME means NAME.NS. Listings
    /// (functions, usage, audit) show only this namespace. Default: `default` for names; for
    /// listings, every namespace the credential may see.
    #[arg(long, env = "FNHOST_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
    /// Admin token or API key (`fnhost key create`). Default: read from
    /// <DATA_DIR>/admin.token.
    #[arg(
        long,
        env = "FNHOST_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// The host's data directory, where the admin token is read from.
    #[arg(long, env = "FNHOST_DATA_DIR", default_value = DEFAULT_DATA_DIR, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Print JSON (the admin API's answer) instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Parses flags already validated by clap into work, building the tokio runtime once.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        other => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(commands::run(other))
        }
    }
}

/// 1 when the API said "not found", 2 for every other failure.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    match error.downcast_ref::<ApiFailure>() {
        Some(failure) if failure.status == 404 => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn deploy_flags_parse() {
        let cli = Cli::try_parse_from([
            "fnhost",
            "deploy",
            "hello",
            "hello.wasm",
            "--env",
            "GREETING=Hi",
            "--memory",
            "64Mi",
            "--timeout",
            "2s",
        ])
        .unwrap();
        let Command::Deploy(args) = cli.command else {
            panic!("not deploy")
        };
        assert_eq!(args.env, vec![("GREETING".to_string(), "Hi".to_string())]);
        assert_eq!(args.limits.memory, Some(64));
        assert_eq!(args.limits.timeout, Some(2000));
    }

    #[test]
    fn bad_units_are_refused_by_the_parser() {
        assert!(
            Cli::try_parse_from(["fnhost", "deploy", "f", "f.wasm", "--memory", "lots"]).is_err()
        );
        assert!(Cli::try_parse_from(["fnhost", "deploy", "f", "f.wasm", "--env", "NOEQ"]).is_err());
        assert!(Cli::try_parse_from(["fnhost", "serve", "--max-upload", "1Zi"]).is_err());
    }

    #[test]
    fn serve_defaults() {
        let cli = Cli::try_parse_from(["fnhost", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(args.admin_listen.to_string(), "127.0.0.1:8081");
        assert_eq!(args.max_upload, 64 << 20);
    }
}
