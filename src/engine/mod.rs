//! The WebAssembly engine: a `wasmtime::Engine` and linker per world (WASI 0.2 components
//! on one, WASI 0.3 components on the other, see [`Runtime`]), the compiled-code cache, and
//! per-digest pre-instantiated components.
//!
//! Compilation happens at upload (off the async runtime, one at a time), is cached on disk,
//! and is loaded lazily after a restart. A request never compiles or links when the cache is
//! warm: it only instantiates a `ProxyPre` (WASI 0.2) or `ServicePre` (WASI 0.3) in a fresh
//! `Store`.

mod compiled_cache;
mod config;
pub mod fairness;
mod guest_output;
mod host;
mod invoke;
mod keyvalue;
mod limits;
mod outbound;
mod reuse;
mod validate;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::OnceCell;
use wasmtime::component::{Component, Linker};
use wasmtime::{InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

pub use guest_output::GUEST_OUTPUT_LIMIT;
pub use host::HostState;
pub use invoke::{
    Finished, GuestBody, InvokeError, InvokeFailure, OnFinish, RequestSecrets, WarmInstance,
};
pub use outbound::{IpRange, NetworkPolicy};
pub use reuse::{SharedInstances, shares_instances};
pub use validate::{ComponentSummary, HANDLER_EXPORT_PREFIXES, InvalidComponent, check_component};

use crate::model::{Digest, EngineStatus, HttpWorld};
use crate::store::ModuleStore;
use compiled_cache::CompiledCache;

/// How often the epoch advances. A running guest yields to other tasks at each tick and is
/// stopped at the first tick past its deadline, so this is also the timeout's resolution.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Engine settings chosen at start-up.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Instance slots in the pooling allocator; 0 allocates on demand instead.
    pub pool_instances: u32,
    /// The largest linear memory any instance may have, in MiB (the pool's slot size).
    pub max_memory_mb: u32,
    /// Memory protection keys for the pool's memory slots: where the CPU has them (Intel
    /// MPK, `pku` in /proc/cpuinfo), slots are striped across keys and a running instance
    /// can touch only its own stripe's memory, a hardware wall besides the guard pages.
    /// Experimental in wasmtime 48, so off unless the operator asks.
    pub memory_protection_keys: wasmtime::Enabled,
    /// Where functions' outbound HTTP may connect (public addresses, plus what the operator
    /// allows).
    pub network: Arc<NetworkPolicy>,
    /// CPU time after which an invocation counts as long-running and leaves a runtime
    /// thread to short ones (see `fairness`); `None` turns the policy off.
    pub long_running_after: Option<Duration>,
    /// What functions may do with `wasi:keyvalue` stores.
    pub kv_limits: crate::model::KvLimits,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            pool_instances: 1000,
            max_memory_mb: 4096,
            memory_protection_keys: wasmtime::Enabled::No,
            network: Arc::default(),
            long_running_after: Some(fairness::DEFAULT_LONG_AFTER),
            kv_limits: crate::model::KvLimits::default(),
        }
    }
}

/// A `wasmtime::Engine` with the linker for one world's components.
///
/// Two of them, not one: the component model's async ABI that WASI 0.3 needs makes every
/// store of its engine carry wasmtime's concurrency state and every call run through its
/// concurrent event loop, which cost WASI 0.2 requests a quarter of their throughput when
/// both worlds shared an engine (BENCHMARKS.md). WASI 0.2 components run on an engine
/// without that support, WASI 0.3 components on one with it. Code compiled for one engine
/// never loads into the other (the compiled cache keys files by engine).
struct Runtime {
    engine: wasmtime::Engine,
    linker: Linker<HostState>,
    /// Whether instances come from the pooling allocator (else allocated on demand).
    pooling: bool,
}

