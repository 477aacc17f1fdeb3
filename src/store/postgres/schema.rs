//! The PostgreSQL schema as numbered migrations, tracked in `fnhost_schema`. Append only: a
//! shipped migration is never edited. Nodes of a fleet may start at once: migrating holds a
//! transaction-scoped advisory lock, so one node migrates and the others then find the schema
//! current.
//!
//! Rolling upgrades: a migration normally only adds (tables, columns with defaults), so the
//! release before it keeps working on the migrated database while the fleet is upgraded node
//! by node. `fnhost_schema.readable_by` is the oldest schema version whose fnhost may still
//! use the database; a migration listed in [`BREAKS_OLDER`] raises it to itself, and a node
//! refuses a database it cannot use rather than misread it.

use postgres::Client;

use crate::store::StoreError;

/// Key of the advisory lock that serialises migrations across nodes.
const MIGRATION_LOCK: i64 = 0x666e_686f_7374; // "fnhost"

/// Each entry upgrades the schema by one step. The same tables as the SQLite store, in
/// PostgreSQL's types: BIGINT for every integer, BIGSERIAL ids, TEXT for JSON documents.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: functions with their mutable $LATEST, immutable versions, module blobs.
    r#"
    CREATE TABLE modules (
        digest      TEXT PRIMARY KEY,
        size        BIGINT NOT NULL,
        created_at  BIGINT NOT NULL
    );
    CREATE TABLE functions (
        name              TEXT PRIMARY KEY,
        latest_digest     TEXT NOT NULL REFERENCES modules(digest),
        latest_config     TEXT NOT NULL,
        latest_updated_at BIGINT NOT NULL,
        next_version      BIGINT NOT NULL DEFAULT 1,
        created_at        BIGINT NOT NULL,
        default_policy    TEXT NOT NULL DEFAULT '{}',
        scaling           TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE versions (
        function    TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        number      BIGINT NOT NULL,
        digest      TEXT NOT NULL REFERENCES modules(digest),
        config      TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        created_at  BIGINT NOT NULL,
        PRIMARY KEY (function, number)
    );
    -- A published version never changes: enforce it where no code path can forget it.
    CREATE FUNCTION versions_are_immutable() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION 'published versions are immutable';
    END;
    $$ LANGUAGE plpgsql;
    CREATE TRIGGER versions_are_immutable BEFORE UPDATE ON versions
        FOR EACH ROW EXECUTE FUNCTION versions_are_immutable();
    CREATE TABLE aliases (
        function    TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        spec        TEXT NOT NULL,
        updated_at  BIGINT NOT NULL,
        PRIMARY KEY (function, name)
    );
    -- Usage per function, version, alias and minute (kept when a function is deleted: it is
    -- billing history).
    CREATE TABLE usage_minutes (
        function           TEXT NOT NULL,
        version            TEXT NOT NULL,
        alias              TEXT NOT NULL,
        minute             BIGINT NOT NULL,
        invocations        BIGINT NOT NULL,
        errors             BIGINT NOT NULL,
        cold_starts        BIGINT NOT NULL,
        status_2xx         BIGINT NOT NULL,
        status_3xx         BIGINT NOT NULL,
        status_4xx         BIGINT NOT NULL,
        status_5xx         BIGINT NOT NULL,
        duration_us        BIGINT NOT NULL,
        billed_ms          BIGINT NOT NULL,
        mib_ms             BIGINT NOT NULL,
        histogram          TEXT NOT NULL,
        provisioned_ms     BIGINT NOT NULL DEFAULT 0,
        provisioned_mib_ms BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (function, version, alias, minute)
    );
    CREATE INDEX usage_by_minute ON usage_minutes (minute);
    CREATE TABLE alias_history (
        id          BIGSERIAL PRIMARY KEY,
        function    TEXT NOT NULL,
        alias       TEXT NOT NULL,
        at_ms       BIGINT NOT NULL,
        before      TEXT,
        after       TEXT,
        actor       TEXT NOT NULL,
        reason      TEXT NOT NULL
    );
    CREATE INDEX alias_history_by_function ON alias_history (function, id);
    CREATE TABLE rollouts (
        function    TEXT PRIMARY KEY REFERENCES functions(name) ON DELETE CASCADE,
        state       TEXT NOT NULL,
        updated_at  BIGINT NOT NULL
    );
    CREATE TABLE triggers (
        id          BIGSERIAL PRIMARY KEY,
        function    TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        target      TEXT,
        spec        TEXT NOT NULL,
        created_at  BIGINT NOT NULL
    );
    CREATE TABLE events (
        id              TEXT PRIMARY KEY,
        trigger_id      BIGINT NOT NULL,
        function        TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        target          TEXT,
        type            TEXT NOT NULL,
        source          TEXT NOT NULL,
        subject         TEXT,
        bucket          TEXT,
        content_type    TEXT,
        size            BIGINT NOT NULL,
        output_bucket   TEXT,
        hops            BIGINT NOT NULL,
        status          TEXT NOT NULL,
        attempts        BIGINT NOT NULL,
        next_attempt_ms BIGINT NOT NULL,
        last_error      TEXT,
        created_ms      BIGINT NOT NULL,
        updated_ms      BIGINT NOT NULL
    );
    CREATE INDEX events_due ON events (status, next_attempt_ms);
    CREATE INDEX events_by_function ON events (function, created_ms);
    CREATE TABLE settings (
        name        TEXT PRIMARY KEY,
        value       TEXT NOT NULL
    );
    CREATE TABLE nodes (
        id              TEXT PRIMARY KEY,
        data_address    TEXT NOT NULL,
        admin_address   TEXT NOT NULL,
        version         TEXT NOT NULL,
        started_ms      BIGINT NOT NULL,
        heartbeat_ms    BIGINT NOT NULL,
        in_flight       BIGINT NOT NULL,
        warm_instances  BIGINT NOT NULL
    );
    "#,
    // 2: fleet-wide rollouts. A rollout's revision makes every save a compare-and-swap (one
    // driver, admins on any node); leases elect the driver; nodes publish per-second health
    // of versions under rollout so the driver judges the whole fleet's traffic.
    r#"
    ALTER TABLE rollouts ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
    CREATE TABLE leases (
        name        TEXT PRIMARY KEY,
        holder      TEXT NOT NULL,
        until_ms    BIGINT NOT NULL
    );
    CREATE TABLE health_samples (
        function    TEXT NOT NULL,
        version     TEXT NOT NULL,
        node        TEXT NOT NULL,
        second      BIGINT NOT NULL,
        requests    BIGINT NOT NULL,
        errors      BIGINT NOT NULL,
        latency     TEXT NOT NULL,
        PRIMARY KEY (function, second, version, node)
    );
    CREATE INDEX health_samples_by_second ON health_samples (second);
    "#,
    // 3: a serial bumped by every function-changing transaction (with its NOTIFY), so a
    // node's periodic resync reads everything only when something changed since the last.
    r#"
    CREATE TABLE fnhost_changes (serial BIGINT NOT NULL);
    INSERT INTO fnhost_changes (serial) VALUES (0);
    "#,
    // 4: teams: namespaces with their quotas (`default` always exists), API keys (a hash of
    // the secret, never the secret), the audit log of admin actions, and per-function access.
    r#"
    CREATE TABLE namespaces (
        name        TEXT PRIMARY KEY,
        quotas      TEXT NOT NULL,
        created_ms  BIGINT NOT NULL
    );
    INSERT INTO namespaces (name, quotas, created_ms) VALUES ('default', '{}', 0);
    CREATE TABLE api_keys (
        id          TEXT PRIMARY KEY,
        namespace   TEXT NOT NULL,
        record      TEXT NOT NULL
    );
    CREATE INDEX api_keys_by_namespace ON api_keys (namespace);
    CREATE TABLE audit_log (
        seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at_ms       BIGINT NOT NULL,
        namespace   TEXT,
        actor       TEXT NOT NULL,
        action      TEXT NOT NULL,
        status      INTEGER NOT NULL
    );
    CREATE INDEX audit_by_namespace ON audit_log (namespace, seq);
    ALTER TABLE functions ADD COLUMN access TEXT NOT NULL DEFAULT 'public';
    "#,
    // 5: key-value stores (`wasi:keyvalue`): a row per key with its version (compare-and-
    // swap compares it), and per-store counts kept with every write for the limits.
    r#"
    CREATE TABLE kv (
        namespace   TEXT NOT NULL,
        store       TEXT NOT NULL,
        key         TEXT NOT NULL,
        value       BYTEA NOT NULL,
        version     BIGINT NOT NULL,
        PRIMARY KEY (namespace, store, key)
    );
    CREATE TABLE kv_stores (
        namespace   TEXT NOT NULL,
        store       TEXT NOT NULL,
        keys        BIGINT NOT NULL,
        bytes       BIGINT NOT NULL,
        PRIMARY KEY (namespace, store)
    );
    "#,
    // 6: function secrets, sealed with the host's secrets key (never the value), function-
    // wide like access: they rotate without a new version.
    r#"
    CREATE TABLE secrets (
        function    TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        sealed      BYTEA NOT NULL,
        updated_ms  BIGINT NOT NULL,
        PRIMARY KEY (function, name)
    );
    "#,
    // 7: HTTP routes by host and path prefix, each of one namespace (a host and path belong
    // to one namespace: the primary key).
    r#"
    CREATE TABLE http_routes (
        host         TEXT NOT NULL,
        prefix       TEXT NOT NULL,
        namespace    TEXT NOT NULL,
        function     TEXT NOT NULL,
        qualifier    TEXT,
        strip_prefix BOOLEAN NOT NULL,
        PRIMARY KEY (host, prefix)
    );
    "#,
    // 8: key-value operations in usage, billed by count.
    r#"
    ALTER TABLE usage_minutes ADD COLUMN kv_operations BIGINT NOT NULL DEFAULT 0;
    "#,
    // 9: asynchronous invocations in the outbox: the stored request and its result (JSON),
    // NULL for trigger events.
    r#"
    ALTER TABLE events ADD COLUMN invocation TEXT;
    CREATE INDEX events_queued ON events (function, status) WHERE invocation IS NOT NULL;
    CREATE INDEX events_lane_due ON events ((invocation IS NOT NULL), status, next_attempt_ms);
    "#,
    // 10: where code came from: `oci://REGISTRY/REPO:TAG@sha256:...` for a component pulled
    // from a registry, '' for an upload. A version keeps its $LATEST's at publish.
    r#"
    ALTER TABLE functions ADD COLUMN latest_source TEXT NOT NULL DEFAULT '';
    ALTER TABLE versions ADD COLUMN source TEXT NOT NULL DEFAULT '';
    "#,
];

