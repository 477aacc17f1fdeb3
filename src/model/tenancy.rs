//! Namespaces, API keys, roles, quotas and the audit log: who may do what, and where.
//!
//! A function's id is its name in the `default` namespace and `NAME.NS` in namespace `NS`.
//! Names and namespaces are DNS labels, so the dot is unambiguous (as in Knative's
//! `NAME.NAMESPACE` host names), and every part of fnhost that keys by function id (routes,
//! the store, usage, logs, metrics, history) is per namespace without knowing namespaces.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The namespace of unqualified names: today's URLs and CLI keep working unchanged.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The namespace part of a function or bucket id (`NAME.NS`, or `default`).
pub fn namespace_of(id: &str) -> &str {
    id.split_once('.').map_or(DEFAULT_NAMESPACE, |(_, ns)| ns)
}

/// The id of `name` in `namespace`: unqualified in `default`.
pub fn qualify(name: &str, namespace: &str) -> String {
    if namespace == DEFAULT_NAMESPACE || name.contains('.') {
        name.to_string()
    } else {
        format!("{name}.{namespace}")
    }
}

/// True for a lowercase DNS label: 1-63 of a-z, 0-9 and '-', not starting or ending with '-'.
pub fn is_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid namespace {0:?}: namespaces are lowercase DNS labels (1-63 characters of a-z, 0-9 and '-', not starting or ending with '-')"
)]
pub struct InvalidNamespace(pub String);

/// Checks a namespace name.
pub fn check_namespace(name: &str) -> Result<(), InvalidNamespace> {
    if is_label(name) {
        Ok(())
    } else {
        Err(InvalidNamespace(name.to_string()))
    }
}

/// What a key may do, within its namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything a deployer may, plus the namespace's keys.
    Admin,
    /// Deploy, publish, change traffic, config, scaling, triggers and objects; read all.
    Deployer,
    /// Read only.
    Viewer,
    /// Call the namespace's `key`-auth functions on the data plane; nothing on the admin API.
    Invoker,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Deployer, Role::Viewer, Role::Invoker];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Deployer => "deployer",
            Self::Viewer => "viewer",
            Self::Invoker => "invoker",
        }
    }

    pub fn allows(self, action: Action) -> bool {
        match action {
            Action::Read => matches!(self, Self::Admin | Self::Deployer | Self::Viewer),
            Action::Write => matches!(self, Self::Admin | Self::Deployer),
            Action::ManageKeys => self == Self::Admin,
            Action::Invoke => matches!(self, Self::Admin | Self::Deployer | Self::Invoker),
            Action::Host => false,
        }
    }

    /// What this role may do, for the 403 that refuses anything else.
    pub fn may(self) -> &'static str {
        match self {
            Self::Admin => "read and change its namespace's functions, buckets and keys",
            Self::Deployer => {
                "deploy, publish, change traffic, config, scaling, triggers and objects in its namespace"
            }
            Self::Viewer => "read its namespace's functions, usage, logs and history",
            Self::Invoker => "call its namespace's key-auth functions on the data plane",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of permission an operation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
    ManageKeys,
    Invoke,
    /// Host-wide: namespaces, quotas, nodes, metrics. Only the host admin token.
    Host,
}

/// Who made a request: the host admin token, or a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    HostAdmin,
    Key {
        id: String,
        namespace: String,
        role: Role,
    },
}

impl Principal {
    /// How the audit log and the alias history name this caller.
    pub fn actor(&self) -> String {
        match self {
            Self::HostAdmin => "admin".to_string(),
            Self::Key { id, .. } => format!("key:{id}"),
        }
    }

    /// Whether this caller may do `action` in `namespace` (`None`: host-wide).
    pub fn check(&self, action: Action, namespace: Option<&str>) -> Result<(), Denied> {
        let Self::Key {
            id,
            namespace: own,
            role,
        } = self
        else {
            return Ok(());
        };
        let in_namespace = namespace == Some(own.as_str());
        if in_namespace && role.allows(action) {
            return Ok(());
        }
        let asked = match (action, namespace) {
            (Action::Host, _) | (_, None) => {
                "a host-wide operation (only the host admin token)".to_string()
            }
            (_, Some(ns)) if !in_namespace => format!("namespace {ns:?}"),
            (Action::Read, _) => "reading".to_string(),
            (Action::Write, _) => "a change".to_string(),
            (Action::ManageKeys, _) => "managing keys".to_string(),
            (Action::Invoke, _) => "invoking".to_string(),
        };
        Err(Denied(format!(
            "key {id} ({role} of namespace {own:?}) may not do this: {asked} is outside what it may do; \
             a {role} key may {}",
            role.may()
        )))
    }
}

