//! Triggers and the event outbox. Every state change of an event is one transaction, so
//! after a crash each event is in exactly one state; `running` ones go back to `pending` at
//! start (delivery is at least once).

use rusqlite::{OptionalExtension, Transaction, params};

use super::functions::parse_json;
use crate::model::{
    EventRecord, EventStatus, InvalidConfig, Lane, NewObject, Settlement, TimerTick, Trigger,
    TriggerSource,
};
use crate::store::StoreError;
use crate::store::outbox::{check_no_loop, object_events, timer_event};

const EVENT_COLUMNS: &str = "id, trigger_id, function, target, type, source, subject, bucket,
    content_type, size, output_bucket, hops, status, attempts, next_attempt_ms, last_error,
    created_ms, updated_ms, invocation";

pub(super) fn add_trigger(
    tx: &Transaction<'_>,
    function: &str,
    target: Option<&str>,
    source: &TriggerSource,
    now_ms: i64,
) -> Result<Trigger, StoreError> {
    super::latest_config(tx, function)?
        .ok_or_else(|| StoreError::UnknownFunction(function.to_string()))?;
    if let TriggerSource::Object { .. } = source {
        check_no_loop(triggers(tx, None)?, function, target, source)?;
    }
    tx.execute(
        "INSERT INTO triggers (function, target, spec, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![
            function,
            target,
            serde_json::to_string(source).expect("triggers serialize"),
            now_ms
        ],
    )?;
    Ok(Trigger {
        id: tx.last_insert_rowid(),
        function: function.to_string(),
        target: target.map(str::to_string),
        source: source.clone(),
        created_ms: now_ms,
    })
}

pub(super) fn triggers(
    tx: &Transaction<'_>,
    function: Option<&str>,
) -> Result<Vec<Trigger>, StoreError> {
    let mut statement = tx.prepare(
        "SELECT id, function, target, spec, created_at FROM triggers
         WHERE ?1 IS NULL OR function = ?1 ORDER BY id",
    )?;
    let rows: Vec<(i64, String, Option<String>, String, i64)> = statement
        .query_map([function], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(id, function, target, spec, created_ms)| {
            Ok(Trigger {
                id,
                function,
                target,
                source: parse_json(&spec, "trigger")?,
                created_ms,
            })
        })
        .collect()
}

pub(super) fn delete_trigger(
    tx: &Transaction<'_>,
    function: &str,
    id: i64,
) -> Result<(), StoreError> {
    let deleted = tx.execute(
        "DELETE FROM triggers WHERE function = ?1 AND id = ?2",
        params![function, id],
    )?;
    if deleted == 0 {
        return Err(StoreError::NotFound(format!(
            "function {function:?} has no trigger {id}"
        )));
    }
    Ok(())
}

/// Queues one event per object trigger that `object` fires.
pub(super) fn enqueue_object(
    tx: &Transaction<'_>,
    object: &NewObject<'_>,
    now_ms: i64,
) -> Result<Vec<EventRecord>, StoreError> {
    let events = object_events(triggers(tx, None)?, object, now_ms);
    for event in &events {
        insert(tx, event)?;
    }
    Ok(events)
}

/// Queues the event of a timer tick, once per tick, and unless the trigger forbids overlap
/// and its previous event is still queued or running.
pub(super) fn enqueue_timer(
    tx: &Transaction<'_>,
    trigger: &Trigger,
    tick_ms: i64,
    allow_overlap: bool,
    now_ms: i64,
) -> Result<TimerTick, StoreError> {
    let event = timer_event(trigger, tick_ms, now_ms);
    let exists = |sql: &str, key: &dyn rusqlite::ToSql| -> Result<bool, StoreError> {
        Ok(tx.query_row(sql, [key], |_| Ok(())).optional()?.is_some())
    };
    if exists("SELECT 1 FROM events WHERE id = ?1", &event.id)? {
        return Ok(TimerTick::AlreadyQueued);
    }
    if !allow_overlap
        && exists(
            "SELECT 1 FROM events WHERE trigger_id = ?1 AND status IN ('pending', 'running') LIMIT 1",
            &trigger.id,
        )?
    {
        return Ok(TimerTick::Busy);
    }
    insert(tx, &event)?;
    Ok(TimerTick::Queued)
}

