//! The two HTTP planes: the data plane (`/NAME[@QUALIFIER]/...` invokes functions) and the
//! admin plane (`/v1/...`, bearer-token JSON API). Both speak HTTP/1.1 with keep-alive and
//! HTTP/2 over cleartext (h2c), detected per connection.
//!
//! [`run`] accepts until the `shutdown` future resolves, then stops accepting, lets in-flight
//! requests finish for up to a grace period, and returns.

mod admin;
mod body;
mod data_plane;
pub mod delivery;
mod error;
mod shadow;
pub mod timers;

use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

pub use body::Body;

use crate::admission::Admission;
use crate::engine::Engine;
use crate::function_logs::FunctionLogs;
use crate::metering::Metering;
use crate::objects::Buckets;
use crate::registry::Registry;
use crate::rollout::Rollouts;
use crate::routing::Router;
use crate::scaling::{Scaler, ScalingOptions};

/// Default size limit of an uploaded module.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 64 << 20;

/// Everything a request handler needs, shared by both planes.
pub struct Host {
    pub registry: Arc<Registry>,
    pub router: Arc<Router>,
    pub engine: Arc<Engine>,
    pub scaler: Arc<Scaler>,
    pub rollouts: Arc<Rollouts>,
    pub admission: Admission,
    /// Shadow (mirrored) requests running at once, host-wide.
    pub shadow_slots: tokio::sync::Semaphore,
    pub logs: Arc<FunctionLogs>,
    pub metering: Arc<Metering>,
    /// Buckets that object triggers watch.
    pub buckets: Buckets,
    /// Wakes the event delivery loop (new events queued).
    pub deliveries: tokio::sync::Notify,
    /// Wakes the timer loop (triggers added or deleted).
    pub timers_changed: tokio::sync::Notify,
    admin_token: String,
    pub max_upload_bytes: u64,
    pub started: Instant,
}

/// The settings a host starts with.
pub struct HostOptions {
    pub admin_token: String,
    pub max_upload_bytes: u64,
    /// How long a request may wait for a concurrency slot.
    pub queue_timeout: Duration,
    pub scaling: ScalingOptions,
    pub buckets: Buckets,
}

impl Host {
    pub fn new(
        registry: Registry,
        router: Arc<Router>,
        engine: Engine,
        options: HostOptions,
    ) -> Self {
        let HostOptions {
            admin_token,
            max_upload_bytes,
            queue_timeout,
            scaling,
            buckets,
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
        let scaler = Arc::new(Scaler::new(
            engine.clone(),
            router.clone(),
            registry.modules().clone(),
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
        Self {
            registry,
            router,
            engine,
            scaler,
            rollouts,
            admission: Admission::new(queue_timeout, host_limit),
            shadow_slots: tokio::sync::Semaphore::new(shadow::SHADOW_CONCURRENCY),
            logs: Arc::new(FunctionLogs::default()),
            metering,
            buckets,
            deliveries: tokio::sync::Notify::new(),
            timers_changed: tokio::sync::Notify::new(),
            admin_token,
            max_upload_bytes,
            started: Instant::now(),
        }
    }
}

impl Host {
    /// 404 unless `function` exists, answered from the routing snapshot (no database read).
    fn ensure_function(&self, function: &str) -> Result<(), error::ApiError> {
        match self.router.snapshot().resolve(function, Some("latest")) {
            Ok(_) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes usage recorded since the last flush to the database.
    pub async fn flush_usage(&self) {
        let rows = self.metering.take_pending();
        let count = rows.len();
        if let Err(e) = self.registry.add_usage(rows).await {
            tracing::error!(error = %e, rows = count, "could not persist usage; these records are lost");
        }
    }

    /// Flushes usage every `interval` until the task is dropped.
    pub async fn flush_usage_every(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.flush_usage().await;
        }
    }
}

/// Reads the admin token from `<data-dir>/admin.token`, creating a random one (mode 0600) on
/// first start.
pub fn load_or_create_admin_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("admin.token");
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("reading the OS random source: {e}"))?;
    let token = hex::encode(bytes);
    crate::durable_file::write(&path, format!("{token}\n").as_bytes(), 0o600)
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "created a new admin token");
    Ok(token)
}

#[derive(Clone, Copy, Debug)]
enum Plane {
    Data,
    Admin,
}

/// Serves both planes until `shutdown` resolves, then drains for at most the grace period.
/// How `run` serves connections.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// How long in-flight requests may run after shutdown starts.
    pub grace: Duration,
    /// Largest request head (request line and headers); bigger ones get 431.
    pub max_header_bytes: usize,
}

pub async fn run(
    host: Arc<Host>,
    data: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()>,
    options: ServeOptions,
) -> anyhow::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's HTTP/1 buffer must hold at least 8 KiB.
    builder
        .http1()
        .max_buf_size(options.max_header_bytes.max(8192));
    builder
        .http2()
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let grace = options.grace;
    tokio::pin!(shutdown);
    loop {
        let (accepted, plane) = tokio::select! {
            accepted = data.accept() => (accepted, Plane::Data),
            accepted = admin.accept() => (accepted, Plane::Admin),
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let host = host.clone();
        let service = service_fn(move |request| {
            let host = host.clone();
            async move {
                let response = match plane {
                    Plane::Data => data_plane::handle(&host, request).await,
                    Plane::Admin => admin::handle(&host, request).await,
                };
                Ok::<_, Infallible>(response)
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop((data, admin));
    tracing::info!(
        grace_secs = grace.as_secs_f64(),
        "shutting down: no longer accepting, draining in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
    Ok(())
}
