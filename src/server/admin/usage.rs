//! Observability endpoints: `GET /v1/usage` (billing-grade usage), `GET /metrics`
//! (Prometheus), and `GET /v1/functions/NAME/health` (rolling per-version health).

use std::collections::BTreeMap;
use std::time::Duration;

use super::ensure_function;
use crate::api::{Health, UsageGrouping as GroupBy, UsageLine, UsageReport};
use crate::app::App;
use crate::metering::{HostGauges, KvStoreGauge};
use crate::model::{Action, Principal, UsageRow, gb_seconds, namespace_of};
use crate::server::body::{Body, full, json};
use crate::server::error::ApiError;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;

/// `?function=NAME&namespace=NS&since=SECONDS&by=namespace|function|version|alias|minute`:
/// stored minutes plus what is not flushed yet, so the answer is current. A key sees its own
/// namespace's usage only.
pub async fn usage(
    host: &App,
    principal: &Principal,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (mut function, mut since_secs, mut by) = (None::<String>, 3600i64, GroupBy::Version);
    let namespace = super::listing_scope(principal, request)?;
    for (key, value) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "function" => function = Some(value.to_string()),
            "namespace" => {}
            "since" => {
                since_secs = value.parse().map_err(|_| {
                    ApiError::bad_request(format!("since={value:?} must be whole seconds"))
                })?
            }
            "by" => {
                by = GroupBy::parse(&value).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "by={value:?}: group by namespace, function, version, alias or minute"
                    ))
                })?
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}; use function, namespace, since or by"
                )));
            }
        }
    }
    if let Some(function) = &function {
        principal
            .check(Action::Read, Some(namespace_of(function)))
            .map_err(|denied| ApiError::forbidden(denied.0))?;
    }
    let since_ms = crate::model::now_ms() - since_secs * 1000;
    let since_minute = since_ms.div_euclid(60_000);
    let mut rows = host.registry.usage(function.clone(), since_minute).await?;
    rows.extend(host.metering.peek_pending().into_iter().filter(|r| {
        r.minute >= since_minute && function.as_deref().is_none_or(|f| r.function == f)
    }));
    if let Some(namespace) = &namespace {
        rows.retain(|r| namespace_of(&r.function) == namespace);
    }
    let mut groups: BTreeMap<(String, String, String, i64), UsageRow> = BTreeMap::new();
    for row in &rows {
        let key = (
            if by == GroupBy::Namespace {
                format!(".{}", namespace_of(&row.function))
            } else {
                row.function.clone()
            },
            if by == GroupBy::Version {
                row.version.clone()
            } else {
                String::new()
            },
            if by == GroupBy::Alias {
                row.alias.clone()
            } else {
                String::new()
            },
            if by == GroupBy::Minute { row.minute } else { 0 },
        );
        groups.entry(key).or_default().add(row);
    }
    let lines = groups
        .into_iter()
        .map(|((function, version, alias, minute), row)| {
            let ms = |q| row.histogram.quantile(q).map(|d| d.as_secs_f64() * 1000.0);
            let (namespace, function) = match function.strip_prefix('.') {
                Some(namespace) if by == GroupBy::Namespace => {
                    (namespace.to_string(), String::new())
                }
                _ => (namespace_of(&function).to_string(), function),
            };
            UsageLine {
                namespace,
                function,
                version: (by == GroupBy::Version).then_some(version),
                alias: (by == GroupBy::Alias).then_some(alias),
                minute: (by == GroupBy::Minute).then_some(minute),
                invocations: row.invocations,
                errors: row.errors,
                cold_starts: row.cold_starts,
                status_2xx: row.status[0],
                status_3xx: row.status[1],
                status_4xx: row.status[2],
                status_5xx: row.status[3],
                p50_ms: ms(0.5),
                p99_ms: ms(0.99),
                billed_ms: row.billed_ms,
                gb_seconds: gb_seconds(row.mib_ms),
                provisioned_ms: row.provisioned_ms,
                provisioned_gb_seconds: gb_seconds(row.provisioned_mib_ms),
                kv_operations: row.kv_operations,
            }
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &UsageReport {
            since_ms,
            by,
            rows: lines,
        },
    ))
}

/// The Prometheus exposition (OpenMetrics text); key-value stores' sizes are read from the
/// store (one query, off the runtime).
pub async fn metrics(host: &App) -> Result<Response<Body>, ApiError> {
    // Metrics matter most during an outage: without the database they go out without the
    // stores' sizes rather than not at all.
    let sizes = host
        .registry
        .blocking(|db| db.kv_stores())
        .await
        .unwrap_or_default();
    let operations: std::collections::HashMap<_, _> =
        host.engine.kv_operations().into_iter().collect();
    let mut kv_stores: Vec<KvStoreGauge> = sizes
        .into_iter()
        .map(|(store, keys, bytes)| KvStoreGauge {
            operations: operations.get(&store).copied().unwrap_or(0),
            namespace: store.namespace,
            store: store.store,
            keys,
            bytes,
        })
        .collect();
    // Stores only read so far have operations but no size row.
    for (store, ops) in &operations {
        if !kv_stores
            .iter()
            .any(|g| g.namespace == store.namespace && g.store == store.store)
        {
            kv_stores.push(KvStoreGauge {
                namespace: store.namespace.clone(),
                store: store.store.clone(),
                operations: *ops,
                ..KvStoreGauge::default()
            });
        }
    }
    let engine = host.engine.status();
    let gauges = HostGauges {
        kv_stores,
        rss_bytes: resident_bytes(),
        functions: host.router.snapshot().len() as u64,
        compiles: engine.compiles,
        compile_seconds: engine.compile_ms_total as f64 / 1000.0,
        compiled_cache_loads: engine.compiled_cache_loads,
        compiled_cache_load_failures: engine.compiled_cache_load_failures,
        loaded_components: engine.loaded_components as u64,
        warm_pools: host.scaler.status(),
        scaler: host.scaler.stats(),
        async_lane: host.lane.stats(),
        dependencies: host.registry.dependencies().report(),
        usage: host.metering.pending_stats(),
        trace_spans: host.tracing.as_ref().map(|tracing| {
            use std::sync::atomic::Ordering::Relaxed;
            let stats = tracing.stats();
            crate::metering::TraceSpans {
                exported: stats.exported.load(Relaxed),
                dropped: stats.dropped.load(Relaxed),
                failed: stats.failed.load(Relaxed),
            }
        }),
    };
    let mut response = Response::new(full(host.metering.encode_metrics(&gauges)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
}

/// Resident set size from /proc (0 where unavailable).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// `?window=SECONDS` (default 60, at most 300).
pub async fn health(
    host: &App,
    function: &str,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    ensure_function(host, function).await?;
    let mut window = 60u64;
    for (key, value) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "window" => {
                window = value
                    .parse()
                    .ok()
                    .filter(|w| (1..=300).contains(w))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("window={value:?}: use 1 to 300 seconds"))
                    })?
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}; use window"
                )));
            }
        }
    }
    Ok(json(
        StatusCode::OK,
        &Health {
            function: function.to_string(),
            versions: host.metering.health(function, Duration::from_secs(window)),
            shadow: host.metering.shadow_report(function),
        },
    ))
}
