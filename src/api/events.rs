//! Triggers, their events, and bucket objects.

use serde::{Deserialize, Serialize};

use crate::model::{EventRecord, EventStatus, Trigger, TriggerSource};

/// `POST /v1/functions/NAME/triggers`: an object trigger (`bucket` ...) or a timer
/// (`cron` ...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddTrigger {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub suffix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default)]
    pub allow_overlap: bool,
    /// The alias or version events go to; `$DEFAULT` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl AddTrigger {
    /// What fires the trigger: exactly one of `bucket` and `cron`.
    pub fn source(&self) -> Result<TriggerSource, &'static str> {
        match (&self.bucket, &self.cron) {
            (Some(bucket), None) => Ok(TriggerSource::Object {
                bucket: bucket.clone(),
                prefix: self.prefix.clone(),
                suffix: self.suffix.clone(),
                output_bucket: self.output_bucket.clone(),
            }),
            (None, Some(cron)) => Ok(TriggerSource::Timer {
                cron: cron.clone(),
                allow_overlap: self.allow_overlap,
            }),
            _ => Err(
                r#"give either {"bucket": "uploads", ...} for object events or {"cron": "0 */5 * * * *"} for a timer"#,
            ),
        }
    }
}

impl AddTrigger {
    /// The request that makes a trigger with this source and target (`source`'s inverse).
    pub fn of(source: &TriggerSource, target: Option<String>) -> Self {
        let mut trigger = Self {
            target,
            ..Self::default()
        };
        match source {
            TriggerSource::Object {
                bucket,
                prefix,
                suffix,
                output_bucket,
            } => {
                trigger.bucket = Some(bucket.clone());
                trigger.prefix = prefix.clone();
                trigger.suffix = suffix.clone();
                trigger.output_bucket = output_bucket.clone();
            }
            TriggerSource::Timer {
                cron,
                allow_overlap,
            } => {
                trigger.cron = Some(cron.clone());
                trigger.allow_overlap = *allow_overlap;
            }
        }
        trigger
    }
}

/// A trigger (what `POST` answers and `GET` lists).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerView {
    pub id: i64,
    pub function: String,
    /// The alias or version events go to (`null`: `$DEFAULT`).
    pub target: Option<String>,
    pub source: TriggerSource,
    pub created_ms: i64,
}

/// `GET /v1/functions/NAME/triggers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerList {
    pub function: String,
    pub triggers: Vec<TriggerView>,
}

/// An event in the outbox. Its `id` is stable across retries (delivery is at least once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    pub id: String,
    pub trigger_id: i64,
    pub function: String,
    pub target: Option<String>,
    /// `fnhost.object.created` or `fnhost.timer.fired`.
    pub event_type: String,
    /// `/buckets/NAME` or `/triggers/ID`.
    pub source: String,
    /// The object key (object events).
    pub subject: Option<String>,
    pub bucket: Option<String>,
    pub content_type: Option<String>,
    pub size: u64,
    pub output_bucket: Option<String>,
    /// How many trigger outputs led to this event (0 for a direct upload).
    pub hops: u32,
    pub status: EventStatus,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// `GET /v1/functions/NAME/events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventList {
    pub function: String,
    pub events: Vec<EventView>,
}

/// What `PUT /v1/buckets/B/objects/KEY` answers once the object and its events are durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// The ids of the events this object fired (one per matching trigger).
    pub events: Vec<String>,
}

/// `GET /v1/buckets/B/objects?prefix=P`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectList {
    pub bucket: String,
    pub objects: Vec<ObjectView>,
}

/// One listed object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectView {
    pub key: String,
    pub size: u64,
    pub last_modified_ms: i64,
}

impl From<Trigger> for TriggerView {
    fn from(trigger: Trigger) -> Self {
        Self {
            id: trigger.id,
            function: trigger.function,
            target: trigger.target,
            source: trigger.source,
            created_ms: trigger.created_ms,
        }
    }
}

impl From<EventRecord> for EventView {
    fn from(event: EventRecord) -> Self {
        Self {
            id: event.id,
            trigger_id: event.trigger_id,
            function: event.function,
            target: event.target,
            event_type: event.event_type,
            source: event.source,
            subject: event.subject,
            bucket: event.bucket,
            content_type: event.content_type,
            size: event.size,
            output_bucket: event.output_bucket,
            hops: event.hops,
            status: event.status,
            attempts: event.attempts,
            next_attempt_ms: event.next_attempt_ms,
            last_error: event.last_error,
            created_ms: event.created_ms,
            updated_ms: event.updated_ms,
        }
    }
}
