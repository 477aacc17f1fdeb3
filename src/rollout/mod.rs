//! Automatic, health-gated rollouts: the host moves a candidate version's share of an
//! alias step by step, judging each step on the candidate's error rate and p99 latency over
//! the step's interval (never on fewer than a minimum of requests), cutting it to 0 at the
//! first breach and, for `$DEFAULT`, promoting it when the last step passes.
//!
//! Every step is a traffic change committed together with the rollout's state (see
//! `registry::save_rollout`) and recorded in the alias history with its reason. The store
//! is the truth: every save is a compare-and-swap on the rollout's revision, so a decision
//! made on a state someone else changed meanwhile (an admin's pause on another node,
//! another driver) changes nothing and is made again on the new state.
//!
//! One node drives (`lease.rs`): alone, this node; in a fleet, the holder of the registry's
//! rollout lease, judging on the health every node publishes (`health.rs`). When the driver
//! dies, the next one judges the same step on the same published requests: no judgment is
//! skipped and none made twice. Alone, health windows live in memory, so after a restart a
//! running rollout observes its current step again from the start rather than judge on
//! what it cannot see.
//!
//! Before a step raises the candidate's share, its warm pool is grown to the concurrency the
//! new share is expected to bring (warm-before-shift), so the step causes no burst of cold
//! starts: on the driver, which waits briefly for it, and on every node as soon as it sees
//! the step before (each warms for its own traffic).

pub mod health;
mod lease;
pub mod plan;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::metering::Metering;
use crate::model::ShadowReport;
use crate::model::{
    AliasSpec, DEFAULT_ALIAS, TrafficChange, VersionLabel, WeightedRoute, Why, now_ms,
};
use crate::model::{BasisPoints, FULL};
use crate::registry::Registry;
use crate::routing::Router;
use crate::scaling::{Scaler, warm_target};
use crate::shutdown::Stop;
use crate::store::{StoreError, StoredRollout};
use health::HealthSource;
use lease::Lease;
use plan::{Observed, Phase, RolloutRecord, RolloutSpec, Transition, Verdict, judge};

/// How often running rollouts are looked at.
const TICK: Duration = Duration::from_millis(250);
/// The longest a step waits for the candidate's warm instances before shifting anyway.
const WARM_WAIT: Duration = Duration::from_secs(2);
/// How often the driver deletes health samples too old to matter (fleet only).
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Admin changes retry this often when a concurrent save wins the compare-and-swap.
const ADMIN_ATTEMPTS: usize = 3;

/// Why a rollout request cannot be done; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Registry(#[from] StoreError),
}

impl RolloutError {
    /// The dependency outage behind this error, if that is what it is.
    pub fn outage(&self) -> Option<crate::dependencies::Part> {
        match self {
            RolloutError::Registry(e) => e.outage(),
            _ => None,
        }
    }
}

/// What `POST .../rollout` asks for.
#[derive(Clone, Debug)]
pub struct StartRequest {
    pub to: VersionLabel,
    pub alias: Option<String>,
    pub steps_bp: Vec<BasisPoints>,
    pub interval_ms: u64,
    pub max_error_rate_bp: BasisPoints,
    pub max_p99_ms: u64,
    pub min_requests: u64,
}

/// A rollout with how its current step looks so far.
#[derive(Debug)]
pub struct RolloutStatus {
    pub record: RolloutRecord,
    /// The candidate's share now (0 once rolled back or aborted).
    pub current_bp: BasisPoints,
    /// The current step's health so far (running rollouts only).
    pub observing: Option<StepHealth>,
    /// How mirrored (shadow) requests to each version compared with the primary's answers.
    pub shadow: Vec<ShadowReport>,
}

#[derive(Debug)]
pub struct StepHealth {
    pub elapsed_ms: i64,
    pub candidate: Observed,
    pub stable: Observed,
}

/// A rollout as this node last read or wrote it, with the revision that save needs.
#[derive(Clone)]
struct Held {
    revision: i64,
    record: RolloutRecord,
}

