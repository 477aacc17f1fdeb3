//! The two HTTP planes: the data plane (`/NAME[@QUALIFIER]/...` invokes functions) and the
//! admin plane (`/v1/...`, bearer-token JSON API). Both speak HTTP/1.1 with keep-alive and
//! HTTP/2 over cleartext (h2c), detected per connection.
//!
//! [`run`] accepts until the `shutdown` future resolves, then stops accepting, lets in-flight
//! requests finish for up to a grace period, and returns.

mod admin;
mod asynchronous;
mod body;
mod console;
mod data_plane;
mod error;
mod shadow;

use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use body::Body;

use crate::app::App;

/// Default size limit of an uploaded module.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 64 << 20;

/// Reads the admin token from `<data-dir>/admin.token`, creating a random one (mode 0600) on
/// first start.
pub fn load_or_create_admin_token(data_dir: &Path) -> anyhow::Result<String> {
    if let Some(token) = read_admin_token(data_dir)? {
        return Ok(token);
    }
    let token = new_token()?;
    write_admin_token(data_dir, &token)?;
    tracing::info!("created a new admin token");
    Ok(token)
}

/// The fleet's admin token, kept in the shared registry: the first node to start stores its
/// own (an existing `admin.token`, or a new one), and every node writes the stored one to its
/// data directory's `admin.token` (0600), so the CLI works the same against any node.
pub async fn fleet_admin_token(
    registry: &crate::registry::Registry,
    data_dir: &Path,
) -> anyhow::Result<String> {
    let local = read_admin_token(data_dir)?;
    let candidate = match &local {
        Some(token) => token.clone(),
        None => new_token()?,
    };
    let token = registry
        .setting_or_init(FLEET_TOKEN_SETTING, candidate)
        .await
        .context("reading the fleet's admin token from the registry")?;
    if local.as_deref() != Some(token.as_str()) {
        write_admin_token(data_dir, &token)?;
        tracing::info!("wrote the fleet's admin token to this node's data directory");
    }
    Ok(token)
}

/// The registry setting that holds the fleet's admin token.
const FLEET_TOKEN_SETTING: &str = "admin_token";

/// `admin.token` from `data_dir` if it exists and is not empty; refuses one other users
/// may read.
fn read_admin_token(data_dir: &Path) -> anyhow::Result<Option<String>> {
    let path = data_dir.join("admin.token");
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(&path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "the admin token {} is readable by other users (mode {mode:o}), so anyone on \
                 this machine may hold it: run `chmod 600 {}` if it never leaked, or delete \
                 it to have a new one made",
                path.display(),
                path.display()
            );
        }
    }
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => Ok(Some(token.trim().to_string())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_admin_token(data_dir: &Path, token: &str) -> anyhow::Result<()> {
    let path = data_dir.join("admin.token");
    crate::durable_file::write(&path, format!("{token}\n").as_bytes(), 0o600)
        .with_context(|| format!("writing {}", path.display()))
}

/// 32 random bytes in hex.
fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("reading the OS random source: {e}"))?;
    Ok(hex::encode(bytes))
}

#[derive(Clone, Copy, Debug)]
enum Plane {
    Data,
    Admin,
}

/// How `run` serves connections.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// How long in-flight requests may run after shutdown starts.
    pub grace: Duration,
    /// Largest request head (request line and headers); bigger ones get 431.
    pub max_header_bytes: usize,
    /// A request head must arrive within this; it is also how long an idle keep-alive
    /// connection waits for its next request before it is closed.
    pub header_read_timeout: Duration,
    /// Most data-plane connections open at once; past it, new ones wait in the backlog.
    pub max_connections: usize,
    /// Most admin-plane connections open at once, counted apart so that clients of the data
    /// plane can never lock the operator out.
    pub max_admin_connections: usize,
    /// HTTP/2: most streams open at once on one connection.
    pub h2_max_streams: u32,
    /// HTTP/2: how often an idle connection is pinged, and how long the answer may take.
    pub h2_keep_alive: Duration,
    /// After the stop signal, how long the host keeps serving with `/readyz` failing, so a
    /// load balancer's health check takes it out of rotation before it stops accepting.
    pub drain_delay: Duration,
}

/// The probes both planes answer without a token: `/healthz` (alive: 200 until the process
/// ends) and `/readyz` (ready for traffic: 503 once shutdown has started).
///
/// A dependency that is down is named in `/readyz`'s body but does not fail it: the data
/// plane serves what is deployed without the database, and failing readiness on every node
/// of a fleet at once (they share the database) would turn a control-plane outage into a
/// full one.
fn probe(host: &App, path: &str) -> Option<http::Response<body::Body>> {
    use std::sync::atomic::Ordering;
    match path {
        "/healthz" => Some(body::text(http::StatusCode::OK, "ok\n")),
        "/readyz" if host.draining.load(Ordering::Acquire) => Some(body::text(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "draining\n",
        )),
        // Load balancers ask every second or so: the usual answer costs no lock and no copy.
        "/readyz" if host.registry.dependencies().down().is_empty() => {
            Some(body::text(http::StatusCode::OK, "ready\n"))
        }
        "/readyz" => {
            let mut text = String::from("ready\n");
            for dependency in host.registry.dependencies().report() {
                if !dependency.up {
                    text.push_str(&format!(
                        "degraded: {} ({}) is down: {}\n",
                        dependency.name,
                        dependency.what,
                        dependency.error.as_deref().unwrap_or("unknown error")
                    ));
                }
            }
            Some(body::text(http::StatusCode::OK, text))
        }
        _ => None,
    }
}

/// Serves both planes until `shutdown` resolves, then drains for at most the grace period.
/// Each plane has its own connection budget, so a flood on one never starves the other.
pub async fn run(
    host: Arc<App>,
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
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(options.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(options.h2_max_streams)
        .keep_alive_interval(options.h2_keep_alive)
        .keep_alive_timeout(options.h2_keep_alive);
    let builder = Arc::new(builder);
    let data_slots = Arc::new(Semaphore::new(options.max_connections));
    let admin_slots = Arc::new(Semaphore::new(options.max_admin_connections));
    let grace = options.grace;
    // Stop signal, then (if configured) a delay serving with readiness failing.
    let drain_delay = options.drain_delay;
    let host_for_stop = host.clone();
    let stop = async move {
        shutdown.await;
        host_for_stop
            .draining
            .store(true, std::sync::atomic::Ordering::Release);
        if !drain_delay.is_zero() {
            tracing::info!(
                delay_secs = drain_delay.as_secs_f64(),
                "draining: /readyz fails, still serving until load balancers have noticed"
            );
            tokio::time::sleep(drain_delay).await;
        }
    };
    tokio::pin!(stop);
    loop {
        let (accepted, plane, slot) = tokio::select! {
            (accepted, slot) = accept(&data, &data_slots) => (accepted, Plane::Data, slot),
            (accepted, slot) = accept(&admin, &admin_slots) => (accepted, Plane::Admin, slot),
            () = &mut stop => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, ?plane, "accept failed");
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
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let header_read_timeout = options.header_read_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            // hyper's header timer starts once it knows the protocol, which takes a first
            // byte: a client that connects and sends nothing is closed here.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(header_read_timeout, stream.peek(&mut first)).await,
                Ok(Ok(1))
            ) {
                return;
            }
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
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

/// Accepts one connection once the plane has room for it.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (
    std::io::Result<(TcpStream, SocketAddr)>,
    OwnedSemaphorePermit,
) {
    let slot = slots.clone().acquire_owned().await.expect("never closed");
    (listener.accept().await, slot)
}