impl Runtime {
    fn new(config: &EngineConfig, world: HttpWorld) -> anyhow::Result<Self> {
        let (engine, pooling) = build_engine(config, world)?;
        let mut linker = Linker::new(&engine);
        // Full WASI 0.2, not just the proxy world, for both worlds: components from Rust std,
        // componentize-js and componentize-py import wasi:cli, wasi:filesystem and
        // wasi:sockets too, and a WASI 0.3 component built with Rust std still imports 0.2
        // interfaces. The capabilities behind them are withheld in `HostState`.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        if world == HttpWorld::Service {
            // WASI 0.3 with the same capabilities: no filesystem and no sockets are linked
            // at all (a component importing them is refused at upload), clocks, random,
            // cli (environment from the config, output captured) and wasi:http through the
            // same outbound policy (`WasiHttpHooks` serves both versions).
            wasmtime_wasi::p3::clocks::add_to_linker(&mut linker)?;
            wasmtime_wasi::p3::random::add_to_linker(&mut linker)?;
            wasmtime_wasi::p3::cli::add_to_linker(&mut linker)?;
            wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
        }
        keyvalue::add_to_linker(&mut linker, HostState::kv)?;
        config::add_to_linker(&mut linker, HostState::config_values)?;
        Ok(Self {
            engine,
            linker,
            pooling,
        })
    }
}

/// A component ready to instantiate: compiled, loaded and type-checked against the linker.
pub struct LoadedComponent {
    pub digest: Digest,
    pre: Pre,
    /// When it was loaded, so code loaded but never used can be unloaded when idle.
    loaded_at: Instant,
}

impl LoadedComponent {
    /// The world the component serves HTTP in.
    pub fn world(&self) -> HttpWorld {
        match self.pre {
            Pre::Proxy(_) => HttpWorld::Proxy,
            Pre::Service(_) => HttpWorld::Service,
        }
    }
}

/// A component linked and type-checked against its world's exports.
#[derive(Clone)]
enum Pre {
    Proxy(ProxyPre<HostState>),
    Service(ServicePre<HostState>),
}

/// Why an upload cannot become a function. All but `Storage` and `DiskFull` are the
/// uploader's to fix.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Invalid(#[from] InvalidComponent),
    #[error("the component failed to compile: {0}")]
    Compile(String),
    #[error(
        "the component cannot be linked: {0}. fnhost provides WASI 0.2 (cli, clocks, random, io, \
         filesystem without directories, sockets denied) and wasi:http 0.2 to every component, \
         and WASI 0.3 (cli, clocks, random) and wasi:http 0.3 to components that export the \
         WASI 0.3 handler (wasi:http/handler@0.3.x)"
    )]
    Link(String),
    #[error("storing compiled code failed: {0:#}")]
    Storage(anyhow::Error),
    /// The compiled code did not fit on the disk; nothing was kept.
    #[error("the disk is full ({0}); nothing was written; free space on it and retry")]
    DiskFull(String),
    /// The module is not on this node and the fleet's object store, which has it, is down.
    #[error("the module is not on this node and the object store is unreachable ({0})")]
    Unavailable(String),
}

impl PrepareError {
    /// The part whose outage caused this failure, if any, for `dependencies`.
    pub fn outage(&self) -> Option<crate::dependencies::Part> {
        use crate::dependencies::Part;
        match self {
            Self::DiskFull(_) => Some(Part::Disk),
            Self::Unavailable(_) => Some(Part::ObjectStore),
            _ => None,
        }
    }
}

/// Deploy stages, reported to the uploader as progress.
#[derive(Clone, Debug)]
pub enum Stage {
    WaitingForCompiler,
    Compiling,
    Compiled { compile_ms: u64 },
    CacheHit,
    Linked,
}

/// Counters an operator (and the restart test) reads to see the compile cache at work.
#[derive(Default)]
struct EngineStats {
    compiles: AtomicU64,
    compile_ms: AtomicU64,
    cache_loads: AtomicU64,
    cache_load_failures: AtomicU64,
    /// Compiled code fetched from the fleet's shared store instead of compiled here.
    shared_loads: AtomicU64,
}

