//! `fnhost kv get|set|delete|ls STORE [KEY]`: an operator's view of key-value stores, the
//! same values functions read and write with `wasi:keyvalue`.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use bytes::Bytes;
use clap::{Args, Subcommand};
use http::Method;
use http_body_util::BodyExt;

use super::{print_json, read_file};
use crate::api::{Deleted, KvKeys};
use crate::cli::ClientArgs;
use crate::cli::client::{AdminClient, read_answer};

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Print one value (raw bytes) to stdout.
    Get(KvKeyArgs),
    /// Store a value: --value TEXT, --file FILE, or stdin (so secrets stay out of shell
    /// history).
    Set(KvSetArgs),
    /// Delete one key.
    Delete(KvKeyArgs),
    /// List a store's keys, one per line (all pages).
    Ls(KvStoreArgs),
}

#[derive(Debug, Args)]
pub struct KvStoreArgs {
    /// The store (in --namespace).
    pub store: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct KvKeyArgs {
    /// The store (in --namespace).
    pub store: String,
    /// The key.
    pub key: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct KvSetArgs {
    /// The store (in --namespace).
    pub store: String,
    /// The key.
    pub key: String,
    /// The value, as text.
    #[arg(long, conflicts_with = "file")]
    pub value: Option<String>,
    /// Read the value from this file.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `/v1/kv/STORE/KEY`, each key segment percent-encoded.
fn key_path(store: &str, key: &str) -> String {
    format!("/v1/kv/{store}/{}", super::encoded_key(key))
}

pub async fn run(command: KvCommand) -> anyhow::Result<()> {
    match command {
        KvCommand::Get(args) => {
            let response = AdminClient::new(&args.client)?
                .send(
                    Method::GET,
                    &key_path(&args.store, &args.key),
                    Bytes::new(),
                    &[],
                )
                .await?;
            let value = response.into_body().collect().await?.to_bytes();
            let mut out = std::io::stdout().lock();
            out.write_all(&value)?;
            out.flush()?;
            Ok(())
        }
        KvCommand::Set(args) => {
            let value = match (&args.value, &args.file) {
                (Some(text), _) => text.clone().into_bytes(),
                (None, Some(path)) => read_file(path)?,
                (None, None) => {
                    let mut bytes = Vec::new();
                    std::io::stdin().read_to_end(&mut bytes)?;
                    bytes
                }
            };
            let response = AdminClient::new(&args.client)?
                .send(
                    Method::PUT,
                    &key_path(&args.store, &args.key),
                    Bytes::from(value),
                    &[],
                )
                .await?;
            let answer: serde_json::Value = read_answer(response).await?;
            if !print_json(&args.client, &answer)? {
                println!("stored {} in {}", args.key, args.store);
            }
            Ok(())
        }
        KvCommand::Delete(args) => {
            let answer: Deleted = AdminClient::new(&args.client)?
                .delete(&key_path(&args.store, &args.key))
                .await?;
            if !print_json(&args.client, &answer)? {
                println!("deleted {} from {}", args.key, args.store);
            }
            Ok(())
        }
        KvCommand::Ls(args) => {
            let client = AdminClient::new(&args.client)?;
            let mut keys = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let path = match &after {
                    Some(after) => format!(
                        "/v1/kv/{}?after={}",
                        args.store,
                        percent_encoding::utf8_percent_encode(
                            after,
                            percent_encoding::NON_ALPHANUMERIC
                        )
                    ),
                    None => format!("/v1/kv/{}", args.store),
                };
                let page: KvKeys = client.get(&path).await?;
                keys.extend(page.keys);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            if !print_json(&args.client, &keys)? {
                let mut out = std::io::stdout().lock();
                for key in keys {
                    writeln!(out, "{key}")?;
                }
            }
            Ok(())
        }
    }
}
