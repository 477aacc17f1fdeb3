//! What a rollout is and how a step is judged: plain data and arithmetic, unit-tested here.

use serde::{Deserialize, Serialize};

use crate::model::{BasisPoints, FULL};
use crate::model::{DEFAULT_ALIAS, VersionLabel};

/// Longest interval between steps: the health windows keep five minutes.
pub const MAX_INTERVAL_MS: u64 = 300_000;

/// What the user asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutSpec {
    /// `$DEFAULT` (the candidate is `$LATEST`) or a custom alias.
    pub alias: String,
    pub candidate: VersionLabel,
    /// The version the rest of the alias's traffic goes to, compared with the candidate.
    pub stable: VersionLabel,
    /// The candidate's share at each step, in basis points, ascending, ending at 100 %.
    pub steps_bp: Vec<BasisPoints>,
    /// How long each step is observed before it is judged.
    pub interval_ms: u64,
    /// Most 5xx (timeouts included) per request the candidate may have, in basis points.
    pub max_error_rate_bp: BasisPoints,
    /// Highest p99 latency the candidate may have.
    pub max_p99_ms: u64,
    /// Requests the candidate must have served in a step before it is judged.
    pub min_requests: u64,
}

impl RolloutSpec {
    /// Checks the numbers; existence of versions is the caller's job.
    pub fn validate(&self) -> Result<(), String> {
        if self.steps_bp.is_empty() {
            return Err("give at least one step, e.g. --steps 1,5,25,50,100".into());
        }
        if self.steps_bp.windows(2).any(|w| w[0] >= w[1]) || self.steps_bp[0] == BasisPoints::ZERO {
            return Err("steps must rise strictly and start above 0, e.g. 1,5,25,50,100".into());
        }
        if self.steps_bp.last() != Some(&FULL) {
            return Err("the last step must be 100 (the candidate takes all traffic)".into());
        }
        if !(1_000..=MAX_INTERVAL_MS).contains(&self.interval_ms) {
            return Err(format!(
                "the interval must be 1s to {}s",
                MAX_INTERVAL_MS / 1000
            ));
        }
        if self.max_error_rate_bp > FULL {
            return Err("the error-rate limit is a percentage up to 100".into());
        }
        if self.candidate == self.stable {
            return Err(format!(
                "version {} is already the stable version; roll out another one",
                self.candidate
            ));
        }
        if self.alias == DEFAULT_ALIAS && self.candidate != VersionLabel::Latest {
            return Err(
                "$DEFAULT rolls out $LATEST (use --to latest); to move between published \
                 versions, roll out on a custom alias with --alias"
                    .into(),
            );
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Running,
    Paused,
    Succeeded,
    RolledBack,
    Aborted,
}

impl Phase {
    pub fn is_active(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }
}

/// A version's health over one step, as judged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub p99_ms: Option<f64>,
}

/// The decision on one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Judgment {
    pub at_ms: i64,
    pub step_percent: f64,
    pub candidate: Observed,
    pub stable: Observed,
    pub passed: bool,
    pub reason: String,
}

/// A rollout and where it is: stored as JSON with the function and updated in the same
/// commit as each traffic change it makes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutRecord {
    pub function: String,
    pub spec: RolloutSpec,
    pub phase: Phase,
    /// Index in `spec.steps_bp` of the share now applied.
    pub step: usize,
    /// When the current step's observation started (wall clock, ms); reset after a restart,
    /// since health windows do not survive one.
    pub step_started_ms: i64,
    /// The latest decision or why the rollout ended.
    pub reason: String,
    pub judgments: Vec<Judgment>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl RolloutRecord {
    pub fn share_bp(&self) -> BasisPoints {
        self.spec.steps_bp[self.step]
    }

    pub fn is_last_step(&self) -> bool {
        self.step + 1 == self.spec.steps_bp.len()
    }
}

/// What to do after observing a step.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Too few requests to decide; keep observing.
    Wait(String),
    Pass(String),
    Breach(String),
}

