//! The data plane: `/NAME[@QUALIFIER]/REST?QUERY` runs the function, which sees `/REST?QUERY`.
//!
//! The request path takes no lock and does no database or disk I/O when the function's code is
//! loaded: route lookup is a snapshot read (an alias then picks a version by rule, sticky
//! header or weight), then one fresh instance serves the request. Responses carry
//! `fnhost-version` and, when an alias chose it, `fnhost-alias`.

use crate::engine::fairness::{ShortWork, Work};
use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::{Body, BoxError};
use super::error::ApiError;
use super::shadow::{self, Answer, ObservedBody};
use crate::app::App;
use crate::auth::Refused;
use crate::drain::discard;
use crate::invocation::{Admit, Call, Caller, RequestBody};
use crate::metering::ShadowOutcome;
use crate::model::Access;
use crate::routing::{AliasRoutes, Deployment, Resolved, RouteError, RoutingTable};
use tokio::sync::oneshot;
use tracing::Instrument as _;

const VERSION_HEADER: HeaderName = HeaderName::from_static("fnhost-version");
const ALIAS_HEADER: HeaderName = HeaderName::from_static("fnhost-alias");
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("fnhost-request-id");
const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub async fn handle(host: &Arc<App>, request: Request<Incoming>) -> Response<Body> {
    if let Some(response) = super::probe(host, request.uri().path()) {
        return response;
    }
    let Some(tracing) = &host.tracing else {
        return serve(host, request, None).await;
    };
    let trace = tracing.request(request.headers(), request.method().to_string());
    trace.set("http.request.method", request.method().as_str());
    trace.set("url.path", request.uri().path());
    trace.set("url.scheme", "http");
    if let Some(address) = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        trace.set("server.address", address);
    }
    let response = serve(host, request, Some(&trace)).await;
    let status = response.status();
    trace.set("http.response.status_code", i64::from(status.as_u16()));
    // The span ends when the last of this and the guest's instance is done (a streamed
    // response's last byte).
    trace.finish(
        status
            .is_server_error()
            .then(|| status.as_u16().to_string()),
    );
    response
}

