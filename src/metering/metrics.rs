//! Prometheus metrics (OpenMetrics text via `prometheus-client`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use std::sync::{Arc, OnceLock, RwLock};

use super::InvocationRecord;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvocationLabels {
    namespace: String,
    function: String,
    version: String,
    alias: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    namespace: String,
    function: String,
    version: String,
}

impl VersionLabels {
    /// With the function's namespace as a label of its own, so dashboards sum by team.
    fn new(function: &str, version: String) -> Self {
        Self {
            namespace: crate::model::namespace_of(function).to_string(),
            function: function.to_string(),
            version,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabels {
    function: String,
    version: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabels {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    function: String,
}

/// One key-value store's figures, read when scraped.
#[derive(Debug, Default)]
pub struct KvStoreGauge {
    pub namespace: String,
    pub store: String,
    /// Operations functions made on it since this host started.
    pub operations: u64,
    pub keys: i64,
    pub bytes: i64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    namespace: String,
    store: String,
}

/// Host-wide values read when scraped (engine counters, memory), not on the request path.
#[derive(Debug, Default)]
pub struct HostGauges {
    pub kv_stores: Vec<KvStoreGauge>,
    pub rss_bytes: u64,
    pub functions: u64,
    pub compiles: u64,
    pub compile_seconds: f64,
    pub compiled_cache_loads: u64,
    pub compiled_cache_load_failures: u64,
    pub loaded_components: u64,
    pub warm_pools: Vec<crate::model::PoolStatus>,
    pub scaler: crate::model::ScalerStats,
    pub async_lane: crate::model::LaneStats,
    pub dependencies: Vec<crate::model::DependencyReport>,
    pub usage: super::PendingUsage,
    /// Span export counts, when traces are exported.
    pub trace_spans: Option<TraceSpans>,
}

/// What became of the spans the host made (see `telemetry::export`).
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceSpans {
    pub exported: u64,
    /// Dropped at once: the export queue was full.
    pub dropped: u64,
    /// Lost: the collector refused an export or did not answer it.
    pub failed: u64,
}

/// One version's series, resolved once per version (see [`Metrics::version`]). Counters that
/// may never move (cold starts, queue waits, refusals) are created on first use, so a version
/// shows only the series it has.
pub struct VersionMetrics {
    labels: VersionLabels,
    duration: Histogram,
    in_flight: Gauge,
    cold_starts: OnceLock<Counter>,
    queue_waits: OnceLock<Counter>,
    overloaded: OnceLock<Counter>,
    /// Invocation counters by alias (`None`: called by version) and status class 1xx-5xx.
    invocations: RwLock<Vec<AliasCounters>>,
}

type AliasCounters = (Option<Arc<str>>, [OnceLock<Counter>; 5]);

impl VersionMetrics {
    pub fn in_flight(&self, delta: i64) {
        self.in_flight.inc_by(delta);
    }

    fn function_labels(&self) -> FunctionLabels {
        FunctionLabels {
            function: self.labels.function.clone(),
        }
    }

    /// Counts one invocation under `alias` and `status`'s class: a read lock and a short scan
    /// (a version is reached through a handful of aliases at most) once its counter exists.
    fn count_invocation(&self, metrics: &Metrics, alias: Option<&Arc<str>>, status: u16) {
        let class = status / 100;
        let create = || {
            metrics
                .invocations
                .get_or_create(&InvocationLabels {
                    namespace: self.labels.namespace.clone(),
                    function: self.labels.function.clone(),
                    version: self.labels.version.clone(),
                    alias: alias.map_or_else(String::new, |a| a.to_string()),
                    status: format!("{class}xx"),
                })
                .clone()
        };
        // Out-of-range classes (HTTP allows codes up to 999) are rare: looked up each time.
        let Some(slot) = (class as usize).checked_sub(1).filter(|&i| i < 5) else {
            create().inc();
            return;
        };
        let same = |entry: &&AliasCounters| entry.0.as_deref() == alias.map(|a| &**a);
        {
            let counters = self.invocations.read().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = counters.iter().find(same) {
                entry.1[slot].get_or_init(create).inc();
                return;
            }
        }
        let mut counters = self.invocations.write().unwrap_or_else(|p| p.into_inner());
        let index = match counters.iter().position(|entry| same(&entry)) {
            Some(index) => index,
            None => {
                counters.push((alias.cloned(), Default::default()));
                counters.len() - 1
            }
        };
        counters[index].1[slot].get_or_init(create).inc();
    }
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~26 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

pub struct Metrics {
    registry: Registry,
    invocations: Family<InvocationLabels, Counter>,
    duration: Family<VersionLabels, Histogram, fn() -> Histogram>,
    instantiation: Histogram,
    cold_starts: Family<VersionLabels, Counter>,
    in_flight: Family<VersionLabels, Gauge>,
    queue_waits: Family<FunctionLabels, Counter>,
    overloaded: Family<FunctionLabels, Counter>,
    shadow_requests: Family<ShadowLabels, Counter>,
    shadow_duration: Family<VersionLabels, Histogram, fn() -> Histogram>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fnhost");
        let invocations = Family::<InvocationLabels, Counter>::default();
        registry.register(
            "invocations",
            "Invocations by function, version, alias and status class",
            invocations.clone(),
        );
        let duration = Family::<VersionLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register_with_unit(
            "invocation_duration",
            "Wall time of an invocation, from admission until its instance is gone",
            Unit::Seconds,
            duration.clone(),
        );
        let instantiation = latency_histogram();
        registry.register_with_unit(
            "instantiation_duration",
            "Time to instantiate a component for one request",
            Unit::Seconds,
            instantiation.clone(),
        );
        let cold_starts = Family::<VersionLabels, Counter>::default();
        registry.register(
            "cold_starts",
            "Instances created on the request path (no warm instance was ready)",
            cold_starts.clone(),
        );
        let in_flight = Family::<VersionLabels, Gauge>::default();
        registry.register(
            "in_flight",
            "Requests running now, per function version",
            in_flight.clone(),
        );
        let queue_waits = Family::<FunctionLabels, Counter>::default();
        registry.register(
            "queue_waits",
            "Requests that waited for a concurrency slot",
            queue_waits.clone(),
        );
        let overloaded = Family::<FunctionLabels, Counter>::default();
        registry.register(
            "overloaded",
            "Requests answered 503 because the function was at its concurrency limit",
            overloaded.clone(),
        );
        let shadow_requests = Family::<ShadowLabels, Counter>::default();
        registry.register(
            "shadow_requests",
            "Mirrored (shadow) requests by version and result: match, mismatch, unknown, dropped",
            shadow_requests.clone(),
        );
        let shadow_duration =
            Family::<VersionLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register_with_unit(
            "shadow_duration",
            "Wall time of a mirrored request on its shadow version",
            Unit::Seconds,
            shadow_duration.clone(),
        );
        Self {
            registry,
            invocations,
            duration,
            instantiation,
            cold_starts,
            in_flight,
            queue_waits,
            overloaded,
            shadow_requests,
            shadow_duration,
        }
    }

    /// The handles of one version's series, resolved now so that recording an invocation
    /// builds no label strings and looks nothing up.
    pub fn version(&self, function: &str, version: crate::model::VersionLabel) -> VersionMetrics {
        let labels = VersionLabels::new(function, version.to_string());
        VersionMetrics {
            duration: self.duration.get_or_create(&labels).clone(),
            in_flight: self.in_flight.get_or_create(&labels).clone(),
            cold_starts: OnceLock::new(),
            queue_waits: OnceLock::new(),
            overloaded: OnceLock::new(),
            invocations: RwLock::new(Vec::new()),
            labels,
        }
    }

    pub fn record(&self, version: &VersionMetrics, record: &InvocationRecord<'_>) {
        version.count_invocation(self, record.alias, record.status);
        if record.status == 503 && !record.billable {
            version
                .overloaded
                .get_or_init(|| {
                    self.overloaded
                        .get_or_create(&version.function_labels())
                        .clone()
                })
                .inc();
        }
        version.duration.observe(record.duration.as_secs_f64());
        if record.cold_start {
            version
                .cold_starts
                .get_or_init(|| self.cold_starts.get_or_create(&version.labels).clone())
                .inc();
        }
        if let Some(instantiation) = record.instantiation {
            self.instantiation.observe(instantiation.as_secs_f64());
        }
    }

    pub fn queue_waited(&self, version: &VersionMetrics) {
        version
            .queue_waits
            .get_or_init(|| {
                self.queue_waits
                    .get_or_create(&version.function_labels())
                    .clone()
            })
            .inc();
    }

    pub fn shadow(
        &self,
        function: &str,
        version: crate::model::VersionLabel,
        outcome: super::ShadowOutcome,
        duration: Option<std::time::Duration>,
    ) {
        self.shadow_requests
            .get_or_create(&ShadowLabels {
                function: function.to_string(),
                version: version.to_string(),
                result: outcome.label().to_string(),
            })
            .inc();
        if let Some(duration) = duration {
            self.shadow_duration
                .get_or_create(&VersionLabels::new(function, version.to_string()))
                .observe(duration.as_secs_f64());
        }
    }

    pub fn encode(&self, gauges: &HostGauges) -> String {
        let mut host = Registry::with_prefix("fnhost");
        host.register_with_unit(
            "resident_memory",
            "Resident memory of the host process",
            Unit::Bytes,
            ConstGauge::new(gauges.rss_bytes as i64),
        );
        host.register(
            "functions",
            "Deployed functions",
            ConstGauge::new(gauges.functions as i64),
        );
        host.register(
            "compiles",
            "Components compiled (uploads, and cache misses after a restart)",
            ConstCounter::new(gauges.compiles),
        );
        host.register_with_unit(
            "compile",
            "Total time spent compiling components",
            Unit::Seconds,
            ConstCounter::new(gauges.compile_seconds),
        );
        host.register(
            "compiled_cache_hits",
            "Components loaded from the on-disk compiled cache instead of compiled",
            ConstCounter::new(gauges.compiled_cache_loads),
        );
        host.register(
            "compiled_cache_failures",
            "Compiled artifacts that failed to load and were recompiled",
            ConstCounter::new(gauges.compiled_cache_load_failures),
        );
        host.register(
            "loaded_components",
            "Components loaded in memory",
            ConstGauge::new(gauges.loaded_components as i64),
        );
        let warm = Family::<VersionLabels, Gauge>::default();
        let target = Family::<VersionLabels, Gauge>::default();
        let provisioned = Family::<VersionLabels, Gauge>::default();
        for pool in &gauges.warm_pools {
            let labels = VersionLabels::new(&pool.function, pool.version.to_string());
            warm.get_or_create(&labels).set(i64::from(pool.warm));
            target.get_or_create(&labels).set(i64::from(pool.target));
            provisioned
                .get_or_create(&labels)
                .set(i64::from(pool.provisioned));
        }
        host.register(
            "warm_instances",
            "Instances instantiated ahead of demand and waiting for a request, per version",
            warm,
        );
        host.register(
            "warm_target",
            "Warm instances the autoscaler keeps for each version now",
            target,
        );
        host.register(
            "provisioned_instances",
            "Provisioned concurrency of each version (part of its warm target)",
            provisioned,
        );
        host.register(
            "prewarmed_instances",
            "Instances created off the request path for warm pools",
            ConstCounter::new(gauges.scaler.prewarmed),
        );
        host.register(
            "prewarm_failures",
            "Pre-instantiations that failed",
            ConstCounter::new(gauges.scaler.prewarm_failures),
        );
        host.register(
            "warm_discarded",
            "Warm instances dropped unused (scale-down, idle timeout, or a new deployment)",
            ConstCounter::new(gauges.scaler.discarded),
        );
        host.register(
            "unloaded_components",
            "Compiled components unloaded from memory after being idle",
            ConstCounter::new(gauges.scaler.unloaded),
        );
        let kv_operations = Family::<StoreLabels, Counter>::default();
        let kv_keys = Family::<StoreLabels, Gauge>::default();
        let kv_bytes = Family::<StoreLabels, Gauge>::default();
        for store in &gauges.kv_stores {
            let labels = StoreLabels {
                namespace: store.namespace.clone(),
                store: store.store.clone(),
            };
            kv_operations
                .get_or_create(&labels)
                .inc_by(store.operations);
            kv_keys.get_or_create(&labels).set(store.keys);
            kv_bytes.get_or_create(&labels).set(store.bytes);
        }
        host.register(
            "kv_operations",
            "Key-value operations functions made on each store since this host started",
            kv_operations,
        );
        host.register("kv_keys", "Keys held by each key-value store", kv_keys);
        host.register_with_unit(
            "kv_stored",
            "Keys and values held by each key-value store",
            Unit::Bytes,
            kv_bytes,
        );
        let lane = &gauges.async_lane;
        host.register(
            "async_limit",
            "Asynchronous invocations this host runs at once at most (--async-concurrency)",
            ConstGauge::new(i64::from(lane.limit)),
        );
        let running = Family::<FunctionLabels, Gauge>::default();
        for (function, n) in &lane.running {
            running
                .get_or_create(&FunctionLabels {
                    function: function.clone(),
                })
                .set(i64::from(*n));
        }
        host.register(
            "async_running",
            "Asynchronous invocations running now, per function",
            running,
        );
        let attempts = Family::<ResultLabels, Counter>::default();
        for (result, n) in [
            ("succeeded", lane.succeeded),
            ("retried", lane.retried),
            ("dead_lettered", lane.dead_lettered),
        ] {
            attempts
                .get_or_create(&ResultLabels {
                    result: result.to_string(),
                })
                .inc_by(n);
        }
        host.register(
            "async_attempts",
            "Attempts of asynchronous invocations since this host started, by how they ended",
            attempts,
        );
        let up = Family::<NameLabels, Gauge>::default();
        let outages = Family::<NameLabels, Counter>::default();
        for dependency in &gauges.dependencies {
            let labels = NameLabels {
                name: dependency.name.clone(),
            };
            up.get_or_create(&labels).set(i64::from(dependency.up));
            outages.get_or_create(&labels).inc_by(dependency.outages);
        }
        host.register(
            "dependency_up",
            "Whether each part the host depends on (database, disk, object_store) answered its last call",
            up,
        );
        host.register(
            "dependency_outages",
            "Outages of each part the host depends on since this host started",
            outages,
        );
        host.register(
            "usage_pending_rows",
            "Usage rows recorded and not yet written to the database (they pile up while it is down)",
            ConstGauge::new(gauges.usage.rows as i64),
        );
        host.register(
            "usage_dropped_rows",
            "Usage rows dropped because the database stayed down past what memory keeps",
            ConstCounter::new(gauges.usage.dropped),
        );
        if let Some(spans) = gauges.trace_spans {
            for (name, help, value) in [
                (
                    "trace_spans_exported",
                    "Spans the collector accepted",
                    spans.exported,
                ),
                (
                    "trace_spans_dropped",
                    "Spans dropped because the export queue was full (a slow or dead collector)",
                    spans.dropped,
                ),
                (
                    "trace_spans_failed",
                    "Spans lost because the collector refused or did not answer their export",
                    spans.failed,
                ),
            ] {
                host.register(name, help, ConstCounter::new(value));
            }
        }
        let mut text = String::new();
        encode_registry(&mut text, &self.registry).expect("writing to a String");
        encode_registry(&mut text, &host).expect("writing to a String");
        encode_eof(&mut text).expect("writing to a String");
        text
    }
}
