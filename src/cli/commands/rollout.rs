//! `fnhost rollout`: start an automatic, health-gated rollout, follow it, and steer it.

use std::time::Duration;

use clap::{Args, Subcommand};
use http::Method;

use super::traffic::parse_percent_arg;
use super::{print_json, version_label};
use crate::api::{ObservedView, Percent, RolloutPhase, RolloutView, StartRollout};
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
    let path = format!("/v1/functions/{name}/rollout{suffix}");
    let client_api = AdminClient::new(&client)?;
    let answer: RolloutView = if method == Method::GET {
        client_api.get(&path).await?
    } else {
        client_api
            .send_json(method, &path, &serde_json::Map::new())
            .await?
    };
    if !print_json(&client, &answer)? {
        print_status(&answer);
    }
    Ok(())
}

async fn start(args: StartArgs) -> anyhow::Result<()> {
    let name = args.name.expect("clap requires the name");
    let client = AdminClient::new(&args.client)?;
    let body = StartRollout {
        to: Some(args.to.expect("clap requires --to")),
        alias: args.alias,
        steps: Some(args.steps.iter().copied().map(Percent).collect()),
        interval_ms: Some(args.interval),
        max_error_rate_percent: Some(Percent(args.max_error_rate)),
        max_p99_ms: Some(args.max_p99),
        min_requests: Some(args.min_requests),
    };
    let path = format!("/v1/functions/{name}/rollout");
    let answer: RolloutView = client.send_json(Method::POST, &path, &body).await?;
    if !args.wait {
        if !print_json(&args.client, &answer)? {
            println!("{}", answer.reason);
        }
        return Ok(());
    }
    let answer = follow(&client, &name, answer, !args.client.json).await?;
    print_json(&args.client, &answer)?;
    succeeded(&name, &answer)
}

/// An error unless the rollout (ended) succeeded.
pub(super) fn succeeded(name: &str, answer: &RolloutView) -> anyhow::Result<()> {
    if answer.phase != RolloutPhase::Succeeded {
        anyhow::bail!("the rollout of {name} did not succeed: {}", answer.reason);
    }
    Ok(())
}

/// Follows a rollout until it ends, printing each new decision when `show` is set, and
/// returns how it ended.
pub(super) async fn follow(
    client: &AdminClient,
    name: &str,
    mut answer: RolloutView,
    show: bool,
) -> anyhow::Result<RolloutView> {
    let path = format!("/v1/functions/{name}/rollout");
    let mut last = String::new();
    loop {
        if answer.reason != last {
            if show {
                println!("{name}: {}", answer.reason);
            }
            last = answer.reason.clone();
        }
        match answer.phase {
            RolloutPhase::Running | RolloutPhase::Paused => {}
            RolloutPhase::Succeeded | RolloutPhase::RolledBack | RolloutPhase::Aborted => {
                return Ok(answer);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        answer = client.get(&path).await?;
    }
}

fn print_status(answer: &RolloutView) {
    let spec = &answer.spec;
    println!(
        "rollout of {} version {} through {}: {} at {}% (step {} of {})",
        answer.function,
        version_label(spec.candidate),
        spec.alias,
        phase_label(answer.phase),
        answer.current_percent,
        answer.step + 1,
        spec.steps_bp.len(),
    );
    println!("  stable version: {}", version_label(spec.stable));
    println!("  {}", answer.reason);
    if let Some(observing) = &answer.observing {
        println!(
            "  this step so far ({:.1}s): candidate {} requests, {} errors, p99 {}; stable {} requests, {} errors, p99 {}",
            observing.elapsed_ms as f64 / 1000.0,
            observing.candidate.requests,
            observing.candidate.errors,
            ms(observing.candidate.p99_ms),
            observing.stable.requests,
            observing.stable.errors,
            ms(observing.stable.p99_ms),
        );
    }
    for shadow in &answer.shadow {
        println!(
            "  shadow version {}: {} mirrored, {} matched, {} mismatched, {} dropped, {} errors, p99 {}",
            version_label(shadow.version),
            shadow.sent,
            shadow.matches,
            shadow.mismatches,
            shadow.dropped,
            shadow.errors,
            ms(shadow.p99_ms),
        );
    }
    let rows: Vec<Vec<String>> = answer
        .judgments
        .iter()
        .map(|j| {
            vec![
                format!("{}%", j.step_percent),
                if j.passed { "passed" } else { "BREACHED" }.into(),
                j.candidate.requests.to_string(),
                error_rate(&j.candidate),
                ms(j.candidate.p99_ms),
                ms(j.stable.p99_ms),
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

fn phase_label(phase: RolloutPhase) -> &'static str {
    match phase {
        RolloutPhase::Running => "running",
        RolloutPhase::Paused => "paused",
        RolloutPhase::Succeeded => "succeeded",
        RolloutPhase::RolledBack => "rolled_back",
        RolloutPhase::Aborted => "aborted",
    }
}

fn error_rate(observed: &ObservedView) -> String {
    format!("{:.2}%", observed.error_rate * 100.0)
}

fn ms(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.1}ms"))
}
