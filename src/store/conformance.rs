//! The tests every [`MetadataStore`] implementation must pass: what the trait promises, not
//! how SQLite keeps it. An implementation runs them all with
//! `conformance_tests!(|| -> (Guard, impl MetadataStore) { ... })`, which makes one `#[test]`
//! per check, each on a fresh, empty store (the guard keeps its backing alive).

use super::{MetadataStore, StoreError};
use crate::model::{
    Access, AliasSpec, AuditEntry, BasisPoints, ConfigPatch, DefaultPolicyPatch, Digest,
    EventStatus, KeyRecord, NamespaceRecord, NewObject, Quotas, Role, TimerTick, TrafficChange,
    TriggerSource, UsageRow, VersionLabel, WeightedRoute, Why,
};
use crate::model::{
    EventRecord, HttpRoute, InvocationDetail, InvocationResult, KvLimits, KvStoreId, Lane, NewCode,
    RouteMatch, RoutesChange, Settlement, StoredRequest,
};

/// One `#[test]` per conformance check for the store `make()` returns.
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::store::conformance::conformance_tests!(@each $make;
            publish_numbers_versions_and_dedupes_identical_latest,
            a_version_keeps_the_source_its_latest_had,
            version_numbers_are_never_reused,
            deleting_returns_only_unreferenced_modules,
            aliases_name_existing_versions_and_pin_them,
            promote_publishes_and_resets_the_latest_share_atomically,
            every_traffic_change_is_in_the_history_with_its_reason,
            config_patches_apply_to_latest_only,
            provisioned_concurrency_needs_an_existing_version,
            object_events_are_queued_claimed_settled_and_retried,
            timer_ticks_do_not_overlap_unless_allowed,
            only_old_delivered_events_are_pruned,
            usage_batches_merge_by_key,
            expired_leases_are_claimed_again_and_renewed_ones_are_not,
            settings_keep_the_first_value_and_nodes_expire,
            rollout_saves_are_compare_and_swap,
            leases_have_one_holder_until_they_expire,
            health_samples_from_every_node_are_kept_per_second,
            namespaces_hold_quotas_and_go_only_when_empty,
            keys_are_stored_listed_and_revoked_once,
            the_audit_log_is_newest_first_and_per_namespace,
            access_is_function_wide_and_survives_new_code,
            kv_values_have_versions_and_stores_are_apart,
            kv_increment_and_swap_are_atomic_steps,
            kv_limits_refuse_and_change_nothing,
            http_routes_change_per_namespace_and_each_match_has_one_owner,
            invocations_have_their_own_lane_queue_limit_and_result,
        );
    };
    (@each $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let (_guard, store) = ($make)();
                $crate::store::conformance::$check(&store);
            }
        )*
    };
}
pub(crate) use conformance_tests;

fn settled(
    status: EventStatus,
    attempts: u32,
    next_attempt_ms: i64,
    error: Option<&str>,
) -> Settlement {
    Settlement {
        status,
        attempts,
        next_attempt_ms,
        error: error.map(str::to_string),
        invocation: None,
    }
}

fn deploy(db: &dyn MetadataStore, name: &str, code: &[u8], greeting: &str) {
    let patch = ConfigPatch {
        env: Some([("GREETING".to_string(), greeting.to_string())].into()),
        ..ConfigPatch::default()
    };
    db.set_latest(name, &NewCode::of(code), &patch, None, 1, &why())
        .unwrap();
}

fn why() -> Why {
    Why::admin("test")
}

fn share(bp: u32) -> DefaultPolicyPatch {
    DefaultPolicyPatch {
        latest_bp: Some(BasisPoints::new(bp)),
        sticky_header: None,
    }
}

pub fn publish_numbers_versions_and_dedupes_identical_latest(db: &dyn MetadataStore) {
    deploy(db, "f", b"a", "hi");
    let v1 = db.publish("f", "first", false, 2, &why()).unwrap();
    assert!(v1.created);
    assert_eq!(v1.version.version, 1);
    let again = db.publish("f", "again", false, 3, &why()).unwrap();
    assert!(!again.created);
    assert_eq!(again.version.version, 1);
    // Same code, different config: a new version.
    deploy(db, "f", b"a", "hello");
    assert_eq!(
        db.publish("f", "", false, 4, &why())
            .unwrap()
            .version
            .version,
        2
    );
}

pub fn a_version_keeps_the_source_its_latest_had(db: &dyn MetadataStore) {
    let pulled = NewCode {
        source: Some(format!(
            "oci://127.0.0.1:5000/shop/cart:v1@sha256:{}",
            "c".repeat(64)
        )),
        ..NewCode::of(b"pulled")
    };
    let patch = ConfigPatch::default();
    db.set_latest("f", &pulled, &patch, None, 1, &why())
        .unwrap();
    let v1 = db.publish("f", "", false, 2, &why()).unwrap().version;
    assert_eq!(v1.source, pulled.source);
    let rows = db.function("f").unwrap();
    assert_eq!(rows.info.latest.source, pulled.source);
    // An uploaded file has no source, and replacing $LATEST clears the pulled one.
    db.set_latest("f", &NewCode::of(b"file"), &patch, None, 3, &why())
        .unwrap();
    assert_eq!(db.function("f").unwrap().info.latest.source, None);
    let v2 = db.publish("f", "", false, 4, &why()).unwrap().version;
    assert_eq!(v2.source, None);
    let versions = db.function("f").unwrap().versions;
    assert_eq!(versions[0].source, pulled.source, "version 1 is unchanged");
}

