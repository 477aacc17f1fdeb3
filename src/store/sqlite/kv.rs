//! Key-value stores: one row per key with a version, and per-store counts of keys and bytes
//! kept in the same transaction as every write, so limits are checked without a scan.

use rusqlite::{OptionalExtension, Transaction, params};

use crate::model::kv::incremented;
use crate::model::{KvEntry, KvLimits, KvStoreId};
use crate::store::StoreError;

pub(super) fn get(
    tx: &Transaction<'_>,
    store: &KvStoreId,
    keys: &[String],
) -> Result<Vec<Option<KvEntry>>, StoreError> {
    let mut statement = tx.prepare_cached(
        "SELECT value, version FROM kv WHERE namespace = ?1 AND store = ?2 AND key = ?3",
    )?;
    keys.iter()
        .map(|key| {
            Ok(statement
                .query_row(params![store.namespace, store.store, key], |r| {
                    Ok(KvEntry {
                        value: r.get(0)?,
                        version: r.get(1)?,
                    })
                })
                .optional()?)
        })
        .collect()
}

pub(super) fn set(
    tx: &Transaction<'_>,
    store: &KvStoreId,
    entries: &[(String, Vec<u8>)],
    limits: &KvLimits,
) -> Result<(), StoreError> {
    for (key, value) in entries {
        put(tx, store, key, value)?;
    }
    check(tx, store, limits)
}

pub(super) fn delete(
    tx: &Transaction<'_>,
    store: &KvStoreId,
    keys: &[String],
) -> Result<(), StoreError> {
    for key in keys {
        let old: Option<i64> = tx
            .query_row(
                "DELETE FROM kv WHERE namespace = ?1 AND store = ?2 AND key = ?3
                 RETURNING length(value)",
                params![store.namespace, store.store, key],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(old) = old {
            count(tx, store, -1, -(old + key.len() as i64))?;
        }
    }
    Ok(())
}

pub(super) fn keys(
    tx: &Transaction<'_>,
    store: &KvStoreId,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    let mut statement = tx.prepare(
        "SELECT key FROM kv WHERE namespace = ?1 AND store = ?2 AND (?3 IS NULL OR key > ?3)
         ORDER BY key LIMIT ?4",
    )?;
    let rows = statement.query_map(params![store.namespace, store.store, after, limit], |r| {
        r.get(0)
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn increment(
    tx: &Transaction<'_>,
    store: &KvStoreId,
    key: &str,
    delta: i64,
    limits: &KvLimits,
) -> Result<i64, StoreError> {
    let current = get(tx, store, &[key.to_string()])?.pop().flatten();
    let next = incremented(current.as_ref().map(|entry| entry.value.as_slice()), delta)
        .map_err(StoreError::Limit)?;
    put(tx, store, key, next.to_string().as_bytes())?;
    check(tx, store, limits)?;
    Ok(next)
}

pub(super) fn swap(
    tx: &Transaction<'_>,
    store: &KvStoreId,
    key: &str,
    expected: Option<i64>,
    value: &[u8],
    limits: &KvLimits,
) -> Result<bool, StoreError> {
    let current = get(tx, store, &[key.to_string()])?
        .pop()
        .flatten()
        .map(|entry| entry.version);
    if current != expected {
        return Ok(false);
    }
    put(tx, store, key, value)?;
    check(tx, store, limits)?;
    Ok(true)
}

/// Writes one key, bumping its version and the store's counts.
fn put(tx: &Transaction<'_>, store: &KvStoreId, key: &str, value: &[u8]) -> Result<(), StoreError> {
    let old: Option<i64> = tx
        .query_row(
            "SELECT length(value) FROM kv WHERE namespace = ?1 AND store = ?2 AND key = ?3",
            params![store.namespace, store.store, key],
            |r| r.get(0),
        )
        .optional()?;
    tx.execute(
        "INSERT INTO kv (namespace, store, key, value, version) VALUES (?1, ?2, ?3, ?4, 1)
         ON CONFLICT (namespace, store, key)
         DO UPDATE SET value = excluded.value, version = kv.version + 1",
        params![store.namespace, store.store, key, value],
    )?;
    let bytes = value.len() as i64 - old.unwrap_or(-(key.len() as i64));
    count(tx, store, i64::from(old.is_none()), bytes)
}

fn count(tx: &Transaction<'_>, store: &KvStoreId, keys: i64, bytes: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO kv_stores (namespace, store, keys, bytes) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (namespace, store)
         DO UPDATE SET keys = kv_stores.keys + ?3, bytes = kv_stores.bytes + ?4",
        params![store.namespace, store.store, keys, bytes],
    )?;
    Ok(())
}

/// Refuses (rolling the transaction back) when the store passed its limits.
fn check(tx: &Transaction<'_>, store: &KvStoreId, limits: &KvLimits) -> Result<(), StoreError> {
    let (keys, bytes): (i64, i64) = tx.query_row(
        "SELECT keys, bytes FROM kv_stores WHERE namespace = ?1 AND store = ?2",
        params![store.namespace, store.store],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    limits
        .check_store(&store.store, keys, bytes)
        .map_err(StoreError::Limit)
}

pub(super) fn stores(tx: &Transaction<'_>) -> Result<Vec<(KvStoreId, i64, i64)>, StoreError> {
    let mut statement = tx
        .prepare("SELECT namespace, store, keys, bytes FROM kv_stores ORDER BY namespace, store")?;
    let rows = statement.query_map([], |r| {
        Ok((
            KvStoreId {
                namespace: r.get(0)?,
                store: r.get(1)?,
            },
            r.get(2)?,
            r.get(3)?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
