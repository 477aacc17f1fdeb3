//! `fnhost alias history NAME [ALIAS]`: who moved traffic, when, from what to what, and why.

use clap::Args;

use crate::api::HistoryPage;
use crate::cli::ClientArgs;
use crate::cli::table;
use crate::model::AliasSpec;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The function.
    pub name: String,
    /// Only this alias ($DEFAULT or a custom alias); default: all.
    pub alias: Option<String>,
    /// How many changes to show, newest first.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub limit: u32,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: HistoryArgs) -> anyhow::Result<()> {
    let mut path = format!("/v1/functions/{}/history?limit={}", args.name, args.limit);
    if let Some(alias) = &args.alias {
        let encoded: String = form_urlencoded::byte_serialize(alias.as_bytes()).collect();
        path.push_str(&format!("&alias={encoded}"));
    }
    let Some(answer) = super::fetch_for_table::<HistoryPage>(&args.client, &path).await? else {
        return Ok(());
    };
    let rows: Vec<Vec<String>> = answer
        .changes
        .iter()
        .map(|change| {
            vec![
                time_label(change.at_ms),
                change.alias.clone(),
                routes(change.before.as_ref()),
                routes(change.after.as_ref()),
                change.actor.clone(),
                change.reason.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(&["TIME (UTC)", "ALIAS", "FROM", "TO", "BY", "WHY"], &rows)
    );
    Ok(())
}

/// `3:90% latest:10%`, or `(none)` for a created or deleted alias.
pub fn routes(spec: Option<&AliasSpec>) -> String {
    let Some(spec) = spec else {
        return "(none)".into();
    };
    spec.routes
        .iter()
        .filter(|r| r.weight_bp.get() > 0)
        .map(|r| format!("{}:{}%", r.version, r.weight_bp))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix-millisecond time.
fn time_label(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_routes_and_times() {
        let spec: AliasSpec = serde_json::from_value(serde_json::json!({"routes": [
            {"version": 3, "weight_bp": 9000},
            {"version": "$LATEST", "weight_bp": 1000},
            {"version": 2, "weight_bp": 0}
        ]}))
        .unwrap();
        assert_eq!(routes(Some(&spec)), "3:90% latest:10%");
        assert_eq!(routes(None), "(none)");
        assert_eq!(time_label(0), "1970-01-01 00:00:00");
        assert_eq!(time_label(1_795_996_800_000), "2026-11-30 00:00:00");
    }
}
