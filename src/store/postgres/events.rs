//! Triggers and the event outbox, as `store/sqlite/events.rs`. Claiming due events skips rows
//! another node has locked (`FOR UPDATE SKIP LOCKED`), so nodes never claim the same event.

use postgres::Transaction;
use postgres::types::ToSql;

use super::functions::latest_config;
use super::schema::database;
use crate::model::{
    EventRecord, EventStatus, InvalidConfig, InvocationDetail, Lane, NewObject, Settlement,
    TimerTick, Trigger, TriggerSource,
};
use crate::store::StoreError;
use crate::store::decode::parse_json;
use crate::store::outbox::{check_no_loop, object_events, timer_event};

type Tx<'a, 'b> = &'a mut Transaction<'b>;

const EVENT_COLUMNS: &str = "id, trigger_id, function, target, type, source, subject, bucket,
    content_type, size, output_bucket, hops, status, attempts, next_attempt_ms, last_error,
    created_ms, updated_ms, invocation";

pub(super) fn add_trigger(
    tx: Tx,
    function: &str,
    target: Option<&str>,
    source: &TriggerSource,
    now_ms: i64,
) -> Result<Trigger, StoreError> {
    latest_config(tx, function)?
        .ok_or_else(|| StoreError::UnknownFunction(function.to_string()))?;
    if let TriggerSource::Object { .. } = source {
        // Serialises trigger changes fleet-wide, so two nodes cannot add the two halves of a loop.
        tx.execute("LOCK TABLE triggers IN SHARE ROW EXCLUSIVE MODE", &[])
            .map_err(database)?;
        check_no_loop(triggers(tx, None)?, function, target, source)?;
    }
    let spec = serde_json::to_string(source).expect("triggers serialize");
    let id: i64 = tx
        .query_one(
            "INSERT INTO triggers (function, target, spec, created_at) VALUES ($1, $2, $3, $4)
             RETURNING id",
            &[&function, &target, &spec, &now_ms],
        )
        .map_err(database)?
        .get(0);
    Ok(Trigger {
        id,
        function: function.to_string(),
        target: target.map(str::to_string),
        source: source.clone(),
        created_ms: now_ms,
    })
}

pub(super) fn triggers(tx: Tx, function: Option<&str>) -> Result<Vec<Trigger>, StoreError> {
    tx.query(
        "SELECT id, function, target, spec, created_at FROM triggers
         WHERE $1::TEXT IS NULL OR function = $1 ORDER BY id",
        &[&function],
    )
    .map_err(database)?
    .iter()
    .map(|row| {
        Ok(Trigger {
            id: row.get(0),
            function: row.get(1),
            target: row.get(2),
            source: parse_json(row.get(3), "trigger")?,
            created_ms: row.get(4),
        })
    })
    .collect()
}

pub(super) fn delete_trigger(tx: Tx, function: &str, id: i64) -> Result<(), StoreError> {
    let deleted = tx
        .execute(
            "DELETE FROM triggers WHERE function = $1 AND id = $2",
            &[&function, &id],
        )
        .map_err(database)?;
    if deleted == 0 {
        return Err(StoreError::NotFound(format!(
            "function {function:?} has no trigger {id}"
        )));
    }
    Ok(())
}

/// Queues one event per object trigger that `object` fires.
pub(super) fn enqueue_object(
    tx: Tx,
    object: &NewObject<'_>,
    now_ms: i64,
) -> Result<Vec<EventRecord>, StoreError> {
    let events = object_events(triggers(tx, None)?, object, now_ms);
    for event in &events {
        insert(tx, event)?;
    }
    Ok(events)
}