/// Migrations after which fnhost releases that do not know them must stop (none yet). Ship
/// such a migration one release after the code that no longer needs the old shape.
const BREAKS_OLDER: &[usize] = &[];

/// Brings the schema up to date, or refuses a newer one this release cannot use.
pub(super) fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction().map_err(database)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(database)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS fnhost_schema (
            version     BIGINT NOT NULL,
            readable_by BIGINT NOT NULL DEFAULT 1
        )",
    )
    .map_err(database)?;
    let (current, readable_by): (i64, i64) = tx
        .query_opt("SELECT version, readable_by FROM fnhost_schema", &[])
        .map_err(database)?
        .map_or((0, 1), |row| (row.get(0), row.get(1)));
    let known = MIGRATIONS.len() as i64;
    if current > known {
        if readable_by > known {
            return Err(StoreError::Corrupt(format!(
                "the database schema is version {current}, which fnhost releases knowing fewer \
                 than {readable_by} migrations cannot use (this one knows {known}); upgrade fnhost"
            )));
        }
        tracing::info!(
            schema = current,
            known,
            "database schema is newer but compatible (a rolling upgrade is under way)"
        );
        return tx.commit().map_err(database);
    }
    let mut readable_by = readable_by;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(sql).map_err(database)?;
        let version = index as i64 + 1;
        if BREAKS_OLDER.contains(&(index + 1)) {
            readable_by = version;
        }
        tx.execute("DELETE FROM fnhost_schema", &[])
            .map_err(database)?;
        tx.execute(
            "INSERT INTO fnhost_schema (version, readable_by) VALUES ($1, $2)",
            &[&version, &readable_by],
        )
        .map_err(database)?;
    }
    tx.commit().map_err(database)
}

