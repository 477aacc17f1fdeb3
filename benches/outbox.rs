//! Criterion benches of the event outbox on the embedded SQLite store: claiming (and
//! settling) work from one lane while the other holds a backlog. Each lane walks its own
//! part of an index in due order, so 100,000 queued asynchronous invocations cost a trigger
//! event's claim nothing, and a claim of invocations stops at its batch.
//!
//! Run with `cargo bench --bench outbox`.

use criterion::{Criterion, criterion_group, criterion_main};
use fnhost::model::{
    ConfigPatch, EventRecord, EventStatus, InvocationDetail, Lane, NewCode, NewObject, Settlement,
    StoredRequest, TriggerSource, Why,
};
use fnhost::store::{MetadataStore, SqliteStore};

const BACKLOG: usize = 100_000;

fn invocation(i: usize) -> EventRecord {
    let detail = InvocationDetail {
        request: StoredRequest {
            method: "POST".into(),
            path: "/".into(),
            headers: vec![("content-type".into(), "video/x-y4m".into())],
        },
        payload: None,
        body_bytes: 0,
        max_attempts: 3,
        result: None,
    };
    let id = format!("inv-{i:08}");
    EventRecord::invocation(id, "transcode".into(), None, detail, 0, i as i64)
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteStore::open(&dir.path().join("metadata.sqlite3")).unwrap();
    let why = Why::by("bench", "");
    for name in ["transcode", "thumbnail"] {
        db.set_latest(
            name,
            &NewCode::of(name.as_bytes()),
            &ConfigPatch::default(),
            None,
            1,
            &why,
        )
        .unwrap();
    }
    for i in 0..BACKLOG {
        db.enqueue_invocation(&invocation(i), u32::MAX).unwrap();
    }
    db.add_trigger(
        "thumbnail",
        None,
        &TriggerSource::Object {
            bucket: "uploads".into(),
            prefix: String::new(),
            suffix: String::new(),
            output_bucket: None,
        },
        1,
    )
    .unwrap();
    let object = NewObject {
        bucket: "uploads",
        key: "a.jpg",
        content_type: None,
        size: 1,
        hops: 0,
    };
    let settle = |id: &str| {
        let done = Settlement {
            status: EventStatus::Delivered,
            attempts: 1,
            next_attempt_ms: 0,
            error: None,
            invocation: None,
        };
        db.settle_event(id, &done, 1).unwrap();
    };
    // One trigger event queued, claimed and settled, beside the backlog.
    c.bench_function("outbox_event_beside_100k_invocations", |b| {
        b.iter(|| {
            db.enqueue_object(&object, 1).unwrap();
            let claimed = db
                .claim_due(i64::MAX / 4, i64::MAX / 2, 32, Lane::Events, &[])
                .unwrap();
            assert_eq!(claimed.len(), 1);
            settle(&claimed[0].id);
        })
    });
    // A batch of 32 invocations claimed from the backlog (then put back).
    c.bench_function("outbox_claim_32_of_100k_invocations", |b| {
        b.iter(|| {
            let claimed = db
                .claim_due(i64::MAX / 4, i64::MAX / 2, 32, Lane::Invocations, &[])
                .unwrap();
            assert_eq!(claimed.len(), 32);
            assert_eq!(db.requeue_running(0).unwrap(), 32);
        })
    });
}

criterion_group!(group, benches);
criterion_main!(group);
