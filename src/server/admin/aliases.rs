//! Admin operations on traffic: custom aliases, `$DEFAULT`'s share to `$LATEST`, and promote.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::json_body::read_json;
use crate::api::{
    AliasList, AliasRequest, AliasView, Deleted, DeletedItem, Percent, PromoteRequest, Promoted,
    Route, Rule, TrafficRequest,
};
use crate::app::App;
use crate::model::{AliasRecord, DEFAULT_ALIAS, Why};
use crate::server::body::{Body, json};
use crate::server::error::ApiError;
use crate::store::FunctionRows;

/// `$DEFAULT` first, then the custom aliases by name.
pub fn alias_views(details: &FunctionRows) -> Vec<AliasView> {
    let policy = &details.default_policy;
    let default = AliasView {
        name: DEFAULT_ALIAS.to_string(),
        routes: policy
            .routes(details.info.newest_version)
            .iter()
            .map(Route::from)
            .collect(),
        sticky_header: policy.sticky_header.clone(),
        rules: Vec::new(),
        latest_percent: Some(Percent(policy.latest_bp)),
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
        routes: alias.spec.routes.iter().map(Route::from).collect(),
        sticky_header: alias.spec.sticky_header.clone(),
        rules: alias.spec.rules.iter().map(Rule::from).collect(),
        latest_percent: None,
        mirror: alias.spec.mirror.as_ref().map(Route::from),
        updated_at_ms: Some(alias.updated_at_ms),
    }
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

fn one_alias(details: &FunctionRows, alias: &str) -> Result<AliasView, ApiError> {
    alias_views(details)
        .into_iter()
        .find(|view| view.name == alias)
        .ok_or_else(|| {
            crate::store::StoreError::UnknownAlias(details.info.name.clone(), alias.into()).into()
        })
}

pub async fn set(
    host: &App,
    function: &str,
    alias: &str,
    actor: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: AliasRequest = read_json(request).await?;
    let spec = body.into_spec().map_err(ApiError::bad_request)?;
    let why = Why::by(actor, format!("alias {alias} set through the admin API"));
    let details = host.registry.set_alias(function, alias, spec, why).await?;
    tracing::info!(function, alias, "alias updated");
    Ok(json(StatusCode::OK, &one_alias(&details, alias)?))
}

pub async fn delete(
    host: &App,
    function: &str,
    alias: &str,
    actor: &str,
) -> Result<Response<Body>, ApiError> {
    let why = Why::by(
        actor,
        format!("alias {alias} deleted through the admin API"),
    );
    host.registry.delete_alias(function, alias, why).await?;
    Ok(json(
        StatusCode::OK,
        &Deleted::new(DeletedItem {
            function: Some(function.to_string()),
            alias: Some(alias.to_string()),
            ..Default::default()
        }),
    ))
}

pub async fn set_traffic(
    host: &App,
    function: &str,
    actor: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: TrafficRequest = read_json(request).await?;
    let latest_bp = body.latest_percent.map(|p| p.0);
    let details = host
        .registry
        .set_default_policy(
            function,
            latest_bp,
            body.sticky_header,
            Why::by(
                actor,
                match latest_bp {
                    Some(bp) => format!("traffic: $LATEST at {}%", bp),
                    None => "traffic: sticky header changed".to_string(),
                },
            ),
        )
        .await?;
    tracing::info!(function, latest_bp = ?latest_bp, "$DEFAULT traffic updated");
    Ok(json(StatusCode::OK, &one_alias(&details, DEFAULT_ALIAS)?))
}

/// Publishes `$LATEST` and gives the new version all of `$DEFAULT`'s traffic, atomically.
pub async fn promote(
    host: &App,
    function: &str,
    actor: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: PromoteRequest = read_json(request).await?;
    let published = host
        .registry
        .publish(
            function,
            body.description,
            true,
            Why::by(actor, "promote: publish $LATEST and send it all traffic"),
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
            version: published.version.into(),
            default: one_alias(&details, DEFAULT_ALIAS)?,
        },
    ))
}
