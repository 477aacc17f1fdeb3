//! The embedded metadata store: SQLite in WAL mode with `synchronous=FULL`, so an
//! acknowledged write survives a crash (kill -9) and power loss. Only this directory knows SQL.
//!
//! `mod.rs` opens the database and runs each trait method as one transaction; the queries live
//! by concern: `schema.rs` (migrations), `functions.rs` (functions, versions, aliases,
//! scaling), `audit.rs` (the alias history), `rollouts.rs`, `events.rs` (triggers and the
//! outbox) and `usage.rs`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, Transaction, params};

mod audit;
mod events;
mod fleet;
mod functions;
mod http_routes;
mod kv;
mod rollouts;
mod schema;
mod tenancy;
mod usage;

use super::{FunctionRows, MetadataStore, Published, StoreError, StoredRollout};
use crate::model::{
    Access, AliasSpec, AuditEntry, BasisPoints, ConfigPatch, DefaultPolicyPatch, Digest,
    EventRecord, EventStatus, FunctionConfig, HealthSample, HistoryEntry, HttpRoute, KeyRecord,
    KvEntry, KvLimits, KvStoreId, Lane, NamespaceRecord, NewCode, NewObject, NodeRecord, Quotas,
    RoutesChange, ScalingPolicy, Settlement, TimerTick, TrafficChange, Trigger, TriggerSource,
    UsageRow, VersionLabel, Why,
};
use audit::audited;
use functions::*;

/// Wraps SQLite's errors; a store error keeps the cause for the log.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            // SQLITE_FULL: the write needed a page the filesystem could not give; SQLite
            // rolled the transaction back.
            Some(rusqlite::ErrorCode::DiskFull) => {
                StoreError::DiskFull(format!("SQLite could not grow its file: {e}"))
            }
            _ => StoreError::Database(Box::new(e)),
        }
    }
}

pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Key-value stores' data, in a file of its own (`kv_path`): functions' writes take its
    /// write lock and its fsync, so a function writing hard cannot hold up deploys, traffic
    /// changes or usage on this node.
    kv: Mutex<Connection>,
}

