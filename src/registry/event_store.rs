//! The registry's side of event triggers: triggers and the outbox, each call one commit.
//! (Delivery itself is `crate::events`.)

use super::Registry;
use crate::model::{
    EventRecord, EventStatus, Lane, NewObject, Settlement, TimerTick, Trigger, TriggerSource,
    now_ms,
};
use crate::store::StoreError;

impl Registry {
    /// Adds a trigger to `function`; refuses one that would make a loop of buckets.
    pub async fn add_trigger(
        &self,
        function: &str,
        target: Option<String>,
        source: TriggerSource,
    ) -> Result<Trigger, StoreError> {
        source.validate()?;
        let function = function.to_string();
        self.blocking(move |db| db.add_trigger(&function, target.as_deref(), &source, now_ms()))
            .await
    }

    /// The triggers of one function, or of all.
    pub async fn triggers(&self, function: Option<String>) -> Result<Vec<Trigger>, StoreError> {
        self.blocking(move |db| db.triggers(function.as_deref()))
            .await
    }

    pub async fn delete_trigger(&self, function: &str, id: i64) -> Result<(), StoreError> {
        let function = function.to_string();
        self.blocking(move |db| db.delete_trigger(&function, id))
            .await
    }

    /// Durably queues the events an object creation fires (before the upload is
    /// acknowledged).
    pub async fn enqueue_object(
        &self,
        bucket: String,
        key: String,
        content_type: Option<String>,
        size: u64,
        hops: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.blocking(move |db| {
            db.enqueue_object(
                &NewObject {
                    bucket: &bucket,
                    key: &key,
                    content_type: content_type.as_deref(),
                    size,
                    hops,
                },
                now_ms(),
            )
        })
        .await
    }

    /// Queues the tick of `trigger` scheduled at `tick_ms` (once per tick fleet-wide).
    pub async fn enqueue_timer(
        &self,
        trigger: Trigger,
        tick_ms: i64,
        allow_overlap: bool,
    ) -> Result<TimerTick, StoreError> {
        self.blocking(move |db| db.enqueue_timer(&trigger, tick_ms, allow_overlap, now_ms()))
            .await
    }

    /// Claims up to `limit` due events of `lane` for `lease_ms` (see
    /// [`Self::renew_event_leases`]), none of the functions in `skip`.
    pub async fn claim_due_events(
        &self,
        limit: u32,
        lease_ms: i64,
        lane: Lane,
        skip: Vec<String>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.blocking(move |db| {
            let now = now_ms();
            db.claim_due(now, now + lease_ms, limit, lane, &skip)
        })
        .await
    }

    /// Durably queues an asynchronous invocation (before it is acknowledged with 202).
    pub async fn enqueue_invocation(
        &self,
        event: EventRecord,
        max_queued: u32,
    ) -> Result<(), StoreError> {
        self.blocking(move |db| db.enqueue_invocation(&event, max_queued))
            .await
    }

    /// Keeps claimed events this node is still delivering from being claimed again.
    pub async fn renew_event_leases(
        &self,
        ids: Vec<String>,
        lease_ms: i64,
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.blocking(move |db| db.renew_leases(&ids, now_ms() + lease_ms))
            .await
    }

    pub async fn settle_event(&self, id: String, settled: Settlement) -> Result<(), StoreError> {
        self.blocking(move |db| db.settle_event(&id, &settled, now_ms()))
            .await
    }

    /// Deletes delivered events older than `retention`.
    pub async fn prune_delivered_events(
        &self,
        retention: std::time::Duration,
    ) -> Result<usize, StoreError> {
        let before = now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        self.blocking(move |db| db.prune_delivered_events(before))
            .await
    }

    pub async fn requeue_running_events(&self) -> Result<usize, StoreError> {
        self.blocking(|db| db.requeue_running(now_ms())).await
    }

    pub async fn events(
        &self,
        function: &str,
        lane: Lane,
        status: Option<EventStatus>,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let function = function.to_string();
        self.blocking(move |db| db.events(&function, lane, status, limit))
            .await
    }

    /// One event; `NotFound` if there is none.
    pub async fn event(&self, id: &str) -> Result<EventRecord, StoreError> {
        let owned = id.to_string();
        self.blocking(move |db| db.event(&owned))
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no event {id:?}")))
    }

    pub async fn retry_event(&self, id: &str) -> Result<EventRecord, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| db.retry_event(&id, now_ms())).await
    }
}
