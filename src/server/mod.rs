//! The two HTTP planes: the data plane (`/NAME[@QUALIFIER]/...` invokes functions) and the
//! admin plane (`/v1/...`, bearer-token JSON API). Both speak HTTP/1.1 with keep-alive and
//! HTTP/2 over cleartext (h2c), detected per connection.
//!
//! [`run`] accepts until the `shutdown` future resolves, then stops accepting, lets in-flight
//! requests finish for up to a grace period, and returns.

mod admin;
mod body;
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
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

pub use body::Body;

use crate::app::App;

/// Default size limit of an uploaded module.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 64 << 20;

/// Reads the admin token from `<data-dir>/admin.token`, creating a random one (mode 0600) on
/// first start.
pub fn load_or_create_admin_token(data_dir: &Path) -> anyhow::Result<String> {
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
