//! The per-request host state inside a `Store`: WASI context, wasi-http context, resource
//! table, memory limits and the outbound-request policy.
//!
//! Capabilities are granted here and nowhere else: no preopened directories, no inherited
//! environment (only the function's configured env), no sockets (wasmtime-wasi denies TCP and
//! UDP unless asked), clocks and random available, outbound HTTP only to the function's
//! allowlisted origins, stdout and stderr captured (bounded) for the function's log.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::guest_output::GuestOutput;
use super::limits::InstanceLimits;
use crate::model::FunctionConfig;

pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    pub(super) limits: InstanceLimits,
    hooks: OutboundPolicy,
    /// When the current request (or, for a warm instance, its instantiation) must end; the
    /// epoch callback interrupts the guest past it. Re-armed when a warm instance is taken.
    pub(super) deadline: std::time::Instant,
    /// Epoch ticks the guest has run for since the last re-arm, against `budget_ticks`.
    pub(super) ticks: u64,
    pub(super) budget_ticks: u64,
    /// Set by the epoch callback when the request used up its CPU budget, so the resulting
    /// interrupt is reported as that rather than as a timeout.
    pub(super) cpu_budget_exhausted: bool,
}

impl HostState {
    /// State for one request; the guest's stdout and stderr go to `output`.
    pub fn new(config: &FunctionConfig, output: &GuestOutput) -> Self {
        let mut wasi = WasiCtx::builder();
        for (key, value) in &config.env {
            wasi.env(key, value);
        }
        wasi.stdout(output.clone()).stderr(output.clone());
        Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: InstanceLimits::new(config.memory_mb),
            hooks: OutboundPolicy {
                allowed: config.allow_outbound.clone(),
            },
            deadline: std::time::Instant::now(),
            ticks: 0,
            budget_ticks: u64::MAX,
            cpu_budget_exhausted: false,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outbound HTTP is refused unless the request's origin (`scheme://host:port`) is on the
/// function's allowlist, like Spin's `allowed_outbound_hosts`. A refused call returns
/// `HTTP-request-denied` to the guest rather than trapping it, and is logged.
struct OutboundPolicy {
    /// Normalized origins (see `registry::normalize_origin`).
    allowed: Vec<String>,
}

impl OutboundPolicy {
    fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else {
            return false;
        };
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        let origin = format!("{scheme}://{}:{port}", host.to_ascii_lowercase());
        self.allowed.contains(&origin)
    }
}

/// Denied outbound calls logged per second, host-wide; the rest are counted and the count is
/// reported with the next line logged.
const DENIAL_LOGS_PER_SECOND: u32 = 10;

static DENIAL_LOG: LogLimiter = LogLimiter::new(DENIAL_LOGS_PER_SECOND);

/// At most `per_second` log lines per second; lock-free, approximate at second boundaries.
struct LogLimiter {
    per_second: u32,
    second: std::sync::atomic::AtomicU64,
    logged: std::sync::atomic::AtomicU32,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogLimiter {
    const fn new(per_second: u32) -> Self {
        Self {
            per_second,
            second: std::sync::atomic::AtomicU64::new(0),
            logged: std::sync::atomic::AtomicU32::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(lines suppressed since the last one logged)` if this line may be logged now.
    fn admit(&self, now_secs: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::AcqRel;
        if self.second.swap(now_secs, AcqRel) != now_secs {
            self.logged.store(0, std::sync::atomic::Ordering::Release);
        }
        if self.logged.fetch_add(1, AcqRel) < self.per_second {
            Some(self.suppressed.swap(0, AcqRel))
        } else {
            self.suppressed.fetch_add(1, AcqRel);
            None
        }
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendFuture {
        if !self.allows(request.uri()) {
            // A function looping on a denied call must not flood the host's log.
            if let Some(suppressed) =
                DENIAL_LOG.admit(crate::model::now_ms().div_euclid(1000) as u64)
            {
                tracing::warn!(
                    uri = %request.uri(),
                    suppressed,
                    "outbound HTTP request denied: the origin is not in the function's allow_outbound list"
                );
            }
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        tracing::debug!(uri = %request.uri(), "outbound HTTP request allowed");
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_logs_are_rate_limited_and_count_what_they_drop() {
        let limiter = LogLimiter::new(3);
        let first: Vec<Option<u64>> = (0..5).map(|_| limiter.admit(100)).collect();
        assert_eq!(first, [Some(0), Some(0), Some(0), None, None]);
        assert_eq!(
            limiter.admit(101),
            Some(2),
            "the next second reports the two dropped"
        );
        assert_eq!(limiter.admit(101), Some(0));
    }

    #[test]
    fn outbound_policy_matches_normalized_origins() {
        let policy = OutboundPolicy {
            allowed: vec![
                "https://api.example.com:443".into(),
                "http://127.0.0.1:8123".into(),
            ],
        };
        for ok in [
            "https://api.example.com/v1/x",
            "https://API.example.com:443/",
            "http://127.0.0.1:8123/ping",
        ] {
            assert!(policy.allows(&ok.parse().unwrap()), "{ok}");
        }
        for denied in [
            "http://api.example.com/",
            "https://api.example.com:8443/",
            "https://evil.com/",
            "http://127.0.0.1:8124/",
        ] {
            assert!(!policy.allows(&denied.parse().unwrap()), "{denied}");
        }
    }
}
