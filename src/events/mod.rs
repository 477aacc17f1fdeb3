//! Event triggers, end to end: buckets of objects ([`buckets`]), the outbox delivery loop
//! that POSTs each queued event to its function as a CloudEvent ([`delivery`]), and the
//! timer loop that queues cron ticks ([`timers`]). Triggers and the outbox themselves are
//! stored through the registry, so an acknowledged upload's events are durable.

pub mod buckets;
pub mod delivery;
pub mod timers;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::invocation::Invoker;
use crate::registry::Registry;
use crate::routing::Router;
use buckets::Buckets;

/// What the event loops share with the admin plane.
pub struct Events {
    pub registry: Arc<Registry>,
    pub router: Arc<Router>,
    pub invoker: Arc<Invoker>,
    pub buckets: Buckets,
    /// Wakes the delivery loop (new events queued).
    pub deliveries: Notify,
    /// Wakes the timer loop (triggers added or deleted, or a function deleted).
    pub timers_changed: Notify,
}

impl Events {
    pub fn new(
        registry: Arc<Registry>,
        router: Arc<Router>,
        invoker: Arc<Invoker>,
        buckets: Buckets,
    ) -> Self {
        Self {
            registry,
            router,
            invoker,
            buckets,
            deliveries: Notify::new(),
            timers_changed: Notify::new(),
        }
    }
}
