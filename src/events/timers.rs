//! Timer triggers: each fires on its cron schedule (with seconds, UTC) by queueing a
//! `fnhost.timer.fired` event. A trigger that does not allow overlap skips a tick while its
//! previous event is still queued or running, so a slow run never piles up. Ticks missed
//! while the host was down are not replayed. In a fleet every node runs this loop and each
//! tick's event is queued once (its id names the tick), so a tick fires once fleet-wide and
//! still fires while any node is up.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Events;
use crate::model::{TimerTick, Trigger, TriggerSource};
use crate::shutdown::Stop;

/// The longest the loop sleeps, so schedules are re-read even without a wake-up.
const MAX_SLEEP: Duration = Duration::from_secs(5);

struct Timer {
    trigger: Trigger,
    schedule: cron::Schedule,
    allow_overlap: bool,
    next: DateTime<Utc>,
}

/// Fires timers until shutdown.
pub async fn run(events: Arc<Events>, mut stop: Stop) {
    let mut timers: HashMap<i64, Timer> = HashMap::new();
    let mut reload = true;
    loop {
        if reload {
            match events.registry.triggers(None).await {
                Ok(triggers) => timers = refreshed(triggers, std::mem::take(&mut timers)),
                Err(e) if e.outage().is_some() => {}
                Err(e) => tracing::error!(error = %e, "could not read timer triggers"),
            }
        }
        let now = Utc::now();
        reload = false;
        for timer in timers.values_mut().filter(|t| t.next <= now) {
            match events
                .registry
                .enqueue_timer(
                    timer.trigger.clone(),
                    timer.next.timestamp_millis(),
                    timer.allow_overlap,
                )
                .await
            {
                Ok(TimerTick::Queued) => events.deliveries.notify_one(),
                Ok(TimerTick::AlreadyQueued) => {}
                Ok(TimerTick::Busy) => tracing::info!(
                    trigger = timer.trigger.id,
                    function = %timer.trigger.function,
                    "timer tick skipped: the previous run is still queued or running"
                ),
                Err(e) => {
                    // Its function may be gone: read the triggers afresh next time.
                    if e.outage().is_none() {
                        tracing::warn!(trigger = timer.trigger.id, error = %e, "could not queue a timer event");
                    }
                    reload = true;
                }
            }
            timer.next = timer
                .schedule
                .after(&now)
                .next()
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
        }
        let until_next = timers
            .values()
            .map(|t| (t.next - Utc::now()).to_std().unwrap_or_default())
            .min()
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        tokio::select! {
            () = stop.stopped() => return,
            () = events.timers_changed.notified() => reload = true,
            () = tokio::time::sleep(until_next) => reload |= until_next == MAX_SLEEP,
        }
    }
}

/// The timers of `triggers`, keeping the next tick of ones already known.
fn refreshed(triggers: Vec<Trigger>, mut known: HashMap<i64, Timer>) -> HashMap<i64, Timer> {
    triggers
        .into_iter()
        .filter_map(|trigger| {
            let TriggerSource::Timer {
                cron,
                allow_overlap,
            } = &trigger.source
            else {
                return None;
            };
            let schedule = cron::Schedule::from_str(cron).ok()?;
            let next = match known.remove(&trigger.id) {
                Some(timer) => timer.next,
                None => schedule.upcoming(Utc).next()?,
            };
            let allow_overlap = *allow_overlap;
            Some((
                trigger.id,
                Timer {
                    trigger,
                    schedule,
                    allow_overlap,
                    next,
                },
            ))
        })
        .collect()
}
