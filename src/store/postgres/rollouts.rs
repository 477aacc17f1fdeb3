//! Rollout state rows, saved in the same transaction as the traffic change they make, as in
//! `store/sqlite/rollouts.rs`.

use postgres::Transaction;

use super::audit::audited;
use super::functions::{latest_config, publish, store_alias, update_default_policy};
use super::schema::database;
use crate::model::{TrafficChange, Why};
use crate::store::StoreError;

/// Applies `change` (if any) and stores `state` as the function's rollout, atomically.
pub(super) fn save(
    tx: &mut Transaction<'_>,
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
        // Checked rather than caught: a failed statement aborts a PostgreSQL transaction.
        latest_config(tx, function)?
            .ok_or_else(|| StoreError::UnknownFunction(function.to_string()))?;
        tx.execute(
            "INSERT INTO rollouts (function, state, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (function) DO UPDATE SET state = $2, updated_at = $3",
            &[&function, &state, &now_ms],
        )
        .map_err(database)?;
        Ok(())
    })
}

/// Every stored rollout as (function, state JSON).
pub(super) fn all(tx: &mut Transaction<'_>) -> Result<Vec<(String, String)>, StoreError> {
    Ok(tx
        .query(
            "SELECT function, state FROM rollouts ORDER BY function",
            &[],
        )
        .map_err(database)?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}