fn insert(tx: &Transaction<'_>, e: &EventRecord) -> Result<(), StoreError> {
    tx.execute(
        &format!("INSERT INTO events ({EVENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"),
        params![
            e.id,
            e.trigger_id,
            e.function,
            e.target,
            e.event_type,
            e.source,
            e.subject,
            e.bucket,
            e.content_type,
            e.size as i64,
            e.output_bucket,
            e.hops,
            e.status.as_str(),
            e.attempts,
            e.next_attempt_ms,
            e.last_error,
            e.created_ms,
            e.updated_ms,
            e.invocation.as_ref().map(detail_json)
        ],
    )?;
    Ok(())
}

fn detail_json(detail: &crate::model::InvocationDetail) -> String {
    serde_json::to_string(detail).expect("invocation details serialize")
}

/// Queues an asynchronous invocation, unless `max_queued` of its function's are already
/// waiting or running.
pub(super) fn enqueue_invocation(
    tx: &Transaction<'_>,
    event: &EventRecord,
    max_queued: u32,
) -> Result<(), StoreError> {
    let queued: i64 = tx.query_row(
        "SELECT COUNT(*) FROM events WHERE function = ?1 AND status IN ('pending', 'running')
         AND invocation IS NOT NULL",
        [&event.function],
        |r| r.get(0),
    )?;
    crate::store::outbox::check_queue(&event.function, queued, max_queued)?;
    insert(tx, event)
}

/// Marks up to `limit` due pending events running and returns them, oldest due first.
/// A running event's `next_attempt_ms` is its lease: when it passes, the event is due again.
pub(super) fn claim_due(
    tx: &Transaction<'_>,
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
    lane: Lane,
    skip: &[String],
) -> Result<Vec<EventRecord>, StoreError> {
    // Lapsed leases first, then due pending ones: each an ordered walk of `events_lane_due`
    // that stops at the limit, never a sort of the whole backlog.
    let skip = serde_json::to_string(skip).expect("names serialize");
    let mut events = Vec::new();
    for status in ["running", "pending"] {
        let wanted = limit.saturating_sub(events.len() as u32);
        if wanted == 0 {
            break;
        }
        events.extend(select(
            tx,
            "WHERE (invocation IS NOT NULL) = ?3 AND status = ?5 AND next_attempt_ms <= ?1
             AND function NOT IN (SELECT value FROM json_each(?4))
             ORDER BY next_attempt_ms LIMIT ?2",
            params![now_ms, wanted, lane == Lane::Invocations, skip, status],
        )?);
    }
    for event in &events {
        tx.execute(
            "UPDATE events SET status = 'running', next_attempt_ms = ?3, updated_ms = ?2
             WHERE id = ?1",
            params![event.id, now_ms, lease_until_ms],
        )?;
    }
    Ok(events
        .into_iter()
        .map(|mut e| {
            e.status = EventStatus::Running;
            e
        })
        .collect())
}

/// Records the outcome of an attempt.
pub(super) fn settle(
    tx: &Transaction<'_>,
    id: &str,
    settled: &Settlement,
    now_ms: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE events SET status = ?2, attempts = ?3, next_attempt_ms = ?4, last_error = ?5,
                           updated_ms = ?6, invocation = COALESCE(?7, invocation) WHERE id = ?1",
        params![
            id,
            settled.status.as_str(),
            settled.attempts,
            settled.next_attempt_ms,
            settled.error,
            now_ms,
            settled.invocation.as_ref().map(detail_json)
        ],
    )?;
    Ok(())
}

