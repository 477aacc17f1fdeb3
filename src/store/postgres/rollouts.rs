//! Rollout state rows, saved in the same transaction as the traffic change they make, as in
//! `store/sqlite/rollouts.rs`.

use postgres::Transaction;

use super::audit::audited;
use super::functions::{latest_config, publish, store_alias, update_default_policy};
use super::schema::database;
use crate::model::{TrafficChange, Why};
use crate::store::{StoreError, StoredRollout};

/// Stores `state` as the function's rollout if it is still at `revision`, and applies
/// `change` (if any), atomically; returns the new revision.
pub(super) fn save(
    tx: &mut Transaction<'_>,
    function: &str,
    revision: i64,
    state: &str,
    change: Option<&TrafficChange>,
    why: &Why,
    now_ms: i64,
) -> Result<i64, StoreError> {
    audited(tx, function, why, |tx| {
        // Checked rather than caught: a failed statement aborts a PostgreSQL transaction.
        latest_config(tx, function)?
            .ok_or_else(|| StoreError::UnknownFunction(function.to_string()))?;
        // The compare-and-swap first, as one statement: under concurrent saves the row
        // lock orders them, and the later one finds the revision moved and changes nothing.
        let swapped = if revision == 0 {
            tx.execute(
                "INSERT INTO rollouts (function, state, updated_at, revision)
                 VALUES ($1, $2, $3, 1) ON CONFLICT (function) DO NOTHING",
                &[&function, &state, &now_ms],
            )
        } else {
            tx.execute(
                "UPDATE rollouts SET state = $2, updated_at = $3, revision = revision + 1
                 WHERE function = $1 AND revision = $4",
                &[&function, &state, &now_ms, &revision],
            )
        }
        .map_err(database)?;
        if swapped != 1 {
            return Err(StoreError::rollout_changed(function));
        }
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
        Ok(revision + 1)
    })
}

/// Stored rollouts, of one function or all, by function.
pub(super) fn stored(
    tx: &mut Transaction<'_>,
    function: Option<&str>,
) -> Result<Vec<StoredRollout>, StoreError> {
    Ok(tx
        .query(
            "SELECT function, revision, state FROM rollouts
             WHERE $1::text IS NULL OR function = $1 ORDER BY function",
            &[&function],
        )
        .map_err(database)?
        .iter()
        .map(|row| StoredRollout {
            function: row.get(0),
            revision: row.get(1),
            state: row.get(2),
        })
        .collect())
}
