//! CPU fairness between invocations, multi-level-feedback style in two levels.
//!
//! Every invocation starts *short*: at each epoch tick (1 ms of running) it yields to the
//! runtime and goes on, as before. One that has run for `long_after` becomes *long-running*
//! and from then on runs only while it holds one of the gate's seats, one per runtime
//! thread, giving its seat back and queueing (first come, first served) at every tick.
//! While any short invocation is in flight, long-running ones leave one seat free: they can
//! occupy at most all threads but one, so a short request never waits behind a hog's time
//! slice. With no short work the long-running ones use every thread (the gate costs them
//! nothing), and with one thread there is no seat to spare and the gate never holds them
//! back. Hogs still finish within their timeout and CPU budget; nothing is starved, since
//! a waiting hog is first in line for the next free seat.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The default `long_after`: API-style requests (a few ms of CPU) stay short.
pub const DEFAULT_LONG_AFTER: Duration = Duration::from_millis(5);

pub struct CpuGate {
    seats: Arc<Semaphore>,
    total: u32,
    /// Short invocations in flight.
    short: AtomicU32,
    /// Wakes long-running invocations waiting for a seat that may now be theirs.
    changed: Notify,
}

impl CpuGate {
    /// A gate with one seat per runtime thread.
    pub fn new(threads: u32) -> Arc<Self> {
        let threads = threads.max(1);
        Arc::new(Self {
            seats: Arc::new(Semaphore::new(threads as usize)),
            total: threads,
            short: AtomicU32::new(0),
            changed: Notify::new(),
        })
    }

    /// Short invocations in flight now.
    pub fn short_in_flight(&self) -> u32 {
        self.short.load(Ordering::Acquire)
    }

    /// Long-running invocations running now.
    #[cfg(test)]
    fn long_running(&self) -> u32 {
        self.total - self.seats.available_permits() as u32
    }

    fn short_started(&self) {
        self.short.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts a request as short work from the moment it is read, before its invocation
    /// begins (which then takes over the count), so hogs leave it a thread on its whole
    /// path, not only once its guest runs.
    pub fn short_work(self: &Arc<Self>) -> ShortWork {
        self.short_started();
        ShortWork(self.clone())
    }

    fn short_ended(&self) {
        if self.short.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.changed.notify_waiters();
        }
    }

    /// Waits for a seat: the next free one, keeping one free while short work is in flight.
    async fn take_turn(self: Arc<Self>) -> OwnedSemaphorePermit {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let seat = self
                .seats
                .clone()
                .acquire_owned()
                .await
                .expect("the gate's semaphore is never closed");
            let spare = self.seats.available_permits() > 0;
            if self.total == 1 || spare || self.short_in_flight() == 0 {
                return seat;
            }
            // Taking this seat would leave short work none: give it back and wait until a
            // holder gives its seat back at its next tick, or short work ends.
            drop(seat);
            changed.await;
        }
    }
}

/// What kind of work an invocation is, for the policy.
pub enum Work {
    /// Interactive: short until it has run `long_after`; a live request's count as short
    /// work since it was read, which the invocation takes over.
    Short(Option<ShortWork>),
    /// Queued background work (asynchronous invocations): long-running from its first tick,
    /// so it never holds the thread short requests need.
    Background,
}

/// A request counted as short work until its invocation begins or it ends (dropped).
pub struct ShortWork(Arc<CpuGate>);

impl Drop for ShortWork {
    fn drop(&mut self) {
        self.0.short_ended();
    }
}

/// One invocation's place in the policy, kept in its store: counted as short until it has
/// run `long_after`, then holding a seat between ticks. Dropping it (the store goes when the
/// invocation ends) gives everything back.
pub struct Fairness {
    gate: Option<Arc<CpuGate>>,
    long_after_ticks: u64,
    short: bool,
    /// The seat held between ticks, shared with the turn being waited for; created the
    /// first time the invocation is long-running (most never are, so most never allocate).
    seat: Option<Arc<Mutex<Option<OwnedSemaphorePermit>>>>,
}

impl Fairness {
    /// Outside the policy (instantiating ahead of demand) until [`Self::begin`].
    pub fn idle() -> Self {
        Self {
            gate: None,
            long_after_ticks: u64::MAX,
            short: false,
            seat: None,
        }
    }