pub struct Engine {
    /// Runs WASI 0.2 components.
    proxy: Runtime,
    /// Runs WASI 0.3 components.
    service: Runtime,
    cache: CompiledCache,
    /// Where uploaded modules live, read only when compiled code is missing from the cache.
    modules: Arc<ModuleStore>,
    loaded: DashMap<Digest, Arc<OnceCell<Arc<LoadedComponent>>>>,
    /// One compilation at a time: compiling already uses every core (parallel compilation),
    /// so more would only slow each upload and the requests being served.
    compile_gate: tokio::sync::Semaphore,
    stats: EngineStats,
    config: EngineConfig,
    /// Seats for long-running invocations, one per runtime thread.
    cpu_gate: Arc<fairness::CpuGate>,
    /// `config.long_running_after` in epoch ticks; `None` when the policy is off.
    long_after_ticks: Option<u64>,
    /// Where `wasi:keyvalue` keeps values: the metadata store, set once it is open.
    kv_db: std::sync::OnceLock<Arc<keyvalue::KvBackend>>,
    /// Key-value operations per store, for `/metrics`.
    kv_meter: Arc<keyvalue::KvMeter>,
    _ticker: EpochTicker,
}

impl Engine {
    pub fn new(
        config: EngineConfig,
        cache_dir: PathBuf,
        modules: Arc<ModuleStore>,
    ) -> anyhow::Result<Self> {
        let proxy = Runtime::new(&config, HttpWorld::Proxy)?;
        let service = Runtime::new(&config, HttpWorld::Service)?;
        let cache = CompiledCache::open(cache_dir, [&proxy.engine, &service.engine])
            .context("opening the compiled-code cache")?;
        Ok(Self {
            _ticker: EpochTicker::start([proxy.engine.clone(), service.engine.clone()]),
            proxy,
            service,
            cache,
            modules,
            loaded: DashMap::new(),
            compile_gate: tokio::sync::Semaphore::new(1),
            stats: EngineStats::default(),
            cpu_gate: fairness::CpuGate::new(runtime_threads()),
            long_after_ticks: config
                .long_running_after
                .map(|after| after.as_millis().div_ceil(EPOCH_TICK.as_millis()) as u64),
            config,
            kv_db: std::sync::OnceLock::new(),
            kv_meter: Arc::default(),
        })
    }

    /// The engine and linker for `world`'s components.
    fn runtime(&self, world: HttpWorld) -> &Runtime {
        match world {
            HttpWorld::Proxy => &self.proxy,
            HttpWorld::Service => &self.service,
        }
    }

    /// Gives `wasi:keyvalue` its store (the registry's metadata store) and where its
    /// outages are recorded. Until then, and without it, every store a function opens is
    /// `no-such-store`.
    pub fn set_kv_store(
        &self,
        db: Arc<dyn crate::store::MetadataStore>,
        dependencies: Arc<crate::dependencies::Dependencies>,
    ) {
        let _ = self
            .kv_db
            .set(Arc::new(keyvalue::KvBackend { db, dependencies }));
    }

    /// Counts a live request as short work from now (see `fairness`); hand it to the
    /// invocation, which takes the count over. `None` when the policy is off.
    pub fn short_work(&self) -> Option<fairness::ShortWork> {
        self.long_after_ticks.map(|_| self.cpu_gate.short_work())
    }

    /// Compiles (or finds in the cache), caches and links an uploaded component, so that the
    /// upload is acknowledged only once the function can serve. `world` is what the upload
    /// check found (`check_component`); `stage` reports progress.
    pub async fn prepare(
        &self,
        digest: Digest,
        wasm: Bytes,
        world: HttpWorld,
        stage: &(dyn Fn(Stage) + Send + Sync),
    ) -> Result<Arc<LoadedComponent>, PrepareError> {
        if let Some(ready) = self.loaded_now(&digest) {
            stage(Stage::CacheHit);
            return Ok(ready);
        }
        let (component, world) = match self.load_compiled(digest).await {
            Some(compiled) => {
                stage(Stage::CacheHit);
                compiled
            }
            None => (self.compile(digest, wasm, world, stage).await?, world),
        };
        let loaded = self.link(digest, &component, world)?;
        stage(Stage::Linked);
        let cell = self.loaded.entry(digest).or_default().clone();
        // A request may have loaded it meanwhile; either copy is equivalent.
        let _ = cell.set(loaded.clone());
        Ok(loaded)
    }

