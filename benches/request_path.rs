//! Criterion benches of the host's own work on the request path, in process (no sockets):
//!
//! - `validate_upload`: the structural check every upload gets before compiling;
//! - `route_*`: resolving `NAME@QUALIFIER` in the routing snapshot: a version, `$DEFAULT`'s
//!   weighted split, and a sticky alias (hash of a user-id header);
//! - `http_route_*`: finding the HTTP route of a host and path among 1,000 routes (100 hosts
//!   with 9 path prefixes each, and 100 routes for any host), as the data plane does first
//!   when routes exist;
//!
//! The cold-start paths (compile, cache load, instantiate, serve) are in `cold_start.rs`.
//!
//! Run with `cargo bench --bench request_path`.

#[path = "../tests/it/common/wasm.rs"]
mod wasm;

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};

use fnhost::engine::check_component;
use fnhost::model::{
    AliasSpec, BasisPoints, DefaultPolicy, Digest, FunctionConfig, HttpRoute, RouteTable,
    VersionLabel, WeightedRoute,
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
                weight_bp: BasisPoints::new(9000),
            },
            WeightedRoute {
                version: VersionLabel::Number(5),
                weight_bp: BasisPoints::new(1000),
            },
        ],
        sticky_header: Some("user-id".into()),
        rules: vec![],
        mirror: None,
    };
    router.replace_function(
        "hello",
        Some(FunctionRoutes::new(
            deployment(VersionLabel::Latest),
            (1..=5)
                .map(|n| (n, deployment(VersionLabel::Number(n))))
                .collect(),
            &DefaultPolicy {
                latest_bp: BasisPoints::new(1000),
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

    let mut routes = Vec::new();
    for host in 0..100 {
        for path in [
            "",
            "api",
            "api/cart",
            "api/cart/items",
            "api/users",
            "static",
            "img",
            "v1",
            "v2",
        ] {
            let matches = format!("shop{host}.example.com/{path}/*");
            routes.push(HttpRoute::parse("default", &matches, "hello", true).unwrap());
        }
    }
    for path in 0..100 {
        let matches = format!("/any{path}/*");
        routes.push(HttpRoute::parse("default", &matches, "hello", false).unwrap());
    }
    let table = RouteTable::new(routes);
    c.bench_function("http_route_host_prefix", |b| {
        b.iter(|| {
            table
                .find(Some("shop42.example.com:443"), "/api/cart/items/123")
                .unwrap()
                .1
        })
    });
    c.bench_function("http_route_any_host", |b| {
        b.iter(|| table.find(Some("other.example"), "/any57/x").unwrap().1)
    });
}

criterion_group!(request_path, benches);
criterion_main!(request_path);
