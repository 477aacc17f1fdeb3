//! Automatic, health-gated rollouts: the host moves a candidate version's share of an
//! alias step by step, judging each step on the candidate's error rate and p99 latency over
//! the step's interval (never on fewer than a minimum of requests), cutting it to 0 at the
//! first breach and, for `$DEFAULT`, promoting it when the last step passes.
//!
//! Every step is a traffic change committed together with the rollout's state (see
//! `registry::save_rollout`) and recorded in the alias history with its reason. After a
//! restart a running rollout observes its current step again from the start: health windows
//! live in memory, so it never judges, let alone advances, on what it cannot see.
//!
//! Before a step raises the candidate's share, its warm pool is grown to the concurrency the
//! new share is expected to bring (warm-before-shift), so the step causes no burst of cold
//! starts.

pub mod plan;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::metering::Metering;
use crate::model::{
    AliasSpec, DEFAULT_ALIAS, TrafficChange, VersionLabel, WeightedRoute, Why, now_ms,
};
use crate::model::{BasisPoints, FULL};
use crate::model::{ShadowReport, VersionHealth};
use crate::registry::Registry;
use crate::routing::Router;
use crate::scaling::{Scaler, warm_target};
use crate::shutdown::Stop;
use crate::store::StoreError;
use plan::{Observed, Phase, RolloutRecord, RolloutSpec, Transition, judge};

/// How often running rollouts are looked at.
const TICK: Duration = Duration::from_millis(250);
/// The longest a step waits for the candidate's warm instances before shifting anyway.
const WARM_WAIT: Duration = Duration::from_secs(2);

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

pub struct Rollouts {
    registry: Arc<Registry>,
    router: Arc<Router>,
    metering: Arc<Metering>,
    scaler: Arc<Scaler>,
    /// The newest rollout of each function. The async lock also serialises admin calls with
    /// the tick, so each decision sees the state the last one left.
    records: tokio::sync::Mutex<HashMap<String, RolloutRecord>>,
}

