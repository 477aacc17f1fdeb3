//! Traffic commands: `$DEFAULT`'s share to `$LATEST` (`traffic`, `rollback`, `promote`) and
//! custom aliases (`alias set|list|delete`).

use clap::{Args, Subcommand};
use http::Method;

use super::{print_json, version_label};
use crate::api::{
    AliasList, AliasRequest, AliasView, Deleted, Percent, PromoteRequest, Promoted, Route, Rule,
    TrafficRequest,
};
use crate::cli::ClientArgs;
use crate::cli::client::AdminClient;
use crate::cli::table;
use crate::model::BasisPoints;
use crate::model::VersionLabel;

#[derive(Debug, Args)]
pub struct TrafficArgs {
    /// The function whose $DEFAULT alias to change.
    pub name: String,
    /// Share of $DEFAULT's traffic for $LATEST, in percent (up to two decimals, e.g. 0.5);
    /// the rest goes to the newest published version.
    #[arg(value_parser = parse_percent_arg, value_name = "PERCENT")]
    pub percent: BasisPoints,
    /// Route by a stable hash of this request header (e.g. user-id), so a user keeps their
    /// version while the share stays, and only moves towards $LATEST as it grows.
    #[arg(long, value_name = "HEADER", conflicts_with = "no_sticky")]
    pub sticky_header: Option<String>,
    /// Stop routing $DEFAULT by a sticky header.
    #[arg(long)]
    pub no_sticky: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The function whose $LATEST to publish and send all $DEFAULT traffic to.
    pub name: String,
    /// A note stored with the new version.
    #[arg(long, default_value = "")]
    pub description: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Create or replace an alias: routes VERSION=PERCENT (VERSION is a number or latest)
    /// summing to exactly 100, e.g. `fnhost alias set shop prod 3=90 4=10`.
    Set(AliasSetArgs),
    /// List a function's aliases, $DEFAULT first.
    List(super::NameArgs),
    /// Delete an alias.
    Delete(AliasNameArgs),
    /// Show every change to where a function's traffic goes (manual and automatic): when,
    /// from what, to what, by whom and why.
    History(super::history::HistoryArgs),
}

