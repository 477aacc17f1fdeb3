//! The per-request host state inside a `Store`: WASI context, wasi-http context, resource
//! table, memory limits and the outbound-request policy.
//!
//! Capabilities are granted here and nowhere else: no preopened directories, no inherited
//! environment (only the function's configured env), no sockets (wasmtime-wasi denies TCP and
//! UDP unless asked), clocks and random available, outbound HTTP only to the function's
//! allowlisted origins, stdout and stderr captured (bounded) for the function's log.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::guest_output::GuestOutput;
use super::limits::InstanceLimits;
use super::outbound::{NetworkPolicy, OutboundPolicy};
use crate::model::FunctionConfig;

/// Most resources (header fields, requests, bodies, streams, pollables...) one instance may
/// hold at once: they live in host memory, outside the linear-memory limit. A request handler
/// uses a few dozen; past the cap, creating one traps.
pub const MAX_RESOURCES: usize = 1_000;
/// Most host memory one set of header fields may take (roughly: names, values and map
/// overhead), so headers a function builds stay within what an HTTP peer would accept.
pub const FIELD_SIZE_LIMIT: usize = 64 * 1024;

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
    /// This invocation's place in the CPU fairness policy.
    pub(super) fairness: super::fairness::Fairness,
    /// What the invocation may do with key-value stores; set when a request starts.
    pub(super) kv: super::keyvalue::KvAccess,
    /// What `wasi:config/store` answers: the config's values, set when a request starts.
    pub(super) config_values: super::config::ConfigValues,
}

impl HostState {
    /// State for one request; the guest's stdout and stderr go to `output`.
    pub fn new(
        config: &FunctionConfig,
        output: &GuestOutput,
        network: std::sync::Arc<NetworkPolicy>,
    ) -> Self {
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(FIELD_SIZE_LIMIT);
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            wasi: wasi_ctx(&config.env, &[], output),
            http,
            table,
            limits: InstanceLimits::new(config.memory_mb),
            hooks: OutboundPolicy::new(config.allow_outbound.clone(), network),
            deadline: std::time::Instant::now(),
            ticks: 0,
            budget_ticks: u64::MAX,
            cpu_budget_exhausted: false,
            fairness: super::fairness::Fairness::idle(),
            kv: super::keyvalue::KvAccess::default(),
            config_values: Default::default(),
        }
    }

    /// The trace the current request's outbound calls belong to (see `OutboundPolicy`).
    pub(super) fn set_trace(
        &mut self,
        trace: Option<std::sync::Arc<crate::telemetry::RequestTrace>>,
    ) {
        self.hooks.trace = trace;
    }

    /// Gives the guest `config`'s environment plus `secrets` from now on: per request, so a
    /// warm instance made before a secret rotated still sees the current value.
    pub(super) fn set_env(
        &mut self,
        config: &FunctionConfig,
        secrets: &[(String, String)],
        output: &GuestOutput,
    ) {
        let mut fresh = wasi_ctx(&config.env, secrets, output);
        std::mem::swap(self.wasi.cli(), fresh.cli());
    }

    /// The `wasi:config` and Spin variables bindings' view of this state.
    pub(super) fn config_values(&mut self) -> super::config::ConfigView<'_> {
        super::config::ConfigView {
            values: &self.config_values,
        }
    }

    /// The key-value bindings' view of this state.
    pub(super) fn kv(&mut self) -> super::keyvalue::KvView<'_> {
        super::keyvalue::KvView {
            access: &mut self.kv,
            table: &mut self.table,
        }
    }
}

/// The WASI context a function gets: its environment and nothing of the host's, output
/// captured.
fn wasi_ctx(
    env: &std::collections::BTreeMap<String, String>,
    secrets: &[(String, String)],
    output: &GuestOutput,
) -> WasiCtx {
    let mut wasi = WasiCtx::builder();
    for (key, value) in env.iter().chain(secrets.iter().map(|(k, v)| (k, v))) {
        wasi.env(key, value);
    }
    wasi.stdout(output.clone()).stderr(output.clone());
    wasi.build()
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
