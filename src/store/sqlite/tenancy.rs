//! Namespaces, API keys, the audit log and function access (the same tables as PostgreSQL).

use rusqlite::{OptionalExtension, Transaction, params};

use crate::model::{
    Access, AuditEntry, DEFAULT_NAMESPACE, KeyRecord, NamespaceRecord, Quotas, SecretRow,
};
use crate::store::StoreError;
use crate::store::decode::parse_json;

pub(super) fn create_namespace(
    tx: &Transaction<'_>,
    record: &NamespaceRecord,
) -> Result<(), StoreError> {
    let quotas = serde_json::to_string(&record.quotas).expect("quotas serialize");
    let inserted = tx.execute(
        "INSERT INTO namespaces (name, quotas, created_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO NOTHING",
        params![record.name, quotas, record.created_ms],
    )?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "namespace {:?} already exists",
            record.name
        )));
    }
    Ok(())
}

pub(super) fn namespaces(tx: &Transaction<'_>) -> Result<Vec<NamespaceRecord>, StoreError> {
    let mut statement =
        tx.prepare("SELECT name, quotas, created_ms FROM namespaces ORDER BY name")?;
    let rows = statement.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    rows.map(|row| {
        let (name, quotas, created_ms) = row?;
        Ok(NamespaceRecord {
            quotas: parse_json(&quotas, "quotas")?,
            name,
            created_ms,
        })
    })
    .collect()
}

pub(super) fn set_quotas(
    tx: &Transaction<'_>,
    name: &str,
    quotas: &Quotas,
) -> Result<NamespaceRecord, StoreError> {
    let text = serde_json::to_string(quotas).expect("quotas serialize");
    let created_ms: i64 = tx
        .query_row(
            "UPDATE namespaces SET quotas = ?2 WHERE name = ?1 RETURNING created_ms",
            params![name, text],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| StoreError::unknown_namespace(name))?;
    Ok(NamespaceRecord {
        name: name.to_string(),
        quotas: quotas.clone(),
        created_ms,
    })
}

pub(super) fn delete_namespace(tx: &Transaction<'_>, name: &str) -> Result<(), StoreError> {
    if name == DEFAULT_NAMESPACE {
        return Err(StoreError::Conflict(
            "the default namespace cannot be deleted".to_string(),
        ));
    }
    let functions: i64 = tx.query_row(
        "SELECT COUNT(*) FROM functions WHERE name LIKE '%.' || ?1",
        [name],
        |r| r.get(0),
    )?;
    if functions > 0 {
        return Err(StoreError::Conflict(format!(
            "namespace {name:?} still has {functions} function(s); delete them first"
        )));
    }
    if tx.execute("DELETE FROM namespaces WHERE name = ?1", [name])? == 0 {
        return Err(StoreError::unknown_namespace(name));
    }
    tx.execute("DELETE FROM api_keys WHERE namespace = ?1", [name])?;
    tx.execute("DELETE FROM http_routes WHERE namespace = ?1", [name])?;
    Ok(())
}

pub(super) fn add_key(tx: &Transaction<'_>, key: &KeyRecord) -> Result<(), StoreError> {
    let exists: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM namespaces WHERE name = ?1",
            [&key.namespace],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Err(StoreError::unknown_namespace(&key.namespace));
    }
    tx.execute(
        "INSERT INTO api_keys (id, namespace, record) VALUES (?1, ?2, ?3)",
        params![key.id, key.namespace, encode_key(key)],
    )?;
    Ok(())
}

pub(super) fn key(tx: &Transaction<'_>, id: &str) -> Result<Option<KeyRecord>, StoreError> {
    tx.query_row("SELECT record FROM api_keys WHERE id = ?1", [id], |r| {
        r.get::<_, String>(0)
    })
    .optional()?
    .map(|text| parse_json(&text, "API key"))
    .transpose()
}

pub(super) fn keys(
    tx: &Transaction<'_>,
    namespace: Option<&str>,
) -> Result<Vec<KeyRecord>, StoreError> {
    let mut statement = tx.prepare(
        "SELECT record FROM api_keys WHERE ?1 IS NULL OR namespace = ?1 ORDER BY namespace, id",
    )?;
    let rows = statement.query_map([namespace], |r| r.get::<_, String>(0))?;
    rows.map(|text| parse_json(&text?, "API key")).collect()
}

