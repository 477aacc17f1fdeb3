//! One version's warm instances: a stack of instantiated stores, each handed to exactly one
//! request, plus the counters the scaler samples (requests running, their peak, last use).
//!
//! The pool is tied to one generation of the version's deployment (code and config). When a
//! request arrives with a different one (`$LATEST` redeployed, config changed), the warm
//! instances are stale: they are dropped and the pool starts over for the new deployment.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::engine::{SharedInstances, WarmInstance};
use crate::routing::Deployment;

pub struct VersionPool {
    inner: Mutex<PoolInner>,
    /// Instances in `inner.instances`, readable without the lock (gauges, the scaler).
    warm: AtomicU32,
    /// Warm instances across every pool of the host, kept in step with `warm`.
    host_warm: Arc<AtomicU32>,
    /// Requests of this version running now, and the most at once since the last sample.
    active: AtomicU32,
    peak: AtomicU32,
    /// When the last request finished or started, in ms on the scaler's clock.
    last_used_ms: AtomicU64,
    /// Instances the scaler wants warm, and the provisioned part of that.
    pub(super) target: AtomicU32,
    pub(super) floor: AtomicU32,
    /// Set while a refill task runs for this pool (one at a time).
    pub(super) refilling: AtomicBool,
    /// A temporary floor (warm-before-shift): kept until `boost_until_ms` on the scaler's clock.
    pub(super) boost: AtomicU32,
    pub(super) boost_until_ms: AtomicU64,
    /// After a failed instantiation, refills wait until then (scaler clock, ms) rather than
    /// retrying on every request.
    pub(super) refill_paused_until_ms: AtomicU64,
}

struct PoolInner {
    deployment: Arc<Deployment>,
    /// Bumped whenever the instances are discarded; a refill that started before checks it so
    /// it never adds an instance of an old deployment.
    generation: u64,
    instances: Vec<WarmInstance>,
    /// The deployment's reusable instances, when its config opts in (WASI 0.3 only).
    shared: Option<Arc<SharedInstances>>,
}

/// Whether two deployments run the same code with the same config, so instances of one
/// serve the other.
fn same_code(a: &Deployment, b: &Deployment) -> bool {
    a.digest == b.digest && a.config == b.config
}

impl VersionPool {
    pub fn new(deployment: Arc<Deployment>, now_ms: u64, host_warm: Arc<AtomicU32>) -> Self {
        Self {
            inner: Mutex::new(PoolInner {
                deployment,
                generation: 0,
                instances: Vec::new(),
                shared: None,
            }),
            warm: AtomicU32::new(0),
            host_warm,
            active: AtomicU32::new(0),
            peak: AtomicU32::new(0),
            last_used_ms: AtomicU64::new(now_ms),
            target: AtomicU32::new(0),
            floor: AtomicU32::new(0),
            refilling: AtomicBool::new(false),
            boost: AtomicU32::new(0),
            boost_until_ms: AtomicU64::new(0),
            refill_paused_until_ms: AtomicU64::new(0),
        }
    }

    /// Takes a warm instance for a request of `deployment`, if one is ready, and counts the
    /// request as running. Stale instances are returned for the caller to drop outside the
    /// lock (dropping a store costs microseconds).
    pub fn take(
        &self,
        deployment: &Arc<Deployment>,
        now_ms: u64,
    ) -> (Option<WarmInstance>, Vec<WarmInstance>) {
        let running = self.active.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(running, Ordering::AcqRel);
        self.last_used_ms.store(now_ms, Ordering::Relaxed);
        let mut inner = self.lock();
        let stale = inner.adopt(deployment);
        let instance = inner.instances.pop();
        self.count(&inner);
        (instance, stale)
    }

    /// The reusable instances of `deployment`, made by `make` the first time (or after a
    /// new deployment), with the warm instances that became stale.
    pub fn shared(
        &self,
        deployment: &Arc<Deployment>,
        make: impl FnOnce() -> Option<Arc<SharedInstances>>,
    ) -> (Option<Arc<SharedInstances>>, Vec<WarmInstance>) {
        let mut inner = self.lock();
        let stale = inner.adopt(deployment);
        if inner.shared.is_none() {
            inner.shared = make();
        }
        self.count(&inner);
        (inner.shared.clone(), stale)
    }

