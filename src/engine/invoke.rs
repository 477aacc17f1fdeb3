//! One request through one fresh instance: build a `Store`, instantiate the pre-linked
//! component, call its handler (`wasi:http/incoming-handler.handle` for WASI 0.2,
//! `wasi:http/handler.handle` for WASI 0.3), and hand back the response head while the guest
//! keeps streaming the body from its own task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::Instrument as _;
use wasmtime::component::Resource;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::bindings::http::types::{IncomingRequest, ResponseOutparam, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p3::bindings::Service;

use super::guest_output::GuestOutput;
use super::{EPOCH_TICK, Engine, HostState, LoadedComponent, Pre};
use crate::model::{FunctionConfig, HttpWorld};

/// The response body as the guest streams it.
pub type GuestBody = HyperOutgoingBody;

/// How an invocation failed. `Display` is safe to show to the client: it names what happened
/// to the function, never host paths or internals (details go to the log).
#[derive(Clone, Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the function did not respond within its {0} ms timeout")]
    Timeout(u64),
    #[error("the host has no free instance slot right now; retry shortly")]
    Capacity,
    #[error("the function exceeded its memory limit of {0} MiB")]
    MemoryLimit(u32),
    #[error("the function used more than its CPU budget of {0} ms")]
    CpuBudget(u64),
    #[error("the function trapped: {0}")]
    Trap(String),
    #[error("the function failed: {0}")]
    Guest(String),
    #[error("bad request: {0}")]
    BadRequest(String),
}

/// A failed invocation with what the guest printed before it failed, for the host's log.
#[derive(Debug)]
pub struct InvokeFailure {
    pub error: InvokeError,
    pub guest_output: Option<String>,
}

/// What the host learns when an instance is gone.
#[derive(Debug)]
pub struct Finished {
    /// What the guest printed (bounded).
    pub output: Option<String>,
    /// How long instantiation took, if it completed.
    pub instantiation: Option<Duration>,
    /// Key-value operations the invocation made.
    pub kv_operations: u64,
}

/// Called once the instance is gone (finished, failed, or stopped at its deadline); it may
/// also hold resources (a concurrency slot) until then.
pub type OnFinish = Box<dyn FnOnce(Finished) + Send>;

/// Runs `on_finish` when dropped, so it also runs when the guest's task is aborted.
struct FinishGuard {
    output: GuestOutput,
    instantiation: Option<Duration>,
    kv_operations: Option<Arc<std::sync::atomic::AtomicU64>>,
    on_finish: Option<OnFinish>,
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        if let Some(on_finish) = self.on_finish.take() {
            on_finish(Finished {
                output: self.output.text(),
                instantiation: self.instantiation,
                kv_operations: self
                    .kv_operations
                    .as_ref()
                    .map_or(0, |n| n.load(Ordering::Relaxed)),
            });
        }
    }
}

/// The secrets one request may read, opened: by name, through `wasi:config` and as
/// environment variables.
#[derive(Default)]
pub struct RequestSecrets {
    pub config: Vec<(String, String)>,
    pub env: Vec<(String, String)>,
}

