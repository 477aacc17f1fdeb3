//! Teams: namespaces and their quotas, API keys, function access and the audit log.

use serde::{Deserialize, Serialize};

use crate::model::{Access, AuditEntry, KeyRecord, NamespaceRecord, Quotas, Role};

/// `POST /v1/namespaces`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateNamespace {
    pub name: String,
    #[serde(default)]
    pub quotas: Quotas,
}

/// A namespace with its quotas and what it uses of them now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceView {
    pub name: String,
    pub quotas: Quotas,
    pub created_ms: i64,
    pub usage: NamespaceUsage,
}

/// What a namespace uses of its quotas.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceUsage {
    pub functions: u64,
    pub versions: u64,
    pub provisioned: u64,
    /// Invocations of its functions running on this node now.
    pub concurrency: u64,
    /// Bytes stored in its buckets (listed when asked for one namespace; absent in lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_bytes: Option<u64>,
}

impl NamespaceView {
    pub fn new(record: NamespaceRecord, usage: NamespaceUsage) -> Self {
        Self {
            name: record.name,
            quotas: record.quotas,
            created_ms: record.created_ms,
            usage,
        }
    }
}

/// `GET /v1/namespaces`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceList {
    pub namespaces: Vec<NamespaceView>,
}

/// `POST /v1/namespaces/NS/keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub role: Role,
    #[serde(default)]
    pub description: String,
    /// Seconds from now until the key stops working; none: it works until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
}

/// A key as listed: never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub id: String,
    pub namespace: String,
    pub role: Role,
    pub description: String,
    pub created_ms: i64,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<i64>,
    /// `active`, `expired` or `revoked`.
    pub state: String,
}

impl KeyView {
    pub fn new(key: KeyRecord, now_ms: i64) -> Self {
        Self {
            state: key.unusable(now_ms).unwrap_or("active").to_string(),
            id: key.id,
            namespace: key.namespace,
            role: key.role,
            description: key.description,
            created_ms: key.created_ms,
            created_by: key.created_by,
            expires_ms: key.expires_ms,
            revoked_ms: key.revoked_ms,
        }
    }
}

/// What creating a key answers: the only time its secret is shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCreated {
    #[serde(flatten)]
    pub key: KeyView,
    /// The whole key to send as `Authorization: Bearer ...`. Only a hash is stored: it
    /// cannot be shown again.
    pub secret: String,
}

/// `GET /v1/namespaces/NS/keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// `PUT /v1/functions/NAME/access`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetAccess {
    pub access: Access,
}

/// `GET /v1/kv/STORE`: a page of keys, and where the next page starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvKeys {
    pub store: String,
    pub keys: Vec<String>,
    /// Pass as `?after=` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `GET /v1/audit`: newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}

/// `GET /v1/whoami`: the caller, so a client (the console) can show what it may do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// `admin` (the host admin token) or `key:ID`.
    pub actor: String,
    /// The key's namespace (`None`: the host admin, in every namespace).
    pub namespace: Option<String>,
    /// The key's role (`None`: the host admin, who may do everything).
    pub role: Option<crate::model::Role>,
    /// Whether the caller may change things (deploy, traffic, retries) where it acts.
    pub can_write: bool,
}
