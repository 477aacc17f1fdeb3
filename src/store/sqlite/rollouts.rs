//! Rollout state rows, saved in the same transaction as the traffic change they make, so a
//! crash never leaves a rollout's recorded step and the alias it controls disagreeing.

use rusqlite::{Transaction, params};

use super::audited;
use super::functions::{publish, store_alias, update_default_policy};
use crate::model::{TrafficChange, Why};
use crate::store::StoreError;

/// Applies `change` (if any) and stores `state` as the function's rollout, atomically.
pub(super) fn save(
    tx: &Transaction<'_>,
    function: &str,
    state: &str,
    change: Option<&TrafficChange>,
    why: &Why,
    now_ms: i64,
) -> Result<(), StoreError> {
    audited(tx, function, why, |tx| {
        match change {
            None => {}
            Some(TrafficChange::LatestShare(bp)) => {
                update_default_policy(tx, function, |policy| policy.latest_bp = *bp)?
            }
            Some(TrafficChange::Alias { alias, spec }) => {
                store_alias(tx, function, alias, spec, now_ms)?
            }
            Some(TrafficChange::Promote) => {
                publish(tx, function, "promoted by rollout", true, now_ms)?;
            }
        }
        let updated = tx.execute(
            "INSERT INTO rollouts (function, state, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(function) DO UPDATE SET state = ?2, updated_at = ?3",
            params![function, state, now_ms],
        );
        match updated {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::UnknownFunction(function.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// Every stored rollout as (function, state JSON).
pub(super) fn all(tx: &Transaction<'_>) -> Result<Vec<(String, String)>, StoreError> {
    let rows = tx
        .prepare("SELECT function, state FROM rollouts ORDER BY function")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