/// A request outside what its key may do: the 403's text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Denied(pub String);

/// Per-namespace limits; `None` is unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Functions in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions: Option<u32>,
    /// Published versions kept, over all the namespace's functions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<u32>,
    /// Invocations running at once over all the namespace's functions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Provisioned (always warm) instances over all the namespace's functions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned: Option<u32>,
    /// Linear memory per instance, in MiB (a function's `memory_mb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    /// Bytes stored over all the namespace's buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_bytes: Option<u64>,
}

impl Quotas {
    /// Applies `patch`: a field given replaces this one, `Some(0)` in the patch's JSON as
    /// `null` clears it (unlimited).
    pub fn merged(&self, patch: &QuotasPatch) -> Quotas {
        fn pick<T>(old: Option<T>, new: Option<Option<T>>) -> Option<T> {
            new.unwrap_or(old)
        }
        Quotas {
            functions: pick(self.functions, patch.functions),
            versions: pick(self.versions, patch.versions),
            concurrency: pick(self.concurrency, patch.concurrency),
            provisioned: pick(self.provisioned, patch.provisioned),
            memory_mb: pick(self.memory_mb, patch.memory_mb),
            bucket_bytes: pick(self.bucket_bytes, patch.bucket_bytes),
        }
    }

    /// Refuses `would_be` of quota `name` above its limit, naming the quota.
    pub fn check(
        limit: Option<impl Into<u64>>,
        name: &'static str,
        namespace: &str,
        would_be: u64,
    ) -> Result<(), QuotaExceeded> {
        match limit.map(Into::into) {
            Some(limit) if would_be > limit => Err(QuotaExceeded {
                quota: name,
                namespace: namespace.to_string(),
                limit,
                would_be,
            }),
            _ => Ok(()),
        }
    }
}

/// A change of quotas: absent fields stay, `null` removes a limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotasPatch {
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub functions: Option<Option<u32>>,
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub versions: Option<Option<u32>>,
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub concurrency: Option<Option<u32>>,
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub provisioned: Option<Option<u32>>,
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_mb: Option<Option<u32>>,
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub bucket_bytes: Option<Option<u64>>,
}

/// `null` and a value told apart from an absent field.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize + Copy>(
        value: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        value.flatten().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// A change refused because it would pass a namespace quota.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "quota {quota} of namespace {namespace:?} exceeded: the limit is {limit}, this change would make it {would_be}; \
     remove something first or ask the host admin to raise it (fnhost namespace quota)"
)]
pub struct QuotaExceeded {
    pub quota: &'static str,
    pub namespace: String,
    pub limit: u64,
    pub would_be: u64,
}

/// A namespace as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    pub name: String,
    pub quotas: Quotas,
    pub created_ms: i64,
}

/// How a function's data-plane URL is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Anyone who can reach the data plane may call it.
    #[default]
    Public,
    /// Calls need `Authorization: Bearer KEY` with an invoker (or deployer, admin) key of the
    /// function's namespace.
    Key,
}

impl Access {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "public" => Some(Self::Public),
            "key" => Some(Self::Key),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Key => "key",
        }
    }
}

/// An API key as stored: the secret itself is never stored, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub namespace: String,
    pub role: Role,
    pub secret_sha256: String,
    pub description: String,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
    /// Who created it (`admin` or `key:ID`).
    pub created_by: String,
}

impl KeyRecord {
    /// Why the key cannot be used at `now_ms`, if it cannot.
    pub fn unusable(&self, now_ms: i64) -> Option<&'static str> {
        if self.revoked_ms.is_some() {
            Some("revoked")
        } else if self.expires_ms.is_some_and(|at| at <= now_ms) {
            Some("expired")
        } else {
            None
        }
    }
}

/// The prefix of every key's text, so secret scanners and people can tell one apart.
const KEY_PREFIX: &str = "fnk_";

/// A freshly made key: its text (shown once) and the record to store.
pub struct NewKey {
    pub text: String,
    pub id: String,
    pub secret_sha256: String,
}

