//! `fnhost secret set|ls|delete`: a function's secrets. The value comes from stdin or a file,
//! never from an argument (arguments land in shell history and process listings), and is
//! never shown again: listing prints names and times.

use std::io::Read as _;
use std::path::PathBuf;

use bytes::Bytes;
use clap::{Args, Subcommand};
use http::Method;

use super::{print_json, read_file};
use crate::api::{Deleted, SecretList, SecretView};
use crate::cli::ClientArgs;
use crate::cli::client::{AdminClient, read_answer};

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set (or rotate) a secret from stdin or --file; the function reads it through
    /// `wasi:config` when its config lists it (`--secret NAME`). No new version needed.
    Set(SetArgs),
    /// List a function's secrets: names and when they were set, never values.
    Ls(ListArgs),
    /// Delete a secret.
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// The function.
    pub name: String,
    /// The secret's name (the key the function reads).
    pub key: String,
    /// Read the value from this file instead of stdin.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The function.
    pub name: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The function.
    pub name: String,
    /// The secret's name.
    pub key: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(command: SecretCommand) -> anyhow::Result<()> {
    match command {
        SecretCommand::Set(args) => {
            let mut value = match &args.file {
                Some(path) => read_file(path)?,
                None => {
                    let mut bytes = Vec::new();
                    std::io::stdin().read_to_end(&mut bytes)?;
                    bytes
                }
            };
            // `echo value | fnhost secret set` sends a newline the user did not mean.
            if args.file.is_none() && value.ends_with(b"\n") {
                value.pop();
                if value.ends_with(b"\r") {
                    value.pop();
                }
            }
            let path = format!("/v1/functions/{}/secrets/{}", args.name, args.key);
            let response = AdminClient::new(&args.client)?
                .send(Method::PUT, &path, Bytes::from(value), &[])
                .await?;
            let answer: SecretView = read_answer(response).await?;
            if !print_json(&args.client, &answer)? {
                println!("secret {} of {} set", answer.name, args.name);
            }
            Ok(())
        }
        SecretCommand::Ls(args) => {
            let list: SecretList = AdminClient::new(&args.client)?
                .get(&format!("/v1/functions/{}/secrets", args.name))
                .await?;
            if !print_json(&args.client, &list)? {
                for secret in &list.secrets {
                    println!("{}  {}", secret.name, super::format_ms(secret.updated_ms));
                }
            }
            Ok(())
        }
        SecretCommand::Delete(args) => {
            let answer: Deleted = AdminClient::new(&args.client)?
                .delete(&format!("/v1/functions/{}/secrets/{}", args.name, args.key))
                .await?;
            if !print_json(&args.client, &answer)? {
                println!("deleted secret {} of {}", args.key, args.name);
            }
            Ok(())
        }
    }
}