/// Judges the candidate against the spec's gates, compared with the stable version over the
/// same interval, never on fewer than `min_requests`. A breach is decided as soon as it is
/// certain (enough errors that the rate cannot fall under the limit within the minimum), so
/// a broken candidate is cut off early; a breach the stable version shares holds the step.
pub fn judge(spec: &RolloutSpec, candidate: &Observed, stable: &Observed) -> Verdict {
    let limit = spec.max_error_rate_bp.percent() / 100.0;
    let figures = format!(
        "candidate {} requests, {:.2}% errors, p99 {}; stable {} requests, {:.2}% errors, p99 {}",
        candidate.requests,
        candidate.error_rate * 100.0,
        ms(candidate.p99_ms),
        stable.requests,
        stable.error_rate * 100.0,
        ms(stable.p99_ms),
    );
    let errors_certain = candidate.errors as f64 > limit * spec.min_requests.max(1) as f64
        && candidate.error_rate > limit;
    if candidate.requests < spec.min_requests && !errors_certain {
        return Verdict::Wait(format!(
            "waiting for requests: the candidate served {} of the {} needed to judge",
            candidate.requests, spec.min_requests
        ));
    }
    // The stable version is the yardstick: when it does as badly over the same interval (a
    // shared dependency failing, a slow host), the candidate is not to blame, and the
    // rollout holds its step instead of either advancing or rolling back.
    let stable_counts = stable.requests >= spec.min_requests;
    if candidate.error_rate > limit {
        if stable_counts && stable.error_rate >= candidate.error_rate {
            return Verdict::Wait(format!(
                "holding: the stable version fails as often as the candidate, so the errors are not the candidate's ({figures})"
            ));
        }
        return Verdict::Breach(format!(
            "error rate {:.2}% is above the limit of {}% ({figures})",
            candidate.error_rate * 100.0,
            spec.max_error_rate_bp
        ));
    }
    if let Some(p99) = candidate.p99_ms
        && p99 > spec.max_p99_ms as f64
    {
        if stable_counts && stable.p99_ms.is_some_and(|s| s >= p99) {
            return Verdict::Wait(format!(
                "holding: the stable version is as slow as the candidate, so the latency is not the candidate's ({figures})"
            ));
        }
        return Verdict::Breach(format!(
            "p99 latency {p99:.1} ms is above the limit of {} ms ({figures})",
            spec.max_p99_ms
        ));
    }
    Verdict::Pass(figures)
}

/// Where a judged step leads. Decided by [`decide`] without I/O; the rollout loop does the
/// slow part (warming the candidate before an advance) and then [`advance`]s the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Keep observing the same step.
    Hold,
    /// Cut the candidate's share to 0.
    RollBack,
    /// Every step passed. `promote`: publish `$LATEST` and give it all of `$DEFAULT`.
    Finish { promote: bool },
    /// Move to the next step, which gives the candidate `share_bp`.
    Advance { share_bp: BasisPoints },
}

/// What `verdict` on the record's current step leads to.
pub fn decide(record: &RolloutRecord, verdict: &Verdict) -> Transition {
    match verdict {
        Verdict::Wait(_) => Transition::Hold,
        Verdict::Breach(_) => Transition::RollBack,
        Verdict::Pass(_) if record.is_last_step() => Transition::Finish {
            promote: record.spec.alias == DEFAULT_ALIAS,
        },
        Verdict::Pass(_) => Transition::Advance {
            share_bp: record.spec.steps_bp[record.step + 1],
        },
    }
}

