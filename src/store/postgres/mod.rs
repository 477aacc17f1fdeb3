//! The PostgreSQL implementation of the metadata store, for fleet mode: many fnhost nodes
//! sharing one database. Each trait method is one transaction, as in SQLite; where several
//! nodes can race, rows are locked (a function's row while publishing, usage minutes while
//! merging) or skipped (`FOR UPDATE SKIP LOCKED` when claiming events). Only this directory
//! knows PostgreSQL's SQL: `schema.rs` (migrations under an advisory lock), `functions.rs`,
//! `audit.rs`, `rollouts.rs`, `events.rs`, `usage.rs`.

mod audit;
mod events;
mod fleet;
mod functions;
mod http_routes;
mod kv;
mod listen;
mod rollouts;
mod schema;
mod tenancy;
#[cfg(test)]
pub(crate) mod test_server;
mod usage;

use std::collections::HashSet;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use postgres::{Client, NoTls, Transaction};

use super::{ChangeFeed, FunctionRows, MetadataStore, Published, StoreError, StoredRollout};
use crate::model::{
    Access, AliasSpec, AuditEntry, BasisPoints, ConfigPatch, DefaultPolicyPatch, Digest,
    EventRecord, EventStatus, FunctionConfig, HealthSample, HistoryEntry, HttpRoute, KeyRecord,
    KvEntry, KvLimits, KvStoreId, Lane, NamespaceRecord, NewCode, NewObject, NodeRecord, Quotas,
    RoutesChange, ScalingPolicy, Settlement, TimerTick, TrafficChange, Trigger, TriggerSource,
    UsageRow, VersionLabel, Why,
};
use crate::store::decode::parse_digest;
use audit::audited;
use functions::*;
use schema::database;

/// The NOTIFY channel of committed changes; payload `NODE FUNCTION`, or `NODE $tenancy`.
const CHANNEL: &str = "fnhost_changes";
/// The payload's "function" when namespaces or keys changed: no function is named `$...`.
const TENANCY: &str = "$tenancy";
/// The NOTIFY payload's name for an HTTP route change.
const ROUTES: &str = "$routes";

/// Connections each node keeps (plus one for LISTEN): enough that a slow statement (a big
/// usage query) does not queue the request path's writes behind it, few enough that a
/// thousand nodes stay within what PgBouncer or the server can hold (see SCALING.md).
const POOL_SIZE: usize = 4;
/// Longest a statement may run, and a lock wait may last, before it fails: a stuck query or
/// a lock held by a hung node becomes an error the caller reports, not a node that hangs.
const SESSION_LIMITS: &str = "SET statement_timeout = '15s'; SET lock_timeout = '10s'; \
     SET idle_in_transaction_session_timeout = '60s'";
/// Connecting gives up after this unless the connection string sets `connect_timeout`: a
/// server that is down answers at once, but a network path that drops packets never does.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Unacknowledged data on a connection for this long means the path is gone (Linux's
/// `TCP_USER_TIMEOUT`): a query on a silently dead connection fails instead of hanging
/// until the kernel's retransmissions give up after some fifteen minutes.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller waits for one of the [`POOL_SIZE`] connections: past the statement
/// timeout, so only connections stuck beyond every server-side limit make it fail.
const TAKE_TIMEOUT: Duration = Duration::from_secs(20);

pub struct PostgresStore {
    config: postgres::Config,
    /// Idle connections; a caller takes one (waiting while all are busy) and gives it back.
    idle: Mutex<Vec<Client>>,
    returned: Condvar,
    /// Connections that exist (idle or in use), at most [`POOL_SIZE`].
    open: Mutex<usize>,
    /// Tags this process's notifications, so it skips the changes it made itself.
    node: String,
}

impl PostgresStore {
    /// Connects to `dsn` (`postgres://user:password@host:port/database`) and brings the schema
    /// up to date.
    pub fn connect(dsn: &str) -> Result<Self, StoreError> {
        let config = connection_config(dsn)?;
        let mut client = open_client(&config)?;
        schema::migrate(&mut client)?;
        Ok(Self {
            config,
            idle: Mutex::new(vec![client]),
            returned: Condvar::new(),
            open: Mutex::new(1),
            node: format!("{:016x}", fastrand::u64(..)),
        })
    }

