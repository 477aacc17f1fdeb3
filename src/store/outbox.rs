//! Outbox logic every metadata backend shares: the loop check over object triggers and new
//! event records. The SQL lives in each backend.

use std::collections::{HashMap, HashSet};

use crate::model::{EventRecord, EventStatus, Trigger, TriggerSource};

/// A cycle of buckets through object triggers' outputs (`uploads -> thumbnails -> uploads`),
/// if any. A trigger whose output lands in its own bucket under a matching key is one.
pub(crate) fn find_loop(triggers: &[Trigger]) -> Option<Vec<String>> {
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
    }
}

/// A unique, stable id, as CloudEvents `ce-id`.
fn new_event_id() -> String {
    format!("evt-{:032x}", fastrand::u128(..))
}