/// Applies `verdict` on the current step to `record` (phase, step, reason, judgments) at
/// `now_ms`, and returns the transition, whose traffic change the caller commits with the
/// record. `note` ends an advance's reason (what warming the candidate achieved).
pub fn advance(
    record: &mut RolloutRecord,
    verdict: Verdict,
    candidate: Observed,
    stable: Observed,
    now_ms: i64,
    note: &str,
) -> Transition {
    let transition = decide(record, &verdict);
    let share = record.share_bp();
    let judged = |passed: bool, reason: &str| Judgment {
        at_ms: now_ms,
        step_percent: share.percent(),
        candidate: candidate.clone(),
        stable: stable.clone(),
        passed,
        reason: reason.to_string(),
    };
    match (verdict, transition) {
        (Verdict::Wait(reason), _) => record.reason = reason,
        (Verdict::Breach(reason), _) => {
            record.judgments.push(judged(false, &reason));
            record.phase = Phase::RolledBack;
            record.reason = format!(
                "rolled back at step {} ({}%): {reason}",
                record.step + 1,
                share
            );
        }
        (Verdict::Pass(figures), Transition::Finish { promote }) => {
            record.judgments.push(judged(true, &figures));
            record.phase = Phase::Succeeded;
            record.reason = if promote {
                format!(
                    "succeeded: every step passed; $LATEST published and given all traffic ({figures})"
                )
            } else {
                format!(
                    "succeeded: every step passed; version {} takes all of {} ({figures})",
                    record.spec.candidate, record.spec.alias
                )
            };
        }
        (Verdict::Pass(figures), _) => {
            record.judgments.push(judged(true, &figures));
            record.step += 1;
            record.step_started_ms = now_ms;
            record.reason = format!(
                "step {} passed; step {} sends {}% to version {}{note}",
                record.step,
                record.step + 1,
                record.share_bp(),
                record.spec.candidate
            );
        }
    }
    transition
}