pub fn version_numbers_are_never_reused(db: &dyn MetadataStore) {
    deploy(db, "f", b"a", "1");
    db.publish("f", "", false, 1, &why()).unwrap();
    deploy(db, "f", b"b", "2");
    db.publish("f", "", false, 1, &why()).unwrap();
    db.delete_version("f", 2, &why()).unwrap();
    deploy(db, "f", b"c", "3");
    assert_eq!(
        db.publish("f", "", false, 1, &why())
            .unwrap()
            .version
            .version,
        3
    );
}

pub fn deleting_returns_only_unreferenced_modules(db: &dyn MetadataStore) {
    deploy(db, "f", b"shared", "1");
    deploy(db, "g", b"shared", "1");
    db.publish("f", "", false, 1, &why()).unwrap();
    deploy(db, "f", b"other", "2");
    assert!(db.delete_version("f", 1, &why()).unwrap().is_empty());
    let gone = db.delete_function("f", &why()).unwrap();
    assert_eq!(gone, vec![Digest::of(b"other")]);
    assert_eq!(
        db.delete_function("g", &why()).unwrap(),
        vec![Digest::of(b"shared")]
    );
    assert!(matches!(
        db.delete_function("g", &why()),
        Err(StoreError::UnknownFunction(_))
    ));
}

fn alias(routes: &[(u32, u32)]) -> AliasSpec {
    AliasSpec {
        routes: routes
            .iter()
            .map(|&(n, weight_bp)| WeightedRoute {
                version: VersionLabel::Number(n),
                weight_bp: BasisPoints::new(weight_bp),
            })
            .collect(),
        sticky_header: None,
        rules: vec![],
        mirror: None,
    }
}

pub fn aliases_name_existing_versions_and_pin_them(db: &dyn MetadataStore) {
    deploy(db, "f", b"a", "1");
    db.publish("f", "", false, 1, &why()).unwrap();
    deploy(db, "f", b"b", "2");
    db.publish("f", "", false, 1, &why()).unwrap();
    assert!(matches!(
        db.set_alias("f", "prod", &alias(&[(1, 5000), (3, 5000)]), 1, &why()),
        Err(StoreError::UnknownVersion(_, 3))
    ));
    db.set_alias("f", "prod", &alias(&[(1, 5000), (2, 5000)]), 1, &why())
        .unwrap();
    match db.delete_version("f", 1, &why()) {
        Err(StoreError::VersionInUse { aliases, .. }) => assert_eq!(aliases, ["prod"]),
        other => panic!("expected a conflict, got {other:?}"),
    }
    db.set_alias("f", "prod", &alias(&[(2, 10_000)]), 2, &why())
        .unwrap();
    db.delete_version("f", 1, &why()).unwrap();
    let rows = db.function("f").unwrap();
    assert_eq!(rows.aliases[0].spec.routes.len(), 1);
    db.delete_alias("f", "prod", &why()).unwrap();
    assert!(matches!(
        db.delete_alias("f", "prod", &why()),
        Err(StoreError::UnknownAlias(..))
    ));
}

pub fn promote_publishes_and_resets_the_latest_share_atomically(db: &dyn MetadataStore) {
    deploy(db, "f", b"a", "1");
    db.set_default_policy("f", &share(2500), &why()).unwrap();
    assert_eq!(
        db.function("f").unwrap().default_policy.latest_bp,
        BasisPoints::new(2500)
    );
    let promoted = db.publish("f", "", true, 1, &why()).unwrap();
    assert_eq!(promoted.version.version, 1);
    assert_eq!(
        db.function("f").unwrap().default_policy.latest_bp,
        BasisPoints::new(0)
    );
    assert!(db.set_default_policy("f", &share(10_001), &why()).is_err());
    assert!(matches!(
        db.set_default_policy("nope", &share(1), &why()),
        Err(StoreError::UnknownFunction(_))
    ));
}

