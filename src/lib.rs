//! fnhost: a serverless host for WebAssembly `wasi:http/proxy` components.
//!
//! Every upload becomes a function's `$LATEST`; publishing freezes it as an immutable
//! numbered version; the data plane runs each request in a fresh instance of the version
//! its route picks. See ARCHITECTURE.md for the path of one request.
//!
//! # Layout
//! - [`model`]: the leaf types everyone speaks (names, version labels, digests, config,
//!   alias specs, triggers, usage rows) and their validation; no I/O.
//! - [`store`]: durable state: the [`store::MetadataStore`] trait with its SQLite
//!   implementation, and content-addressed module blobs.
//! - [`registry`]: the write path over the store: commits, then swaps routes into the router.
//! - [`routing`]: the immutable routing snapshot the data plane reads without locks.
//! - [`engine`]: the one wasmtime engine, the compiled-code cache, validation of uploads,
//!   and running one request in one fresh (pre-warmed or on-demand) instance.
//! - [`server`]: the data plane and the admin API over HTTP/1.1 and h2c, graceful shutdown.
//! - [`api`]: the admin API's wire types (every request and response body), shared by the
//!   server and the CLI.
//! - [`cli`]: the `fnhost` command: `serve` and the admin client commands.
//! - [`scaling`]: per-version pools of pre-instantiated instances, provisioned concurrency,
//!   and the autoscaler that sizes them and scales idle versions to zero.
//! - [`rollout`]: automatic, health-gated rollouts that move an alias step by step.
//! - [`cold_start`]: timing each cold-start path in process (`fnhost bench cold-start`).
//! - [`app`]: builds the subsystems once, runs their background loops supervised, and owns
//!   operations that fan out across them (deleting a function).
//! - [`invocation`]: the one pipeline every invocation takes (admit, load, warm-or-instantiate,
//!   invoke, record, log), for live requests, shadows and event deliveries.
//! - `shutdown`: the cooperative stop signal background loops wait on.
//! - [`auth`]: who is calling (the host admin token or an API key) and whether a key may
//!   call a `key`-auth function, checked without a database read on the data plane.
//! - [`admission`]: per-function concurrency limits with a bounded, time-limited queue.
//! - [`events`]: buckets of objects (a local directory or S3), outbox delivery of trigger
//!   events as CloudEvents, and cron timers.
//! - [`function_logs`]: bounded per-function buffers of what functions print.
//! - [`metering`]: usage records (billed per ms), per-version health, Prometheus metrics.
//! - [`dependencies`]: whether the database, the object store and the disk are up, as
//!   calls to them last found; each outage logged once.
//! - `drain`: reading and dropping unread request bodies within a bound (early answers).
//! - `durable_file`: crash-safe file writes shared by the registry, engine and server.
//! - [`secrets`]: sealing and opening function secrets with the host's secrets key.
//! - [`seccomp`]: the system-call filter `fnhost serve` installs once started.

pub mod admission;
pub mod api;
pub mod app;
pub mod async_lane;
pub mod auth;
pub mod cli;
pub mod cold_start;
pub mod dependencies;
mod drain;
mod durable_file;
pub mod engine;
pub mod events;
pub mod function_logs;
pub mod invocation;
pub mod metering;
pub mod model;
pub mod registry;
pub mod rollout;
pub mod routing;
pub mod scaling;
pub mod seccomp;
pub mod secrets;
pub mod server;
mod shutdown;
pub mod store;
pub mod telemetry;
