//! The client commands, each a thin wrapper over one or two admin API calls.

mod deploy;
mod invoke;
mod manage;
mod traffic;

use std::path::PathBuf;

use clap::Args;

pub use deploy::DeployArgs;
pub use invoke::InvokeArgs;
pub use traffic::{AliasCommand, PromoteArgs, TrafficArgs};

use super::units::{parse_key_value, parse_mebibytes, parse_millis};
use super::{ClientArgs, Command};

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

/// Per-function limits, shared by `deploy` and `config`.
#[derive(Debug, Args, Default)]
pub struct LimitArgs {
    /// Maximum linear memory per instance, e.g. 128Mi or 1Gi (default for new functions: 128Mi).
    #[arg(long, value_parser = parse_mebibytes, value_name = "SIZE")]
    pub memory: Option<u32>,
    /// Wall-clock limit per request, e.g. 3s or 500ms (default for new functions: 10s).
    #[arg(long, value_parser = parse_millis, value_name = "DURATION")]
    pub timeout: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The function to show or change.
    pub name: String,
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
        Command::Publish(args) => manage::publish(args).await,
        Command::Versions(args) => manage::versions(args).await,
        Command::Functions(args) => manage::functions(args).await,
        Command::Config(args) => manage::config(args).await,
        Command::Delete(args) => manage::delete(args).await,
        Command::Invoke(args) => invoke::run(args).await,
        Command::Status(args) => manage::status(args).await,
        Command::Traffic(args) => traffic::traffic(args).await,
        Command::Rollback(args) => traffic::rollback(args).await,
        Command::Promote(args) => traffic::promote(args).await,
        Command::Alias(command) => traffic::alias(command).await,
    }
}

/// Reads a file named on the command line, saying which file failed.
fn read_file(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