pub(super) fn database(e: postgres::Error) -> StoreError {
    if is_connection_failure(&e) {
        StoreError::Unavailable(format!("PostgreSQL: {}", describe(&e)))
    } else {
        StoreError::Database(Box::new(e))
    }
}

/// Whether `e` says the server cannot be reached or the session was cut (so a retry on a new
/// connection may succeed), rather than that the statement itself failed.
pub(super) fn is_connection_failure(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // Class 08: connection exceptions; 57P01-57P03: the server is shutting down, was
        // terminated (`pg_terminate_backend`), crashed, or is starting up.
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
        }
        // No SQLSTATE: an I/O error, a connect failure or a timeout, not the server's answer.
        None => e.as_db_error().is_none(),
    }
}

/// The error and its causes on one line ("error connecting to server: Connection refused").
fn describe(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::test_server::TestPostgres;

    #[test]
    fn migrates_once_even_when_nodes_start_together_and_refuses_incompatible_schemas() {
        let dsn = TestPostgres::shared().fresh_database();
        let nodes: Vec<_> = (0..4)
            .map(|_| {
                let dsn = dsn.clone();
                std::thread::spawn(move || {
                    let mut client = Client::connect(&dsn, postgres::NoTls).unwrap();
                    migrate(&mut client)
                })
            })
            .collect();
        for node in nodes {
            node.join().unwrap().unwrap();
        }
        let mut client = Client::connect(&dsn, postgres::NoTls).unwrap();
        let version: i64 = client
            .query_one("SELECT version FROM fnhost_schema", &[])
            .unwrap()
            .get(0);
        assert_eq!(version, MIGRATIONS.len() as i64);
        // The next release added a table: this one keeps working during the rolling upgrade.
        client
            .batch_execute("UPDATE fnhost_schema SET version = version + 1")
            .unwrap();
        migrate(&mut client).unwrap();
        // A release after that changed a shape this one relies on: refused.
        client
            .batch_execute("UPDATE fnhost_schema SET readable_by = version")
            .unwrap();
        let error = migrate(&mut client).unwrap_err();
        assert!(error.to_string().contains("upgrade fnhost"), "{error}");
    }

    #[test]
    fn published_versions_cannot_change() {
        let dsn = TestPostgres::shared().fresh_database();
        let mut client = Client::connect(&dsn, postgres::NoTls).unwrap();
        migrate(&mut client).unwrap();
        client
            .batch_execute(
                "INSERT INTO modules VALUES ('d', 1, 0);
                 INSERT INTO functions (name, latest_digest, latest_config, latest_updated_at, created_at)
                     VALUES ('f', 'd', '{}', 0, 0);
                 INSERT INTO versions (function, number, digest, config, created_at)
                     VALUES ('f', 1, 'd', '{}', 0);",
            )
            .unwrap();
        let error = client
            .batch_execute("UPDATE versions SET description = 'x'")
            .unwrap_err();
        assert!(
            error.to_string().contains("immutable") || format!("{error:?}").contains("immutable"),
            "{error:?}"
        );
    }
}
