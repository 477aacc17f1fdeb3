//! The schema as numbered migrations, tracked in `PRAGMA user_version`. Append only: a shipped
//! migration is never edited, and a database from a newer fnhost is refused rather than misread.

use rusqlite::Connection;

use crate::store::StoreError;

/// Each entry upgrades the schema by one step. Append only: never edit a shipped migration.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: functions with their mutable $LATEST, immutable versions, module blobs.
    r#"
    CREATE TABLE modules (
        digest      TEXT PRIMARY KEY,
        size        INTEGER NOT NULL,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE functions (
        name              TEXT PRIMARY KEY,
        latest_digest     TEXT NOT NULL REFERENCES modules(digest),
        latest_config     TEXT NOT NULL,
        latest_updated_at INTEGER NOT NULL,
        next_version      INTEGER NOT NULL DEFAULT 1,
        created_at        INTEGER NOT NULL
    );
    CREATE TABLE versions (
        function    TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        number      INTEGER NOT NULL,
        digest      TEXT NOT NULL REFERENCES modules(digest),
        config      TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (function, number)
    );
    -- A published version never changes: enforce it where no code path can forget it.
    CREATE TRIGGER versions_are_immutable BEFORE UPDATE ON versions
    BEGIN
        SELECT RAISE(ABORT, 'published versions are immutable');
    END;
    "#,
    // 2: aliases, and the $DEFAULT policy (share of traffic to $LATEST).
    r#"
    ALTER TABLE functions ADD COLUMN default_policy TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE aliases (
        function    TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        spec        TEXT NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (function, name)
    );
    "#,
    // 3: usage per function, version, alias and minute (kept when a function is deleted:
    // it is billing history).
    r#"
    CREATE TABLE usage_minutes (
        function    TEXT NOT NULL,
        version     TEXT NOT NULL,
        alias       TEXT NOT NULL,
        minute      INTEGER NOT NULL,
        invocations INTEGER NOT NULL,
        errors      INTEGER NOT NULL,
        cold_starts INTEGER NOT NULL,
        status_2xx  INTEGER NOT NULL,
        status_3xx  INTEGER NOT NULL,
        status_4xx  INTEGER NOT NULL,
        status_5xx  INTEGER NOT NULL,
        duration_us INTEGER NOT NULL,
        billed_ms   INTEGER NOT NULL,
        mib_ms      INTEGER NOT NULL,
        histogram   TEXT NOT NULL,
        PRIMARY KEY (function, version, alias, minute)
    );
    CREATE INDEX usage_by_minute ON usage_minutes (minute);
    "#,
    // 4: provisioned concurrency per function and version (mutable, unlike a version's
    // config), and the provisioned instance time metered for it.
    r#"
    ALTER TABLE functions ADD COLUMN scaling TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE usage_minutes ADD COLUMN provisioned_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_minutes ADD COLUMN provisioned_mib_ms INTEGER NOT NULL DEFAULT 0;
    "#,
    // 5: the audit history of alias changes (kept after a function is deleted), and
    // automatic rollouts, one per function (the newest, finished or not).
    r#"
    CREATE TABLE alias_history (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        function    TEXT NOT NULL,
        alias       TEXT NOT NULL,
        at_ms       INTEGER NOT NULL,
        before      TEXT,
        after       TEXT,
        actor       TEXT NOT NULL,
        reason      TEXT NOT NULL
    );
    CREATE INDEX alias_history_by_function ON alias_history (function, id);
    CREATE TABLE rollouts (
        function    TEXT PRIMARY KEY REFERENCES functions(name) ON DELETE CASCADE,
        state       TEXT NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    "#,
    // 6: event triggers, and the outbox of events waiting for (or done with) delivery.
    r#"
    CREATE TABLE triggers (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        function    TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        target      TEXT,
        spec        TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE events (
        id              TEXT PRIMARY KEY,
        trigger_id      INTEGER NOT NULL,
        function        TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        target          TEXT,
        type            TEXT NOT NULL,
        source          TEXT NOT NULL,
        subject         TEXT,
        bucket          TEXT,
        content_type    TEXT,
        size            INTEGER NOT NULL,
        output_bucket   TEXT,
        hops            INTEGER NOT NULL,
        status          TEXT NOT NULL,
        attempts        INTEGER NOT NULL,
        next_attempt_ms INTEGER NOT NULL,
        last_error      TEXT,
        created_ms      INTEGER NOT NULL,
        updated_ms      INTEGER NOT NULL
    );
    CREATE INDEX events_due ON events (status, next_attempt_ms);
    CREATE INDEX events_by_function ON events (function, created_ms);
    "#,
    // 7: host settings (the admin token), and node heartbeats (one node here, many on
    // PostgreSQL, the same tables in both).
    r#"
    CREATE TABLE settings (
        name        TEXT PRIMARY KEY,
        value       TEXT NOT NULL
    );
    CREATE TABLE nodes (
        id              TEXT PRIMARY KEY,
        data_address    TEXT NOT NULL,
        admin_address   TEXT NOT NULL,
        version         TEXT NOT NULL,
        started_ms      INTEGER NOT NULL,
        heartbeat_ms    INTEGER NOT NULL,
        in_flight       INTEGER NOT NULL,
        warm_instances  INTEGER NOT NULL
    );
    "#,
    // 8: rollout revisions (every save is a compare-and-swap), leases and per-second health
    // samples: the same tables as PostgreSQL's fleet, so one rollout driver code serves both.
    r#"
    ALTER TABLE rollouts ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE leases (
        name        TEXT PRIMARY KEY,
        holder      TEXT NOT NULL,
        until_ms    INTEGER NOT NULL
    );
    CREATE TABLE health_samples (
        function    TEXT NOT NULL,
        version     TEXT NOT NULL,
        node        TEXT NOT NULL,
        second      INTEGER NOT NULL,
        requests    INTEGER NOT NULL,
        errors      INTEGER NOT NULL,
        latency     TEXT NOT NULL,
        PRIMARY KEY (function, second, version, node)
    );
    CREATE INDEX health_samples_by_second ON health_samples (second);
    "#,
    // 9: teams: namespaces with their quotas (`default` always exists), API keys (a hash of
    // the secret, never the secret), the audit log of admin actions, and per-function access
    // (a function-level setting like scaling, so it covers every version at once).
    r#"
    CREATE TABLE namespaces (
        name        TEXT PRIMARY KEY,
        quotas      TEXT NOT NULL,
        created_ms  INTEGER NOT NULL
    );
    INSERT INTO namespaces (name, quotas, created_ms) VALUES ('default', '{}', 0);
    CREATE TABLE api_keys (
        id          TEXT PRIMARY KEY,
        namespace   TEXT NOT NULL,
        record      TEXT NOT NULL
    );
    CREATE INDEX api_keys_by_namespace ON api_keys (namespace);
    CREATE TABLE audit_log (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms       INTEGER NOT NULL,
        namespace   TEXT,
        actor       TEXT NOT NULL,
        action      TEXT NOT NULL,
        status      INTEGER NOT NULL
    );
    CREATE INDEX audit_by_namespace ON audit_log (namespace, seq);
    ALTER TABLE functions ADD COLUMN access TEXT NOT NULL DEFAULT 'public';
    "#,
    // 10: function secrets, sealed with the host's secrets key (never the value), function-
    // wide like access: they rotate without a new version.
    r#"
    CREATE TABLE secrets (
        function    TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        sealed      BLOB NOT NULL,
        updated_ms  INTEGER NOT NULL,
        PRIMARY KEY (function, name)
    );
    "#,
    // 11: HTTP routes by host and path prefix, each of one namespace (a host and path belong
    // to one namespace: the primary key).
    r#"
    CREATE TABLE http_routes (
        host         TEXT NOT NULL,
        prefix       TEXT NOT NULL,
        namespace    TEXT NOT NULL,
        function     TEXT NOT NULL,
        qualifier    TEXT,
        strip_prefix INTEGER NOT NULL,
        PRIMARY KEY (host, prefix)
    );
    "#,
    // 12: key-value operations in usage, billed by count.
    r#"
    ALTER TABLE usage_minutes ADD COLUMN kv_operations INTEGER NOT NULL DEFAULT 0;
    "#,
    // 13: asynchronous invocations in the outbox: the stored request and its result (JSON),
    // NULL for trigger events. Each lane claims through its own part of `events_lane_due`,
    // so a backlog of invocations never slows the claiming of trigger events.
    r#"
    ALTER TABLE events ADD COLUMN invocation TEXT;
    CREATE INDEX events_queued ON events (function, status) WHERE invocation IS NOT NULL;
    CREATE INDEX events_lane_due ON events ((invocation IS NOT NULL), status, next_attempt_ms);
    "#,
    // 14: where code came from: `oci://REGISTRY/REPO:TAG@sha256:...` for a component pulled
    // from a registry, '' for an upload. A version keeps its $LATEST's at publish.
    r#"
    ALTER TABLE functions ADD COLUMN latest_source TEXT NOT NULL DEFAULT '';
    ALTER TABLE versions ADD COLUMN source TEXT NOT NULL DEFAULT '';
    "#,
];

/// The key-value file's own schema (`kv.rs`): a separate SQLite file, so functions' writes
/// take its write lock and fsync, never the metadata's. Append only, like `MIGRATIONS`.
pub(super) const KV_MIGRATIONS: &[&str] = &[
    // 1: a row per key with its version (compare-and-swap compares it), and per-store counts
    // kept with every write for the limits.
    r#"
    CREATE TABLE kv (
        namespace   TEXT NOT NULL,
        store       TEXT NOT NULL,
        key         TEXT NOT NULL,
        value       BLOB NOT NULL,
        version     INTEGER NOT NULL,
        PRIMARY KEY (namespace, store, key)
    );
    CREATE TABLE kv_stores (
        namespace   TEXT NOT NULL,
        store       TEXT NOT NULL,
        keys        INTEGER NOT NULL,
        bytes       INTEGER NOT NULL,
        PRIMARY KEY (namespace, store)
    );
    "#,
];

/// Brings `conn`'s schema up to `MIGRATIONS`.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_with(conn, MIGRATIONS)
}

/// Brings the key-value file's schema up to `KV_MIGRATIONS`.
pub(super) fn migrate_kv(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_with(conn, KV_MIGRATIONS)
}

fn migrate_with(conn: &mut Connection, migrations: &[&str]) -> Result<(), StoreError> {
    let current: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > migrations.len() {
        return Err(StoreError::Corrupt(format!(
            "the database schema is version {current}, newer than this fnhost understands ({}); \
             upgrade fnhost",
            migrations.len()
        )));
    }
    for (index, sql) in migrations.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
    }
    Ok(())
}
