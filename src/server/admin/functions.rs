//! Admin operations on functions and versions: list, show, configure, publish, delete.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::json_body::read_json;
use crate::api::{
    Deleted, DeletedItem, FunctionDetail, FunctionList, FunctionView, PublishRequest, Published,
    VersionList, VersionView,
};
use crate::app::App;
use crate::model::{ConfigPatch, FunctionName, Principal, Why, namespace_of};
use crate::server::body::{Body, json};
use crate::server::error::ApiError;

/// `?namespace=NS`: one namespace's functions (a key's own by default), else all.
pub async fn list(
    host: &App,
    principal: &Principal,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let namespace = super::listing_scope(principal, request)?;
    let functions = host.registry.list().await?;
    Ok(json(
        StatusCode::OK,
        &FunctionList {
            functions: functions
                .into_iter()
                .filter(|f| {
                    namespace
                        .as_deref()
                        .is_none_or(|ns| namespace_of(&f.name) == ns)
                })
                .map(FunctionView::from)
                .collect(),
        },
    ))
}

/// `GET /v1/functions/NAME/code`: `$LATEST`'s component as uploaded (what `fnhost export`
/// saves), with its digest in `fnhost-digest`.
pub async fn code(host: &App, name: &str) -> Result<Response<Body>, ApiError> {
    let digest = host.registry.function(name).await?.info.latest.digest;
    let bytes =
        host.registry.modules().fetch(&digest).await.map_err(|e| {
            ApiError::internal(format!("reading the code of {name} ({digest}): {e}"))
        })?;
    let mut response = Response::new(crate::server::body::full(bytes));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/wasm"),
    );
    headers.insert(
        "fnhost-digest",
        http::HeaderValue::from_str(&digest.to_string()).expect("a digest is ASCII"),
    );
    Ok(response)
}

pub async fn get(host: &App, name: &str) -> Result<Response<Body>, ApiError> {
    let details = host.registry.function(name).await?;
    let aliases = super::aliases::alias_views(&details);
    Ok(json(
        StatusCode::OK,
        &FunctionDetail {
            access: details.access,
            function: details.info.into(),
            versions: details
                .versions
                .into_iter()
                .map(VersionView::from)
                .collect(),
            aliases,
        },
    ))
}

pub async fn delete(host: &App, name: &str, actor: &str) -> Result<Response<Body>, ApiError> {
    host.delete_function(name, actor).await?;
    Ok(json(
        StatusCode::OK,
        &Deleted::new(DeletedItem {
            function: Some(name.to_string()),
            ..Default::default()
        }),
    ))
}

pub async fn update_config(
    host: &App,
    name: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let patch: ConfigPatch = read_json(request).await?;
    let info = host.registry.update_config(name, patch).await?;
    Ok(json(StatusCode::OK, &FunctionView::from(info)))
}

pub async fn versions(host: &App, name: &str) -> Result<Response<Body>, ApiError> {
    let details = host.registry.function(name).await?;
    Ok(json(
        StatusCode::OK,
        &VersionList {
            function: details.info.name,
            versions: details
                .versions
                .into_iter()
                .map(VersionView::from)
                .collect(),
        },
    ))
}

pub async fn version(host: &App, name: &str, number: &str) -> Result<Response<Body>, ApiError> {
    let number = parse_version(name, number)?;
    let details = host.registry.function(name).await?;
    let version = details
        .versions
        .into_iter()
        .find(|v| v.version == number)
        .ok_or_else(|| {
            ApiError::from(crate::store::StoreError::UnknownVersion(
                name.to_string(),
                number,
            ))
        })?;
    Ok(json(StatusCode::OK, &VersionView::from(version)))
}

pub async fn publish(
    host: &App,
    name: &str,
    actor: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: PublishRequest = read_json(request).await?;
    let published = host
        .registry
        .publish(
            name,
            body.description,
            false,
            Why::by(actor, "published $LATEST"),
        )
        .await?;
    let status = if published.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(
        status,
        &Published {
            created: published.created,
            version: published.version.into(),
        },
    ))
}

pub async fn delete_version(
    host: &App,
    name: &str,
    number: &str,
    actor: &str,
) -> Result<Response<Body>, ApiError> {
    let number = parse_version(name, number)?;
    host.delete_version(name, number, actor).await?;
    Ok(json(
        StatusCode::OK,
        &Deleted::new(DeletedItem {
            function: Some(name.to_string()),
            version: Some(number),
            ..Default::default()
        }),
    ))
}

fn parse_version(name: &str, text: &str) -> Result<u32, ApiError> {
    match crate::model::Qualifier::parse(text) {
        Some(crate::model::Qualifier::Version(n)) => Ok(n),
        _ => Err(ApiError::not_found(format!(
            "function {name:?} has no version {text:?}; versions are numbers from 1"
        ))),
    }
}

/// Validates a name taken from the path (uploads create functions, so names are checked there).
pub fn function_name(name: &str) -> Result<FunctionName, ApiError> {
    Ok(FunctionName::parse(name)?)
}
