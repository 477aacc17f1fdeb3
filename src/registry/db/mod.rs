//! The metadata database: SQLite in WAL mode with `synchronous=FULL`, so an acknowledged write
//! survives a crash (kill -9) and power loss. Only this file knows SQL.
//!
//! Schema changes are numbered migrations tracked in `PRAGMA user_version`; a database from a
//! newer fnhost is refused rather than misread.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

mod audit;
mod events;
mod rollouts;

use super::RegistryError;
use super::aliases::{AliasRecord, AliasSpec, DefaultPolicy, HistoryEntry, TrafficChange, Why};
use super::blobs::Digest;
use super::model::{CodeInfo, FunctionConfig, FunctionInfo, ScalingPolicy, VersionInfo};
use crate::metering::UsageRow;
use audit::audited;

/// Each entry upgrades the schema by one step. Append only: never edit a shipped migration.
const MIGRATIONS: &[&str] = &[
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
];

pub struct Db {
    conn: Mutex<Connection>,
}

/// One function with all its versions, as loaded at start-up.
pub struct FunctionRows {
    pub info: FunctionInfo,
    pub versions: Vec<VersionInfo>,
    pub default_policy: DefaultPolicy,
    pub aliases: Vec<AliasRecord>,
    pub scaling: ScalingPolicy,
}

/// What `publish` did.
pub struct Published {
    pub version: VersionInfo,
    /// False when `$LATEST` equalled the newest version, which is returned instead.
    pub created: bool,
}

impl Db {
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn with_tx<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    pub fn load_all(&self) -> Result<Vec<FunctionRows>, RegistryError> {
        self.with_tx(|tx| {
            let names: Vec<String> = tx
                .prepare("SELECT name FROM functions ORDER BY name")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            names.iter().map(|name| function_rows(tx, name)).collect()
        })
    }

    pub fn function(&self, name: &str) -> Result<FunctionRows, RegistryError> {
        self.with_tx(|tx| function_rows(tx, name))
    }

