//! `fnhost logs NAME`: what a function printed, per invocation, optionally following.

use clap::Args;
use std::io::Write as _;

use crate::api::LogPage;
use crate::cli::ClientArgs;
use crate::cli::client::AdminClient;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The function.
    pub name: String,
    /// Only this version (a number or latest).
    #[arg(long, value_name = "N")]
    pub version: Option<String>,
    /// Keep waiting for new output (Ctrl-C to stop).
    #[arg(long, short = 'f')]
    pub follow: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.client)?;
    let mut after = 0u64;
    loop {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("after", &after.to_string());
        if let Some(version) = &args.version {
            query.append_pair("version", version);
        }
        if args.follow {
            query.append_pair("follow", "1");
        }
        let page: LogPage = client
            .get(&format!(
                "/v1/functions/{}/logs?{}",
                args.name,
                query.finish()
            ))
            .await?;
        // Written, not println!'d: a closed pipe (`| head`) is an error `main` ends quietly
        // on, not a panic.
        let mut out = std::io::stdout().lock();
        for entry in &page.entries {
            if args.client.json {
                writeln!(out, "{}", serde_json::to_string(entry)?)?;
                continue;
            }
            for line in entry.text.lines() {
                writeln!(
                    out,
                    "{} v{} [{}] {line}",
                    format_time(entry.time_ms),
                    entry.version,
                    entry.request_id,
                )?;
            }
        }
        out.flush()?;
        drop(out);
        after = page.next_after;
        if !args.follow {
            return Ok(());
        }
    }
}

/// `HH:MM:SS.mmm` UTC: enough to order and correlate lines.
fn format_time(ms: i64) -> String {
    let day_ms = ms.rem_euclid(86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_time_of_day() {
        assert_eq!(super::format_time(0), "00:00:00.000");
        assert_eq!(super::format_time(86_400_000 + 3_723_004), "01:02:03.004");
    }
}
