//! The per-request host state inside a `Store`: WASI context, wasi-http context, resource
//! table, memory limits and the outbound-request policy.
//!
//! Capabilities are granted here and nowhere else: no preopened directories, no inherited
//! environment (only the function's configured env), no sockets (wasmtime-wasi denies TCP and
//! UDP unless asked), clocks and random available, outbound HTTP refused, stdout and stderr
//! captured (bounded) for the host's log.

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::guest_output::GuestOutput;
use crate::registry::FunctionConfig;

pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    pub(super) limits: StoreLimits,
    hooks: OutboundPolicy,
}

impl HostState {
    /// State for one request; the guest's stdout and stderr go to `output`.
    pub fn new(config: &FunctionConfig, output: &GuestOutput) -> Self {
        let mut wasi = WasiCtx::builder();
        wasi.envs(&config.env.iter().collect::<Vec<_>>())
            .stdout(output.clone())
            .stderr(output.clone());
        let memory_bytes = (config.memory_mb as usize) << 20;
        Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            hooks: OutboundPolicy,
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

/// Outbound HTTP from functions is refused until per-function allowlists exist; a refused call
/// returns `HTTP-request-denied` to the guest rather than trapping it.
struct OutboundPolicy;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        tracing::warn!(uri = %request.uri(), "outbound HTTP request denied: functions may not make outbound calls");
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}
