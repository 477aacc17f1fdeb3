//! Cooperative stop for background loops: each loop waits on [`Stop::stopped`] where it would
//! otherwise sleep, so shutdown ends it between units of work, never in the middle of one.

use tokio::sync::watch;

/// Handed to every background loop; resolves once shutdown begins.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

/// Begins shutdown for every [`Stop`] made from it.
pub struct StopSender(watch::Sender<bool>);

/// A linked sender and receiver.
pub fn channel() -> (StopSender, Stop) {
    let (sender, receiver) = watch::channel(false);
    (StopSender(sender), Stop(receiver))
}

impl StopSender {
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl Stop {
    /// A stop that never fires (for loops run outside the app, as in tests and benches).
    pub fn never() -> Self {
        let (sender, receiver) = watch::channel(false);
        // Keep the sender alive for ever, so `stopped` stays pending.
        std::mem::forget(sender);
        Self(receiver)
    }

    /// Resolves once shutdown has begun (at once if it already has).
    pub async fn stopped(&mut self) {
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }

    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }
}
