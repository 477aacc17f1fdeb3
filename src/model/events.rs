//! Event triggers and the events they produce, as stored: an object trigger turns each
//! object created in a bucket (matching a prefix and suffix) into one event; a timer trigger
//! turns each tick of a cron schedule into one. Events wait in the metadata database (an
//! outbox) until delivered or given up on.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::InvalidConfig;

/// Most triggers a bucket's output may pass through before its events stop (a backstop for
/// the loop check done when triggers are added).
pub const MAX_HOPS: u32 = 8;

/// What fires a trigger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TriggerSource {
    /// An object created in `bucket` whose key starts with `prefix` and ends with `suffix`.
    /// A 2xx answer's body is written to `output_bucket` (when set) under the same key, or
    /// under the key the function names in an `fnhost-output-key` header.
    Object {
        bucket: String,
        #[serde(default)]
        prefix: String,
        #[serde(default)]
        suffix: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_bucket: Option<String>,
    },
    /// A cron schedule with seconds: `sec min hour day-of-month month day-of-week`, UTC.
    Timer {
        cron: String,
        /// Fire even while the previous run is still queued or running.
        #[serde(default)]
        allow_overlap: bool,
    },
}

/// `objects in BUCKET/PREFIX*SUFFIX [-> OUTPUT]` or `schedule "CRON"`, as listings show it.
impl std::fmt::Display for TriggerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Object {
                bucket,
                prefix,
                suffix,
                output_bucket,
            } => {
                write!(f, "objects in {bucket}/{prefix}*{suffix}")?;
                match output_bucket {
                    Some(output) => write!(f, " -> {output}"),
                    None => Ok(()),
                }
            }
            Self::Timer {
                cron,
                allow_overlap,
            } => {
                write!(f, "schedule \"{cron}\"")?;
                if *allow_overlap {
                    write!(f, " (overlap allowed)")?;
                }
                Ok(())
            }
        }
    }
}

/// A stored trigger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub id: i64,
    pub function: String,
    /// The alias or version events go to (`None`: `$DEFAULT`).
    pub target: Option<String>,
    pub source: TriggerSource,
    pub created_ms: i64,
}

impl TriggerSource {
    /// Checks names and the schedule.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        match self {
            Self::Object {
                bucket,
                output_bucket,
                prefix,
                suffix,
            } => {
                check_bucket(bucket)?;
                if let Some(output) = output_bucket {
                    check_bucket(output)?;
                }
                if prefix.len() > 1024 || suffix.len() > 1024 {
                    return Err(InvalidConfig("prefix and suffix are at most 1024 bytes".into()));
                }
                Ok(())
            }
            Self::Timer { cron, .. } => cron::Schedule::from_str(cron).map(|_| ()).map_err(|e| {
                InvalidConfig(format!(
                    "schedule {cron:?}: {e}; use six fields, `sec min hour day month weekday`, e.g. \"0 */5 * * * *\""
                ))
            }),
        }
    }

    /// Whether an object created at `bucket`/`key` fires this trigger.
    pub fn matches(&self, created_in: &str, key: &str) -> bool {
        match self {
            Self::Object {
                bucket,
                prefix,
                suffix,
                ..
            } => {
                bucket == created_in
                    && key.starts_with(prefix.as_str())
                    && key.ends_with(suffix.as_str())
            }
            Self::Timer { .. } => false,
        }
    }
}

/// Bucket names follow S3's rule in short: 3-63 of `[a-z0-9-]`, starting and ending with a
/// letter or digit; `.NAMESPACE` after it outside the default namespace, as for functions.
pub fn check_bucket(name: &str) -> Result<(), InvalidConfig> {
    let (base, namespace) = match name.split_once('.') {
        Some((base, namespace)) => (base, Some(namespace)),
        None => (name, None),
    };
    let ok = (3..=63).contains(&base.len())
        && base
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !base.starts_with('-')
        && !base.ends_with('-')
        && namespace.is_none_or(|ns| {
            super::tenancy::is_label(ns) && ns != super::tenancy::DEFAULT_NAMESPACE
        });
    if ok {
        Ok(())
    } else {
        Err(InvalidConfig(format!(
            "bucket name {name:?}: use 3 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit, then .NAMESPACE outside the default namespace"
        )))
    }
}