pub(super) fn revoke_key(
    tx: &Transaction<'_>,
    id: &str,
    now_ms: i64,
) -> Result<KeyRecord, StoreError> {
    let mut record =
        key(tx, id)?.ok_or_else(|| StoreError::NotFound(format!("no API key {id:?}")))?;
    record.revoked_ms.get_or_insert(now_ms);
    tx.execute(
        "UPDATE api_keys SET record = ?2 WHERE id = ?1",
        params![id, encode_key(&record)],
    )?;
    Ok(record)
}

pub(super) fn add_audit(tx: &Transaction<'_>, entry: &AuditEntry) -> Result<i64, StoreError> {
    Ok(tx.query_row(
        "INSERT INTO audit_log (at_ms, namespace, actor, action, status)
         VALUES (?1, ?2, ?3, ?4, ?5) RETURNING seq",
        params![
            entry.at_ms,
            entry.namespace,
            entry.actor,
            entry.action,
            entry.status
        ],
        |r| r.get(0),
    )?)
}

pub(super) fn audit(
    tx: &Transaction<'_>,
    namespace: Option<&str>,
    limit: u32,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut statement = tx.prepare(
        "SELECT seq, at_ms, namespace, actor, action, status FROM audit_log
         WHERE ?1 IS NULL OR namespace = ?1 ORDER BY seq DESC LIMIT ?2",
    )?;
    let rows = statement.query_map(params![namespace, limit], |r| {
        Ok(AuditEntry {
            seq: r.get(0)?,
            at_ms: r.get(1)?,
            namespace: r.get(2)?,
            actor: r.get(3)?,
            action: r.get(4)?,
            status: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn access(tx: &Transaction<'_>, function: &str) -> Result<Access, StoreError> {
    let text: String = tx
        .query_row(
            "SELECT access FROM functions WHERE name = ?1",
            [function],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| StoreError::UnknownFunction(function.to_string()))?;
    Access::parse(&text)
        .ok_or_else(|| StoreError::Corrupt(format!("stored access {text:?} of {function}")))
}

pub(super) fn set_access(
    tx: &Transaction<'_>,
    function: &str,
    access: Access,
) -> Result<(), StoreError> {
    let updated = tx.execute(
        "UPDATE functions SET access = ?2 WHERE name = ?1",
        params![function, access.as_str()],
    )?;
    if updated == 0 {
        return Err(StoreError::UnknownFunction(function.to_string()));
    }
    Ok(())
}

fn encode_key(key: &KeyRecord) -> String {
    serde_json::to_string(key).expect("a key record serializes")
}

pub(super) fn secrets(tx: &Transaction<'_>, function: &str) -> Result<Vec<SecretRow>, StoreError> {
    let mut statement = tx.prepare_cached(
        "SELECT name, sealed, updated_ms FROM secrets WHERE function = ?1 ORDER BY name",
    )?;
    let rows = statement.query_map([function], |r| {
        Ok(SecretRow {
            name: r.get(0)?,
            sealed: r.get(1)?,
            updated_ms: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn set_secret(
    tx: &Transaction<'_>,
    function: &str,
    name: &str,
    sealed: &[u8],
    now_ms: i64,
) -> Result<(), StoreError> {
    access(tx, function)?; // the function exists
    tx.execute(
        "INSERT INTO secrets (function, name, sealed, updated_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (function, name) DO UPDATE SET sealed = ?3, updated_ms = ?4",
        params![function, name, sealed, now_ms],
    )?;
    Ok(())
}

pub(super) fn delete_secret(
    tx: &Transaction<'_>,
    function: &str,
    name: &str,
) -> Result<(), StoreError> {
    access(tx, function)?;
    if tx.execute(
        "DELETE FROM secrets WHERE function = ?1 AND name = ?2",
        params![function, name],
    )? == 0
    {
        return Err(StoreError::NotFound(format!(
            "function {function:?} has no secret {name:?}"
        )));
    }
    Ok(())
}
