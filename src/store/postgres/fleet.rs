//! Host settings and node heartbeats, shared by every node of the fleet.

use postgres::{Row, Transaction};

use super::schema::database;
use crate::model::NodeRecord;
use crate::store::StoreError;

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
