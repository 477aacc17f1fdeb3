//! The application: builds every subsystem once, owns their background loops, and holds the
//! operations that fan out across subsystems (deleting a function), so each is written once.
//!
//! Background loops (usage flushing, autoscaling, rollouts, event delivery and pruning,
//! timers) run
//! supervised: a loop that panics is logged and restarted after a pause, never silently
//! lost. Shutdown stops them in order, each between units of work: first the producers
//! (timers, rollouts), then the consumers (deliveries finish what they claimed), then the
//! scaler, and last the usage flush, so the final usage includes everything that ran.

mod fleet;
mod probes;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::admission::Admission;
use crate::async_lane::{AsyncLane, LaneOptions};
use crate::engine::Engine;
use crate::events::Events;
use crate::events::buckets::Buckets;
use crate::function_logs::FunctionLogs;
use crate::invocation::Invoker;
use crate::metering::Metering;
use crate::model::{NodeRecord, Why};
use crate::registry::Registry;
use crate::rollout::Rollouts;
use crate::routing::Router;
use crate::scaling::{Scaler, ScalingOptions};
use crate::shutdown::{self, Stop, StopSender};
use crate::store::StoreError;

/// Shadow (mirrored) requests running at once, host-wide.
pub const SHADOW_CONCURRENCY: usize = 16;
/// How long a panicked background loop waits before it is restarted.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// Everything a request handler or background loop needs.
pub struct App {
    pub registry: Arc<Registry>,
    pub router: Arc<Router>,
    pub engine: Arc<Engine>,
    pub scaler: Arc<Scaler>,
    pub rollouts: Arc<Rollouts>,
    pub invoker: Arc<Invoker>,
    pub events: Arc<Events>,
    /// Asynchronous invocations: queued in the outbox, run in their own lane.
    pub lane: Arc<AsyncLane>,
    pub logs: Arc<FunctionLogs>,
    pub metering: Arc<Metering>,
    /// Shadow (mirrored) requests running at once, host-wide.
    pub shadow_slots: tokio::sync::Semaphore,
    /// Who is calling, on both planes.
    pub gatekeeper: crate::auth::Gatekeeper,
    pub max_upload_bytes: u64,
    pub started: Instant,
    /// Set when shutdown starts: `/readyz` fails so load balancers move traffic away while
    /// the host still serves (`--drain-delay`), before it stops accepting.
    pub draining: std::sync::atomic::AtomicBool,
    /// OpenTelemetry traces, when exported (`--otlp-endpoint`).
    pub tracing: Option<Arc<crate::telemetry::Tracing>>,
}

/// The settings an app starts with.
pub struct AppOptions {
    pub admin_token: String,
    pub max_upload_bytes: u64,
    /// How long a request may wait for a concurrency slot.
    pub queue_timeout: Duration,
    pub scaling: ScalingOptions,
    pub buckets: Buckets,
    /// How long a request body may stop arriving before the request fails with 408.
    pub body_timeout: Duration,
    /// How long an event claimed by this node stays its own without a renewal.
    pub event_lease: Duration,
    /// Seals and opens function secrets; `None` when the host has no key.
    pub secrets: Option<crate::secrets::SecretsKey>,
    /// The asynchronous lane's limits.
    pub lane: LaneOptions,
    /// OpenTelemetry traces, when exported.
    pub tracing: Option<Arc<crate::telemetry::Tracing>>,
}

impl App {
    pub fn new(
        registry: Registry,
        router: Arc<Router>,
        engine: Engine,
        options: AppOptions,
    ) -> Self {
        let AppOptions {
            admin_token,
            max_upload_bytes,
            queue_timeout,
            scaling,
            buckets,
            body_timeout,
            event_lease,
            secrets,
            lane,
            tracing,
        } = options;
        let engine = Arc::new(engine);
        // Requests may use every instance slot that warm pools cannot hold.
        let status = engine.status();
        let host_limit = if status.pooling_allocator {
            status
                .pool_instances
                .saturating_sub(scaling.max_warm)
                .max(1)
        } else {
            u32::MAX
        };
        let metering = Arc::new(Metering::default());
        let logs = Arc::new(FunctionLogs::default());
        let scaler = Arc::new(Scaler::new(
            engine.clone(),
            router.clone(),
            metering.clone(),
            scaling,
        ));
        let registry = Arc::new(registry);
        let rollouts = Arc::new(Rollouts::new(
            registry.clone(),
            router.clone(),
            metering.clone(),
            scaler.clone(),
        ));
        let invoker = Arc::new(Invoker {
            body_timeout,
            engine: engine.clone(),
            scaler: scaler.clone(),
            admission: Admission::new(queue_timeout, host_limit, lane.concurrency),
            metering: metering.clone(),
            logs: logs.clone(),
            secrets,
        });
        let events = Arc::new(Events::new(
            registry.clone(),
            router.clone(),
            invoker.clone(),
            buckets,
            event_lease,
        ));
        let lane = Arc::new(AsyncLane::new(events.clone(), lane));
        let gatekeeper = crate::auth::Gatekeeper::new(admin_token, registry.clone());
        Self {
            registry,
            router,
            engine,
            scaler,
            rollouts,
            invoker,
            events,
            lane,
            logs,
            metering,
            shadow_slots: tokio::sync::Semaphore::new(SHADOW_CONCURRENCY),
            gatekeeper,
            max_upload_bytes,
            started: Instant::now(),
            draining: std::sync::atomic::AtomicBool::new(false),
            tracing,
        }
    }

