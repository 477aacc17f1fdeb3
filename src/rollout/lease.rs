//! One rollout driver per registry. Alone on SQLite the node always drives; in a fleet the
//! nodes compete for the `rollouts` lease in the registry, and the holder drives every
//! rollout until it stops renewing (a clean stop releases it at once; a dead node's lease
//! runs out after [`TTL`]). Being the holder is an optimisation, not the safety net: every
//! save is a compare-and-swap on the rollout's revision, so a driver that lost its lease
//! without knowing (paused, partitioned) cannot apply a stale decision.
//!
//! A lease row rather than a PostgreSQL advisory lock: a session-level advisory lock belongs
//! to one connection, which would have to be held out of the store's pool for as long as the
//! node drives, and its holder is not visible to other nodes (`fnhost nodes` shows the
//! driver from the row); the row also works the same on SQLite.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::registry::Registry;

/// The lease's name in the registry.
pub const NAME: &str = "rollouts";
/// How long a granted lease lasts: the longest a dead driver's rollouts wait.
pub const TTL: Duration = Duration::from_secs(5);
/// How often the holder renews; well inside [`TTL`] so one slow write does not lose it.
const RENEW_EVERY: Duration = Duration::from_secs(1);

pub struct Lease {
    registry: Arc<Registry>,
    holder: String,
    /// Until when this node surely holds the lease (counted from before the request, so
    /// never later than the registry's own expiry), and when it last asked.
    held_until: Option<Instant>,
    asked_at: Option<Instant>,
}

impl Lease {
    pub fn new(registry: Arc<Registry>, holder: String) -> Self {
        Self {
            registry,
            holder,
            held_until: None,
            asked_at: None,
        }
    }

    /// Whether this node drives now, taking or renewing the lease when due. The answer
    /// `(drives, newly)`: `newly` when it did not drive at the last call (reload state).
    /// Alone, the node always drives and has nothing to reload.
    pub async fn drive(&mut self) -> (bool, bool) {
        if !self.registry.is_shared() {
            return (true, false);
        }
        let was = self.holds();
        if self.asked_at.is_none_or(|at| at.elapsed() >= RENEW_EVERY) {
            let asked = Instant::now();
            self.asked_at = Some(asked);
            match self
                .registry
                .acquire_lease(NAME, self.holder.clone(), TTL)
                .await
            {
                Ok(true) => {
                    if !was {
                        tracing::info!(node = %self.holder, "this node now drives the fleet's rollouts");
                    }
                    self.held_until = Some(asked + TTL);
                }
                Ok(false) => self.held_until = None,
                Err(e) if e.outage().is_some() => {}
                Err(e) => tracing::warn!(error = %e, "could not renew the rollout lease"),
            }
        }
        let holds = self.holds();
        (holds, holds && !was)
    }

    fn holds(&self) -> bool {
        self.held_until.is_some_and(|until| Instant::now() < until)
    }

    /// Gives the lease up (a clean stop), so another node drives at once.
    pub async fn release(&mut self) {
        if self.registry.is_shared() && self.holds() {
            self.held_until = None;
            if let Err(e) = self.registry.release_lease(NAME, self.holder.clone()).await {
                tracing::warn!(error = %e, "could not release the rollout lease");
            }
        }
    }
}