/// Events a stopped host was delivering go back to pending.
pub(super) fn requeue_running(tx: &Transaction<'_>, now_ms: i64) -> Result<usize, StoreError> {
    Ok(tx.execute(
        "UPDATE events SET status = 'pending', next_attempt_ms = ?1, updated_ms = ?1
         WHERE status = 'running'",
        [now_ms],
    )?)
}

pub(super) fn renew_leases(
    tx: &Transaction<'_>,
    ids: &[String],
    until_ms: i64,
) -> Result<(), StoreError> {
    let mut statement =
        tx.prepare("UPDATE events SET next_attempt_ms = ?2 WHERE id = ?1 AND status = 'running'")?;
    for id in ids {
        statement.execute(params![id, until_ms])?;
    }
    Ok(())
}

/// Deletes delivered events last changed before `before_ms`. Dead letters stay until retried.
pub(super) fn prune_delivered(tx: &Transaction<'_>, before_ms: i64) -> Result<usize, StoreError> {
    Ok(tx.execute(
        "DELETE FROM events WHERE status = 'delivered' AND updated_ms < ?1",
        [before_ms],
    )?)
}

pub(super) fn events(
    tx: &Transaction<'_>,
    function: &str,
    lane: Lane,
    status: Option<EventStatus>,
    limit: u32,
) -> Result<Vec<EventRecord>, StoreError> {
    select(
        tx,
        "WHERE function = ?1 AND (?2 IS NULL OR status = ?2) AND (invocation IS NOT NULL) = ?4
         ORDER BY created_ms DESC, id LIMIT ?3",
        params![
            function,
            status.map(EventStatus::as_str),
            limit,
            lane == Lane::Invocations
        ],
    )
}

pub(super) fn event(tx: &Transaction<'_>, id: &str) -> Result<Option<EventRecord>, StoreError> {
    Ok(select(tx, "WHERE id = ?1", [id])?.pop())
}

/// Sends a dead-lettered event again, with a fresh count of attempts.
pub(super) fn retry(
    tx: &Transaction<'_>,
    id: &str,
    now_ms: i64,
) -> Result<EventRecord, StoreError> {
    let updated = tx.execute(
        "UPDATE events SET status = 'pending', attempts = 0, next_attempt_ms = ?2, updated_ms = ?2
         WHERE id = ?1 AND status = 'failed'",
        params![id, now_ms],
    )?;
    let event = select(tx, "WHERE id = ?1", [id])?
        .pop()
        .ok_or_else(|| StoreError::NotFound(format!("no event {id:?}")))?;
    if updated == 0 {
        return Err(InvalidConfig(format!(
            "event {id} is {}, not failed; only dead-lettered events can be retried",
            event.status.as_str()
        ))
        .into());
    }
    Ok(event)
}

fn select(
    tx: &Transaction<'_>,
    filter: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<EventRecord>, StoreError> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events {filter}");
    let rows = tx
        .prepare(&sql)?
        .query_map(params, |r| {
            let event = EventRecord {
                id: r.get(0)?,
                trigger_id: r.get(1)?,
                function: r.get(2)?,
                target: r.get(3)?,
                event_type: r.get(4)?,
                source: r.get(5)?,
                subject: r.get(6)?,
                bucket: r.get(7)?,
                content_type: r.get(8)?,
                size: r.get::<_, i64>(9)? as u64,
                output_bucket: r.get(10)?,
                hops: r.get(11)?,
                status: EventStatus::parse(&r.get::<_, String>(12)?).unwrap_or(EventStatus::Failed),
                attempts: r.get(13)?,
                next_attempt_ms: r.get(14)?,
                last_error: r.get(15)?,
                created_ms: r.get(16)?,
                updated_ms: r.get(17)?,
                invocation: None,
            };
            Ok((event, r.get::<_, Option<String>>(18)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(event, detail)| {
            Ok(EventRecord {
                invocation: detail
                    .map(|json| parse_json(&json, "invocation"))
                    .transpose()?,
                ..event
            })
        })
        .collect()
}
