//! Event triggers, end to end: buckets of objects ([`buckets`]), the outbox delivery loop
//! that POSTs each queued event to its function as a CloudEvent ([`delivery`]), and the
//! timer loop that queues cron ticks ([`timers`]). Triggers and the outbox themselves are
//! stored through the registry, so an acknowledged upload's events are durable.

pub mod buckets;
pub mod delivery;
pub mod timers;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::invocation::Invoker;
use crate::registry::Registry;
use crate::routing::Router;
use buckets::Buckets;

/// The response header a function names its output object's key with (trigger outputs and
/// asynchronous invocations' bucket destinations).
pub const OUTPUT_KEY: &str = "fnhost-output-key";

/// What the event loops share with the admin plane.
impl Events {
    /// What `bucket`'s namespace's `bucket_bytes` quota leaves for an object at `key`
    /// (replacing what is there); `None` when the namespace has no such quota.
    pub async fn room(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<buckets::Room>, buckets::ObjectError> {
        let namespace = crate::model::namespace_of(bucket);
        let Some(limit) = self
            .registry
            .namespace(namespace)
            .and_then(|ns| ns.quotas.bucket_bytes)
        else {
            return Ok(None);
        };
        let total = self.buckets.namespace_bytes(namespace).await?;
        let replaced = self.buckets.size_of(bucket, key).await?;
        Ok(Some(buckets::Room {
            namespace: namespace.to_string(),
            limit,
            used: total.saturating_sub(replaced),
        }))
    }
}

impl Events {
    /// Writes a function's output object to `bucket`/`key` (within its namespace's quota)
    /// and queues the events it fires, `hops` triggers down the chain. The error says which
    /// step failed; the caller retries the whole attempt.
    pub async fn write_output(
        &self,
        bucket: &str,
        key: &str,
        body: bytes::Bytes,
        content_type: Option<String>,
        hops: u32,
    ) -> Result<(), String> {
        let size = body.len() as u64;
        let written = match self.room(bucket, key).await {
            Ok(room) => {
                self.buckets
                    .put_bytes(bucket, key, body, room.as_ref())
                    .await
            }
            Err(e) => Err(e),
        };
        written.map_err(|e| format!("writing the output to bucket {bucket}: {e}"))?;
        let queued = self
            .registry
            .enqueue_object(
                bucket.to_string(),
                key.to_string(),
                content_type,
                size,
                hops,
            )
            .await
            .map_err(|e| format!("queueing events for the output: {e}"))?;
        if !queued.is_empty() {
            self.deliveries.notify_one();
        }
        Ok(())
    }
}

pub struct Events {
    pub registry: Arc<Registry>,
    pub router: Arc<Router>,
    pub invoker: Arc<Invoker>,
    pub buckets: Buckets,
    /// Wakes the delivery loop (new events queued).
    pub deliveries: Notify,
    /// Wakes the timer loop (triggers added or deleted, or a function deleted).
    pub timers_changed: Notify,
    /// How long a claimed event stays this node's: renewed while it is delivered, so only
    /// a node that died (or lost the database for this long) gives its events up to others.
    pub lease: Duration,
    /// Events this node claimed and has not settled: the ones whose leases it renews.
    pub(crate) in_hand: Mutex<HashSet<String>>,
}

impl Events {
    pub fn new(
        registry: Arc<Registry>,
        router: Arc<Router>,
        invoker: Arc<Invoker>,
        buckets: Buckets,
        lease: Duration,
    ) -> Self {
        Self {
            registry,
            router,
            invoker,
            buckets,
            deliveries: Notify::new(),
            timers_changed: Notify::new(),
            lease,
            in_hand: Mutex::new(HashSet::new()),
        }
    }

    pub(crate) fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX / 2)
    }
}
