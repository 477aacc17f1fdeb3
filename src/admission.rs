//! Admission control: at most `max_concurrency` requests of a function run at once; more wait
//! in a bounded queue for a short time, then are turned away (503 + `Retry-After`), so memory
//! never grows without bound under a burst and one function cannot take every instance slot.
//!
//! A host-wide gate sits behind the function gates: requests running at once across all
//! functions never exceed the instance slots left after warm pools, so a full pooling
//! allocator means a short wait and then 503, never a failed instantiation.
//!
//! Between them, a namespace with a `concurrency` quota has a gate of its own: its functions
//! together run at most that many requests (429 past it, naming the quota).
//!
//! Asynchronous invocations pass through a lane of their own: a gate per function (its
//! async `concurrency`, apart from `max_concurrency`) and one for the lane host-wide, in
//! front of the same namespace and host gates, so queued jobs never take the slots of a
//! function's HTTP requests, and together never more than the lane's limit of the host's.
//!
//! Gates live outside the routing snapshot so counts survive config changes; the limit is
//! read from the request's config each time, so a change applies to the next request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::Notify;

/// Why a request was not admitted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejected {
    #[error("{scope} is running {in_flight} requests and its queue is full; retry shortly")]
    QueueFull { scope: Scope, in_flight: u32 },
    #[error("no slot of {scope} became free within {waited:?}; retry shortly")]
    Timeout { scope: Scope, waited: Duration },
}

impl Rejected {
    /// Which limit turned the request away.
    pub fn scope(&self) -> Scope {
        match self {
            Self::QueueFull { scope, .. } | Self::Timeout { scope, .. } => *scope,
        }
    }
}

/// Which limit turned a request away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The function's `max_concurrency`.
    Function,
    /// The `concurrency` quota of the function's namespace.
    Namespace,
    /// The host's instance slots.
    Host,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Function => "the function",
            Self::Namespace => "the namespace's concurrency quota",
            Self::Host => "the host",
        })
    }
}

#[derive(Default)]
struct Gate {
    in_flight: AtomicU32,
    waiting: AtomicU32,
    freed: Notify,
}

/// Per-function gates, and one host-wide gate in front of the instance pool.
pub struct Admission {
    gates: DashMap<Arc<str>, Arc<Gate>>,
    /// Namespaces with a `concurrency` quota: their gate and limit. Empty (one load, no
    /// lookup per request) when no namespace has one.
    namespaces: arc_swap::ArcSwap<HashMap<String, (Arc<Gate>, u32)>>,
    /// Requests running across all functions, at most `host_limit`: the instance slots
    /// not set aside for warm pools. Past it requests queue instead of failing to
    /// instantiate.
    host: Arc<Gate>,
    host_limit: u32,
    queue_timeout: Duration,
    /// The asynchronous lane's per-function gates, and its host-wide gate and limit.
    lane_gates: DashMap<Arc<str>, Arc<Gate>>,
    lane: Arc<Gate>,
    lane_limit: u32,
}

/// Holds one slot of a function and one of the host; dropping it frees both and wakes one
/// waiter of each.
pub struct Permit {
    _function: Slot,
    _namespace: Option<Slot>,
    _host: Slot,
    /// The asynchronous lane's host-wide slot (lane invocations only).
    _lane: Option<Slot>,
    /// Whether this request had to queue for its slot.
    pub waited: bool,
}

struct Slot(Arc<Gate>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_one();
    }
}

impl Admission {
    /// `host_limit` bounds requests running at once across every function; `lane_limit`
    /// the asynchronous invocations among them.
    pub fn new(queue_timeout: Duration, host_limit: u32, lane_limit: u32) -> Self {
        Self {
            gates: DashMap::new(),
            namespaces: Default::default(),
            host: Arc::default(),
            host_limit,
            queue_timeout,
            lane_gates: DashMap::new(),
            lane: Arc::default(),
            lane_limit,
        }
    }