async fn serve(
    host: &Arc<App>,
    mut request: Request<Incoming>,
    trace: Option<&Arc<crate::telemetry::RequestTrace>>,
) -> Response<Body> {
    // Short work from now: CPU hogs leave this request a thread on its whole path.
    let short = host.engine.short_work();
    let request_id = request_id(&request);
    let asynchronous = match invocation_type(&request) {
        Ok(asynchronous) => asynchronous,
        Err(error) => {
            discard(request.into_body()).await;
            return with_request_id(error.into_response(), &request_id);
        }
    };
    strip_reserved(request.headers_mut());
    let resolved = resolve(&host.router.snapshot(), &request);
    let resolved =
        resolved.and_then(|resolved| guard(host, &resolved.0, &mut request).map(|()| resolved));
    let (deployment, alias, rest_start) = match resolved {
        Ok(resolved) => resolved,
        Err(error) => {
            discard(request.into_body()).await;
            return with_request_id(error.into_response(), &request_id);
        }
    };
    if asynchronous {
        // Queued for later in the version chosen now; mirrors see live traffic only.
        let queued = match function_uri(request.uri(), rest_start) {
            Ok(uri) => {
                *request.uri_mut() = uri;
                super::asynchronous::accept(host, &deployment, request.map(RequestBody::Streaming))
                    .await
            }
            Err(error) => {
                discard(request.into_body()).await;
                Err(error)
            }
        };
        let response = queued.unwrap_or_else(ApiError::into_response);
        return with_request_id(response, &request_id);
    }
    let (request, observer) = match mirror(
        host,
        alias.as_deref(),
        &deployment,
        request,
        rest_start,
        &request_id,
    )
    .await
    {
        Ok(mirrored) => mirrored,
        Err(error) => return with_request_id(error.into_response(), &request_id),
    };
    if let Some(trace) = trace {
        trace.rename(format!("{} /{}", request.method(), deployment.function));
        trace.set("http.route", format!("/{}", deployment.function));
        trace.set("faas.name", deployment.function.to_string());
        trace.set(
            "fnhost.namespace",
            crate::model::namespace_of(&deployment.function),
        );
        trace.set("faas.version", deployment.label.to_string());
        if let Some(alias) = &alias {
            trace.set("fnhost.alias", alias.name.to_string());
        }
    }
    let mut request = request;
    if let Some(trace) = trace {
        // The invocation writes the guest's spans under it.
        request.extensions_mut().insert(trace.clone());
    }
    let span = tracing::info_span!(
        "invoke",
        function = %deployment.function,
        version = %deployment.label,
        request_id = request_id.to_str().unwrap_or(""),
    );
    let alias_name = alias.as_ref().map(|a| a.name.clone());
    let mut response = match invoke(
        host,
        &deployment,
        alias_name.as_ref(),
        rest_start,
        request,
        &request_id,
        short,
    )
    .instrument(span.clone())
    .await
    {
        Ok(response) => response,
        Err((error, guest_output)) => {
            if error.status.is_server_error() {
                span.in_scope(|| {
                    tracing::warn!(
                        error_id = error.error_id.as_deref().unwrap_or(""),
                        status = error.status.as_u16(),
                        guest_output = guest_output.as_deref().unwrap_or(""),
                        "{}",
                        error.message
                    )
                });
            }
            error.into_response()
        }
    };
    let headers = response.headers_mut();
    headers.insert(VERSION_HEADER, deployment.version_header.clone());
    if let Some(alias) = alias {
        headers.insert(ALIAS_HEADER, alias.header_value.clone());
    }
    let response = with_request_id(response, &request_id);
    match observer {
        Some(sender) => {
            let status = response.status().as_u16();
            response.map(|body| ObservedBody::new(body, status, sender).boxed_unsync())
        }
        None => response,
    }
}

/// The deployment a request goes to, the alias that chose it (if one did), and where the path
/// the function sees begins.
type Routed = (Arc<Deployment>, Option<Arc<AliasRoutes>>, usize);

/// The deployment a request goes to, the alias that chose it, and where the path the function
/// sees begins: an HTTP route's target when one matches the host and path, else the direct
/// `/NAME[@QUALIFIER]/` address.
fn resolve(table: &RoutingTable, request: &Request<Incoming>) -> Result<Routed, ApiError> {
    let path = request.uri().path();
    let routes = table.http_routes();
    let routed = !routes.is_empty();
    let host = routed
        .then(|| {
            request.uri().authority().map(|a| a.as_str()).or_else(|| {
                request
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|v| v.to_str().ok())
            })
        })
        .flatten();
    let unmatched = || {
        let host = host.map_or("", |h| h.split(':').next().unwrap_or(h));
        format!("no route matches {host}{path}")
    };
    let (target, route) = match routed.then(|| routes.find(host, path)).flatten() {
        Some((route, rest)) => (
            Target {
                function: &route.function,
                qualifier: route.qualifier.as_deref(),
                rest_start: if route.strip_prefix { rest } else { 0 },
            },
            Some(route),
        ),
        None => {
            let Some(target) = Target::parse(path) else {
                return Err(ApiError::not_found(if routed {
                    format!("{}; nor does it name a function (/NAME/...)", unmatched())
                } else {
                    "no function named in the path; call /NAME/... or /NAME@VERSION/...".to_string()
                }));
            };
            (target, None)
        }
    };
    match table.resolve(target.function, target.qualifier) {
        Ok(Resolved::Deployment(deployment)) => Ok((deployment.clone(), None, target.rest_start)),
        Ok(Resolved::Alias(alias)) => Ok((
            alias.choose(request.headers()).clone(),
            Some(alias.clone()),
            target.rest_start,
        )),
        Err(e) => Err(match route {
            Some(route) => ApiError::not_found(format!(
                "route {} -> {}: {e}",
                route.matches,
                route.target()
            )),
            None if routed && matches!(e, RouteError::UnknownFunction(_)) => {
                ApiError::not_found(format!(
                    "{}, and no function is named {:?}",
                    unmatched(),
                    target.function
                ))
            }
            None => ApiError::from(e),
        }),
    }
}

