//! Warm capacity: per-version pools of pre-instantiated stores, provisioned concurrency, and
//! the autoscaler that sizes the pools and scales idle versions to zero.
//!
//! A request takes a warm instance if its version's pool has one (no instantiation on the
//! request path) and otherwise instantiates on the spot, a cold start. Pools are refilled by
//! background tasks, never by the request itself. Once per tick the scaler:
//!
//! - sets each version's warm target from its recent peak concurrency, between its
//!   provisioned floor and its function's maximum concurrency (see [`policy`]);
//! - creates pools for provisioned versions before any request arrives;
//! - drops the warm instances of versions idle past the idle timeout, then forgets their
//!   pools and unloads their compiled code after twice that, so idle functions cost next to
//!   nothing (the compiled artifact stays on disk and loads again in about a millisecond);
//! - meters provisioned instance time, which is billed whether or not it serves requests.

mod policy;
mod pool;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;

pub use policy::{provisioned_floors, warm_target};

use crate::engine::{Engine, LoadedComponent, SharedInstances, WarmInstance, shares_instances};
use crate::metering::Metering;
use crate::model::{NodeShare, PoolStatus, ScalerStats, VersionLabel};
use crate::routing::{Deployment, Router};
use crate::shutdown::Stop;
use policy::Demand;
use pool::VersionPool;

/// After a failed pre-instantiation, wait this long before trying that version again.
const REFILL_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct ScalingOptions {
    /// A version with no request for this long keeps only its provisioned instances; after
    /// twice this its compiled code is unloaded too.
    pub idle_timeout: Duration,
    /// Warm instances the whole host may hold; the rest of the instance pool is left for
    /// requests that run now.
    pub max_warm: u32,
    /// How often targets are recomputed.
    pub tick: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PoolKey {
    function: Arc<str>,
    label: VersionLabel,
}

pub struct Scaler {
    engine: Arc<Engine>,
    router: Arc<Router>,
    metering: Arc<Metering>,
    pools: DashMap<PoolKey, Arc<VersionPool>>,
    /// Recent peaks per pool; only the tick touches it.
    demand: Mutex<HashMap<PoolKey, Demand>>,
    host_warm: Arc<AtomicU32>,
    /// This node's part of every function's fleet-wide concurrency and provisioned totals.
    share: NodeShare,
    options: ScalingOptions,
    clock: Instant,
    prewarmed: AtomicU64,
    prewarm_failures: AtomicU64,
    discarded: AtomicU64,
    unloaded: AtomicU64,
}

/// A request's hold on its version's pool: counts it as running until dropped.
pub struct Lease {
    pool: Arc<VersionPool>,
    clock: Instant,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.release(self.clock.elapsed().as_millis() as u64);
    }
}

impl Scaler {
    pub fn new(
        engine: Arc<Engine>,
        router: Arc<Router>,
        metering: Arc<Metering>,
        options: ScalingOptions,
    ) -> Self {
        Self {
            engine,
            router,
            metering,
            pools: DashMap::new(),
            demand: Mutex::new(HashMap::new()),
            host_warm: Arc::new(AtomicU32::new(0)),
            share: NodeShare::default(),
            options,
            clock: Instant::now(),
            prewarmed: AtomicU64::new(0),
            prewarm_failures: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            unloaded: AtomicU64::new(0),
        }
    }

    /// This node's part of the fleet's capacity (set by the fleet heartbeat).
    pub fn share(&self) -> &NodeShare {
        &self.share
    }

    /// `deployment`'s concurrency limit on this node: its part of the fleet total.
    pub fn max_of(&self, deployment: &Deployment) -> u32 {
        self.share.concurrency(deployment.config.max_concurrency)
    }

    /// Takes a warm instance of `deployment` if one is ready (else the caller instantiates:
    /// a cold start) and leases the pool for the request's lifetime. Raises the pool's
    /// target at once when concurrency outgrows it, so a burst starts refilling now rather
    /// than at the next tick.
    pub fn take(self: &Arc<Self>, deployment: &Arc<Deployment>) -> (Option<WarmInstance>, Lease) {
        let now = self.now_ms();
        let pool = self.pool_for(deployment, now);
        let (instance, stale) = pool.take(deployment, now);
        self.discard(stale);
        let wanted = warm_target(
            pool.active(),
            false,
            pool.floor.load(Ordering::Acquire),
            self.max_of(deployment),
        );
        pool.target.fetch_max(wanted, Ordering::AcqRel);
        self.maybe_refill(&pool, now);
        let lease = Lease {
            pool,
            clock: self.clock,
        };
        (instance, lease)
    }

