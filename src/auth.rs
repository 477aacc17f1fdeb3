//! Who is calling, and may they: the admin plane's bearer (the host admin token or an API
//! key) and the data plane's invoke keys for `key`-auth functions.
//!
//! The admin plane reads a key from the store on every request, so a revocation on any node
//! applies to the next request. The data plane never awaits the database: it checks keys
//! against `ring`, this node's copy of the keys that may invoke, replaced whole after every
//! key change here and whenever the store's change feed reports one from another node.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::model::{
    Action, KeyRecord, Principal, constant_time_eq, namespace_of, now_ms, parse_key,
};
use crate::registry::Registry;
use crate::store::StoreError;

/// Why a caller was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// 401: no credentials, or ones that are not (or no longer) valid.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403: a valid key outside what it may do.
    #[error("{0}")]
    Forbidden(String),
}

pub struct Gatekeeper {
    admin_token: String,
    registry: Arc<Registry>,
    /// Usable keys by id (a key of the wrong role gets 403, not 401).
    ring: ArcSwap<HashMap<String, KeyRecord>>,
}

impl Gatekeeper {
    pub fn new(admin_token: String, registry: Arc<Registry>) -> Self {
        Self {
            admin_token,
            registry,
            ring: ArcSwap::default(),
        }
    }

    /// The admin plane's caller, from `Authorization: Bearer ...`.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let given = bearer(authorization).ok_or_else(|| {
            Refused::Unauthenticated(
                "missing credentials: send `Authorization: Bearer <token>` with the admin token \
                 from <data-dir>/admin.token or an API key (fnhost key create)"
                    .to_string(),
            )
        })?;
        if constant_time_eq(given.as_bytes(), self.admin_token.as_bytes()) {
            return Ok(Principal::HostAdmin);
        }
        let wrong = || {
            Refused::Unauthenticated(
                "wrong admin token or API key: use the token from <data-dir>/admin.token or a key \
                 fnhost key create printed"
                    .to_string(),
            )
        };
        let (id, hash) = parse_key(given).ok_or_else(wrong)?;
        let key = self.registry.key(id).await?.ok_or_else(wrong)?;
        if !constant_time_eq(hash.as_bytes(), key.secret_sha256.as_bytes()) {
            return Err(wrong().into());
        }
        if let Some(why) = key.unusable(now_ms()) {
            return Err(Refused::Unauthenticated(format!(
                "API key {} is {why}; ask an admin of namespace {:?} for a new one",
                key.id, key.namespace
            ))
            .into());
        }
        Ok(Principal::Key {
            id: key.id,
            namespace: key.namespace,
            role: key.role,
        })
    }

    /// A data-plane call of a `key`-auth function: a usable key of the function's namespace
    /// whose role may invoke. No database read.
    pub fn check_invoke(&self, function: &str, authorization: Option<&str>) -> Result<(), Refused> {
        let namespace = namespace_of(function);
        let unauthenticated = |detail: &str| {
            Refused::Unauthenticated(format!(
                "function {function:?} needs an API key: {detail}; send `Authorization: Bearer \
                 <key>` with an invoker key of namespace {namespace:?} (fnhost key create \
                 --namespace {namespace} --role invoker)"
            ))
        };
        let given = bearer(authorization).ok_or_else(|| unauthenticated("none was sent"))?;
        let (id, hash) = parse_key(given).ok_or_else(|| unauthenticated("this is not a key"))?;
        let ring = self.ring.load();
        let key = ring
            .get(id)
            .filter(|key| constant_time_eq(hash.as_bytes(), key.secret_sha256.as_bytes()))
            .ok_or_else(|| unauthenticated("the key is unknown or revoked"))?;
        if key.unusable(now_ms()).is_some() {
            return Err(unauthenticated("the key has expired"));
        }
        Principal::Key {
            id: key.id.clone(),
            namespace: key.namespace.clone(),
            role: key.role,
        }
        .check(Action::Invoke, Some(namespace))
        .map_err(|denied| Refused::Forbidden(denied.0))
    }

    /// Re-reads the usable keys.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let now = now_ms();
        let ring = self
            .registry
            .keys(None)
            .await?
            .into_iter()
            .filter(|key| key.unusable(now).is_none())
            .map(|key| (key.id.clone(), key))
            .collect();
        self.ring.store(Arc::new(ring));
        Ok(())
    }
}

/// Authentication failed: refused, or the store could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn bearer(authorization: Option<&str>) -> Option<&str> {
    authorization?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|token| !token.is_empty())
}
