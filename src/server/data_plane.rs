//! The data plane: `/NAME[@QUALIFIER]/REST?QUERY` runs the function, which sees `/REST?QUERY`.
//!
//! The request path takes no lock and does no database or disk I/O when the function's code is
//! loaded: route lookup is a snapshot read (an alias then picks a version by rule, sticky
//! header or weight), then one fresh instance serves the request. Responses carry
//! `fnhost-version` and, when an alias chose it, `fnhost-alias`.

use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{HeaderName, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::Host;
use super::body::{Body, BoxError, discard, text};
use super::error::ApiError;
use crate::routing::{Deployment, Resolved};

const VERSION_HEADER: HeaderName = HeaderName::from_static("fnhost-version");
const ALIAS_HEADER: HeaderName = HeaderName::from_static("fnhost-alias");

pub async fn handle(host: &Host, request: Request<Incoming>) -> Response<Body> {
    if request.uri().path() == "/healthz" {
        return text(StatusCode::OK, "ok\n");
    }
    let resolved = match Target::parse(request.uri().path()) {
        None => Err(ApiError::not_found(
            "no function named in the path; call /NAME/... or /NAME@VERSION/...",
        )),
        Some(target) => match host
            .router
            .snapshot()
            .resolve(target.function, target.qualifier)
        {
            Ok(Resolved::Deployment(deployment)) => {
                Ok((deployment.clone(), None, target.rest_start))
            }
            Ok(Resolved::Alias(alias)) => Ok((
                alias.choose(request.headers()).clone(),
                Some(alias.header_value.clone()),
                target.rest_start,
            )),
            Err(e) => Err(ApiError::from(e)),
        },
    };
    let (deployment, alias, rest_start) = match resolved {
        Ok(resolved) => resolved,
        Err(error) => {
            discard(request.into_body()).await;
            return error.into_response();
        }
    };
    let mut response = match invoke(host, &deployment, rest_start, request).await {
        Ok(response) => response,
        Err((error, guest_output)) => {
            if error.status.is_server_error() {
                tracing::warn!(
                    function = %deployment.function,
                    version = %deployment.label,
                    error_id = error.error_id.as_deref().unwrap_or(""),
                    status = error.status.as_u16(),
                    guest_output = guest_output.as_deref().unwrap_or(""),
                    "{}", error.message
                );
            }
            error.into_response()
        }
    };
    let headers = response.headers_mut();
    headers.insert(VERSION_HEADER, deployment.version_header.clone());
    if let Some(alias) = alias {
        headers.insert(ALIAS_HEADER, alias);
    }
    response
}

/// Loads and runs the function. A failure comes with what the guest printed, for the log.
async fn invoke(
    host: &Host,
    deployment: &Arc<Deployment>,
    rest_start: usize,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, (ApiError, Option<String>)> {
    let component = host
        .engine
        .load(deployment.digest, || {
            host.registry.modules().path(&deployment.digest)
        })
        .await
        .map_err(|e| {
            let error = ApiError::internal("the function's code could not be loaded");
            tracing::error!(error_id = ?error.error_id, function = %deployment.function, error = %e, "load failed");
            (error, None)
        })?;
    *request.uri_mut() = function_uri(request.uri(), rest_start).map_err(|e| (e, None))?;
    let response = host
        .engine
        .invoke(&component, &deployment.config, request)
        .await
        .map_err(|failure| (ApiError::from(failure.error), failure.guest_output))?;
    Ok(response.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
}

/// The URI the function sees: the path after its name, the query, and the authority.
fn function_uri(original: &Uri, rest_start: usize) -> Result<Uri, ApiError> {
    let path = &original.path()[rest_start..];
    let path = if path.is_empty() { "/" } else { path };
    let path_and_query = match original.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    let mut parts = original.clone().into_parts();
    parts.path_and_query = Some(
        PathAndQuery::try_from(path_and_query)
            .map_err(|e| ApiError::bad_request(format!("invalid request path: {e}")))?,
    );
    Uri::from_parts(parts).map_err(|e| ApiError::bad_request(format!("invalid request URI: {e}")))
}

/// The parts of `/NAME[@QUALIFIER]/REST`.
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    function: &'a str,
    qualifier: Option<&'a str>,
    /// Byte offset in the path where `/REST` begins.
    rest_start: usize,
}

impl<'a> Target<'a> {
    fn parse(path: &'a str) -> Option<Self> {
        let after_slash = path.strip_prefix('/')?;
        let segment_len = after_slash.find('/').unwrap_or(after_slash.len());
        let segment = &after_slash[..segment_len];
        let (function, qualifier) = match segment.split_once('@') {
            Some((function, qualifier)) => (function, Some(qualifier)),
            None => (segment, None),
        };
        if function.is_empty() {
            return None;
        }
        Some(Self {
            function,
            qualifier,
            rest_start: 1 + segment_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_function_qualifier_and_rest() {
        let t = Target::parse("/hello@3/a/b").unwrap();
        assert_eq!((t.function, t.qualifier), ("hello", Some("3")));
        assert_eq!(&"/hello@3/a/b"[t.rest_start..], "/a/b");
        let t = Target::parse("/hello").unwrap();
        assert_eq!((t.function, t.qualifier, t.rest_start), ("hello", None, 6));
        assert!(Target::parse("/").is_none());
        assert!(Target::parse("/@3/x").is_none());
    }

    #[test]
    fn function_sees_rest_and_query() {
        let uri: Uri = "/hello@latest/a/b?x=1".parse().unwrap();
        let rewritten = function_uri(&uri, "/hello@latest".len()).unwrap();
        assert_eq!(rewritten.to_string(), "/a/b?x=1");
        let uri: Uri = "http://example.com/hello?q".parse().unwrap();
        let rewritten = function_uri(&uri, "/hello".len()).unwrap();
        assert_eq!(rewritten.to_string(), "http://example.com/?q");
    }
}
