//! `fnhost invocations NAME [--status S]`: a function's asynchronous invocations;
//! `invocations show ID [--wait]` follows one, `invocations retry ID` sends a dead-lettered
//! one again.

use std::time::Duration;

use clap::{Args, Subcommand};
use http::Method;

use super::{format_ms, print_json};
use crate::api::{InvocationList, InvocationView};
use crate::cli::ClientArgs;
use crate::cli::client::AdminClient;
use crate::cli::table;
use crate::model::EventStatus;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct InvocationsArgs {
    #[command(subcommand)]
    pub action: Option<InvocationsAction>,
    /// The function whose invocations to list, newest first.
    #[arg(required = true)]
    pub name: Option<String>,
    /// Only those pending, running, delivered (succeeded) or failed (dead-lettered).
    #[arg(long, value_parser = parse_status, value_name = "STATUS")]
    pub status: Option<EventStatus>,
    /// At most this many.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub limit: u32,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum InvocationsAction {
    /// Show one invocation: state, attempts, duration and where its result went.
    Show(ShowArgs),
    /// Send a dead-lettered invocation again, with a fresh count of attempts.
    Retry(IdArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The invocation's id (what queueing it answered).
    pub id: String,
    /// Wait until it has succeeded or been dead-lettered, printing each change of state;
    /// exits 1 if it failed.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The invocation's id.
    pub id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn parse_status(text: &str) -> Result<EventStatus, String> {
    EventStatus::parse(text)
        .ok_or_else(|| format!("{text:?}: use pending, running, delivered or failed"))
}

pub async fn run(args: InvocationsArgs) -> anyhow::Result<()> {
    match args.action {
        Some(InvocationsAction::Show(show)) => return show_one(show).await,
        Some(InvocationsAction::Retry(retry)) => {
            let answer: InvocationView = AdminClient::new(&retry.client)?
                .send_json(
                    Method::POST,
                    &format!("/v1/invocations/{}/retry", retry.id),
                    &serde_json::Map::new(),
                )
                .await?;
            if !print_json(&retry.client, &answer)? {
                println!("invocation {} queued again", retry.id);
            }
            return Ok(());
        }
        None => {}
    }
    let name = args.name.expect("clap requires the name");
    let status = args
        .status
        .map_or(String::new(), |s| format!("&status={}", s.as_str()));
    let path = format!(
        "/v1/functions/{name}/invocations?limit={}{status}",
        args.limit
    );
    let Some(answer) = super::fetch_for_table::<InvocationList>(&args.client, &path).await? else {
        return Ok(());
    };
    let rows: Vec<Vec<String>> = answer
        .invocations
        .iter()
        .map(|i| {
            let result = i.result.as_ref();
            vec![
                i.id.clone(),
                i.version.clone().unwrap_or_else(|| "-".into()),
                i.status.as_str().to_string(),
                format!("{}/{}", i.attempts, i.max_attempts),
                result.map_or("-".into(), |r| r.status.to_string()),
                result.map_or("-".into(), |r| format!("{} ms", r.duration_ms)),
                result
                    .and_then(|r| r.destination.clone())
                    .unwrap_or_else(|| "-".into()),
                format_ms(i.created_ms),
                i.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "ID",
                "VERSION",
                "STATUS",
                "ATTEMPTS",
                "HTTP",
                "DURATION",
                "RESULT",
                "QUEUED",
                "LAST ERROR"
            ],
            &rows
        )
    );
    Ok(())
}

async fn show_one(args: ShowArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.client)?;
    let path = format!("/v1/invocations/{}", args.id);
    let mut last: Option<(EventStatus, u32)> = None;
    loop {
        let invocation: InvocationView = client.get(&path).await?;
        let done = matches!(
            invocation.status,
            EventStatus::Delivered | EventStatus::Failed
        );
        if !args.wait || done {
            if !print_json(&args.client, &invocation)? {
                print_invocation(&invocation);
            }
            if args.wait && invocation.status == EventStatus::Failed {
                anyhow::bail!(
                    "invocation {} failed: {}",
                    invocation.id,
                    invocation
                        .last_error
                        .as_deref()
                        .unwrap_or("no error recorded")
                );
            }
            return Ok(());
        }
        let now = (invocation.status, invocation.attempts);
        if last != Some(now) && !args.client.json {
            eprintln!(
                "{}: {} (attempt {} of {}){}",
                invocation.id,
                invocation.status.as_str(),
                invocation.attempts + u32::from(invocation.status == EventStatus::Running),
                invocation.max_attempts,
                invocation
                    .last_error
                    .as_deref()
                    .map_or(String::new(), |e| format!("; last error: {e}"))
            );
            last = Some(now);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn print_invocation(i: &InvocationView) {
    println!("id:         {}", i.id);
    println!("function:   {}", i.function);
    println!("version:    {}", i.version.as_deref().unwrap_or("$DEFAULT"));
    println!("status:     {}", i.status.as_str());
    println!("attempts:   {} of {}", i.attempts, i.max_attempts);
    println!(
        "request:    {} {} ({} bytes)",
        i.method, i.path, i.body_bytes
    );
    println!("queued:     {} UTC", format_ms(i.created_ms));
    if let Some(result) = &i.result {
        println!(
            "result:     HTTP {} from version {} in {} ms, {} bytes",
            result.status, result.version, result.duration_ms, result.response_bytes
        );
        if let Some(destination) = &result.destination {
            println!("sent to:    {destination}");
        }
    }
    if let Some(error) = &i.last_error {
        println!("last error: {error}");
    }
}
