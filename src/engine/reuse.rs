//! Instance reuse, opted into per function, for WASI 0.3 components: one instance serves up
//! to `reuse_requests` requests in turn, `concurrency_per_instance` of them at once, instead
//! of a fresh instance per request.
//!
//! The trade-off is isolation: whatever a request leaves in the instance's memory is there
//! for the next requests of that version. It is never shared wider: a [`SharedInstances`]
//! belongs to one version's deployment (code and config), and a new deployment gets a new
//! one while the old instances finish what they hold and go.
//!
//! Each instance is a *worker*: a task that owns the store and turns its `run_concurrent`
//! loop, taking requests from its own queue. Dispatch (under one short lock) picks a worker
//! with a free place, or starts one. A worker retires when it has served its quota, has been
//! idle for the idle timeout (so an idle function holds no instance), or a request of it
//! failed or ran out of time (its instance may be stuck or broken: no new request goes to
//! it; the others in flight finish or meet their own deadlines).
//!
//! Limits per request, as far as a shared instance allows: each request has its own deadline
//! (the caller's wait, and the body's), the instance is interrupted once the last deadline of
//! the requests it holds has passed, and the CPU budget is per request when requests take
//! turns (reset as each starts alone) and pooled while they overlap.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use http_body_util::BodyExt as _;
use tokio::sync::{mpsc, oneshot, watch};
use wasmtime::Store;
use wasmtime::component::Accessor;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p3::bindings::Service;

use super::fairness::{CpuGate, Work};
use super::guest_output::GuestOutput;
use super::invoke::{
    FailureContext, Finished, Guest, GuestBody, InvokeError, InvokeFailure, OnFinish, Respond,
    answered_with, arm, classify, limit_response_body, with_body_started,
};
use super::{EPOCH_TICK, Engine, HostState, LoadedComponent, RequestSecrets};
use crate::model::{FunctionConfig, HttpWorld};

/// The reusable instances of one version's deployment.
pub struct SharedInstances {
    component: Arc<LoadedComponent>,
    function: Arc<str>,
    config: FunctionConfig,
    /// A worker with nothing to do for this long retires.
    idle: Duration,
    workers: Mutex<Workers>,
}

#[derive(Default)]
struct Workers {
    next_id: u64,
    live: Vec<Handle>,
}

/// Dispatch's view of one worker.
struct Handle {
    id: u64,
    /// Requests sent to it and not yet done.
    in_flight: u32,
    /// Requests sent to it in all.
    assigned: u32,
    /// Takes no more requests (one failed or ran out of time).
    closed: bool,
    jobs: mpsc::UnboundedSender<Job>,
    /// Why the worker's instance stopped, for requests it held.
    failure: Arc<watch::Sender<Option<InvokeError>>>,
}

/// One request, handed to a worker.
struct Job {
    request: hyper::Request<GuestBody>,
    respond: Respond,
    finish: JobFinish,
    deadline: Instant,
    work: Work,
}

/// Runs the request's `on_finish` when dropped: after its body ends, or when it fails.
struct JobFinish {
    on_finish: Option<OnFinish>,
    output: Option<GuestOutput>,
    instantiation: Option<Duration>,
    /// The instance's count of key-value operations, and how many of them requests have
    /// already been billed for.
    kv: Option<(Arc<AtomicU64>, Arc<AtomicU64>)>,
}

impl Drop for JobFinish {
    fn drop(&mut self) {
        if let Some(on_finish) = self.on_finish.take() {
            on_finish(Finished {
                // What the instance printed since the last request finished.
                output: self.output.as_ref().and_then(GuestOutput::take_text),
                instantiation: self.instantiation,
                // The operations made since the last request finished, as with output:
                // exact while requests take turns, and never counted twice.
                kv_operations: self.kv.as_ref().map_or(0, |(count, billed)| {
                    let now = count.load(Ordering::Relaxed);
                    now.saturating_sub(billed.swap(now, Ordering::Relaxed))
                }),
            });
        }
    }
}

/// Where dispatch sent a request.
enum Dispatch {
    Sent(u64, watch::Receiver<Option<InvokeError>>),
    /// No worker had room: start this one with the job.
    Start(Box<Job>, Recruit),
}

/// A worker about to start: what dispatch made for it.
struct Recruit {
    id: u64,
    jobs: mpsc::UnboundedReceiver<Job>,
    failure: Arc<watch::Sender<Option<InvokeError>>>,
}

