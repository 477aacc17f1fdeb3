//! Key-value stores for operators: `GET /v1/kv/STORE` lists keys, `GET`, `PUT` and `DELETE
//! /v1/kv/STORE/KEY` read, write and delete one value (raw bytes), under the same limits as
//! functions. `STORE` is `NAME` in the default namespace and `NAME.NS` in namespace `NS`, as
//! for buckets. Values are the store's, shared with every function that opens it.

use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::api::{Deleted, DeletedItem, KvKeys};
use crate::app::App;
use crate::model::kv::check_store_name;
use crate::model::{KvStoreId, namespace_of};
use crate::server::body::{Body, full, json};
use crate::server::error::ApiError;
use crate::store::{MetadataStore, StoreError};

/// `STORE[.NS]` as a store id.
fn store_id(store: &str) -> Result<KvStoreId, ApiError> {
    let name = store.split_once('.').map_or(store, |(name, _)| name);
    check_store_name(name).map_err(|e| ApiError::bad_request(e.0))?;
    Ok(KvStoreId {
        namespace: namespace_of(store).to_string(),
        store: name.to_string(),
    })
}

async fn blocking<T: Send + 'static>(
    host: &App,
    f: impl FnOnce(&dyn MetadataStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let db = host.registry.db();
    Ok(tokio::task::spawn_blocking(move || f(&*db))
        .await
        .expect("key-value task panicked")?)
}

pub async fn keys(
    host: &App,
    store: &str,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = store_id(store)?;
    let (mut after, mut limit) = (None, 1000);
    for (key, value) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "after" => after = Some(value.into_owned()),
            "limit" => limit = super::limit_param(&value, 10_000)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}; use after or limit"
                )));
            }
        }
    }
    let keys = blocking(host, move |db| db.kv_keys(&id, after.as_deref(), limit)).await?;
    let next = (keys.len() == limit as usize)
        .then(|| keys.last().cloned())
        .flatten();
    Ok(json(
        StatusCode::OK,
        &KvKeys {
            store: store.to_string(),
            keys,
            next,
        },
    ))
}

pub async fn get(host: &App, store: &str, key: String) -> Result<Response<Body>, ApiError> {
    let id = store_id(store)?;
    host.engine
        .kv_limits()
        .check_key(&key)
        .map_err(ApiError::bad_request)?;
    let wanted = key.clone();
    let found = blocking(host, move |db| db.kv_get(&id, &[wanted])).await?;
    let entry = found.into_iter().next().flatten().ok_or_else(|| {
        ApiError::not_found(format!("no key {key:?} in key-value store {store:?}"))
    })?;
    let mut response = Response::new(full(entry.value));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
        .headers_mut()
        .insert("fnhost-kv-version", HeaderValue::from(entry.version));
    Ok(response)
}

pub async fn put(
    host: &App,
    store: &str,
    key: String,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = store_id(store)?;
    let limits = host.engine.kv_limits();
    limits.check_key(&key).map_err(ApiError::bad_request)?;
    let value = Limited::new(request.into_body(), limits.value_bytes)
        .collect()
        .await
        .map_err(|e| {
            let mut error = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "limit",
                format!(
                    "the value is over the limit of {} bytes ({e})",
                    limits.value_bytes
                ),
            );
            error.close_connection = true;
            error
        })?
        .to_bytes()
        .to_vec();
    blocking(host, move |db| db.kv_set(&id, &[(key, value)], &limits)).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({"stored": true})))
}

pub async fn delete(host: &App, store: &str, key: String) -> Result<Response<Body>, ApiError> {
    let id = store_id(store)?;
    host.engine
        .kv_limits()
        .check_key(&key)
        .map_err(ApiError::bad_request)?;
    let deleted = key.clone();
    blocking(host, move |db| db.kv_delete(&id, &[deleted])).await?;
    Ok(json(
        StatusCode::OK,
        &Deleted::new(DeletedItem {
            key: Some(key),
            ..Default::default()
        }),
    ))
}
