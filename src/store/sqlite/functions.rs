//! Queries on functions, their versions, aliases, `$DEFAULT` policy and scaling policy.

use rusqlite::{OptionalExtension, Transaction, params};

use crate::model::{
    AliasRecord, AliasSpec, BasisPoints, CodeInfo, DefaultPolicy, Digest, FunctionConfig,
    FunctionInfo, ScalingPolicy, VersionInfo,
};
pub(super) use crate::store::decode::{non_empty, parse_config, parse_digest, parse_json};
use crate::store::{FunctionRows, Published, StoreError};

pub(super) fn publish(
    tx: &Transaction<'_>,
    name: &str,
    description: &str,
    promote: bool,
    now_ms: i64,
) -> Result<Published, StoreError> {
    if promote {
        // Validates the function exists too; the publish below needs the same row.
        update_default_policy(tx, name, |policy| policy.latest_bp = BasisPoints::ZERO)?;
    }
    let (digest, config, next): (String, String, u32) = tx
        .query_row(
            "SELECT latest_digest, latest_config, next_version FROM functions WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
        .ok_or_else(|| StoreError::UnknownFunction(name.to_string()))?;
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
        "INSERT INTO versions (function, number, digest, config, description, created_at,
                               source)
         SELECT name, next_version, latest_digest, latest_config, ?2, ?3, latest_source
         FROM functions WHERE name = ?1",
        params![name, description, now_ms],
    )?;
    tx.execute(
        "UPDATE functions SET next_version = next_version + 1 WHERE name = ?1",
        [name],
    )?;
    let version = version(tx, name, next)?
        .ok_or_else(|| StoreError::UnknownVersion(name.to_string(), next))?;
    Ok(Published {
        version,
        created: true,
    })
}

/// Creates or replaces an alias; every version it names must exist.
pub(super) fn store_alias(
    tx: &Transaction<'_>,
    function: &str,
    alias: &str,
    spec: &AliasSpec,
    now_ms: i64,
) -> Result<(), StoreError> {
    latest_config(tx, function)?
        .ok_or_else(|| StoreError::UnknownFunction(function.to_string()))?;
    for target in spec.targets() {
        if let super::VersionLabel::Number(n) = target
            && version(tx, function, n)?.is_none()
        {
            return Err(StoreError::UnknownVersion(function.to_string(), n));
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

pub(super) fn latest_config(
    tx: &Transaction<'_>,
    name: &str,
) -> Result<Option<FunctionConfig>, StoreError> {
    let text: Option<String> = tx
        .query_row(
            "SELECT latest_config FROM functions WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()?;
    text.as_deref().map(parse_config).transpose()
}

pub(super) fn function_info(tx: &Transaction<'_>, name: &str) -> Result<FunctionInfo, StoreError> {
    let row = tx
        .query_row(
            "SELECT f.latest_digest, m.size, f.latest_config, f.latest_updated_at, f.created_at,
                    (SELECT MAX(number) FROM versions v WHERE v.function = f.name),
                    (SELECT COUNT(*) FROM versions v WHERE v.function = f.name),
                    f.latest_source
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
                    r.get::<_, String>(7)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| StoreError::UnknownFunction(name.to_string()))?;
    let (digest, size, config, updated, created, newest, count, source) = row;
    Ok(FunctionInfo {
        name: name.to_string(),
        latest: CodeInfo {
            digest: parse_digest(&digest)?,
            size: size as u64,
            source: non_empty(source),
            config: parse_config(&config)?,
            updated_at_ms: updated,
        },
        newest_version: newest,
        version_count: count,
        created_at_ms: created,
    })
}

const VERSION_COLUMNS: &str =
    "v.number, v.digest, m.size, v.config, v.description, v.created_at, v.source";

fn version_from_row(name: &str, r: &rusqlite::Row<'_>) -> rusqlite::Result<RawVersion> {
    Ok(RawVersion {
        function: name.to_string(),
        number: r.get(0)?,
        digest: r.get(1)?,
        size: r.get(2)?,
        config: r.get(3)?,
        description: r.get(4)?,
        created_at: r.get(5)?,
        source: r.get(6)?,
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
    source: String,
}

impl RawVersion {
    fn parse(self) -> Result<VersionInfo, StoreError> {
        Ok(VersionInfo {
            function: self.function,
            version: self.number,
            digest: parse_digest(&self.digest)?,
            size: self.size as u64,
            source: non_empty(self.source),
            config: parse_config(&self.config)?,
            description: self.description,
            created_at_ms: self.created_at,
        })
    }
}

pub(super) fn versions(tx: &Transaction<'_>, name: &str) -> Result<Vec<VersionInfo>, StoreError> {
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

pub(super) fn version(
    tx: &Transaction<'_>,
    name: &str,
    number: u32,
) -> Result<Option<VersionInfo>, StoreError> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM versions v JOIN modules m ON m.digest = v.digest
         WHERE v.function = ?1 AND v.number = ?2"
    );
    tx.query_row(&sql, params![name, number], |r| version_from_row(name, r))
        .optional()?
        .map(RawVersion::parse)
        .transpose()
}

pub(super) fn drop_unreferenced_modules(tx: &Transaction<'_>) -> Result<Vec<Digest>, StoreError> {
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

pub(super) fn function_rows(tx: &Transaction<'_>, name: &str) -> Result<FunctionRows, StoreError> {
    Ok(FunctionRows {
        info: function_info(tx, name)?,
        versions: versions(tx, name)?,
        default_policy: default_policy(tx, name)?,
        aliases: aliases(tx, name)?,
        scaling: scaling(tx, name)?,
        access: super::tenancy::access(tx, name)?,
        secrets: super::tenancy::secrets(tx, name)?,
    })
}

pub(super) fn scaling(tx: &Transaction<'_>, name: &str) -> Result<ScalingPolicy, StoreError> {
    let text: String = tx
        .query_row(
            "SELECT scaling FROM functions WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| StoreError::UnknownFunction(name.to_string()))?;
    parse_json(&text, "scaling policy")
}

pub(super) fn store_scaling(
    tx: &Transaction<'_>,
    name: &str,
    policy: &ScalingPolicy,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE functions SET scaling = ?2 WHERE name = ?1",
        params![
            name,
            serde_json::to_string(policy).expect("policy serializes")
        ],
    )?;
    Ok(())
}

pub(super) fn default_policy(
    tx: &Transaction<'_>,
    name: &str,
) -> Result<DefaultPolicy, StoreError> {
    let text: String = tx
        .query_row(
            "SELECT default_policy FROM functions WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| StoreError::UnknownFunction(name.to_string()))?;
    parse_json(&text, "$DEFAULT policy")
}

pub(super) fn update_default_policy(
    tx: &Transaction<'_>,
    name: &str,
    change: impl FnOnce(&mut DefaultPolicy),
) -> Result<(), StoreError> {
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

pub(super) fn aliases(tx: &Transaction<'_>, name: &str) -> Result<Vec<AliasRecord>, StoreError> {
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
