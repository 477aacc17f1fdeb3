//! One request through one fresh instance: build a `Store`, instantiate the pre-linked
//! component, call `wasi:http/incoming-handler.handle`, and hand back the response head while
//! the guest keeps streaming the body from its own task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::guest_output::GuestOutput;
use super::{Engine, HostState, LoadedComponent};
use crate::registry::FunctionConfig;

/// The response body as the guest streams it.
pub type GuestBody = HyperOutgoingBody;

/// How an invocation failed. `Display` is safe to show to the client: it names what happened
/// to the function, never host paths or internals (details go to the log).
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the function did not respond within its {0} ms timeout")]
    Timeout(u64),
    #[error("the host has no free instance slot right now; retry shortly")]
    Capacity,
    #[error("the function exceeded its memory limit of {0} MiB")]
    MemoryLimit(u32),
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

impl Engine {
    /// Runs `request` through a new instance of `component`, bounded by `config`'s limits.
    pub async fn invoke<B>(
        &self,
        component: &Arc<LoadedComponent>,
        config: &FunctionConfig,
        request: hyper::Request<B>,
    ) -> Result<hyper::Response<GuestBody>, InvokeFailure>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let output = GuestOutput::default();
        self.run(component, config, request, &output)
            .await
            .map_err(|error| InvokeFailure {
                error,
                guest_output: output.text(),
            })
    }

    async fn run<B>(
        &self,
        component: &Arc<LoadedComponent>,
        config: &FunctionConfig,
        request: hyper::Request<B>,
        output: &GuestOutput,
    ) -> Result<hyper::Response<GuestBody>, InvokeError>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let timeout = Duration::from_millis(config.timeout_ms);
        let deadline = Instant::now() + timeout;
        let mut store = self.new_store(config, deadline, output);
        let late_output = output.clone();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let responded = Arc::new(AtomicBool::new(false));
        let responded_in_guest = responded.clone();
        let (req, out) = {
            let mut http = store.data_mut().http();
            let req = http
                .new_incoming_request(Scheme::Http, request)
                .map_err(|e| InvokeError::BadRequest(format!("{e:#}")))?;
            let out = http
                .new_response_outparam_from_callback(move |response| {
                    responded_in_guest.store(true, Ordering::Release);
                    let _ = sender.send(response);
                })
                .map_err(|e| InvokeError::Trap(format!("{e:#}")))?;
            (req, out)
        };
        let pre = component.pre.clone();
        let memory_mb = config.memory_mb;
        // The guest runs in its own task so it can keep writing the body after the head is
        // sent; the deadline bounds the whole of it, body included.
        let task = tokio::spawn(async move {
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            let result = match tokio::time::timeout_at(deadline.into(), run).await {
                Ok(result) => result.map_err(|e| classify(e, timeout, memory_mb)),
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
        });
        match tokio::time::timeout_at(deadline.into(), receiver).await {
            Ok(Ok(Ok(response))) => Ok(response),
            Ok(Ok(Err(code))) => Err(InvokeError::Guest(describe_error_code(&code))),
            Ok(Err(_no_response)) => match task.await {
                Ok(Ok(())) => Err(InvokeError::Guest(
                    "the handler returned without setting a response".into(),
                )),
                Ok(Err(e)) => Err(e),
                Err(join) => Err(InvokeError::Trap(format!("host task failed: {join}"))),
            },
            Err(_elapsed) => {
                task.abort();
                Err(InvokeError::Timeout(timeout.as_millis() as u64))
            }
        }
    }

    /// A fresh store with the function's limits. The only place limits and deadlines are set.
    fn new_store(
        &self,
        config: &FunctionConfig,
        deadline: Instant,
        output: &GuestOutput,
    ) -> Store<HostState> {
        let mut store = Store::new(&self.engine, HostState::new(config, output));
        store.limiter(|state| &mut state.limits);
        // Check at every epoch tick: past the deadline the guest traps; before it, it yields
        // so one busy function cannot monopolise a runtime thread.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }
}

fn classify(error: wasmtime::Error, timeout: Duration, memory_mb: u32) -> InvokeError {
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
            Trap::Interrupt => InvokeError::Timeout(timeout.as_millis() as u64),
            Trap::StackOverflow => InvokeError::Trap("stack overflow".into()),
            Trap::UnreachableCodeReached => {
                InvokeError::Trap("unreachable executed (a Rust panic or abort)".into())
            }
            Trap::MemoryOutOfBounds => InvokeError::Trap("out-of-bounds memory access".into()),
            Trap::AllocationTooLarge => InvokeError::MemoryLimit(memory_mb),
            other => InvokeError::Trap(other.to_string()),
        };
    }
    let text = format!("{error:#}");
    if text.contains("forcing trap when growing memory") {
        return InvokeError::MemoryLimit(memory_mb);
    }
    tracing::debug!(error = %text, "guest failure");
    InvokeError::Trap("the function failed while handling the request".into())
}

fn describe_error_code(code: &ErrorCode) -> String {
    format!("it answered with the wasi:http error {code:?}")
}
