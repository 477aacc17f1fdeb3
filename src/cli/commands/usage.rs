//! `fnhost usage [NAME]`: invocations, errors, cold starts, latency, billed time and GB-s.

use clap::{Args, ValueEnum};
use http::Method;
use serde_json::Value;

use crate::cli::ClientArgs;
use crate::cli::client::AdminClient;
use crate::cli::table;
use crate::cli::units::parse_duration;

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Only this function (default: all).
    pub name: Option<String>,
    /// How far back, e.g. 15m, 1h, 24h.
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub since: std::time::Duration,
    /// Group rows by version, alias, minute, or just function.
    #[arg(long, value_enum, default_value_t = GroupBy::Version)]
    pub by: GroupBy,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum GroupBy {
    Function,
    Version,
    Alias,
    Minute,
}

pub async fn run(args: UsageArgs) -> anyhow::Result<()> {
    let by = format!("{:?}", args.by).to_lowercase();
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("since", &args.since.as_secs().max(1).to_string());
    query.append_pair("by", &by);
    if let Some(name) = &args.name {
        query.append_pair("function", name);
    }
    let report = AdminClient::new(&args.client)?
        .call(Method::GET, &format!("/v1/usage?{}", query.finish()), None)
        .await?;
    if args.client.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let group = by.to_uppercase();
    let rows: Vec<Vec<String>> = report["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            let group_value = match args.by {
                GroupBy::Function => String::new(),
                GroupBy::Version => text(&row["version"]),
                GroupBy::Alias => match text(&row["alias"]) {
                    a if a.is_empty() => "(direct)".into(),
                    a => a,
                },
                GroupBy::Minute => row["minute"].as_i64().map_or("-".into(), minute_label),
            };
            vec![
                text(&row["function"]),
                group_value,
                text(&row["invocations"]),
                text(&row["errors"]),
                text(&row["cold_starts"]),
                millis(&row["p50_ms"]),
                millis(&row["p99_ms"]),
                text(&row["billed_ms"]),
                format!("{:.6}", row["gb_seconds"].as_f64().unwrap_or(0.0)),
                format!(
                    "{:.6}",
                    row["provisioned_gb_seconds"].as_f64().unwrap_or(0.0)
                ),
            ]
        })
        .collect();
    let mut headers = vec![
        "FUNCTION",
        &group,
        "INVOCATIONS",
        "ERRORS",
        "COLD",
        "P50",
        "P99",
        "BILLED MS",
        "GB-S",
        "PROVISIONED GB-S",
    ];
    if matches!(args.by, GroupBy::Function) {
        headers.remove(1);
    }
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|mut r| {
            if matches!(args.by, GroupBy::Function) {
                r.remove(1);
            }
            r
        })
        .collect();
    print!("{}", table::render(&headers, &rows));
    Ok(())
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn millis(value: &Value) -> String {
    value.as_f64().map_or("-".into(), |ms| format!("{ms:.2}ms"))
}

/// `HH:MM` UTC of a Unix minute.
fn minute_label(minute: i64) -> String {
    let of_day = minute.rem_euclid(1440);
    format!("{:02}:{:02}", of_day / 60, of_day % 60)
}
