//! `fnhost rollout`: start an automatic, health-gated rollout, follow it, and steer it.

use std::time::Duration;

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{Value, json};

use super::traffic::parse_percent_arg;
use crate::cli::ClientArgs;
use crate::cli::client::AdminClient;
use crate::cli::table;
use crate::cli::units::parse_millis;
use crate::model::{BasisPoints, VersionLabel};

/// Roll a version out automatically: its share of the alias grows step by step while its
/// error rate and p99 stay within limits over each interval; at the first breach its share
/// drops to 0 and the reason is recorded. On success through $DEFAULT, $LATEST is published
/// and takes all traffic. Example:
///
///   fnhost rollout shop --to latest --steps 1,5,25,50,100 --interval 30s --max-error-rate 1% --max-p99 250ms --wait
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub action: Option<RolloutAction>,
    #[command(flatten)]
    pub start: StartArgs,
}

#[derive(Debug, Subcommand)]
pub enum RolloutAction {
    /// Show a function's rollout: phase, step, each step's judgment, the current step's health.
    Status(RolloutNameArgs),
    /// Hold the current share; nothing is judged until resumed.
    Pause(RolloutNameArgs),
    /// Continue a paused rollout, observing its current step afresh.
    Resume(RolloutNameArgs),
    /// Stop the rollout and send the candidate no more traffic.
    Abort(RolloutNameArgs),
}

#[derive(Debug, Args)]
pub struct RolloutNameArgs {
    /// The function.
    pub name: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The function.
    #[arg(required = true)]
    pub name: Option<String>,
    /// The version to roll out: `latest` (through $DEFAULT) or a number (through --alias).
    #[arg(long, required = true, value_parser = parse_label, value_name = "VERSION")]
    pub to: Option<VersionLabel>,
    /// The alias whose traffic moves (default: $DEFAULT).
    #[arg(long, value_name = "ALIAS")]
    pub alias: Option<String>,
    /// The candidate's share at each step, in percent, ending at 100.
    #[arg(long, value_delimiter = ',', value_parser = parse_percent_arg, default_value = "1,5,25,50,100", value_name = "P,P,...")]
    pub steps: Vec<BasisPoints>,
    /// How long each step is observed before it is judged (1s to 300s).
    #[arg(long, value_parser = parse_millis, default_value = "30s", value_name = "DURATION")]
    pub interval: u64,
    /// Roll back when the candidate's 5xx share (timeouts included) exceeds this.
    #[arg(long, value_parser = parse_percent_arg, default_value = "1%", value_name = "PERCENT")]
    pub max_error_rate: BasisPoints,
    /// Roll back when the candidate's p99 latency exceeds this.
    #[arg(long, value_parser = parse_millis, default_value = "1s", value_name = "DURATION")]
    pub max_p99: u64,
    /// Requests the candidate must serve in a step before it is judged.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub min_requests: u64,
    /// Follow the rollout until it ends, printing each decision; exits 2 if it rolls back.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn parse_label(text: &str) -> Result<VersionLabel, String> {
    VersionLabel::parse(text).ok_or_else(|| format!("{text:?} is not `latest` or a version number"))
}

pub async fn run(args: RolloutArgs) -> anyhow::Result<()> {
    let (name, client, method, suffix) = match args.action {
        Some(RolloutAction::Status(a)) => (a.name, a.client, Method::GET, ""),
        Some(RolloutAction::Pause(a)) => (a.name, a.client, Method::POST, "/pause"),
        Some(RolloutAction::Resume(a)) => (a.name, a.client, Method::POST, "/resume"),
        Some(RolloutAction::Abort(a)) => (a.name, a.client, Method::POST, "/abort"),
        None => return start(args.start).await,
    };
    let answer = AdminClient::new(&client)?
        .call(
            method,
            &format!("/v1/functions/{name}/rollout{suffix}"),
            None,
        )
        .await?;
    if client.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print_status(&answer);
    }
    Ok(())
}

