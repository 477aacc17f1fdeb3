//! Admission control: at most `max_concurrency` requests of a function run at once; more wait
//! in a bounded queue for a short time, then are turned away (503 + `Retry-After`), so memory
//! never grows without bound under a burst and one function cannot take every instance slot.
//!
//! Gates live outside the routing snapshot so counts survive config changes; the limit is
//! read from the request's config each time, so a change applies to the next request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::Notify;

/// Why a request was not admitted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejected {
    #[error("{in_flight} requests are running and the queue is full; retry shortly")]
    QueueFull { in_flight: u32 },
    #[error("no slot became free within {0:?}; retry shortly")]
    Timeout(Duration),
}

#[derive(Default)]
struct Gate {
    in_flight: AtomicU32,
    waiting: AtomicU32,
    freed: Notify,
}

/// Per-function gates.
pub struct Admission {
    gates: DashMap<Arc<str>, Arc<Gate>>,
    queue_timeout: Duration,
}

/// Holds one slot; dropping it frees the slot and wakes one waiter.
pub struct Permit {
    gate: Arc<Gate>,
    /// Whether this request had to queue for its slot.
    pub waited: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.gate.freed.notify_one();
    }
}

impl Admission {
    pub fn new(queue_timeout: Duration) -> Self {
        Self {
            gates: DashMap::new(),
            queue_timeout,
        }
    }

    /// Takes a slot for `function`, waiting up to the queue timeout behind at most
    /// `max_concurrency` other waiters.
    pub async fn admit(
        &self,
        function: &Arc<str>,
        max_concurrency: u32,
    ) -> Result<Permit, Rejected> {
        let gate = match self.gates.get(function) {
            Some(gate) => gate.clone(),
            None => self.gates.entry(function.clone()).or_default().clone(),
        };
        if try_take(&gate, max_concurrency) {
            return Ok(Permit {
                gate,
                waited: false,
            });
        }
        if gate.waiting.fetch_add(1, Ordering::AcqRel) >= max_concurrency {
            gate.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Rejected::QueueFull {
                in_flight: gate.in_flight.load(Ordering::Acquire),
            });
        }
        let waited = tokio::time::timeout(self.queue_timeout, async {
            loop {
                let freed = gate.freed.notified();
                if try_take(&gate, max_concurrency) {
                    return;
                }
                freed.await;
            }
        })
        .await;
        gate.waiting.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(()) => Ok(Permit { gate, waited: true }),
            Err(_) => Err(Rejected::Timeout(self.queue_timeout)),
        }
    }

    /// Drops a deleted function's gate if nothing holds or awaits it.
    pub fn forget(&self, function: &str) {
        self.gates.remove_if(function, |_, gate| {
            gate.in_flight.load(Ordering::Acquire) == 0 && gate.waiting.load(Ordering::Acquire) == 0
        });
    }

    /// Requests of `function` running now.
    pub fn in_flight(&self, function: &str) -> u32 {
        self.gates
            .get(function)
            .map_or(0, |g| g.in_flight.load(Ordering::Acquire))
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

    #[tokio::test(start_paused = true)]
    async fn admits_up_to_the_limit_then_queues_then_rejects() {
        let admission = Admission::new(Duration::from_millis(500));
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
            Some(Rejected::Timeout(Duration::from_millis(500)))
        );
        assert!(started.elapsed() >= Duration::from_millis(500));
    }

    #[tokio::test]
    async fn idle_gates_are_forgotten_busy_ones_kept() {
        let admission = Admission::new(Duration::from_secs(1));
        let f: Arc<str> = Arc::from("f");
        let held = admission.admit(&f, 1).await.unwrap();
        admission.forget("f");
        assert_eq!(admission.in_flight("f"), 1, "a busy gate must survive");
        drop(held);
        admission.forget("f");
        assert!(admission.gates.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_rejects_at_once() {
        let admission = Arc::new(Admission::new(Duration::from_secs(10)));
        let f: Arc<str> = Arc::from("f");
        let _held = admission.admit(&f, 1).await.unwrap();
        let queued = {
            let (admission, f) = (admission.clone(), f.clone());
            tokio::spawn(async move { admission.admit(&f, 1).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(matches!(
            admission.admit(&f, 1).await,
            Err(Rejected::QueueFull { in_flight: 1 })
        ));
        queued.abort();
    }
}
