//! Host settings and node heartbeats (one node on SQLite; the same tables as PostgreSQL).

use rusqlite::{Row, Transaction, params};

use crate::model::NodeRecord;
use crate::store::StoreError;

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
