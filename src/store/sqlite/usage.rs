//! Usage per function, version, alias and minute: batches merged into stored minutes.

use rusqlite::{Transaction, params};

use super::functions::parse_json;
use crate::model::UsageRow;
use crate::store::StoreError;

/// Adds a batch of usage to the stored minutes, merging rows with the same key.
pub(super) fn add(tx: &Transaction<'_>, rows: &[UsageRow]) -> Result<(), StoreError> {
    {
        for row in rows {
            let mut merged = usage_rows(
                tx,
                "WHERE function = ?1 AND version = ?2 AND alias = ?3 AND minute = ?4",
                params![row.function, row.version, row.alias, row.minute],
            )?
            .pop()
            .unwrap_or_else(|| UsageRow {
                function: row.function.clone(),
                version: row.version.clone(),
                alias: row.alias.clone(),
                minute: row.minute,
                ..UsageRow::default()
            });
            merged.add(row);
            tx.execute(
                "INSERT OR REPLACE INTO usage_minutes (function, version, alias, minute,
                        invocations, errors, cold_starts, status_2xx, status_3xx, status_4xx,
                        status_5xx, duration_us, billed_ms, mib_ms, histogram, provisioned_ms,
                        provisioned_mib_ms, kv_operations)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                             ?16, ?17, ?18)",
                params![
                    merged.function,
                    merged.version,
                    merged.alias,
                    merged.minute,
                    merged.invocations as i64,
                    merged.errors as i64,
                    merged.cold_starts as i64,
                    merged.status[0] as i64,
                    merged.status[1] as i64,
                    merged.status[2] as i64,
                    merged.status[3] as i64,
                    merged.duration_us as i64,
                    merged.billed_ms as i64,
                    merged.mib_ms as i64,
                    serde_json::to_string(&merged.histogram).expect("histograms serialize"),
                    merged.provisioned_ms as i64,
                    merged.provisioned_mib_ms as i64,
                    merged.kv_operations as i64,
                ],
            )?;
        }
        Ok(())
    }
}

/// Stored usage from `since_minute` on, for one function or all.
pub(super) fn since(
    tx: &Transaction<'_>,
    function: Option<&str>,
    since_minute: i64,
) -> Result<Vec<UsageRow>, StoreError> {
    {
        match function {
            Some(f) => usage_rows(
                tx,
                "WHERE function = ?1 AND minute >= ?2",
                params![f, since_minute],
            ),
            None => usage_rows(tx, "WHERE minute >= ?1", params![since_minute]),
        }
    }
}

fn usage_rows(
    tx: &Transaction<'_>,
    filter: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<UsageRow>, StoreError> {
    let sql = format!(
        "SELECT function, version, alias, minute, invocations, errors, cold_starts, status_2xx,
                status_3xx, status_4xx, status_5xx, duration_us, billed_ms, mib_ms, histogram,
                provisioned_ms, provisioned_mib_ms, kv_operations
         FROM usage_minutes {filter} ORDER BY minute, function, version, alias"
    );
    let raw: Vec<(UsageRow, String)> = tx
        .prepare(&sql)?
        .query_map(params, |r| {
            let count = |i| r.get::<_, i64>(i).map(|v| v as u64);
            Ok((
                UsageRow {
                    function: r.get(0)?,
                    version: r.get(1)?,
                    alias: r.get(2)?,
                    minute: r.get(3)?,
                    invocations: count(4)?,
                    errors: count(5)?,
                    cold_starts: count(6)?,
                    status: [count(7)?, count(8)?, count(9)?, count(10)?],
                    duration_us: count(11)?,
                    billed_ms: count(12)?,
                    mib_ms: count(13)?,
                    histogram: Default::default(),
                    provisioned_ms: count(15)?,
                    provisioned_mib_ms: count(16)?,
                    kv_operations: count(17)?,
                },
                r.get::<_, String>(14)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    raw.into_iter()
        .map(|(mut row, histogram)| {
            row.histogram = parse_json(&histogram, "usage histogram")?;
            Ok(row)
        })
        .collect()
}
