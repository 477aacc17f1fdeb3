//! Criterion benches of each step of a cold start, on the `hello` sample:
//!
//! - `compile`: compiling the component and writing the compiled cache, as an upload does;
//! - `load_from_cache`: loading compiled code from disk and linking it, as after a restart;
//! - `instantiate_on_demand` / `instantiate_pooled`: a new store and instance, without and
//!   with the pooling allocator (dropping it is included: every request pays for both);
//! - `serve_on_demand`: instantiate on the request path and serve one GET;
//! - `serve_prewarmed`: take a pre-instantiated store and serve one GET (the warm pool's
//!   path; instantiation happened earlier, off the request path, and is not timed).
//!
//! Run with `cargo bench --bench cold_start`.

#[path = "../tests/it/common/wasm.rs"]
mod wasm;

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use fnhost::cold_start::Rig;

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hello = wasm::wasm("hello");
    let mut pooled = runtime.block_on(Rig::new(hello.clone(), 100)).unwrap();
    let on_demand = runtime.block_on(Rig::new(hello, 0)).unwrap();

    let mut slow = c.benchmark_group("code");
    slow.sample_size(10);
    slow.bench_function("compile", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| runtime.block_on(pooled.compile()).unwrap())
                .sum()
        })
    });
    slow.finish();
    c.bench_function("load_from_cache", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| runtime.block_on(pooled.load_cached()).unwrap())
                .sum()
        })
    });
    let instantiate = |rig: &Rig, n: u64| -> Duration {
        let started = Instant::now();
        for _ in 0..n {
            drop(runtime.block_on(rig.instantiate()).unwrap());
        }
        started.elapsed()
    };
    c.bench_function("instantiate_on_demand", |b| {
        b.iter_custom(|n| instantiate(&on_demand, n))
    });
    c.bench_function("instantiate_pooled", |b| {
        b.iter_custom(|n| instantiate(&pooled, n))
    });
    c.bench_function("serve_on_demand", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| runtime.block_on(pooled.serve(None)).unwrap())
                .sum()
        })
    });
    c.bench_function("serve_prewarmed", |b| {
        b.iter_custom(|n| {
            let mut total = Duration::ZERO;
            for _ in 0..n {
                let warm = runtime.block_on(pooled.instantiate()).unwrap();
                total += runtime.block_on(pooled.serve(Some(warm))).unwrap();
            }
            total
        })
    });
}

criterion_group!(cold_start, benches);
criterion_main!(cold_start);
