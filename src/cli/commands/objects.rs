//! `fnhost object put|get|ls|rm`: buckets from the command line.

use std::io::Write as _;
use std::path::PathBuf;

use bytes::Bytes;
use clap::{Args, Subcommand};
use http::{Method, header};
use http_body_util::BodyExt;

use super::print_json;
use crate::api::{Deleted, ObjectList, StoredObject};
use crate::cli::ClientArgs;
use crate::cli::client::{AdminClient, read_answer};
use crate::cli::table;

#[derive(Debug, Subcommand)]
pub enum ObjectCommand {
    /// Upload FILE as BUCKET/KEY; prints the ids of the events it fired.
    Put(PutArgs),
    /// Download BUCKET/KEY to a file (or stdout).
    Get(GetArgs),
    /// List a bucket's objects.
    Ls(LsArgs),
    /// Delete BUCKET/KEY.
    Rm(KeyArgs),
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// The bucket to store into (created on first use).
    pub bucket: String,
    /// The object's key, e.g. `img/cat.jpg`; object triggers match its prefix and suffix.
    pub key: String,
    /// The file to upload.
    pub file: PathBuf,
    /// The object's content type (default: from the key's extension).
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The bucket that holds the object.
    pub bucket: String,
    /// The object's key.
    pub key: String,
    /// Where to write it (default: stdout).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// The bucket to list.
    pub bucket: String,
    /// Only keys starting with this.
    #[arg(long, default_value = "", value_name = "PREFIX")]
    pub prefix: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The bucket that holds the object.
    pub bucket: String,
    /// The object's key.
    pub key: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(command: ObjectCommand) -> anyhow::Result<()> {
    match command {
        ObjectCommand::Put(args) => {
            let bytes = super::read_file(&args.file)?;
            let content_type = args.content_type.clone().unwrap_or_else(|| {
                crate::events::buckets::guess_content_type(&args.key).to_string()
            });
            let response = AdminClient::new(&args.client)?
                .send(
                    Method::PUT,
                    &object_path(&args.bucket, &args.key),
                    Bytes::from(bytes),
                    &[(header::CONTENT_TYPE, &content_type)],
                )
                .await?;
            let answer: StoredObject = read_answer(response).await?;
            if print_json(&args.client, &answer)? {
                return Ok(());
            }
            println!(
                "stored {}/{} ({} bytes){}",
                args.bucket,
                args.key,
                answer.size,
                if answer.events.is_empty() {
                    String::new()
                } else {
                    format!("; queued event {}", answer.events.join(", "))
                }
            );
            Ok(())
        }
        ObjectCommand::Get(args) => {
            let response = AdminClient::new(&args.client)?
                .send(
                    Method::GET,
                    &object_path(&args.bucket, &args.key),
                    Bytes::new(),
                    &[],
                )
                .await?;
            let mut out: Box<dyn std::io::Write> = match &args.output {
                Some(path) => Box::new(
                    std::fs::File::create(path)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                if let Some(data) = frame?.data_ref() {
                    out.write_all(data)?;
                }
            }
            out.flush()?;
            Ok(())
        }
        ObjectCommand::Ls(args) => {
            let prefix: String = form_urlencoded::byte_serialize(args.prefix.as_bytes()).collect();
            let path = format!("/v1/buckets/{}/objects?prefix={prefix}", args.bucket);
            let Some(answer) = super::fetch_for_table::<ObjectList>(&args.client, &path).await?
            else {
                return Ok(());
            };
            let rows: Vec<Vec<String>> = answer
                .objects
                .iter()
                .map(|o| vec![o.key.clone(), o.size.to_string()])
                .collect();
            print!("{}", table::render(&["KEY", "SIZE"], &rows));
            Ok(())
        }
        ObjectCommand::Rm(args) => {
            let answer: Deleted = AdminClient::new(&args.client)?
                .delete(&object_path(&args.bucket, &args.key))
                .await?;
            if !print_json(&args.client, &answer)? {
                println!("deleted {}/{}", args.bucket, args.key);
            }
            Ok(())
        }
    }
}

/// `/v1/buckets/B/objects/K`, each key segment percent-encoded.
fn object_path(bucket: &str, key: &str) -> String {
    format!("/v1/buckets/{bucket}/objects/{}", super::encoded_key(key))
}
