//! Criterion benches of `wasi:keyvalue`'s storage, in process, on the embedded SQLite store
//! (WAL, `synchronous=FULL`: every write is fsynced before it returns, as functions see it):
//! `get` of one key, `set` of a 100-byte value, `increment`, and a compare-and-swap (read,
//! then swap on the version read). Through a function, see `scripts/bench-kv`.
//!
//! Run with `cargo bench --bench keyvalue`.

use criterion::{Criterion, criterion_group, criterion_main};
use fnhost::model::{KvLimits, KvStoreId};
use fnhost::store::{MetadataStore, SqliteStore};

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteStore::open(&dir.path().join("metadata.sqlite3")).unwrap();
    let store = KvStoreId {
        namespace: "default".into(),
        store: "bench".into(),
    };
    let limits = KvLimits::default();
    let value = vec![b'v'; 100];
    db.kv_set(&store, &[("k".into(), value.clone())], &limits)
        .unwrap();
    let keys = vec!["k".to_string()];
    c.bench_function("kv_get", |b| b.iter(|| db.kv_get(&store, &keys).unwrap()));
    c.bench_function("kv_set", |b| {
        b.iter(|| {
            db.kv_set(&store, &[("k".into(), value.clone())], &limits)
                .unwrap()
        })
    });
    c.bench_function("kv_increment", |b| {
        b.iter(|| db.kv_increment(&store, "n", 1, &limits).unwrap())
    });
    c.bench_function("kv_compare_and_swap", |b| {
        b.iter(|| {
            let read = db.kv_get(&store, &keys).unwrap().pop().flatten().unwrap();
            assert!(
                db.kv_swap(&store, "k", Some(read.version), &value, &limits)
                    .unwrap()
            );
        })
    });
}

criterion_group!(group, benches);
criterion_main!(group);