    /// Takes a slot for `function` and one of the host, waiting up to the queue timeout in
    /// all behind at most `max_concurrency` other waiters of the function (and `host_limit`
    /// of the host).
    pub async fn admit(
        &self,
        function: &Arc<str>,
        max_concurrency: u32,
    ) -> Result<Permit, Rejected> {
        let gate = match self.gates.get(function) {
            Some(gate) => gate.clone(),
            None => self.gates.entry(function.clone()).or_default().clone(),
        };
        let deadline = tokio::time::Instant::now() + self.queue_timeout;
        let (function_slot, waited_function) = enter(
            gate,
            max_concurrency,
            deadline,
            self.queue_timeout,
            Scope::Function,
        )
        .await?;
        let (namespace_slot, waited_namespace) = match self.namespace_gate(function) {
            Some((gate, limit)) => {
                let (slot, waited) =
                    enter(gate, limit, deadline, self.queue_timeout, Scope::Namespace).await?;
                (Some(slot), waited)
            }
            None => (None, false),
        };
        let (host_slot, waited_host) = enter(
            self.host.clone(),
            self.host_limit,
            deadline,
            self.queue_timeout,
            Scope::Host,
        )
        .await?;
        Ok(Permit {
            _function: function_slot,
            _namespace: namespace_slot,
            _host: host_slot,
            _lane: None,
            waited: waited_function || waited_namespace || waited_host,
        })
    }

    /// Takes a slot of `function` and of the host only if both are free now: for work that
    /// must never queue ahead of (or behind) real requests, such as shadow traffic.
    pub fn try_admit(&self, function: &Arc<str>, max_concurrency: u32) -> Option<Permit> {
        self.try_admit_through(&self.gates, None, function, max_concurrency)
    }

    /// Takes a slot of the asynchronous lane for `function` (at most `concurrency` of its
    /// invocations) and of the lane host-wide, then of its namespace and the host, only if
    /// all are free now: the lane waits in the outbox, never in a queue here.
    pub fn try_admit_async(&self, function: &Arc<str>, concurrency: u32) -> Option<Permit> {
        if !try_take(&self.lane, self.lane_limit) {
            return None;
        }
        let lane = Slot(self.lane.clone());
        self.try_admit_through(&self.lane_gates, Some(lane), function, concurrency)
    }

    fn try_admit_through(
        &self,
        gates: &DashMap<Arc<str>, Arc<Gate>>,
        lane: Option<Slot>,
        function: &Arc<str>,
        max_concurrency: u32,
    ) -> Option<Permit> {
        let gate = match gates.get(function) {
            Some(gate) => gate.clone(),
            None => gates.entry(function.clone()).or_default().clone(),
        };
        if !try_take(&gate, max_concurrency) {
            return None;
        }
        let function_slot = Slot(gate);
        let namespace_slot = match self.namespace_gate(function) {
            Some((gate, limit)) => {
                if !try_take(&gate, limit) {
                    return None;
                }
                Some(Slot(gate))
            }
            None => None,
        };
        if !try_take(&self.host, self.host_limit) {
            return None;
        }
        Some(Permit {
            _function: function_slot,
            _namespace: namespace_slot,
            _host: Slot(self.host.clone()),
            _lane: lane,
            waited: false,
        })
    }

    /// The gate of `function`'s namespace, if that namespace has a concurrency quota.
    fn namespace_gate(&self, function: &str) -> Option<(Arc<Gate>, u32)> {
        let namespaces = self.namespaces.load();
        if namespaces.is_empty() {
            return None;
        }
        namespaces
            .get(crate::model::namespace_of(function))
            .map(|(gate, limit)| (gate.clone(), *limit))
    }

    /// Sets the namespaces' concurrency quotas (`None`: no limit). A gate keeps its count
    /// across changes, so requests running under an old limit are still counted.
    pub fn set_namespace_limits(&self, limits: &[(String, Option<u32>)]) {
        let old = self.namespaces.load();
        let next = limits
            .iter()
            .filter_map(|(name, limit)| {
                let gate = old
                    .get(name)
                    .map(|(gate, _)| gate.clone())
                    .unwrap_or_default();
                limit.map(|limit| (name.clone(), (gate, limit)))
            })
            .collect();
        self.namespaces.store(Arc::new(next));
    }

