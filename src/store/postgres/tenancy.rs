//! Namespaces, API keys, the audit log and function access (the same tables as SQLite).

use postgres::Transaction;

use super::schema::database;
use crate::model::{
    Access, AuditEntry, DEFAULT_NAMESPACE, KeyRecord, NamespaceRecord, Quotas, SecretRow,
};
use crate::store::StoreError;
use crate::store::decode::parse_json;

type Tx<'a, 'b> = &'a mut Transaction<'b>;

pub(super) fn create_namespace(tx: Tx, record: &NamespaceRecord) -> Result<(), StoreError> {
    let quotas = serde_json::to_string(&record.quotas).expect("quotas serialize");
    let inserted = tx
        .execute(
            "INSERT INTO namespaces (name, quotas, created_ms) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING",
            &[&record.name, &quotas, &record.created_ms],
        )
        .map_err(database)?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "namespace {:?} already exists",
            record.name
        )));
    }
    Ok(())
}

pub(super) fn namespaces(tx: Tx) -> Result<Vec<NamespaceRecord>, StoreError> {
    tx.query(
        "SELECT name, quotas, created_ms FROM namespaces ORDER BY name",
        &[],
    )
    .map_err(database)?
    .iter()
    .map(|row| {
        Ok(NamespaceRecord {
            name: row.get(0),
            quotas: parse_json(row.get(1), "quotas")?,
            created_ms: row.get(2),
        })
    })
    .collect()
}

pub(super) fn set_quotas(
    tx: Tx,
    name: &str,
    quotas: &Quotas,
) -> Result<NamespaceRecord, StoreError> {
    let text = serde_json::to_string(quotas).expect("quotas serialize");
    let row = tx
        .query_opt(
            "UPDATE namespaces SET quotas = $2 WHERE name = $1 RETURNING created_ms",
            &[&name, &text],
        )
        .map_err(database)?
        .ok_or_else(|| StoreError::unknown_namespace(name))?;
    Ok(NamespaceRecord {
        name: name.to_string(),
        quotas: quotas.clone(),
        created_ms: row.get(0),
    })
}

pub(super) fn delete_namespace(tx: Tx, name: &str) -> Result<(), StoreError> {
    if name == DEFAULT_NAMESPACE {
        return Err(StoreError::Conflict(
            "the default namespace cannot be deleted".to_string(),
        ));
    }
    let functions: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM functions WHERE name LIKE '%.' || $1",
            &[&name],
        )
        .map_err(database)?
        .get(0);
    if functions > 0 {
        return Err(StoreError::Conflict(format!(
            "namespace {name:?} still has {functions} function(s); delete them first"
        )));
    }
    if tx
        .execute("DELETE FROM namespaces WHERE name = $1", &[&name])
        .map_err(database)?
        == 0
    {
        return Err(StoreError::unknown_namespace(name));
    }
    tx.execute("DELETE FROM api_keys WHERE namespace = $1", &[&name])
        .map_err(database)?;
    tx.execute("DELETE FROM http_routes WHERE namespace = $1", &[&name])
        .map_err(database)?;
    Ok(())
}

pub(super) fn add_key(tx: Tx, key: &KeyRecord) -> Result<(), StoreError> {
    if tx
        .query_opt(
            "SELECT 1 FROM namespaces WHERE name = $1",
            &[&key.namespace],
        )
        .map_err(database)?
        .is_none()
    {
        return Err(StoreError::unknown_namespace(&key.namespace));
    }
    tx.execute(
        "INSERT INTO api_keys (id, namespace, record) VALUES ($1, $2, $3)",
        &[&key.id, &key.namespace, &encode_key(key)],
    )
    .map_err(database)?;
    Ok(())
}

pub(super) fn key(tx: Tx, id: &str) -> Result<Option<KeyRecord>, StoreError> {
    tx.query_opt("SELECT record FROM api_keys WHERE id = $1", &[&id])
        .map_err(database)?
        .map(|row| parse_json(row.get(0), "API key"))
        .transpose()
}

pub(super) fn keys(tx: Tx, namespace: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
    tx.query(
        "SELECT record FROM api_keys WHERE $1::TEXT IS NULL OR namespace = $1
         ORDER BY namespace, id",
        &[&namespace],
    )
    .map_err(database)?
    .iter()
    .map(|row| parse_json(row.get(0), "API key"))
    .collect()
}

