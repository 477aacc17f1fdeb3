//! `fnhost usage [NAME]`: invocations, errors, cold starts, latency, billed time and GB-s.

use clap::{Args, ValueEnum};

use super::print_json;
use crate::api::{UsageGrouping, UsageReport};
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
    let by = match args.by {
        GroupBy::Function => UsageGrouping::Function,
        GroupBy::Version => UsageGrouping::Version,
        GroupBy::Alias => UsageGrouping::Alias,
        GroupBy::Minute => UsageGrouping::Minute,
    }
    .as_str();
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("since", &args.since.as_secs().max(1).to_string());
    query.append_pair("by", by);
    if let Some(name) = &args.name {
        query.append_pair("function", name);
    }
    let report: UsageReport = AdminClient::new(&args.client)?
        .get(&format!("/v1/usage?{}", query.finish()))
        .await?;
    if print_json(&args.client, &report)? {
        return Ok(());
    }
    let group = by.to_uppercase();
    let rows: Vec<Vec<String>> = report
        .rows
        .iter()
        .map(|row| {
            let group_value = match args.by {
                GroupBy::Function => String::new(),
                GroupBy::Version => row.version.clone().unwrap_or_else(|| "-".into()),
                GroupBy::Alias => match row.alias.as_deref() {
                    None | Some("") => "(direct)".into(),
                    Some(alias) => alias.to_string(),
                },
                GroupBy::Minute => row.minute.map_or("-".into(), minute_label),
            };
            vec![
                row.function.clone(),
                group_value,
                row.invocations.to_string(),
                row.errors.to_string(),
                row.cold_starts.to_string(),
                millis(row.p50_ms),
                millis(row.p99_ms),
                row.billed_ms.to_string(),
                format!("{:.6}", row.gb_seconds),
                format!("{:.6}", row.provisioned_gb_seconds),
                row.kv_operations.to_string(),
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
        "KV OPS",
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

fn millis(value: Option<f64>) -> String {
    value.map_or("-".into(), |ms| format!("{ms:.2}ms"))
}

/// `HH:MM` UTC of a Unix minute.
fn minute_label(minute: i64) -> String {
    let of_day = minute.rem_euclid(1440);
    format!("{:02}:{:02}", of_day / 60, of_day % 60)
}