async fn start(args: StartArgs) -> anyhow::Result<()> {
    let name = args.name.expect("clap requires the name");
    let client = AdminClient::new(&args.client)?;
    let body = json!({
        "to": args.to.expect("clap requires --to"),
        "alias": args.alias,
        "steps": args.steps.iter().map(|bp| bp.percent()).collect::<Vec<_>>(),
        "interval_ms": args.interval,
        "max_error_rate_percent": args.max_error_rate.percent(),
        "max_p99_ms": args.max_p99,
        "min_requests": args.min_requests,
    });
    let path = format!("/v1/functions/{name}/rollout");
    let mut answer = client.call(Method::POST, &path, Some(body)).await?;
    if !args.wait {
        if args.client.json {
            println!("{}", serde_json::to_string_pretty(&answer)?);
        } else {
            println!("{}", text(&answer["reason"]));
        }
        return Ok(());
    }
    let mut last = String::new();
    loop {
        let reason = text(&answer["reason"]);
        if reason != last {
            if !args.client.json {
                println!("{reason}");
            }
            last = reason;
        }
        match answer["phase"].as_str() {
            Some("running") | Some("paused") => {}
            Some("succeeded") => break,
            _ => {
                if args.client.json {
                    println!("{}", serde_json::to_string_pretty(&answer)?);
                }
                anyhow::bail!("the rollout of {name} did not succeed: {last}");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        answer = client.call(Method::GET, &path, None).await?;
    }
    if args.client.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    }
    Ok(())
}

fn print_status(answer: &Value) {
    let spec = &answer["spec"];
    println!(
        "rollout of {} version {} through {}: {} at {}% (step {} of {})",
        text(&answer["function"]),
        label(&spec["candidate"]),
        text(&spec["alias"]),
        text(&answer["phase"]),
        percent(&answer["current_percent"]),
        answer["step"].as_u64().unwrap_or(0) + 1,
        spec["steps_bp"].as_array().map_or(0, Vec::len),
    );
    println!("  stable version: {}", label(&spec["stable"]));
    println!("  {}", text(&answer["reason"]));
    if let Some(observing) = answer["observing"].as_object() {
        println!(
            "  this step so far ({:.1}s): candidate {} requests, {} errors, p99 {}; stable {} requests, {} errors, p99 {}",
            observing["elapsed_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            observing["candidate"]["requests"],
            observing["candidate"]["errors"],
            ms(&observing["candidate"]["p99_ms"]),
            observing["stable"]["requests"],
            observing["stable"]["errors"],
            ms(&observing["stable"]["p99_ms"]),
        );
    }
    for shadow in answer["shadow"].as_array().into_iter().flatten() {
        println!(
            "  shadow version {}: {} mirrored, {} matched, {} mismatched, {} dropped, {} errors, p99 {}",
            label(&shadow["version"]),
            shadow["sent"],
            shadow["matches"],
            shadow["mismatches"],
            shadow["dropped"],
            shadow["errors"],
            ms(&shadow["p99_ms"]),
        );
    }
    let rows: Vec<Vec<String>> = answer["judgments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|j| {
            vec![
                format!("{}%", percent(&j["step_percent"])),
                if j["passed"].as_bool() == Some(true) {
                    "passed".into()
                } else {
                    "BREACHED".into()
                },
                j["candidate"]["requests"].to_string(),
                format!(
                    "{:.2}%",
                    j["candidate"]["error_rate"].as_f64().unwrap_or(0.0) * 100.0
                ),
                ms(&j["candidate"]["p99_ms"]),
                ms(&j["stable"]["p99_ms"]),
            ]
        })
        .collect();
    if !rows.is_empty() {
        for line in table::render(
            &["STEP", "VERDICT", "REQUESTS", "ERRORS", "P99", "STABLE P99"],
            &rows,
        )
        .lines()
        {
            println!("  {line}");
        }
    }
}

/// `25`, `0.5`: a percentage without a needless `.0`.
fn percent(value: &Value) -> String {
    let p = value.as_f64().unwrap_or(0.0);
    if p.fract() == 0.0 {
        format!("{p:.0}")
    } else {
        format!("{p}")
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn label(value: &Value) -> String {
    match value {
        Value::String(s) if s == "$LATEST" => "$LATEST".into(),
        other => text(other),
    }
}

fn ms(value: &Value) -> String {
    value.as_f64().map_or("-".into(), |v| format!("{v:.1}ms"))
}
