//! Teams over the admin API: namespaces and quotas (the host admin's), a namespace's keys
//! (its admins'), function access, and the audit log.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::json_body::read_json;
use super::{ensure_function, limit_param, listing_scope};
use crate::api::{
    AuditLog, CreateKey, CreateNamespace, KeyCreated, KeyList, KeyView, NamespaceList,
    NamespaceUsage, NamespaceView, SetAccess,
};
use crate::app::App;
use crate::model::{
    Action, KeyRecord, NamespaceRecord, NewKey, Principal, QuotasPatch, check_namespace,
    namespace_of, now_ms,
};
use crate::server::body::{Body, json};
use crate::server::error::ApiError;
use crate::store::StoreError;

/// The longest a key may be made to last: past that, make it without an expiry.
const MAX_EXPIRY_SECS: u64 = 10 * 365 * 86_400;

pub async fn list_namespaces(
    host: &App,
    principal: &Principal,
) -> Result<Response<Body>, ApiError> {
    host.registry.reload_namespaces().await?;
    let namespaces = host
        .registry
        .namespace_list()
        .into_iter()
        .filter(|ns| match principal {
            Principal::HostAdmin => true,
            Principal::Key { namespace, .. } => &ns.name == namespace,
        })
        .map(|ns| view(host, ns))
        .collect();
    Ok(json(StatusCode::OK, &NamespaceList { namespaces }))
}

pub async fn create_namespace(
    host: &App,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: Option<CreateNamespace> = read_json(request).await?;
    let body = body.ok_or_else(|| ApiError::bad_request(r#"send {"name": "NS"}"#))?;
    check_namespace(&body.name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let record = NamespaceRecord {
        name: body.name,
        quotas: body.quotas,
        created_ms: now_ms(),
    };
    host.registry.create_namespace(record.clone()).await?;
    host.apply_tenancy().await?;
    tracing::info!(namespace = %record.name, "namespace created");
    Ok(json(StatusCode::CREATED, &view(host, record)))
}

pub async fn get_namespace(host: &App, name: &str) -> Result<Response<Body>, ApiError> {
    host.registry.reload_namespaces().await?;
    let record = host
        .registry
        .namespace(name)
        .ok_or_else(|| StoreError::unknown_namespace(name))?;
    let mut view = view(host, record);
    view.usage.bucket_bytes = Some(host.events.buckets.namespace_bytes(name).await?);
    Ok(json(StatusCode::OK, &view))
}

pub async fn delete_namespace(host: &App, name: &str) -> Result<Response<Body>, ApiError> {
    // Data a re-created namespace of the same name would find: refused rather than deleted
    // by a side effect (the store keeps functions' data; buckets live in the object store).
    let stores = host.registry.blocking(|db| db.kv_stores()).await?;
    let kept: Vec<String> = stores
        .into_iter()
        .filter(|(id, keys, _)| id.namespace == name && *keys > 0)
        .map(|(id, keys, _)| format!("{} ({keys} keys)", id.store))
        .collect();
    if !kept.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "namespace {name:?} still has key-value data in {}; delete it first (`fnhost kv`)",
                kept.join(", ")
            ),
        ));
    }
    let (objects, bytes) = host
        .events
        .buckets
        .namespace_usage(name)
        .await
        .map_err(|e| ApiError::internal(format!("listing the namespace's buckets: {e}")))?;
    if objects > 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "namespace {name:?} still has {objects} object(s) ({bytes} bytes) in its buckets; delete them first (`fnhost object`)"
            ),
        ));
    }
    host.registry.delete_namespace(name).await?;
    host.apply_tenancy().await?;
    tracing::info!(namespace = %name, "namespace deleted");
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"deleted": {"namespace": name}}),
    ))
}

/// `PUT /v1/namespaces/NS/quotas`: fields given replace, `null` removes a limit. A quota
/// below what the namespace uses now is accepted: it refuses growth, never removes anything.
pub async fn set_quotas(
    host: &App,
    name: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let patch: QuotasPatch = read_json(request).await?;
    host.registry.reload_namespaces().await?;
    let current = host
        .registry
        .namespace(name)
        .ok_or_else(|| StoreError::unknown_namespace(name))?;
    let record = host
        .registry
        .set_quotas(name, current.quotas.merged(&patch))
        .await?;
    host.apply_tenancy().await?;
    Ok(json(StatusCode::OK, &view(host, record)))
}