/// How a request ended, for its worker.
#[derive(PartialEq, Eq)]
enum Outcome {
    Served,
    /// It failed in the instance or ran out of time: the instance takes no more requests.
    Spoiled,
}

impl SharedInstances {
    fn dispatch(&self, mut job: Job) -> Dispatch {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let (per_instance, quota) = (
            self.config.concurrency_per_instance,
            self.config.reuse_requests,
        );
        for handle in workers.live.iter_mut() {
            if handle.closed || handle.in_flight >= per_instance || handle.assigned >= quota {
                continue;
            }
            match handle.jobs.send(job) {
                Ok(()) => {
                    handle.in_flight += 1;
                    handle.assigned += 1;
                    return Dispatch::Sent(handle.id, handle.failure.subscribe());
                }
                Err(mpsc::error::SendError(back)) => {
                    // Its task is gone (it panicked): skip it from now on.
                    handle.closed = true;
                    job = back;
                }
            }
        }
        workers.next_id += 1;
        let id = workers.next_id;
        let (sender, jobs) = mpsc::unbounded_channel();
        let failure = Arc::new(watch::Sender::new(None));
        workers.live.push(Handle {
            id,
            in_flight: 1,
            assigned: 1,
            closed: false,
            jobs: sender,
            failure: failure.clone(),
        });
        Dispatch::Start(Box::new(job), Recruit { id, jobs, failure })
    }

    /// A request of worker `id` is done; the worker is retired once it has served its quota
    /// (or was closed) and holds none.
    fn done(&self, id: u64, outcome: Outcome) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let quota = self.config.reuse_requests;
        if let Some(index) = workers.live.iter().position(|h| h.id == id) {
            let handle = &mut workers.live[index];
            handle.in_flight = handle.in_flight.saturating_sub(1);
            handle.closed |= outcome == Outcome::Spoiled;
            if (handle.closed || handle.assigned >= quota) && handle.in_flight == 0 {
                // Dropping its sender lets the worker's queue end.
                workers.live.swap_remove(index);
            }
        }
    }

    /// Sends worker `id` no more requests: one of its requests failed in it or ran out of
    /// time, so its instance may be stuck or broken. It goes once its requests are done.
    fn close(&self, id: u64) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = workers.live.iter_mut().find(|h| h.id == id) {
            handle.closed = true;
        }
    }

    /// Retires worker `id` if it holds no request (it has been idle).
    fn retire_if_idle(&self, id: u64) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers.live.retain(|h| h.id != id || h.in_flight > 0);
    }

    /// Forgets worker `id` (its instance is gone).
    fn retire(&self, id: u64) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers.live.retain(|h| h.id != id);
    }

    /// Instances alive now.
    pub fn instances(&self) -> usize {
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .live
            .len()
    }

    /// One worker: instantiates, then serves requests from `jobs` until retired.
    async fn work(
        self: Arc<Self>,
        recruit: Recruit,
        mut store: Store<HostState>,
        output: GuestOutput,
        first: Job,
        fairness: Option<(Arc<CpuGate>, u64)>,
    ) {
        let Recruit {
            id,
            mut jobs,
            failure,
        } = recruit;
        let limits = FailureContext::of(&self.config);
        arm(&mut store, first.deadline);
        let started = Instant::now();
        let service = match self.component.pre.instantiate(&mut store).await {
            Ok(Guest::Service(service)) => service,
            Ok(Guest::Proxy(_)) => unreachable!("instances are shared only for WASI 0.3"),
            Err(e) => {
                let error = classify(e, &limits, store.data().cpu_budget_exhausted);
                self.retire(id);
                failure.send_replace(Some(error.clone()));
                first.respond.send(Err(error));
                return; // queued requests read `failure`
            }
        };
        let budget = match self.config.cpu_budget_ms {
            0 => u64::MAX,
            ms => ms.div_ceil(EPOCH_TICK.as_millis() as u64),
        };
        let serving = Serving {
            shared: &self,
            id,
            service: &service,
            output: &output,
            limits: &limits,
            budget,
            fairness: &fairness,
            kv_billed: Arc::default(),
        };
        let mut instantiation = Some(started.elapsed());
        let this = &self;
        let result = store
            .run_concurrent(async |accessor| {
                let mut running = FuturesUnordered::new();
                let mut next = Some(first);
                let mut queue_open = true;
                loop {
                    if let Some(job) = next.take() {
                        let alone = running.is_empty();
                        running.push(serving.serve(accessor, job, instantiation.take(), alone));
                    }
                    tokio::select! {
                        biased;
                        Some(outcome) = running.next(), if !running.is_empty() => {
                            this.done(id, outcome);
                        }
                        job = jobs.recv(), if queue_open => match job {
                            Some(job) => next = Some(job),
                            None => queue_open = false,
                        },
                        () = tokio::time::sleep(this.idle), if running.is_empty() => {
                            this.retire_if_idle(id);
                        }
                    }
                    if !queue_open && running.is_empty() {
                        break;
                    }
                }
                // Bodies still being written come from tasks of the instance: let them end.
                std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
            })
            .await;
        self.retire(id);
        if let Err(e) = result {
            let error = classify(e, &limits, store.data().cpu_budget_exhausted);
            tracing::warn!(function = %self.function, error = %error, "a shared instance stopped");
            failure.send_replace(Some(error));
        }
    }
}