    /// The component for `digest`, loading it from the compiled cache (or, failing that,
    /// compiling its module) the first time. Concurrent first requests share one load.
    pub async fn load(&self, digest: Digest) -> Result<Arc<LoadedComponent>, PrepareError> {
        if let Some(ready) = self.loaded_now(&digest) {
            return Ok(ready);
        }
        let cell = self.loaded.entry(digest).or_default().clone();
        cell.get_or_try_init(|| async {
            let (component, world) = match self.load_compiled(digest).await {
                Some(compiled) => compiled,
                None => {
                    tracing::info!(%digest, "compiled code missing from the cache; recompiling");
                    let wasm = self.modules.fetch(&digest).await.map_err(|e| {
                        match crate::store::ObjectStoreDown::of(&e) {
                            Some(down) => PrepareError::Unavailable(down.0.clone()),
                            None => PrepareError::Storage(e.into()),
                        }
                    })?;
                    // The world picks the engine; checked off the runtime, as at upload.
                    let checked = wasm.clone();
                    let world = tokio::task::spawn_blocking(move || check_component(&checked))
                        .await
                        .expect("validation task panicked")?
                        .world;
                    (self.compile(digest, wasm, world, &|_| {}).await?, world)
                }
            };
            self.link(digest, &component, world)
        })
        .await
        .cloned()
    }

    /// Drops a component's loaded code from memory, keeping its compiled artifact on disk so
    /// the next request loads it again in about a millisecond. Instances already running keep
    /// their own reference. Returns whether it was loaded.
    pub fn unload(&self, digest: &Digest) -> bool {
        self.loaded
            .remove(digest)
            .is_some_and(|(_, cell)| cell.initialized())
    }

    /// Every component in memory now, with when it was loaded.
    pub fn loaded_components(&self) -> Vec<(Digest, Instant)> {
        self.loaded
            .iter()
            .filter_map(|e| e.value().get().map(|c| (c.digest, c.loaded_at)))
            .collect()
    }

    /// The component for `digest` if it is in memory now.
    pub fn loaded_now(&self, digest: &Digest) -> Option<Arc<LoadedComponent>> {
        self.loaded.get(digest)?.get().cloned()
    }

    /// Drops a component from memory and from the compiled cache (its module was deleted).
    pub fn forget(&self, digest: &Digest) {
        self.loaded.remove(digest);
        if let Err(e) = self.cache.remove(digest) {
            tracing::warn!(%digest, error = %e, "could not remove compiled artifact");
        }
    }