    /// Points `$LATEST` at new code (creating the function on first upload) and applies the
    /// config. The module blob must already be on disk.
    /// With `latest_bp`, also sets `$DEFAULT`'s share to `$LATEST` in the same transaction.
    #[allow(clippy::too_many_arguments)] // one commit of everything an upload changes
    pub fn set_latest(
        &self,
        name: &str,
        digest: &Digest,
        size: u64,
        config_for: impl FnOnce(Option<&FunctionConfig>) -> Result<FunctionConfig, RegistryError>,
        latest_bp: Option<u32>,
        now_ms: i64,
        why: &Why,
    ) -> Result<(), RegistryError> {
        self.with_tx(|tx| audited(tx, name, why, |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO modules (digest, size, created_at) VALUES (?1, ?2, ?3)",
                params![digest.to_hex(), size as i64, now_ms],
            )?;
            let current = latest_config(tx, name)?;
            let config = config_for(current.as_ref())?;
            let config_json = serde_json::to_string(&config).expect("config serializes");
            tx.execute(
                "INSERT INTO functions (name, latest_digest, latest_config, latest_updated_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT(name) DO UPDATE SET latest_digest = ?2, latest_config = ?3,
                                                 latest_updated_at = ?4",
                params![name, digest.to_hex(), config_json, now_ms],
            )?;
            if let Some(bp) = latest_bp {
                update_default_policy(tx, name, |policy| policy.latest_bp = bp)?;
            }
            Ok(())
        }))
    }

    /// Replaces `$LATEST`'s config, keeping its code.
    pub fn set_latest_config(
        &self,
        name: &str,
        config_for: impl FnOnce(&FunctionConfig) -> Result<FunctionConfig, RegistryError>,
        now_ms: i64,
    ) -> Result<(), RegistryError> {
        self.with_tx(|tx| {
            let current = latest_config(tx, name)?
                .ok_or_else(|| RegistryError::UnknownFunction(name.to_string()))?;
            let config = config_for(&current)?;
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
    pub fn publish(
        &self,
        name: &str,
        description: &str,
        promote: bool,
        now_ms: i64,
        why: &Why,
    ) -> Result<Published, RegistryError> {
        self.with_tx(|tx| {
            audited(tx, name, why, |tx| {
                publish(tx, name, description, promote, now_ms)
            })
        })
    }

    /// Deletes a function and all its versions; returns module digests nothing uses any more.
    pub fn delete_function(&self, name: &str, why: &Why) -> Result<Vec<Digest>, RegistryError> {
        self.with_tx(|tx| {
            audited(tx, name, why, |tx| {
                let deleted = tx.execute("DELETE FROM functions WHERE name = ?1", [name])?;
                if deleted == 0 {
                    return Err(RegistryError::UnknownFunction(name.to_string()));
                }
                drop_unreferenced_modules(tx)
            })
        })
    }

    /// Deletes one published version; returns module digests nothing uses any more.
    pub fn delete_version(
        &self,
        name: &str,
        number: u32,
        why: &Why,
    ) -> Result<Vec<Digest>, RegistryError> {
        self.with_tx(|tx| {
            audited(tx, name, why, |tx| {
                latest_config(tx, name)?
                    .ok_or_else(|| RegistryError::UnknownFunction(name.to_string()))?;
                let label = super::VersionLabel::Number(number);
                let users: Vec<String> = aliases(tx, name)?
                    .into_iter()
                    .filter(|alias| alias.spec.targets().any(|t| t == label))
                    .map(|alias| alias.name)
                    .collect();
                if !users.is_empty() {
                    return Err(RegistryError::VersionInUse {
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
                    return Err(RegistryError::UnknownVersion(name.to_string(), number));
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
    pub fn set_alias(
        &self,
        function: &str,
        alias: &str,
        spec: &AliasSpec,
        now_ms: i64,
        why: &Why,
    ) -> Result<(), RegistryError> {
        self.with_tx(|tx| {
            audited(tx, function, why, |tx| {
                store_alias(tx, function, alias, spec, now_ms)
            })
        })
    }

    pub fn delete_alias(
        &self,
        function: &str,
        alias: &str,
        why: &Why,
    ) -> Result<(), RegistryError> {
        self.with_tx(|tx| {
            audited(tx, function, why, |tx| {
                let deleted = tx.execute(
                    "DELETE FROM aliases WHERE function = ?1 AND name = ?2",
                    params![function, alias],
                )?;
                if deleted == 0 {
                    latest_config(tx, function)?
                        .ok_or_else(|| RegistryError::UnknownFunction(function.to_string()))?;
                    return Err(RegistryError::UnknownAlias(
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
    pub fn set_provisioned(
        &self,
        function: &str,
        target: Option<super::VersionLabel>,
        count: u32,
    ) -> Result<ScalingPolicy, RegistryError> {
        self.with_tx(|tx| {
            let mut policy = scaling(tx, function)?;
            match target {
                None => policy.provisioned = count,
                Some(label) => {
                    if let super::VersionLabel::Number(n) = label
                        && version(tx, function, n)?.is_none()
                    {
                        return Err(RegistryError::UnknownVersion(function.to_string(), n));
                    }
                    if count == 0 {
                        policy.versions.remove(&label.to_string());
                    } else {
                        policy.versions.insert(label.to_string(), count);
                    }
                }
            }
            store_scaling(tx, function, &policy)?;
            Ok(policy)
        })
    }

    /// Changes `$DEFAULT`'s policy (share to `$LATEST`, sticky header).
    pub fn set_default_policy(
        &self,
        function: &str,
        change: impl FnOnce(&mut DefaultPolicy),
        why: &Why,
    ) -> Result<(), RegistryError> {
        self.with_tx(|tx| {
            audited(tx, function, why, |tx| {
                update_default_policy(tx, function, change)
            })
        })
    }

    /// Stores `state` as `function`'s rollout and applies its traffic change, atomically.
    pub fn save_rollout(
        &self,
        function: &str,
        state: &str,
        change: Option<&TrafficChange>,
        why: &Why,
        now_ms: i64,
    ) -> Result<(), RegistryError> {
        self.with_tx(|tx| rollouts::save(tx, function, state, change, why, now_ms))
    }

    pub fn add_trigger(
        &self,
        function: &str,
        target: Option<&str>,
        source: &crate::registry::TriggerSource,
        now_ms: i64,
    ) -> Result<crate::registry::Trigger, RegistryError> {
        self.with_tx(|tx| events::add_trigger(tx, function, target, source, now_ms))
    }

    pub fn triggers(
        &self,
        function: Option<&str>,
    ) -> Result<Vec<crate::registry::Trigger>, RegistryError> {
        self.with_tx(|tx| events::triggers(tx, function))
    }

    pub fn delete_trigger(&self, function: &str, id: i64) -> Result<(), RegistryError> {
        self.with_tx(|tx| events::delete_trigger(tx, function, id))
    }

    pub fn enqueue_object(
        &self,
        object: &crate::registry::NewObject<'_>,
        now_ms: i64,
    ) -> Result<Vec<crate::registry::EventRecord>, RegistryError> {
        self.with_tx(|tx| events::enqueue_object(tx, object, now_ms))
    }

    pub fn enqueue_timer(
        &self,
        trigger: &crate::registry::Trigger,
        allow_overlap: bool,
        now_ms: i64,
    ) -> Result<Option<crate::registry::EventRecord>, RegistryError> {
        self.with_tx(|tx| events::enqueue_timer(tx, trigger, allow_overlap, now_ms))
    }

    pub fn claim_due(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<crate::registry::EventRecord>, RegistryError> {
        self.with_tx(|tx| events::claim_due(tx, now_ms, limit))
    }

    #[allow(clippy::too_many_arguments)] // one row's every column that changes
    pub fn settle_event(
        &self,
        id: &str,
        status: crate::registry::EventStatus,
        attempts: u32,
        next_attempt_ms: i64,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<(), RegistryError> {
        self.with_tx(|tx| events::settle(tx, id, status, attempts, next_attempt_ms, error, now_ms))
    }

    pub fn requeue_running(&self, now_ms: i64) -> Result<usize, RegistryError> {
        self.with_tx(|tx| events::requeue_running(tx, now_ms))
    }

    pub fn events(
        &self,
        function: &str,
        status: Option<crate::registry::EventStatus>,
        limit: u32,
    ) -> Result<Vec<crate::registry::EventRecord>, RegistryError> {
        self.with_tx(|tx| events::events(tx, function, status, limit))
    }

    pub fn retry_event(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<crate::registry::EventRecord, RegistryError> {
        self.with_tx(|tx| events::retry(tx, id, now_ms))
    }

    /// Every stored rollout as (function, state JSON).
    pub fn rollouts(&self) -> Result<Vec<(String, String)>, RegistryError> {
        self.with_tx(rollouts::all)
    }

    /// The newest `limit` alias changes of `function` (or of one alias), newest first.
    pub fn alias_history(
        &self,
        function: &str,
        alias: Option<&str>,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>, RegistryError> {
        self.with_tx(|tx| audit::history(tx, function, alias, limit))
    }

    /// Adds a batch of usage to the stored minutes, merging rows with the same key, in one
    /// transaction (a crash leaves either all of the batch or none).
    pub fn add_usage(&self, rows: &[UsageRow]) -> Result<(), RegistryError> {
        self.with_tx(|tx| {
            for row in rows {
                let mut merged = usage_rows(
                    tx,
                    "WHERE function = ?1 AND version = ?2 AND alias = ?3 AND minute = ?4",
                    params![row.function, row.version, row.alias, row.minute],
                )?
                .pop()
                .unwrap_or_else(|| UsageRow {
                    function: row.function.clone(),
                    version: row.version.clone(),
                    alias: row.alias.clone(),
                    minute: row.minute,
                    ..UsageRow::default()
                });
                merged.add(row);
                tx.execute(
                    "INSERT OR REPLACE INTO usage_minutes (function, version, alias, minute,
                        invocations, errors, cold_starts, status_2xx, status_3xx, status_4xx,
                        status_5xx, duration_us, billed_ms, mib_ms, histogram, provisioned_ms,
                        provisioned_mib_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                             ?16, ?17)",
                    params![
                        merged.function,
                        merged.version,
                        merged.alias,
                        merged.minute,
                        merged.invocations as i64,
                        merged.errors as i64,
                        merged.cold_starts as i64,
                        merged.status[0] as i64,
                        merged.status[1] as i64,
                        merged.status[2] as i64,
                        merged.status[3] as i64,
                        merged.duration_us as i64,
                        merged.billed_ms as i64,
                        merged.mib_ms as i64,
                        serde_json::to_string(&merged.histogram).expect("histograms serialize"),
                        merged.provisioned_ms as i64,
                        merged.provisioned_mib_ms as i64,
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// Stored usage from `since_minute` on, for one function or all.
    pub fn usage(
        &self,
        function: Option<&str>,
        since_minute: i64,
    ) -> Result<Vec<UsageRow>, RegistryError> {
        self.with_tx(|tx| match function {
            Some(f) => usage_rows(
                tx,
                "WHERE function = ?1 AND minute >= ?2",
                params![f, since_minute],
            ),
            None => usage_rows(tx, "WHERE minute >= ?1", params![since_minute]),
        })
    }

    /// Every module digest the metadata knows (blobs outside this set are orphans).
    pub fn known_modules(&self) -> Result<HashSet<Digest>, RegistryError> {
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
fn publish(
    tx: &Transaction<'_>,
    name: &str,
    description: &str,
    promote: bool,
    now_ms: i64,
) -> Result<Published, RegistryError> {
    if promote {
        // Validates the function exists too; the publish below needs the same row.
        update_default_policy(tx, name, |policy| policy.latest_bp = 0)?;
    }
    let (digest, config, next): (String, String, u32) = tx
        .query_row(
            "SELECT latest_digest, latest_config, next_version FROM functions WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
        .ok_or_else(|| RegistryError::UnknownFunction(name.to_string()))?;
    let config: FunctionConfig = parse_config(&config)?;
    if let Some(newest) = versions(tx, name)?.pop()
        && newest.digest.to_hex() == digest
        && newest.config == config
    {
        return Ok(Published {
            version: newest,
            created: false,
        });
    }
    tx.execute(
        "INSERT INTO versions (function, number, digest, config, description, created_at)
         SELECT name, next_version, latest_digest, latest_config, ?2, ?3
         FROM functions WHERE name = ?1",
        params![name, description, now_ms],
    )?;
    tx.execute(
        "UPDATE functions SET next_version = next_version + 1 WHERE name = ?1",
        [name],
    )?;
    let version = version(tx, name, next)?
        .ok_or_else(|| RegistryError::UnknownVersion(name.to_string(), next))?;
    Ok(Published {
        version,
        created: true,
    })
}

/// Creates or replaces an alias; every version it names must exist.
fn store_alias(
    tx: &Transaction<'_>,
    function: &str,
    alias: &str,
    spec: &AliasSpec,
    now_ms: i64,
) -> Result<(), RegistryError> {
    latest_config(tx, function)?
        .ok_or_else(|| RegistryError::UnknownFunction(function.to_string()))?;
    for target in spec.targets() {
        if let super::VersionLabel::Number(n) = target
            && version(tx, function, n)?.is_none()
        {
            return Err(RegistryError::UnknownVersion(function.to_string(), n));
        }
    }
    tx.execute(
        "INSERT INTO aliases (function, name, spec, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(function, name) DO UPDATE SET spec = ?3, updated_at = ?4",
        params![
            function,
            alias,
            serde_json::to_string(spec).expect("alias serializes"),
            now_ms
        ],
    )?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), RegistryError> {
    let current: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > MIGRATIONS.len() {
        return Err(RegistryError::Corrupt(format!(
            "the database schema is version {current}, newer than this fnhost understands ({}); \
             upgrade fnhost",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
    }
    Ok(())
}

fn latest_config(
    tx: &Transaction<'_>,
    name: &str,
) -> Result<Option<FunctionConfig>, RegistryError> {
    let text: Option<String> = tx
        .query_row(
            "SELECT latest_config FROM functions WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()?;
    text.as_deref().map(parse_config).transpose()
}

fn function_info(tx: &Transaction<'_>, name: &str) -> Result<FunctionInfo, RegistryError> {
    let row = tx
        .query_row(
            "SELECT f.latest_digest, m.size, f.latest_config, f.latest_updated_at, f.created_at,
                    (SELECT MAX(number) FROM versions v WHERE v.function = f.name),
                    (SELECT COUNT(*) FROM versions v WHERE v.function = f.name)
             FROM functions f JOIN modules m ON m.digest = f.latest_digest
             WHERE f.name = ?1",
            [name],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<u32>>(5)?,
                    r.get::<_, u32>(6)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| RegistryError::UnknownFunction(name.to_string()))?;
    let (digest, size, config, updated, created, newest, count) = row;
    Ok(FunctionInfo {
        name: name.to_string(),
        latest: CodeInfo {
            digest: parse_digest(&digest)?,
            size: size as u64,
            config: parse_config(&config)?,
            updated_at_ms: updated,
        },
        newest_version: newest,
        version_count: count,
        created_at_ms: created,
    })
}

const VERSION_COLUMNS: &str = "v.number, v.digest, m.size, v.config, v.description, v.created_at";

fn version_from_row(name: &str, r: &rusqlite::Row<'_>) -> rusqlite::Result<RawVersion> {
    Ok(RawVersion {
        function: name.to_string(),
        number: r.get(0)?,
        digest: r.get(1)?,
        size: r.get(2)?,
        config: r.get(3)?,
        description: r.get(4)?,
        created_at: r.get(5)?,
    })
}

/// A version row before its JSON and hex columns are checked.
struct RawVersion {
    function: String,
    number: u32,
    digest: String,
    size: i64,
    config: String,
    description: String,
    created_at: i64,
}

impl RawVersion {
    fn parse(self) -> Result<VersionInfo, RegistryError> {
        Ok(VersionInfo {
            function: self.function,
            version: self.number,
            digest: parse_digest(&self.digest)?,
            size: self.size as u64,
            config: parse_config(&self.config)?,
            description: self.description,
            created_at_ms: self.created_at,
        })
    }
}

fn versions(tx: &Transaction<'_>, name: &str) -> Result<Vec<VersionInfo>, RegistryError> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM versions v JOIN modules m ON m.digest = v.digest
         WHERE v.function = ?1 ORDER BY v.number"
    );
    let raw: Vec<RawVersion> = tx
        .prepare(&sql)?
        .query_map([name], |r| version_from_row(name, r))?
        .collect::<Result<_, _>>()?;
    raw.into_iter().map(RawVersion::parse).collect()
}

fn version(
    tx: &Transaction<'_>,
    name: &str,
    number: u32,
) -> Result<Option<VersionInfo>, RegistryError> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM versions v JOIN modules m ON m.digest = v.digest
         WHERE v.function = ?1 AND v.number = ?2"
    );
    tx.query_row(&sql, params![name, number], |r| version_from_row(name, r))
        .optional()?
        .map(RawVersion::parse)
        .transpose()
}

fn drop_unreferenced_modules(tx: &Transaction<'_>) -> Result<Vec<Digest>, RegistryError> {
    let orphans: Vec<String> = tx
        .prepare(
            "SELECT digest FROM modules WHERE digest NOT IN
               (SELECT latest_digest FROM functions UNION SELECT digest FROM versions)",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for digest in &orphans {
        tx.execute("DELETE FROM modules WHERE digest = ?1", [digest])?;
    }
    orphans.iter().map(|d| parse_digest(d)).collect()
}

fn function_rows(tx: &Transaction<'_>, name: &str) -> Result<FunctionRows, RegistryError> {
    Ok(FunctionRows {
        info: function_info(tx, name)?,
        versions: versions(tx, name)?,
        default_policy: default_policy(tx, name)?,
        aliases: aliases(tx, name)?,
        scaling: scaling(tx, name)?,
    })
}

fn scaling(tx: &Transaction<'_>, name: &str) -> Result<ScalingPolicy, RegistryError> {
    let text: String = tx
        .query_row(
            "SELECT scaling FROM functions WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| RegistryError::UnknownFunction(name.to_string()))?;
    parse_json(&text, "scaling policy")
}

fn store_scaling(
    tx: &Transaction<'_>,
    name: &str,
    policy: &ScalingPolicy,
) -> Result<(), RegistryError> {
    tx.execute(
        "UPDATE functions SET scaling = ?2 WHERE name = ?1",
        params![
            name,
            serde_json::to_string(policy).expect("policy serializes")
        ],
    )?;
    Ok(())
}

fn default_policy(tx: &Transaction<'_>, name: &str) -> Result<DefaultPolicy, RegistryError> {
    let text: String = tx
        .query_row(
            "SELECT default_policy FROM functions WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| RegistryError::UnknownFunction(name.to_string()))?;
    parse_json(&text, "$DEFAULT policy")
}

fn update_default_policy(
    tx: &Transaction<'_>,
    name: &str,
    change: impl FnOnce(&mut DefaultPolicy),
) -> Result<(), RegistryError> {
    let mut policy = default_policy(tx, name)?;
    change(&mut policy);
    policy.validate()?;
    tx.execute(
        "UPDATE functions SET default_policy = ?2 WHERE name = ?1",
        params![
            name,
            serde_json::to_string(&policy).expect("policy serializes")
        ],
    )?;
    Ok(())
}

fn aliases(tx: &Transaction<'_>, name: &str) -> Result<Vec<AliasRecord>, RegistryError> {
    let rows: Vec<(String, String, i64)> = tx
        .prepare("SELECT name, spec, updated_at FROM aliases WHERE function = ?1 ORDER BY name")?
        .query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(alias, spec, updated_at_ms)| {
            Ok(AliasRecord {
                name: alias,
                spec: parse_json(&spec, "alias")?,
                updated_at_ms,
            })
        })
        .collect()
}

fn usage_rows(
    tx: &Transaction<'_>,
    filter: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<UsageRow>, RegistryError> {
    let sql = format!(
        "SELECT function, version, alias, minute, invocations, errors, cold_starts, status_2xx,
                status_3xx, status_4xx, status_5xx, duration_us, billed_ms, mib_ms, histogram,
                provisioned_ms, provisioned_mib_ms
         FROM usage_minutes {filter} ORDER BY minute, function, version, alias"
    );
    let raw: Vec<(UsageRow, String)> = tx
        .prepare(&sql)?
        .query_map(params, |r| {
            let count = |i| r.get::<_, i64>(i).map(|v| v as u64);
            Ok((
                UsageRow {
                    function: r.get(0)?,
                    version: r.get(1)?,
                    alias: r.get(2)?,
                    minute: r.get(3)?,
                    invocations: count(4)?,
                    errors: count(5)?,
                    cold_starts: count(6)?,
                    status: [count(7)?, count(8)?, count(9)?, count(10)?],
                    duration_us: count(11)?,
                    billed_ms: count(12)?,
                    mib_ms: count(13)?,
                    histogram: Default::default(),
                    provisioned_ms: count(15)?,
                    provisioned_mib_ms: count(16)?,
                },
                r.get::<_, String>(14)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    raw.into_iter()
        .map(|(mut row, histogram)| {
            row.histogram = parse_json(&histogram, "usage histogram")?;
            Ok(row)
        })
        .collect()
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, RegistryError> {
    serde_json::from_str(text)
        .map_err(|e| RegistryError::Corrupt(format!("stored {what} {text:?} does not parse: {e}")))
}

fn parse_config(text: &str) -> Result<FunctionConfig, RegistryError> {
    serde_json::from_str(text)
        .map_err(|e| RegistryError::Corrupt(format!("stored config {text:?} does not parse: {e}")))
}

fn parse_digest(text: &str) -> Result<Digest, RegistryError> {
    Digest::from_hex(text)
        .ok_or_else(|| RegistryError::Corrupt(format!("stored digest {text:?} is not sha256 hex")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("meta.db")).unwrap();
        (dir, db)
    }

    fn deploy(db: &Db, name: &str, code: &[u8], greeting: &str) {
        let mut config = FunctionConfig::default();
        config.env.insert("GREETING".into(), greeting.into());
        db.set_latest(
            name,
            &Digest::of(code),
            code.len() as u64,
            |_| Ok(config),
            None,
            1,
            &why(),
        )
        .unwrap();
    }

    fn why() -> Why {
        Why::admin("test")
    }

    #[test]
    fn publish_numbers_versions_and_dedupes_identical_latest() {
        let (_dir, db) = db();
        deploy(&db, "f", b"a", "hi");
        let v1 = db.publish("f", "first", false, 2, &why()).unwrap();
        assert!(v1.created);
        assert_eq!(v1.version.version, 1);
        let again = db.publish("f", "again", false, 3, &why()).unwrap();
        assert!(!again.created);
        assert_eq!(again.version.version, 1);
        // Same code, different config: a new version.
        deploy(&db, "f", b"a", "hello");
        assert_eq!(
            db.publish("f", "", false, 4, &why())
                .unwrap()
                .version
                .version,
            2
        );
    }

    #[test]
    fn version_numbers_are_never_reused() {
        let (_dir, db) = db();
        deploy(&db, "f", b"a", "1");
        db.publish("f", "", false, 1, &why()).unwrap();
        deploy(&db, "f", b"b", "2");
        db.publish("f", "", false, 1, &why()).unwrap();
        db.delete_version("f", 2, &why()).unwrap();
        deploy(&db, "f", b"c", "3");
        assert_eq!(
            db.publish("f", "", false, 1, &why())
                .unwrap()
                .version
                .version,
            3
        );
    }

    #[test]
    fn versions_are_immutable_in_the_database() {
        let (_dir, db) = db();
        deploy(&db, "f", b"a", "1");
        db.publish("f", "", false, 1, &why()).unwrap();
        let conn = db.conn.lock().unwrap();
        let err = conn
            .execute("UPDATE versions SET description = 'x'", [])
            .unwrap_err();
        assert!(err.to_string().contains("immutable"));
    }

    #[test]
    fn deleting_returns_only_unreferenced_modules() {
        let (_dir, db) = db();
        deploy(&db, "f", b"shared", "1");
        deploy(&db, "g", b"shared", "1");
        db.publish("f", "", false, 1, &why()).unwrap();
        deploy(&db, "f", b"other", "2");
        assert!(db.delete_version("f", 1, &why()).unwrap().is_empty());
        let gone = db.delete_function("f", &why()).unwrap();
        assert_eq!(gone, vec![Digest::of(b"other")]);
        assert_eq!(
            db.delete_function("g", &why()).unwrap(),
            vec![Digest::of(b"shared")]
        );
        assert!(matches!(
            db.delete_function("g", &why()),
            Err(RegistryError::UnknownFunction(_))
        ));
    }

    fn alias(routes: &[(u32, u32)]) -> AliasSpec {
        AliasSpec {
            routes: routes
                .iter()
                .map(|&(n, weight_bp)| crate::registry::WeightedRoute {
                    version: crate::registry::VersionLabel::Number(n),
                    weight_bp,
                })
                .collect(),
            sticky_header: None,
            rules: vec![],
            mirror: None,
        }
    }

    #[test]
    fn aliases_name_existing_versions_and_pin_them() {
        let (_dir, db) = db();
        deploy(&db, "f", b"a", "1");
        db.publish("f", "", false, 1, &why()).unwrap();
        deploy(&db, "f", b"b", "2");
        db.publish("f", "", false, 1, &why()).unwrap();
        assert!(matches!(
            db.set_alias("f", "prod", &alias(&[(1, 5000), (3, 5000)]), 1, &why()),
            Err(RegistryError::UnknownVersion(_, 3))
        ));
        db.set_alias("f", "prod", &alias(&[(1, 5000), (2, 5000)]), 1, &why())
            .unwrap();
        match db.delete_version("f", 1, &why()) {
            Err(RegistryError::VersionInUse { aliases, .. }) => assert_eq!(aliases, ["prod"]),
            other => panic!("expected a conflict, got {other:?}"),
        }
        db.set_alias("f", "prod", &alias(&[(2, 10_000)]), 2, &why())
            .unwrap();
        db.delete_version("f", 1, &why()).unwrap();
        let rows = db.function("f").unwrap();
        assert_eq!(rows.aliases[0].spec.routes.len(), 1);
        db.delete_alias("f", "prod", &why()).unwrap();
        assert!(matches!(
            db.delete_alias("f", "prod", &why()),
            Err(RegistryError::UnknownAlias(..))
        ));
    }

    #[test]
    fn promote_publishes_and_resets_the_latest_share_atomically() {
        let (_dir, db) = db();
        deploy(&db, "f", b"a", "1");
        db.set_default_policy("f", |p| p.latest_bp = 2500, &why())
            .unwrap();
        assert_eq!(db.function("f").unwrap().default_policy.latest_bp, 2500);
        let promoted = db.publish("f", "", true, 1, &why()).unwrap();
        assert_eq!(promoted.version.version, 1);
        assert_eq!(db.function("f").unwrap().default_policy.latest_bp, 0);
        assert!(
            db.set_default_policy("f", |p| p.latest_bp = 10_001, &why())
                .is_err()
        );
        assert!(matches!(
            db.set_default_policy("nope", |p| p.latest_bp = 1, &why()),
            Err(RegistryError::UnknownFunction(_))
        ));
    }

    #[test]
    fn every_traffic_change_is_in_the_history_with_its_reason() {
        let (_dir, db) = db();
        deploy(&db, "f", b"one", "1");
        db.publish("f", "", false, 1, &Why::admin("first publish"))
            .unwrap();
        db.set_latest_config("f", |c| Ok(c.clone()), 2).unwrap();
        db.set_alias("f", "prod", &alias(&[(1, 10_000)]), 3, &Why::admin("alias"))
            .unwrap();
        db.save_rollout(
            "f",
            "{}",
            Some(&TrafficChange::LatestShare(2500)),
            &Why::rollout("step 1"),
            4,
        )
        .unwrap();
        db.delete_alias("f", "prod", &Why::admin("cleanup"))
            .unwrap();
        let history = db.alias_history("f", None, 100).unwrap();
        let summary: Vec<(String, String, bool, bool)> = history
            .iter()
            .map(|h| {
                (
                    h.alias.clone(),
                    h.reason.clone(),
                    h.before.is_some(),
                    h.after.is_some(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("prod".into(), "cleanup".into(), true, false),
                ("$DEFAULT".into(), "step 1".into(), true, true),
                ("prod".into(), "alias".into(), false, true),
                ("$DEFAULT".into(), "first publish".into(), true, true),
                ("$DEFAULT".into(), "test".into(), false, true),
            ],
            "a config change moves no traffic and is not recorded"
        );
        assert_eq!(history[1].actor, "rollout");
        let after = history[1].after.as_ref().unwrap();
        assert_eq!(after["routes"][1]["weight_bp"], 2500);
        assert_eq!(db.alias_history("f", Some("prod"), 100).unwrap().len(), 2);
        assert_eq!(
            db.rollouts().unwrap(),
            [("f".to_string(), "{}".to_string())]
        );
        // A rollout of an unknown function changes nothing.
        assert!(matches!(
            db.save_rollout("g", "{}", None, &why(), 5),
            Err(RegistryError::UnknownFunction(_))
        ));
    }

    #[test]
    fn reopening_keeps_everything_and_refuses_newer_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let db = Db::open(&path).unwrap();
            deploy(&db, "f", b"a", "hi");
            db.publish("f", "d", false, 5, &why()).unwrap();
        }
        let db = Db::open(&path).unwrap();
        let all = db.load_all().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].versions[0].description, "d");
        assert_eq!(all[0].info.latest.config.env["GREETING"], "hi");
        db.conn
            .lock()
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        drop(db);
        let err = Db::open(&path).err().unwrap();
        assert!(err.to_string().contains("upgrade fnhost"), "{err}");
    }
}
