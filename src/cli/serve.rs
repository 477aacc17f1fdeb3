//! `fnhost serve`: open the data directory, build the engine, bind both planes, serve until
//! SIGTERM or Ctrl-C, then drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tokio::net::TcpListener;

use super::units::{parse_bytes, parse_duration, parse_mebibytes};
use crate::app::{App, AppOptions};
use crate::async_lane::LaneOptions;
use crate::dependencies::Dependencies;
use crate::engine::{Engine, EngineConfig, IpRange, NetworkPolicy};
use crate::events::buckets::Buckets;
use crate::model::{KvLimits, NodeRecord, now_ms};
use crate::registry::Registry;
use crate::routing::Router;
use crate::scaling::ScalingOptions;
use crate::server;
use crate::store::MetadataLocation;

/// How often the autoscaler recomputes warm targets and meters provisioned time.
const SCALING_TICK: Duration = Duration::from_secs(1);

/// The data plane's default address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The admin API's default address.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8081";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the data plane, which invokes functions at /NAME[@VERSION]/...
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Address of the admin API (/v1/..., bearer token). Keep it off public networks.
    #[arg(long, default_value = DEFAULT_ADMIN_LISTEN, value_name = "ADDR")]
    pub admin_listen: SocketAddr,
    /// Directory for metadata (SQLite, unless --registry says otherwise), module blobs,
    /// compiled code and the admin token.
    #[arg(long, env = "FNHOST_DATA_DIR", default_value = super::DEFAULT_DATA_DIR, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Where metadata lives: SQLite in the data directory by default (one node), or a
    /// PostgreSQL database shared by a fleet of nodes, postgres://USER:PASSWORD@HOST/DB
    /// (schema created and migrated at start).
    #[arg(
        long,
        env = "FNHOST_REGISTRY",
        value_name = "URL",
        hide_env_values = true
    )]
    pub registry: Option<String>,
    /// Largest accepted upload; bigger ones get 413.
    #[arg(long, default_value = "64Mi", value_parser = parse_bytes, value_name = "SIZE")]
    pub max_upload: u64,
    /// Largest request head (request line plus headers) on both planes; bigger ones get 431.
    #[arg(long, default_value = "64Ki", value_parser = parse_bytes, value_name = "SIZE")]
    pub max_header_size: u64,
    /// A request head must arrive within this on both planes, and an idle keep-alive
    /// connection is closed after this long without a new request.
    #[arg(long, default_value = "15s", value_parser = parse_duration, value_name = "DURATION")]
    pub header_read_timeout: Duration,
    /// A request body that stops arriving for this long fails the request with 408.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub body_timeout: Duration,
    /// Most data-plane connections open at once (lowered to what the process's file
    /// descriptor limit allows after a reserve for the admin plane and the host's files);
    /// more wait in the listen backlog.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_connections: usize,
    /// Most admin-plane connections open at once, kept apart so the operator can always get
    /// in however busy the data plane is.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub max_admin_connections: usize,
    /// HTTP/2: most streams one connection may have open at once.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub h2_max_streams: u32,
    /// HTTP/2: an idle connection is pinged this often and closed if the ping is not
    /// answered within the same time.
    #[arg(long, default_value = "20s", value_parser = parse_duration, value_name = "DURATION")]
    pub h2_keep_alive: Duration,
    /// How long in-flight requests may run after SIGTERM before connections are closed.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_grace: Duration,
    /// On SIGTERM, keep serving this long with `/readyz` answering 503 (`/healthz` stays
    /// 200), so a load balancer's health check moves traffic away first; then stop accepting
    /// and drain in-flight requests for --shutdown-grace. Set it above the balancer's check
    /// interval times its fall count (e.g. 2s for HAProxy `inter 500ms fall 3`).
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "DURATION")]
    pub drain_delay: Duration,
    /// How long a request may wait for a free slot when its function is at its concurrency
    /// limit before it gets 503 with Retry-After.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub queue_timeout: Duration,
    /// CPU fairness: an invocation that has run this long counts as long-running, and
    /// long-running invocations then take turns on all runtime threads but one while any
    /// shorter request is in flight, so a quick request never waits behind a CPU hog's time
    /// slice (alone, hogs use every thread). 0s turns the policy off.
    #[arg(long, default_value = "5ms", value_parser = parse_duration, value_name = "DURATION")]
    pub long_running_after: Duration,
    /// Largest value a function may store in a key-value store (`wasi:keyvalue`); bigger
    /// ones are refused with an error the function sees.
    #[arg(long, default_value = "1Mi", value_parser = parse_bytes, value_name = "SIZE")]
    pub kv_max_value: u64,
    /// Most keys one key-value store may hold.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub kv_max_keys: u64,
    /// Most bytes (keys plus values) one key-value store may hold.
    #[arg(long, default_value = "256Mi", value_parser = parse_bytes, value_name = "SIZE")]
    pub kv_max_store_bytes: u64,
    /// The key function secrets are sealed with, kept apart from the database: a file of 64
    /// hex digits (mode 0600). Default: <DATA_DIR>/secrets.key, made on first start when the
    /// registry is not shared. `FNHOST_SECRETS_KEY` (the hex itself) takes precedence. Every
    /// node of a fleet needs the same key; a node with another is refused at start.
    #[arg(long, value_name = "FILE")]
    pub secrets_key: Option<PathBuf>,
    /// Key-value operations one invocation may make (a batch counts each key).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub kv_ops_per_request: u32,
    /// How often usage records are written to the database; a crash loses at most this much.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub usage_flush_interval: Duration,
    /// How long delivered events are kept (for `fnhost events`) before they are deleted;
    /// dead letters are kept until retried.
    #[arg(long, default_value = "7d", value_parser = parse_duration, value_name = "DURATION")]
    pub event_retention: Duration,
    /// How long an event this node claimed for delivery stays its own: renewed while it is
    /// delivered, so when a node dies another node delivers its events after this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub event_lease: Duration,
    /// Asynchronous invocations running at once on this node, across all functions (each
    /// function also has its own `--async-concurrency`). They run in a lane of their own,
    /// as background work for CPU fairness, so they never take HTTP requests' slots or
    /// threads. Default: the number of CPUs.
    #[arg(long, value_name = "N")]
    pub async_concurrency: Option<u32>,
    /// Most asynchronous invocations of one function waiting or running; past it, new
    /// ones are refused with 429 (a runaway producer cannot fill the disk).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub async_max_queued: u32,
    /// A stored asynchronous request body this old that no invocation needs any more (its
    /// function was deleted, or a crash came between its success and its deletion) is
    /// deleted; younger ones may belong to a request being accepted.
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub async_orphan_age: Duration,
    /// Instance slots of the pooling allocator (0: allocate instances on demand), in each of
    /// its two pools: WASI 0.2 and WASI 0.3 components run on engines of their own. Each slot
    /// reserves about 8 GiB of virtual address space (two 4 GiB memory slots plus guards),
    /// not memory; the amount is printed at start.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub pool_instances: u32,
    /// The largest memory limit a function may configure (the pool's memory slot size).
    #[arg(long, default_value = "4Gi", value_parser = parse_mebibytes, value_name = "SIZE")]
    pub max_memory: u32,
    /// Memory protection keys (Intel MPK) for the instance pool: `auto` uses them where the
    /// CPU has them (`pku` in /proc/cpuinfo), `yes` refuses to start without them. Striped
    /// slots let a running instance touch only its own memory; they take effect when
    /// --max-memory is below the 4 GiB slot reservation. Experimental in wasmtime 48, so off
    /// by default; /v1/status says whether they are in use.
    #[arg(long, value_enum, default_value_t = Mpk::No, value_name = "WHEN")]
    pub memory_protection_keys: Mpk,
    /// Let functions' outbound HTTP reach this non-public address range, e.g. 10.20.0.0/16
    /// for an internal API (repeat for several). Without it, functions reach only public
    /// addresses: never loopback, private, link-local (cloud metadata) or other special
    /// ranges, whatever names they allowlist. Checked on the resolved address.
    #[arg(long, value_parser = IpRange::parse, value_name = "CIDR")]
    pub outbound_allow_private: Vec<IpRange>,
    /// The system-call filter installed once the host has started: no program execution, no
    /// new processes, no ptrace, mounts, namespaces, BPF or kernel modules, whatever happens
    /// inside (Linux x86_64 and aarch64). `off` for debugging (e.g. under strace -f).
    #[arg(long, value_enum, default_value_t = OnOff::On, value_name = "ON|OFF")]
    pub seccomp: OnOff,
    /// Export OpenTelemetry traces over OTLP/HTTP (protobuf) to this collector, e.g.
    /// http://127.0.0.1:4318 (spans go to URL/v1/traces; OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    /// names the full URL instead). Off when unset. A span per request with children for
    /// the queue wait, a cold start, the guest's run and its outbound calls; `traceparent`
    /// is honoured and passed on. OTEL_SERVICE_NAME names the service (default fnhost);
    /// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG set the share of new traces kept
    /// (e.g. parentbased_traceidratio and 0.01); a sampled parent is always followed.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Finished spans waiting for export, at most; a slow or dead collector makes the
    /// host drop spans past this (counted in fnhost_trace_spans_dropped), never wait.
    #[arg(long, default_value_t = 8192, value_name = "N")]
    pub trace_queue: usize,
    /// A version with no requests for this long releases its warm instances (keeping only
    /// provisioned ones); after twice this its compiled code leaves memory too.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Duration,
    /// Most instances kept warm across all functions (default: a quarter of
    /// --pool-instances, or 250 without pooling). Warm instances hold instance slots, so the
    /// rest stay free for requests that instantiate on demand.
    #[arg(long, value_name = "N")]
    pub max_warm: Option<u32>,
    /// Where buckets live: a directory in the data directory by default, `file:///DIR`, or
    /// `s3://BUCKET[/PREFIX]` for S3 or an S3-compatible service, configured by the usual
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and AWS_ENDPOINT variables.
    #[arg(long, env = "FNHOST_OBJECT_STORE", value_name = "URL")]
    pub object_store: Option<String>,
    /// Largest object accepted into a bucket.
    #[arg(long, default_value = "64Mi", value_parser = parse_bytes, value_name = "SIZE")]
    pub max_object: u64,
    /// Log format on stderr. The level comes from RUST_LOG (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    for (flag, value) in [
        ("--header-read-timeout", args.header_read_timeout),
        ("--body-timeout", args.body_timeout),
        ("--h2-keep-alive", args.h2_keep_alive),
    ] {
        if value.is_zero() {
            anyhow::bail!("{flag} must be above zero");
        }
    }
    if args.max_connections == 0 || args.max_admin_connections == 0 || args.h2_max_streams == 0 {
        anyhow::bail!(
            "--max-connections, --max-admin-connections and --h2-max-streams must be above zero"
        );
    }
    if args.event_lease < Duration::from_secs(1) {
        anyhow::bail!(
            "--event-lease must be at least 1s (it is renewed a third of the way through)"
        );
    }
    if args.usage_flush_interval.is_zero() {
        anyhow::bail!(
            "--usage-flush-interval must be above zero (it is how often usage is written; \
             5s is the default)"
        );
    }
    init_logging(args.log_format);
    make_private(&args.data_dir)?;
    let _lock = lock_data_dir(&args.data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fnhost-worker")
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let router = Arc::new(Router::default());
    let location = MetadataLocation::parse(args.registry.as_deref(), &args.data_dir)?;
    let buckets = Buckets::open(
        args.object_store.as_deref(),
        &args.data_dir,
        args.max_object,
    )?;
    let dependencies = Arc::new(Dependencies::new(
        location.to_string(),
        args.data_dir.display().to_string(),
        buckets.description.clone(),
    ));
    let buckets = buckets.reporting_to(dependencies.clone());
    // In a fleet, modules (and compiled code) live in the object store too, so every node
    // can serve every version.
    let shared_blobs = match (location.is_shared(), &args.object_store) {
        (true, Some(_)) => Some(buckets.shared()),
        (true, None) => {
            tracing::warn!(
                "the registry is shared but --object-store is not set: uploaded modules stay in \
                 this node's data directory, and other nodes cannot serve them"
            );
            None
        }
        (false, _) => None,
    };
    let registry = {
        let (router, at, data_dir) = (router.clone(), location.clone(), args.data_dir.clone());
        let dependencies = dependencies.clone();
        tokio::task::spawn_blocking(move || {
            Registry::open(&at, &data_dir, shared_blobs, router, dependencies)
        })
        .await?
        .with_context(|| format!("opening the registry ({location})"))?
    };
    let engine = Engine::new(
        EngineConfig {
            pool_instances: args.pool_instances,
            max_memory_mb: args.max_memory,
            memory_protection_keys: match args.memory_protection_keys {
                Mpk::No => wasmtime::Enabled::No,
                Mpk::Auto => wasmtime::Enabled::Auto,
                Mpk::Yes => wasmtime::Enabled::Yes,
            },
            network: Arc::new(NetworkPolicy {
                allow_private: args.outbound_allow_private.clone(),
            }),
            long_running_after: (!args.long_running_after.is_zero())
                .then_some(args.long_running_after),
            kv_limits: KvLimits {
                value_bytes: args.kv_max_value as usize,
                keys_per_store: args.kv_max_keys,
                bytes_per_store: args.kv_max_store_bytes,
                ops_per_request: args.kv_ops_per_request,
                ..KvLimits::default()
            },
        },
        args.data_dir.join("compiled"),
        registry.modules().clone(),
    )?;
    engine.set_kv_store(registry.db(), dependencies.clone());
    let known = registry.known_modules().await?;
    engine.retain_compiled(&known);
    if registry.modules().is_shared() {
        let modules = registry.modules().clone();
        tokio::spawn(async move {
            match modules.collect_shared_garbage(&known).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(objects = n, "removed shared modules no version uses"),
                Err(e) => tracing::warn!(error = %e, "could not clean the shared module store"),
            }
        });
    }
    let token = if registry.is_shared() {
        server::fleet_admin_token(&registry, &args.data_dir).await?
    } else {
        server::load_or_create_admin_token(&args.data_dir)?
    };
    let data = bind(args.listen, "--listen").await?;
    let admin = bind(args.admin_listen, "--admin-listen").await?;
    let (data_address, admin_address) = (data.local_addr()?, admin.local_addr()?);
    let max_warm = args.max_warm.unwrap_or(match args.pool_instances {
        0 => 250,
        n => n / 4,
    });
    if args.pool_instances > 0 && max_warm >= args.pool_instances {
        anyhow::bail!(
            "--max-warm {max_warm} leaves no instance slot for requests; keep it below \
             --pool-instances {}",
            args.pool_instances
        );
    }
    let secrets = secrets_key(&args, &registry).await?;
    let tracing = tracing_from(&args)?;
    let host = Arc::new(App::new(
        registry,
        router,
        engine,
        AppOptions {
            admin_token: token,
            max_upload_bytes: args.max_upload,
            queue_timeout: args.queue_timeout,
            scaling: ScalingOptions {
                idle_timeout: args.idle_timeout,
                max_warm,
                tick: SCALING_TICK,
            },
            buckets,
            body_timeout: args.body_timeout,
            event_lease: args.event_lease,
            secrets,
            tracing,
            lane: LaneOptions {
                concurrency: args
                    .async_concurrency
                    .unwrap_or_else(|| {
                        std::thread::available_parallelism().map_or(2, |n| n.get() as u32)
                    })
                    .max(1),
                max_queued: args.async_max_queued.max(1),
                orphan_age: args.async_orphan_age,
            },
        },
    ));
    host.apply_tenancy()
        .await
        .context("reading namespaces and API keys")?;
    println!(
        "fnhost {} serving {} function(s) from {}",
        env!("CARGO_PKG_VERSION"),
        host.router.snapshot().len(),
        args.data_dir.display()
    );
    println!("  metadata:    {location}");
    println!(
        "  modules:     {}",
        if host.registry.modules().is_shared() {
            format!("shared through {}", host.events.buckets.description)
        } else {
            format!("{}", args.data_dir.join("modules").display())
        }
    );
    let engine_status = host.engine.status();
    if engine_status.pooling_allocator {
        println!(
            "  instance pools: {} slots each for WASI 0.2 and 0.3, about {:.1} TiB of address space reserved (not memory){}",
            engine_status.pool_instances,
            engine_status.reserved_address_space_bytes as f64 / (1u64 << 40) as f64,
            if engine_status.memory_protection_keys {
                ", memory protection keys on"
            } else {
                ""
            }
        );
    } else {
        println!("  instance pool: off (instances allocated on demand)");
    }
    println!("  data plane:  http://{}", data.local_addr()?);
    println!(
        "  admin plane: http://{}  (token in {})",
        admin.local_addr()?,
        args.data_dir.join("admin.token").display()
    );
    let max_connections = connection_budget(args.max_connections, args.max_admin_connections);
    println!(
        "  connections: {max_connections} data plane, {} admin plane; head within {:?}, bodies may pause {:?}",
        args.max_admin_connections, args.header_read_timeout, args.body_timeout
    );
    if args.outbound_allow_private.is_empty() {
        println!("  outbound:    public addresses only (and only to allowlisted origins)");
    } else {
        let ranges: Vec<String> = args
            .outbound_allow_private
            .iter()
            .map(ToString::to_string)
            .collect();
        println!(
            "  outbound:    public addresses and {} (and only to allowlisted origins)",
            ranges.join(", ")
        );
    }
    let options = server::ServeOptions {
        grace: args.shutdown_grace,
        drain_delay: args.drain_delay,
        max_header_bytes: usize::try_from(args.max_header_size).unwrap_or(usize::MAX),
        header_read_timeout: args.header_read_timeout,
        max_connections,
        max_admin_connections: args.max_admin_connections,
        h2_max_streams: args.h2_max_streams,
        h2_keep_alive: args.h2_keep_alive,
    };
    host.rollouts
        .load()
        .await
        .context("loading rollouts from the registry")?;
    // Alone on its store, a starting node knows every running event was cut off by its own
    // last stop; in a fleet other nodes may be delivering them, so leases decide.
    if !host.registry.is_shared() {
        let requeued = host.registry.requeue_running_events().await?;
        if requeued > 0 {
            tracing::info!(
                events = requeued,
                "re-sending events whose delivery the last stop interrupted"
            );
        }
    }
    let node = NodeRecord {
        id: format!("{:016x}", fastrand::u64(..)),
        data_address: data_address.to_string(),
        admin_address: admin_address.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_ms: now_ms(),
        heartbeat_ms: 0,
        in_flight: 0,
        warm_instances: 0,
    };
    let tasks = host.start(args.usage_flush_interval, args.event_retention, node);
    let shutdown = shutdown_signal();
    // Last, once everything that needs more than serving has run.
    if args.seccomp == OnOff::On {
        crate::seccomp::install()?;
        println!("  seccomp:     on (system calls outside the serving set fail)");
    } else {
        println!("  seccomp:     off");
    }
    let served = server::run(host.clone(), data, admin, shutdown, options).await;
    tasks.shutdown(args.shutdown_grace).await;
    host.flush_usage().await;
    served
}