/// Queues the event of a timer tick, once per tick fleet-wide (nodes firing the same tick
/// make the same event id; the insert keeps the first), and unless the trigger forbids
/// overlap and its previous event is still queued or running.
pub(super) fn enqueue_timer(
    tx: Tx,
    trigger: &Trigger,
    tick_ms: i64,
    allow_overlap: bool,
    now_ms: i64,
) -> Result<TimerTick, StoreError> {
    let event = timer_event(trigger, tick_ms, now_ms);
    let queued = tx
        .query_opt("SELECT 1 FROM events WHERE id = $1", &[&event.id])
        .map_err(database)?;
    if queued.is_some() {
        return Ok(TimerTick::AlreadyQueued);
    }
    if !allow_overlap {
        let busy = tx
            .query_opt(
                "SELECT id FROM events WHERE trigger_id = $1 AND status IN ('pending', 'running')
                 LIMIT 1",
                &[&trigger.id],
            )
            .map_err(database)?;
        if busy.is_some() {
            return Ok(TimerTick::Busy);
        }
    }
    if insert(tx, &event)? {
        Ok(TimerTick::Queued)
    } else {
        Ok(TimerTick::AlreadyQueued)
    }
}

/// Inserts an event; false when one with its id exists (a tick another node queued).
fn insert(tx: Tx, e: &EventRecord) -> Result<bool, StoreError> {
    let (size, hops, attempts) = (e.size as i64, i64::from(e.hops), i64::from(e.attempts));
    let inserted = tx
        .execute(
            &format!(
                "INSERT INTO events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
             $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
             ON CONFLICT (id) DO NOTHING"
            ),
            &[
                &e.id,
                &e.trigger_id,
                &e.function,
                &e.target,
                &e.event_type,
                &e.source,
                &e.subject,
                &e.bucket,
                &e.content_type,
                &size,
                &e.output_bucket,
                &hops,
                &e.status.as_str(),
                &attempts,
                &e.next_attempt_ms,
                &e.last_error,
                &e.created_ms,
                &e.updated_ms,
                &e.invocation.as_ref().map(detail_json),
            ],
        )
        .map_err(database)?;
    Ok(inserted == 1)
}

fn detail_json(detail: &InvocationDetail) -> String {
    serde_json::to_string(detail).expect("invocation details serialize")
}

/// Queues an asynchronous invocation, unless `max_queued` of its function's are already
/// waiting or running. Counted under the function's row lock, so nodes queueing at once
/// cannot pass the limit together.
pub(super) fn enqueue_invocation(
    tx: Tx,
    event: &EventRecord,
    max_queued: u32,
) -> Result<(), StoreError> {
    tx.execute(
        "SELECT 1 FROM functions WHERE name = $1 FOR UPDATE",
        &[&event.function],
    )
    .map_err(database)?;
    let queued: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM events WHERE function = $1
             AND status IN ('pending', 'running') AND invocation IS NOT NULL",
            &[&event.function],
        )
        .map_err(database)?
        .get(0);
    crate::store::outbox::check_queue(&event.function, queued, max_queued)?;
    insert(tx, event)?;
    Ok(())
}

/// Marks up to `limit` due pending events running and returns them, oldest due first;
/// rows another node is claiming at the same moment are skipped, not waited for.
/// A running event's `next_attempt_ms` is its lease: when it passes (its node died), the event
/// is due again. Rows another node is claiming right now are skipped, not waited for.
pub(super) fn claim_due(
    tx: Tx,
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
    lane: Lane,
    skip: &[String],
) -> Result<Vec<EventRecord>, StoreError> {
    // Lapsed leases first, then due pending ones: each an ordered walk of `events_lane_due`
    // that stops at the limit, never a sort of the whole backlog.
    let mut events = Vec::new();
    for status in ["running", "pending"] {
        let wanted = i64::from(limit) - events.len() as i64;
        if wanted <= 0 {
            break;
        }
        events.extend(select(
            tx,
            "WHERE (invocation IS NOT NULL) = $3 AND status = $5 AND next_attempt_ms <= $1
             AND NOT (function = ANY($4))
             ORDER BY next_attempt_ms LIMIT $2 FOR UPDATE SKIP LOCKED",
            &[
                &now_ms,
                &wanted,
                &(lane == Lane::Invocations),
                &skip,
                &status,
            ],
        )?);
    }
    for event in &events {
        tx.execute(
            "UPDATE events SET status = 'running', next_attempt_ms = $3, updated_ms = $2
             WHERE id = $1",
            &[&event.id, &now_ms, &lease_until_ms],
        )
        .map_err(database)?;
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
    tx: Tx,
    id: &str,
    settled: &Settlement,
    now_ms: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE events SET status = $2, attempts = $3, next_attempt_ms = $4, last_error = $5,
                           updated_ms = $6, invocation = COALESCE($7, invocation) WHERE id = $1",
        &[
            &id,
            &settled.status.as_str(),
            &i64::from(settled.attempts),
            &settled.next_attempt_ms,
            &settled.error,
            &now_ms,
            &settled.invocation.as_ref().map(detail_json),
        ],
    )
    .map_err(database)?;
    Ok(())
}