/// A `key`-auth function's calls need an invoke key of its namespace (401 without one, 403
/// for a key that may not invoke), checked before any instance is touched; the key is then
/// removed, so the function never sees the platform's credential.
fn guard(
    host: &App,
    deployment: &Deployment,
    request: &mut Request<Incoming>,
) -> Result<(), ApiError> {
    if deployment.access == Access::Public {
        return Ok(());
    }
    let authorization = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match host
        .gatekeeper
        .check_invoke(&deployment.function, authorization)
    {
        Ok(()) => {
            request.headers_mut().remove(http::header::AUTHORIZATION);
            Ok(())
        }
        Err(Refused::Unauthenticated(message)) => Err(ApiError::new(
            http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            message,
        )),
        Err(Refused::Forbidden(message)) => Err(ApiError::forbidden(message)),
    }
}

/// Starts a shadow copy of `request` when its alias mirrors it (and its body is small enough
/// to copy), returning the request for the primary and where to report the primary's answer.
async fn mirror(
    host: &Arc<App>,
    alias: Option<&AliasRoutes>,
    deployment: &Arc<Deployment>,
    request: Request<Incoming>,
    rest_start: usize,
    request_id: &HeaderValue,
) -> Result<(Request<RequestBody>, Option<oneshot::Sender<Answer>>), ApiError> {
    let Some(target) = alias
        .and_then(AliasRoutes::mirror)
        .filter(|target| target.label != deployment.label)
    else {
        return Ok((request.map(RequestBody::Streaming), None));
    };
    let uri = match function_uri(request.uri(), rest_start) {
        Ok(uri) if shadow::copyable(&request) => uri,
        _ => {
            host.metering.shadow(
                &target.function,
                target.label,
                ShadowOutcome::Dropped,
                false,
                None,
            );
            return Ok((request.map(RequestBody::Streaming), None));
        }
    };
    let (parts, body) = request.into_parts();
    let (primary, copy_body, cut) = shadow::tee(body);
    let mut copy = Request::new(copy_body);
    *copy.method_mut() = parts.method.clone();
    *copy.uri_mut() = uri;
    *copy.version_mut() = parts.version;
    *copy.headers_mut() = parts.headers.clone();
    let (sender, receiver) = oneshot::channel();
    let id = request_id.to_str().unwrap_or("").to_string();
    shadow::spawn(host.clone(), target.clone(), copy, receiver, id, cut);
    Ok((Request::from_parts(parts, primary), Some(sender)))
}

/// Headers only fnhost may set on a request a function sees: `fnhost-*` (`fnhost-shadow`
/// marks a mirrored copy that must have no side effects, `fnhost-attempt` and
/// `fnhost-event-hops` mark an event delivery) and the CloudEvents binary-mode `ce-*`
/// headers of trigger events. A client's copies are dropped, so a live request can never
/// pose as a shadow or as an event (CloudEvents from clients travel in structured mode).
/// Whether the client asked for an asynchronous invocation (`fnhost-invocation: async`, as
/// Lambda's `X-Amz-Invocation-Type: Event`); `sync` or no header is a live request.
fn invocation_type(request: &Request<Incoming>) -> Result<bool, ApiError> {
    let Some(value) = request.headers().get(crate::async_lane::INVOCATION_TYPE) else {
        return Ok(false);
    };
    match value.to_str().map(str::trim) {
        Ok(v) if v.eq_ignore_ascii_case("async") => Ok(true),
        Ok(v) if v.eq_ignore_ascii_case("sync") => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "{}: {value:?}; use async (queue it, answer 202 with an id) or sync",
            crate::async_lane::INVOCATION_TYPE
        ))),
    }
}