/// Connections the kernel may hold for a listener before fnhost accepts them (the kernel caps
/// it at `net.core.somaxconn`): a burst, or a plane at its connection budget, waits there.
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    let listen = || -> std::io::Result<TcpListener> {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().with_context(|| format!("cannot listen on {addr}; choose another address with {flag}"))
}

/// File descriptors kept for everything but connections (database, modules, compiled code,
/// objects, outbound calls): this many, or a quarter of a lower limit. The admin plane's
/// connection budget comes on top.
const FD_RESERVE: u64 = 512;

/// The data plane's connection budget: what was asked for, lowered so that a full data plane
/// still leaves descriptors for the admin plane and the host's own files. The soft
/// descriptor limit is raised to the hard one first.
fn connection_budget(wanted: usize, admin: usize) -> usize {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write the struct passed; nothing else.
        let available = unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return wanted;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit.rlim_cur = limit.rlim_max;
                }
            }
            limit.rlim_cur
        };
        let reserve = FD_RESERVE.min(available / 4);
        let budget = available.saturating_sub(reserve + admin as u64).max(1);
        if admin as u64 + reserve >= available {
            tracing::warn!(
                fd_limit = available,
                admin,
                "the file descriptor limit leaves the data plane almost no connections; raise `ulimit -n` or lower --max-admin-connections"
            );
        }
        let budget = usize::try_from(budget).unwrap_or(usize::MAX).min(wanted);
        if budget < wanted {
            tracing::warn!(
                wanted,
                budget,
                fd_limit = available,
                "the file descriptor limit lowers the data plane's connection budget; raise `ulimit -n` for more"
            );
        }
        budget
    }
    #[cfg(not(unix))]
    {
        let _ = admin;
        wanted
    }
}