pub fn every_traffic_change_is_in_the_history_with_its_reason(db: &dyn MetadataStore) {
    deploy(db, "f", b"one", "1");
    db.publish("f", "", false, 1, &Why::admin("first publish"))
        .unwrap();
    db.set_latest_config("f", &ConfigPatch::default(), 2)
        .unwrap();
    db.set_alias("f", "prod", &alias(&[(1, 10_000)]), 3, &Why::admin("alias"))
        .unwrap();
    db.save_rollout(
        "f",
        0,
        "{}",
        Some(&TrafficChange::LatestShare(BasisPoints::new(2500))),
        &Why::rollout("step 1"),
        4,
    )
    .unwrap();
    db.delete_alias("f", "prod", &Why::admin("cleanup"))
        .unwrap();
    let history = db.alias_history("f", None, 100).unwrap();
    let summary: Vec<(String, String, bool, bool)> = history
        .iter()
        .map(|h| {
            (
                h.alias.clone(),
                h.reason.clone(),
                h.before.is_some(),
                h.after.is_some(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("prod".into(), "cleanup".into(), true, false),
            ("$DEFAULT".into(), "step 1".into(), true, true),
            ("prod".into(), "alias".into(), false, true),
            ("$DEFAULT".into(), "first publish".into(), true, true),
            ("$DEFAULT".into(), "test".into(), false, true),
        ],
        "a config change moves no traffic and is not recorded"
    );
    assert_eq!(history[1].actor, "rollout");
    let after = history[1].after.as_ref().unwrap();
    assert_eq!(after.routes[1].weight_bp, BasisPoints::new(2500));
    assert_eq!(db.alias_history("f", Some("prod"), 100).unwrap().len(), 2);
    let stored = db.rollouts().unwrap();
    assert_eq!(
        (
            stored.len(),
            stored[0].function.as_str(),
            stored[0].revision
        ),
        (1, "f", 1)
    );
    // A rollout of an unknown function changes nothing.
    assert!(matches!(
        db.save_rollout("g", 0, "{}", None, &why(), 5),
        Err(StoreError::UnknownFunction(_))
    ));
}

pub fn rollout_saves_are_compare_and_swap(db: &dyn MetadataStore) {
    deploy(db, "f", b"one", "1");
    db.publish("f", "", false, 1, &why()).unwrap();
    let step = |bp| Some(TrafficChange::LatestShare(BasisPoints::new(bp)));
    assert_eq!(db.rollout("f").unwrap(), None);
    let first = db
        .save_rollout("f", 0, "first", step(100).as_ref(), &why(), 2)
        .unwrap();
    assert_eq!(first, 1);
    // A second start from "nothing stored" loses: someone started first.
    assert!(matches!(
        db.save_rollout("f", 0, "second", step(5000).as_ref(), &why(), 3),
        Err(StoreError::Conflict(_))
    ));
    let paused = db
        .save_rollout("f", first, "paused", None, &why(), 4)
        .unwrap();
    assert_eq!(paused, 2);
    // A driver judging on the revision before the pause changes nothing, traffic included.
    assert!(matches!(
        db.save_rollout("f", first, "advanced", step(5000).as_ref(), &why(), 5),
        Err(StoreError::Conflict(_))
    ));
    let stored = db.rollout("f").unwrap().unwrap();
    assert_eq!((stored.revision, stored.state.as_str()), (2, "paused"));
    let function = db.function("f").unwrap();
    assert_eq!(function.default_policy.latest_bp, BasisPoints::new(100));
    let history = db.alias_history("f", None, 100).unwrap();
    assert_eq!(
        history.len(),
        3,
        "the lost saves left no history: {history:?}"
    );
}

pub fn leases_have_one_holder_until_they_expire(db: &dyn MetadataStore) {
    assert_eq!(db.lease_holder("rollouts", 0).unwrap(), None);
    assert!(db.acquire_lease("rollouts", "a", 1_000, 6_000).unwrap());
    assert!(!db.acquire_lease("rollouts", "b", 2_000, 7_000).unwrap());
    assert_eq!(
        db.lease_holder("rollouts", 6_000).unwrap().as_deref(),
        Some("a")
    );
    assert_eq!(db.lease_holder("rollouts", 6_001).unwrap(), None, "expired");
    assert!(
        db.acquire_lease("rollouts", "a", 3_000, 8_000).unwrap(),
        "renewed"
    );
    assert!(
        !db.acquire_lease("rollouts", "b", 7_000, 12_000).unwrap(),
        "renewal held"
    );
    assert!(
        db.acquire_lease("other", "b", 7_000, 12_000).unwrap(),
        "names are apart"
    );
    assert!(
        db.acquire_lease("rollouts", "b", 8_001, 13_000).unwrap(),
        "expired: taken"
    );
    assert!(!db.acquire_lease("rollouts", "a", 9_000, 14_000).unwrap());
    db.release_lease("rollouts", "a").unwrap();
    assert!(
        !db.acquire_lease("rollouts", "a", 9_000, 14_000).unwrap(),
        "only the holder releases"
    );
    db.release_lease("rollouts", "b").unwrap();
    assert!(
        db.acquire_lease("rollouts", "a", 9_000, 14_000).unwrap(),
        "released: taken at once"
    );
}

pub fn health_samples_from_every_node_are_kept_per_second(db: &dyn MetadataStore) {
    let sample = |version, second, requests, errors| {
        let mut latency = crate::model::LatencyHistogram::default();
        latency.record(std::time::Duration::from_millis(requests));
        crate::model::HealthSample {
            function: "f".into(),
            version,
            second,
            requests,
            errors,
            latency,
        }
    };
    let latest = VersionLabel::Latest;
    let one = VersionLabel::Number(1);
    db.add_health("a", &[sample(latest, 100, 5, 1), sample(one, 100, 50, 0)])
        .unwrap();
    db.add_health("b", &[sample(latest, 100, 7, 0), sample(latest, 101, 3, 0)])
        .unwrap();
    // A node publishing the same second again replaces its sample (it grew).
    db.add_health("a", &[sample(latest, 100, 6, 2)]).unwrap();
    db.add_health("a", &[]).unwrap();
    let mut samples = db.health("f", 100, 102).unwrap();
    samples.sort_by_key(|s| (s.second, s.version.to_string(), s.requests));
    let seen: Vec<(i64, String, u64, u64)> = samples
        .iter()
        .map(|s| (s.second, s.version.to_string(), s.requests, s.errors))
        .collect();
    assert_eq!(
        seen,
        [
            (100, "1".into(), 50, 0),
            (100, "latest".into(), 6, 2),
            (100, "latest".into(), 7, 0),
            (101, "latest".into(), 3, 0),
        ]
    );
    assert_eq!(samples[0].latency.count(), 1, "histograms round-trip");
    assert_eq!(db.health("f", 101, 102).unwrap().len(), 1);
    assert!(db.health("g", 0, 1000).unwrap().is_empty());
    assert_eq!(db.prune_health(101).unwrap(), 3);
    assert_eq!(db.health("f", 0, 1000).unwrap().len(), 1);
}

pub fn config_patches_apply_to_latest_only(db: &dyn MetadataStore) {
    deploy(db, "f", b"a", "1");
    db.publish("f", "", false, 1, &why()).unwrap();
    let patch = ConfigPatch {
        memory_mb: Some(64),
        ..ConfigPatch::default()
    };
    db.set_latest_config("f", &patch, 2).unwrap();
    let rows = db.function("f").unwrap();
    assert_eq!(rows.info.latest.config.memory_mb, 64);
    assert_eq!(
        rows.info.latest.config.env["GREETING"], "1",
        "other fields are kept"
    );
    assert_ne!(
        rows.versions[0].config.memory_mb, 64,
        "published versions are frozen"
    );
    let invalid = ConfigPatch {
        memory_mb: Some(0),
        ..ConfigPatch::default()
    };
    assert!(matches!(
        db.set_latest_config("f", &invalid, 3),
        Err(StoreError::InvalidConfig(_))
    ));
    assert_eq!(db.function("f").unwrap().info.latest.config.memory_mb, 64);
    assert!(matches!(
        db.set_latest_config("nope", &patch, 3),
        Err(StoreError::UnknownFunction(_))
    ));
}

pub fn provisioned_concurrency_needs_an_existing_version(db: &dyn MetadataStore) {
    deploy(db, "f", b"a", "1");
    db.publish("f", "", false, 1, &why()).unwrap();
    assert!(matches!(
        db.set_provisioned("f", Some(VersionLabel::Number(7)), 2),
        Err(StoreError::UnknownVersion(_, 7))
    ));
    db.set_provisioned("f", None, 3).unwrap();
    let policy = db
        .set_provisioned("f", Some(VersionLabel::Number(1)), 2)
        .unwrap();
    assert_eq!((policy.provisioned, policy.versions["1"]), (3, 2));
    assert_eq!(db.function("f").unwrap().scaling, policy);
    // Deleting the version drops its provisioned count with it.
    db.delete_version("f", 1, &why()).unwrap();
    assert!(db.function("f").unwrap().scaling.versions.is_empty());
}

pub fn object_events_are_queued_claimed_settled_and_retried(db: &dyn MetadataStore) {
    deploy(db, "f", b"a", "1");
    let source = TriggerSource::Object {
        bucket: "uploads".into(),
        prefix: "img/".into(),
        suffix: String::new(),
        output_bucket: Some("thumbs".into()),
    };
    let trigger = db.add_trigger("f", None, &source, 1).unwrap();
    assert_eq!(
        db.triggers(Some("f")).unwrap(),
        std::slice::from_ref(&trigger)
    );
    let object = |key| NewObject {
        bucket: "uploads",
        key,
        content_type: Some("image/png"),
        size: 3,
        hops: 0,
    };
    assert!(
        db.enqueue_object(&object("doc/x.png"), 2)
            .unwrap()
            .is_empty()
    );
    let queued = db.enqueue_object(&object("img/x.png"), 2).unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].output_bucket.as_deref(), Some("thumbs"));
    // Claimed once: a second claim finds nothing due while the lease holds.
    let claimed = db.claim_due(3, 1_000, 10, Lane::Events, &[]).unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].status, EventStatus::Running);
    assert!(
        db.claim_due(3, 1_000, 10, Lane::Events, &[])
            .unwrap()
            .is_empty()
    );
    // A stopped host's running events go back to pending (at least once).
    assert_eq!(db.requeue_running(4).unwrap(), 1);
    let id = db.claim_due(5, 1_000, 10, Lane::Events, &[]).unwrap()[0]
        .id
        .clone();
    db.settle_event(&id, &settled(EventStatus::Failed, 5, 6, Some("boom")), 6)
        .unwrap();
    let failed = db
        .events("f", Lane::Events, Some(EventStatus::Failed), 10)
        .unwrap();
    assert_eq!(failed[0].last_error.as_deref(), Some("boom"));
    assert_eq!(failed[0].attempts, 5);
    let retried = db.retry_event(&id, 7).unwrap();
    assert_eq!(
        (retried.status, retried.attempts),
        (EventStatus::Pending, 0)
    );
    assert!(matches!(
        db.retry_event(&id, 8),
        Err(StoreError::InvalidConfig(_))
    ));
    assert!(matches!(
        db.retry_event("no-such-event", 8),
        Err(StoreError::NotFound(_))
    ));
    db.delete_trigger("f", trigger.id).unwrap();
    assert!(
        db.enqueue_object(&object("img/y.png"), 9)
            .unwrap()
            .is_empty()
    );
}

