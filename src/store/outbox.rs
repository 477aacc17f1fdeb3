//! Outbox logic every metadata backend shares: the loop check over object triggers and new
//! event records. The SQL lives in each backend.

use std::collections::{HashMap, HashSet};

use super::StoreError;
use crate::model::{
    EventRecord, EventStatus, InvalidConfig, MAX_HOPS, NewObject, Trigger, TriggerSource,
};

/// Refuses a new object trigger that would close a loop with the `existing` ones.
pub(crate) fn check_no_loop(
    mut existing: Vec<Trigger>,
    function: &str,
    target: Option<&str>,
    source: &TriggerSource,
) -> Result<(), InvalidConfig> {
    existing.push(Trigger {
        id: 0,
        function: function.to_string(),
        target: target.map(str::to_string),
        source: source.clone(),
        created_ms: 0,
    });
    match find_loop(&existing) {
        Some(cycle) => Err(InvalidConfig(format!(
            "this trigger would make a loop: {}; objects written to an output bucket must not trigger the function again",
            cycle.join(" -> ")
        ))),
        None => Ok(()),
    }
}

/// A cycle of buckets through object triggers' outputs (`uploads -> thumbnails -> uploads`),
/// if any. A trigger whose output lands in its own bucket under a matching key is one.
fn find_loop(triggers: &[Trigger]) -> Option<Vec<String>> {
    let mut edges: HashMap<&str, Vec<&str>> = HashMap::new();
    for trigger in triggers {
        if let TriggerSource::Object {
            bucket,
            output_bucket: Some(output),
            ..
        } = &trigger.source
        {
            edges.entry(bucket).or_default().push(output);
        }
    }
    fn visit<'a>(
        node: &'a str,
        edges: &HashMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut HashSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = HashSet::new();
    let mut starts: Vec<&str> = edges.keys().copied().collect();
    starts.sort();
    for start in starts {
        let mut path = Vec::new();
        done.clear();
        if let Some(cycle) = visit(start, &edges, &mut path, &mut done) {
            return Some(cycle);
        }
    }
    None
}

/// The events a new object fires: one per matching object trigger among `triggers`, none
/// past the hop limit (a chain of triggers writing objects that fire triggers).
pub(crate) fn object_events(
    triggers: Vec<Trigger>,
    object: &NewObject<'_>,
    now_ms: i64,
) -> Vec<EventRecord> {
    if object.hops > MAX_HOPS {
        tracing::warn!(
            bucket = object.bucket,
            key = object.key,
            hops = object.hops,
            "object written by a chain of {} triggers; not triggering more",
            object.hops
        );
        return Vec::new();
    }
    triggers
        .into_iter()
        .filter(|t| t.source.matches(object.bucket, object.key))
        .map(|trigger| {
            let output_bucket = match &trigger.source {
                TriggerSource::Object { output_bucket, .. } => output_bucket.clone(),
                TriggerSource::Timer { .. } => None,
            };
            EventRecord {
                subject: Some(object.key.to_string()),
                bucket: Some(object.bucket.to_string()),
                content_type: object.content_type.map(str::to_string),
                size: object.size,
                output_bucket,
                hops: object.hops,
                ..new_event(
                    &trigger,
                    "fnhost.object.created",
                    format!("/buckets/{}", object.bucket),
                    now_ms,
                )
            }
        })
        .collect()
}

/// The event of `trigger`'s tick scheduled at `tick_ms`. Its id names the tick, so every
/// node that fires the same tick makes the same event and the store keeps the first.
pub(crate) fn timer_event(trigger: &Trigger, tick_ms: i64, now_ms: i64) -> EventRecord {
    EventRecord {
        id: format!("evt-tick-{}-{tick_ms}", trigger.id),
        ..new_event(
            trigger,
            "fnhost.timer.fired",
            format!("/triggers/{}", trigger.id),
            now_ms,
        )
    }
}

/// A pending event of `trigger` with no subject or body; object events fill those in.
pub(crate) fn new_event(
    trigger: &Trigger,
    event_type: &str,
    source: String,
    now_ms: i64,
) -> EventRecord {
    EventRecord {
        id: new_event_id(),
        trigger_id: trigger.id,
        function: trigger.function.clone(),
        target: trigger.target.clone(),
        event_type: event_type.to_string(),
        source,
        subject: None,
        bucket: None,
        content_type: None,
        size: 0,
        output_bucket: None,
        hops: 0,
        status: EventStatus::Pending,
        attempts: 0,
        next_attempt_ms: now_ms,
        last_error: None,
        created_ms: now_ms,
        updated_ms: now_ms,
        invocation: None,
    }
}

/// A unique, stable id, as CloudEvents `ce-id`.
fn new_event_id() -> String {
    format!("evt-{:032x}", fastrand::u128(..))
}

/// Refuses a new asynchronous invocation of `function` when `queued` of its invocations
/// already wait or run and the host keeps at most `max_queued`.
pub(crate) fn check_queue(function: &str, queued: i64, max_queued: u32) -> Result<(), StoreError> {
    if queued >= i64::from(max_queued) {
        return Err(StoreError::Limit(format!(
            "function {function:?} has {queued} asynchronous invocations waiting, the most this \
             host queues per function (--async-max-queued); retry when some have run"
        )));
    }
    Ok(())
}
