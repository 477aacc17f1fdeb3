//! A function's secrets: `PUT /v1/functions/NAME/secrets/KEY` (the body is the value),
//! `GET .../secrets` (names and times only) and `DELETE .../secrets/KEY`. Values are sealed
//! here, before the store sees them, and no answer, log line or history entry carries one.

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::ensure_function;
use crate::api::{Deleted, DeletedItem, SecretList, SecretView};
use crate::app::App;
use crate::model::check_secret_name;
use crate::server::body::{Body, json};
use crate::server::error::ApiError;

/// Largest secret value: an API key, a certificate, a small credentials file.
const MAX_SECRET_BYTES: usize = 64 * 1024;

pub async fn list(host: &App, function: &str) -> Result<Response<Body>, ApiError> {
    let rows = host.registry.function(function).await?;
    Ok(json(
        StatusCode::OK,
        &SecretList {
            function: function.to_string(),
            secrets: rows
                .secrets
                .into_iter()
                .map(|row| SecretView {
                    name: row.name,
                    updated_ms: row.updated_ms,
                })
                .collect(),
        },
    ))
}

pub async fn set(
    host: &App,
    function: &str,
    name: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    check_secret_name(name)?;
    ensure_function(host, function).await?;
    let key = host.invoker.secrets.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "no_secrets_key",
            "this host has no secrets key: start it with FNHOST_SECRETS_KEY or --secrets-key \
             (every node of a fleet with the same key)",
        )
    })?;
    let value = Limited::new(request.into_body(), MAX_SECRET_BYTES)
        .collect()
        .await
        .map_err(|_| {
            let mut error = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("a secret is at most {MAX_SECRET_BYTES} bytes"),
            );
            error.close_connection = true;
            error
        })?
        .to_bytes();
    if std::str::from_utf8(&value).is_err() {
        return Err(ApiError::bad_request(
            "a secret is read as text through wasi:config: send UTF-8",
        ));
    }
    let sealed = key.seal(function, name, &value);
    host.registry.set_secret(function, name, sealed).await?;
    tracing::info!(function, secret = name, "secret set");
    Ok(json(
        StatusCode::OK,
        &SecretView {
            name: name.to_string(),
            updated_ms: crate::model::now_ms(),
        },
    ))
}

pub async fn delete(host: &App, function: &str, name: &str) -> Result<Response<Body>, ApiError> {
    host.registry.delete_secret(function, name).await?;
    tracing::info!(function, secret = name, "secret deleted");
    Ok(json(
        StatusCode::OK,
        &Deleted::new(DeletedItem {
            function: Some(function.to_string()),
            key: Some(name.to_string()),
            ..Default::default()
        }),
    ))
}