/// What a worker's requests share.
struct Serving<'a> {
    shared: &'a SharedInstances,
    /// The worker's.
    id: u64,
    service: &'a Service,
    output: &'a GuestOutput,
    limits: &'a FailureContext,
    /// Each request's CPU budget, in epoch ticks.
    budget: u64,
    fairness: &'a Option<(Arc<CpuGate>, u64)>,
    /// Key-value operations of the instance already billed to finished requests.
    kv_billed: Arc<AtomicU64>,
}

impl Serving<'_> {
    /// Serves `job` in the instance. `alone`: no other request is in it now.
    async fn serve(
        &self,
        accessor: &Accessor<HostState>,
        job: Job,
        instantiation: Option<Duration>,
        alone: bool,
    ) -> Outcome {
        let Job {
            request,
            respond,
            mut finish,
            deadline,
            work,
        } = job;
        finish.output = Some(self.output.clone());
        finish.instantiation = instantiation;
        let request = accessor.with(|mut access| {
            let state = access.data_mut();
            // The instance is interrupted only once every request in it is past its deadline.
            state.deadline = if alone {
                deadline
            } else {
                state.deadline.max(deadline)
            };
            if alone {
                state.ticks = 0;
                state.budget_ticks = self.budget;
                state.cpu_budget_exhausted = false;
            } else {
                state.budget_ticks = state.budget_ticks.saturating_add(self.budget);
            }
            state.kv.begin_request(alone);
            finish.kv = state.kv.used().map(|count| (count, self.kv_billed.clone()));
            if let Some((gate, long_after)) = self.fairness {
                match &work {
                    Work::Short(_) => state.fairness.begin(gate, *long_after),
                    Work::Background => state.fairness.begin_background(gate),
                }
            }
            let hooks = state.http().hooks;
            let (request, io) = wasmtime_wasi_http::p3::Request::from_http(hooks, request);
            (request, Box::pin(io) as super::invoke::RequestIo)
        });
        drop(work);
        let (request, request_io) = request;
        let handled = async {
            match self.service.handle(accessor, request).await? {
                Ok(response) => accessor
                    .with(|mut access| {
                        response.into_http_with_getter(
                            &mut access,
                            request_io,
                            <HostState as WasiHttpView>::http,
                        )
                    })
                    .map(Ok),
                Err(code) => Ok(Err(code)),
            }
        };
        match tokio::time::timeout_at(deadline.into(), handled).await {
            Ok(Ok(Ok(response))) => {
                let response = with_body_started(response).await;
                respond.send(Ok(response.map(|body| {
                    SharedBody {
                        inner: body,
                        deadline: Box::pin(tokio::time::sleep_until(deadline.into())),
                        _finish: finish,
                    }
                    .boxed_unsync()
                })));
                Outcome::Served
            }
            Ok(Ok(Err(code))) => {
                respond.send(Err(answered_with(&code)));
                Outcome::Served
            }
            Ok(Err(trap)) => {
                // Closed before answering, so the client's next request goes elsewhere.
                self.shared.close(self.id);
                let exhausted = accessor.with(|mut access| access.data_mut().cpu_budget_exhausted);
                respond.send(Err(classify(trap, self.limits, exhausted)));
                Outcome::Spoiled
            }
            Err(_elapsed) => {
                self.shared.close(self.id);
                respond.send(Err(InvokeError::Timeout(
                    self.limits.timeout.as_millis() as u64
                )));
                Outcome::Spoiled
            }
        }
    }
}

