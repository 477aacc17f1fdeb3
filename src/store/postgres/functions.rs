//! Queries on functions, their versions, aliases, `$DEFAULT` policy and scaling policy: the
//! same as `store/sqlite/functions.rs`, in PostgreSQL.

use postgres::Transaction;

use super::schema::database;
use crate::model::{
    AliasRecord, AliasSpec, BasisPoints, CodeInfo, DefaultPolicy, Digest, FunctionConfig,
    FunctionInfo, ScalingPolicy, VersionInfo, VersionLabel,
};
use crate::store::decode::{non_empty, parse_config, parse_digest, parse_json};
use crate::store::{FunctionRows, Published, StoreError};

type Tx<'a, 'b> = &'a mut Transaction<'b>;

pub(super) fn publish(
    tx: Tx,
    name: &str,
    description: &str,
    promote: bool,
    now_ms: i64,
) -> Result<Published, StoreError> {
    if promote {
        update_default_policy(tx, name, |policy| policy.latest_bp = BasisPoints::ZERO)?;
    }
    // Locks the function's row: two nodes publishing at once get consecutive numbers.
    let row = tx
        .query_opt(
            "SELECT latest_digest, latest_config, next_version FROM functions WHERE name = $1
             FOR UPDATE",
            &[&name],
        )
        .map_err(database)?
        .ok_or_else(|| StoreError::UnknownFunction(name.to_string()))?;
    let (digest, config, next): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
    let config = parse_config(&config)?;
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
         SELECT name, next_version, latest_digest, latest_config, $2, $3, latest_source
         FROM functions WHERE name = $1",
        &[&name, &description, &now_ms],
    )
    .map_err(database)?;
    tx.execute(
        "UPDATE functions SET next_version = next_version + 1 WHERE name = $1",
        &[&name],
    )
    .map_err(database)?;
    let version = version(tx, name, next as u32)?
        .ok_or_else(|| StoreError::UnknownVersion(name.to_string(), next as u32))?;
    Ok(Published {
        version,
        created: true,
    })
}

/// Creates or replaces an alias; every version it names must exist.
pub(super) fn store_alias(
    tx: Tx,
    function: &str,
    alias: &str,
    spec: &AliasSpec,
    now_ms: i64,
) -> Result<(), StoreError> {
    latest_config(tx, function)?
        .ok_or_else(|| StoreError::UnknownFunction(function.to_string()))?;
    for target in spec.targets() {
        if let VersionLabel::Number(n) = target
            && version(tx, function, n)?.is_none()
        {
            return Err(StoreError::UnknownVersion(function.to_string(), n));
        }
    }
    let spec = serde_json::to_string(spec).expect("alias serializes");
    tx.execute(
        "INSERT INTO aliases (function, name, spec, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (function, name) DO UPDATE SET spec = $3, updated_at = $4",
        &[&function, &alias, &spec, &now_ms],
    )
    .map_err(database)?;
    Ok(())
}

pub(super) fn latest_config(tx: Tx, name: &str) -> Result<Option<FunctionConfig>, StoreError> {
    let text: Option<String> = tx
        .query_opt(
            "SELECT latest_config FROM functions WHERE name = $1",
            &[&name],
        )
        .map_err(database)?
        .map(|row| row.get(0));
    text.as_deref().map(parse_config).transpose()
}

pub(super) fn function_info(tx: Tx, name: &str) -> Result<FunctionInfo, StoreError> {
    let row = tx
        .query_opt(
            "SELECT f.latest_digest, m.size, f.latest_config, f.latest_updated_at, f.created_at,
                    (SELECT MAX(number) FROM versions v WHERE v.function = f.name),
                    (SELECT COUNT(*) FROM versions v WHERE v.function = f.name),
                    f.latest_source
             FROM functions f JOIN modules m ON m.digest = f.latest_digest
             WHERE f.name = $1",
            &[&name],
        )
        .map_err(database)?
        .ok_or_else(|| StoreError::UnknownFunction(name.to_string()))?;
    Ok(FunctionInfo {
        name: name.to_string(),
        latest: CodeInfo {
            digest: parse_digest(row.get(0))?,
            size: row.get::<_, i64>(1) as u64,
            source: non_empty(row.get(7)),
            config: parse_config(row.get(2))?,
            updated_at_ms: row.get(3),
        },
        newest_version: row.get::<_, Option<i64>>(5).map(|n| n as u32),
        version_count: row.get::<_, i64>(6) as u32,
        created_at_ms: row.get(4),
    })
}

const VERSION_COLUMNS: &str =
    "v.number, v.digest, m.size, v.config, v.description, v.created_at, v.source";

fn version_from_row(name: &str, row: &postgres::Row) -> Result<VersionInfo, StoreError> {
    Ok(VersionInfo {
        function: name.to_string(),
        version: row.get::<_, i64>(0) as u32,
        digest: parse_digest(row.get(1))?,
        size: row.get::<_, i64>(2) as u64,
        source: non_empty(row.get(6)),
        config: parse_config(row.get(3))?,
        description: row.get(4),
        created_at_ms: row.get(5),
    })
}

