//! Rolling per-version health: requests, 5xx errors and latency per second over the last
//! few minutes, so a rollout can compare a candidate with the stable version.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;

use super::InvocationRecord;
use crate::model::LatencyHistogram;
use crate::model::{VersionHealth, VersionLabel};

/// The longest window kept.
const KEEP_SECONDS: i64 = 300;

#[derive(Default)]
struct Second {
    second: i64,
    requests: u64,
    errors: u64,
    latency: LatencyHistogram,
}

#[derive(Default)]
pub struct HealthWindows {
    versions: DashMap<(Arc<str>, VersionLabel), Mutex<VecDeque<Second>>>,
}

impl HealthWindows {
    pub fn record(&self, record: &InvocationRecord<'_>) {
        let now = crate::model::now_ms().div_euclid(1000);
        let key = (record.function.clone(), record.version);
        let entry = self.versions.entry(key).or_default();
        let mut seconds = entry.lock().unwrap_or_else(|p| p.into_inner());
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

    pub fn snapshot(&self, function: &str, window: Duration) -> Vec<VersionHealth> {
        let now = crate::model::now_ms().div_euclid(1000);
        let since = now - window.as_secs() as i64;
        let mut out: Vec<VersionHealth> = self
            .versions
            .iter()
            .filter(|e| &*e.key().0 == function)
            .map(|e| {
                let seconds = e.value().lock().unwrap_or_else(|p| p.into_inner());
                let (mut requests, mut errors) = (0, 0);
                let mut latency = LatencyHistogram::default();
                for second in seconds.iter().filter(|s| s.second > since) {
                    requests += second.requests;
                    errors += second.errors;
                    latency.merge(&second.latency);
                }
                let ms = |q| latency.quantile(q).map(|d| d.as_secs_f64() * 1000.0);
                VersionHealth {
                    version: e.key().1,
                    window_secs: window.as_secs(),
                    requests,
                    errors,
                    error_rate: if requests == 0 {
                        0.0
                    } else {
                        errors as f64 / requests as f64
                    },
                    p50_ms: ms(0.5),
                    p99_ms: ms(0.99),
                }
            })
            .collect();
        out.sort_by_key(|h| match h.version {
            VersionLabel::Number(n) => n,
            VersionLabel::Latest => u32::MAX,
        });
        out
    }
}