    /// Drops a deleted function's gates if nothing holds or awaits them.
    pub fn forget(&self, function: &str) {
        for gates in [&self.gates, &self.lane_gates] {
            gates.remove_if(function, |_, gate| {
                gate.in_flight.load(Ordering::Acquire) == 0
                    && gate.waiting.load(Ordering::Acquire) == 0
            });
        }
    }

    /// Asynchronous invocations running now: host-wide, and the functions with any, with
    /// their counts.
    pub fn lane_in_flight(&self) -> (u32, Vec<(Arc<str>, u32)>) {
        let functions = self
            .lane_gates
            .iter()
            .map(|g| (g.key().clone(), g.in_flight.load(Ordering::Acquire)))
            .filter(|(_, n)| *n > 0)
            .collect();
        (self.lane.in_flight.load(Ordering::Acquire), functions)
    }

    /// The asynchronous lane's host-wide limit.
    pub fn lane_limit(&self) -> u32 {
        self.lane_limit
    }

    /// Requests running now across every function.
    pub fn host_in_flight(&self) -> u32 {
        self.host.in_flight.load(Ordering::Acquire)
    }

    /// Requests of `function` running now.
    pub fn in_flight(&self, function: &str) -> u32 {
        self.gates
            .get(function)
            .map_or(0, |g| g.in_flight.load(Ordering::Acquire))
    }
}

/// Takes a slot of `gate` at once if one is free, else waits for one until `deadline` behind
/// at most `max` other waiters. Returns whether it waited.
async fn enter(
    gate: Arc<Gate>,
    max: u32,
    deadline: tokio::time::Instant,
    queue_timeout: Duration,
    scope: Scope,
) -> Result<(Slot, bool), Rejected> {
    if try_take(&gate, max) {
        return Ok((Slot(gate), false));
    }
    // Counted as waiting until this guard drops: on success, on timeout, and when the
    // client hangs up and this future is dropped mid-wait (else the queue fills for good).
    let _waiting = Waiting::enter(&gate);
    if gate.waiting.load(Ordering::Acquire) > max {
        return Err(Rejected::QueueFull {
            scope,
            in_flight: gate.in_flight.load(Ordering::Acquire),
        });
    }
    let waited = tokio::time::timeout_at(deadline, async {
        loop {
            let freed = gate.freed.notified();
            if try_take(&gate, max) {
                return;
            }
            freed.await;
        }
    })
    .await;
    match waited {
        Ok(()) => Ok((Slot(gate), true)),
        Err(_) => Err(Rejected::Timeout {
            scope,
            waited: queue_timeout,
        }),
    }
}

/// One waiter in a gate's queue, for as long as it lives.
struct Waiting(Arc<Gate>);

