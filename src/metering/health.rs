//! Rolling per-version health: requests, 5xx errors and latency per second over the last
//! few minutes, so a rollout can compare a candidate with the stable version.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;

use super::InvocationRecord;
use crate::model::LatencyHistogram;
use crate::model::{HealthSample, VersionHealth, VersionLabel, summarize};

/// The longest window kept.
const KEEP_SECONDS: i64 = 300;

#[derive(Default)]
pub struct Second {
    second: i64,
    requests: u64,
    errors: u64,
    latency: LatencyHistogram,
}

/// One version's seconds, shared by the map (which reads them) and the version's meter (which
/// records into them without a map lookup).
pub type Window = Arc<Mutex<VecDeque<Second>>>;

#[derive(Default)]
pub struct HealthWindows {
    versions: DashMap<(Arc<str>, VersionLabel), Window>,
}

impl HealthWindows {
    /// `function`'s `version`'s window, created empty if new.
    pub fn window(&self, function: &Arc<str>, version: VersionLabel) -> Window {
        self.versions
            .entry((function.clone(), version))
            .or_default()
            .clone()
    }

    pub fn record(window: &Window, record: &InvocationRecord<'_>) {
        let now = crate::model::now_ms().div_euclid(1000);
        let mut seconds = window.lock().unwrap_or_else(|p| p.into_inner());
        if seconds.back().is_none_or(|s| s.second != now) {
            seconds.push_back(Second {
                second: now,
                ..Second::default()
            });
        }
        while seconds
            .front()
            .is_some_and(|s| s.second <= now - KEEP_SECONDS)
        {
            seconds.pop_front();
        }
        let current = seconds.back_mut().expect("pushed above");
        current.requests += 1;
        current.errors += u64::from(record.status >= 500);
        current.latency.record(record.duration);
    }

    /// Drops a deleted function's windows.
    pub fn remove(&self, function: &str) {
        self.versions.retain(|(f, _), _| &**f != function);
    }

    /// Each version's health over the last `window` (the current second included).
    pub fn snapshot(&self, function: &str, window: Duration) -> Vec<VersionHealth> {
        let now = crate::model::now_ms().div_euclid(1000);
        let samples = self.samples(function, now - window.as_secs() as i64 + 1, now + 1);
        summarize(&samples, window.as_secs())
    }

    /// `function`'s per-second samples with `from <= second < to`, one per version and
    /// second (the second under way included when `to` is past it).
    pub fn samples(&self, function: &str, from: i64, to: i64) -> Vec<HealthSample> {
        let mut out = Vec::new();
        for entry in self.versions.iter().filter(|e| &*e.key().0 == function) {
            let seconds = entry.value().lock().unwrap_or_else(|p| p.into_inner());
            out.extend(
                seconds
                    .iter()
                    .filter(|s| (from..to).contains(&s.second))
                    .map(|s| HealthSample {
                        function: function.to_string(),
                        version: entry.key().1,
                        second: s.second,
                        requests: s.requests,
                        errors: s.errors,
                        latency: s.latency.clone(),
                    }),
            );
        }
        out
    }
}