    /// Removes compiled artifacts of modules outside `keep` (left by a crash between a
    /// delete's commit and its file removal).
    pub fn retain_compiled(&self, keep: &std::collections::HashSet<Digest>) {
        match self.cache.digests() {
            Ok(cached) => {
                for digest in cached.iter().filter(|d| !keep.contains(d)) {
                    tracing::info!(%digest, "removing compiled code of a deleted module");
                    self.forget(digest);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list the compiled-code cache"),
        }
    }

    /// Key-value operations functions made on each store since the host started.
    pub fn kv_operations(&self) -> Vec<(crate::model::KvStoreId, u64)> {
        self.kv_meter.snapshot()
    }

    /// What functions may do with key-value stores (the admin API applies the same).
    pub fn kv_limits(&self) -> crate::model::KvLimits {
        self.config.kv_limits
    }

    pub fn status(&self) -> EngineStatus {
        // The WASI 0.2 engine's pool is the one the host gate sizes requests against (see
        // `App::new`); the 0.3 engine has a pool of the same size when it could reserve one.
        let pooling = self.proxy.pooling;
        let pools = u64::from(self.proxy.pooling) + u64::from(self.service.pooling);
        EngineStatus {
            pooling_allocator: pooling,
            memory_protection_keys: pooling
                && self.config.memory_protection_keys != wasmtime::Enabled::No
                && PoolingAllocationConfig::are_memory_protection_keys_available(),
            pool_instances: if pooling {
                self.config.pool_instances
            } else {
                0
            },
            reserved_address_space_bytes: pools * reserved_address_space(&self.config),
            compiles: self.stats.compiles.load(Ordering::Relaxed),
            compile_ms_total: self.stats.compile_ms.load(Ordering::Relaxed),
            compiled_cache_loads: self.stats.cache_loads.load(Ordering::Relaxed),
            compiled_cache_load_failures: self.stats.cache_load_failures.load(Ordering::Relaxed),
            compiled_shared_loads: self.stats.shared_loads.load(Ordering::Relaxed),
            loaded_components: self
                .loaded
                .iter()
                .filter(|e| e.value().initialized())
                .count(),
        }
    }

    /// Compiled code from this node's cache, or else shared by another node of the fleet,
    /// with the world whose engine it was compiled for (the file says which).
    async fn load_compiled(&self, digest: Digest) -> Option<(Component, HttpWorld)> {
        for world in HttpWorld::ALL {
            if let Some(component) = self.load_cached(digest, world).await {
                return Some((component, world));
            }
        }
        for world in HttpWorld::ALL {
            let path = self.cache.path(&digest, world);
            if self
                .modules
                .fetch_compiled(&self.cache.file_name(&digest, world), &path)
                .await
            {
                self.stats.shared_loads.fetch_add(1, Ordering::Relaxed);
                return Some((self.load_cached(digest, world).await?, world));
            }
        }
        None
    }

    /// Loads a compiled artifact; a missing, stale or corrupt file is a miss, never an error.
    async fn load_cached(&self, digest: Digest, world: HttpWorld) -> Option<Component> {
        let path = self.cache.path(&digest, world);
        if !path.exists() {
            return None;
        }
        let engine = self.runtime(world).engine.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            // SAFETY: the file was written by `compile` below through an atomic rename into
            // fnhost's own data directory and is never modified in place; its name carries the
            // engine's compatibility hash, and wasmtime checks the header again on load.
            unsafe { Component::deserialize_file(&engine, &path) }
        })
        .await
        .expect("deserialize task panicked");
        match loaded {
            Ok(component) => {
                self.stats.cache_loads.fetch_add(1, Ordering::Relaxed);
                Some(component)
            }
            Err(e) => {
                self.stats
                    .cache_load_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%digest, error = %e, "compiled artifact unusable; recompiling");
                self.cache.evict(&digest, world);
                None
            }
        }
    }

    /// Compiles `wasm` for the engine of `world` (the world it exports) and caches the code.
    async fn compile(
        &self,
        digest: Digest,
        wasm: Bytes,
        world: HttpWorld,
        stage: &(dyn Fn(Stage) + Send + Sync),
    ) -> Result<Component, PrepareError> {
        if self.compile_gate.available_permits() == 0 {
            stage(Stage::WaitingForCompiler);
        }
        let _permit = self
            .compile_gate
            .acquire()
            .await
            .expect("gate never closes");
        stage(Stage::Compiling);
        let started = Instant::now();
        let engine = self.runtime(world).engine.clone();
        let path = self.cache.path(&digest, world);
        let compiled = tokio::task::spawn_blocking(move || {
            let component = Component::new(&engine, &wasm)
                .map_err(|e| PrepareError::Compile(format!("{e:#}")))?;
            let serialized = component
                .serialize()
                .map_err(|e| PrepareError::Storage(e.into()))?;
            crate::durable_file::write(&path, &serialized, 0o644).map_err(|e| {
                if crate::store::is_disk_full(&e) {
                    PrepareError::DiskFull(format!("writing compiled code: {e}"))
                } else {
                    PrepareError::Storage(e.into())
                }
            })?;
            // Load back from the file: the mmapped artifact is what every later start uses,
            // and it lets the kernel share and page out code.
            let loaded = unsafe { Component::deserialize_file(&engine, &path) }
                .map_err(|e| PrepareError::Storage(e.into()))?;
            Ok::<_, PrepareError>((loaded, serialized))
        })
        .await
        .expect("compile task panicked")?;
        let (compiled, serialized) = compiled;
        if self.modules.is_shared() {
            // Other nodes load this instead of compiling; requests need not wait for it.
            let modules = self.modules.clone();
            let name = self.cache.file_name(&digest, world);
            tokio::spawn(async move {
                // An object store outage is logged once, where it is met by an upload.
                if let Err(e) = modules.share_compiled(&name, &serialized).await
                    && crate::store::ObjectStoreDown::of(&e).is_none()
                {
                    tracing::warn!(%digest, error = %e, "could not share compiled code with the fleet");
                }
            });
        }
        let ms = started.elapsed().as_millis() as u64;
        self.stats.compiles.fetch_add(1, Ordering::Relaxed);
        self.stats.compile_ms.fetch_add(ms, Ordering::Relaxed);
        tracing::info!(%digest, compile_ms = ms, "compiled component");
        stage(Stage::Compiled { compile_ms: ms });
        Ok(compiled)
    }

    /// Links `component` (compiled for `world`'s engine) and types it against that world.
    fn link(
        &self,
        digest: Digest,
        component: &Component,
        world: HttpWorld,
    ) -> Result<Arc<LoadedComponent>, PrepareError> {
        let link_error = |e: wasmtime::Error| PrepareError::Link(format!("{e:#}"));
        let instance_pre = self
            .runtime(world)
            .linker
            .instantiate_pre(component)
            .map_err(link_error)?;
        let pre = match world {
            HttpWorld::Proxy => Pre::Proxy(ProxyPre::new(instance_pre).map_err(link_error)?),
            HttpWorld::Service => Pre::Service(ServicePre::new(instance_pre).map_err(link_error)?),
        };
        Ok(Arc::new(LoadedComponent {
            digest,
            pre,
            loaded_at: Instant::now(),
        }))
    }
}

