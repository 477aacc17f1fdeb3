//! Deletes stored request bodies no invocation needs any more: those of invocations that
//! are gone (their function was deleted, which takes its outbox rows) and those a crash left
//! behind between recording a success and deleting the body. Runs at start and every ten
//! minutes. Only bodies older than `orphan_age` are considered, since a body is written
//! before its record is committed: a younger one may belong to a request being accepted.

use std::sync::Arc;
use std::time::Duration;

use super::AsyncLane;
use crate::model::{EventStatus, now_ms};
use crate::shutdown::Stop;
use crate::store::StoreError;

const EVERY: Duration = Duration::from_secs(600);

pub async fn run(lane: Arc<AsyncLane>, mut stop: Stop) {
    loop {
        match sweep(&lane).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(
                bodies = deleted,
                "deleted stored request bodies no invocation needs any more"
            ),
            Err(e) => tracing::warn!(error = %e, "could not sweep stored request bodies"),
        }
        tokio::select! {
            () = stop.stopped() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// One pass; returns how many bodies it deleted.
pub async fn sweep(lane: &AsyncLane) -> anyhow::Result<usize> {
    let age = i64::try_from(lane.options.orphan_age.as_millis()).unwrap_or(i64::MAX);
    let buckets = &lane.events.buckets;
    let mut deleted = 0;
    for (location, id) in buckets
        .payloads_before(now_ms().saturating_sub(age))
        .await?
    {
        let needed = match lane.events.registry.event(&id).await {
            Ok(event) => event.status != EventStatus::Delivered,
            Err(StoreError::NotFound(_)) => false,
            Err(e) => return Err(e.into()),
        };
        if !needed {
            buckets.delete_payload(&location).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}