    /// An idle connection, a new one while fewer than [`POOL_SIZE`] exist, or the next one
    /// given back (within [`TAKE_TIMEOUT`]).
    fn take(&self) -> Result<Client, StoreError> {
        let deadline = std::time::Instant::now() + TAKE_TIMEOUT;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(client) = idle.pop() {
                return Ok(client);
            }
            {
                let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
                if *open < POOL_SIZE {
                    *open += 1;
                    drop(open);
                    drop(idle);
                    return open_client(&self.config).inspect_err(|_| self.closed());
                }
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(StoreError::Unavailable(format!(
                    "PostgreSQL: all {POOL_SIZE} of this node's connections stayed busy for \
                     {} s",
                    TAKE_TIMEOUT.as_secs()
                )));
            }
            idle = self
                .returned
                .wait_timeout(idle, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Gives a connection back, or counts it gone when it broke (the next caller opens a
    /// new one: a database restart costs the calls in flight, not the node).
    fn give_back(&self, client: Client) {
        if client.is_closed() {
            self.discard(client);
        } else {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(client);
            self.returned.notify_one();
        }
    }

    /// Closes a connection that broke and counts it gone.
    fn discard(&self, client: Client) {
        self.closed();
        drop_outside_runtime(vec![client]);
    }

    fn closed(&self) {
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.returned.notify_one();
    }

    /// Runs `f` in a transaction that also tells every node `function` changed: NOTIFY is
    /// transactional, so the others hear of it exactly when (and only if) it commits.
    fn with_change<T>(
        &self,
        function: &str,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_tx(|tx| {
            let out = f(tx)?;
            let payload = format!("{} {function}", self.node);
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                .map_err(database)?;
            tx.execute("UPDATE fnhost_changes SET serial = serial + 1", &[])
                .map_err(database)?;
            Ok(out)
        })
    }

    /// Runs `f` in one transaction. A pooled connection the server dropped (a restart, a
    /// terminated backend) is only found out when used: when `BEGIN` fails that way nothing
    /// has run, so the call moves to another connection (a new one once the stale ones are
    /// used up) instead of failing.
    fn with_tx<T>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut f = Some(f);
        let mut client = self.take()?;
        let mut retries = POOL_SIZE;
        let out = loop {
            let outcome = match client.transaction() {
                Ok(mut tx) => {
                    let f = f.take().expect("run once");
                    Some(f(&mut tx).and_then(|out| tx.commit().map_err(database).map(|()| out)))
                }
                Err(e) if retries > 0 && schema::is_connection_failure(&e) => None,
                Err(e) => Some(Err(database(e))),
            };
            match outcome {
                Some(out) => break out,
                None => {
                    retries -= 1;
                    self.discard(client);
                    client = self.take()?;
                }
            }
        };
        self.give_back(client);
        out
    }
}

/// `dsn` with fnhost's defaults for what it does not set: a connect timeout, TCP
/// keepalives and a TCP user timeout, so a dead server or path is found out in seconds.
fn connection_config(dsn: &str) -> Result<postgres::Config, StoreError> {
    let mut config: postgres::Config = dsn.parse().map_err(|e| {
        StoreError::Database(format!("the PostgreSQL connection string is not valid: {e}").into())
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3);
    Ok(config)
}

/// A connection with the session limits set.
fn open_client(config: &postgres::Config) -> Result<Client, StoreError> {
    let mut client = config.connect(NoTls).map_err(database)?;
    client.batch_execute(SESSION_LIMITS).map_err(database)?;
    Ok(client)
}

/// Closes `clients` on a thread of their own: the synchronous client closes its connection
/// with a runtime of its own, which must not start on one of the host's runtime threads
/// (where the store is dropped at shutdown).
fn drop_outside_runtime(clients: Vec<Client>) {
    if clients.is_empty() {
        return;
    }
    let closing = std::thread::spawn(move || drop(clients));
    let _ = closing.join();
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|p| p.into_inner()));
        drop_outside_runtime(idle);
    }
}

impl MetadataStore for PostgresStore {
    fn load_all(&self) -> Result<Vec<FunctionRows>, StoreError> {
        self.with_tx(|tx| {
            let names: Vec<String> = tx
                .query("SELECT name FROM functions ORDER BY name", &[])
                .map_err(database)?
                .iter()
                .map(|row| row.get(0))
                .collect();
            names.iter().map(|name| function_rows(tx, name)).collect()
        })
    }

    fn function(&self, name: &str) -> Result<FunctionRows, StoreError> {
        self.with_tx(|tx| function_rows(tx, name))
    }