impl Held {
    /// A stored rollout, or `None` (logged) when its state does not parse.
    fn parse(stored: &StoredRollout) -> Option<Self> {
        match serde_json::from_str(&stored.state) {
            Ok(record) => Some(Self {
                revision: stored.revision,
                record,
            }),
            Err(e) => {
                tracing::error!(function = %stored.function, error = %e, "stored rollout unreadable; ignoring it");
                None
            }
        }
    }
}

pub struct Rollouts {
    registry: Arc<Registry>,
    router: Arc<Router>,
    metering: Arc<Metering>,
    scaler: Arc<Scaler>,
    health: HealthSource,
    /// The newest rollout of each function as this node last saw it: what the driver looks
    /// at each tick and what a fleet node publishes health for. The async lock serialises
    /// this node's saves, so each of them starts from the state the last one left.
    records: tokio::sync::Mutex<HashMap<String, Held>>,
}

impl Rollouts {
    pub fn new(
        registry: Arc<Registry>,
        router: Arc<Router>,
        metering: Arc<Metering>,
        scaler: Arc<Scaler>,
    ) -> Self {
        Self {
            health: HealthSource::new(registry.clone(), metering.clone()),
            registry,
            router,
            metering,
            scaler,
            records: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Loads stored rollouts at start. Alone, running ones observe their current step
    /// afresh (the health they were judged on died with the last process); in a fleet the
    /// published health survives, and the stored step goes on as it was.
    pub async fn load(&self) -> Result<(), StoreError> {
        if self.registry.is_shared() {
            return self.reload().await;
        }
        let mut records = self.records.lock().await;
        for stored in self.registry.rollouts().await? {
            let Some(mut held) = Held::parse(&stored) else {
                continue;
            };
            let record = &mut held.record;
            if record.phase == Phase::Running {
                record.step_started_ms = now_ms();
                record.reason = format!(
                    "host restarted: observing step {} ({}%) again before judging it",
                    record.step + 1,
                    record.share_bp()
                );
                held.revision = self
                    .save(held.revision, record, None, Actor::Rollout)
                    .await?;
                tracing::info!(function = %stored.function, step = record.step + 1, "resuming rollout");
            }
            records.insert(stored.function, held);
        }
        Ok(())
    }

    /// Re-reads every stored rollout (a fleet node's resync, or a new driver's start).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let stored = self.registry.rollouts().await?;
        let mut records = self.records.lock().await;
        records.clear();
        for stored in stored {
            if let Some(held) = Held::parse(&stored) {
                records.insert(stored.function, held);
            }
        }
        Ok(())
    }

    /// Re-reads `function`'s rollout after another node changed it; a running step new to
    /// this node gets its warm-before-shift here.
    pub async fn refresh(&self, function: &str) -> Result<(), StoreError> {
        let stored = self.registry.rollout(function).await?;
        let mut records = self.records.lock().await;
        match stored.as_ref().and_then(Held::parse) {
            Some(held) => {
                let known = records.get(function).map(|h| h.revision);
                if known.is_none_or(|revision| revision < held.revision) {
                    self.prewarm(&held.record);
                    records.insert(function.to_string(), held);
                }
            }
            None => {
                records.remove(function);
            }
        }
        Ok(())
    }

    /// Starts a rollout: checks it, warms the candidate, applies the first step.
    pub async fn start(
        &self,
        function: &str,
        request: StartRequest,
    ) -> Result<RolloutStatus, RolloutError> {
        let mut records = self.records.lock().await;
        let current = self.stored(function).await?;
        if let Some(current) = &current
            && current.record.phase.is_active()
        {
            let current = &current.record;
            return Err(RolloutError::Conflict(format!(
                "a rollout of {function} is already {} at step {} ({}%); pause, resume or abort it first",
                phase_name(current.phase),
                current.step + 1,
                current.share_bp()
            )));
        }
        let spec = self.spec(function, request)?;
        let now = now_ms();
        let mut record = RolloutRecord {
            function: function.to_string(),
            spec,
            phase: Phase::Running,
            step: 0,
            step_started_ms: now,
            reason: String::new(),
            judgments: Vec::new(),
            created_ms: now,
            updated_ms: now,
        };
        let warmed = self
            .warm_before_shift(&record, record.spec.steps_bp[0])
            .await;
        record.reason = format!(
            "started: step 1 sends {}% to version {}{warmed}",
            record.share_bp(),
            record.spec.candidate
        );
        let change = self.traffic(&record, record.share_bp()).await?;
        let revision = current.map_or(0, |c| c.revision);
        let revision = match self
            .save(revision, &mut record, Some(change), Actor::Rollout)
            .await
        {
            Err(StoreError::Conflict(_)) => {
                return Err(RolloutError::Conflict(format!(
                    "another rollout of {function} was started meanwhile; see `fnhost rollout {function}`"
                )));
            }
            other => other?,
        };
        self.prewarm(&record);
        let status = self.status_of(&record).await?;
        records.insert(function.to_string(), Held { revision, record });
        Ok(status)
    }

    /// The rollout as stored (the same answer on every node), with its step's health.
    pub async fn status(&self, function: &str) -> Result<RolloutStatus, RolloutError> {
        let held = self.stored(function).await?.ok_or_else(|| {
            RolloutError::NotFound(format!("function {function:?} has no rollout"))
        })?;
        self.status_of(&held.record).await
    }

    pub async fn pause(&self, function: &str) -> Result<RolloutStatus, RolloutError> {
        self.change_phase(function, |record| match record.phase {
            Phase::Running => {
                record.phase = Phase::Paused;
                record.reason = format!(
                    "paused by admin at step {} ({}%)",
                    record.step + 1,
                    record.share_bp()
                );
                Ok(None)
            }
            other => Err(format!("the rollout is {}, not running", phase_name(other))),
        })
        .await
    }

    pub async fn resume(&self, function: &str) -> Result<RolloutStatus, RolloutError> {
        self.change_phase(function, |record| match record.phase {
            Phase::Paused => {
                record.phase = Phase::Running;
                record.step_started_ms = now_ms();
                record.reason = format!(
                    "resumed by admin: observing step {} ({}%) from now",
                    record.step + 1,
                    record.share_bp()
                );
                Ok(None)
            }
            other => Err(format!("the rollout is {}, not paused", phase_name(other))),
        })
        .await
    }

    /// Stops a rollout and sends the candidate no more traffic.
    pub async fn abort(&self, function: &str) -> Result<RolloutStatus, RolloutError> {
        self.change_phase(function, |record| {
            if !record.phase.is_active() {
                return Err(format!(
                    "the rollout already ended ({})",
                    phase_name(record.phase)
                ));
            }
            record.phase = Phase::Aborted;
            record.reason = format!(
                "aborted by admin at step {}; version {} gets no traffic",
                record.step + 1,
                record.spec.candidate
            );
            Ok(Some(BasisPoints::ZERO))
        })
        .await
    }

    /// The node that drives the fleet's rollouts now (`None` alone, where this node does,
    /// or between drivers).
    pub async fn driver(&self) -> Result<Option<String>, StoreError> {
        if !self.registry.is_shared() {
            return Ok(None);
        }
        self.registry.lease_holder(lease::NAME).await
    }

    /// Forgets a deleted function's rollout (its stored row went with the function).
    pub async fn forget(&self, function: &str) {
        self.records.lock().await.remove(function);
    }

    /// Drives rollouts while this node holds the lease (always, alone), until `stop`;
    /// a clean stop hands the lease on at once.
    pub async fn run(self: Arc<Self>, node: String, mut stop: Stop) {
        let mut lease = Lease::new(self.registry.clone(), node);
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pruned = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.stopped() => {
                    lease.release().await;
                    return;
                }
            }
            let (drives, newly) = lease.drive().await;
            if !drives {
                continue;
            }
            if newly && let Err(e) = self.reload().await {
                if e.outage().is_none() {
                    tracing::error!(error = %e, "could not read the rollouts to drive; retrying");
                }
                continue;
            }
            if let Err(e) = self.tick().await
                && e.outage().is_none()
            {
                tracing::error!(error = %e, "rollout step failed; retrying at the next tick");
            }
            if self.registry.is_shared() && pruned.elapsed() >= PRUNE_EVERY {
                pruned = tokio::time::Instant::now();
                self.health.prune().await;
            }
        }
    }

    /// Publishes this node's health of the versions under rollout for the fleet's driver,
    /// until `stop` (fleet nodes only).
    pub async fn publish_health(self: Arc<Self>, node: String, stop: Stop) {
        let running = || async {
            self.records
                .lock()
                .await
                .values()
                .filter(|h| h.record.phase == Phase::Running)
                .map(|h| {
                    let spec = &h.record.spec;
                    (
                        h.record.function.clone(),
                        [spec.candidate, spec.stable],
                        h.record.step_started_ms,
                    )
                })
                .collect()
        };
        self.health.publish(node, running, stop).await;
    }

    /// One pass over running rollouts: each one whose step has been observed for its
    /// interval is judged, and the decision saved on the revision it was judged on. The
    /// records lock is held only to save, never while reading health or warming the
    /// candidate (up to [`WARM_WAIT`]), so status, pause and abort answer at once.
    pub async fn tick(&self) -> Result<(), RolloutError> {
        let running: Vec<Held> = {
            let snapshot = self.router.snapshot();
            self.records
                .lock()
                .await
                .values()
                .filter(|h| {
                    h.record.phase == Phase::Running
                        && snapshot.function(&h.record.function).is_some()
                })
                .cloned()
                .collect()
        };
        for held in running {
            let record = &held.record;
            let window = self.health.step(record, now_ms()).await?;
            if window.elapsed_ms < record.spec.interval_ms as i64 {
                continue;
            }
            let verdict = judge(&record.spec, &window.candidate, &window.stable);
            let transition = plan::decide(record, &verdict);
            let note = match transition {
                // Too few requests: keep observing; `status` shows why.
                Transition::Hold => continue,
                Transition::Advance { share_bp } => self.warm_before_shift(record, share_bp).await,
                _ => String::new(),
            };
            let mut updated = record.clone();
            let transition = plan::advance(
                &mut updated,
                verdict,
                window.candidate,
                window.stable,
                now_ms(),
                &note,
            );
            let change = match transition {
                Transition::Hold => None,
                Transition::RollBack => {
                    tracing::warn!(function = %updated.function, reason = %updated.reason, "rollout breached its gates");
                    Some(self.traffic(&updated, BasisPoints::ZERO).await?)
                }
                Transition::Finish { promote } => {
                    tracing::info!(function = %updated.function, "rollout succeeded");
                    promote.then_some(TrafficChange::Promote)
                }
                Transition::Advance { share_bp } => Some(self.traffic(&updated, share_bp).await?),
            };
            let mut records = self.records.lock().await;
            match self
                .save(held.revision, &mut updated, change, Actor::Rollout)
                .await
            {
                Ok(revision) => {
                    if transition == (Transition::Finish { promote: true }) {
                        self.warm_promoted(&updated);
                    }
                    self.prewarm(&updated);
                    records.insert(
                        updated.function.clone(),
                        Held {
                            revision,
                            record: updated,
                        },
                    );
                }
                // Paused, aborted or driven elsewhere since it was read: look again.
                Err(StoreError::Conflict(_)) => {
                    drop(records);
                    self.refresh(&held.record.function).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// `function`'s rollout as stored now.
    async fn stored(&self, function: &str) -> Result<Option<Held>, StoreError> {
        Ok(self
            .registry
            .rollout(function)
            .await?
            .as_ref()
            .and_then(Held::parse))
    }

    /// Builds and checks a spec against the function's current routes.
    fn spec(&self, function: &str, request: StartRequest) -> Result<RolloutSpec, RolloutError> {
        let snapshot = self.router.snapshot();
        let routes = snapshot
            .function(function)
            .ok_or_else(|| RolloutError::NotFound(format!("function {function:?} not found")))?;
        let alias = request.alias.unwrap_or_else(|| DEFAULT_ALIAS.to_string());
        if routes.deployment(request.to).is_none() {
            return Err(RolloutError::NotFound(format!(
                "function {function:?} has no version {}",
                request.to
            )));
        }
        let stable = if alias == DEFAULT_ALIAS {
            let newest = routes.versions.keys().next_back().copied().ok_or_else(|| {
                RolloutError::Invalid(format!(
                    "{function} has no published version to compare $LATEST with; publish one first"
                ))
            })?;
            VersionLabel::Number(newest)
        } else {
            let routes = routes.aliases.get(&alias).ok_or_else(|| {
                RolloutError::NotFound(format!("function {function:?} has no alias {alias:?}"))
            })?;
            routes
                .weighted_targets()
                .iter()
                .filter(|(d, _)| d.label != request.to)
                .max_by_key(|(_, weight)| *weight)
                .map(|(d, _)| d.label)
                .ok_or_else(|| {
                    RolloutError::Invalid(format!(
                        "alias {alias} sends traffic only to version {}; nothing to roll out from",
                        request.to
                    ))
                })?
        };
        let spec = RolloutSpec {
            alias,
            candidate: request.to,
            stable,
            steps_bp: request.steps_bp,
            interval_ms: request.interval_ms,
            max_error_rate_bp: request.max_error_rate_bp,
            max_p99_ms: request.max_p99_ms,
            min_requests: request.min_requests,
        };
        spec.validate().map_err(RolloutError::Invalid)?;
        Ok(spec)
    }

    /// The traffic change that gives the candidate `share_bp` of the alias.
    async fn traffic(
        &self,
        record: &RolloutRecord,
        share_bp: BasisPoints,
    ) -> Result<TrafficChange, RolloutError> {
        let spec = &record.spec;
        if spec.alias == DEFAULT_ALIAS {
            return Ok(TrafficChange::LatestShare(share_bp));
        }
        let details = self.registry.function(&record.function).await?;
        let current = details
            .aliases
            .into_iter()
            .find(|a| a.name == spec.alias)
            .ok_or_else(|| {
                RolloutError::NotFound(format!(
                    "alias {} of {} was deleted during the rollout",
                    spec.alias, record.function
                ))
            })?;
        let mut routes = Vec::new();
        if share_bp < FULL {
            routes.push(WeightedRoute {
                version: spec.stable,
                weight_bp: share_bp.rest(),
            });
        }
        if share_bp > BasisPoints::ZERO {
            routes.push(WeightedRoute {
                version: spec.candidate,
                weight_bp: share_bp,
            });
        }
        Ok(TrafficChange::Alias {
            alias: spec.alias.clone(),
            spec: AliasSpec {
                routes,
                ..current.spec
            },
        })
    }

    /// Grows the candidate's warm pool to what `share_bp` of the alias's recent concurrency
    /// needs, waiting (briefly) until it is there. Returns a note for the step's reason.
    async fn warm_before_shift(&self, record: &RolloutRecord, share_bp: BasisPoints) -> String {
        let Some(warm) = self.boost_candidate(record, share_bp) else {
            return String::new();
        };
        let (function, candidate) = (&record.function, record.spec.candidate);
        let deadline = tokio::time::Instant::now() + WARM_WAIT;
        while self.scaler.warm_of(function, candidate) < warm
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The pool may already hold more than this step needs (an earlier step's boost, or
        // instances idle since): what matters is how many of the wanted ones were ready.
        let ready = self.scaler.warm_of(function, candidate).min(warm);
        format!(" (warmed {ready} of {warm} instances first)")
    }

    /// Warms the candidate on this node for the share the *next* step gives it, as soon
    /// as the current step is known: on every node of a fleet, each for its own traffic,
    /// so the shift finds instances waiting everywhere, not only on the driver.
    fn prewarm(&self, record: &RolloutRecord) {
        if record.phase == Phase::Running
            && let Some(next) = record.spec.steps_bp.get(record.step + 1)
        {
            self.boost_candidate(record, *next);
        }
    }

    /// Grows the candidate's warm pool on this node to what `share_bp` of the alias's
    /// recent concurrency here needs, held for the step; returns the target.
    fn boost_candidate(&self, record: &RolloutRecord, share_bp: BasisPoints) -> Option<u32> {
        let spec = &record.spec;
        let deployment = self
            .router
            .snapshot()
            .function(&record.function)
            .and_then(|routes| routes.deployment(spec.candidate).cloned())?;
        let total = self
            .scaler
            .recent_concurrency(&record.function, &[spec.stable, spec.candidate]);
        let expected = share_bp.ceil_of(u64::from(total)) as u32;
        let warm = warm_target(expected.max(1), false, 0, deployment.config.max_concurrency);
        let hold = Duration::from_millis(spec.interval_ms) + Duration::from_secs(30);
        self.scaler.boost(&deployment, warm, hold);
        Some(warm)
    }

    /// After a promotion, `$DEFAULT`'s traffic moves from `$LATEST`'s pool to the new
    /// version's (same code, new label): warm it to what `$LATEST` was serving.
    fn warm_promoted(&self, record: &RolloutRecord) {
        let snapshot = self.router.snapshot();
        let Some(routes) = snapshot.function(&record.function) else {
            return;
        };
        let Some((_, newest)) = routes.versions.iter().next_back() else {
            return;
        };
        let serving = self
            .scaler
            .recent_concurrency(&record.function, &[VersionLabel::Latest]);
        let warm = warm_target(serving.max(1), false, 0, newest.config.max_concurrency);
        let hold = Duration::from_millis(record.spec.interval_ms) + Duration::from_secs(30);
        self.scaler.boost(newest, warm, hold);
    }

    /// `record` with its step's health so far; a step past its interval that still
    /// waits says why (too few requests, or a breach the stable version shares).
    async fn status_of(&self, record: &RolloutRecord) -> Result<RolloutStatus, RolloutError> {
        let mut record = record.clone();
        let observing = if record.phase == Phase::Running {
            let window = self.health.step(&record, now_ms()).await?;
            if window.elapsed_ms >= record.spec.interval_ms as i64
                && let Verdict::Wait(reason) =
                    judge(&record.spec, &window.candidate, &window.stable)
            {
                record.reason = reason;
            }
            Some(StepHealth {
                elapsed_ms: window.elapsed_ms.max(0),
                candidate: window.candidate,
                stable: window.stable,
            })
        } else {
            None
        };
        Ok(RolloutStatus {
            current_bp: match record.phase {
                Phase::RolledBack | Phase::Aborted => BasisPoints::ZERO,
                _ => record.share_bp(),
            },
            shadow: self.metering.shadow_report(&record.function),
            record,
            observing,
        })
    }

    /// Applies an admin's `change` to the stored rollout and saves it with its traffic
    /// change, reading again when a concurrent save (the driver's step) got there first.
    async fn change_phase(
        &self,
        function: &str,
        change: impl Fn(&mut RolloutRecord) -> Result<Option<BasisPoints>, String>,
    ) -> Result<RolloutStatus, RolloutError> {
        let mut records = self.records.lock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut held = self.stored(function).await?.ok_or_else(|| {
                RolloutError::NotFound(format!("function {function:?} has no rollout"))
            })?;
            let share = change(&mut held.record).map_err(RolloutError::Conflict)?;
            let traffic = match share {
                Some(bp) => Some(self.traffic(&held.record, bp).await?),
                None => None,
            };
            match self
                .save(held.revision, &mut held.record, traffic, Actor::Admin)
                .await
            {
                Ok(revision) => {
                    held.revision = revision;
                    let status = self.status_of(&held.record).await?;
                    records.insert(function.to_string(), held);
                    return Ok(status);
                }
                Err(StoreError::Conflict(_)) if attempt < ADMIN_ATTEMPTS => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Persists `record` with its traffic change if the stored rollout is still at
    /// `revision`; the alias history gets the record's reason. Returns the new revision.
    async fn save(
        &self,
        revision: i64,
        record: &mut RolloutRecord,
        change: Option<TrafficChange>,
        actor: Actor,
    ) -> Result<i64, StoreError> {
        record.updated_ms = now_ms();
        let why = match actor {
            Actor::Admin => Why::admin(record.reason.clone()),
            Actor::Rollout => Why::rollout(record.reason.clone()),
        };
        let state = serde_json::to_string(record).expect("rollouts serialize");
        self.registry
            .save_rollout(&record.function, revision, state, change, why)
            .await
    }
}

/// Who made a rollout's change: the admin (pause, resume, abort) or the rollout itself.
#[derive(Clone, Copy)]
enum Actor {
    Admin,
    Rollout,
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Running => "running",
        Phase::Paused => "paused",
        Phase::Succeeded => "succeeded",
        Phase::RolledBack => "rolled back",
        Phase::Aborted => "aborted",
    }
}
