//! Key-value stores: one row per key with a version, and per-store counts of keys and bytes.
//! Every write first locks its store's count row, so writes to one store are serialized:
//! counts stay exact, and increment and compare-and-swap are atomic across nodes.

use postgres::Transaction;

use super::schema::database;
use crate::model::kv::incremented;
use crate::model::{KvEntry, KvLimits, KvStoreId};
use crate::store::StoreError;

type Tx<'a, 'b> = &'a mut Transaction<'b>;

pub(super) fn get(
    tx: Tx,
    store: &KvStoreId,
    keys: &[String],
) -> Result<Vec<Option<KvEntry>>, StoreError> {
    let statement = tx
        .prepare("SELECT value, version FROM kv WHERE namespace = $1 AND store = $2 AND key = $3")
        .map_err(database)?;
    keys.iter()
        .map(|key| {
            Ok(tx
                .query_opt(&statement, &[&store.namespace, &store.store, key])
                .map_err(database)?
                .map(|row| KvEntry {
                    value: row.get(0),
                    version: row.get(1),
                }))
        })
        .collect()
}

pub(super) fn set(
    tx: Tx,
    store: &KvStoreId,
    entries: &[(String, Vec<u8>)],
    limits: &KvLimits,
) -> Result<(), StoreError> {
    let mut counts = lock(tx, store)?;
    for (key, value) in entries {
        put(tx, store, key, value, &mut counts)?;
    }
    save(tx, store, counts, Some(limits))
}

pub(super) fn delete(tx: Tx, store: &KvStoreId, keys: &[String]) -> Result<(), StoreError> {
    let mut counts = lock(tx, store)?;
    for key in keys {
        let old = tx
            .query_opt(
                "DELETE FROM kv WHERE namespace = $1 AND store = $2 AND key = $3
                 RETURNING length(value)::BIGINT",
                &[&store.namespace, &store.store, key],
            )
            .map_err(database)?;
        if let Some(row) = old {
            let old: i64 = row.get(0);
            counts.0 -= 1;
            counts.1 -= old + key.len() as i64;
        }
    }
    save(tx, store, counts, None)
}

pub(super) fn keys(
    tx: Tx,
    store: &KvStoreId,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    Ok(tx
        .query(
            "SELECT key FROM kv WHERE namespace = $1 AND store = $2
               AND ($3::TEXT IS NULL OR key > $3)
             ORDER BY key COLLATE \"C\" LIMIT $4",
            &[&store.namespace, &store.store, &after, &i64::from(limit)],
        )
        .map_err(database)?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

pub(super) fn increment(
    tx: Tx,
    store: &KvStoreId,
    key: &str,
    delta: i64,
    limits: &KvLimits,
) -> Result<i64, StoreError> {
    let mut counts = lock(tx, store)?;
    let current = get(tx, store, &[key.to_string()])?.pop().flatten();
    let next = incremented(current.as_ref().map(|entry| entry.value.as_slice()), delta)
        .map_err(StoreError::Limit)?;
    put(tx, store, key, next.to_string().as_bytes(), &mut counts)?;
    save(tx, store, counts, Some(limits))?;
    Ok(next)
}

pub(super) fn swap(
    tx: Tx,
    store: &KvStoreId,
    key: &str,
    expected: Option<i64>,
    value: &[u8],
    limits: &KvLimits,
) -> Result<bool, StoreError> {
    let mut counts = lock(tx, store)?;
    let current = get(tx, store, &[key.to_string()])?
        .pop()
        .flatten()
        .map(|entry| entry.version);
    if current != expected {
        return Ok(false);
    }
    put(tx, store, key, value, &mut counts)?;
    save(tx, store, counts, Some(limits))?;
    Ok(true)
}

/// Takes the store's count row (creating it), serializing writers of the store.
fn lock(tx: Tx, store: &KvStoreId) -> Result<(i64, i64), StoreError> {
    tx.execute(
        "INSERT INTO kv_stores (namespace, store, keys, bytes) VALUES ($1, $2, 0, 0)
         ON CONFLICT (namespace, store) DO NOTHING",
        &[&store.namespace, &store.store],
    )
    .map_err(database)?;
    let row = tx
        .query_one(
            "SELECT keys, bytes FROM kv_stores WHERE namespace = $1 AND store = $2 FOR UPDATE",
            &[&store.namespace, &store.store],
        )
        .map_err(database)?;
    Ok((row.get(0), row.get(1)))
}

/// Writes one key, bumping its version, and counts it.
fn put(
    tx: Tx,
    store: &KvStoreId,
    key: &str,
    value: &[u8],
    counts: &mut (i64, i64),
) -> Result<(), StoreError> {
    let old: Option<i64> = tx
        .query_opt(
            "SELECT length(value)::BIGINT FROM kv WHERE namespace = $1 AND store = $2 AND key = $3",
            &[&store.namespace, &store.store, &key],
        )
        .map_err(database)?
        .map(|row| row.get(0));
    tx.execute(
        "INSERT INTO kv (namespace, store, key, value, version) VALUES ($1, $2, $3, $4, 1)
         ON CONFLICT (namespace, store, key)
         DO UPDATE SET value = EXCLUDED.value, version = kv.version + 1",
        &[&store.namespace, &store.store, &key, &value],
    )
    .map_err(database)?;
    counts.0 += i64::from(old.is_none());
    counts.1 += value.len() as i64 - old.unwrap_or(-(key.len() as i64));
    Ok(())
}

/// Stores the counts, refusing (rolling back) when a store that grew passed its limits.
fn save(
    tx: Tx,
    store: &KvStoreId,
    (keys, bytes): (i64, i64),
    limits: Option<&KvLimits>,
) -> Result<(), StoreError> {
    if let Some(limits) = limits {
        limits
            .check_store(&store.store, keys, bytes)
            .map_err(StoreError::Limit)?;
    }
    tx.execute(
        "UPDATE kv_stores SET keys = $3, bytes = $4 WHERE namespace = $1 AND store = $2",
        &[&store.namespace, &store.store, &keys, &bytes],
    )
    .map_err(database)?;
    Ok(())
}

pub(super) fn stores(tx: Tx) -> Result<Vec<(KvStoreId, i64, i64)>, StoreError> {
    Ok(tx
        .query(
            "SELECT namespace, store, keys, bytes FROM kv_stores ORDER BY namespace, store",
            &[],
        )
        .map_err(database)?
        .iter()
        .map(|row| {
            (
                KvStoreId {
                    namespace: row.get(0),
                    store: row.get(1),
                },
                row.get(2),
                row.get(3),
            )
        })
        .collect())
}