/// A response body of a shared instance: ends with an error at the request's deadline (the
/// instance cannot be stopped for one request), and finishes the request when done.
struct SharedBody {
    inner: GuestBody,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _finish: JobFinish,
}

impl http_body::Body for SharedBody {
    type Data = bytes::Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpResponseTimeout)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether requests of `component` with `config` share instances (else each gets a fresh
/// one).
pub fn shares_instances(component: &LoadedComponent, config: &FunctionConfig) -> bool {
    config.reuses_instances() && component.world() == HttpWorld::Service
}

impl Engine {
    /// Reusable instances for a version of `function` running `component` with `config`,
    /// if the config opts in to reuse and the component is WASI 0.3 (a 0.2 handler serves
    /// one request and returns, so its versions always get a fresh instance). `idle`: how
    /// long an instance may wait for its next request before it goes.
    pub fn shared_instances(
        &self,
        component: &Arc<LoadedComponent>,
        function: &Arc<str>,
        config: &FunctionConfig,
        idle: Duration,
    ) -> Option<Arc<SharedInstances>> {
        shares_instances(component, config).then(|| {
            Arc::new(SharedInstances {
                component: component.clone(),
                function: function.clone(),
                config: config.clone(),
                idle,
                workers: Mutex::default(),
            })
        })
    }

    /// Runs `request` in one of `shared`'s instances (starting one if none has room), with
    /// the same contract as [`Engine::invoke`]: the response head once the guest returns it,
    /// `on_finish` once the body is done. `secrets` opens the function's secrets for a new
    /// instance, the only one that reads them (a reused one keeps what it started with), so
    /// a request served by a running instance opens none.
    pub async fn invoke_shared<B>(
        &self,
        shared: &Arc<SharedInstances>,
        secrets: impl FnOnce() -> RequestSecrets,
        request: hyper::Request<B>,
        on_finish: OnFinish,
        work: Work,
    ) -> Result<hyper::Response<GuestBody>, InvokeFailure>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let config = &shared.config;
        let deadline = Instant::now() + Duration::from_millis(config.timeout_ms);
        let (sender, receiver) = oneshot::channel();
        let job = Job {
            request: request.map(|body| body.map_err(Into::into).boxed_unsync()),
            respond: Respond {
                sender,
                responded: None,
            },
            finish: JobFinish {
                on_finish: Some(on_finish),
                output: None,
                instantiation: None,
                kv: None,
            },
            deadline,
            work,
        };
        let (worker, failure) = match shared.dispatch(job) {
            Dispatch::Sent(worker, failure) => (worker, failure),
            Dispatch::Start(job, recruit) => {
                let started = (recruit.id, recruit.failure.subscribe());
                let output = GuestOutput::default();
                let mut store = self.new_store(HttpWorld::Service, config, &output);
                self.grant(&mut store, &shared.function, config, secrets(), &output);
                let fairness = self
                    .long_after_ticks
                    .map(|ticks| (self.cpu_gate.clone(), ticks));
                tokio::spawn(shared.clone().work(recruit, store, output, *job, fairness));
                started
            }
        };
        let failed = |error| InvokeFailure {
            error,
            guest_output: None,
        };
        let mut failure = failure;
        let outcome = tokio::time::timeout_at(deadline.into(), async {
            match receiver.await {
                Ok(outcome) => outcome,
                // The instance stopped with the request in it: the worker says why as soon
                // as its loop has returned (the request's sender went first).
                Err(_instance_gone) => Err(match failure.wait_for(Option::is_some).await {
                    Ok(error) => error.clone().expect("waited for it"),
                    Err(_worker_gone) => {
                        InvokeError::Trap("the instance serving the request stopped".into())
                    }
                }),
            }
        })
        .await;
        match outcome {
            Ok(Ok(response)) => {
                limit_response_body(response, config.max_response_body_bytes).map_err(failed)
            }
            Ok(Err(error)) => Err(failed(error)),
            Err(_elapsed) => {
                // The instance may be stuck in the guest (the worker has not seen the
                // deadline yet): send it nothing more.
                shared.close(worker);
                Err(failed(InvokeError::Timeout(config.timeout_ms)))
            }
        }
    }
}
