//! Durable state behind one boundary: the metadata store ([`MetadataStore`], with SQLite as
//! the embedded implementation in [`sqlite`]) and content-addressed module bytes
//! ([`ModuleStore`]).
//!
//! The trait is the whole contract a metadata backend must keep: every method is one
//! transaction (all of it commits or none), errors are typed so callers can tell a missing
//! function from a broken disk, and `conformance` holds the tests every implementation must
//! pass. Methods are blocking; callers run them off the async runtime
//! (`registry::Registry` does, with `spawn_blocking`).

mod blobs;
#[cfg(test)]
pub(crate) mod conformance;
pub(crate) mod decode;
mod http_routes;
pub(crate) mod outbox;
pub mod postgres;
pub mod sqlite;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dependencies::{Dependencies, Part};
pub use blobs::{
    ModuleStore, ObjectStoreDown, SharedBlobs, SharedStore,
    is_unreachable as object_store_unreachable,
};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::model::{
    Access, AliasRecord, AliasSpec, AuditEntry, BasisPoints, ConfigPatch, DefaultPolicy,
    DefaultPolicyPatch, Digest, EventRecord, EventStatus, FunctionInfo, HealthSample, HistoryEntry,
    HttpRoute, InvalidAlias, InvalidConfig, KeyRecord, KvEntry, KvLimits, KvStoreId, Lane,
    NamespaceRecord, NewCode, NewObject, NodeRecord, Quotas, RoutesChange, ScalingPolicy,
    SecretRow, Settlement, TimerTick, TrafficChange, Trigger, TriggerSource, UsageRow, VersionInfo,
    VersionLabel, Why,
};

/// Where the metadata lives: `--registry` (`FNHOST_REGISTRY`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataLocation {
    /// The embedded default: one SQLite file, one node.
    Sqlite(PathBuf),
    /// Fleet mode: a PostgreSQL database many nodes share.
    Postgres(String),
}

impl MetadataLocation {
    /// `spec`: none for SQLite in `data_dir`, `postgres://...` (or `postgresql://...`), or
    /// `sqlite:PATH`.
    pub fn parse(spec: Option<&str>, data_dir: &Path) -> Result<Self, InvalidConfig> {
        let Some(spec) = spec.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(Self::Sqlite(data_dir.join("metadata.sqlite3")));
        };
        if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            return Ok(Self::Postgres(spec.to_string()));
        }
        if let Some(path) = spec.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if !path.is_empty() {
                return Ok(Self::Sqlite(PathBuf::from(path)));
            }
        }
        Err(InvalidConfig(format!(
            "--registry {:?}: use postgres://USER:PASSWORD@HOST:PORT/DATABASE for a fleet, or \
             sqlite:PATH (the default is {} in the data directory)",
            redact(spec),
            "metadata.sqlite3"
        )))
    }

    /// Opens (creating or migrating) the store.
    pub fn open(&self) -> Result<Arc<dyn MetadataStore>, StoreError> {
        Ok(match self {
            Self::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
            Self::Postgres(dsn) => Arc::new(PostgresStore::connect(dsn)?),
        })
    }

    /// Whether several nodes may share it.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }
}

/// Shown in logs and status: the connection string without its password.
impl std::fmt::Display for MetadataLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "SQLite {}", path.display()),
            Self::Postgres(dsn) => write!(f, "PostgreSQL {}", redact(dsn)),
        }
    }
}

/// `scheme://user:secret@host/...` as `scheme://user:***@host/...`.
fn redact(dsn: &str) -> String {
    match url::Url::parse(dsn) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => dsn.to_string(),
    }
}