    /// The reusable instances of `deployment` running `component`, if its config opts in to
    /// instance reuse and the component is WASI 0.3; `None` means a fresh instance per
    /// request. Idle instances go after the idle timeout, as warm pools do.
    pub fn shared(
        self: &Arc<Self>,
        deployment: &Arc<Deployment>,
        component: &Arc<LoadedComponent>,
    ) -> Option<Arc<SharedInstances>> {
        if !shares_instances(component, &deployment.config) {
            return None;
        }
        let pool = self.pool_for(deployment, self.now_ms());
        let (shared, stale) = pool.shared(deployment, || {
            self.engine.shared_instances(
                component,
                &deployment.function,
                &deployment.config,
                self.options.idle_timeout,
            )
        });
        self.discard(stale);
        shared
    }

    /// Recomputes targets every tick until the task is dropped.
    pub async fn run(self: Arc<Self>, mut stop: Stop) {
        let mut ticker = tokio::time::interval(self.options.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.stopped() => return,
            }
            let elapsed = last.elapsed();
            last = Instant::now();
            self.tick(elapsed);
        }
    }

    /// One scaling pass; `elapsed` since the last one is what provisioned time is metered by.
    pub fn tick(self: &Arc<Self>, elapsed: Duration) {
        let now = self.now_ms();
        let idle_ms = self.options.idle_timeout.as_millis() as u64;
        let snapshot = self.router.snapshot();

        let mut floors: HashMap<PoolKey, (u32, Arc<Deployment>)> = HashMap::new();
        for routes in snapshot.functions() {
            for (label, count) in provisioned_floors(routes) {
                let count = self.share.provisioned(count);
                if count == 0 {
                    continue;
                }
                if let Some(deployment) = routes.deployment(label) {
                    let key = PoolKey {
                        function: deployment.function.clone(),
                        label,
                    };
                    floors.insert(key, (count, deployment.clone()));
                }
            }
        }
        for (key, (count, deployment)) in &floors {
            self.pool_for(deployment, now);
            self.metering.provisioned(
                &key.function,
                key.label,
                *count,
                deployment.config.memory_mb,
                elapsed,
            );
        }

        let mut demand = self.demand.lock().unwrap_or_else(|p| p.into_inner());
        let mut keep_code = HashSet::new();
        let mut forget = Vec::new();
        for entry in self.pools.iter() {
            let (key, pool) = (entry.key(), entry.value());
            let Some(deployment) = snapshot
                .function(&key.function)
                .and_then(|routes| routes.deployment(key.label))
            else {
                forget.push(key.clone());
                continue;
            };
            self.discard(pool.sync(deployment));
            let floor = floors.get(key).map_or(0, |(count, _)| *count);
            pool.floor.store(floor, Ordering::Release);
            let idle_for = match pool.active() {
                0 => now.saturating_sub(pool.last_used_ms()),
                _ => 0,
            };
            let idle = idle_for >= idle_ms;
            let window = demand.entry(key.clone()).or_default();
            window.push(pool.sample_peak());
            if idle {
                window.clear();
            }
            let boost = pool.boost_at(now);
            let target = warm_target(window.peak(), idle, floor, self.max_of(deployment))
                .max(boost.min(self.max_of(deployment)));
            pool.target.store(target, Ordering::Release);
            self.discard(pool.trim(target));
            let dormant = idle_for >= idle_ms.saturating_mul(2);
            if target > 0 || !dormant || pool.active() > 0 {
                keep_code.insert(deployment.digest);
            }
            if target == 0
                && dormant
                && pool.active() == 0
                && !pool.refilling.load(Ordering::Acquire)
            {
                forget.push(key.clone());
            } else {
                self.maybe_refill(pool, now);
            }
        }
        for key in forget {
            demand.remove(&key);
            if let Some((_, pool)) = self.pools.remove(&key) {
                self.discard(pool.trim(0));
            }
        }
        drop(demand);

        for (digest, loaded_at) in self.engine.loaded_components() {
            if !keep_code.contains(&digest)
                && loaded_at.elapsed() >= self.options.idle_timeout
                && self.engine.unload(&digest)
            {
                self.unloaded.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%digest, "unloaded idle compiled code");
            }
        }
    }

    /// The most requests of `function`'s `labels` that ran at once recently (the scaler's
    /// demand window, plus what runs now): what a share of traffic is a share of.
    pub fn recent_concurrency(&self, function: &str, labels: &[VersionLabel]) -> u32 {
        let demand = self.demand.lock().unwrap_or_else(|p| p.into_inner());
        labels
            .iter()
            .map(|label| {
                let key = PoolKey {
                    function: Arc::from(function),
                    label: *label,
                };
                let peak = demand.get(&key).map_or(0, Demand::peak);
                let active = self.pools.get(&key).map_or(0, |p| p.active());
                peak.max(active)
            })
            .sum()
    }

    /// Grows `deployment`'s pool to at least `warm` instances now and keeps that floor for
    /// `hold`, so a traffic shift to it finds instances ready (warm-before-shift).
    pub fn boost(self: &Arc<Self>, deployment: &Arc<Deployment>, warm: u32, hold: Duration) {
        let now = self.now_ms();
        let pool = self.pool_for(deployment, now);
        let warm = warm.min(self.max_of(deployment));
        pool.boost.store(warm, Ordering::Release);
        pool.boost_until_ms
            .store(now + hold.as_millis() as u64, Ordering::Release);
        pool.target.fetch_max(warm, Ordering::AcqRel);
        // A boost counts as use: the pool must not be forgotten as idle while it waits.
        pool.touch(now);
        self.maybe_refill(&pool, now);
    }

    /// Warm instances of one version now.
    pub fn warm_of(&self, function: &str, label: VersionLabel) -> u32 {
        let key = PoolKey {
            function: Arc::from(function),
            label,
        };
        self.pools.get(&key).map_or(0, |p| p.warm())
    }

    /// Every pool's state, sorted by function and version.
    pub fn status(&self) -> Vec<PoolStatus> {
        let now = self.now_ms();
        let mut pools: Vec<PoolStatus> = self
            .pools
            .iter()
            .map(|entry| {
                let (key, pool) = (entry.key(), entry.value());
                PoolStatus {
                    function: key.function.to_string(),
                    version: key.label,
                    warm: pool.warm(),
                    target: pool.target.load(Ordering::Acquire),
                    provisioned: pool.floor.load(Ordering::Acquire),
                    in_flight: pool.active(),
                    idle_ms: match pool.active() {
                        0 => now.saturating_sub(pool.last_used_ms()),
                        _ => 0,
                    },
                }
            })
            .collect();
        pools.sort_by(|a, b| (&a.function, a.version).cmp(&(&b.function, b.version)));
        pools
    }

    pub fn stats(&self) -> ScalerStats {
        ScalerStats {
            prewarmed: self.prewarmed.load(Ordering::Relaxed),
            prewarm_failures: self.prewarm_failures.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
            unloaded: self.unloaded.load(Ordering::Relaxed),
        }
    }

    pub fn options(&self) -> &ScalingOptions {
        &self.options
    }

    /// Warm instances across the host.
    pub fn warm_total(&self) -> u32 {
        self.host_warm.load(Ordering::Acquire)
    }

    /// Drops every pool of a deleted function.
    pub fn forget(&self, function: &str) {
        let keys: Vec<PoolKey> = self
            .pools
            .iter()
            .filter(|e| &*e.key().function == function)
            .map(|e| e.key().clone())
            .collect();
        for key in keys {
            if let Some((_, pool)) = self.pools.remove(&key) {
                self.discard(pool.trim(0));
            }
        }
    }

    fn pool_for(&self, deployment: &Arc<Deployment>, now: u64) -> Arc<VersionPool> {
        let key = PoolKey {
            function: deployment.function.clone(),
            label: deployment.label,
        };
        if let Some(pool) = self.pools.get(&key) {
            return pool.clone();
        }
        self.pools
            .entry(key)
            .or_insert_with(|| {
                Arc::new(VersionPool::new(
                    deployment.clone(),
                    now,
                    self.host_warm.clone(),
                ))
            })
            .clone()
    }

    fn maybe_refill(self: &Arc<Self>, pool: &Arc<VersionPool>, now: u64) {
        if pool.warm() >= pool.target.load(Ordering::Acquire)
            || self.warm_total() >= self.options.max_warm
            || now < pool.refill_paused_until_ms.load(Ordering::Relaxed)
            || pool.refilling.swap(true, Ordering::AcqRel)
        {
            return;
        }
        tokio::spawn(self.clone().refill(pool.clone()));
    }

    /// Instantiates into `pool` until it reaches its target, one instance at a time,
    /// yielding between them so requests interleave.
    async fn refill(self: Arc<Self>, pool: Arc<VersionPool>) {
        loop {
            if pool.warm() >= pool.target.load(Ordering::Acquire)
                || self.warm_total() >= self.options.max_warm
            {
                break;
            }
            let (deployment, generation) = pool.current();
            let digest = deployment.digest;
            let made = match self.engine.load(digest).await {
                // Its requests share instances that stay up on their own: nothing to keep
                // warm.
                Ok(component) if shares_instances(&component, &deployment.config) => break,
                Ok(component) => self
                    .engine
                    .instantiate(&component, &deployment.config)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match made {
                Ok(instance) => {
                    self.prewarmed.fetch_add(1, Ordering::Relaxed);
                    if let Err(unneeded) = pool.put(instance, generation) {
                        self.discard(vec![unneeded]);
                    }
                }
                Err(error) => {
                    self.prewarm_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        function = %deployment.function,
                        version = %deployment.label,
                        %error,
                        "pre-warming an instance failed; requests will instantiate on demand"
                    );
                    pool.refill_paused_until_ms.store(
                        self.now_ms() + REFILL_BACKOFF.as_millis() as u64,
                        Ordering::Relaxed,
                    );
                    break;
                }
            }
            tokio::task::yield_now().await;
        }
        pool.refilling.store(false, Ordering::Release);
    }

    fn discard(&self, instances: Vec<WarmInstance>) {
        if !instances.is_empty() {
            self.discarded
                .fetch_add(instances.len() as u64, Ordering::Relaxed);
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }
}