pub(super) fn versions(tx: Tx, name: &str) -> Result<Vec<VersionInfo>, StoreError> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM versions v JOIN modules m ON m.digest = v.digest
         WHERE v.function = $1 ORDER BY v.number"
    );
    tx.query(&sql, &[&name])
        .map_err(database)?
        .iter()
        .map(|row| version_from_row(name, row))
        .collect()
}

pub(super) fn version(tx: Tx, name: &str, number: u32) -> Result<Option<VersionInfo>, StoreError> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM versions v JOIN modules m ON m.digest = v.digest
         WHERE v.function = $1 AND v.number = $2"
    );
    tx.query_opt(&sql, &[&name, &i64::from(number)])
        .map_err(database)?
        .map(|row| version_from_row(name, &row))
        .transpose()
}

pub(super) fn drop_unreferenced_modules(tx: Tx) -> Result<Vec<Digest>, StoreError> {
    let orphans: Vec<String> = tx
        .query(
            "DELETE FROM modules WHERE digest NOT IN
               (SELECT latest_digest FROM functions UNION SELECT digest FROM versions)
             RETURNING digest",
            &[],
        )
        .map_err(database)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    orphans.iter().map(|d| parse_digest(d)).collect()
}

pub(super) fn function_rows(tx: Tx, name: &str) -> Result<FunctionRows, StoreError> {
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

fn function_column(tx: Tx, name: &str, column: &str) -> Result<String, StoreError> {
    tx.query_opt(
        &format!("SELECT {column} FROM functions WHERE name = $1"),
        &[&name],
    )
    .map_err(database)?
    .map(|row| row.get(0))
    .ok_or_else(|| StoreError::UnknownFunction(name.to_string()))
}

pub(super) fn scaling(tx: Tx, name: &str) -> Result<ScalingPolicy, StoreError> {
    parse_json(&function_column(tx, name, "scaling")?, "scaling policy")
}

pub(super) fn store_scaling(tx: Tx, name: &str, policy: &ScalingPolicy) -> Result<(), StoreError> {
    let policy = serde_json::to_string(policy).expect("policy serializes");
    tx.execute(
        "UPDATE functions SET scaling = $2 WHERE name = $1",
        &[&name, &policy],
    )
    .map_err(database)?;
    Ok(())
}

pub(super) fn default_policy(tx: Tx, name: &str) -> Result<DefaultPolicy, StoreError> {
    parse_json(
        &function_column(tx, name, "default_policy")?,
        "$DEFAULT policy",
    )
}

pub(super) fn update_default_policy(
    tx: Tx,
    name: &str,
    change: impl FnOnce(&mut DefaultPolicy),
) -> Result<(), StoreError> {
    let mut policy = default_policy(tx, name)?;
    change(&mut policy);
    policy.validate()?;
    let policy = serde_json::to_string(&policy).expect("policy serializes");
    tx.execute(
        "UPDATE functions SET default_policy = $2 WHERE name = $1",
        &[&name, &policy],
    )
    .map_err(database)?;
    Ok(())
}

pub(super) fn aliases(tx: Tx, name: &str) -> Result<Vec<AliasRecord>, StoreError> {
    tx.query(
        "SELECT name, spec, updated_at FROM aliases WHERE function = $1 ORDER BY name",
        &[&name],
    )
    .map_err(database)?
    .iter()
    .map(|row| {
        Ok(AliasRecord {
            name: row.get(0),
            spec: parse_json(row.get(1), "alias")?,
            updated_at_ms: row.get(2),
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WeightedRoute;

    #[test]
    fn publish_numbers_versions_once_and_aliases_check_them() {
        let mut client = super::super::tests::database_with_function("f");
        let mut tx = client.transaction().unwrap();
        let first = publish(&mut tx, "f", "one", false, 1).unwrap();
        assert!(first.created);
        assert_eq!(first.version.version, 1);
        let again = publish(&mut tx, "f", "two", false, 2).unwrap();
        assert!(
            !again.created,
            "an unchanged $LATEST is not published twice"
        );
        let spec = AliasSpec {
            routes: vec![WeightedRoute {
                version: VersionLabel::Number(1),
                weight_bp: crate::model::FULL,
            }],
            sticky_header: None,
            rules: Vec::new(),
            mirror: None,
        };
        store_alias(&mut tx, "f", "prod", &spec, 3).unwrap();
        let mut missing = spec.clone();
        missing.routes[0].version = VersionLabel::Number(9);
        assert!(matches!(
            store_alias(&mut tx, "f", "prod", &missing, 4),
            Err(StoreError::UnknownVersion(_, 9))
        ));
        let rows = function_rows(&mut tx, "f").unwrap();
        assert_eq!(rows.info.newest_version, Some(1));
        assert_eq!(rows.aliases[0].spec, spec);
        assert!(matches!(
            function_info(&mut tx, "g"),
            Err(StoreError::UnknownFunction(_))
        ));
        tx.commit().unwrap();
    }
}
