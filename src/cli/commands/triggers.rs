//! `fnhost trigger add|list|delete` and `fnhost events`: event triggers and their outbox.

use clap::{Args, Subcommand};
use http::Method;

use super::print_json;
use crate::api::{AddTrigger, Deleted, EventList, EventView, TriggerList, TriggerView};
use crate::cli::ClientArgs;
use crate::cli::client::AdminClient;
use crate::cli::table;

#[derive(Debug, Subcommand)]
pub enum TriggerCommand {
    /// Invoke NAME for each object created in a bucket (--bucket), or on a schedule (--cron).
    Add(AddArgs),
    /// List a function's triggers.
    List(super::NameArgs),
    /// Delete a trigger by id.
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The function to invoke.
    pub name: String,
    /// Fire for objects created in this bucket.
    #[arg(long, value_name = "BUCKET", conflicts_with = "cron")]
    pub bucket: Option<String>,
    /// Only keys starting with this.
    #[arg(long, default_value = "", value_name = "PREFIX")]
    pub prefix: String,
    /// Only keys ending with this, e.g. .jpg.
    #[arg(long, default_value = "", value_name = "SUFFIX")]
    pub suffix: String,
    /// Write a 2xx answer's body here under the same key (or the one the function names in
    /// an fnhost-output-key header). A configuration that would trigger itself is refused.
    #[arg(long, value_name = "BUCKET")]
    pub output_bucket: Option<String>,
    /// Fire on this schedule, with seconds, in UTC: "sec min hour day month weekday", e.g.
    /// "0 */5 * * * *" (every five minutes).
    #[arg(long, value_name = "SCHEDULE")]
    pub cron: Option<String>,
    /// Let a timer fire again while its previous run is still queued or running.
    #[arg(long, requires = "cron")]
    pub allow_overlap: bool,
    /// The alias or version events go to (default: $DEFAULT).
    #[arg(long, value_name = "ALIAS")]
    pub target: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The function the trigger belongs to.
    pub name: String,
    /// The trigger's id (`fnhost trigger list NAME` shows it).
    pub id: i64,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EventsArgs {
    #[command(subcommand)]
    pub action: Option<EventsAction>,
    /// The function whose events to list.
    #[arg(required = true)]
    pub name: Option<String>,
    /// Only dead-lettered events (out of attempts, or refused by the function).
    #[arg(long)]
    pub failed: bool,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub limit: u32,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum EventsAction {
    /// Send a dead-lettered event again, with a fresh count of attempts.
    Retry(RetryArgs),
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The dead-lettered event's id (`fnhost events NAME --failed` shows it).
    pub id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn trigger(command: TriggerCommand) -> anyhow::Result<()> {
    match command {
        TriggerCommand::Add(args) => {
            if args.bucket.is_none() && args.cron.is_none() {
                anyhow::bail!("say what fires the trigger: --bucket BUCKET or --cron SCHEDULE");
            }
            let body = AddTrigger {
                bucket: args.bucket,
                prefix: args.prefix,
                suffix: args.suffix,
                output_bucket: args.output_bucket,
                cron: args.cron,
                allow_overlap: args.allow_overlap,
                target: args.target,
            };
            let answer: TriggerView = AdminClient::new(&args.client)?
                .send_json(
                    Method::POST,
                    &format!("/v1/functions/{}/triggers", args.name),
                    &body,
                )
                .await?;
            if !print_json(&args.client, &answer)? {
                println!("added trigger {}: {}", answer.id, answer.source);
            }
            Ok(())
        }
        TriggerCommand::List(args) => {
            let path = format!("/v1/functions/{}/triggers", args.name);
            let Some(answer) = super::fetch_for_table::<TriggerList>(&args.client, &path).await?
            else {
                return Ok(());
            };
            let rows: Vec<Vec<String>> = answer
                .triggers
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.source.to_string(),
                        t.target.clone().unwrap_or_else(|| "$DEFAULT".into()),
                    ]
                })
                .collect();
            print!("{}", table::render(&["ID", "FIRES ON", "TARGET"], &rows));
            Ok(())
        }
        TriggerCommand::Delete(args) => {
            let answer: Deleted = AdminClient::new(&args.client)?
                .delete(&format!("/v1/functions/{}/triggers/{}", args.name, args.id))
                .await?;
            if !print_json(&args.client, &answer)? {
                println!("deleted trigger {}", args.id);
            }
            Ok(())
        }
    }
}

pub async fn events(args: EventsArgs) -> anyhow::Result<()> {
    if let Some(EventsAction::Retry(retry)) = args.action {
        let answer: EventView = AdminClient::new(&retry.client)?
            .send_json(
                Method::POST,
                &format!("/v1/events/{}/retry", retry.id),
                &serde_json::Map::new(),
            )
            .await?;
        if !print_json(&retry.client, &answer)? {
            println!("event {} queued again", retry.id);
        }
        return Ok(());
    }
    let name = args.name.expect("clap requires the name");
    let status = if args.failed { "&status=failed" } else { "" };
    let path = format!("/v1/functions/{name}/events?limit={}{status}", args.limit);
    let Some(answer) = super::fetch_for_table::<EventList>(&args.client, &path).await? else {
        return Ok(());
    };
    let rows: Vec<Vec<String>> = answer
        .events
        .iter()
        .map(|e| {
            vec![
                e.id.clone(),
                e.event_type.clone(),
                e.subject.clone().unwrap_or_else(|| "-".into()),
                e.status.as_str().to_string(),
                e.attempts.to_string(),
                e.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["ID", "TYPE", "SUBJECT", "STATUS", "ATTEMPTS", "LAST ERROR"],
            &rows
        )
    );
    Ok(())
}