    /// A request starts: the invocation is short until `long_after_ticks` ticks of running.
    pub fn begin(&mut self, gate: &Arc<CpuGate>, long_after_ticks: u64) {
        self.end();
        gate.short_started();
        self.gate = Some(gate.clone());
        self.long_after_ticks = long_after_ticks.max(1);
        self.short = true;
    }

    /// Background work starts: never counted as short, waiting for a seat from its first
    /// tick.
    pub fn begin_background(&mut self, gate: &Arc<CpuGate>) {
        self.end();
        self.gate = Some(gate.clone());
        self.long_after_ticks = 0;
        self.short = false;
    }

    /// At an epoch tick after `ticks` ticks of running: `None` to yield as usual, or the
    /// future a long-running invocation waits on for its next turn.
    pub fn tick(
        &mut self,
        ticks: u64,
    ) -> Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>> {
        let gate = self.gate.clone()?;
        if ticks < self.long_after_ticks {
            return None;
        }
        // No longer short; the seat goes back before queueing, so the next in line runs
        // meanwhile.
        self.release(&gate);
        let slot = self.seat.get_or_insert_with(Default::default).clone();
        Some(Box::pin(async move {
            // A real yield first, as for short work: the other tasks of this thread (a new
            // request being read, say) run before the hog takes a seat again.
            tokio::task::yield_now().await;
            let seat = gate.take_turn().await;
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(seat);
        }))
    }

    fn end(&mut self) {
        if let Some(gate) = self.gate.take() {
            self.release(&gate);
        }
    }

    /// Stops counting as short work and gives back the seat, if held.
    fn release(&mut self, gate: &CpuGate) {
        if self.short {
            self.short = false;
            gate.short_ended();
        }
        let seat = self
            .seat
            .as_ref()
            .and_then(|seat| seat.lock().unwrap_or_else(|p| p.into_inner()).take());
        if seat.is_some() {
            drop(seat);
            gate.changed.notify_waiters();
        }
    }
}

impl Drop for Fairness {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn turn(fairness: &mut Fairness, ticks: u64) -> bool {
        match fairness.tick(ticks) {
            None => false,
            Some(wait) => tokio::time::timeout(Duration::from_millis(200), wait)
                .await
                .is_ok(),
        }
    }

    #[tokio::test]
    async fn long_running_invocations_leave_a_thread_to_short_ones() {
        let gate = CpuGate::new(2);
        let (mut hog_a, mut hog_b, mut request) =
            (Fairness::idle(), Fairness::idle(), Fairness::idle());
        hog_a.begin(&gate, 5);
        hog_b.begin(&gate, 5);
        assert!(
            !turn(&mut hog_a, 4).await,
            "short until 5 ticks: plain yields"
        );
        assert_eq!(gate.short_in_flight(), 2);
        // Both long-running, nothing short: both run (work-conserving).
        assert!(turn(&mut hog_a, 5).await);
        assert!(turn(&mut hog_b, 5).await);
        assert_eq!((gate.short_in_flight(), gate.long_running()), (0, 2));
        // A short request arrives: at their next ticks the hogs give their seats back and
        // queue; only one gets a seat back while the request is in flight.
        request.begin(&gate, 5);
        let a = tokio::spawn(hog_a.tick(6).unwrap());
        let b = tokio::spawn(hog_b.tick(6).unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            (
                a.is_finished() as u8 + b.is_finished() as u8,
                gate.long_running()
            ),
            (1, 1),
            "one hog runs, one waits, one thread stays free for the request"
        );
        // The request ends: the waiting hog runs again.
        drop(request);
        tokio::time::timeout(Duration::from_secs(1), async {
            a.await.unwrap();
            b.await.unwrap();
        })
        .await
        .expect("both hogs run once no short work is in flight");
        assert_eq!(gate.long_running(), 2);
        drop(hog_a);
        drop(hog_b);
        assert_eq!((gate.short_in_flight(), gate.long_running()), (0, 0));
    }

    #[tokio::test]
    async fn one_thread_never_holds_a_hog_back() {
        let gate = CpuGate::new(1);
        let (mut hog, mut request) = (Fairness::idle(), Fairness::idle());
        hog.begin(&gate, 1);
        request.begin(&gate, 1);
        assert!(turn(&mut hog, 1).await);
        assert!(turn(&mut hog, 2).await);
    }
}