    /// Deletes a function and everything every subsystem keeps for it: compiled code no
    /// version uses any more, logs, health, admission gates, warm pools, its rollout, and
    /// its timers (woken so a frequent timer stops at once).
    pub async fn delete_function(&self, name: &str, actor: &str) -> Result<(), StoreError> {
        let unused = self
            .registry
            .delete_function(name, Why::by(actor, "function deleted"))
            .await?;
        unused.iter().for_each(|digest| self.engine.forget(digest));
        self.forget_function(name).await;
        Ok(())
    }

    /// Drops what every subsystem keeps for a function that no longer exists (deleted here,
    /// or by another node of the fleet).
    async fn forget_function(&self, name: &str) {
        self.logs.remove(name);
        self.metering.forget(name);
        self.invoker.admission.forget(name);
        self.lane.forget(name);
        self.scaler.forget(name);
        self.rollouts.forget(name).await;
        self.events.timers_changed.notify_one();
    }

    /// Re-reads namespaces, quotas and keys, and applies them: the concurrency quotas to
    /// admission, the invoke keys to the data plane's key ring. Run at start, after every
    /// namespace or key change here, and when another node made one.
    pub async fn apply_tenancy(&self) -> Result<(), StoreError> {
        self.registry.reload_namespaces().await?;
        let limits: Vec<_> = self
            .registry
            .namespace_list()
            .into_iter()
            .map(|ns| (ns.name, ns.quotas.concurrency))
            .collect();
        self.invoker.admission.set_namespace_limits(&limits);
        self.gatekeeper.reload().await
    }

    /// Deletes one version, and its compiled code if no other version uses it.
    pub async fn delete_version(
        &self,
        name: &str,
        number: u32,
        actor: &str,
    ) -> Result<(), StoreError> {
        let unused = self
            .registry
            .delete_version(
                name,
                number,
                Why::by(actor, format!("deleted version {number}")),
            )
            .await?;
        unused.iter().for_each(|digest| self.engine.forget(digest));
        Ok(())
    }

    /// Writes usage recorded since the last flush to the database; what it cannot write is
    /// kept for the next flush (`Metering::restore`).
    pub async fn flush_usage(&self) {
        let rows = self.metering.take_pending();
        let count = rows.len();
        if let Err(e) = self.registry.add_usage(rows.clone()).await {
            // One transaction: nothing of the batch was written (a cut at the commit itself
            // could count it twice, the price of never losing it). Kept for the next flush.
            self.metering.restore(rows);
            if e.outage().is_none() {
                tracing::error!(error = %e, rows = count, "could not persist usage; kept for the next flush");
            }
        }
    }