pub fn timer_ticks_do_not_overlap_unless_allowed(db: &dyn MetadataStore) {
    deploy(db, "f", b"a", "1");
    let source = TriggerSource::Timer {
        cron: "* * * * * *".into(),
        allow_overlap: false,
    };
    let trigger = db.add_trigger("f", None, &source, 1).unwrap();
    let queued = |tick| tick == TimerTick::Queued;
    assert!(queued(db.enqueue_timer(&trigger, 2, false, 2).unwrap()));
    // The same tick again (another node firing it): queued once.
    assert_eq!(
        db.enqueue_timer(&trigger, 2, true, 2).unwrap(),
        TimerTick::AlreadyQueued
    );
    assert_eq!(
        db.enqueue_timer(&trigger, 3, false, 3).unwrap(),
        TimerTick::Busy
    );
    assert!(queued(db.enqueue_timer(&trigger, 3, true, 3).unwrap()));
    for event in db.claim_due(4, 1_000, 10, Lane::Events, &[]).unwrap() {
        db.settle_event(&event.id, &settled(EventStatus::Delivered, 1, 4, None), 4)
            .unwrap();
    }
    assert!(queued(db.enqueue_timer(&trigger, 5, false, 5).unwrap()));
    // A delivered tick is not queued again either.
    assert_eq!(
        db.enqueue_timer(&trigger, 3, true, 6).unwrap(),
        TimerTick::AlreadyQueued
    );
}