impl Waiting {
    fn enter(gate: &Arc<Gate>) -> Self {
        gate.waiting.fetch_add(1, Ordering::AcqRel);
        Self(gate.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

fn try_take(gate: &Gate, max: u32) -> bool {
    gate.in_flight
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_async_lane_has_its_own_gates_in_front_of_the_hosts() {
        // 3 host slots, 2 for the lane.
        let admission = Admission::new(Duration::from_millis(10), 3, 2);
        let f: Arc<str> = Arc::from("f");
        let g: Arc<str> = Arc::from("g");
        let job = admission.try_admit_async(&f, 1).unwrap();
        // The function's lane limit, apart from its HTTP slots.
        assert!(admission.try_admit_async(&f, 1).is_none());
        assert_eq!(admission.in_flight("f"), 0);
        let http = admission.try_admit(&f, 1).unwrap();
        // The lane's host-wide limit: the second job of another function fits, a third not.
        let other = admission.try_admit_async(&g, 5).unwrap();
        assert!(admission.try_admit_async(&g, 5).is_none());
        assert_eq!(admission.lane_in_flight().0, 2);
        // Lane jobs hold host slots too: the host (3) is full now.
        assert!(admission.try_admit(&g, 5).is_none());
        drop((job, other, http));
        assert_eq!(admission.lane_in_flight(), (0, Vec::new()));
        assert_eq!(admission.host_in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn admits_up_to_the_limit_then_queues_then_rejects() {
        let admission = Admission::new(Duration::from_millis(500), 100, 4);
        let f: Arc<str> = Arc::from("f");
        let a = admission.admit(&f, 2).await.unwrap();
        let _b = admission.admit(&f, 2).await.unwrap();
        assert_eq!(admission.in_flight("f"), 2);

        // A third waits and gets the slot the first frees.
        let admission = Arc::new(admission);
        let handle = {
            let (admission, f) = (admission.clone(), f.clone());
            tokio::spawn(async move { admission.admit(&f, 2).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(a);
        let _third = handle
            .await
            .unwrap()
            .expect("the waiter got the freed slot");
        // Full again: waiters time out after the queue timeout.
        let started = tokio::time::Instant::now();
        assert_eq!(
            admission.admit(&f, 2).await.err(),
            Some(Rejected::Timeout {
                scope: Scope::Function,
                waited: Duration::from_millis(500)
            })
        );
        assert!(started.elapsed() >= Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn the_host_gate_bounds_all_functions_together() {
        let admission = Admission::new(Duration::from_millis(200), 2, 4);
        let (f, g): (Arc<str>, Arc<str>) = (Arc::from("f"), Arc::from("g"));
        let _a = admission.admit(&f, 10).await.unwrap();
        let b = admission.admit(&g, 10).await.unwrap();
        assert_eq!(
            admission.admit(&g, 10).await.err(),
            Some(Rejected::Timeout {
                scope: Scope::Host,
                waited: Duration::from_millis(200)
            })
        );
        // The refused request gave its function slot back.
        assert_eq!(admission.in_flight("g"), 1);
        drop(b);
        assert!(admission.admit(&g, 10).await.is_ok());
    }

    #[tokio::test]
    async fn idle_gates_are_forgotten_busy_ones_kept() {
        let admission = Admission::new(Duration::from_secs(1), 100, 4);
        let f: Arc<str> = Arc::from("f");
        let held = admission.admit(&f, 1).await.unwrap();
        admission.forget("f");
        assert_eq!(admission.in_flight("f"), 1, "a busy gate must survive");
        drop(held);
        admission.forget("f");
        assert!(admission.gates.is_empty());
    }

    /// Clients that hang up while queued leave the queue: later requests still queue (and
    /// get the slot) instead of being refused as if the queue were full.
    #[tokio::test(start_paused = true)]
    async fn cancelled_waiters_leave_the_queue() {
        let admission = Arc::new(Admission::new(Duration::from_secs(10), 100, 4));
        let f: Arc<str> = Arc::from("f");
        let held = admission.admit(&f, 1).await.unwrap();
        for _ in 0..3 {
            let queued = {
                let (admission, f) = (admission.clone(), f.clone());
                tokio::spawn(async move { admission.admit(&f, 1).await.map(|_| ()) })
            };
            tokio::time::sleep(Duration::from_millis(10)).await;
            queued.abort();
            let _ = queued.await;
        }
        assert_eq!(
            admission
                .gates
                .get("f")
                .unwrap()
                .waiting
                .load(Ordering::Acquire),
            0
        );
        let next = {
            let (admission, f) = (admission.clone(), f.clone());
            tokio::spawn(async move { admission.admit(&f, 1).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        next.await.unwrap().expect("queued, then admitted");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_rejects_at_once() {
        let admission = Arc::new(Admission::new(Duration::from_secs(10), 100, 4));
        let f: Arc<str> = Arc::from("f");
        let _held = admission.admit(&f, 1).await.unwrap();
        let queued = {
            let (admission, f) = (admission.clone(), f.clone());
            tokio::spawn(async move { admission.admit(&f, 1).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(matches!(
            admission.admit(&f, 1).await,
            Err(Rejected::QueueFull {
                scope: Scope::Function,
                in_flight: 1
            })
        ));
        queued.abort();
    }
}