fn strip_reserved(headers: &mut http::HeaderMap) {
    let reserved: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name.starts_with("fnhost-") || name.starts_with("ce-")
        })
        .cloned()
        .collect();
    for name in reserved {
        headers.remove(name);
    }
}

/// The client's `x-request-id` when it is a sane token, else a fresh id.
fn request_id(request: &Request<Incoming>) -> HeaderValue {
    request
        .headers()
        .get(CLIENT_REQUEST_ID)
        .filter(|v| {
            let bytes = v.as_bytes();
            !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            // Unique, not secret: a fast thread-local generator instead of a syscall per request.
            let id = bytes::Bytes::from(format!("{:016x}", fastrand::u64(..)));
            HeaderValue::from_maybe_shared(id).expect("hex is a header value")
        })
}

fn with_request_id(mut response: Response<Body>, request_id: &HeaderValue) -> Response<Body> {
    response
        .headers_mut()
        .insert(REQUEST_ID_HEADER, request_id.clone());
    response
}

/// Runs the request through the invocation pipeline; a failure comes with what the guest
/// printed.
async fn invoke(
    host: &App,
    deployment: &Arc<Deployment>,
    alias: Option<&Arc<str>>,
    rest_start: usize,
    mut request: Request<RequestBody>,
    request_id: &HeaderValue,
    short: Option<ShortWork>,
) -> Result<Response<Body>, (ApiError, Option<String>)> {
    *request.uri_mut() = function_uri(request.uri(), rest_start).map_err(|e| (e, None))?;
    let call = Call {
        deployment,
        alias,
        caller: Caller::Live,
        admit: Admit::Queue,
        id: request_id.to_str().unwrap_or(""),
        work: Work::Short(short),
    };
    match host.invoker.invoke(call, request).await {
        Ok(response) => {
            Ok(response.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
        }
        Err(error) => Err((ApiError::from(error.failure), error.guest_output)),
    }
}

/// The URI the function sees: the path after its name, the query, and the authority.
fn function_uri(original: &Uri, rest_start: usize) -> Result<Uri, ApiError> {
    let path_and_query = original.path_and_query().map_or("/", PathAndQuery::as_str);
    let rest = &path_and_query[rest_start.min(path_and_query.len())..];
    // The rest is already `/REST?QUERY` unless the path ends at the name (`/hello?q`).
    let path_and_query = if rest.starts_with('/') {
        PathAndQuery::try_from(rest)
    } else {
        PathAndQuery::try_from(format!("/{rest}"))
    }
    .map_err(|e| ApiError::bad_request(format!("invalid request path: {e}")))?;
    let mut parts = original.clone().into_parts();
    parts.path_and_query = Some(path_and_query);
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
    fn reserved_headers_are_stripped_and_others_kept() {
        let mut headers = http::HeaderMap::new();
        for name in [
            "fnhost-shadow",
            "fnhost-attempt",
            "ce-id",
            "ce-type",
            "x-user",
            "cookie",
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static("1"));
        }
        strip_reserved(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
        left.sort();
        assert_eq!(left, ["cookie", "x-user"]);
    }

    #[test]
    fn function_sees_rest_and_query() {
        let uri: Uri = "/hello@latest/a/b?x=1".parse().unwrap();
        let rewritten = function_uri(&uri, "/hello@latest".len()).unwrap();
        assert_eq!(rewritten.to_string(), "/a/b?x=1");
        let uri: Uri = "http://example.com/hello?q".parse().unwrap();
        let rewritten = function_uri(&uri, "/hello".len()).unwrap();
        assert_eq!(rewritten.to_string(), "http://example.com/?q");
        let uri: Uri = "/hello".parse().unwrap();
        assert_eq!(function_uri(&uri, "/hello".len()).unwrap().to_string(), "/");
        let uri: Uri = "/hello/".parse().unwrap();
        assert_eq!(function_uri(&uri, "/hello".len()).unwrap().to_string(), "/");
    }
}