/// Store failures. The admin API maps the not-found cases to 404, `VersionInUse` to 409, the
/// invalid ones to 400, `Unavailable` and `ObjectStoreUnavailable` to 503, `DiskFull` to
/// 507 and the rest to 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("function {0:?} not found")]
    UnknownFunction(String),
    #[error("function {0:?} has no version {1}")]
    UnknownVersion(String, u32),
    #[error("function {0:?} has no alias {1:?}")]
    UnknownAlias(String, String),
    #[error("{0}")]
    NotFound(String),
    #[error(
        "function {function:?} version {version} is used by alias {}; point the alias elsewhere first",
        aliases.join(", ")
    )]
    VersionInUse {
        function: String,
        version: u32,
        aliases: Vec<String>,
    },
    #[error(transparent)]
    InvalidConfig(#[from] InvalidConfig),
    #[error(transparent)]
    InvalidAlias(#[from] InvalidAlias),
    #[error(transparent)]
    InvalidRoute(#[from] crate::model::InvalidRoute),
    /// The change would pass one of the host's limits (a key-value store's size); nothing
    /// was changed.
    #[error("{0}")]
    Limit(String),
    /// The change would pass a namespace quota; nothing was changed.
    #[error(transparent)]
    Quota(#[from] crate::model::QuotaExceeded),
    #[error("metadata database: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database cannot be reached (refused, cut off, timed out, shutting down): nothing
    /// this call would have changed was committed, unless the cut came at the commit itself.
    #[error(
        "the metadata database is unreachable ({0}); functions already deployed keep serving; \
         retry this once it is back (fnhost reconnects by itself)"
    )]
    Unavailable(String),
    /// The disk holding the data is full; nothing was written.
    #[error("the disk is full ({0}); nothing was written; free space on it and retry")]
    DiskFull(String),
    /// The fleet's object store could not be reached; nothing was stored and no metadata
    /// names what was not.
    #[error(
        "the object store is unreachable ({0}); nothing was stored; functions already \
         deployed keep serving; retry once it is back"
    )]
    ObjectStoreUnavailable(String),
    #[error("module storage: {0}")]
    Io(std::io::Error),
    /// A compare-and-swap lost: the row changed since it was read. Read it again.
    #[error("{0}")]
    Conflict(String),
    #[error("metadata is corrupt: {0}; restore the data directory from a backup")]
    Corrupt(String),
}

/// A full disk (or quota) and an unreachable object store are told apart from other I/O
/// failures: the fix is the operator's.
impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        if let Some(down) = ObjectStoreDown::of(&e) {
            StoreError::ObjectStoreUnavailable(down.0.clone())
        } else if is_disk_full(&e) {
            StoreError::DiskFull(e.to_string())
        } else {
            StoreError::Io(e)
        }
    }
}

impl StoreError {
    /// The dependency this failure is an outage of, if it is one: callers log nothing more
    /// (the outage is logged once by `dependencies`).
    pub fn outage(&self) -> Option<Part> {
        match self {
            StoreError::Unavailable(_) => Some(Part::Database),
            StoreError::DiskFull(_) => Some(Part::Disk),
            StoreError::ObjectStoreUnavailable(_) => Some(Part::ObjectStore),
            _ => None,
        }
    }
}

/// Tells `dependencies` what a database call found: an outage of the database or the disk,
/// or (any answer from it) that the database is up.
pub fn observe<T>(dependencies: &Dependencies, out: &Result<T, StoreError>) {
    if !observe_failure(dependencies, out) {
        dependencies.ok(Part::Database);
    }
}

/// Tells `dependencies` of an outage `out` met, if any (for calls that are not the
/// database's, such as writing a module file); returns whether there was one.
pub fn observe_failure<T>(dependencies: &Dependencies, out: &Result<T, StoreError>) -> bool {
    match out.as_ref().err().and_then(|e| Some((e, e.outage()?))) {
        Some((e, part)) => {
            dependencies.failed(part, e);
            true
        }
        None => false,
    }
}

/// ENOSPC or EDQUOT: no room left on the filesystem, or in the user's quota.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

impl StoreError {
    /// Namespace `name` does not exist: says who can create it, and how.
    pub fn unknown_namespace(name: &str) -> Self {
        Self::NotFound(format!(
            "namespace {name:?} not found; the host admin creates it with `fnhost namespace create {name}`"
        ))
    }

    /// The rollout of `function` was saved by someone else since it was read.
    pub fn rollout_changed(function: &str) -> Self {
        Self::Conflict(format!(
            "the rollout of {function} changed meanwhile (another node or admin saved it); \
             read it again and retry"
        ))
    }
}