    fn set_latest(
        &self,
        name: &str,
        code: &NewCode,
        patch: &ConfigPatch,
        latest_bp: Option<BasisPoints>,
        now_ms: i64,
        why: &Why,
    ) -> Result<(), StoreError> {
        self.with_change(name, |tx| {
            audited(tx, name, why, |tx| {
                tx.execute(
                    "INSERT INTO modules (digest, size, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    &[&code.digest.to_hex(), &(code.size as i64), &now_ms],
                )
                .map_err(database)?;
                let current = latest_config(tx, name)?;
                let config = patch.apply(current.as_ref().unwrap_or(&FunctionConfig::default()))?;
                let config = serde_json::to_string(&config).expect("config serializes");
                tx.execute(
                    "INSERT INTO functions (name, latest_digest, latest_config, latest_updated_at,
                            created_at, latest_source)
                     VALUES ($1, $2, $3, $4, $4, $5)
                     ON CONFLICT (name) DO UPDATE SET latest_digest = $2, latest_config = $3,
                                                      latest_updated_at = $4, latest_source = $5",
                    &[
                        &name,
                        &code.digest.to_hex(),
                        &config,
                        &now_ms,
                        &code.source.as_deref().unwrap_or(""),
                    ],
                )
                .map_err(database)?;
                if let Some(bp) = latest_bp {
                    update_default_policy(tx, name, |policy| policy.latest_bp = bp)?;
                }
                Ok(())
            })
        })
    }

    fn set_latest_config(
        &self,
        name: &str,
        patch: &ConfigPatch,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.with_change(name, |tx| {
            let current = latest_config(tx, name)?
                .ok_or_else(|| StoreError::UnknownFunction(name.to_string()))?;
            let config = serde_json::to_string(&patch.apply(&current)?).expect("config serializes");
            tx.execute(
                "UPDATE functions SET latest_config = $2, latest_updated_at = $3 WHERE name = $1",
                &[&name, &config, &now_ms],
            )
            .map_err(database)?;
            Ok(())
        })
    }

    fn publish(
        &self,
        name: &str,
        description: &str,
        promote: bool,
        now_ms: i64,
        why: &Why,
    ) -> Result<Published, StoreError> {
        self.with_change(name, |tx| {
            audited(tx, name, why, |tx| {
                publish(tx, name, description, promote, now_ms)
            })
        })
    }

    fn delete_function(&self, name: &str, why: &Why) -> Result<Vec<Digest>, StoreError> {
        self.with_change(name, |tx| {
            audited(tx, name, why, |tx| {
                let deleted = tx
                    .execute("DELETE FROM functions WHERE name = $1", &[&name])
                    .map_err(database)?;
                if deleted == 0 {
                    return Err(StoreError::UnknownFunction(name.to_string()));
                }
                drop_unreferenced_modules(tx)
            })
        })
    }

    fn delete_version(
        &self,
        name: &str,
        number: u32,
        why: &Why,
    ) -> Result<Vec<Digest>, StoreError> {
        self.with_change(name, |tx| {
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
                let deleted = tx
                    .execute(
                        "DELETE FROM versions WHERE function = $1 AND number = $2",
                        &[&name, &i64::from(number)],
                    )
                    .map_err(database)?;
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

    fn kv_stores(&self) -> Result<Vec<(KvStoreId, i64, i64)>, StoreError> {
        self.with_tx(kv::stores)
    }

    fn kv_get(
        &self,
        store: &KvStoreId,
        keys: &[String],
    ) -> Result<Vec<Option<KvEntry>>, StoreError> {
        self.with_tx(|tx| kv::get(tx, store, keys))
    }

    fn kv_set(
        &self,
        store: &KvStoreId,
        entries: &[(String, Vec<u8>)],
        limits: &KvLimits,
    ) -> Result<(), StoreError> {
        self.with_tx(|tx| kv::set(tx, store, entries, limits))
    }

    fn kv_delete(&self, store: &KvStoreId, keys: &[String]) -> Result<(), StoreError> {
        self.with_tx(|tx| kv::delete(tx, store, keys))
    }

    fn kv_keys(
        &self,
        store: &KvStoreId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        self.with_tx(|tx| kv::keys(tx, store, after, limit))
    }

    fn kv_increment(
        &self,
        store: &KvStoreId,
        key: &str,
        delta: i64,
        limits: &KvLimits,
    ) -> Result<i64, StoreError> {
        self.with_tx(|tx| kv::increment(tx, store, key, delta, limits))
    }

    fn kv_swap(
        &self,
        store: &KvStoreId,
        key: &str,
        expected: Option<i64>,
        value: &[u8],
        limits: &KvLimits,
    ) -> Result<bool, StoreError> {
        self.with_tx(|tx| kv::swap(tx, store, key, expected, value, limits))
    }

    fn set_secret(
        &self,
        function: &str,
        name: &str,
        sealed: &[u8],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.with_change(function, |tx| {
            tenancy::set_secret(tx, function, name, sealed, now_ms)
        })
    }

    fn delete_secret(&self, function: &str, name: &str) -> Result<(), StoreError> {
        self.with_change(function, |tx| tenancy::delete_secret(tx, function, name))
    }

    fn create_namespace(&self, record: &NamespaceRecord) -> Result<(), StoreError> {
        self.with_change(TENANCY, |tx| tenancy::create_namespace(tx, record))
    }

    fn namespaces(&self) -> Result<Vec<NamespaceRecord>, StoreError> {
        self.with_tx(tenancy::namespaces)
    }

    fn set_quotas(&self, name: &str, quotas: &Quotas) -> Result<NamespaceRecord, StoreError> {
        self.with_change(TENANCY, |tx| tenancy::set_quotas(tx, name, quotas))
    }

    fn delete_namespace(&self, name: &str) -> Result<(), StoreError> {
        self.with_change(TENANCY, |tx| tenancy::delete_namespace(tx, name))
    }

    fn add_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        self.with_change(TENANCY, |tx| tenancy::add_key(tx, key))
    }

    fn key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.with_tx(|tx| tenancy::key(tx, id))
    }

    fn keys(&self, namespace: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        self.with_tx(|tx| tenancy::keys(tx, namespace))
    }

    fn revoke_key(&self, id: &str, now_ms: i64) -> Result<KeyRecord, StoreError> {
        self.with_change(TENANCY, |tx| tenancy::revoke_key(tx, id, now_ms))
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
        self.with_change(ROUTES, |tx| http_routes::change(tx, namespace, change))
    }

    fn set_access(&self, function: &str, access: Access) -> Result<(), StoreError> {
        self.with_change(function, |tx| tenancy::set_access(tx, function, access))
    }

    fn known_modules(&self) -> Result<HashSet<Digest>, StoreError> {
        self.with_tx(|tx| {
            tx.query("SELECT digest FROM modules", &[])
                .map_err(database)?
                .iter()
                .map(|row| parse_digest(row.get(0)))
                .collect()
        })
    }

    fn set_provisioned(
        &self,
        function: &str,
        target: Option<VersionLabel>,
        count: u32,
    ) -> Result<ScalingPolicy, StoreError> {
        self.with_change(function, |tx| {
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

    fn set_alias(
        &self,
        function: &str,
        alias: &str,
        spec: &AliasSpec,
        now_ms: i64,
        why: &Why,
    ) -> Result<(), StoreError> {
        self.with_change(function, |tx| {
            audited(tx, function, why, |tx| {
                store_alias(tx, function, alias, spec, now_ms)
            })
        })
    }

    fn delete_alias(&self, function: &str, alias: &str, why: &Why) -> Result<(), StoreError> {
        self.with_change(function, |tx| {
            audited(tx, function, why, |tx| {
                let deleted = tx
                    .execute(
                        "DELETE FROM aliases WHERE function = $1 AND name = $2",
                        &[&function, &alias],
                    )
                    .map_err(database)?;
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

    fn set_default_policy(
        &self,
        function: &str,
        patch: &DefaultPolicyPatch,
        why: &Why,
    ) -> Result<(), StoreError> {
        self.with_change(function, |tx| {
            audited(tx, function, why, |tx| {
                update_default_policy(tx, function, |policy| patch.apply(policy))
            })
        })
    }

    fn save_rollout(
        &self,
        function: &str,
        revision: i64,
        state: &str,
        change: Option<&TrafficChange>,
        why: &Why,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        self.with_change(function, |tx| {
            rollouts::save(tx, function, revision, state, change, why, now_ms)
        })
    }

    fn rollout(&self, function: &str) -> Result<Option<StoredRollout>, StoreError> {
        self.with_tx(|tx| Ok(rollouts::stored(tx, Some(function))?.pop()))
    }

    fn rollouts(&self) -> Result<Vec<StoredRollout>, StoreError> {
        self.with_tx(|tx| rollouts::stored(tx, None))
    }

    fn alias_history(
        &self,
        function: &str,
        alias: Option<&str>,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        self.with_tx(|tx| audit::history(tx, function, alias, limit))
    }

    fn add_trigger(
        &self,
        function: &str,
        target: Option<&str>,
        source: &TriggerSource,
        now_ms: i64,
    ) -> Result<Trigger, StoreError> {
        self.with_change(function, |tx| {
            events::add_trigger(tx, function, target, source, now_ms)
        })
    }

    fn triggers(&self, function: Option<&str>) -> Result<Vec<Trigger>, StoreError> {
        self.with_tx(|tx| events::triggers(tx, function))
    }

    fn delete_trigger(&self, function: &str, id: i64) -> Result<(), StoreError> {
        self.with_change(function, |tx| events::delete_trigger(tx, function, id))
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

    fn change_serial(&self) -> Result<Option<i64>, StoreError> {
        self.with_tx(|tx| {
            let row = tx
                .query_one("SELECT serial FROM fnhost_changes", &[])
                .map_err(database)?;
            Ok(Some(row.get(0)))
        })
    }

    fn watch(&self) -> Option<ChangeFeed> {
        let (sender, feed) = tokio::sync::mpsc::unbounded_channel();
        let (config, node) = (self.config.clone(), self.node.clone());
        std::thread::Builder::new()
            .name("fnhost-pg-listen".into())
            .spawn(move || listen::run(&config, &node, &sender))
            .expect("spawning the change listener");
        Some(feed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::conformance_tests;
    use test_server::TestPostgres;

    fn store() -> ((), PostgresStore) {
        let dsn = TestPostgres::shared().fresh_database();
        ((), PostgresStore::connect(&dsn).unwrap())
    }

    conformance_tests!(store);

    #[test]
    fn every_function_change_bumps_the_change_serial() {
        let (_, db) = store();
        let before = db.change_serial().unwrap().unwrap();
        let patch = crate::model::ConfigPatch::default();
        let why = Why::admin("test");
        db.set_latest("f", &NewCode::of(b"f"), &patch, None, 1, &why)
            .unwrap();
        let after_upload = db.change_serial().unwrap().unwrap();
        assert_eq!(after_upload, before + 1);
        db.publish("f", "", false, 2, &why).unwrap();
        assert_eq!(db.change_serial().unwrap().unwrap(), after_upload + 1);
        // Reads and non-function writes leave it alone.
        db.load_all().unwrap();
        db.setting_or_init("x", "y").unwrap();
        assert_eq!(db.change_serial().unwrap().unwrap(), after_upload + 1);
    }

    /// While the server is down a call fails at once as `Unavailable`, naming PostgreSQL
    /// and the cause; once it is back, the pooled connections it cut are found dead at
    /// `BEGIN` and replaced, so the first calls after the restart already succeed.
    #[test]
    fn a_restarted_server_costs_the_calls_made_while_it_was_down_and_no_others() {
        let server = TestPostgres::dedicated().unwrap();
        let db = PostgresStore::connect(&server.fresh_database()).unwrap();
        // Fill the pool: four connections open and idle.
        std::thread::scope(|scope| {
            for _ in 0..POOL_SIZE {
                scope.spawn(|| {
                    db.with_tx(|tx| {
                        tx.execute("SELECT pg_sleep(0.2)", &[]).map_err(database)?;
                        Ok(())
                    })
                    .unwrap()
                });
            }
        });
        assert_eq!(db.idle.lock().unwrap().len(), POOL_SIZE);
        db.setting_or_init("x", "1").unwrap();

        server.stop_immediately().unwrap();
        let started = std::time::Instant::now();
        let down = db.setting_or_init("x", "2").unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "failed after {:?}",
            started.elapsed()
        );
        assert!(matches!(down, StoreError::Unavailable(_)), "{down:?}");
        let text = down.to_string();
        assert!(
            text.contains("PostgreSQL") && text.contains("unreachable"),
            "{text}"
        );

        server.restart().unwrap();
        for _ in 0..2 * POOL_SIZE {
            assert_eq!(db.setting_or_init("x", "3").unwrap(), "1");
        }
    }

    /// A migrated database holding function `name` (with a module and default config), for
    /// tests of one query module.
    pub(super) fn database_with_function(name: &str) -> Client {
        let dsn = TestPostgres::shared().fresh_database();
        let mut client = Client::connect(&dsn, NoTls).unwrap();
        schema::migrate(&mut client).unwrap();
        let digest = Digest::of(name.as_bytes()).to_hex();
        let config = serde_json::to_string(&FunctionConfig::default()).unwrap();
        client
            .execute("INSERT INTO modules VALUES ($1, 1, 0)", &[&digest])
            .unwrap();
        client
            .execute(
                "INSERT INTO functions (name, latest_digest, latest_config, latest_updated_at, created_at)
                 VALUES ($1, $2, $3, 0, 0)",
                &[&name, &digest, &config],
            )
            .unwrap();
        client
    }
}
