//! Rollout state rows, saved in the same transaction as the traffic change they make, so a
//! crash never leaves a rollout's recorded step and the alias it controls disagreeing.

use rusqlite::{OptionalExtension, Transaction, params};

use super::audited;
use super::functions::{publish, store_alias, update_default_policy};
use crate::model::{TrafficChange, Why};
use crate::store::{StoreError, StoredRollout};

/// Stores `state` as the function's rollout if it is still at `revision`, and applies
/// `change` (if any), atomically; returns the new revision.
pub(super) fn save(
    tx: &Transaction<'_>,
    function: &str,
    revision: i64,
    state: &str,
    change: Option<&TrafficChange>,
    why: &Why,
    now_ms: i64,
) -> Result<i64, StoreError> {
    audited(tx, function, why, |tx| {
        // The compare-and-swap first: a lost race changes nothing, traffic included.
        let stored: i64 = tx
            .query_row(
                "SELECT revision FROM rollouts WHERE function = ?1",
                [function],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        if stored != revision {
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
        let updated = tx.execute(
            "INSERT INTO rollouts (function, state, updated_at, revision) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(function) DO UPDATE SET state = ?2, updated_at = ?3, revision = ?4",
            params![function, state, now_ms, revision + 1],
        );
        match updated {
            Ok(_) => Ok(revision + 1),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::UnknownFunction(function.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// Stored rollouts, of one function or all, by function.
pub(super) fn stored(
    tx: &Transaction<'_>,
    function: Option<&str>,
) -> Result<Vec<StoredRollout>, StoreError> {
    let rows = tx
        .prepare(
            "SELECT function, revision, state FROM rollouts
             WHERE ?1 IS NULL OR function = ?1 ORDER BY function",
        )?
        .query_map([function], |r| {
            Ok(StoredRollout {
                function: r.get(0)?,
                revision: r.get(1)?,
                state: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
