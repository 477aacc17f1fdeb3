//! Where a step's health comes from. Alone, a node judges on its own health windows. In a
//! fleet every node serves a share of the traffic, so every node publishes its per-second
//! samples of the versions under rollout to the registry, and the driver judges the sum:
//! the whole fleet's traffic, which also survives the driver's death, so a new driver
//! judges the same step on the same requests instead of starting it over.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::plan::{self, Observed, RolloutRecord};
use crate::metering::Metering;
use crate::model::{VersionHealth, VersionLabel, now_ms, summarize};
use crate::registry::Registry;
use crate::shutdown::Stop;
use crate::store::StoreError;

/// How often a fleet node publishes its samples.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// How far behind the clock the fleet's samples are complete: a second is published within
/// [`PUBLISH_EVERY`] of its end, plus the write's own time. Fleet judgments only count
/// seconds older than this, so no node's share of a second is missing when it is judged.
pub const FLEET_LAG_MS: i64 = 2_500;
/// Samples older than the longest window are deleted (with a minute's margin).
const KEEP_SECONDS: i64 = (plan::MAX_INTERVAL_MS / 1000) as i64 + 60;

/// A step's health as far as it is known: how long it covers, and each version's figures.
pub struct StepWindow {
    /// Milliseconds of the step the figures cover.
    pub elapsed_ms: i64,
    pub candidate: Observed,
    pub stable: Observed,
}

/// Reads step health from this node's windows, or from the fleet's published samples.
pub struct HealthSource {
    registry: Arc<Registry>,
    metering: Arc<Metering>,
}

impl HealthSource {
    pub fn new(registry: Arc<Registry>, metering: Arc<Metering>) -> Self {
        Self { registry, metering }
    }

    fn fleet(&self) -> bool {
        self.registry.is_shared()
    }

    /// The health of `record`'s current step from its start until now (less the fleet's
    /// publishing lag), over at most the longest interval.
    pub async fn step(&self, record: &RolloutRecord, now: i64) -> Result<StepWindow, StoreError> {
        let (end_ms, to) = if self.fleet() {
            let to = (now - FLEET_LAG_MS).div_euclid(1000);
            (to * 1000, to)
        } else {
            // The second under way counts: this node's windows are always current.
            (now, now.div_euclid(1000) + 1)
        };
        let longest = (plan::MAX_INTERVAL_MS / 1000) as i64;
        let from = record.step_started_ms.div_euclid(1000).max(to - longest);
        let samples = if self.fleet() {
            self.registry.health(&record.function, from, to).await?
        } else {
            self.metering.health_samples(&record.function, from, to)
        };
        let health = summarize(&samples, (to - from).max(0) as u64);
        let of = |label: VersionLabel| {
            health
                .iter()
                .find(|h| h.version == label)
                .map(observed)
                .unwrap_or_default()
        };
        Ok(StepWindow {
            elapsed_ms: end_ms - record.step_started_ms,
            candidate: of(record.spec.candidate),
            stable: of(record.spec.stable),
        })
    }

    /// Publishes this node's samples of the running rollouts' versions every
    /// [`PUBLISH_EVERY`] until `stop` (fleet nodes only). `running` lists what to publish:
    /// (function, candidate, stable, step start in ms).
    pub async fn publish<F, Fut>(&self, node: String, running: F, mut stop: Stop)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Vec<(String, [VersionLabel; 2], i64)>>,
    {
        let mut ticker = tokio::time::interval(PUBLISH_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Per function, the first second not yet published.
        let mut published: HashMap<String, i64> = HashMap::new();
        let mut failing = false;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.stopped() => return,
            }
            let now = now_ms().div_euclid(1000);
            let mut batch = Vec::new();
            let mut through = HashMap::new();
            for (function, versions, started_ms) in running().await {
                // Republish the last finished second too: a request finishing right at
                // the boundary may have landed in it after it was read.
                let from = published
                    .get(&function)
                    .map_or(started_ms.div_euclid(1000), |next| next - 1)
                    .max(now - KEEP_SECONDS);
                batch.extend(
                    self.metering
                        .health_samples(&function, from, now)
                        .into_iter()
                        .filter(|s| versions.contains(&s.version)),
                );
                through.insert(function, now);
            }
            match self.registry.add_health(node.clone(), batch).await {
                Ok(()) => {
                    failing = false;
                    published = through;
                }
                Err(e) if !failing => {
                    failing = true;
                    if e.outage().is_none() {
                        tracing::warn!(error = %e, "could not publish health samples; retrying");
                    }
                }
                Err(_) => {}
            }
        }
    }

    /// Deletes the fleet's samples too old for any window (the driver's job, once a minute).
    pub async fn prune(&self) {
        let before = now_ms().div_euclid(1000) - KEEP_SECONDS;
        if let Err(e) = self.registry.prune_health(before).await
            && e.outage().is_none()
        {
            tracing::warn!(error = %e, "could not prune old health samples");
        }
    }
}

fn observed(health: &VersionHealth) -> Observed {
    Observed {
        requests: health.requests,
        errors: health.errors,
        error_rate: health.error_rate,
        p99_ms: health.p99_ms,
    }
}
