//! The admin plane: a JSON API under `/v1/` and Prometheus metrics at `/metrics`, every call
//! authenticated with `Authorization: Bearer <token>`: the host admin token, or an API key
//! (only `/healthz` is open). A missing, wrong, revoked or expired credential gets 401 before
//! anything is read or changed; a key outside its namespace or role gets 403 saying what it
//! may do. Every call that may change something is written to the audit log with who made
//! it and its status, refusals included.

mod aliases;
mod functions;
mod history;
mod invocations;
mod json_body;
mod kv;
mod logs;
mod objects;
mod rollout;
mod routes;
mod scaling;
mod secrets;
mod teams;
mod triggers;
mod upload;
mod usage;

use std::sync::Arc;

use crate::api::{LimitsView, NodeList, ScalingStatus, Status};
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::body::{Body, json};
use super::error::ApiError;
use crate::app::App;
use crate::auth::{AuthError, Refused};
use crate::drain::discard;
use crate::model::{Action, AuditEntry, Principal, namespace_of};

/// One admin operation, parsed from method and path before any handler runs.
#[derive(Debug, PartialEq, Eq)]
enum AdminRoute<'a> {
    Status,
    WhoAmI,
    Nodes,
    ListFunctions,
    GetFunction(&'a str),
    DeleteFunction(&'a str),
    UploadCode(&'a str),
    DownloadCode(&'a str),
    UpdateConfig(&'a str),
    ListVersions(&'a str),
    Publish(&'a str),
    GetVersion(&'a str, &'a str),
    DeleteVersion(&'a str, &'a str),
    ListAliases(&'a str),
    GetAlias(&'a str, &'a str),
    SetAlias(&'a str, &'a str),
    DeleteAlias(&'a str, &'a str),
    SetTraffic(&'a str),
    Promote(&'a str),
    Logs(&'a str),
    Health(&'a str),
    History(&'a str),
    AddTrigger(&'a str),
    ListTriggers(&'a str),
    DeleteTrigger(&'a str, &'a str),
    ListEvents(&'a str),
    RetryEvent(&'a str),
    QueueInvocation(&'a str),
    ListInvocations(&'a str),
    GetInvocation(&'a str),
    ListObjects(&'a str),
    PutObject(&'a str, String),
    GetObject(&'a str, String),
    DeleteObject(&'a str, String),
    StartRollout(&'a str),
    GetRollout(&'a str),
    SteerRollout(&'a str, rollout::Steer),
    GetScaling(&'a str),
    SetScaling(&'a str),
    SetAccess(&'a str),
    Usage,
    Metrics,
    ListNamespaces,
    CreateNamespace,
    GetNamespace(&'a str),
    DeleteNamespace(&'a str),
    SetQuotas(&'a str),
    ListKeys(&'a str),
    CreateKey(&'a str),
    RevokeKey(&'a str),
    Audit,
    ListSecrets(&'a str),
    SetSecret(&'a str, &'a str),
    DeleteSecret(&'a str, &'a str),
    KvKeys(&'a str),
    KvGet(&'a str, String),
    KvPut(&'a str, String),
    KvDelete(&'a str, String),
    ListRoutes(&'a str),
    ReplaceRoutes(&'a str),
    PutRoute(&'a str),
    DeleteRoute(&'a str),
}

/// What a route needs of its caller.
#[derive(Debug, PartialEq, Eq)]
enum Need<'a> {
    /// `action` in namespace `.1`.
    In(Action, &'a str),
    /// The host admin token.
    Host,
    /// Any admin-plane key (not an invoker key); the answer is filtered to its namespace.
    Scoped,
    /// The handler checks, once it knows the namespace (an event's or a key's).
    Handler,
}

impl<'a> AdminRoute<'a> {
    fn need(&self) -> Need<'a> {
        use AdminRoute as R;
        fn read(name: &str) -> Need<'_> {
            Need::In(Action::Read, namespace_of(name))
        }
        fn write(name: &str) -> Need<'_> {
            Need::In(Action::Write, namespace_of(name))
        }
        match self {
            R::Nodes
            | R::Metrics
            | R::CreateNamespace
            | R::DeleteNamespace(_)
            | R::SetQuotas(_) => Need::Host,
            R::Status | R::ListFunctions | R::Usage | R::ListNamespaces | R::Audit => Need::Scoped,
            R::WhoAmI => Need::Handler,
            R::RetryEvent(_) | R::GetInvocation(_) | R::RevokeKey(_) => Need::Handler,
            R::QueueInvocation(n) => Need::In(Action::Invoke, namespace_of(n)),
            R::GetNamespace(ns) | R::ListRoutes(ns) => Need::In(Action::Read, ns),
            R::ReplaceRoutes(ns) | R::PutRoute(ns) | R::DeleteRoute(ns) => {
                Need::In(Action::Write, ns)
            }
            R::ListKeys(ns) | R::CreateKey(ns) => Need::In(Action::ManageKeys, ns),
            R::GetFunction(n)
            | R::DownloadCode(n)
            | R::ListVersions(n)
            | R::GetVersion(n, _)
            | R::ListAliases(n)
            | R::GetAlias(n, _)
            | R::Logs(n)
            | R::Health(n)
            | R::History(n)
            | R::ListTriggers(n)
            | R::ListEvents(n)
            | R::ListInvocations(n)
            | R::GetRollout(n)
            | R::GetScaling(n)
            | R::ListObjects(n)
            | R::GetObject(n, _) => read(n),
            R::DeleteFunction(n)
            | R::UploadCode(n)
            | R::UpdateConfig(n)
            | R::Publish(n)
            | R::DeleteVersion(n, _)
            | R::SetAlias(n, _)
            | R::DeleteAlias(n, _)
            | R::SetTraffic(n)
            | R::Promote(n)
            | R::AddTrigger(n)
            | R::DeleteTrigger(n, _)
            | R::StartRollout(n)
            | R::SteerRollout(n, _)
            | R::SetScaling(n)
            | R::SetAccess(n) => write(n),
            R::PutObject(n, _) | R::DeleteObject(n, _) => write(n),
            R::KvKeys(n) | R::ListSecrets(n) => read(n),
            R::SetSecret(n, _) | R::DeleteSecret(n, _) => write(n),
            R::KvGet(n, _) => read(n),
            R::KvPut(n, _) | R::KvDelete(n, _) => write(n),
        }
    }
}

impl<'a> AdminRoute<'a> {
    /// `Err` carries the status for an unknown path (404) or a wrong method (405).
    fn parse(method: &Method, path: &'a str) -> Result<Self, ApiError> {
        let segments: Vec<&str> = path
            .trim_start_matches('/')
            .trim_end_matches('/')
            .split('/')
            .collect();
        let route = match segments.as_slice() {
            ["metrics"] => match *method {
                Method::GET => Some(Self::Metrics),
                _ => None,
            },
            ["v1", "usage"] => match *method {
                Method::GET => Some(Self::Usage),
                _ => None,
            },
            ["v1", "status"] => match *method {
                Method::GET => Some(Self::Status),
                _ => None,
            },
            ["v1", "whoami"] => match *method {
                Method::GET => Some(Self::WhoAmI),
                _ => None,
            },
            ["v1", "nodes"] => match *method {
                Method::GET => Some(Self::Nodes),
                _ => None,
            },
            ["v1", "functions"] => match *method {
                Method::GET => Some(Self::ListFunctions),
                _ => None,
            },
            ["v1", "functions", name] => match *method {
                Method::GET => Some(Self::GetFunction(name)),
                Method::DELETE => Some(Self::DeleteFunction(name)),
                _ => None,
            },
            ["v1", "functions", name, "code"] => match *method {
                Method::PUT => Some(Self::UploadCode(name)),
                Method::GET => Some(Self::DownloadCode(name)),
                _ => None,
            },
            ["v1", "functions", name, "config"] => match *method {
                Method::PATCH => Some(Self::UpdateConfig(name)),
                _ => None,
            },
            ["v1", "functions", name, "versions"] => match *method {
                Method::GET => Some(Self::ListVersions(name)),
                Method::POST => Some(Self::Publish(name)),
                _ => None,
            },
            ["v1", "functions", name, "versions", number] => match *method {
                Method::GET => Some(Self::GetVersion(name, number)),
                Method::DELETE => Some(Self::DeleteVersion(name, number)),
                _ => None,
            },
            ["v1", "functions", name, "aliases"] => match *method {
                Method::GET => Some(Self::ListAliases(name)),
                _ => None,
            },
            ["v1", "functions", name, "aliases", alias] => match *method {
                Method::GET => Some(Self::GetAlias(name, alias)),
                Method::PUT => Some(Self::SetAlias(name, alias)),
                Method::DELETE => Some(Self::DeleteAlias(name, alias)),
                _ => None,
            },
            ["v1", "functions", name, "traffic"] => match *method {
                Method::PUT => Some(Self::SetTraffic(name)),
                _ => None,
            },
            ["v1", "functions", name, "health"] => match *method {
                Method::GET => Some(Self::Health(name)),
                _ => None,
            },
            ["v1", "functions", name, "rollout"] => match *method {
                Method::GET => Some(Self::GetRollout(name)),
                Method::POST => Some(Self::StartRollout(name)),
                _ => None,
            },
            ["v1", "functions", name, "rollout", action] => {
                let steer = match *action {
                    "pause" => rollout::Steer::Pause,
                    "resume" => rollout::Steer::Resume,
                    "abort" => rollout::Steer::Abort,
                    _ => {
                        return Err(ApiError::not_found(format!(
                            "no rollout action {action:?}; use pause, resume or abort"
                        )));
                    }
                };
                match *method {
                    Method::POST => Some(Self::SteerRollout(name, steer)),
                    _ => None,
                }
            }
            ["v1", "functions", name, "triggers"] => match *method {
                Method::GET => Some(Self::ListTriggers(name)),
                Method::POST => Some(Self::AddTrigger(name)),
                _ => None,
            },
            ["v1", "functions", name, "triggers", id] => match *method {
                Method::DELETE => Some(Self::DeleteTrigger(name, id)),
                _ => None,
            },
            ["v1", "functions", name, "events"] => match *method {
                Method::GET => Some(Self::ListEvents(name)),
                _ => None,
            },
            ["v1", "events" | "invocations", id, "retry"] => match *method {
                Method::POST => Some(Self::RetryEvent(id)),
                _ => None,
            },
            ["v1", "functions", name, "invocations"] => match *method {
                Method::GET => Some(Self::ListInvocations(name)),
                Method::POST => Some(Self::QueueInvocation(name)),
                _ => None,
            },
            ["v1", "invocations", id] => match *method {
                Method::GET => Some(Self::GetInvocation(id)),
                _ => None,
            },
            ["v1", "buckets", bucket, "objects"] => match *method {
                Method::GET => Some(Self::ListObjects(bucket)),
                _ => None,
            },
            ["v1", "buckets", bucket, "objects", key @ ..] => {
                let key = key
                    .iter()
                    .map(|segment| percent_encoding::percent_decode_str(segment).decode_utf8())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| ApiError::bad_request("the object key is not valid UTF-8"))?
                    .join("/");
                match *method {
                    Method::PUT => Some(Self::PutObject(bucket, key)),
                    Method::GET => Some(Self::GetObject(bucket, key)),
                    Method::DELETE => Some(Self::DeleteObject(bucket, key)),
                    _ => None,
                }
            }
            ["v1", "functions", name, "history"] => match *method {
                Method::GET => Some(Self::History(name)),
                _ => None,
            },
            ["v1", "functions", name, "scaling"] => match *method {
                Method::GET => Some(Self::GetScaling(name)),
                Method::PUT => Some(Self::SetScaling(name)),
                _ => None,
            },
            ["v1", "functions", name, "logs"] => match *method {
                Method::GET => Some(Self::Logs(name)),
                _ => None,
            },
            ["v1", "functions", name, "promote"] => match *method {
                Method::POST => Some(Self::Promote(name)),
                _ => None,
            },
            ["v1", "functions", name, "access"] => match *method {
                Method::PUT => Some(Self::SetAccess(name)),
                _ => None,
            },
            ["v1", "namespaces"] => match *method {
                Method::GET => Some(Self::ListNamespaces),
                Method::POST => Some(Self::CreateNamespace),
                _ => None,
            },
            ["v1", "namespaces", ns] => match *method {
                Method::GET => Some(Self::GetNamespace(ns)),
                Method::DELETE => Some(Self::DeleteNamespace(ns)),
                _ => None,
            },
            ["v1", "namespaces", ns, "routes"] => match *method {
                Method::GET => Some(Self::ListRoutes(ns)),
                Method::PUT => Some(Self::ReplaceRoutes(ns)),
                Method::POST => Some(Self::PutRoute(ns)),
                Method::DELETE => Some(Self::DeleteRoute(ns)),
                _ => None,
            },
            ["v1", "namespaces", ns, "quotas"] => match *method {
                Method::PUT => Some(Self::SetQuotas(ns)),
                _ => None,
            },
            ["v1", "namespaces", ns, "keys"] => match *method {
                Method::GET => Some(Self::ListKeys(ns)),
                Method::POST => Some(Self::CreateKey(ns)),
                _ => None,
            },
            ["v1", "keys", id] => match *method {
                Method::DELETE => Some(Self::RevokeKey(id)),
                _ => None,
            },
            ["v1", "functions", name, "secrets"] => match *method {
                Method::GET => Some(Self::ListSecrets(name)),
                _ => None,
            },
            ["v1", "functions", name, "secrets", secret] => match *method {
                Method::PUT => Some(Self::SetSecret(name, secret)),
                Method::DELETE => Some(Self::DeleteSecret(name, secret)),
                _ => None,
            },
            ["v1", "kv", store] => match *method {
                Method::GET => Some(Self::KvKeys(store)),
                _ => None,
            },
            ["v1", "kv", store, key @ ..] => {
                let key = key
                    .iter()
                    .map(|segment| percent_encoding::percent_decode_str(segment).decode_utf8())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| ApiError::bad_request("the key is not valid UTF-8"))?
                    .join("/");
                match *method {
                    Method::GET => Some(Self::KvGet(store, key)),
                    Method::PUT => Some(Self::KvPut(store, key)),
                    Method::DELETE => Some(Self::KvDelete(store, key)),
                    _ => None,
                }
            }
            ["v1", "audit"] => match *method {
                Method::GET => Some(Self::Audit),
                _ => None,
            },
            _ => {
                return Err(ApiError::not_found(format!(
                    "no admin route {method} {path}; the routes are listed in README.md, section Admin API"
                )));
            }
        };
        route.ok_or_else(|| {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed on {path}"),
            )
        })
    }
}

pub async fn handle(host: &Arc<App>, request: Request<Incoming>) -> Response<Body> {
    if let Some(response) = crate::server::probe(host, request.uri().path()) {
        return response;
    }
    // The console's files are public (they hold no data); everything they show comes from
    // the API below, with the credential the user signs in with.
    if let Some(response) = super::console::serve(request.method(), request.uri().path()) {
        discard(request.into_body()).await;
        return response;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = match host.gatekeeper.authenticate(authorization).await {
        Ok(principal) => principal,
        Err(e) => {
            discard(request.into_body()).await;
            return match e {
                AuthError::Refused(refused) => refused_response(refused),
                AuthError::Store(e) => ApiError::from(e).into_response(),
            };
        }
    };
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let route = match AdminRoute::parse(&method, &path) {
        Ok(route) => route,
        Err(e) => {
            discard(request.into_body()).await;
            return e.into_response();
        }
    };
    let need = route.need();
    let namespace = match &need {
        Need::In(_, ns) => Some(ns.to_string()),
        _ => None,
    };
    let checked = match need {
        Need::In(action, ns) => principal.check(action, Some(ns)),
        Need::Host => principal.check(Action::Host, None),
        Need::Scoped => match &principal {
            Principal::Key { role, .. } if !role.allows(Action::Read) => {
                principal.check(Action::Read, None)
            }
            _ => Ok(()),
        },
        Need::Handler => Ok(()),
    };
    let response = match checked {
        Err(denied) => {
            discard(request.into_body()).await;
            ApiError::forbidden(denied.0).into_response()
        }
        Ok(()) => dispatch(host, route, &principal, request)
            .await
            .unwrap_or_else(ApiError::into_response),
    };
    if method != Method::GET && method != Method::HEAD {
        audit(
            host,
            &principal,
            namespace,
            &method,
            &path,
            response.status(),
        )
        .await;
    }
    response
}

/// Appends one action to the audit log before the answer goes out. A failure to record is
/// logged: the action itself has already happened and is not undone.
async fn audit(
    host: &App,
    principal: &Principal,
    namespace: Option<String>,
    method: &Method,
    path: &str,
    status: StatusCode,
) {
    let entry = AuditEntry {
        seq: 0,
        at_ms: crate::model::now_ms(),
        namespace,
        actor: principal.actor(),
        action: format!("{method} {path}"),
        status: status.as_u16(),
    };
    if let Err(e) = host.registry.add_audit(entry).await
        && e.outage().is_none()
    {
        tracing::error!(error = %e, %method, path, "could not record an admin action in the audit log");
    }
}

fn refused_response(refused: Refused) -> Response<Body> {
    match refused {
        Refused::Unauthenticated(message) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response()
        }
        Refused::Forbidden(message) => ApiError::forbidden(message).into_response(),
    }
}

async fn dispatch(
    host: &Arc<App>,
    route: AdminRoute<'_>,
    principal: &Principal,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let actor = &principal.actor();
    match route {
        AdminRoute::Status => Ok(status(host)),
        AdminRoute::WhoAmI => Ok(whoami(principal)),
        AdminRoute::Nodes => nodes(host).await,
        AdminRoute::ListFunctions => functions::list(host, principal, &request).await,
        AdminRoute::GetFunction(name) => functions::get(host, name).await,
        AdminRoute::DeleteFunction(name) => functions::delete(host, name, actor).await,
        AdminRoute::DownloadCode(name) => functions::code(host, name).await,
        AdminRoute::UploadCode(name) => upload::upload(host, name, actor, request).await,
        AdminRoute::UpdateConfig(name) => functions::update_config(host, name, request).await,
        AdminRoute::ListVersions(name) => functions::versions(host, name).await,
        AdminRoute::Publish(name) => functions::publish(host, name, actor, request).await,
        AdminRoute::GetVersion(name, number) => functions::version(host, name, number).await,
        AdminRoute::DeleteVersion(name, number) => {
            functions::delete_version(host, name, number, actor).await
        }
        AdminRoute::ListAliases(name) => aliases::list(host, name).await,
        AdminRoute::GetAlias(name, alias) => aliases::get(host, name, alias).await,
        AdminRoute::SetAlias(name, alias) => aliases::set(host, name, alias, actor, request).await,
        AdminRoute::DeleteAlias(name, alias) => aliases::delete(host, name, alias, actor).await,
        AdminRoute::SetTraffic(name) => aliases::set_traffic(host, name, actor, request).await,
        AdminRoute::Promote(name) => aliases::promote(host, name, actor, request).await,
        AdminRoute::Logs(name) => logs::read(host, name, &request).await,
        AdminRoute::Health(name) => usage::health(host, name, &request).await,
        AdminRoute::History(name) => history::get(host, name, &request).await,
        AdminRoute::AddTrigger(name) => triggers::add(host, name, request).await,
        AdminRoute::ListTriggers(name) => triggers::list(host, name).await,
        AdminRoute::DeleteTrigger(name, id) => triggers::delete(host, name, id).await,
        AdminRoute::ListEvents(name) => triggers::events(host, name, &request).await,
        AdminRoute::RetryEvent(id) => triggers::retry(host, principal, id).await,
        AdminRoute::QueueInvocation(name) => invocations::queue(host, name, request).await,
        AdminRoute::ListInvocations(name) => invocations::list(host, name, &request).await,
        AdminRoute::GetInvocation(id) => invocations::get(host, principal, id).await,
        AdminRoute::ListObjects(bucket) => objects::list(host, bucket, &request).await,
        AdminRoute::PutObject(bucket, key) => objects::put(host, bucket, &key, request).await,
        AdminRoute::GetObject(bucket, key) => objects::get(host, bucket, &key).await,
        AdminRoute::DeleteObject(bucket, key) => objects::delete(host, bucket, &key).await,
        AdminRoute::StartRollout(name) => rollout::start(host, name, request).await,
        AdminRoute::GetRollout(name) => rollout::get(host, name).await,
        AdminRoute::SteerRollout(name, steer) => rollout::steer(host, name, steer).await,
        AdminRoute::GetScaling(name) => scaling::get(host, name).await,
        AdminRoute::SetScaling(name) => scaling::set(host, name, request).await,
        AdminRoute::SetAccess(name) => teams::set_access(host, name, request).await,
        AdminRoute::Usage => usage::usage(host, principal, &request).await,
        AdminRoute::Metrics => usage::metrics(host).await,
        AdminRoute::ListNamespaces => teams::list_namespaces(host, principal).await,
        AdminRoute::CreateNamespace => teams::create_namespace(host, request).await,
        AdminRoute::GetNamespace(ns) => teams::get_namespace(host, ns).await,
        AdminRoute::DeleteNamespace(ns) => teams::delete_namespace(host, ns).await,
        AdminRoute::SetQuotas(ns) => teams::set_quotas(host, ns, request).await,
        AdminRoute::ListKeys(ns) => teams::list_keys(host, ns).await,
        AdminRoute::CreateKey(ns) => teams::create_key(host, ns, principal, request).await,
        AdminRoute::RevokeKey(id) => teams::revoke_key(host, principal, id).await,
        AdminRoute::Audit => teams::audit(host, principal, &request).await,
        AdminRoute::ListSecrets(name) => secrets::list(host, name).await,
        AdminRoute::SetSecret(name, secret) => secrets::set(host, name, secret, request).await,
        AdminRoute::DeleteSecret(name, secret) => secrets::delete(host, name, secret).await,
        AdminRoute::KvKeys(store) => kv::keys(host, store, &request).await,
        AdminRoute::KvGet(store, key) => kv::get(host, store, key).await,
        AdminRoute::KvPut(store, key) => kv::put(host, store, key, request).await,
        AdminRoute::KvDelete(store, key) => kv::delete(host, store, key).await,
        AdminRoute::ListRoutes(ns) => routes::list(host, ns).await,
        AdminRoute::ReplaceRoutes(ns) => routes::replace(host, ns, request).await,
        AdminRoute::PutRoute(ns) => routes::put(host, ns, request).await,
        AdminRoute::DeleteRoute(ns) => routes::delete(host, ns, &request).await,
    }
}

/// A `limit=N` query parameter: a count from 1 to `max`.
fn limit_param(value: &str, max: u32) -> Result<u32, ApiError> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| ApiError::bad_request(format!("limit={value:?}: use 1 to {max}")))
}

/// The namespace a `?namespace=NS` query names, if any.
fn namespace_param(request: &Request<Incoming>) -> Option<String> {
    form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "namespace")
        .map(|(_, v)| v.into_owned())
}

/// The namespace a listing shows: a key sees its own (asking for another is refused); the
/// host admin sees the one asked for, or all.
fn listing_scope(
    principal: &Principal,
    request: &Request<Incoming>,
) -> Result<Option<String>, ApiError> {
    let asked = namespace_param(request);
    match principal {
        Principal::HostAdmin => Ok(asked),
        Principal::Key { namespace, .. } => {
            let ns = asked.unwrap_or_else(|| namespace.clone());
            principal
                .check(Action::Read, Some(&ns))
                .map_err(|denied| ApiError::forbidden(denied.0))?;
            Ok(Some(ns))
        }
    }
}

fn whoami(principal: &Principal) -> Response<Body> {
    let (namespace, role) = match principal {
        Principal::HostAdmin => (None, None),
        Principal::Key {
            namespace, role, ..
        } => (Some(namespace.clone()), Some(*role)),
    };
    json(
        StatusCode::OK,
        &crate::api::WhoAmI {
            actor: principal.actor(),
            can_write: role.is_none_or(|role| role.allows(Action::Write)),
            namespace,
            role,
        },
    )
}

fn status(host: &App) -> Response<Body> {
    json(
        StatusCode::OK,
        &Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: host.started.elapsed().as_secs(),
            functions: host.router.snapshot().len(),
            limits: LimitsView {
                max_upload_bytes: host.max_upload_bytes,
            },
            engine: host.engine.status(),
            scaling: ScalingStatus {
                warm_instances: host.scaler.warm_total(),
                max_warm: host.scaler.options().max_warm,
                idle_timeout_ms: host.scaler.options().idle_timeout.as_millis() as u64,
                counters: host.scaler.stats(),
            },
            dependencies: host.registry.dependencies().report(),
        },
    )
}

async fn nodes(host: &App) -> Result<Response<Body>, ApiError> {
    let nodes = host.registry.nodes().await?;
    Ok(json(
        StatusCode::OK,
        &NodeList {
            fleet: host.registry.is_shared(),
            now_ms: crate::model::now_ms(),
            nodes,
            rollout_driver: host.rollouts.driver().await?,
        },
    ))
}

/// 404 unless `function` exists: answered from the routing snapshot (no database read);
/// in a fleet, a function missing there is looked up in the store too (and routed), since
/// another node may have created it a moment ago and this node's change feed not caught up.
async fn ensure_function(host: &App, function: &str) -> Result<(), ApiError> {
    let missing = match host.router.snapshot().resolve(function, Some("latest")) {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    if host.registry.is_shared() && host.registry.refresh(function).await? {
        return Ok(());
    }
    Err(missing.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path() {
        assert_eq!(
            AdminRoute::parse(&Method::PUT, "/v1/functions/hello/code").unwrap(),
            AdminRoute::UploadCode("hello")
        );
        assert_eq!(
            AdminRoute::parse(&Method::DELETE, "/v1/functions/hello/versions/2").unwrap(),
            AdminRoute::DeleteVersion("hello", "2")
        );
        assert_eq!(
            AdminRoute::parse(&Method::GET, "/v1/functions/").unwrap(),
            AdminRoute::ListFunctions
        );
        let wrong_method = AdminRoute::parse(&Method::POST, "/v1/functions/hello").unwrap_err();
        assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
        let unknown = AdminRoute::parse(&Method::GET, "/v1/nope").unwrap_err();
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    }
}