/// The runtime's worker threads: tokio's multi-thread default, one per CPU.
fn runtime_threads() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// Builds the engine for `world`'s components: epoch interruption for timeouts, and the
/// pooling allocator with copy-on-write memory images when the machine can reserve its
/// address space.
fn build_engine(
    config: &EngineConfig,
    world: HttpWorld,
) -> anyhow::Result<(wasmtime::Engine, bool)> {
    let mut wasm = wasmtime::Config::new();
    wasm.epoch_interruption(true);
    wasm.memory_init_cow(true);
    match world {
        // No concurrency state in stores, and calls take wasmtime's direct path.
        HttpWorld::Proxy => wasm.concurrency_support(false),
        // WASI 0.3 components use the component model's async ABI (streams, futures, async
        // exports). Stackful async and threads stay off: no toolchain we serve emits them.
        HttpWorld::Service => wasm.wasm_component_model_async(true),
    };
    if config.memory_protection_keys == wasmtime::Enabled::Yes
        && (config.pool_instances == 0
            || !PoolingAllocationConfig::are_memory_protection_keys_available())
    {
        anyhow::bail!(
            "memory protection keys were asked for (--memory-protection-keys yes) but {}; \
             use `auto` to use them only where available",
            if config.pool_instances == 0 {
                "the instance pool is off (--pool-instances 0)"
            } else {
                "this CPU or kernel has none (no `pku` in /proc/cpuinfo)"
            }
        );
    }
    if config.pool_instances > 0 {
        let mut pooled = wasm.clone();
        pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(config)));
        match wasmtime::Engine::new(&pooled) {
            Ok(engine) => return Ok((engine, true)),
            Err(e) => tracing::warn!(
                error = %e,
                world = %world,
                "pooling allocator unavailable (address space limits?); allocating instances on demand"
            ),
        }
    }
    Ok((wasmtime::Engine::new(&wasm)?, false))
}