pub fn usage_batches_merge_by_key(db: &dyn MetadataStore) {
    let row = |function: &str, minute, invocations| UsageRow {
        function: function.into(),
        version: "1".into(),
        alias: String::new(),
        minute,
        invocations,
        billed_ms: invocations * 2,
        ..UsageRow::default()
    };
    db.add_usage(&[row("f", 10, 3), row("g", 10, 1)]).unwrap();
    db.add_usage(&[row("f", 10, 2), row("f", 11, 7)]).unwrap();
    let mut f = db.usage(Some("f"), 0).unwrap();
    f.sort_by_key(|r| r.minute);
    assert_eq!(
        f.iter()
            .map(|r| (r.minute, r.invocations, r.billed_ms))
            .collect::<Vec<_>>(),
        [(10, 5, 10), (11, 7, 14)]
    );
    assert_eq!(db.usage(None, 11).unwrap().len(), 1);
    assert_eq!(db.usage(None, 0).unwrap().len(), 3);
}

pub fn only_old_delivered_events_are_pruned(db: &dyn MetadataStore) {
    deploy(db, "f", b"a", "1");
    let source = TriggerSource::Timer {
        cron: "* * * * * *".into(),
        allow_overlap: true,
    };
    let trigger = db.add_trigger("f", None, &source, 1).unwrap();
    for now in [10, 20, 30, 40] {
        db.enqueue_timer(&trigger, now, true, now).unwrap();
    }
    let claimed = db.claim_due(50, 1_000, 10, Lane::Events, &[]).unwrap();
    assert_eq!(claimed.len(), 4);
    // Delivered long ago, delivered recently, dead-lettered long ago; one left running.
    db.settle_event(
        &claimed[0].id,
        &settled(EventStatus::Delivered, 1, 60, None),
        60,
    )
    .unwrap();
    db.settle_event(
        &claimed[1].id,
        &settled(EventStatus::Delivered, 1, 500, None),
        500,
    )
    .unwrap();
    db.settle_event(
        &claimed[2].id,
        &settled(EventStatus::Failed, 5, 60, Some("x")),
        60,
    )
    .unwrap();
    assert_eq!(db.prune_delivered_events(100).unwrap(), 1);
    let left: Vec<EventStatus> = db
        .events("f", Lane::Events, None, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.contains(&EventStatus::Failed), "dead letters stay");
    assert!(left.contains(&EventStatus::Running));
    assert_eq!(db.prune_delivered_events(100).unwrap(), 0);
}

pub fn expired_leases_are_claimed_again_and_renewed_ones_are_not(db: &dyn MetadataStore) {
    deploy(db, "f", b"a", "1");
    let source = TriggerSource::Timer {
        cron: "* * * * * *".into(),
        allow_overlap: true,
    };
    let trigger = db.add_trigger("f", None, &source, 1).unwrap();
    db.enqueue_timer(&trigger, 9, true, 10).unwrap();
    db.enqueue_timer(&trigger, 10, true, 10).unwrap();
    let claimed = db.claim_due(10, 100, 10, Lane::Events, &[]).unwrap();
    assert_eq!(claimed.len(), 2);
    // One holder keeps delivering (renews), the other died: only its event is claimed again.
    db.renew_leases(std::slice::from_ref(&claimed[0].id), 300)
        .unwrap();
    let again = db.claim_due(150, 400, 10, Lane::Events, &[]).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, claimed[1].id);
    assert_eq!(again[0].status, EventStatus::Running);
    assert!(
        db.claim_due(250, 400, 10, Lane::Events, &[])
            .unwrap()
            .is_empty()
    );
    // A settled event's lease is not renewed back to life.
    db.settle_event(
        &claimed[0].id,
        &settled(EventStatus::Delivered, 1, 260, None),
        260,
    )
    .unwrap();
    db.renew_leases(std::slice::from_ref(&claimed[0].id), 10_000)
        .unwrap();
    let delivered = db
        .events("f", Lane::Events, Some(EventStatus::Delivered), 10)
        .unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        db.claim_due(500, 600, 10, Lane::Events, &[]).unwrap().len(),
        1,
        "only the expired one"
    );
}