fn ms(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.1} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bps(values: &[u32]) -> Vec<BasisPoints> {
        values.iter().copied().map(BasisPoints::new).collect()
    }

    fn spec() -> RolloutSpec {
        RolloutSpec {
            alias: "$DEFAULT".into(),
            candidate: VersionLabel::Latest,
            stable: VersionLabel::Number(1),
            steps_bp: bps(&[100, 500, 2500, 5000, 10_000]),
            interval_ms: 30_000,
            max_error_rate_bp: BasisPoints::new(100),
            max_p99_ms: 250,
            min_requests: 100,
        }
    }

    fn observed(requests: u64, errors: u64, p99_ms: f64) -> Observed {
        Observed {
            requests,
            errors,
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            p99_ms: Some(p99_ms),
        }
    }

    #[test]
    fn specs_are_checked() {
        assert!(spec().validate().is_ok());
        let mut s = spec();
        s.steps_bp = bps(&[500, 100, 10_000]);
        assert!(s.validate().unwrap_err().contains("rise"));
        s.steps_bp = bps(&[100, 5000]);
        assert!(s.validate().unwrap_err().contains("100"));
        let mut s = spec();
        s.interval_ms = 600_000;
        assert!(s.validate().is_err());
        let mut s = spec();
        s.candidate = VersionLabel::Number(2);
        assert!(s.validate().unwrap_err().contains("--to latest"));
    }

    #[test]
    fn never_decides_on_noise() {
        let stable = observed(1000, 0, 10.0);
        assert!(matches!(
            judge(&spec(), &observed(20, 0, 10.0), &stable),
            Verdict::Wait(_)
        ));
        // A slow trickle of requests with one error is not enough either.
        assert!(matches!(
            judge(&spec(), &observed(20, 1, 10.0), &stable),
            Verdict::Wait(_)
        ));
    }

    #[test]
    fn breaches_on_errors_or_latency_and_passes_otherwise() {
        let stable = observed(1000, 0, 10.0);
        assert!(matches!(
            judge(&spec(), &observed(200, 1, 20.0), &stable),
            Verdict::Pass(_)
        ));
        match judge(&spec(), &observed(200, 10, 20.0), &stable) {
            Verdict::Breach(reason) => assert!(reason.contains("error rate 5.00%"), "{reason}"),
            other => panic!("{other:?}"),
        }
        match judge(&spec(), &observed(200, 0, 400.0), &stable) {
            Verdict::Breach(reason) => assert!(reason.contains("p99 latency 400.0 ms"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // When the stable version is as bad, the candidate is not blamed: the step holds.
        let failing_stable = observed(1000, 80, 400.0);
        match judge(&spec(), &observed(200, 10, 20.0), &failing_stable) {
            Verdict::Wait(reason) => assert!(reason.starts_with("holding"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            judge(&spec(), &observed(200, 0, 400.0), &failing_stable),
            Verdict::Wait(_)
        ));
        // ... but a stable version with too few requests is no yardstick.
        assert!(matches!(
            judge(&spec(), &observed(200, 10, 20.0), &observed(5, 5, 10.0)),
            Verdict::Breach(_)
        ));
        // Errors beyond what the minimum could absorb breach before the minimum is reached.
        assert!(matches!(
            judge(&spec(), &observed(30, 15, 20.0), &stable),
            Verdict::Breach(_)
        ));
    }

    fn record(step: usize) -> RolloutRecord {
        RolloutRecord {
            function: "shop".into(),
            spec: spec(),
            phase: Phase::Running,
            step,
            step_started_ms: 1,
            reason: String::new(),
            judgments: vec![],
            created_ms: 1,
            updated_ms: 1,
        }
    }

    #[test]
    fn a_passed_step_advances_to_the_next_share() {
        let mut r = record(1);
        let t = advance(
            &mut r,
            Verdict::Pass("fine".into()),
            observed(200, 0, 5.0),
            observed(900, 0, 5.0),
            50,
            " (warmed 3 of 3 instances first)",
        );
        assert_eq!(
            t,
            Transition::Advance {
                share_bp: BasisPoints::new(2500)
            }
        );
        assert_eq!(
            (r.step, r.step_started_ms, r.phase),
            (2, 50, Phase::Running)
        );
        assert_eq!(
            r.reason,
            "step 2 passed; step 3 sends 25% to version latest (warmed 3 of 3 instances first)"
        );
        assert_eq!(r.judgments.len(), 1);
        assert!(r.judgments[0].passed);
        assert_eq!(
            r.judgments[0].step_percent, 5.0,
            "judged at the share it observed"
        );
    }

    #[test]
    fn the_last_passed_step_finishes_and_promotes_only_through_default() {
        let mut r = record(4);
        let t = advance(
            &mut r,
            Verdict::Pass("ok".into()),
            observed(1, 0, 1.0),
            observed(1, 0, 1.0),
            9,
            "",
        );
        assert_eq!(t, Transition::Finish { promote: true });
        assert_eq!(r.phase, Phase::Succeeded);
        assert!(r.reason.contains("$LATEST published"), "{}", r.reason);
        let mut r = record(4);
        r.spec.alias = "prod".into();
        r.spec.candidate = VersionLabel::Number(2);
        let t = advance(
            &mut r,
            Verdict::Pass("ok".into()),
            observed(1, 0, 1.0),
            observed(1, 0, 1.0),
            9,
            "",
        );
        assert_eq!(t, Transition::Finish { promote: false });
        assert!(
            r.reason.contains("version 2 takes all of prod"),
            "{}",
            r.reason
        );
        assert_eq!(r.step, 4, "no step past the last");
    }

    #[test]
    fn a_breach_rolls_back_and_a_wait_only_explains() {
        let mut r = record(0);
        let t = advance(
            &mut r,
            Verdict::Breach("error rate 5%".into()),
            observed(1, 1, 1.0),
            observed(1, 0, 1.0),
            9,
            "",
        );
        assert_eq!(t, Transition::RollBack);
        assert_eq!(r.phase, Phase::RolledBack);
        assert_eq!(r.reason, "rolled back at step 1 (1%): error rate 5%");
        assert!(!r.judgments[0].passed);
        let mut r = record(2);
        let t = advance(
            &mut r,
            Verdict::Wait("waiting".into()),
            observed(1, 0, 1.0),
            observed(1, 0, 1.0),
            9,
            "",
        );
        assert_eq!(t, Transition::Hold);
        assert_eq!(
            (r.step, r.phase, r.reason.as_str()),
            (2, Phase::Running, "waiting")
        );
        assert!(r.judgments.is_empty(), "waiting judges nothing");
    }
}