/// Events a stopped host was delivering go back to pending. (In a fleet this must only take
/// back the stopped node's events: a lease per claim is the next step.)
pub(super) fn requeue_running(tx: Tx, now_ms: i64) -> Result<usize, StoreError> {
    Ok(tx
        .execute(
            "UPDATE events SET status = 'pending', next_attempt_ms = $1, updated_ms = $1
             WHERE status = 'running'",
            &[&now_ms],
        )
        .map_err(database)? as usize)
}

pub(super) fn renew_leases(tx: Tx, ids: &[String], until_ms: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE events SET next_attempt_ms = $2 WHERE id = ANY($1) AND status = 'running'",
        &[&ids, &until_ms],
    )
    .map_err(database)?;
    Ok(())
}

/// Deletes delivered events last changed before `before_ms`. Dead letters stay until retried.
pub(super) fn prune_delivered(tx: Tx, before_ms: i64) -> Result<usize, StoreError> {
    Ok(tx
        .execute(
            "DELETE FROM events WHERE status = 'delivered' AND updated_ms < $1",
            &[&before_ms],
        )
        .map_err(database)? as usize)
}

pub(super) fn events(
    tx: Tx,
    function: &str,
    lane: Lane,
    status: Option<EventStatus>,
    limit: u32,
) -> Result<Vec<EventRecord>, StoreError> {
    select(
        tx,
        "WHERE function = $1 AND ($2::TEXT IS NULL OR status = $2)
         AND (invocation IS NOT NULL) = $4
         ORDER BY created_ms DESC, id LIMIT $3",
        &[
            &function,
            &status.map(EventStatus::as_str),
            &i64::from(limit),
            &(lane == Lane::Invocations),
        ],
    )
}

/// Sends a dead-lettered event again, with a fresh count of attempts.
pub(super) fn event(tx: Tx, id: &str) -> Result<Option<EventRecord>, StoreError> {
    Ok(select(tx, "WHERE id = $1", &[&id])?.pop())
}

pub(super) fn retry(tx: Tx, id: &str, now_ms: i64) -> Result<EventRecord, StoreError> {
    let updated = tx
        .execute(
            "UPDATE events SET status = 'pending', attempts = 0, next_attempt_ms = $2,
                    updated_ms = $2
             WHERE id = $1 AND status = 'failed'",
            &[&id, &now_ms],
        )
        .map_err(database)?;
    let event = select(tx, "WHERE id = $1", &[&id])?
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
    tx: Tx,
    filter: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<EventRecord>, StoreError> {
    let rows = tx
        .query(
            &format!("SELECT {EVENT_COLUMNS} FROM events {filter}"),
            params,
        )
        .map_err(database)?;
    rows.iter()
        .map(|r| {
            Ok(EventRecord {
                id: r.get(0),
                trigger_id: r.get(1),
                function: r.get(2),
                target: r.get(3),
                event_type: r.get(4),
                source: r.get(5),
                subject: r.get(6),
                bucket: r.get(7),
                content_type: r.get(8),
                size: r.get::<_, i64>(9) as u64,
                output_bucket: r.get(10),
                hops: r.get::<_, i64>(11) as u32,
                status: EventStatus::parse(r.get(12)).unwrap_or(EventStatus::Failed),
                attempts: r.get::<_, i64>(13) as u32,
                next_attempt_ms: r.get(14),
                last_error: r.get(15),
                created_ms: r.get(16),
                updated_ms: r.get(17),
                invocation: r
                    .get::<_, Option<String>>(18)
                    .map(|json| parse_json(&json, "invocation"))
                    .transpose()?,
            })
        })
        .collect()
}