/// The data directory holds every function's environment (secrets), usage and the admin
/// token: only the host's user may read it. Files the host creates are private (umask 077),
/// and the directory and database files an older fnhost left readable are tightened.
fn make_private(dir: &std::path::Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
        unsafe { libc::umask(0o077) };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
        ensure_writable(dir)?;
        let tighten = |path: &std::path::Path, mode: u32| -> anyhow::Result<()> {
            match std::fs::metadata(path) {
                Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                        .with_context(|| format!("making {} private", path.display()))
                }
                _ => Ok(()),
            }
        };
        tighten(dir, 0o700)?;
        for name in [
            "metadata.sqlite3",
            "metadata.sqlite3-wal",
            "metadata.sqlite3-shm",
            "metadata-keyvalue.sqlite3",
            "metadata-keyvalue.sqlite3-wal",
            "metadata-keyvalue.sqlite3-shm",
        ] {
            tighten(&dir.join(name), 0o600)?;
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    Ok(())
}

/// Refuses a data directory fnhost cannot write (a read-only mount, a directory owned by
/// someone else) at start, with the fix, rather than at the first upload.
fn ensure_writable(dir: &std::path::Path) -> anyhow::Result<()> {
    let probe = dir.join(".write-probe");
    let written = std::fs::write(&probe, b"fnhost");
    let _ = std::fs::remove_file(&probe);
    match written {
        Ok(()) => Ok(()),
        Err(e) if crate::store::is_disk_full(&e) => {
            // Deployed functions can still be served; writes are refused until space is freed.
            tracing::warn!(
                data_dir = %dir.display(),
                "the disk holding the data directory is full: uploads, object puts and key-value \
                 writes will be refused until space is freed"
            );
            Ok(())
        }
        Err(e) => anyhow::bail!(
            "the data directory {} is not writable ({e}); fnhost keeps its metadata, modules and \
             compiled code there: mount it read-write, give this user write access, or pass \
             another --data-dir",
            dir.display()
        ),
    }
}