/// One function with all its versions, aliases and scaling policy.
#[derive(Clone, Debug)]
pub struct FunctionRows {
    pub info: FunctionInfo,
    pub versions: Vec<VersionInfo>,
    pub default_policy: DefaultPolicy,
    pub aliases: Vec<AliasRecord>,
    pub scaling: ScalingPolicy,
    /// Who may call it on the data plane (function-wide, every version).
    pub access: Access,
    /// Its secrets, sealed, by name.
    pub secrets: Vec<SecretRow>,
}

/// What `publish` did.
#[derive(Clone, Debug)]
pub struct Published {
    pub version: VersionInfo,
    /// False when `$LATEST` equalled the newest version, which is returned instead.
    pub created: bool,
}

/// The metadata store: functions, versions, aliases, their history, rollouts, triggers, the
/// event outbox and usage. Each method is one atomic transaction.
///
/// **Invariants every implementation keeps** (checked by `conformance`): a published version
/// never changes and its number is never reused; an alias only names versions that exist, and
/// a version an alias names cannot be deleted; every change that can move traffic is recorded
/// in the alias history in the same transaction; a rollout's state and its traffic change
/// commit together; an event changes state in one transaction and is never lost.
pub trait MetadataStore: Send + Sync {
    // --- functions and versions ---

