//! Usage per function, version, alias and minute, as `store/sqlite/usage.rs`. Every node of a
//! fleet adds to the same minutes: a row is created if missing, then locked, merged and
//! written, so concurrent batches add up instead of overwriting each other.

use postgres::Transaction;
use postgres::types::ToSql;

use super::schema::database;
use crate::model::UsageRow;
use crate::store::StoreError;
use crate::store::decode::parse_json;

const COLUMNS: &str = "function, version, alias, minute, invocations, errors, cold_starts, \
     status_2xx, status_3xx, status_4xx, status_5xx, duration_us, billed_ms, mib_ms, \
     histogram, provisioned_ms, provisioned_mib_ms, kv_operations";

/// Adds a batch of usage to the stored minutes, merging rows with the same key.
pub(super) fn add(tx: &mut Transaction<'_>, rows: &[UsageRow]) -> Result<(), StoreError> {
    // Rows are locked in key order, the same on every node, so two batches never deadlock.
    let mut rows: Vec<&UsageRow> = rows.iter().collect();
    rows.sort_by(|a, b| {
        (&a.function, &a.version, &a.alias, a.minute).cmp(&(
            &b.function,
            &b.version,
            &b.alias,
            b.minute,
        ))
    });
    for row in rows {
        let key: [&(dyn ToSql + Sync); 4] = [&row.function, &row.version, &row.alias, &row.minute];
        let empty = serde_json::to_string(&crate::model::LatencyHistogram::default())
            .expect("histograms serialize");
        tx.execute(
            "INSERT INTO usage_minutes (function, version, alias, minute, invocations, errors,
                    cold_starts, status_2xx, status_3xx, status_4xx, status_5xx, duration_us,
                    billed_ms, mib_ms, histogram)
             VALUES ($1, $2, $3, $4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, $5)
             ON CONFLICT DO NOTHING",
            &[key[0], key[1], key[2], key[3], &empty],
        )
        .map_err(database)?;
        let mut merged = usage_rows(
            tx,
            "WHERE function = $1 AND version = $2 AND alias = $3 AND minute = $4 FOR UPDATE",
            &key,
        )?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("a usage row vanished inside its transaction".into()))?;
        merged.add(row);
        let counts: Vec<i64> = [
            merged.invocations,
            merged.errors,
            merged.cold_starts,
            merged.status[0],
            merged.status[1],
            merged.status[2],
            merged.status[3],
            merged.duration_us,
            merged.billed_ms,
            merged.mib_ms,
            merged.provisioned_ms,
            merged.provisioned_mib_ms,
            merged.kv_operations,
        ]
        .into_iter()
        .map(|n| n as i64)
        .collect();
        let histogram = serde_json::to_string(&merged.histogram).expect("histograms serialize");
        tx.execute(
            "UPDATE usage_minutes SET invocations = $5, errors = $6, cold_starts = $7,
                    status_2xx = $8, status_3xx = $9, status_4xx = $10, status_5xx = $11,
                    duration_us = $12, billed_ms = $13, mib_ms = $14, provisioned_ms = $15,
                    provisioned_mib_ms = $16, histogram = $17, kv_operations = $18
             WHERE function = $1 AND version = $2 AND alias = $3 AND minute = $4",
            &[
                key[0],
                key[1],
                key[2],
                key[3],
                &counts[0],
                &counts[1],
                &counts[2],
                &counts[3],
                &counts[4],
                &counts[5],
                &counts[6],
                &counts[7],
                &counts[8],
                &counts[9],
                &counts[10],
                &counts[11],
                &histogram,
                &counts[12],
            ],
        )
        .map_err(database)?;
    }
    Ok(())
}

/// Stored usage from `since_minute` on, for one function or all.
pub(super) fn since(
    tx: &mut Transaction<'_>,
    function: Option<&str>,
    since_minute: i64,
) -> Result<Vec<UsageRow>, StoreError> {
    usage_rows(
        tx,
        "WHERE ($1::TEXT IS NULL OR function = $1) AND minute >= $2
         ORDER BY minute, function, version, alias",
        &[&function, &since_minute],
    )
}

fn usage_rows(
    tx: &mut Transaction<'_>,
    filter: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<UsageRow>, StoreError> {
    let rows = tx
        .query(
            &format!("SELECT {COLUMNS} FROM usage_minutes {filter}"),
            params,
        )
        .map_err(database)?;
    rows.iter()
        .map(|r| {
            let count = |i| r.get::<_, i64>(i) as u64;
            Ok(UsageRow {
                function: r.get(0),
                version: r.get(1),
                alias: r.get(2),
                minute: r.get(3),
                invocations: count(4),
                errors: count(5),
                cold_starts: count(6),
                status: [count(7), count(8), count(9), count(10)],
                duration_us: count(11),
                billed_ms: count(12),
                mib_ms: count(13),
                histogram: parse_json(r.get(14), "usage histogram")?,
                provisioned_ms: count(15),
                kv_operations: count(17),
                provisioned_mib_ms: count(16),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::test_server::TestPostgres;

    /// Four nodes add to the same minute at once: the totals are exact.
    #[test]
    fn concurrent_batches_add_up() {
        let dsn = TestPostgres::shared().fresh_database();
        let mut client = postgres::Client::connect(&dsn, postgres::NoTls).unwrap();
        super::super::schema::migrate(&mut client).unwrap();
        let row = UsageRow {
            function: "f".into(),
            version: "1".into(),
            alias: String::new(),
            minute: 7,
            invocations: 1,
            billed_ms: 3,
            ..UsageRow::default()
        };
        let nodes: Vec<_> = (0..4)
            .map(|_| {
                let (dsn, row) = (dsn.clone(), row.clone());
                std::thread::spawn(move || {
                    let mut client = postgres::Client::connect(&dsn, postgres::NoTls).unwrap();
                    for _ in 0..25 {
                        let mut tx = client.transaction().unwrap();
                        add(&mut tx, std::slice::from_ref(&row)).unwrap();
                        tx.commit().unwrap();
                    }
                })
            })
            .collect();
        for node in nodes {
            node.join().unwrap();
        }
        let mut tx = client.transaction().unwrap();
        let stored = since(&mut tx, Some("f"), 0).unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!((stored[0].invocations, stored[0].billed_ms), (100, 300));
        assert!(since(&mut tx, None, 8).unwrap().is_empty());
    }
}
