//! Admin operations on traffic: custom aliases, `$DEFAULT`'s share to `$LATEST`, and promote.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::json_body::read_json;
use crate::app::App;
use crate::model::BasisPoints;
use crate::model::{
    AliasRecord, AliasSpec, DEFAULT_ALIAS, HeaderMatch, RouteRule, VersionInfo, VersionLabel,
    WeightedRoute, Why,
};
use crate::registry::FunctionDetails;
use crate::server::body::{Body, json};
use crate::server::error::ApiError;

/// A route as the API shows it: weights as percentages.
#[derive(Serialize)]
pub struct RouteView {
    version: VersionLabel,
    percent: f64,
}

/// An alias as the API shows it; `$DEFAULT` also reports `latest_percent`.
#[derive(Serialize)]
pub struct AliasView {
    name: String,
    routes: Vec<RouteView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sticky_header: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rules: Vec<RouteRule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latest_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mirror: Option<RouteView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at_ms: Option<i64>,
}

fn percent(bp: BasisPoints) -> f64 {
    bp.percent()
}

fn route_views(routes: &[WeightedRoute]) -> Vec<RouteView> {
    routes
        .iter()
        .map(|r| RouteView {
            version: r.version,
            percent: percent(r.weight_bp),
        })
        .collect()
}

/// `$DEFAULT` first, then the custom aliases by name.
pub fn alias_views(details: &FunctionDetails) -> Vec<AliasView> {
    let policy = &details.default_policy;
    let default = AliasView {
        name: DEFAULT_ALIAS.to_string(),
        routes: route_views(&policy.routes(details.info.newest_version)),
        sticky_header: policy.sticky_header.clone(),
        rules: Vec::new(),
        latest_percent: Some(percent(policy.latest_bp)),
        mirror: None,
        updated_at_ms: None,
    };
    std::iter::once(default)
        .chain(details.aliases.iter().map(custom_view))
        .collect()
}

fn custom_view(alias: &AliasRecord) -> AliasView {
    AliasView {
        name: alias.name.clone(),
        routes: route_views(&alias.spec.routes),
        sticky_header: alias.spec.sticky_header.clone(),
        rules: alias.spec.rules.clone(),
        latest_percent: None,
        mirror: alias.spec.mirror.as_ref().map(|m| RouteView {
            version: m.version,
            percent: percent(m.weight_bp),
        }),
        updated_at_ms: Some(alias.updated_at_ms),
    }
}

#[derive(Serialize)]
struct AliasList {
    function: String,
    aliases: Vec<AliasView>,
}

pub async fn list(host: &App, function: &str) -> Result<Response<Body>, ApiError> {
    let details = host.registry.function(function).await?;
    Ok(json(
        StatusCode::OK,
        &AliasList {
            function: details.info.name.clone(),
            aliases: alias_views(&details),
        },
    ))
}

pub async fn get(host: &App, function: &str, alias: &str) -> Result<Response<Body>, ApiError> {
    let details = host.registry.function(function).await?;
    one_alias(&details, alias).map(|view| json(StatusCode::OK, &view))
}

fn one_alias(details: &FunctionDetails, alias: &str) -> Result<AliasView, ApiError> {
    alias_views(details)
        .into_iter()
        .find(|view| view.name == alias)
        .ok_or_else(|| {
            crate::store::StoreError::UnknownAlias(details.info.name.clone(), alias.into()).into()
        })
}

