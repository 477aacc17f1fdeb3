//! Host settings, node heartbeats, leases and published health: what the nodes of a fleet
//! share to act as one.

use postgres::{Row, Transaction};

use super::schema::database;
use crate::model::{HealthSample, NodeRecord};
use crate::store::StoreError;
use crate::store::decode::health_sample;

type Tx<'a, 'b> = &'a mut Transaction<'b>;

pub(super) fn setting_or_init(tx: Tx, name: &str, initial: &str) -> Result<String, StoreError> {
    tx.execute(
        "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[&name, &initial],
    )
    .map_err(database)?;
    let row = tx
        .query_one("SELECT value FROM settings WHERE name = $1", &[&name])
        .map_err(database)?;
    Ok(row.get(0))
}

pub(super) fn heartbeat(
    tx: Tx,
    node: &NodeRecord,
    expired_before_ms: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO nodes (id, data_address, admin_address, version, started_ms, heartbeat_ms,
                            in_flight, warm_instances)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms,
             in_flight = excluded.in_flight, warm_instances = excluded.warm_instances",
        &[
            &node.id,
            &node.data_address,
            &node.admin_address,
            &node.version,
            &node.started_ms,
            &node.heartbeat_ms,
            &(node.in_flight as i64),
            &(node.warm_instances as i64),
        ],
    )
    .map_err(database)?;
    tx.execute(
        "DELETE FROM nodes WHERE heartbeat_ms < $1",
        &[&expired_before_ms],
    )
    .map_err(database)?;
    Ok(())
}

pub(super) fn nodes(tx: Tx, since_ms: i64) -> Result<Vec<NodeRecord>, StoreError> {
    Ok(tx
        .query(
            "SELECT id, data_address, admin_address, version, started_ms, heartbeat_ms,
                    in_flight, warm_instances
             FROM nodes WHERE heartbeat_ms >= $1 ORDER BY data_address, id",
            &[&since_ms],
        )
        .map_err(database)?
        .iter()
        .map(node)
        .collect())
}

pub(super) fn leave(tx: Tx, id: &str) -> Result<(), StoreError> {
    tx.execute("DELETE FROM nodes WHERE id = $1", &[&id])
        .map_err(database)?;
    Ok(())
}

pub(super) fn acquire_lease(
    tx: Tx,
    name: &str,
    holder: &str,
    now_ms: i64,
    until_ms: i64,
) -> Result<bool, StoreError> {
    // The conditional upsert is one atomic statement: of nodes racing for an expired lease,
    // the row lock lets the first win and the others see its fresh `until_ms`.
    let granted = tx
        .execute(
            "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $4)
             ON CONFLICT (name) DO UPDATE SET holder = $2, until_ms = $4
             WHERE leases.holder = $2 OR leases.until_ms < $3",
            &[&name, &holder, &now_ms, &until_ms],
        )
        .map_err(database)?;
    Ok(granted == 1)
}

pub(super) fn lease_holder(tx: Tx, name: &str, now_ms: i64) -> Result<Option<String>, StoreError> {
    Ok(tx
        .query_opt(
            "SELECT holder FROM leases WHERE name = $1 AND until_ms >= $2",
            &[&name, &now_ms],
        )
        .map_err(database)?
        .map(|row| row.get(0)))
}

pub(super) fn release_lease(tx: Tx, name: &str, holder: &str) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM leases WHERE name = $1 AND holder = $2",
        &[&name, &holder],
    )
    .map_err(database)?;
    Ok(())
}

/// One statement for the whole batch (arrays unnested), so a node's second costs one
/// round trip however many versions it served.
pub(super) fn add_health(tx: Tx, node: &str, samples: &[HealthSample]) -> Result<(), StoreError> {
    if samples.is_empty() {
        return Ok(());
    }
    let functions: Vec<&str> = samples.iter().map(|s| s.function.as_str()).collect();
    let versions: Vec<String> = samples.iter().map(|s| s.version.to_string()).collect();
    let seconds: Vec<i64> = samples.iter().map(|s| s.second).collect();
    let requests: Vec<i64> = samples.iter().map(|s| s.requests as i64).collect();
    let errors: Vec<i64> = samples.iter().map(|s| s.errors as i64).collect();
    let latency: Vec<String> = samples
        .iter()
        .map(|s| serde_json::to_string(&s.latency).expect("histograms serialize"))
        .collect();
    tx.execute(
        "INSERT INTO health_samples (function, version, node, second, requests, errors, latency)
         SELECT f, v, $2, s, r, e, l
         FROM UNNEST($1::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[])
              AS t(f, v, s, r, e, l)
         ON CONFLICT (function, second, version, node) DO UPDATE SET
             requests = excluded.requests, errors = excluded.errors, latency = excluded.latency",
        &[
            &functions, &node, &versions, &seconds, &requests, &errors, &latency,
        ],
    )
    .map_err(database)?;
    Ok(())
}

pub(super) fn health(
    tx: Tx,
    function: &str,
    from: i64,
    to: i64,
) -> Result<Vec<HealthSample>, StoreError> {
    tx.query(
        "SELECT version, second, requests, errors, latency FROM health_samples
         WHERE function = $1 AND second >= $2 AND second < $3",
        &[&function, &from, &to],
    )
    .map_err(database)?
    .iter()
    .map(|r| {
        health_sample(
            function.to_string(),
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
        )
    })
    .collect()
}

pub(super) fn prune_health(tx: Tx, before: i64) -> Result<usize, StoreError> {
    let deleted = tx
        .execute("DELETE FROM health_samples WHERE second < $1", &[&before])
        .map_err(database)?;
    Ok(deleted as usize)
}

fn node(row: &Row) -> NodeRecord {
    NodeRecord {
        id: row.get(0),
        data_address: row.get(1),
        admin_address: row.get(2),
        version: row.get(3),
        started_ms: row.get(4),
        heartbeat_ms: row.get(5),
        in_flight: row.get::<_, i64>(6) as u64,
        warm_instances: row.get::<_, i64>(7) as u64,
    }
}