/// Linear-memory slots per instance slot: a component may have a memory per core module.
/// Also the most memories one instance may have, so that no function takes more than its
/// share of the pool (every toolchain we test builds components with one).
const MEMORIES_PER_INSTANCE: u32 = 2;
/// Most core module instances and tables one component instance may have (componentize-py,
/// the largest we test, instantiates 14 core modules and defines 2 tables).
const CORE_INSTANCES_PER_INSTANCE: u32 = 64;
const TABLES_PER_INSTANCE: u32 = 16;
/// Wasmtime's default guard region after each memory slot.
const MEMORY_GUARD_BYTES: u64 = 32 << 20;
/// Wasmtime's default reservation per 64-bit linear memory; a slot is at least this big.
const MEMORY_RESERVATION_BYTES: u64 = 4 << 30;

/// Address space one pool reserves (each engine has one): every memory slot is
/// max(reservation, max memory) plus its guard. 1,000 instance slots (2,000 memories)
/// reserve about 8 TiB of the 128 TiB a 64-bit process may map; none of it is memory until
/// touched.
pub fn reserved_address_space(config: &EngineConfig) -> u64 {
    let slot =
        MEMORY_RESERVATION_BYTES.max(u64::from(config.max_memory_mb) << 20) + MEMORY_GUARD_BYTES;
    u64::from(config.pool_instances) * u64::from(MEMORIES_PER_INSTANCE) * slot
}

/// Pool sizing: see [`reserved_address_space`] for what it costs.
fn pooling_config(config: &EngineConfig) -> PoolingAllocationConfig {
    let n = config.pool_instances;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(n)
        // Core modules per component instance: Rust and JS components instantiate 3-4
        // (main and adapter shims), componentize-py 14, so every slot can hold a Python one.
        .total_core_instances(n.saturating_mul(16))
        .total_memories(n.saturating_mul(MEMORIES_PER_INSTANCE))
        .total_tables(n.saturating_mul(4))
        .total_stacks(n)
        // One component cannot take more than its share of the shared pool.
        .max_memories_per_component(MEMORIES_PER_INSTANCE)
        .max_core_instances_per_component(CORE_INSTANCES_PER_INSTANCE)
        .max_tables_per_component(TABLES_PER_INSTANCE)
        .max_memory_size((config.max_memory_mb as usize) << 20)
        .max_unused_warm_slots(n.min(100))
        // Reset a freed slot by zeroing the pages the instance dirtied (found with the
        // PAGEMAP_SCAN ioctl on Linux 6.7+) instead of madvise: the next instance in the slot
        // takes no page faults for them. Bounded per slot so idle slots hold little memory.
        .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
        .table_keep_resident(TABLE_KEEP_RESIDENT)
        .async_stack_keep_resident(STACK_KEEP_RESIDENT)
        .pagemap_scan(wasmtime::Enabled::Auto)
        .memory_protection_keys(config.memory_protection_keys);
    pool
}

/// Bytes of a freed slot's linear memory, table and fiber stack reset in place rather than
/// returned to the kernel.
const MEMORY_KEEP_RESIDENT: usize = 1 << 20;
const TABLE_KEEP_RESIDENT: usize = 64 << 10;
const STACK_KEEP_RESIDENT: usize = 64 << 10;

/// Advances the engines' epochs every `EPOCH_TICK` on a plain thread (not a tokio task, so a
/// busy runtime cannot delay timeouts). Stops and joins on drop.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl EpochTicker {
    fn start(engines: [wasmtime::Engine; 2]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fnhost-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engines.iter().for_each(wasmtime::Engine::increment_epoch);
                }
            })
            .expect("spawning the epoch thread");
        Self {
            stop,
            thread: Mutex::new(Some(thread)),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = thread.join();
        }
    }
}