/// `PUT .../aliases/ALIAS` body.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasRequest {
    routes: Vec<RouteRequest>,
    #[serde(default)]
    sticky_header: Option<String>,
    #[serde(default)]
    rules: Vec<RuleRequest>,
    /// Shadow traffic: `{"version": 5, "percent": 20}`.
    #[serde(default)]
    mirror: Option<RouteRequest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteRequest {
    version: VersionLabel,
    /// A JSON number with at most two decimals; kept as written so 0.01 stays exact.
    percent: serde_json::Number,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleRequest {
    header: String,
    #[serde(default)]
    exact: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    version: VersionLabel,
}

pub async fn set(
    host: &App,
    function: &str,
    alias: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: AliasRequest = read_json(request).await?;
    if body.routes.is_empty() {
        return Err(ApiError::bad_request(
            "an alias needs routes: {\"routes\": [{\"version\": 3, \"percent\": 90}, ...]}",
        ));
    }
    let routes = body
        .routes
        .iter()
        .map(|route| {
            Ok(WeightedRoute {
                version: route.version,
                weight_bp: BasisPoints::parse(&route.percent.to_string()).map_err(|e| {
                    ApiError::bad_request(format!("version {}: {e}", route.version))
                })?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    let rules = body
        .rules
        .into_iter()
        .map(|rule| {
            let matcher = match (rule.exact, rule.prefix) {
                (Some(value), None) => HeaderMatch::Exact(value),
                (None, Some(prefix)) => HeaderMatch::Prefix(prefix),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "rule on {:?} needs exactly one of \"exact\" or \"prefix\"",
                        rule.header
                    )));
                }
            };
            Ok(RouteRule {
                header: rule.header,
                matcher,
                version: rule.version,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    let mirror = body
        .mirror
        .map(|route| {
            Ok::<_, ApiError>(WeightedRoute {
                version: route.version,
                weight_bp: BasisPoints::parse(&route.percent.to_string()).map_err(|e| {
                    ApiError::bad_request(format!("mirror to version {}: {e}", route.version))
                })?,
            })
        })
        .transpose()?;
    let spec = AliasSpec {
        routes,
        sticky_header: body.sticky_header,
        rules,
        mirror,
    };
    let why = Why::admin(format!("alias {alias} set through the admin API"));
    let details = host.registry.set_alias(function, alias, spec, why).await?;
    tracing::info!(function, alias, "alias updated");
    Ok(json(StatusCode::OK, &one_alias(&details, alias)?))
}

pub async fn delete(host: &App, function: &str, alias: &str) -> Result<Response<Body>, ApiError> {
    let why = Why::admin(format!("alias {alias} deleted through the admin API"));
    host.registry.delete_alias(function, alias, why).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "deleted": { "function": function, "alias": alias } }),
    ))
}

/// `PUT .../traffic` body: `$DEFAULT`'s share to `$LATEST`, and optionally its sticky header
/// (`null` removes it).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrafficRequest {
    #[serde(default)]
    latest_percent: Option<serde_json::Number>,
    #[serde(default, with = "double_option")]
    sticky_header: Option<Option<String>>,
}

/// Tells an absent field (keep) from an explicit `null` (clear).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

pub async fn set_traffic(
    host: &App,
    function: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: TrafficRequest = read_json(request).await?;
    let latest_bp = body
        .latest_percent
        .map(|p| BasisPoints::parse(&p.to_string()).map_err(ApiError::bad_request))
        .transpose()?;
    let details = host
        .registry
        .set_default_policy(
            function,
            latest_bp,
            body.sticky_header,
            Why::admin(match latest_bp {
                Some(bp) => format!("traffic: $LATEST at {}%", bp),
                None => "traffic: sticky header changed".to_string(),
            }),
        )
        .await?;
    tracing::info!(function, latest_bp = ?latest_bp, "$DEFAULT traffic updated");
    Ok(json(StatusCode::OK, &one_alias(&details, DEFAULT_ALIAS)?))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteRequest {
    #[serde(default)]
    description: String,
}

#[derive(Serialize)]
struct Promoted {
    created: bool,
    version: VersionInfo,
    default: AliasView,
}

/// Publishes `$LATEST` and gives the new version all of `$DEFAULT`'s traffic, atomically.
pub async fn promote(
    host: &App,
    function: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: PromoteRequest = read_json(request).await?;
    let published = host
        .registry
        .publish(
            function,
            body.description,
            true,
            Why::admin("promote: publish $LATEST and send it all traffic"),
        )
        .await?;
    let details = host.registry.function(function).await?;
    tracing::info!(
        function,
        version = published.version.version,
        "promoted $LATEST"
    );
    Ok(json(
        if published.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &Promoted {
            created: published.created,
            version: published.version,
            default: one_alias(&details, DEFAULT_ALIAS)?,
        },
    ))
}