#[derive(Debug, Args)]
pub struct AliasSetArgs {
    /// The function.
    pub name: String,
    /// The alias name (a lowercase DNS label; not a number, `latest` or `default`).
    pub alias: String,
    /// Weighted routes, VERSION=PERCENT.
    #[arg(required = true, value_parser = parse_route, value_name = "VERSION=PERCENT")]
    pub routes: Vec<(VersionLabel, BasisPoints)>,
    /// Route by a stable hash of this request header so each user keeps their version.
    #[arg(long, value_name = "HEADER")]
    pub sticky_header: Option<String>,
    /// Send matching requests to a version before weights apply: HEADER=VALUE@VERSION
    /// (exact) or HEADER^=PREFIX@VERSION (prefix), e.g. 'app-version^=2.@4'. Repeatable;
    /// the first match wins.
    #[arg(long = "rule", value_parser = parse_rule, value_name = "RULE")]
    pub rules: Vec<Rule>,
    /// Shadow traffic: also send this share of requests to VERSION (e.g. 5=20%). Clients
    /// always get the routed version's answer; the shadow's is compared and dropped, and
    /// functions see `fnhost-shadow: 1` on mirrored requests.
    #[arg(long, value_parser = parse_route, value_name = "VERSION=PERCENT")]
    pub mirror: Option<(VersionLabel, BasisPoints)>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct AliasNameArgs {
    /// The function.
    pub name: String,
    /// The alias to delete.
    pub alias: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn traffic(args: TrafficArgs) -> anyhow::Result<()> {
    let sticky_header = if args.no_sticky {
        Some(None)
    } else {
        args.sticky_header.clone().map(Some)
    };
    let body = TrafficRequest {
        latest_percent: Some(Percent(args.percent)),
        sticky_header,
    };
    set_traffic(&args.name, &body, &args.client).await
}

pub async fn rollback(args: super::NameArgs) -> anyhow::Result<()> {
    let body = TrafficRequest {
        latest_percent: Some(Percent::default()),
        sticky_header: None,
    };
    set_traffic(&args.name, &body, &args.client).await
}

async fn set_traffic(name: &str, body: &TrafficRequest, client: &ClientArgs) -> anyhow::Result<()> {
    let answer: AliasView = AdminClient::new(client)?
        .send_json(Method::PUT, &format!("/v1/functions/{name}/traffic"), body)
        .await?;
    if !print_json(client, &answer)? {
        println!("{name} $DEFAULT: {}", describe_routes(&answer.routes));
    }
    Ok(())
}

pub async fn promote(args: PromoteArgs) -> anyhow::Result<()> {
    let answer: Promoted = AdminClient::new(&args.client)?
        .send_json(
            Method::POST,
            &format!("/v1/functions/{}/promote", args.name),
            &PromoteRequest {
                description: args.description,
            },
        )
        .await?;
    if print_json(&args.client, &answer)? {
        return Ok(());
    }
    let verb = if answer.created {
        "published"
    } else {
        "already published as"
    };
    println!(
        "{} {verb} version {}; $DEFAULT: {}",
        args.name,
        answer.version.version,
        describe_routes(&answer.default.routes)
    );
    Ok(())
}

pub async fn alias(command: AliasCommand) -> anyhow::Result<()> {
    match command {
        AliasCommand::History(args) => super::history::run(args).await?,
        AliasCommand::Set(args) => {
            let route = |(version, bp): (VersionLabel, BasisPoints)| Route {
                version,
                percent: Percent(bp),
            };
            let body = AliasRequest {
                routes: args.routes.iter().copied().map(route).collect(),
                sticky_header: args.sticky_header.clone(),
                rules: args.rules.clone(),
                mirror: args.mirror.map(route),
            };
            let answer: AliasView = AdminClient::new(&args.client)?
                .send_json(
                    Method::PUT,
                    &format!("/v1/functions/{}/aliases/{}", args.name, args.alias),
                    &body,
                )
                .await?;
            if !print_json(&args.client, &answer)? {
                println!(
                    "{}@{}: {}",
                    args.name,
                    args.alias,
                    describe_routes(&answer.routes)
                );
            }
        }
        AliasCommand::List(args) => {
            let path = format!("/v1/functions/{}/aliases", args.name);
            let Some(answer) = super::fetch_for_table::<AliasList>(&args.client, &path).await?
            else {
                return Ok(());
            };
            let rows: Vec<Vec<String>> = answer
                .aliases
                .iter()
                .map(|alias| {
                    vec![
                        alias.name.clone(),
                        match &alias.mirror {
                            Some(mirror) => format!(
                                "{} (mirror {}={}%)",
                                describe_routes(&alias.routes),
                                version_label(mirror.version),
                                mirror.percent
                            ),
                            None => describe_routes(&alias.routes),
                        },
                        alias.sticky_header.clone().unwrap_or_else(|| "-".into()),
                        describe_rules(&alias.rules),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(&["ALIAS", "ROUTES", "STICKY", "RULES"], &rows)
            );
        }
        AliasCommand::Delete(args) => {
            let answer: Deleted = AdminClient::new(&args.client)?
                .delete(&format!(
                    "/v1/functions/{}/aliases/{}",
                    args.name, args.alias
                ))
                .await?;
            if !print_json(&args.client, &answer)? {
                println!("deleted alias {}@{}", args.name, args.alias);
            }
        }
    }
    Ok(())
}

/// `3: 90%, $LATEST: 10%`.
fn describe_routes(routes: &[Route]) -> String {
    routes
        .iter()
        .map(|r| format!("{}: {}%", version_label(r.version), r.percent))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_rules(rules: &[Rule]) -> String {
    let rules: Vec<String> = rules
        .iter()
        .map(|rule| {
            let (op, value) = match (&rule.exact, &rule.prefix) {
                (Some(v), _) => ("=", v.as_str()),
                (_, Some(v)) => ("^=", v.as_str()),
                _ => ("?", ""),
            };
            format!(
                "{}{op}{value} -> {}",
                rule.header,
                version_label(rule.version)
            )
        })
        .collect();
    if rules.is_empty() {
        "-".into()
    } else {
        rules.join("; ")
    }
}

/// A percentage argument (`12.5` or `12.5%`) in basis points.
pub(super) fn parse_percent_arg(text: &str) -> Result<BasisPoints, String> {
    BasisPoints::parse(text.trim_end_matches('%'))
}

fn parse_version(text: &str) -> Result<VersionLabel, String> {
    VersionLabel::parse(text)
        .ok_or_else(|| format!("{text:?} is not a version: use a number from 1, or latest"))
}

/// `3=90` or `latest=12.5`.
fn parse_route(text: &str) -> Result<(VersionLabel, BasisPoints), String> {
    let (version, percent) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} must be VERSION=PERCENT, e.g. 3=90"))?;
    Ok((parse_version(version)?, parse_percent_arg(percent)?))
}

/// `HEADER=VALUE@VERSION` or `HEADER^=PREFIX@VERSION`, as the API's rule.
fn parse_rule(text: &str) -> Result<Rule, String> {
    let usage = || format!("{text:?} must be HEADER=VALUE@VERSION or HEADER^=PREFIX@VERSION");
    let (condition, version) = text.rsplit_once('@').ok_or_else(usage)?;
    let version = parse_version(version)?;
    let rule = |header: &str, exact: Option<&str>, prefix: Option<&str>| Rule {
        header: header.to_string(),
        exact: exact.map(str::to_string),
        prefix: prefix.map(str::to_string),
        version,
    };
    if let Some((header, prefix)) = condition.split_once("^=") {
        return Ok(rule(header, None, Some(prefix)));
    }
    let (header, value) = condition.split_once('=').ok_or_else(usage)?;
    Ok(rule(header, Some(value), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_rules_parse() {
        assert_eq!(
            parse_route("3=90"),
            Ok((VersionLabel::Number(3), BasisPoints::new(9000)))
        );
        assert_eq!(
            parse_route("latest=0.01%"),
            Ok((VersionLabel::Latest, BasisPoints::new(1)))
        );
        assert!(parse_route("3").is_err());
        assert!(parse_route("prod=10").is_err());
        let prefix = parse_rule("app-version^=2.@4").unwrap();
        assert_eq!(
            (
                prefix.header.as_str(),
                prefix.prefix.as_deref(),
                prefix.exact
            ),
            ("app-version", Some("2."), None)
        );
        assert_eq!(prefix.version, VersionLabel::Number(4));
        let exact = parse_rule("x-tenant=a@b@latest").unwrap();
        assert_eq!(exact.exact.as_deref(), Some("a@b"));
        assert_eq!(exact.version, VersionLabel::Latest);
        assert!(parse_rule("nothing").is_err());
    }
}