pub fn settings_keep_the_first_value_and_nodes_expire(db: &dyn MetadataStore) {
    assert_eq!(db.setting_or_init("admin_token", "first").unwrap(), "first");
    assert_eq!(
        db.setting_or_init("admin_token", "second").unwrap(),
        "first"
    );
    let node = |id: &str, heartbeat_ms| crate::model::NodeRecord {
        id: id.into(),
        data_address: format!("10.0.0.{}:8080", id.len()),
        admin_address: "127.0.0.1:8081".into(),
        version: "1.0.0".into(),
        started_ms: 1,
        heartbeat_ms,
        in_flight: 3,
        warm_instances: 4,
    };
    db.heartbeat(&node("a", 100), 0).unwrap();
    db.heartbeat(&node("bb", 200), 0).unwrap();
    assert_eq!(db.nodes(0).unwrap(), vec![node("a", 100), node("bb", 200)]);
    assert_eq!(db.nodes(150).unwrap(), vec![node("bb", 200)]);
    // A heartbeat updates the row; one past the expiry removes silent nodes for good.
    db.heartbeat(&node("bb", 300), 150).unwrap();
    assert_eq!(db.nodes(0).unwrap(), vec![node("bb", 300)]);
    db.leave("bb").unwrap();
    assert!(db.nodes(0).unwrap().is_empty());
}

fn namespace(name: &str) -> NamespaceRecord {
    NamespaceRecord {
        name: name.to_string(),
        quotas: Quotas::default(),
        created_ms: 5,
    }
}

pub fn namespaces_hold_quotas_and_go_only_when_empty(db: &dyn MetadataStore) {
    let names = |db: &dyn MetadataStore| -> Vec<String> {
        db.namespaces()
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect()
    };
    assert_eq!(
        names(db),
        ["default"],
        "the default namespace always exists"
    );
    db.create_namespace(&namespace("shop")).unwrap();
    assert!(matches!(
        db.create_namespace(&namespace("shop")),
        Err(StoreError::Conflict(_))
    ));
    let quotas = Quotas {
        functions: Some(3),
        memory_mb: Some(128),
        ..Quotas::default()
    };
    let record = db.set_quotas("shop", &quotas).unwrap();
    assert_eq!((record.quotas, record.created_ms), (quotas.clone(), 5));
    assert_eq!(db.namespaces().unwrap()[1].quotas, quotas);
    assert!(matches!(
        db.set_quotas("nope", &quotas),
        Err(StoreError::NotFound(_))
    ));
    deploy(db, "cart.shop", b"c", "hi");
    deploy(db, "shop", b"s", "hi"); // a default-namespace function named like the namespace
    let refused = db.delete_namespace("shop").unwrap_err();
    assert!(refused.to_string().contains("1 function"), "{refused}");
    db.delete_function("cart.shop", &why()).unwrap();
    db.delete_namespace("shop").unwrap();
    assert_eq!(names(db), ["default"]);
    assert!(matches!(
        db.delete_namespace("default"),
        Err(StoreError::Conflict(_))
    ));
}

fn key(id: &str, namespace: &str) -> KeyRecord {
    KeyRecord {
        id: id.to_string(),
        namespace: namespace.to_string(),
        role: Role::Deployer,
        secret_sha256: format!("hash-of-{id}"),
        description: "ci".to_string(),
        created_ms: 1,
        expires_ms: Some(1_000),
        revoked_ms: None,
        created_by: "admin".to_string(),
    }
}

pub fn keys_are_stored_listed_and_revoked_once(db: &dyn MetadataStore) {
    assert!(
        matches!(db.add_key(&key("k1", "shop")), Err(StoreError::NotFound(_))),
        "a key needs its namespace"
    );
    db.create_namespace(&namespace("shop")).unwrap();
    db.add_key(&key("k1", "shop")).unwrap();
    db.add_key(&key("k2", "default")).unwrap();
    assert_eq!(db.key("k1").unwrap(), Some(key("k1", "shop")));
    assert_eq!(db.key("k3").unwrap(), None);
    let ids = |ns| -> Vec<String> { db.keys(ns).unwrap().into_iter().map(|k| k.id).collect() };
    assert_eq!(ids(Some("shop")), ["k1"]);
    assert_eq!(ids(None), ["k2", "k1"], "by namespace, then id");
    let revoked = db.revoke_key("k1", 50).unwrap();
    assert_eq!(revoked.revoked_ms, Some(50));
    assert_eq!(db.revoke_key("k1", 60).unwrap().revoked_ms, Some(50));
    assert_eq!(db.key("k1").unwrap().unwrap().revoked_ms, Some(50));
    assert!(matches!(
        db.revoke_key("k9", 1),
        Err(StoreError::NotFound(_))
    ));
    db.delete_namespace("shop").unwrap();
    assert_eq!(db.key("k1").unwrap(), None, "a namespace's keys go with it");
}

pub fn the_audit_log_is_newest_first_and_per_namespace(db: &dyn MetadataStore) {
    let entry = |namespace: Option<&str>, action: &str| AuditEntry {
        seq: 0,
        at_ms: 7,
        namespace: namespace.map(str::to_string),
        actor: "key:k1".to_string(),
        action: action.to_string(),
        status: 403,
    };
    let first = db.add_audit(&entry(Some("shop"), "PUT /a")).unwrap();
    let second = db.add_audit(&entry(None, "POST /v1/namespaces")).unwrap();
    db.add_audit(&entry(Some("shop"), "DELETE /b")).unwrap();
    assert!(second > first);
    let all = db.audit(None, 10).unwrap();
    let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["DELETE /b", "POST /v1/namespaces", "PUT /a"]);
    assert_eq!(all[2].seq, first);
    assert_eq!((all[2].status, all[2].at_ms), (403, 7));
    let shop = db.audit(Some("shop"), 1).unwrap();
    assert_eq!(shop.len(), 1);
    assert_eq!(shop[0].action, "DELETE /b");
}