impl Rollouts {
    pub fn new(
        registry: Arc<Registry>,
        router: Arc<Router>,
        metering: Arc<Metering>,
        scaler: Arc<Scaler>,
    ) -> Self {
        Self {
            registry,
            router,
            metering,
            scaler,
            records: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Loads stored rollouts; running ones start observing their current step afresh.
    pub async fn load(&self) -> Result<(), StoreError> {
        let mut records = self.records.lock().await;
        for (function, state) in self.registry.rollouts().await? {
            let mut record: RolloutRecord = match serde_json::from_str(&state) {
                Ok(record) => record,
                Err(e) => {
                    tracing::error!(%function, error = %e, "stored rollout unreadable; ignoring it");
                    continue;
                }
            };
            if record.phase == Phase::Running {
                record.step_started_ms = now_ms();
                record.reason = format!(
                    "host restarted: observing step {} ({}%) again before judging it",
                    record.step + 1,
                    record.share_bp()
                );
                self.save(&mut record, None, Actor::Rollout).await?;
                tracing::info!(%function, step = record.step + 1, "resuming rollout");
            }
            records.insert(function, record);
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
        if let Some(current) = records.get(function)
            && current.phase.is_active()
        {
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
        self.save(&mut record, Some(change), Actor::Rollout).await?;
        let status = self.status_of(&record);
        records.insert(function.to_string(), record);
        Ok(status)
    }

    pub async fn status(&self, function: &str) -> Result<RolloutStatus, RolloutError> {
        let records = self.records.lock().await;
        let record = records.get(function).ok_or_else(|| {
            RolloutError::NotFound(format!("function {function:?} has no rollout"))
        })?;
        Ok(self.status_of(record))
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

    /// Forgets a deleted function's rollout (its stored row went with the function).
    pub async fn forget(&self, function: &str) {
        self.records.lock().await.remove(function);
    }

    /// Judges and advances running rollouts until the task is dropped.
    pub async fn run(self: Arc<Self>, mut stop: Stop) {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.stopped() => return,
            }
            if let Err(e) = self.tick().await {
                tracing::error!(error = %e, "rollout step failed; retrying at the next tick");
            }
        }
    }

    /// One pass over running rollouts. The records lock is held only to judge and to
    /// commit, never across warming the candidate (up to [`WARM_WAIT`]), so status, pause
    /// and abort answer at once; a rollout paused or aborted meanwhile is left as it is.
    pub async fn tick(&self) -> Result<(), RolloutError> {
        let mut due = Vec::new();
        {
            let mut records = self.records.lock().await;
            for record in records.values_mut() {
                if record.phase != Phase::Running
                    || self.router.snapshot().function(&record.function).is_none()
                {
                    continue;
                }
                let elapsed = now_ms() - record.step_started_ms;
                if elapsed < record.spec.interval_ms as i64 {
                    continue;
                }
                let (candidate, stable) = self.observe(record, elapsed);
                let verdict = judge(&record.spec, &candidate, &stable);
                match plan::decide(record, &verdict) {
                    // Only the reason changes; it is not worth a commit.
                    Transition::Hold => {
                        plan::advance(record, verdict, candidate, stable, now_ms(), "");
                    }
                    transition => {
                        due.push((record.clone(), transition, verdict, candidate, stable))
                    }
                }
            }
        }
        for (seen, transition, verdict, candidate, stable) in due {
            let note = match transition {
                Transition::Advance { share_bp } => self.warm_before_shift(&seen, share_bp).await,
                _ => String::new(),
            };
            let mut records = self.records.lock().await;
            let Some(record) = records.get_mut(&seen.function) else {
                continue;
            };
            if record.phase != Phase::Running
                || record.step != seen.step
                || record.step_started_ms != seen.step_started_ms
            {
                continue;
            }
            let mut updated = record.clone();
            let transition =
                plan::advance(&mut updated, verdict, candidate, stable, now_ms(), &note);
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
            self.save(&mut updated, change, Actor::Rollout).await?;
            *record = updated;
            if transition == (Transition::Finish { promote: true }) {
                self.warm_promoted(record);
            }
        }
        Ok(())
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
        let spec = &record.spec;
        let Some(deployment) = self
            .router
            .snapshot()
            .function(&record.function)
            .and_then(|routes| routes.deployment(spec.candidate).cloned())
        else {
            return String::new();
        };
        let total = self
            .scaler
            .recent_concurrency(&record.function, &[spec.stable, spec.candidate]);
        let expected = share_bp.ceil_of(u64::from(total)) as u32;
        let warm = warm_target(expected.max(1), false, 0, deployment.config.max_concurrency);
        let hold = Duration::from_millis(spec.interval_ms) + Duration::from_secs(30);
        self.scaler.boost(&deployment, warm, hold);
        let deadline = tokio::time::Instant::now() + WARM_WAIT;
        while self.scaler.warm_of(&record.function, spec.candidate) < warm
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ready = self.scaler.warm_of(&record.function, spec.candidate);
        format!(" (warmed {ready} of {warm} instances first)")
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

    fn observe(&self, record: &RolloutRecord, elapsed_ms: i64) -> (Observed, Observed) {
        let window = Duration::from_millis(elapsed_ms.max(1000) as u64)
            .min(Duration::from_millis(plan::MAX_INTERVAL_MS));
        let health = self.metering.health(&record.function, window);
        let of = |label: VersionLabel| {
            health
                .iter()
                .find(|h| h.version == label)
                .map(observed)
                .unwrap_or_default()
        };
        (of(record.spec.candidate), of(record.spec.stable))
    }

    fn status_of(&self, record: &RolloutRecord) -> RolloutStatus {
        let observing = (record.phase == Phase::Running).then(|| {
            let elapsed_ms = now_ms() - record.step_started_ms;
            let (candidate, stable) = self.observe(record, elapsed_ms);
            StepHealth {
                elapsed_ms,
                candidate,
                stable,
            }
        });
        RolloutStatus {
            current_bp: match record.phase {
                Phase::RolledBack | Phase::Aborted => BasisPoints::ZERO,
                _ => record.share_bp(),
            },
            record: record.clone(),
            observing,
            shadow: self.metering.shadow_report(&record.function),
        }
    }

    async fn change_phase(
        &self,
        function: &str,
        change: impl FnOnce(&mut RolloutRecord) -> Result<Option<BasisPoints>, String>,
    ) -> Result<RolloutStatus, RolloutError> {
        let mut records = self.records.lock().await;
        let record = records.get_mut(function).ok_or_else(|| {
            RolloutError::NotFound(format!("function {function:?} has no rollout"))
        })?;
        let mut updated = record.clone();
        let share = change(&mut updated).map_err(RolloutError::Conflict)?;
        let traffic = match share {
            Some(bp) => Some(self.traffic(&updated, bp).await?),
            None => None,
        };
        self.save(&mut updated, traffic, Actor::Admin).await?;
        *record = updated;
        Ok(self.status_of(record))
    }

    /// Persists `record` with its traffic change; the alias history gets the record's reason.
    async fn save(
        &self,
        record: &mut RolloutRecord,
        change: Option<TrafficChange>,
        actor: Actor,
    ) -> Result<(), StoreError> {
        record.updated_ms = now_ms();
        let why = match actor {
            Actor::Admin => Why::admin(record.reason.clone()),
            Actor::Rollout => Why::rollout(record.reason.clone()),
        };
        let state = serde_json::to_string(record).expect("rollouts serialize");
        self.registry
            .save_rollout(&record.function, state, change, why)
            .await
    }
}

/// Who made a rollout's change: the admin (pause, resume, abort) or the rollout itself.
#[derive(Clone, Copy)]
enum Actor {
    Admin,
    Rollout,
}

fn observed(health: &VersionHealth) -> Observed {
    Observed {
        requests: health.requests,
        errors: health.errors,
        error_rate: health.error_rate,
        p99_ms: health.p99_ms,
    }
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
