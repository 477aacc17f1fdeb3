//! Host settings and node heartbeats (one node on SQLite; the same tables as PostgreSQL).

use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::model::{HealthSample, NodeRecord};
use crate::store::StoreError;
use crate::store::decode::health_sample;

pub(super) fn setting_or_init(
    tx: &Transaction<'_>,
    name: &str,
    initial: &str,
) -> Result<String, StoreError> {
    tx.execute(
        "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        params![name, initial],
    )?;
    Ok(tx.query_row(
        "SELECT value FROM settings WHERE name = ?1",
        [name],
        |row| row.get(0),
    )?)
}

pub(super) fn heartbeat(
    tx: &Transaction<'_>,
    node: &NodeRecord,
    expired_before_ms: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO nodes (id, data_address, admin_address, version, started_ms, heartbeat_ms,
                            in_flight, warm_instances)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms,
             in_flight = excluded.in_flight, warm_instances = excluded.warm_instances",
        params![
            node.id,
            node.data_address,
            node.admin_address,
            node.version,
            node.started_ms,
            node.heartbeat_ms,
            node.in_flight as i64,
            node.warm_instances as i64
        ],
    )?;
    tx.execute(
        "DELETE FROM nodes WHERE heartbeat_ms < ?1",
        [expired_before_ms],
    )?;
    Ok(())
}

pub(super) fn nodes(tx: &Transaction<'_>, since_ms: i64) -> Result<Vec<NodeRecord>, StoreError> {
    let mut statement = tx.prepare(
        "SELECT id, data_address, admin_address, version, started_ms, heartbeat_ms, in_flight,
                warm_instances
         FROM nodes WHERE heartbeat_ms >= ?1 ORDER BY data_address, id",
    )?;
    let rows = statement.query_map([since_ms], node)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn leave(tx: &Transaction<'_>, id: &str) -> Result<(), StoreError> {
    tx.execute("DELETE FROM nodes WHERE id = ?1", [id])?;
    Ok(())
}

pub(super) fn acquire_lease(
    tx: &Transaction<'_>,
    name: &str,
    holder: &str,
    now_ms: i64,
    until_ms: i64,
) -> Result<bool, StoreError> {
    let granted = tx.execute(
        "INSERT INTO leases (name, holder, until_ms) VALUES (?1, ?2, ?4)
         ON CONFLICT (name) DO UPDATE SET holder = ?2, until_ms = ?4
         WHERE leases.holder = ?2 OR leases.until_ms < ?3",
        params![name, holder, now_ms, until_ms],
    )?;
    Ok(granted == 1)
}

pub(super) fn lease_holder(
    tx: &Transaction<'_>,
    name: &str,
    now_ms: i64,
) -> Result<Option<String>, StoreError> {
    Ok(tx
        .query_row(
            "SELECT holder FROM leases WHERE name = ?1 AND until_ms >= ?2",
            params![name, now_ms],
            |r| r.get(0),
        )
        .optional()?)
}

pub(super) fn release_lease(
    tx: &Transaction<'_>,
    name: &str,
    holder: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
        params![name, holder],
    )?;
    Ok(())
}

pub(super) fn add_health(
    tx: &Transaction<'_>,
    node: &str,
    samples: &[HealthSample],
) -> Result<(), StoreError> {
    let mut statement = tx.prepare(
        "INSERT INTO health_samples (function, version, node, second, requests, errors, latency)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (function, second, version, node) DO UPDATE SET
             requests = excluded.requests, errors = excluded.errors, latency = excluded.latency",
    )?;
    for sample in samples {
        let latency = serde_json::to_string(&sample.latency).expect("histograms serialize");
        statement.execute(params![
            sample.function,
            sample.version.to_string(),
            node,
            sample.second,
            sample.requests as i64,
            sample.errors as i64,
            latency
        ])?;
    }
    Ok(())
}

pub(super) fn health(
    tx: &Transaction<'_>,
    function: &str,
    from: i64,
    to: i64,
) -> Result<Vec<HealthSample>, StoreError> {
    let mut statement = tx.prepare(
        "SELECT version, second, requests, errors, latency FROM health_samples
         WHERE function = ?1 AND second >= ?2 AND second < ?3",
    )?;
    let rows = statement.query_map(params![function, from, to], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (version, second, requests, errors, latency) = row?;
        out.push(health_sample(
            function.to_string(),
            &version,
            second,
            requests,
            errors,
            &latency,
        )?);
    }
    Ok(out)
}

pub(super) fn prune_health(tx: &Transaction<'_>, before: i64) -> Result<usize, StoreError> {
    Ok(tx.execute("DELETE FROM health_samples WHERE second < ?1", [before])?)
}

fn node(row: &Row<'_>) -> rusqlite::Result<NodeRecord> {
    Ok(NodeRecord {
        id: row.get(0)?,
        data_address: row.get(1)?,
        admin_address: row.get(2)?,
        version: row.get(3)?,
        started_ms: row.get(4)?,
        heartbeat_ms: row.get(5)?,
        in_flight: row.get::<_, i64>(6)? as u64,
        warm_instances: row.get::<_, i64>(7)? as u64,
    })
}
