//! Criterion benches of the host's own work on the request path, in process (no sockets):
//!
//! - `validate_upload`: the structural check every upload gets before compiling;
//! - `route_lookup`: resolving `NAME@QUALIFIER` in the routing snapshot;
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
use fnhost::registry::{Digest, FunctionConfig, VersionLabel};
use fnhost::routing::{Deployment, FunctionRoutes, Router};

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
    router.replace_function(
        "hello",
        Some(FunctionRoutes {
            latest: deployment(VersionLabel::Latest),
            versions: (1..=5)
                .map(|n| (n, deployment(VersionLabel::Number(n))))
                .collect(),
        }),
    );
    c.bench_function("route_lookup", |b| {
        b.iter(|| {
            let table = router.snapshot();
            table.resolve("hello", Some("3")).unwrap().digest
        })
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
            let response = engine.invoke(&component, &config, request).await.unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        })
    });
}

criterion_group!(request_path, benches);
criterion_main!(request_path);