impl Engine {
    /// Runs `request` through `warm` if given, else through an instance of `component`
    /// created on the spot (a cold start, reported in [`Finished::instantiation`]), bounded
    /// by `config`'s limits. `on_finish` runs when the instance is gone, which for a streamed
    /// response is after the last body byte. `work` says how CPU fairness treats it.
    #[allow(clippy::too_many_arguments)]
    pub async fn invoke<B>(
        &self,
        component: &Arc<LoadedComponent>,
        function: &str,
        secrets: RequestSecrets,
        config: &FunctionConfig,
        warm: Option<WarmInstance>,
        request: hyper::Request<B>,
        on_finish: OnFinish,
        work: super::fairness::Work,
    ) -> Result<hyper::Response<GuestBody>, InvokeFailure>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let (mut store, guest, output) = match warm {
            Some(instance) => (instance.store, Some(instance.guest), instance.output),
            None => {
                let output = GuestOutput::default();
                (
                    self.new_store(component.world(), config, &output),
                    None,
                    output,
                )
            }
        };
        // Granted per request, not per instance: a warm instance was made before it knew
        // which request (and which config's stores) it would serve.
        self.grant(&mut store, function, config, secrets, &output);
        store.data_mut().set_trace(
            request
                .extensions()
                .get::<Arc<crate::telemetry::RequestTrace>>()
                .cloned(),
        );
        let guard = FinishGuard {
            output: output.clone(),
            instantiation: None,
            kv_operations: store.data().kv.used(),
            on_finish: Some(on_finish),
        };
        self.run(
            component, config, store, guest, request, &output, guard, work,
        )
        .await
        .map_err(|error| InvokeFailure {
            error,
            guest_output: output.text(),
        })
    }

    /// Instantiates `component` ahead of demand, with `config`'s limits, for a warm pool.
    pub async fn instantiate(
        &self,
        component: &Arc<LoadedComponent>,
        config: &FunctionConfig,
    ) -> Result<WarmInstance, InvokeError> {
        let output = GuestOutput::default();
        let mut store = self.new_store(component.world(), config, &output);
        let timeout = Duration::from_millis(config.timeout_ms);
        arm(&mut store, Instant::now() + timeout);
        let started = Instant::now();
        let instantiated = tokio::time::timeout(timeout, component.pre.instantiate(&mut store))
            .await
            .map_err(|_| InvokeError::Timeout(config.timeout_ms))?;
        let guest = instantiated.map_err(|e| {
            classify(
                e,
                &FailureContext::of(config),
                store.data().cpu_budget_exhausted,
            )
        })?;
        Ok(WarmInstance {
            store,
            guest,
            output,
            instantiation: started.elapsed(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn run<B>(
        &self,
        component: &Arc<LoadedComponent>,
        config: &FunctionConfig,
        mut store: Store<HostState>,
        guest: Option<Guest>,
        request: hyper::Request<B>,
        output: &GuestOutput,
        guard: FinishGuard,
        work: super::fairness::Work,
    ) -> Result<hyper::Response<GuestBody>, InvokeError>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let timeout = Duration::from_millis(config.timeout_ms);
        let deadline = Instant::now() + timeout;
        arm(&mut store, deadline);
        if let Some(ticks) = self.long_after_ticks {
            match &work {
                super::fairness::Work::Short(_) => {
                    store.data_mut().fairness.begin(&self.cpu_gate, ticks)
                }
                super::fairness::Work::Background => {
                    store.data_mut().fairness.begin_background(&self.cpu_gate)
                }
            }
        }
        // Counted by the invocation from here on.
        drop(work);
        let late_output = output.clone();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let responded = Arc::new(AtomicBool::new(false));
        let respond = Respond {
            sender,
            responded: Some(responded.clone()),
        };
        let call = match &component.pre {
            Pre::Proxy(_) => {
                let mut http = store.data_mut().http();
                let req = http
                    .new_incoming_request(Scheme::Http, request)
                    .map_err(|e| InvokeError::BadRequest(format!("{e:#}")))?;
                let out = http
                    .new_response_outparam_from_callback(move |response| {
                        respond.send(response.map_err(|code| answered_with(&code)))
                    })
                    .map_err(|e| InvokeError::Trap(format!("{e:#}")))?;
                Call::Proxy(req, out)
            }
            Pre::Service(_) => {
                let hooks = store.data_mut().http().hooks;
                let (request, request_io) =
                    wasmtime_wasi_http::p3::Request::from_http(hooks, request);
                Call::Service {
                    request,
                    request_io: Box::pin(request_io),
                    respond,
                }
            }
        };
        let pre = component.pre.clone();
        let limits = FailureContext::of(config);
        // The guest runs in its own task so it can keep writing the body after the head is
        // sent; the deadline bounds the whole of it, body included.
        let task = tokio::spawn(
            async move {
                let mut guard = guard;
                let run = async {
                    let guest = match guest {
                        Some(guest) => guest,
                        None => {
                            let started = Instant::now();
                            let guest = pre.instantiate(&mut store).await?;
                            guard.instantiation = Some(started.elapsed());
                            guest
                        }
                    };
                    match (guest, call) {
                        (Guest::Proxy(proxy), Call::Proxy(req, out)) => {
                            proxy
                                .wasi_http_incoming_handler()
                                .call_handle(&mut store, req, out)
                                .await
                        }
                        (
                            Guest::Service(service),
                            Call::Service {
                                request,
                                request_io,
                                respond,
                            },
                        ) => serve(&mut store, service, request, request_io, respond).await,
                        _ => Err(wasmtime::format_err!(
                            "a warm instance of another world than its component's"
                        )),
                    }
                };
                let result = match tokio::time::timeout_at(deadline.into(), run).await {
                    Ok(result) => {
                        result.map_err(|e| classify(e, &limits, store.data().cpu_budget_exhausted))
                    }
                    Err(_) => Err(InvokeError::Timeout(timeout.as_millis() as u64)),
                };
                if let Err(e) = &result
                    && responded.load(Ordering::Acquire)
                {
                    tracing::warn!(
                        error = %e,
                        guest_output = late_output.text().unwrap_or_default(),
                        "function failed after sending its response head"
                    );
                }
                result
            }
            .in_current_span(),
        );
        // The guest's task enforces the deadline: when it stops the guest, the store and the
        // response sender in it are dropped, so this wait needs no timer of its own.
        match receiver.await {
            Ok(Ok(response)) => limit_response_body(response, config.max_response_body_bytes),
            Ok(Err(e)) => Err(e),
            Err(_no_response) => match task.await {
                Ok(Ok(())) => Err(InvokeError::Guest(
                    "the handler returned without setting a response".into(),
                )),
                Ok(Err(e)) => Err(e),
                Err(join) => Err(InvokeError::Trap(format!("host task failed: {join}"))),
            },
        }
    }

    /// Gives `store` what a request of `function` may read: `config`'s `wasi:config` values
    /// and key-value stores, and the secrets opened for it.
    pub(super) fn grant(
        &self,
        store: &mut Store<HostState>,
        function: &str,
        config: &FunctionConfig,
        secrets: RequestSecrets,
        output: &GuestOutput,
    ) {
        store.data_mut().config_values = config
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(secrets.config)
            .collect();
        if !secrets.env.is_empty() {
            store.data_mut().set_env(config, &secrets.env, output);
        }
        store.data_mut().kv = super::keyvalue::KvAccess::new(
            self.kv_db.get(),
            &self.kv_meter,
            crate::model::namespace_of(function),
            &config.kv,
            self.config.kv_limits,
        );
    }

    /// A fresh store for a component of `world`, with the function's limits. The only place
    /// limits are set; deadlines are set by [`arm`].
    pub(super) fn new_store(
        &self,
        world: HttpWorld,
        config: &FunctionConfig,
        output: &GuestOutput,
    ) -> Store<HostState> {
        let mut state = HostState::new(config, output, self.config.network.clone());
        state.budget_ticks = match config.cpu_budget_ms {
            0 => u64::MAX,
            ms => ms.div_ceil(EPOCH_TICK.as_millis() as u64),
        };
        let mut store = Store::new(&self.runtime(world).engine, state);
        store.limiter(|state| &mut state.limits);
        // Check at every epoch tick: past the deadline the guest traps; before it, it yields
        // so one busy function cannot monopolise a runtime thread.
        // The callback runs only while wasm executes, once per tick, so counting its calls
        // measures CPU time in ticks: the CPU budget costs nothing extra.
        store.epoch_deadline_callback(|mut store| {
            let state = store.data_mut();
            state.ticks += 1;
            if state.ticks > state.budget_ticks {
                state.cpu_budget_exhausted = true;
                Ok(UpdateDeadline::Interrupt)
            } else if Instant::now() >= state.deadline {
                Ok(UpdateDeadline::Interrupt)
            } else if let Some(turn) = state.fairness.tick(state.ticks) {
                // Long-running: wait for a turn at a seat (a thread stays free for short work).
                Ok(UpdateDeadline::YieldCustom(1, turn))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }
}

/// A store instantiated ahead of demand: it serves exactly one request and is then dropped,
/// so nothing one request leaves in memory is seen by the next.
pub struct WarmInstance {
    store: Store<HostState>,
    guest: Guest,
    output: GuestOutput,
    /// How long instantiating it took (off the request path).
    pub instantiation: Duration,
}

/// Starts a new deadline and CPU budget, for instantiation and again for the request.
pub(super) fn arm(store: &mut Store<HostState>, deadline: Instant) {
    let state = store.data_mut();
    state.deadline = deadline;
    state.ticks = 0;
    store.set_epoch_deadline(1);
}

/// The limits a failure is judged against.
pub(super) struct FailureContext {
    pub(super) timeout: Duration,
    memory_mb: u32,
    cpu_budget_ms: u64,
}

impl FailureContext {
    pub(super) fn of(config: &FunctionConfig) -> Self {
        Self {
            timeout: Duration::from_millis(config.timeout_ms),
            memory_mb: config.memory_mb,
            cpu_budget_ms: config.cpu_budget_ms,
        }
    }
}

pub(super) fn classify(
    error: wasmtime::Error,
    limits: &FailureContext,
    cpu_exhausted: bool,
) -> InvokeError {
    let error: anyhow::Error = error.into();
    if error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return InvokeError::Capacity;
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        tracing::debug!(error = ?error, "guest trap");
        return match trap {
            Trap::Interrupt if cpu_exhausted => InvokeError::CpuBudget(limits.cpu_budget_ms),
            Trap::Interrupt => InvokeError::Timeout(limits.timeout.as_millis() as u64),
            Trap::StackOverflow => InvokeError::Trap("stack overflow".into()),
            Trap::UnreachableCodeReached => {
                InvokeError::Trap("unreachable executed (a Rust panic or abort)".into())
            }
            Trap::MemoryOutOfBounds => InvokeError::Trap(
                "out-of-bounds memory access (in languages that keep their stack in linear \
                 memory, often a stack overflow)"
                    .into(),
            ),
            Trap::AllocationTooLarge => InvokeError::MemoryLimit(limits.memory_mb),
            other => InvokeError::Trap(other.to_string()),
        };
    }
    if error
        .downcast_ref::<super::limits::MemoryBudgetExceeded>()
        .is_some()
    {
        return InvokeError::MemoryLimit(limits.memory_mb);
    }
    if let Some(wasmtime::component::ResourceTableError::Full) = error.downcast_ref() {
        return InvokeError::Trap(format!(
            "the function held more than {} resources at once (header fields, bodies, \
             streams, requests)",
            super::host::MAX_RESOURCES
        ));
    }
    if let Some(
        wasmtime_wasi_http::FieldMapError::TotalSizeTooBig
        | wasmtime_wasi_http::FieldMapError::TooManyFields,
    ) = error.downcast_ref()
    {
        return InvokeError::Trap(format!(
            "the function built header fields over the limit of {} KiB",
            super::host::FIELD_SIZE_LIMIT / 1024
        ));
    }
    let text = format!("{error:#}");
    tracing::debug!(error = %text, "guest failure");
    InvokeError::Trap("the function failed while handling the request".into())
}

/// Enforces the function's response-body limit: a declared length over it fails at once;
/// a streamed body is cut off (the client sees an aborted response) when it crosses it.
pub(super) fn limit_response_body(
    response: hyper::Response<GuestBody>,
    limit: u64,
) -> Result<hyper::Response<GuestBody>, InvokeError> {
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(InvokeError::Guest(format!(
            "its response body of {} bytes exceeds the limit of {limit} bytes",
            declared.unwrap_or_default()
        )));
    }
    Ok(response.map(|inner| {
        use http_body_util::BodyExt;
        CappedBody {
            inner,
            remaining: limit,
            limit,
        }
        .boxed_unsync()
    }))
}

/// A guest body that fails once more than `limit` bytes have passed.
struct CappedBody {
    inner: GuestBody,
    remaining: u64,
    limit: u64,
}

impl http_body::Body for CappedBody {
    type Data = bytes::Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > this.remaining {
                    tracing::warn!(
                        limit = this.limit,
                        "response body exceeded the function's limit; cutting it off"
                    );
                    this.remaining = 0;
                    return Poll::Ready(Some(Err(
                        wasmtime_wasi_http::Error::HttpResponseBodySize(Some(this.limit)),
                    )));
                }
                this.remaining -= len;
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// An instance's handler, of either world.
pub(super) enum Guest {
    Proxy(Proxy),
    Service(Service),
}

impl Pre {
    /// A new instance in `store`.
    pub(super) async fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Guest> {
        Ok(match self {
            Pre::Proxy(pre) => Guest::Proxy(pre.instantiate_async(store).await?),
            Pre::Service(pre) => Guest::Service(pre.instantiate_async(store).await?),
        })
    }
}

/// A request made ready for the handler of the component's world.
enum Call {
    /// WASI 0.2: the request and the out-parameter whose callback answers.
    Proxy(Resource<IncomingRequest>, Resource<ResponseOutparam>),
    /// WASI 0.3: the request, the future that reports how its body was read, and where the
    /// response goes.
    Service {
        request: wasmtime_wasi_http::p3::Request,
        request_io: RequestIo,
        respond: Respond,
    },
}

/// The failure of a guest that answered with a wasi:http error code (of either world).
pub(super) fn answered_with(code: &impl std::fmt::Debug) -> InvokeError {
    InvokeError::Guest(format!("it answered with the wasi:http error {code:?}"))
}

/// Reports how a WASI 0.3 request's body was read (an error the guest sees on its future).
pub(super) type RequestIo =
    std::pin::Pin<Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>>;

/// Hands the response head (or why there is none) to the waiting request.
pub(super) struct Respond {
    pub(super) sender:
        tokio::sync::oneshot::Sender<Result<hyper::Response<GuestBody>, InvokeError>>,
    /// Set once a head is sent, so a later failure is logged as one after responding
    /// (fresh instances; a shared instance's failures are its worker's to log).
    pub(super) responded: Option<Arc<AtomicBool>>,
}

impl Respond {
    pub(super) fn send(self, response: Result<hyper::Response<GuestBody>, InvokeError>) {
        if let Some(responded) = &self.responded {
            responded.store(true, Ordering::Release);
        }
        let _ = self.sender.send(response);
    }
}

/// How long a WASI 0.3 response head waits for its body to begin.
const BODY_START_WAIT: Duration = Duration::from_millis(2);

/// Waits briefly for a WASI 0.3 response's body to begin (and, for a small one, to end)
/// before the head goes out. A 0.3 guest returns the head first and writes the body from a
/// task of its own, so without this the server writes the head, then the body: two
/// writes to the client, twice its wake-ups. Waiting while the instance's loop runs lets
/// both go out in one write; a body that does not start within `BODY_START_WAIT` (a
/// stream that sends headers first) gets its head on its own, as soon as the wait ends.
pub(super) async fn with_body_started(
    response: hyper::Response<GuestBody>,
) -> hyper::Response<GuestBody> {
    use http_body_util::BodyExt;
    let (head, mut body) = response.into_parts();
    let first = match tokio::time::timeout(BODY_START_WAIT, body.frame()).await {
        Ok(first) => first,
        Err(_not_yet) => return hyper::Response::from_parts(head, body),
    };
    let mut frames = Vec::new();
    let mut buffered = 0;
    let mut next = first;
    // Whatever follows at once, up to one write's worth.
    while let Some(frame) = next {
        let is_error = frame.is_err();
        buffered += frame
            .as_ref()
            .ok()
            .and_then(|f| f.data_ref())
            .map_or(0, |d| d.len());
        frames.push(frame);
        if is_error || buffered >= COALESCE_BYTES {
            break;
        }
        match futures::FutureExt::now_or_never(body.frame()) {
            Some(more) => next = more,
            None => break,
        }
    }
    let body = BodyStarted {
        ahead: frames.into(),
        rest: body,
    };
    hyper::Response::from_parts(head, body.boxed_unsync())
}

/// A body whose first frames were read ahead of its head.
struct BodyStarted {
    ahead: std::collections::VecDeque<
        Result<http_body::Frame<bytes::Bytes>, wasmtime_wasi_http::Error>,
    >,
    rest: GuestBody,
}

impl http_body::Body for BodyStarted {
    type Data = bytes::Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match self.ahead.pop_front() {
            Some(frame) => std::task::Poll::Ready(Some(frame)),
            None => std::pin::Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_empty() && self.rest.is_end_stream()
    }
}

/// Most body bytes gathered ahead of the head.
const COALESCE_BYTES: usize = 64 * 1024;

/// Serves one request through a WASI 0.3 `wasi:http/handler`. The guest returns the response
/// head and keeps writing the body from tasks of its own, which run only inside the store's
/// `run_concurrent` loop: so the loop keeps turning until every task of the instance has
/// exited (the body is written), bounded by the caller's deadline like a 0.2 guest's body.
async fn serve(
    store: &mut Store<HostState>,
    service: Service,
    request: wasmtime_wasi_http::p3::Request,
    request_io: impl Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send + 'static,
    respond: Respond,
) -> wasmtime::Result<()> {
    store
        .run_concurrent(async move |accessor| {
            match service.handle(accessor, request).await? {
                Ok(response) => {
                    let response = accessor.with(|mut access| {
                        response.into_http_with_getter(
                            &mut access,
                            request_io,
                            <HostState as WasiHttpView>::http,
                        )
                    })?;
                    respond.send(Ok(with_body_started(response).await));
                }
                Err(code) => respond.send(Err(answered_with(&code))),
            }
            std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
            Ok(())
        })
        .await?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;
    use crate::store::ModuleStore;

    /// A component that instantiates a memory-defining core module `copies` times.
    fn memories(copies: usize) -> String {
        let instances: String = (0..copies)
            .map(|i| format!("(core instance $i{i} (instantiate $m))"))
            .collect();
        format!("(component (core module $m (memory 1)) {instances})")
    }

    /// One component cannot take more than its share of memories, with the pooling
    /// allocator and without it.
    #[tokio::test]
    async fn a_component_gets_at_most_its_share_of_memories() {
        for pool_instances in [4, 0] {
            let dir = tempfile::tempdir().unwrap();
            let modules = Arc::new(ModuleStore::open(dir.path().join("modules"), None).unwrap());
            let engine = Engine::new(
                EngineConfig {
                    pool_instances,
                    max_memory_mb: 64,
                    ..EngineConfig::default()
                },
                dir.path().join("compiled"),
                modules,
            )
            .unwrap();
            let wasm = &engine.proxy.engine;
            let linker = wasmtime::component::Linker::<HostState>::new(wasm);
            for (copies, fits) in [(2, true), (3, false)] {
                // The pooling allocator refuses it at compile time (so at upload, with the
                // count in the message); on demand, the store's limits refuse to instantiate.
                let error = match wasmtime::component::Component::new(wasm, memories(copies)) {
                    Err(e) => Some(e.to_string()),
                    Ok(component) => {
                        let output = GuestOutput::default();
                        let mut store =
                            engine.new_store(HttpWorld::Proxy, &FunctionConfig::default(), &output);
                        arm(&mut store, Instant::now() + Duration::from_secs(5));
                        linker
                            .instantiate_async(&mut store, &component)
                            .await
                            .err()
                            .map(|e| format!("{e:?}"))
                    }
                };
                assert_eq!(
                    error.is_none(),
                    fits,
                    "pool {pool_instances}, {copies} memories: {error:?}"
                );
                if let Some(error) = error {
                    assert!(error.contains("memor"), "{error}");
                }
            }
        }
    }
}