pub fn access_is_function_wide_and_survives_new_code(db: &dyn MetadataStore) {
    deploy(db, "f", b"a", "hi");
    assert_eq!(db.function("f").unwrap().access, Access::Public);
    db.set_access("f", Access::Key).unwrap();
    db.publish("f", "", false, 2, &why()).unwrap();
    deploy(db, "f", b"b", "hi");
    assert_eq!(db.function("f").unwrap().access, Access::Key);
    assert!(matches!(
        db.set_access("nope", Access::Key),
        Err(StoreError::UnknownFunction(_))
    ));
}

fn kv_store(namespace: &str, store: &str) -> KvStoreId {
    KvStoreId {
        namespace: namespace.to_string(),
        store: store.to_string(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub fn kv_values_have_versions_and_stores_are_apart(db: &dyn MetadataStore) {
    let cart = kv_store("default", "cart");
    let limits = KvLimits::default();
    db.kv_set(
        &cart,
        &[("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())],
        &limits,
    )
    .unwrap();
    db.kv_set(&cart, &[("a".into(), b"one".to_vec())], &limits)
        .unwrap();
    let got = db.kv_get(&cart, &strings(&["a", "b", "c"])).unwrap();
    assert_eq!(
        got[0].as_ref().map(|e| (e.value.as_slice(), e.version)),
        Some((&b"one"[..], 2))
    );
    assert_eq!(got[1].as_ref().map(|e| e.version), Some(1));
    assert_eq!(got[2], None);
    for other in [kv_store("shop", "cart"), kv_store("default", "orders")] {
        assert_eq!(
            db.kv_get(&other, &strings(&["a"])).unwrap(),
            [None],
            "{other:?}"
        );
    }
    for key in ["c", "d", "e"] {
        db.kv_set(&cart, &[(key.into(), vec![1])], &limits).unwrap();
    }
    assert_eq!(db.kv_keys(&cart, None, 2).unwrap(), ["a", "b"]);
    assert_eq!(db.kv_keys(&cart, Some("b"), 10).unwrap(), ["c", "d", "e"]);
    db.kv_delete(&cart, &strings(&["a", "zzz"])).unwrap();
    assert_eq!(db.kv_keys(&cart, None, 10).unwrap(), ["b", "c", "d", "e"]);
}

pub fn kv_increment_and_swap_are_atomic_steps(db: &dyn MetadataStore) {
    let stock = kv_store("shop", "stock");
    let limits = KvLimits::default();
    assert_eq!(db.kv_increment(&stock, "n", 5, &limits).unwrap(), 5);
    assert_eq!(db.kv_increment(&stock, "n", -2, &limits).unwrap(), 3);
    let got = db.kv_get(&stock, &strings(&["n"])).unwrap();
    assert_eq!(got[0].as_ref().unwrap().value, b"3");
    db.kv_set(&stock, &[("text".into(), b"ten".to_vec())], &limits)
        .unwrap();
    assert!(matches!(
        db.kv_increment(&stock, "text", 1, &limits),
        Err(StoreError::Limit(_))
    ));
    let version = got[0].as_ref().unwrap().version;
    assert!(
        db.kv_swap(&stock, "n", Some(version), b"2", &limits)
            .unwrap()
    );
    assert!(
        !db.kv_swap(&stock, "n", Some(version), b"1", &limits)
            .unwrap(),
        "a second swap of the same version loses"
    );
    assert!(db.kv_swap(&stock, "new", None, b"x", &limits).unwrap());
    assert!(
        !db.kv_swap(&stock, "new", None, b"y", &limits).unwrap(),
        "no longer absent"
    );
    let got = db.kv_get(&stock, &strings(&["n", "new"])).unwrap();
    assert_eq!(got[0].as_ref().unwrap().value, b"2");
    assert_eq!(got[1].as_ref().unwrap().value, b"x");
}

pub fn kv_limits_refuse_and_change_nothing(db: &dyn MetadataStore) {
    let small = kv_store("default", "small");
    let limits = KvLimits {
        keys_per_store: 2,
        bytes_per_store: 20,
        ..KvLimits::default()
    };
    db.kv_set(&small, &[("k1".into(), b"12345678".to_vec())], &limits)
        .unwrap();
    let refused = db
        .kv_set(
            &small,
            &[("k2".into(), vec![0; 2]), ("k3".into(), vec![0; 2])],
            &limits,
        )
        .unwrap_err();
    assert!(refused.to_string().contains("keys"), "{refused}");
    assert_eq!(
        db.kv_keys(&small, None, 10).unwrap(),
        ["k1"],
        "all or nothing"
    );
    let refused = db
        .kv_set(&small, &[("k1".into(), vec![0; 30])], &limits)
        .unwrap_err();
    assert!(refused.to_string().contains("bytes"), "{refused}");
    // Overwrites and deletes give their bytes back.
    db.kv_set(&small, &[("k1".into(), vec![0; 10])], &limits)
        .unwrap();
    db.kv_delete(&small, &strings(&["k1"])).unwrap();
    db.kv_set(
        &small,
        &[("a".into(), vec![0; 8]), ("b".into(), vec![0; 8])],
        &limits,
    )
    .unwrap();
}

fn http_route(namespace: &str, matches: &str, target: &str) -> HttpRoute {
    HttpRoute::parse(namespace, matches, target, false).unwrap()
}

pub fn http_routes_change_per_namespace_and_each_match_has_one_owner(db: &dyn MetadataStore) {
    let cart = http_route("shop", "shop.example.com/api/cart/*", "cart@prod");
    let home = http_route("shop", "shop.example.com/", "web");
    let replaced = db
        .change_http_routes(
            "shop",
            &RoutesChange::Replace(vec![cart.clone(), home.clone()]),
        )
        .unwrap();
    assert_eq!(replaced.len(), 2);
    let other = http_route("blog", "/posts/*", "posts");
    db.change_http_routes("blog", &RoutesChange::Put(other.clone()))
        .unwrap();
    let mut all = db.http_routes().unwrap();
    all.sort_by(|a, b| a.matches.cmp(&b.matches));
    assert_eq!(all, [other.clone(), home.clone(), cart.clone()]);

    // Another namespace may not take a match, nor name a function outside its namespace;
    // a refused change changes nothing.
    let taken = http_route("blog", "shop.example.com/api/cart", "posts");
    assert!(matches!(
        db.change_http_routes("blog", &RoutesChange::Replace(vec![taken])),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        db.change_http_routes("blog", &RoutesChange::Put(cart.clone())),
        Err(StoreError::InvalidRoute(_))
    ));
    assert!(matches!(
        db.change_http_routes(
            "shop",
            &RoutesChange::Replace(vec![cart.clone(), cart.clone()])
        ),
        Err(StoreError::InvalidRoute(_))
    ));
    assert_eq!(db.http_routes().unwrap().len(), 3);

    // A put replaces the route with the same match; a delete needs the route to exist.
    let mut stripped = cart.clone();
    stripped.strip_prefix = true;
    db.change_http_routes("shop", &RoutesChange::Put(stripped.clone()))
        .unwrap();
    let gone = RouteMatch::parse("shop.example.com/").unwrap();
    let left = db
        .change_http_routes("shop", &RoutesChange::Delete(gone.clone()))
        .unwrap();
    assert_eq!(left, [stripped]);
    assert!(matches!(
        db.change_http_routes("shop", &RoutesChange::Delete(gone)),
        Err(StoreError::NotFound(_))
    ));
    db.change_http_routes("shop", &RoutesChange::Replace(Vec::new()))
        .unwrap();
    assert_eq!(db.http_routes().unwrap(), [other]);
}

pub(crate) fn invocations_have_their_own_lane_queue_limit_and_result(db: &dyn MetadataStore) {
    deploy(db, "f", b"f1", "a");
    deploy(db, "g", b"g1", "a");
    let trigger = db
        .add_trigger(
            "f",
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
    assert_eq!(trigger.function, "f");
    let object = NewObject {
        bucket: "uploads",
        key: "a.bin",
        content_type: None,
        size: 1,
        hops: 0,
    };
    assert_eq!(db.enqueue_object(&object, 1).unwrap().len(), 1);
    let invocation = |id: &str, function: &str| {
        let detail = InvocationDetail {
            request: StoredRequest {
                method: "PUT".into(),
                path: "/x?y=1".into(),
                headers: vec![("content-type".into(), "text/plain".into())],
            },
            payload: Some(format!("_fnhost/invocations/{id}")),
            body_bytes: 5,
            max_attempts: 3,
            result: None,
        };
        let target = Some("latest".to_string());
        EventRecord::invocation(id.into(), function.into(), target, detail, 0, 1)
    };
    db.enqueue_invocation(&invocation("inv-1", "f"), 2).unwrap();
    db.enqueue_invocation(&invocation("inv-2", "f"), 2).unwrap();
    // The queue limit counts the function's waiting invocations, not its events.
    assert!(matches!(
        db.enqueue_invocation(&invocation("inv-3", "f"), 2),
        Err(StoreError::Limit(_))
    ));
    db.enqueue_invocation(&invocation("inv-4", "g"), 2).unwrap();
    // Each lane claims only its own; a busy function's invocations are skipped.
    let events = db.claim_due(2, 1_000, 10, Lane::Events, &[]).unwrap();
    assert_eq!(events.len(), 1);
    assert!(events[0].invocation.is_none());
    let claimed = db
        .claim_due(2, 1_000, 10, Lane::Invocations, &["f".to_string()])
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, "inv-4");
    assert_eq!(claimed[0].invocation, invocation("inv-4", "g").invocation);
    let claimed = db.claim_due(2, 1_000, 1, Lane::Invocations, &[]).unwrap();
    assert_eq!(claimed[0].id, "inv-1");
    // Settling stores the result with the record; a settlement without one keeps it.
    let mut detail = claimed[0].invocation.clone().unwrap();
    detail.result = Some(InvocationResult {
        status: 200,
        version: "1".into(),
        duration_ms: 12,
        response_bytes: 3,
        destination: Some("bucket:out/inv-1".into()),
    });
    db.settle_event(
        "inv-1",
        &Settlement {
            invocation: Some(detail.clone()),
            ..settled(EventStatus::Delivered, 1, 3, None)
        },
        3,
    )
    .unwrap();
    let stored = db.event("inv-1").unwrap().unwrap();
    assert_eq!(stored.status, EventStatus::Delivered);
    assert_eq!(stored.invocation.as_ref(), Some(&detail));
    // A delivered one no longer counts against the limit.
    db.enqueue_invocation(&invocation("inv-5", "f"), 2).unwrap();
    let listed: Vec<String> = db
        .events("f", Lane::Invocations, None, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(listed.len(), 3);
    assert!(listed.contains(&"inv-1".to_string()));
    assert_eq!(db.events("f", Lane::Events, None, 10).unwrap().len(), 1);
}