/// The tracer `--otlp-endpoint` and the OTEL_* variables ask for, if any.
fn tracing_from(args: &ServeArgs) -> anyhow::Result<Option<Arc<crate::telemetry::Tracing>>> {
    let env = |name: &str| std::env::var(name).ok();
    let Some(url) = crate::telemetry::TracingConfig::traces_url(
        args.otlp_endpoint.as_deref(),
        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").as_deref(),
    ) else {
        return Ok(None);
    };
    let ratio = crate::telemetry::TracingConfig::ratio_from(
        env("OTEL_TRACES_SAMPLER").as_deref(),
        env("OTEL_TRACES_SAMPLER_ARG").as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    let config = crate::telemetry::TracingConfig {
        url,
        service_name: env("OTEL_SERVICE_NAME")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "fnhost".into()),
        ratio,
        queue: args.trace_queue.max(1),
    };
    tracing::info!(url = %config.url, ratio = config.ratio, "exporting traces over OTLP");
    crate::telemetry::Tracing::start(config).map(Some)
}

/// Two hosts on one data directory would corrupt nothing (SQLite locks) but would each cache
/// routes the other changes; refuse the second one clearly instead.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "another fnhost is already serving {}; stop it or pass a different --data-dir",
            dir.display()
        )
    })?;
    Ok(file)
}