/// The delay before the attempt after `attempt` (1-based) failed: `base_ms` doubled per
/// earlier retry, capped at `max_ms`, plus up to 20 % jitter so the retries of a burst
/// spread out. Event deliveries and asynchronous invocations both back off this way.
pub fn backoff_ms(base_ms: u64, max_ms: u64, attempt: u32) -> u64 {
    let capped = base_ms
        .saturating_mul(1 << attempt.saturating_sub(1).min(30))
        .min(max_ms);
    capped + fastrand::u64(0..=capped / 5)
}

/// What became of one timer tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerTick {
    /// This node queued the tick's event.
    Queued,
    /// Not queued: the previous run is still queued or running (overlap not allowed).
    Busy,
    /// Another node (or an earlier try) already queued this tick: each tick fires once
    /// fleet-wide.
    AlreadyQueued,
}

/// Where an event is in its delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Waiting for its next attempt.
    Pending,
    /// Being delivered now (back to pending if the host stops meanwhile).
    Running,
    Delivered,
    /// Out of attempts, or refused by the function (4xx): the dead-letter list.
    Failed,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// One event in the outbox. Its `id` is stable across retries, so a function can
/// deduplicate (delivery is at least once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
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
    /// The stored request, for an asynchronous invocation (`fnhost.invocation`).
    pub invocation: Option<super::InvocationDetail>,
}

impl EventRecord {
    /// A pending asynchronous invocation of `function` (`target`: the version or alias),
    /// due at once, `hops` destinations down a chain.
    pub fn invocation(
        id: String,
        function: String,
        target: Option<String>,
        detail: super::InvocationDetail,
        hops: u32,
        now_ms: i64,
    ) -> Self {
        let content_type = detail
            .request
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map(|(_, value)| value.clone());
        Self {
            id,
            trigger_id: 0,
            source: format!("/functions/{function}"),
            function,
            target,
            event_type: super::INVOCATION_EVENT.to_string(),
            subject: None,
            bucket: None,
            content_type,
            size: detail.body_bytes,
            output_bucket: None,
            hops,
            status: EventStatus::Pending,
            attempts: 0,
            next_attempt_ms: now_ms,
            last_error: None,
            created_ms: now_ms,
            updated_ms: now_ms,
            invocation: Some(detail),
        }
    }

    pub fn lane(&self) -> super::Lane {
        if self.invocation.is_some() {
            super::Lane::Invocations
        } else {
            super::Lane::Events
        }
    }
}

/// An attempt's outcome, as the outbox records it.
#[derive(Clone, Debug)]
pub struct Settlement {
    pub status: EventStatus,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub error: Option<String>,
    /// An invocation's record with its result, replacing the stored one (`None`: unchanged).
    pub invocation: Option<super::InvocationDetail>,
}

/// The event an object creation produces for one trigger (not yet stored).
#[derive(Clone, Debug)]
pub struct NewObject<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub content_type: Option<&'a str>,
    pub size: u64,
    pub hops: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_schedules_and_matching() {
        assert!(check_bucket("uploads").is_ok());
        for bad in ["up", "Uploads", "-a-b", "a_b", "ab/c", &"x".repeat(64)] {
            assert!(check_bucket(bad).is_err(), "{bad}");
        }
        let timer = TriggerSource::Timer {
            cron: "0 */5 * * * *".into(),
            allow_overlap: false,
        };
        assert!(timer.validate().is_ok());
        let bad = TriggerSource::Timer {
            cron: "every minute".into(),
            allow_overlap: false,
        };
        assert!(bad.validate().unwrap_err().0.contains("six fields"));
        let object = TriggerSource::Object {
            bucket: "uploads".into(),
            prefix: "img/".into(),
            suffix: ".jpg".into(),
            output_bucket: Some("thumbnails".into()),
        };
        assert!(object.matches("uploads", "img/a.jpg"));
        assert!(!object.matches("uploads", "doc/a.jpg"));
        assert!(!object.matches("uploads", "img/a.png"));
        assert!(!object.matches("other", "img/a.jpg"));
    }
}
