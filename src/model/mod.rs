//! The data model: the leaf types every other module speaks (names, version labels, digests,
//! function config, alias specs, triggers and events, usage rows, capacity reports) and their
//! validation. Pure: no I/O, no async, no knowledge of storage, HTTP or wasmtime.

mod aliases;
mod capacity;
mod digest;
mod events;
mod fleet;
mod function;
mod health;
mod http_routes;
mod invocations;
pub mod kv;
mod names;
pub mod oci;
mod percent;
mod tenancy;
pub mod usage;

pub use aliases::{
    AliasRecord, AliasSpec, DEFAULT_ALIAS, DefaultPolicy, DefaultPolicyPatch, HeaderMatch,
    HistoryEntry, InvalidAlias, RouteRule, TrafficChange, WeightedRoute, Why, check_alias_name,
};
pub use capacity::{NodeShare, PoolStatus, ScalerStats};
pub use digest::Digest;
pub use events::{
    EventRecord, EventStatus, MAX_HOPS, NewObject, Settlement, TimerTick, Trigger, TriggerSource,
    backoff_ms, check_bucket,
};
pub use fleet::{HEARTBEAT_MS, NODE_EXPIRY_MS, NodeRecord};
pub use function::{
    CodeInfo, ConfigPatch, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_REQUEST_BODY,
    DEFAULT_MAX_RESPONSE_BODY, DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_MS, FunctionConfig, FunctionInfo,
    HttpWorld, InvalidConfig, MAX_PROVISIONED, NewCode, ScalingPolicy, SecretRow, VersionInfo,
    VersionLabel, check_secret_name, normalize_origin,
};
pub use health::{
    DependencyReport, EngineStatus, HealthSample, ShadowReport, VersionHealth, summarize,
};
pub use http_routes::{
    HttpRoute, InvalidRoute, RouteMatch, RouteTable, RoutesChange, check_routes,
};
pub use invocations::{
    AsyncPatch, AsyncPolicy, Destination, INVOCATION_EVENT, InvocationDetail, InvocationResult,
    Lane, LaneStats, StoredRequest,
};
pub use kv::{KvEntry, KvLimits, KvStoreId};
pub use names::{FunctionName, InvalidName, NAME_RULE, Qualifier};
pub use oci::{InvalidReference, OciReference};
pub use percent::{BasisPoints, FULL};
pub use tenancy::{
    Access, Action, AuditEntry, DEFAULT_NAMESPACE, Denied, InvalidNamespace, KeyRecord,
    NamespaceRecord, NewKey, Principal, QuotaExceeded, Quotas, QuotasPatch, Role, check_namespace,
    constant_time_eq, namespace_of, parse_key, qualify,
};
pub use usage::{LatencyHistogram, UsageRow, billed_ms, gb_seconds, mib_ms};

/// Wall-clock time in Unix milliseconds, the unit of every stored timestamp.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