/// Resolves on SIGTERM or Ctrl-C: the one place the host listens for signals.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// When to use memory protection keys (`--memory-protection-keys`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mpk {
    No,
    Auto,
    Yes,
}

/// A switch (`--seccomp on|off`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// The secrets key (see `--secrets-key`), checked against the one the registry knows.
async fn secrets_key(
    args: &ServeArgs,
    registry: &Registry,
) -> anyhow::Result<Option<crate::secrets::SecretsKey>> {
    let env = std::env::var("FNHOST_SECRETS_KEY").ok();
    let path = args
        .secrets_key
        .clone()
        .unwrap_or_else(|| args.data_dir.join("secrets.key"));
    let create = args.secrets_key.is_none() && !registry.is_shared();
    let Some(key) = crate::secrets::SecretsKey::load(env.as_deref(), &path, create)? else {
        tracing::warn!(
            "no secrets key (FNHOST_SECRETS_KEY or --secrets-key): functions cannot be given secrets"
        );
        return Ok(None);
    };
    let known = registry
        .setting_or_init(crate::secrets::CHECK_SETTING, key.check_value().to_string())
        .await
        .context("reading the secrets key's check value from the registry")?;
    if known != key.check_value() {
        anyhow::bail!(
            "the secrets key ({}) is not the one this registry's secrets were sealed with; \
             start with the original key (every node of a fleet needs the same one)",
            if env.is_some() {
                "FNHOST_SECRETS_KEY".to_string()
            } else {
                path.display().to_string()
            }
        );
    }
    Ok(Some(key))
}