impl NewKey {
    /// From randomness the caller drew (the model does no I/O): a 6-byte id, public (listed,
    /// logged, audited), and a 32-byte secret.
    pub fn from_random(id: [u8; 6], secret: [u8; 32]) -> Self {
        let id = hex::encode(id);
        let secret = hex::encode(secret);
        Self {
            text: format!("{KEY_PREFIX}{id}_{secret}"),
            secret_sha256: sha256_hex(&secret),
            id,
        }
    }
}

/// `fnk_ID_SECRET` split into id and the secret's hash, or `None` if it is not a key.
pub fn parse_key(text: &str) -> Option<(&str, String)> {
    let (id, secret) = text.strip_prefix(KEY_PREFIX)?.split_once('_')?;
    let hex_of = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_of(id, 12) && hex_of(secret, 64)).then(|| (id, sha256_hex(secret)))
}

fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two equal-length strings without an early exit, so timing reveals nothing of
/// where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One admin action, as the audit log keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Assigned by the store, increasing.
    pub seq: i64,
    pub at_ms: i64,
    /// The namespace acted on; `None` for host-wide operations.
    pub namespace: Option<String>,
    /// `admin` or `key:ID`.
    pub actor: String,
    /// `METHOD PATH`.
    pub action: String,
    /// The answer's status: refusals are recorded too.
    pub status: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_ids_split_and_join() {
        assert_eq!(namespace_of("cart"), "default");
        assert_eq!(namespace_of("cart.shop"), "shop");
        assert_eq!(qualify("cart", "default"), "cart");
        assert_eq!(qualify("cart", "shop"), "cart.shop");
        assert_eq!(qualify("cart.shop", "other"), "cart.shop");
    }

    #[test]
    fn roles_allow_what_they_say() {
        let key = |role| Principal::Key {
            id: "k".into(),
            namespace: "a".into(),
            role,
        };
        assert!(key(Role::Viewer).check(Action::Read, Some("a")).is_ok());
        assert!(key(Role::Viewer).check(Action::Write, Some("a")).is_err());
        assert!(key(Role::Deployer).check(Action::Write, Some("a")).is_ok());
        assert!(
            key(Role::Deployer)
                .check(Action::ManageKeys, Some("a"))
                .is_err()
        );
        assert!(
            key(Role::Admin)
                .check(Action::ManageKeys, Some("a"))
                .is_ok()
        );
        let other = key(Role::Admin).check(Action::Read, Some("b")).unwrap_err();
        assert!(other.0.contains("namespace \"b\""), "{other}");
        assert!(key(Role::Admin).check(Action::Host, None).is_err());
        assert!(key(Role::Invoker).check(Action::Read, Some("a")).is_err());
        assert!(key(Role::Invoker).check(Action::Invoke, Some("a")).is_ok());
        assert!(key(Role::Viewer).check(Action::Invoke, Some("a")).is_err());
        assert!(Principal::HostAdmin.check(Action::Host, None).is_ok());
    }

    #[test]
    fn keys_round_trip_through_their_text_only() {
        let key = NewKey::from_random([1; 6], [7; 32]);
        let (id, hash) = parse_key(&key.text).unwrap();
        assert_eq!(
            (id, hash.as_str()),
            (key.id.as_str(), key.secret_sha256.as_str())
        );
        assert!(!key.text.contains(&key.secret_sha256));
        let mut tampered = key.text.clone();
        tampered.pop();
        tampered.push('x');
        assert!(parse_key(&tampered).is_none());
        assert!(parse_key("Bearer nonsense").is_none());
        assert_ne!(NewKey::from_random([1; 6], [8; 32]).text, key.text);
    }

    #[test]
    fn quotas_merge_and_name_themselves() {
        let quotas = Quotas {
            functions: Some(2),
            ..Quotas::default()
        };
        let patch: QuotasPatch =
            serde_json::from_str(r#"{"functions": null, "versions": 5}"#).unwrap();
        let merged = quotas.merged(&patch);
        assert_eq!((merged.functions, merged.versions), (None, Some(5)));
        assert!(Quotas::check(Some(2u32), "functions", "a", 2).is_ok());
        let err = Quotas::check(Some(2u32), "functions", "a", 3).unwrap_err();
        assert!(err.to_string().contains("quota functions"), "{err}");
    }
}