    /// Every function, ordered by name.
    fn load_all(&self) -> Result<Vec<FunctionRows>, StoreError>;
    fn function(&self, name: &str) -> Result<FunctionRows, StoreError>;
    /// Points `$LATEST` at new code (creating the function on first upload) with `patch`
    /// applied to its config. The module blob must already be durable. With `latest_bp`,
    /// also sets `$DEFAULT`'s share to `$LATEST`.
    fn set_latest(
        &self,
        name: &str,
        code: &NewCode,
        patch: &ConfigPatch,
        latest_bp: Option<BasisPoints>,
        now_ms: i64,
        why: &Why,
    ) -> Result<(), StoreError>;
    /// Applies `patch` to `$LATEST`'s config, keeping its code.
    fn set_latest_config(
        &self,
        name: &str,
        patch: &ConfigPatch,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Freezes `$LATEST` as the next version number, unless it equals the newest version
    /// (which is returned instead). With `promote`, `$DEFAULT` then sends it all traffic.
    fn publish(
        &self,
        name: &str,
        description: &str,
        promote: bool,
        now_ms: i64,
        why: &Why,
    ) -> Result<Published, StoreError>;
    /// Deletes a function and its versions; returns module digests nothing uses any more.
    fn delete_function(&self, name: &str, why: &Why) -> Result<Vec<Digest>, StoreError>;
    /// Deletes one version (refused while an alias names it); returns unused digests.
    fn delete_version(&self, name: &str, number: u32, why: &Why)
    -> Result<Vec<Digest>, StoreError>;
    /// Every module digest the metadata names (blobs outside it are orphans).
    fn known_modules(&self) -> Result<HashSet<Digest>, StoreError>;
    /// Provisioned concurrency of the function (`version` None) or one version, which must
    /// exist. Returns the whole policy.
    fn set_provisioned(
        &self,
        function: &str,
        version: Option<VersionLabel>,
        count: u32,
    ) -> Result<ScalingPolicy, StoreError>;

    // --- traffic: aliases, $DEFAULT, rollouts, history ---

    /// Creates or replaces an alias; every version it names must exist.
    fn set_alias(
        &self,
        function: &str,
        alias: &str,
        spec: &AliasSpec,
        now_ms: i64,
        why: &Why,
    ) -> Result<(), StoreError>;
    fn delete_alias(&self, function: &str, alias: &str, why: &Why) -> Result<(), StoreError>;
    fn set_default_policy(
        &self,
        function: &str,
        patch: &DefaultPolicyPatch,
        why: &Why,
    ) -> Result<(), StoreError>;
    /// Stores `state` (opaque JSON) as `function`'s rollout and applies its traffic change,
    /// atomically, if the stored rollout is still at `revision` (0: none stored); returns
    /// the new revision. Otherwise nothing changes and the answer is
    /// [`StoreError::Conflict`]: someone else (another node, an admin) saved it first.
    #[allow(clippy::too_many_arguments)] // one compare-and-swap of state and traffic
    fn save_rollout(
        &self,
        function: &str,
        revision: i64,
        state: &str,
        change: Option<&TrafficChange>,
        why: &Why,
        now_ms: i64,
    ) -> Result<i64, StoreError>;
    /// `function`'s stored rollout, if any.
    fn rollout(&self, function: &str) -> Result<Option<StoredRollout>, StoreError>;
    /// Every stored rollout, by function.
    fn rollouts(&self) -> Result<Vec<StoredRollout>, StoreError>;
    /// The newest `limit` alias changes of `function` (or one alias), newest first.
    fn alias_history(
        &self,
        function: &str,
        alias: Option<&str>,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>, StoreError>;

    // --- triggers and the event outbox ---

    fn add_trigger(
        &self,
        function: &str,
        target: Option<&str>,
        source: &TriggerSource,
        now_ms: i64,
    ) -> Result<Trigger, StoreError>;
    fn triggers(&self, function: Option<&str>) -> Result<Vec<Trigger>, StoreError>;
    fn delete_trigger(&self, function: &str, id: i64) -> Result<(), StoreError>;
    /// Queues one event per object trigger that matches the new object.
    fn enqueue_object(
        &self,
        object: &NewObject<'_>,
        now_ms: i64,
    ) -> Result<Vec<EventRecord>, StoreError>;
    /// Queues the timer tick scheduled at `tick_ms`: once per tick however many nodes fire
    /// it, and none while the previous one is pending or running unless `allow_overlap`.
    fn enqueue_timer(
        &self,
        trigger: &Trigger,
        tick_ms: i64,
        allow_overlap: bool,
        now_ms: i64,
    ) -> Result<TimerTick, StoreError>;
    /// Marks up to `limit` due events `running` under a lease until `lease_until_ms`, and
    /// returns them: pending ones whose attempt is due, and running ones whose lease expired
    /// (their node died mid-delivery). Concurrent callers never claim the same event.
    /// Only events of `lane`, and none of the functions in `skip` (busy ones).
    fn claim_due(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
        lane: Lane,
        skip: &[String],
    ) -> Result<Vec<EventRecord>, StoreError>;
    /// Queues an asynchronous invocation (an event with its stored request), refused with
    /// `Limit` when `max_queued` of the function's are already pending or running.
    fn enqueue_invocation(&self, event: &EventRecord, max_queued: u32) -> Result<(), StoreError>;
    /// Extends the leases of running events `ids` (still being delivered) to `until_ms`.
    fn renew_leases(&self, ids: &[String], until_ms: i64) -> Result<(), StoreError>;
    fn settle_event(&self, id: &str, settled: &Settlement, now_ms: i64) -> Result<(), StoreError>;
    /// Puts events left `running` by a stopped host back to `pending`.
    fn requeue_running(&self, now_ms: i64) -> Result<usize, StoreError>;
    /// Deletes delivered events last changed before `before_ms`; pending, running and
    /// dead-lettered ones stay. Returns how many went.
    fn prune_delivered_events(&self, before_ms: i64) -> Result<usize, StoreError>;
    fn events(
        &self,
        function: &str,
        lane: Lane,
        status: Option<EventStatus>,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError>;
    fn event(&self, id: &str) -> Result<Option<EventRecord>, StoreError>;
    /// Sends a dead-lettered event again.
    fn retry_event(&self, id: &str, now_ms: i64) -> Result<EventRecord, StoreError>;

    // --- usage ---

    /// Adds a batch of usage, merging rows with the same key; all of the batch or none.
    fn add_usage(&self, rows: &[UsageRow]) -> Result<(), StoreError>;
    /// Stored usage from `since_minute` on, for one function or all.
    fn usage(&self, function: Option<&str>, since_minute: i64)
    -> Result<Vec<UsageRow>, StoreError>;

    // --- the host and its fleet ---

    /// The host setting `name` (such as the admin token), storing `initial` first when it
    /// has none; nodes racing to initialise it all get the value stored first.
    fn setting_or_init(&self, name: &str, initial: &str) -> Result<String, StoreError>;
    /// Records `node`'s heartbeat and forgets nodes silent since before `expired_before_ms`.
    fn heartbeat(&self, node: &NodeRecord, expired_before_ms: i64) -> Result<(), StoreError>;
    /// Nodes that heartbeated at or after `since_ms`, by data address.
    fn nodes(&self, since_ms: i64) -> Result<Vec<NodeRecord>, StoreError>;
    /// Removes a node that is leaving (a clean stop).
    fn leave(&self, id: &str) -> Result<(), StoreError>;
    /// Takes or keeps the lease `name` for `holder` until `until_ms`: granted when nobody
    /// holds it, when its lease ended before `now_ms`, or when `holder` holds it already.
    /// Returns whether `holder` holds it now. Concurrent callers never both get it.
    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Who holds the lease `name` at `now_ms`, if anyone.
    fn lease_holder(&self, name: &str, now_ms: i64) -> Result<Option<String>, StoreError>;
    /// Gives up `holder`'s lease `name` (a clean stop), so another takes over at once.
    fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;
    /// Stores `node`'s per-second health samples, replacing ones it stored for the same
    /// function, version and second (a second may be published again, grown).
    fn add_health(&self, node: &str, samples: &[HealthSample]) -> Result<(), StoreError>;
    /// Every node's samples of `function` with `from <= second < to`.
    fn health(&self, function: &str, from: i64, to: i64) -> Result<Vec<HealthSample>, StoreError>;
    /// Deletes samples of seconds before `before`; returns how many went.
    fn prune_health(&self, before: i64) -> Result<usize, StoreError>;
    // --- key-value stores (`wasi:keyvalue`) ---

    /// The entries of `keys` in `store`, in order (`None` where absent).
    fn kv_get(
        &self,
        store: &KvStoreId,
        keys: &[String],
    ) -> Result<Vec<Option<KvEntry>>, StoreError>;
    /// Sets every entry, all or none; refused with [`StoreError::Limit`] if the store would
    /// pass `limits`.
    fn kv_set(
        &self,
        store: &KvStoreId,
        entries: &[(String, Vec<u8>)],
        limits: &KvLimits,
    ) -> Result<(), StoreError>;
    /// Deletes the keys (absent ones are no error).
    fn kv_delete(&self, store: &KvStoreId, keys: &[String]) -> Result<(), StoreError>;
    /// Up to `limit` keys after `after`, in order.
    fn kv_keys(
        &self,
        store: &KvStoreId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;
    /// Adds `delta` to the number at `key` (created at `delta`), atomically; the new value.
    fn kv_increment(
        &self,
        store: &KvStoreId,
        key: &str,
        delta: i64,
        limits: &KvLimits,
    ) -> Result<i64, StoreError>;
    /// Sets `key` to `value` only if its version is still `expected` (`None`: still
    /// absent). Returns whether it did. Concurrent swaps of one version: one wins.
    fn kv_swap(
        &self,
        store: &KvStoreId,
        key: &str,
        expected: Option<i64>,
        value: &[u8],
        limits: &KvLimits,
    ) -> Result<bool, StoreError>;

    /// Every key-value store's key and byte counts: (store, keys, bytes).
    fn kv_stores(&self) -> Result<Vec<(KvStoreId, i64, i64)>, StoreError>;

    // --- teams: namespaces, keys, the audit log, function access ---

    /// Creates a namespace; [`StoreError::Conflict`] if it exists.
    fn create_namespace(&self, record: &NamespaceRecord) -> Result<(), StoreError>;
    /// Every namespace (`default` included), by name.
    fn namespaces(&self) -> Result<Vec<NamespaceRecord>, StoreError>;
    fn set_quotas(&self, name: &str, quotas: &Quotas) -> Result<NamespaceRecord, StoreError>;
    /// Deletes a namespace with no functions, and its keys and HTTP routes; refused
    /// (`Conflict`) while functions live in it, and for `default`.
    fn delete_namespace(&self, name: &str) -> Result<(), StoreError>;
    /// Stores a new key of an existing namespace.
    fn add_key(&self, key: &KeyRecord) -> Result<(), StoreError>;
    fn key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError>;
    /// Keys of one namespace or all, revoked and expired ones included.
    fn keys(&self, namespace: Option<&str>) -> Result<Vec<KeyRecord>, StoreError>;
    /// Marks a key revoked (once: a second revocation keeps the first time).
    fn revoke_key(&self, id: &str, now_ms: i64) -> Result<KeyRecord, StoreError>;
    /// Appends to the audit log; returns the entry's sequence number.
    fn add_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError>;
    /// The newest `limit` audit entries of one namespace or all, newest first.
    fn audit(&self, namespace: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
    /// Sets who may call `function` on the data plane.
    fn set_access(&self, function: &str, access: Access) -> Result<(), StoreError>;
    /// Stores (or replaces) `function`'s secret `name`, already sealed.
    fn set_secret(
        &self,
        function: &str,
        name: &str,
        sealed: &[u8],
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Deletes a secret; `NotFound` if there is none.
    fn delete_secret(&self, function: &str, name: &str) -> Result<(), StoreError>;

    // --- HTTP routes ---

    /// Every namespace's HTTP routes.
    fn http_routes(&self) -> Result<Vec<HttpRoute>, StoreError>;
    /// Changes `namespace`'s routes in one transaction and returns them as they are now.
    /// Refused, changing nothing: a route of another namespace's function (`InvalidRoute`),
    /// a match routed twice (`InvalidRoute`) or by another namespace (`Conflict`), a delete
    /// of a route that is not there (`NotFound`).
    fn change_http_routes(
        &self,
        namespace: &str,
        change: &RoutesChange,
    ) -> Result<Vec<HttpRoute>, StoreError>;

    /// A number that grows with every committed function change (any node's), so a node
    /// can tell whether anything changed since it last read everything; `None` for a store
    /// no other node shares.
    fn change_serial(&self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }
    /// The functions other nodes change, as they commit; `None` for a store no other node
    /// shares. Reads must follow: a function named here is re-read from the store.
    fn watch(&self) -> Option<ChangeFeed> {
        None
    }
}

/// A rollout as stored: its state (JSON the rollout module owns) and its revision, which
/// every save bumps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRollout {
    pub function: String,
    pub revision: i64,
    pub state: String,
}

/// What another node changed, from [`MetadataStore::watch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// This function's rows changed (or it was deleted): re-read it.
    Function(String),
    /// Namespaces or keys changed: re-read them.
    Tenancy,
    /// HTTP routes changed: re-read them.
    Routes,
    /// Changes may have been missed (the feed reconnected, or a periodic check): re-read
    /// everything.
    Resync,
}

/// The receiving end of a store's change feed.
pub type ChangeFeed = tokio::sync::mpsc::UnboundedReceiver<Change>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_locations_parse_and_hide_passwords() {
        let dir = Path::new("/data");
        assert_eq!(
            MetadataLocation::parse(None, dir).unwrap(),
            MetadataLocation::Sqlite(dir.join("metadata.sqlite3"))
        );
        assert_eq!(
            MetadataLocation::parse(Some("sqlite:///tmp/m.db"), dir).unwrap(),
            MetadataLocation::Sqlite("/tmp/m.db".into())
        );
        let pg = MetadataLocation::parse(Some("postgres://fn:s3cret@db:5432/fnhost"), dir).unwrap();
        assert!(pg.is_shared());
        assert_eq!(
            pg.to_string(),
            "PostgreSQL postgres://fn:***@db:5432/fnhost"
        );
        let err = MetadataLocation::parse(Some("mysql://u:s3cret@db/x"), dir).unwrap_err();
        assert!(
            err.0.contains("postgres://") && !err.0.contains("s3cret"),
            "{err}"
        );
    }
}