    /// Marks the pool as used now without a request (a boost).
    pub fn touch(&self, now_ms: u64) {
        self.last_used_ms.store(now_ms, Ordering::Relaxed);
    }

    /// A request of this version finished.
    pub fn release(&self, now_ms: u64) {
        self.active.fetch_sub(1, Ordering::AcqRel);
        self.last_used_ms.store(now_ms, Ordering::Relaxed);
    }

    /// The deployment to instantiate and its generation, for a refill.
    pub fn current(&self) -> (Arc<Deployment>, u64) {
        let inner = self.lock();
        (inner.deployment.clone(), inner.generation)
    }

    /// Switches to `deployment` if it differs, returning the instances that became stale.
    pub fn sync(&self, deployment: &Arc<Deployment>) -> Vec<WarmInstance> {
        let mut inner = self.lock();
        let stale = inner.adopt(deployment);
        self.count(&inner);
        stale
    }

    /// Adds a freshly made instance unless the pool moved on to another generation or is
    /// already at its target; otherwise hands it back to be dropped.
    pub fn put(&self, instance: WarmInstance, generation: u64) -> Result<(), WarmInstance> {
        let mut inner = self.lock();
        if inner.generation != generation
            || inner.instances.len() >= self.target.load(Ordering::Acquire) as usize
        {
            return Err(instance);
        }
        inner.instances.push(instance);
        self.count(&inner);
        Ok(())
    }

    /// Removes instances beyond `keep`, oldest first, for the caller to drop.
    pub fn trim(&self, keep: u32) -> Vec<WarmInstance> {
        let mut inner = self.lock();
        let excess = inner.instances.len().saturating_sub(keep as usize);
        let removed: Vec<_> = inner.instances.drain(..excess).collect();
        self.count(&inner);
        removed
    }

    /// The boost in force at `now_ms`, if any.
    pub fn boost_at(&self, now_ms: u64) -> u32 {
        if now_ms < self.boost_until_ms.load(Ordering::Acquire) {
            self.boost.load(Ordering::Acquire)
        } else {
            0
        }
    }

    pub fn warm(&self) -> u32 {
        self.warm.load(Ordering::Acquire)
    }

    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    /// The peak concurrency since the last call, restarting the count from what runs now.
    pub fn sample_peak(&self) -> u32 {
        self.peak
            .swap(self.active.load(Ordering::Acquire), Ordering::AcqRel)
    }

    pub fn last_used_ms(&self) -> u64 {
        self.last_used_ms.load(Ordering::Relaxed)
    }

    /// Publishes the instance count, keeping the host-wide total in step.
    fn count(&self, inner: &PoolInner) {
        let now = inner.instances.len() as u32;
        let before = self.warm.swap(now, Ordering::AcqRel);
        if now > before {
            self.host_warm.fetch_add(now - before, Ordering::AcqRel);
        } else {
            self.host_warm.fetch_sub(before - now, Ordering::AcqRel);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for VersionPool {
    fn drop(&mut self) {
        self.host_warm
            .fetch_sub(*self.warm.get_mut(), Ordering::AcqRel);
    }
}

impl PoolInner {
    fn adopt(&mut self, deployment: &Arc<Deployment>) -> Vec<WarmInstance> {
        if Arc::ptr_eq(&self.deployment, deployment) {
            return Vec::new();
        }
        let same = same_code(&self.deployment, deployment);
        // Keep the newest snapshot's Arc so the next request takes the pointer fast path.
        self.deployment = deployment.clone();
        if same {
            return Vec::new();
        }
        self.generation += 1;
        // The old deployment's shared instances finish what they hold and go; the new one
        // starts its own, so no state crosses versions.
        self.shared = None;
        std::mem::take(&mut self.instances)
    }
}