/// Where a database at `path` keeps key-value data: `NAME-keyvalue.EXT` beside it.
pub fn kv_path(path: &Path) -> std::path::PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "metadata".into(), |s| s.to_string_lossy().into_owned());
    let ext = path
        .extension()
        .map_or_else(|| "sqlite3".into(), |s| s.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}-keyvalue.{ext}"))
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`, and its key-value file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = connect(path)?;
        schema::migrate(&mut conn)?;
        let mut kv = connect(&kv_path(path))?;
        schema::migrate_kv(&mut kv)?;
        Ok(Self {
            conn: Mutex::new(conn),
            kv: Mutex::new(kv),
        })
    }

    fn with_tx<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        in_tx(&self.conn, f)
    }

    fn with_kv_tx<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        in_tx(&self.kv, f)
    }
}

/// One connection as every store call needs it: WAL with `synchronous=FULL`, so an
/// acknowledged write survives a crash and power loss.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Runs `f` in one transaction on `conn`: all of it commits, or none.
fn in_tx<T>(
    conn: &Mutex<Connection>,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
    let tx = conn.transaction()?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

impl MetadataStore for SqliteStore {
    fn load_all(&self) -> Result<Vec<FunctionRows>, StoreError> {
        self.with_tx(|tx| {
            let names: Vec<String> = tx
                .prepare("SELECT name FROM functions ORDER BY name")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            names.iter().map(|name| function_rows(tx, name)).collect()
        })
    }

    fn function(&self, name: &str) -> Result<FunctionRows, StoreError> {
        self.with_tx(|tx| function_rows(tx, name))
    }

    /// Points `$LATEST` at new code (creating the function on first upload) and applies the
    /// config. The module blob must already be on disk.
    /// With `latest_bp`, also sets `$DEFAULT`'s share to `$LATEST` in the same transaction.
    fn set_latest(
        &self,
        name: &str,
        code: &NewCode,
        patch: &ConfigPatch,
        latest_bp: Option<BasisPoints>,
        now_ms: i64,
        why: &Why,
    ) -> Result<(), StoreError> {
        self.with_tx(|tx| {
            audited(tx, name, why, |tx| {
                tx.execute(
                    "INSERT OR IGNORE INTO modules (digest, size, created_at) VALUES (?1, ?2, ?3)",
                    params![code.digest.to_hex(), code.size as i64, now_ms],
                )?;
                let current = latest_config(tx, name)?;
                let config = patch.apply(current.as_ref().unwrap_or(&FunctionConfig::default()))?;
                let config_json = serde_json::to_string(&config).expect("config serializes");
                tx.execute(
                    "INSERT INTO functions (name, latest_digest, latest_config, latest_updated_at,
                                        created_at, latest_source)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5)
                 ON CONFLICT(name) DO UPDATE SET latest_digest = ?2, latest_config = ?3,
                                                 latest_updated_at = ?4, latest_source = ?5",
                    params![
                        name,
                        code.digest.to_hex(),
                        config_json,
                        now_ms,
                        code.source.as_deref().unwrap_or("")
                    ],
                )?;
                if let Some(bp) = latest_bp {
                    update_default_policy(tx, name, |policy| policy.latest_bp = bp)?;
                }
                Ok(())
            })
        })
    }

    /// Replaces `$LATEST`'s config, keeping its code.
    fn set_latest_config(
        &self,
        name: &str,
        patch: &ConfigPatch,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.with_tx(|tx| {
            let current = latest_config(tx, name)?
                .ok_or_else(|| StoreError::UnknownFunction(name.to_string()))?;
            let config = patch.apply(&current)?;
            tx.execute(
                "UPDATE functions SET latest_config = ?2, latest_updated_at = ?3 WHERE name = ?1",
                params![
                    name,
                    serde_json::to_string(&config).expect("config serializes"),
                    now_ms
                ],
            )?;
            Ok(())
        })
    }

    /// Freezes `$LATEST` as the next version number, unless it equals the newest version.
    /// With `promote`, also gives the published version all of `$DEFAULT`'s traffic (its
    /// share to `$LATEST` drops to 0) in the same transaction.
    fn publish(
        &self,
        name: &str,
        description: &str,
        promote: bool,
        now_ms: i64,
        why: &Why,
    ) -> Result<Published, StoreError> {
        self.with_tx(|tx| {
            audited(tx, name, why, |tx| {
                publish(tx, name, description, promote, now_ms)
            })
        })
    }

    /// Deletes a function and all its versions; returns module digests nothing uses any more.
    fn delete_function(&self, name: &str, why: &Why) -> Result<Vec<Digest>, StoreError> {
        self.with_tx(|tx| {
            audited(tx, name, why, |tx| {
                let deleted = tx.execute("DELETE FROM functions WHERE name = ?1", [name])?;
                if deleted == 0 {
                    return Err(StoreError::UnknownFunction(name.to_string()));
                }
                drop_unreferenced_modules(tx)
            })
        })
    }

    /// Deletes one published version; returns module digests nothing uses any more.
    fn delete_version(
        &self,
        name: &str,
        number: u32,
        why: &Why,
    ) -> Result<Vec<Digest>, StoreError> {
        self.with_tx(|tx| {
            audited(tx, name, why, |tx| {
                latest_config(tx, name)?
                    .ok_or_else(|| StoreError::UnknownFunction(name.to_string()))?;
                let label = VersionLabel::Number(number);
                let users: Vec<String> = aliases(tx, name)?
                    .into_iter()
                    .filter(|alias| alias.spec.targets().any(|t| t == label))
                    .map(|alias| alias.name)
                    .collect();
                if !users.is_empty() {
                    return Err(StoreError::VersionInUse {
                        function: name.to_string(),
                        version: number,
                        aliases: users,
                    });
                }
                let deleted = tx.execute(
                    "DELETE FROM versions WHERE function = ?1 AND number = ?2",
                    params![name, number],
                )?;
                if deleted == 0 {
                    return Err(StoreError::UnknownVersion(name.to_string(), number));
                }
                let mut policy = scaling(tx, name)?;
                if policy.versions.remove(&label.to_string()).is_some() {
                    store_scaling(tx, name, &policy)?;
                }
                drop_unreferenced_modules(tx)
            })
        })
    }

    /// Creates or replaces an alias; every version it names must exist.
    fn set_alias(
        &self,
        function: &str,
        alias: &str,
        spec: &AliasSpec,
        now_ms: i64,
        why: &Why,
    ) -> Result<(), StoreError> {
        self.with_tx(|tx| {
            audited(tx, function, why, |tx| {
                store_alias(tx, function, alias, spec, now_ms)
            })
        })
    }

    fn delete_alias(&self, function: &str, alias: &str, why: &Why) -> Result<(), StoreError> {
        self.with_tx(|tx| {
            audited(tx, function, why, |tx| {
                let deleted = tx.execute(
                    "DELETE FROM aliases WHERE function = ?1 AND name = ?2",
                    params![function, alias],
                )?;
                if deleted == 0 {
                    latest_config(tx, function)?
                        .ok_or_else(|| StoreError::UnknownFunction(function.to_string()))?;
                    return Err(StoreError::UnknownAlias(
                        function.to_string(),
                        alias.to_string(),
                    ));
                }
                Ok(())
            })
        })
    }

    /// Sets the provisioned concurrency of a function (`version` None) or of one version,
    /// which must exist. Returns the whole policy.
    fn set_provisioned(
        &self,
        function: &str,
        target: Option<VersionLabel>,
        count: u32,
    ) -> Result<ScalingPolicy, StoreError> {
        self.with_tx(|tx| {
            let mut policy = scaling(tx, function)?;
            if let Some(VersionLabel::Number(n)) = target
                && version(tx, function, n)?.is_none()
            {
                return Err(StoreError::UnknownVersion(function.to_string(), n));
            }
            policy.set(target, count);
            store_scaling(tx, function, &policy)?;
            Ok(policy)
        })
    }

    /// Changes `$DEFAULT`'s policy (share to `$LATEST`, sticky header).
    fn set_default_policy(
        &self,
        function: &str,
        patch: &DefaultPolicyPatch,
        why: &Why,
    ) -> Result<(), StoreError> {
        self.with_tx(|tx| {
            audited(tx, function, why, |tx| {
                update_default_policy(tx, function, |policy| patch.apply(policy))
            })
        })
    }

    /// Stores `state` as `function`'s rollout and applies its traffic change, atomically.
    fn save_rollout(
        &self,
        function: &str,
        revision: i64,
        state: &str,
        change: Option<&TrafficChange>,
        why: &Why,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        self.with_tx(|tx| rollouts::save(tx, function, revision, state, change, why, now_ms))
    }

    fn rollout(&self, function: &str) -> Result<Option<StoredRollout>, StoreError> {
        self.with_tx(|tx| Ok(rollouts::stored(tx, Some(function))?.pop()))
    }

    fn add_trigger(
        &self,
        function: &str,
        target: Option<&str>,
        source: &TriggerSource,
        now_ms: i64,
    ) -> Result<Trigger, StoreError> {
        self.with_tx(|tx| events::add_trigger(tx, function, target, source, now_ms))
    }

    fn triggers(&self, function: Option<&str>) -> Result<Vec<Trigger>, StoreError> {
        self.with_tx(|tx| events::triggers(tx, function))
    }

    fn delete_trigger(&self, function: &str, id: i64) -> Result<(), StoreError> {
        self.with_tx(|tx| events::delete_trigger(tx, function, id))
    }

    fn enqueue_object(
        &self,
        object: &NewObject<'_>,
        now_ms: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.with_tx(|tx| events::enqueue_object(tx, object, now_ms))
    }

    fn enqueue_timer(
        &self,
        trigger: &Trigger,
        tick_ms: i64,
        allow_overlap: bool,
        now_ms: i64,
    ) -> Result<TimerTick, StoreError> {
        self.with_tx(|tx| events::enqueue_timer(tx, trigger, tick_ms, allow_overlap, now_ms))
    }

    fn claim_due(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
        lane: Lane,
        skip: &[String],
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.with_tx(|tx| events::claim_due(tx, now_ms, lease_until_ms, limit, lane, skip))
    }

    fn enqueue_invocation(&self, event: &EventRecord, max_queued: u32) -> Result<(), StoreError> {
        self.with_tx(|tx| events::enqueue_invocation(tx, event, max_queued))
    }

    fn renew_leases(&self, ids: &[String], until_ms: i64) -> Result<(), StoreError> {
        self.with_tx(|tx| events::renew_leases(tx, ids, until_ms))
    }

    fn settle_event(&self, id: &str, settled: &Settlement, now_ms: i64) -> Result<(), StoreError> {
        self.with_tx(|tx| events::settle(tx, id, settled, now_ms))
    }

    fn requeue_running(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.with_tx(|tx| events::requeue_running(tx, now_ms))
    }

    fn prune_delivered_events(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.with_tx(|tx| events::prune_delivered(tx, before_ms))
    }

    fn events(
        &self,
        function: &str,
        lane: Lane,
        status: Option<EventStatus>,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.with_tx(|tx| events::events(tx, function, lane, status, limit))
    }

    fn event(&self, id: &str) -> Result<Option<EventRecord>, StoreError> {
        self.with_tx(|tx| events::event(tx, id))
    }

    fn retry_event(&self, id: &str, now_ms: i64) -> Result<EventRecord, StoreError> {
        self.with_tx(|tx| events::retry(tx, id, now_ms))
    }

    /// Every stored rollout as (function, state JSON).
    fn rollouts(&self) -> Result<Vec<StoredRollout>, StoreError> {
        self.with_tx(|tx| rollouts::stored(tx, None))
    }

    /// The newest `limit` alias changes of `function` (or of one alias), newest first.
    fn alias_history(
        &self,
        function: &str,
        alias: Option<&str>,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        self.with_tx(|tx| audit::history(tx, function, alias, limit))
    }

    fn add_usage(&self, rows: &[UsageRow]) -> Result<(), StoreError> {
        self.with_tx(|tx| usage::add(tx, rows))
    }

    fn usage(
        &self,
        function: Option<&str>,
        since_minute: i64,
    ) -> Result<Vec<UsageRow>, StoreError> {
        self.with_tx(|tx| usage::since(tx, function, since_minute))
    }

    fn setting_or_init(&self, name: &str, initial: &str) -> Result<String, StoreError> {
        self.with_tx(|tx| fleet::setting_or_init(tx, name, initial))
    }

    fn heartbeat(&self, node: &NodeRecord, expired_before_ms: i64) -> Result<(), StoreError> {
        self.with_tx(|tx| fleet::heartbeat(tx, node, expired_before_ms))
    }

    fn nodes(&self, since_ms: i64) -> Result<Vec<NodeRecord>, StoreError> {
        self.with_tx(|tx| fleet::nodes(tx, since_ms))
    }

    fn leave(&self, id: &str) -> Result<(), StoreError> {
        self.with_tx(|tx| fleet::leave(tx, id))
    }

    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        self.with_tx(|tx| fleet::acquire_lease(tx, name, holder, now_ms, until_ms))
    }

    fn lease_holder(&self, name: &str, now_ms: i64) -> Result<Option<String>, StoreError> {
        self.with_tx(|tx| fleet::lease_holder(tx, name, now_ms))
    }

    fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.with_tx(|tx| fleet::release_lease(tx, name, holder))
    }

    fn add_health(&self, node: &str, samples: &[HealthSample]) -> Result<(), StoreError> {
        self.with_tx(|tx| fleet::add_health(tx, node, samples))
    }

    fn health(&self, function: &str, from: i64, to: i64) -> Result<Vec<HealthSample>, StoreError> {
        self.with_tx(|tx| fleet::health(tx, function, from, to))
    }

    fn prune_health(&self, before: i64) -> Result<usize, StoreError> {
        self.with_tx(|tx| fleet::prune_health(tx, before))
    }

    fn kv_stores(&self) -> Result<Vec<(KvStoreId, i64, i64)>, StoreError> {
        self.with_kv_tx(kv::stores)
    }

    fn kv_get(
        &self,
        store: &KvStoreId,
        keys: &[String],
    ) -> Result<Vec<Option<KvEntry>>, StoreError> {
        self.with_kv_tx(|tx| kv::get(tx, store, keys))
    }

    fn kv_set(
        &self,
        store: &KvStoreId,
        entries: &[(String, Vec<u8>)],
        limits: &KvLimits,
    ) -> Result<(), StoreError> {
        self.with_kv_tx(|tx| kv::set(tx, store, entries, limits))
    }

    fn kv_delete(&self, store: &KvStoreId, keys: &[String]) -> Result<(), StoreError> {
        self.with_kv_tx(|tx| kv::delete(tx, store, keys))
    }

    fn kv_keys(
        &self,
        store: &KvStoreId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        self.with_kv_tx(|tx| kv::keys(tx, store, after, limit))
    }

    fn kv_increment(
        &self,
        store: &KvStoreId,
        key: &str,
        delta: i64,
        limits: &KvLimits,
    ) -> Result<i64, StoreError> {
        self.with_kv_tx(|tx| kv::increment(tx, store, key, delta, limits))
    }

    fn kv_swap(
        &self,
        store: &KvStoreId,
        key: &str,
        expected: Option<i64>,
        value: &[u8],
        limits: &KvLimits,
    ) -> Result<bool, StoreError> {
        self.with_kv_tx(|tx| kv::swap(tx, store, key, expected, value, limits))
    }

    fn set_secret(
        &self,
        function: &str,
        name: &str,
        sealed: &[u8],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.with_tx(|tx| tenancy::set_secret(tx, function, name, sealed, now_ms))
    }

    fn delete_secret(&self, function: &str, name: &str) -> Result<(), StoreError> {
        self.with_tx(|tx| tenancy::delete_secret(tx, function, name))
    }

    fn create_namespace(&self, record: &NamespaceRecord) -> Result<(), StoreError> {
        self.with_tx(|tx| tenancy::create_namespace(tx, record))
    }

    fn namespaces(&self) -> Result<Vec<NamespaceRecord>, StoreError> {
        self.with_tx(tenancy::namespaces)
    }

    fn set_quotas(&self, name: &str, quotas: &Quotas) -> Result<NamespaceRecord, StoreError> {
        self.with_tx(|tx| tenancy::set_quotas(tx, name, quotas))
    }

    fn delete_namespace(&self, name: &str) -> Result<(), StoreError> {
        self.with_tx(|tx| tenancy::delete_namespace(tx, name))
    }

    fn add_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        self.with_tx(|tx| tenancy::add_key(tx, key))
    }

    fn key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.with_tx(|tx| tenancy::key(tx, id))
    }

    fn keys(&self, namespace: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        self.with_tx(|tx| tenancy::keys(tx, namespace))
    }

    fn revoke_key(&self, id: &str, now_ms: i64) -> Result<KeyRecord, StoreError> {
        self.with_tx(|tx| tenancy::revoke_key(tx, id, now_ms))
    }

    fn add_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        self.with_tx(|tx| tenancy::add_audit(tx, entry))
    }

    fn audit(&self, namespace: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.with_tx(|tx| tenancy::audit(tx, namespace, limit))
    }

    fn http_routes(&self) -> Result<Vec<HttpRoute>, StoreError> {
        self.with_tx(http_routes::all)
    }

    fn change_http_routes(
        &self,
        namespace: &str,
        change: &RoutesChange,
    ) -> Result<Vec<HttpRoute>, StoreError> {
        self.with_tx(|tx| http_routes::change(tx, namespace, change))
    }

    fn set_access(&self, function: &str, access: Access) -> Result<(), StoreError> {
        self.with_tx(|tx| tenancy::set_access(tx, function, access))
    }

    /// Every module digest the metadata knows (blobs outside this set are orphans).
    fn known_modules(&self) -> Result<HashSet<Digest>, StoreError> {
        self.with_tx(|tx| {
            let rows: Vec<String> = tx
                .prepare("SELECT digest FROM modules")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            rows.iter().map(|d| parse_digest(d)).collect()
        })
    }
}

/// Freezes `$LATEST` as the next version unless it equals the newest one; with `promote`,
/// `$DEFAULT`'s share to `$LATEST` drops to 0 in the same transaction.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::conformance_tests;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("meta.db")).unwrap();
        (dir, store)
    }

    conformance_tests!(store);

    fn deploy(db: &SqliteStore, name: &str, code: &[u8]) {
        db.set_latest(
            name,
            &NewCode::of(code),
            &ConfigPatch::default(),
            None,
            1,
            &Why::admin("test"),
        )
        .unwrap();
    }

    #[test]
    fn versions_are_immutable_in_the_database() {
        let (_dir, db) = store();
        deploy(&db, "f", b"a");
        db.publish("f", "", false, 1, &Why::admin("test")).unwrap();
        let conn = db.conn.lock().unwrap();
        let err = conn
            .execute("UPDATE versions SET description = 'x'", [])
            .unwrap_err();
        assert!(err.to_string().contains("immutable"));
    }

    #[test]
    fn reopening_keeps_everything_and_refuses_newer_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let db = SqliteStore::open(&path).unwrap();
            deploy(&db, "f", b"a");
            db.publish("f", "d", false, 5, &Why::admin("test")).unwrap();
        }
        let db = SqliteStore::open(&path).unwrap();
        let all = db.load_all().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].versions[0].description, "d");
        db.conn
            .lock()
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        drop(db);
        let err = SqliteStore::open(&path).err().unwrap();
        assert!(err.to_string().contains("upgrade fnhost"), "{err}");
    }
}
