//! Shadow traffic results per version: how mirrored requests compared with the primary's
//! answers. Kept apart from usage and health so shadows never sway canary analysis.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;

use crate::model::LatencyHistogram;
use crate::model::{ShadowReport, VersionLabel};

/// How one mirrored request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShadowOutcome {
    /// Same status and body as the primary.
    Match,
    Mismatch,
    /// The primary's answer was not seen in full (the client went away), so no verdict.
    Unknown,
    /// Not sent: the host or the shadow version was busy, or the body was too big to copy.
    Dropped,
}

impl ShadowOutcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Match => "match",
            Self::Mismatch => "mismatch",
            Self::Unknown => "unknown",
            Self::Dropped => "dropped",
        }
    }
}

#[derive(Default)]
struct Counts {
    matches: u64,
    mismatches: u64,
    unknown: u64,
    dropped: u64,
    errors: u64,
    latency: LatencyHistogram,
}

#[derive(Default)]
pub struct ShadowStats {
    versions: DashMap<(Arc<str>, VersionLabel), Mutex<Counts>>,
}

impl ShadowStats {
    pub fn record(
        &self,
        function: &Arc<str>,
        version: VersionLabel,
        outcome: ShadowOutcome,
        error: bool,
        duration: Option<Duration>,
    ) {
        let entry = self
            .versions
            .entry((function.clone(), version))
            .or_default();
        let mut counts = entry.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            ShadowOutcome::Match => counts.matches += 1,
            ShadowOutcome::Mismatch => counts.mismatches += 1,
            ShadowOutcome::Unknown => counts.unknown += 1,
            ShadowOutcome::Dropped => counts.dropped += 1,
        }
        counts.errors += u64::from(error);
        if let Some(duration) = duration {
            counts.latency.record(duration);
        }
    }

    pub fn report(&self, function: &str) -> Vec<ShadowReport> {
        let mut out: Vec<ShadowReport> = self
            .versions
            .iter()
            .filter(|e| &*e.key().0 == function)
            .map(|e| {
                let counts = e.value().lock().unwrap_or_else(|p| p.into_inner());
                let ms = |q| counts.latency.quantile(q).map(|d| d.as_secs_f64() * 1000.0);
                ShadowReport {
                    version: e.key().1,
                    sent: counts.matches + counts.mismatches + counts.unknown,
                    matches: counts.matches,
                    mismatches: counts.mismatches,
                    unknown: counts.unknown,
                    dropped: counts.dropped,
                    errors: counts.errors,
                    p50_ms: ms(0.5),
                    p99_ms: ms(0.99),
                }
            })
            .collect();
        out.sort_by_key(|r| r.version);
        out
    }

    pub fn remove(&self, function: &str) {
        self.versions.retain(|(f, _), _| &**f != function);
    }
}
