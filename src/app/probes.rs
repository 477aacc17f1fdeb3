//! Finding out that a part is back when nothing else would. The database needs no probe:
//! the heartbeat writes to it every second, alone or in a fleet, and its answer clears the
//! outage. A full disk is only met by writes that need space (uploads, object puts), and an
//! object store outage by calls that need it, which stop once they are refused or put off;
//! so while either is down this asks it every [`PROBE_EVERY`] (a small file written to the
//! disk, a lookup of a key that never exists in the store) and clears the outage once it
//! answers.

use std::sync::Arc;
use std::time::Duration;

use super::App;
use crate::dependencies::Part;
use crate::shutdown::Stop;
use crate::store::StoreError;

const PROBE_EVERY: Duration = Duration::from_secs(2);

pub(super) async fn run(app: Arc<App>, mut stop: Stop) {
    let mut ticker = tokio::time::interval(PROBE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.stopped() => return,
        }
        let dependencies = app.registry.dependencies();
        if !dependencies.is_up(Part::Disk) {
            let modules = app.registry.modules().clone();
            let probed = tokio::task::spawn_blocking(move || modules.probe_space())
                .await
                .expect("disk probe panicked")
                .map_err(StoreError::from);
            if probed.is_ok() {
                dependencies.ok(Part::Disk);
            } else {
                crate::store::observe_failure(dependencies, &probed);
            }
        }
        if !dependencies.is_up(Part::ObjectStore) {
            // Reports its own answer (or outage) to the dependencies.
            let _ = app.events.buckets.probe().await;
        }
    }
}
