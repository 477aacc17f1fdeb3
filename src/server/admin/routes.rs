//! A namespace's HTTP routes: `GET /v1/namespaces/NS/routes`, `PUT` (all of them at once, as
//! a manifest sets them), `POST` (one, added or replacing the one with its match) and
//! `DELETE ...?match=HOST/PATH`. Each change swaps the whole route table in atomically.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::json_body::read_json;
use crate::api::{Deleted, DeletedItem, HttpRouteList, HttpRouteView};
use crate::app::App;
use crate::model::{HttpRoute, RouteMatch, RoutesChange, namespace_of};
use crate::server::body::{Body, json};
use crate::server::error::ApiError;

pub async fn list(host: &App, namespace: &str) -> Result<Response<Body>, ApiError> {
    let routes = host
        .registry
        .http_routes()
        .await?
        .into_iter()
        .filter(|r| r.namespace() == namespace);
    Ok(json(StatusCode::OK, &view(namespace, routes)))
}

pub async fn replace(
    host: &App,
    namespace: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: HttpRouteList = read_json(request).await?;
    let routes = body
        .routes
        .iter()
        .map(|r| parse(namespace, r))
        .collect::<Result<_, _>>()?;
    change(host, namespace, RoutesChange::Replace(routes)).await
}

pub async fn put(
    host: &App,
    namespace: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: HttpRouteView = read_json(request).await?;
    if body.matches.is_empty() {
        return Err(ApiError::bad_request(
            "send {\"match\": \"HOST/PATH/*\", \"target\": \"NAME[@QUALIFIER]\"}",
        ));
    }
    let route = parse(namespace, &body)?;
    change(host, namespace, RoutesChange::Put(route)).await
}

pub async fn delete(
    host: &App,
    namespace: &str,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let matches = form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "match")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| ApiError::bad_request("say which route: ?match=HOST/PATH/*"))?;
    let matches = RouteMatch::parse(&matches).map_err(|e| ApiError::bad_request(e.to_string()))?;
    host.registry
        .change_http_routes(namespace, RoutesChange::Delete(matches.clone()))
        .await?;
    tracing::info!(namespace, route = %matches, "HTTP route deleted");
    Ok(json(
        StatusCode::OK,
        &Deleted::new(DeletedItem {
            route: Some(matches.to_string()),
            ..Default::default()
        }),
    ))
}

async fn change(
    host: &App,
    namespace: &str,
    change: RoutesChange,
) -> Result<Response<Body>, ApiError> {
    let routes = host.registry.change_http_routes(namespace, change).await?;
    tracing::info!(namespace, routes = routes.len(), "HTTP routes changed");
    Ok(json(StatusCode::OK, &view(namespace, routes.into_iter())))
}

fn parse(namespace: &str, view: &HttpRouteView) -> Result<HttpRoute, ApiError> {
    HttpRoute::parse(namespace, &view.matches, &view.target, view.strip_prefix)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The API's view of routes, sorted by match so answers are stable.
pub fn view(namespace: &str, routes: impl Iterator<Item = HttpRoute>) -> HttpRouteList {
    let mut routes: Vec<HttpRoute> = routes.collect();
    routes.sort_by(|a, b| a.matches.cmp(&b.matches));
    HttpRouteList {
        namespace: namespace.to_string(),
        routes: routes
            .iter()
            .map(|r| {
                debug_assert_eq!(namespace_of(&r.function), namespace);
                HttpRouteView {
                    matches: r.matches.to_string(),
                    target: r.target(),
                    strip_prefix: r.strip_prefix,
                }
            })
            .collect(),
    }
}