    /// Flushes usage every `interval` until shutdown.
    async fn flush_usage_every(self: Arc<Self>, interval: Duration, mut stop: Stop) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.flush_usage().await,
                () = stop.stopped() => return,
            }
        }
    }

    /// Starts the background loops. `usage_flush_interval` must be above zero. `node`
    /// describes this process for the fleet's membership.
    pub fn start(
        self: &Arc<Self>,
        usage_flush_interval: Duration,
        event_retention: Duration,
        node: NodeRecord,
    ) -> Tasks {
        let mut tasks = Tasks::default();
        // First to start, last to stop: the node stays a member while it drains.
        let (app, record) = (self.clone(), node.clone());
        tasks.spawn_last("heartbeat", move |stop| {
            fleet::heartbeat(app.clone(), record.clone(), stop)
        });
        if let Some(feed) = self.registry.watch() {
            let app = self.clone();
            let feed = Arc::new(tokio::sync::Mutex::new(feed));
            tasks.spawn("change feed", move |stop| {
                fleet::follow(app.clone(), feed.clone(), stop)
            });
        }
        let app = self.clone();
        tasks.spawn("event pruning", move |stop| {
            crate::events::delivery::prune(app.events.clone(), event_retention, stop)
        });
        let app = self.clone();
        tasks.spawn("timers", move |stop| {
            crate::events::timers::run(app.events.clone(), stop)
        });
        let (app, id) = (self.clone(), node.id.clone());
        tasks.spawn("rollouts", move |stop| {
            app.rollouts.clone().run(id.clone(), stop)
        });
        if self.registry.is_shared() {
            let (app, id) = (self.clone(), node.id.clone());
            tasks.spawn("rollout health", move |stop| {
                app.rollouts.clone().publish_health(id.clone(), stop)
            });
        }
        let app = self.clone();
        tasks.spawn("event deliveries", move |stop| {
            crate::events::delivery::run(app.events.clone(), stop)
        });
        let app = self.clone();
        tasks.spawn("asynchronous invocations", move |stop| {
            crate::async_lane::run::run(app.lane.clone(), stop)
        });
        let app = self.clone();
        tasks.spawn("request body sweep", move |stop| {
            crate::async_lane::sweep::run(app.lane.clone(), stop)
        });
        // After deliveries stop, so a delivery finishing during shutdown keeps its lease.
        let app = self.clone();
        tasks.spawn("event leases", move |stop| {
            crate::events::delivery::renew_leases(app.events.clone(), stop)
        });
        let app = self.clone();
        tasks.spawn("scaler", move |stop| app.scaler.clone().run(stop));
        let app = self.clone();
        tasks.spawn("dependency probes", move |stop| {
            probes::run(app.clone(), stop)
        });
        let app = self.clone();
        tasks.spawn("usage flush", move |stop| {
            app.clone().flush_usage_every(usage_flush_interval, stop)
        });
        tasks
    }
}

/// The running background loops, in the order they stop.
#[derive(Default)]
pub struct Tasks {
    loops: Vec<Loop>,
    /// Stopped after every other loop.
    last: Vec<Loop>,
}

/// A running loop: its name, how to stop it, and its task.
type Loop = (&'static str, StopSender, tokio::task::JoinHandle<()>);

/// Starts `make(stop)` under [`supervise`].
fn supervised<F, Fut>(name: &'static str, make: F) -> Loop
where
    F: Fn(Stop) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (sender, stop) = shutdown::channel();
    (name, sender, tokio::spawn(supervise(name, make, stop)))
}

impl Tasks {
    /// Runs `make(stop)` supervised: restarted after [`RESTART_PAUSE`] if it panics, done
    /// when it returns (which it does once `stop` fires).
    fn spawn<F, Fut>(&mut self, name: &'static str, make: F)
    where
        F: Fn(Stop) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.loops.push(supervised(name, make));
    }

    /// Like [`Self::spawn`], but stopped after all the others.
    fn spawn_last<F, Fut>(&mut self, name: &'static str, make: F)
    where
        F: Fn(Stop) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.last.push(supervised(name, make));
    }

    /// Stops each loop in turn, waiting for it to finish its unit of work, for at most
    /// `grace` in all; a loop still busy then is aborted.
    pub async fn shutdown(self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        for (name, sender, mut handle) in self.loops.into_iter().chain(self.last) {
            sender.stop();
            if tokio::time::timeout_at(deadline, &mut handle)
                .await
                .is_err()
            {
                tracing::warn!(
                    task = name,
                    "background task did not stop in time; aborting it"
                );
                handle.abort();
            }
        }
    }
}

async fn supervise<F, Fut>(name: &'static str, make: F, stop: Stop)
where
    F: Fn(Stop) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match tokio::spawn(make(stop.clone())).await {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                tracing::error!(task = name, "background task panicked; restarting it");
                if stop.is_stopped() {
                    return;
                }
                tokio::time::sleep(RESTART_PAUSE).await;
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_panicking_loop_is_restarted_and_stops_on_shutdown() {
        let runs = Arc::new(AtomicU32::new(0));
        let mut tasks = Tasks::default();
        let counter = runs.clone();
        tasks.spawn("flaky", move |mut stop| {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("boom");
                }
                stop.stopped().await;
            }
        });
        tokio::time::sleep(RESTART_PAUSE * 3).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "restarted after each panic");
        tasks.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_a_loop_finish_its_unit_of_work() {
        let finished = Arc::new(AtomicU32::new(0));
        let mut tasks = Tasks::default();
        let done = finished.clone();
        tasks.spawn("worker", move |mut stop| {
            let done = done.clone();
            async move {
                stop.stopped().await;
                // A unit of work that outlasts the stop signal.
                tokio::time::sleep(Duration::from_millis(100)).await;
                done.fetch_add(1, Ordering::SeqCst);
            }
        });
        tokio::task::yield_now().await;
        tasks.shutdown(Duration::from_secs(5)).await;
        assert_eq!(finished.load(Ordering::SeqCst), 1);
    }
}
