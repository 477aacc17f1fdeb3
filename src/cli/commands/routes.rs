//! `fnhost route set|ls|rm`: a namespace's HTTP routes (which function serves a host and
//! path prefix on the data plane).

use clap::{Args, Subcommand};
use http::Method;

use super::print_json;
use crate::api::{Deleted, HttpRouteList, HttpRouteView};
use crate::cli::ClientArgs;
use crate::cli::client::AdminClient;
use crate::model::DEFAULT_NAMESPACE;

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Route a host and path prefix to a function: `route set shop.example.com/api/cart/*
    /// cart@prod`. The request's host's routes are tried first, then wildcard hosts
    /// (`*.example.com`, most specific first), then routes for any host (`/api/*`); the
    /// longest matching prefix wins. Replaces a route with the same match.
    Set(SetArgs),
    /// List the namespace's routes.
    Ls(ListArgs),
    /// Remove the route with this match.
    Rm(RemoveArgs),
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// `HOST/PATH/*` (one host, any port), `*.DOMAIN/PATH/*` (every name under DOMAIN) or
    /// `/PATH/*` (any host); the prefix matches whole path segments, so `/api/cart` never
    /// matches `/api/cartoon`.
    #[arg(value_name = "MATCH")]
    pub matches: String,
    /// `NAME[@VERSION|@ALIAS]` in the namespace; no qualifier means `$DEFAULT`.
    pub target: String,
    /// The function sees the path after the prefix (`/api/cart/items` -> `/items`) instead
    /// of the whole path.
    #[arg(long)]
    pub strip_prefix: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The route's match, as `route ls` shows it.
    #[arg(value_name = "MATCH")]
    pub matches: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The admin path of `client`'s namespace's routes.
fn routes_path(client: &ClientArgs) -> String {
    let namespace = client.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    format!("/v1/namespaces/{namespace}/routes")
}

pub async fn run(command: RouteCommand) -> anyhow::Result<()> {
    match command {
        RouteCommand::Set(args) => {
            let route = HttpRouteView {
                matches: args.matches,
                target: args.target,
                strip_prefix: args.strip_prefix,
            };
            let list: HttpRouteList = AdminClient::new(&args.client)?
                .send_json(Method::POST, &routes_path(&args.client), &route)
                .await?;
            if !print_json(&args.client, &list)? {
                print_routes(&list);
            }
        }
        RouteCommand::Ls(args) => {
            let list: HttpRouteList = AdminClient::new(&args.client)?
                .get(&routes_path(&args.client))
                .await?;
            if !print_json(&args.client, &list)? {
                print_routes(&list);
            }
        }
        RouteCommand::Rm(args) => {
            let path = format!(
                "{}?match={}",
                routes_path(&args.client),
                form_urlencoded::byte_serialize(args.matches.as_bytes()).collect::<String>()
            );
            let answer: Deleted = AdminClient::new(&args.client)?.delete(&path).await?;
            if !print_json(&args.client, &answer)? {
                println!(
                    "removed route {}",
                    answer.deleted.route.unwrap_or(args.matches)
                );
            }
        }
    }
    Ok(())
}

fn print_routes(list: &HttpRouteList) {
    if list.routes.is_empty() {
        println!("namespace {} has no HTTP routes", list.namespace);
        return;
    }
    let rows: Vec<Vec<String>> = list
        .routes
        .iter()
        .map(|r| {
            vec![
                r.matches.clone(),
                r.target.clone(),
                if r.strip_prefix { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::cli::table::render(&["MATCH", "TARGET", "STRIP PREFIX"], &rows)
    );
}