pub(super) fn revoke_key(tx: Tx, id: &str, now_ms: i64) -> Result<KeyRecord, StoreError> {
    let mut record =
        key(tx, id)?.ok_or_else(|| StoreError::NotFound(format!("no API key {id:?}")))?;
    record.revoked_ms.get_or_insert(now_ms);
    tx.execute(
        "UPDATE api_keys SET record = $2 WHERE id = $1",
        &[&id, &encode_key(&record)],
    )
    .map_err(database)?;
    Ok(record)
}

pub(super) fn add_audit(tx: Tx, entry: &AuditEntry) -> Result<i64, StoreError> {
    Ok(tx
        .query_one(
            "INSERT INTO audit_log (at_ms, namespace, actor, action, status)
             VALUES ($1, $2, $3, $4, $5) RETURNING seq",
            &[
                &entry.at_ms,
                &entry.namespace,
                &entry.actor,
                &entry.action,
                &i32::from(entry.status),
            ],
        )
        .map_err(database)?
        .get(0))
}

pub(super) fn audit(
    tx: Tx,
    namespace: Option<&str>,
    limit: u32,
) -> Result<Vec<AuditEntry>, StoreError> {
    Ok(tx
        .query(
            "SELECT seq, at_ms, namespace, actor, action, status FROM audit_log
             WHERE $1::TEXT IS NULL OR namespace = $1 ORDER BY seq DESC LIMIT $2",
            &[&namespace, &i64::from(limit)],
        )
        .map_err(database)?
        .iter()
        .map(|row| AuditEntry {
            seq: row.get(0),
            at_ms: row.get(1),
            namespace: row.get(2),
            actor: row.get(3),
            action: row.get(4),
            status: row.get::<_, i32>(5) as u16,
        })
        .collect())
}

pub(super) fn access(tx: Tx, function: &str) -> Result<Access, StoreError> {
    let text: String = tx
        .query_opt("SELECT access FROM functions WHERE name = $1", &[&function])
        .map_err(database)?
        .ok_or_else(|| StoreError::UnknownFunction(function.to_string()))?
        .get(0);
    Access::parse(&text)
        .ok_or_else(|| StoreError::Corrupt(format!("stored access {text:?} of {function}")))
}

pub(super) fn set_access(tx: Tx, function: &str, access: Access) -> Result<(), StoreError> {
    let updated = tx
        .execute(
            "UPDATE functions SET access = $2 WHERE name = $1",
            &[&function, &access.as_str()],
        )
        .map_err(database)?;
    if updated == 0 {
        return Err(StoreError::UnknownFunction(function.to_string()));
    }
    Ok(())
}

fn encode_key(key: &KeyRecord) -> String {
    serde_json::to_string(key).expect("a key record serializes")
}

pub(super) fn secrets(tx: Tx, function: &str) -> Result<Vec<SecretRow>, StoreError> {
    Ok(tx
        .query(
            "SELECT name, sealed, updated_ms FROM secrets WHERE function = $1 ORDER BY name",
            &[&function],
        )
        .map_err(database)?
        .iter()
        .map(|row| SecretRow {
            name: row.get(0),
            sealed: row.get(1),
            updated_ms: row.get(2),
        })
        .collect())
}

pub(super) fn set_secret(
    tx: Tx,
    function: &str,
    name: &str,
    sealed: &[u8],
    now_ms: i64,
) -> Result<(), StoreError> {
    access(tx, function)?; // the function exists
    tx.execute(
        "INSERT INTO secrets (function, name, sealed, updated_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (function, name) DO UPDATE SET sealed = $3, updated_ms = $4",
        &[&function, &name, &sealed, &now_ms],
    )
    .map_err(database)?;
    Ok(())
}

pub(super) fn delete_secret(tx: Tx, function: &str, name: &str) -> Result<(), StoreError> {
    access(tx, function)?;
    let deleted = tx
        .execute(
            "DELETE FROM secrets WHERE function = $1 AND name = $2",
            &[&function, &name],
        )
        .map_err(database)?;
    if deleted == 0 {
        return Err(StoreError::NotFound(format!(
            "function {function:?} has no secret {name:?}"
        )));
    }
    Ok(())
}