pub async fn list_keys(host: &App, namespace: &str) -> Result<Response<Body>, ApiError> {
    let now = now_ms();
    let keys = host.registry.keys(Some(namespace.to_string())).await?;
    Ok(json(
        StatusCode::OK,
        &KeyList {
            keys: keys.into_iter().map(|k| KeyView::new(k, now)).collect(),
        },
    ))
}

/// Makes a key and answers with its secret, the only time it is shown.
pub async fn create_key(
    host: &App,
    namespace: &str,
    principal: &Principal,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: Option<CreateKey> = read_json(request).await?;
    let body = body.ok_or_else(|| {
        ApiError::bad_request(r#"send {"role": "admin|deployer|viewer|invoker"}"#)
    })?;
    if body.description.len() > 256 {
        return Err(ApiError::bad_request(
            "the description is longer than 256 bytes",
        ));
    }
    let now = now_ms();
    let expires_ms = match body.expires_in_secs {
        Some(0) => return Err(ApiError::bad_request("expires_in_secs must be above 0")),
        Some(secs) if secs > MAX_EXPIRY_SECS => {
            return Err(ApiError::bad_request(format!(
                "expires_in_secs {secs} is over ten years; make a key without an expiry instead"
            )));
        }
        Some(secs) => Some(now + secs as i64 * 1000),
        None => None,
    };
    let (mut id, mut secret) = ([0u8; 6], [0u8; 32]);
    getrandom::fill(&mut id)
        .and_then(|()| getrandom::fill(&mut secret))
        .map_err(|e| ApiError::internal(format!("reading the OS random source: {e}")))?;
    let fresh = NewKey::from_random(id, secret);
    let record = KeyRecord {
        id: fresh.id,
        namespace: namespace.to_string(),
        role: body.role,
        secret_sha256: fresh.secret_sha256,
        description: body.description,
        created_ms: now,
        expires_ms,
        revoked_ms: None,
        created_by: principal.actor(),
    };
    host.registry.add_key(record.clone()).await?;
    host.gatekeeper.reload().await?;
    tracing::info!(key = %record.id, namespace, role = %record.role, "API key created");
    Ok(json(
        StatusCode::CREATED,
        &KeyCreated {
            key: KeyView::new(record, now),
            secret: fresh.text,
        },
    ))
}

/// Revokes a key; the next request with it is refused, on every node. A key of another
/// namespace answers 404 to a namespace admin, so ids reveal nothing across namespaces.
pub async fn revoke_key(
    host: &App,
    principal: &Principal,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let missing = || ApiError::not_found(format!("no API key {id:?}"));
    let key = host.registry.key(id).await?.ok_or_else(missing)?;
    if let Principal::Key { namespace, .. } = principal {
        if namespace != &key.namespace {
            return Err(missing());
        }
        principal
            .check(Action::ManageKeys, Some(&key.namespace))
            .map_err(|denied| ApiError::forbidden(denied.0))?;
    }
    let revoked = host.registry.revoke_key(id).await?;
    host.gatekeeper.reload().await?;
    tracing::info!(key = %id, "API key revoked");
    Ok(json(StatusCode::OK, &KeyView::new(revoked, now_ms())))
}

pub async fn set_access(
    host: &App,
    name: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: Option<SetAccess> = read_json(request).await?;
    let body = body.ok_or_else(|| ApiError::bad_request(r#"send {"access": "public|key"}"#))?;
    ensure_function(host, name).await?;
    host.registry.set_access(name, body.access).await?;
    tracing::info!(function = %name, access = body.access.as_str(), "function access changed");
    Ok(json(StatusCode::OK, &body))
}

/// `?namespace=NS&limit=N`: a key reads its own namespace's log; the host admin any or all.
pub async fn audit(
    host: &App,
    principal: &Principal,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let namespace = listing_scope(principal, request)?;
    let mut limit = 100;
    for (key, value) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "limit" => limit = limit_param(&value, 1000)?,
            "namespace" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}; use namespace or limit"
                )));
            }
        }
    }
    let entries = host.registry.audit(namespace, limit).await?;
    Ok(json(StatusCode::OK, &AuditLog { entries }))
}

/// A namespace with what it uses now, counted from the routing snapshot.
fn view(host: &App, record: NamespaceRecord) -> NamespaceView {
    let table = host.router.snapshot();
    let mut usage = NamespaceUsage::default();
    for function in table.functions() {
        let name = &*function.latest.function;
        if namespace_of(name) != record.name {
            continue;
        }
        usage.functions += 1;
        usage.versions += function.versions.len() as u64;
        usage.provisioned += function.scaling.total();
        usage.concurrency += u64::from(host.invoker.admission.in_flight(name));
    }
    NamespaceView::new(record, usage)
}
