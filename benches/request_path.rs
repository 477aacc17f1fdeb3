//! Criterion benches of the host's own work on the request path, in process (no sockets):
//!
//! - `validate_upload`: the structural check every upload gets before compiling;
//! - `route_*`: resolving `NAME@QUALIFIER` in the routing snapshot: a version, `$DEFAULT`'s
//!   weighted split, and a sticky alias (hash of a user-id header);
//! - `invoke_hello`: one request through a loaded `hello` component: fresh `Store`,
//!   instantiate (pooling allocator), `handle`, collect the body. This is fnhost's cold start
//!   once code is compiled: no instance exists before the request.
//!
//! Run with `cargo bench --bench request_path`.

#[path = "../tests/common/wasm.rs"]
mod wasm;

use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};

use fnhost::engine::{Engine, EngineConfig, check_component};
use fnhost::registry::{
    AliasSpec, DefaultPolicy, Digest, FunctionConfig, VersionLabel, WeightedRoute,
};
use fnhost::routing::{Deployment, FunctionRoutes, Resolved, Router};

fn benches(c: &mut Criterion) {
    let hello = wasm::wasm("hello");

    c.bench_function("validate_upload", |b| {
        b.iter(|| check_component(&hello).unwrap())
    });

    let router = Router::default();
    let deployment = |label| {
        Arc::new(Deployment::new(
            Arc::from("hello"),
            label,
            Digest::of(&hello),
            FunctionConfig::default(),
        ))
    };
    let canary = AliasSpec {
        routes: vec![
            WeightedRoute {
                version: VersionLabel::Number(3),
                weight_bp: 9000,
            },
            WeightedRoute {
                version: VersionLabel::Number(5),
                weight_bp: 1000,
            },
        ],
        sticky_header: Some("user-id".into()),
        rules: vec![],
    };
    router.replace_function(
        "hello",
        Some(FunctionRoutes::new(
            deployment(VersionLabel::Latest),
            (1..=5)
                .map(|n| (n, deployment(VersionLabel::Number(n))))
                .collect(),
            &DefaultPolicy {
                latest_bp: 1000,
                sticky_header: None,
            },
            [("prod", &canary)],
        )),
    );
    let choose = |qualifier, headers: &http::HeaderMap| {
        let table = router.snapshot();
        match table.resolve("hello", qualifier).unwrap() {
            Resolved::Deployment(d) => d.digest,
            Resolved::Alias(alias) => alias.choose(headers).digest,
        }
    };
    let no_headers = http::HeaderMap::new();
    let mut user = http::HeaderMap::new();
    user.insert("user-id", "user-12345".parse().unwrap());
    c.bench_function("route_version", |b| {
        b.iter(|| choose(Some("3"), &no_headers))
    });
    c.bench_function("route_default_weighted", |b| {
        b.iter(|| choose(None, &no_headers))
    });
    c.bench_function("route_alias_sticky", |b| {
        b.iter(|| choose(Some("prod"), &user))
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let engine = Engine::new(
        EngineConfig {
            pool_instances: 100,
            ..EngineConfig::default()
        },
        cache.path().to_path_buf(),
    )
    .unwrap();
    let component = runtime
        .block_on(engine.prepare(Digest::of(&hello), hello.clone().into(), &|_| {}))
        .unwrap();
    let config = FunctionConfig::default();
    c.bench_function("invoke_hello", |b| {
        b.to_async(&runtime).iter(|| async {
            let request = http::Request::builder()
                .uri("/")
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let response = engine
                .invoke(&component, &config, request, Box::new(|_| {}))
                .await
                .unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        })
    });
}

criterion_group!(request_path, benches);
criterion_main!(request_path);
