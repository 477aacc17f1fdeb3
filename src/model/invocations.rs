//! Asynchronous invocations, as stored: a whole HTTP request kept in the event outbox (its
//! head here, its body in the object store) to run later with retries, and where its
//! result goes. Like Lambda's `Event` invocation type and SCF's async invocations.
//!
//! An invocation is an event (`fnhost.invocation`) whose record carries an
//! [`InvocationDetail`]: one queue, one lease and retry machinery, one dead-letter list,
//! but its own lane of concurrency (see `crate::async_lane`).

use serde::{Deserialize, Serialize};

use super::InvalidConfig;
use super::events::check_bucket;
use super::names::FunctionName;

/// The event type of an asynchronous invocation in the outbox.
pub const INVOCATION_EVENT: &str = "fnhost.invocation";
/// Most retries after the first attempt (Lambda allows 2; long jobs may want a few more).
pub const MAX_RETRIES: u32 = 10;
/// Longest first retry delay; later ones double from it, capped at [`MAX_BACKOFF_MS`].
pub const MAX_BACKOFF_MS: u64 = 60 * 60 * 1000;
/// Most asynchronous invocations of one function running at once on one node.
pub const MAX_ASYNC_CONCURRENCY: u32 = 1000;

/// Which queue of the outbox: trigger events or asynchronous invocations. Each has its own
/// loop and concurrency, so a backlog in one never delays the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Events,
    Invocations,
}

/// Where an invocation's outcome is sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Destination {
    /// An object in this bucket: the response body on success (under the key the function
    /// names in `fnhost-output-key`, else the invocation id), or a JSON record of the
    /// failure (`ID.json`).
    Bucket(String),
    /// An asynchronous invocation of this function (`NAME[@QUALIFIER]`), sent as a
    /// CloudEvent: the response as its body on success, a JSON record of the failure on
    /// failure.
    Function {
        name: String,
        qualifier: Option<String>,
    },
}

impl Destination {
    /// `bucket:NAME` or `function:NAME[@QUALIFIER]`.
    pub fn parse(text: &str) -> Result<Self, InvalidConfig> {
        let bad = |why: String| {
            InvalidConfig(format!(
                "destination {text:?}: {why}; use bucket:NAME or function:NAME[@VERSION|ALIAS]"
            ))
        };
        match text.split_once(':') {
            Some(("bucket", bucket)) => {
                check_bucket(bucket).map_err(|e| bad(e.0))?;
                Ok(Self::Bucket(bucket.to_string()))
            }
            Some(("function", target)) => {
                let (name, qualifier) = match target.split_once('@') {
                    Some((name, qualifier)) => (name, Some(qualifier)),
                    None => (target, None),
                };
                FunctionName::parse(name).map_err(|e| bad(e.to_string()))?;
                if let Some(qualifier) = qualifier
                    && super::Qualifier::parse(qualifier).is_none()
                {
                    super::check_alias_name(qualifier).map_err(|e| bad(e.to_string()))?;
                }
                Ok(Self::Function {
                    name: name.to_string(),
                    qualifier: qualifier.map(str::to_string),
                })
            }
            _ => Err(bad("unknown kind".into())),
        }
    }

    /// The namespace the destination lies in (a function's output may only go to its own).
    pub fn namespace(&self) -> &str {
        match self {
            Self::Bucket(bucket) => super::namespace_of(bucket),
            Self::Function { name, .. } => super::namespace_of(name),
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bucket(bucket) => write!(f, "bucket:{bucket}"),
            Self::Function {
                name,
                qualifier: None,
            } => write!(f, "function:{name}"),
            Self::Function {
                name,
                qualifier: Some(q),
            } => write!(f, "function:{name}@{q}"),
        }
    }
}

impl TryFrom<String> for Destination {
    type Error = InvalidConfig;
    fn try_from(text: String) -> Result<Self, InvalidConfig> {
        Self::parse(&text)
    }
}

impl From<Destination> for String {
    fn from(destination: Destination) -> String {
        destination.to_string()
    }
}

/// How a function's asynchronous invocations run: part of its config, so it travels into
/// versions with the code it was written for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncPolicy {
    /// Attempts after the first one fails with 5xx, 408, 429 or a timeout (a 4xx other
    /// than those fails at once: retrying cannot help).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Delay before the first retry; each later one doubles it (with jitter), up to an hour.
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    /// Invocations of this function running at once on a node, in the asynchronous lane
    /// (apart from its `max_concurrency` for HTTP requests).
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<Destination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Destination>,
}

fn default_retries() -> u32 {
    2
}

fn default_backoff() -> u64 {
    1000
}

fn default_concurrency() -> u32 {
    4
}

impl Default for AsyncPolicy {
    fn default() -> Self {
        Self {
            retries: default_retries(),
            backoff_ms: default_backoff(),
            concurrency: default_concurrency(),
            on_success: None,
            on_failure: None,
        }
    }
}

impl AsyncPolicy {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub fn validate(&self, function_namespace: Option<&str>) -> Result<(), InvalidConfig> {
        if self.retries > MAX_RETRIES {
            return Err(InvalidConfig(format!(
                "async retries {} is out of range; use 0 to {MAX_RETRIES}",
                self.retries
            )));
        }
        if self.backoff_ms == 0 || self.backoff_ms > MAX_BACKOFF_MS {
            return Err(InvalidConfig(format!(
                "async backoff {} ms is out of range; use 1 ms to 1 h",
                self.backoff_ms
            )));
        }
        if self.concurrency == 0 || self.concurrency > MAX_ASYNC_CONCURRENCY {
            return Err(InvalidConfig(format!(
                "async concurrency {} is out of range; use 1 to {MAX_ASYNC_CONCURRENCY}",
                self.concurrency
            )));
        }
        if let Some(namespace) = function_namespace {
            for destination in self.on_success.iter().chain(&self.on_failure) {
                if destination.namespace() != namespace {
                    return Err(InvalidConfig(format!(
                        "destination {destination} is outside the function's namespace {namespace:?}; \
                         send results to a bucket or function of the same namespace"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The delay before attempt `attempt + 1` after `attempt` failed: the backoff doubled per
    /// earlier retry, capped at an hour, plus up to 20 % jitter so a burst's retries spread.
    pub fn delay_after(&self, attempt: u32) -> u64 {
        super::backoff_ms(self.backoff_ms, MAX_BACKOFF_MS, attempt)
    }
}

/// A change to the async policy: fields left `None` keep their value; a destination of
/// `none` removes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
}

impl AsyncPatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    pub fn apply(&self, base: &AsyncPolicy) -> Result<AsyncPolicy, InvalidConfig> {
        let destination =
            |text: &Option<String>, current: &Option<Destination>| match text.as_deref() {
                None => Ok(current.clone()),
                Some("none" | "") => Ok(None),
                Some(text) => Destination::parse(text).map(Some),
            };
        Ok(AsyncPolicy {
            retries: self.retries.unwrap_or(base.retries),
            backoff_ms: self.backoff_ms.unwrap_or(base.backoff_ms),
            concurrency: self.concurrency.unwrap_or(base.concurrency),
            on_success: destination(&self.on_success, &base.on_success)?,
            on_failure: destination(&self.on_failure, &base.on_failure)?,
        })
    }
}

/// The head of a stored request: what the function will see, as text (header values that
/// are not UTF-8 are refused when the invocation is queued).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRequest {
    pub method: String,
    /// The path and query the function sees.
    pub path: String,
    pub headers: Vec<(String, String)>,
}

/// What an event record holds for an asynchronous invocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationDetail {
    pub request: StoredRequest,
    /// Where the request body lies in the object store (`None`: empty), and its size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    pub body_bytes: u64,
    /// Attempts allowed in all (the retries of the policy when queued, plus one).
    pub max_attempts: u32,
    /// Set once the invocation has run to an end (success or the last failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<InvocationResult>,
}

/// How an invocation's last attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationResult {
    /// The HTTP status the function answered with (or the host's, for a timeout or trap).
    pub status: u16,
    /// The version that ran it.
    pub version: String,
    pub duration_ms: u64,
    pub response_bytes: u64,
    /// Where the outcome was sent (`bucket:NAME/KEY`, `function:NAME (ID)`), if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

/// The asynchronous lane now, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LaneStats {
    /// Invocations running at once at most, host-wide.
    pub limit: u32,
    /// Functions with invocations running now, and how many.
    pub running: Vec<(String, u32)>,
    /// Attempts since this host started, by how they ended.
    pub succeeded: u64,
    pub retried: u64,
    pub dead_lettered: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_and_print_back() {
        for text in [
            "bucket:replays",
            "bucket:out.team",
            "function:notify",
            "function:notify@live",
            "function:notify.team@3",
        ] {
            assert_eq!(Destination::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "replays",
            "bucket:UP",
            "queue:x",
            "function:",
            "function:a@b@c",
        ] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Destination::parse("function:notify.team@3")
                .unwrap()
                .namespace(),
            "team"
        );
    }

    #[test]
    fn policy_patches_check_ranges_and_namespaces() {
        let base = AsyncPolicy::default();
        let patch = AsyncPatch {
            retries: Some(5),
            on_success: Some("bucket:out".into()),
            ..Default::default()
        };
        let policy = patch.apply(&base).unwrap();
        assert_eq!(policy.retries, 5);
        assert_eq!(policy.on_success, Some(Destination::Bucket("out".into())));
        assert!(policy.validate(Some("default")).is_ok());
        assert!(
            policy
                .validate(Some("team"))
                .unwrap_err()
                .0
                .contains("outside")
        );
        let cleared = AsyncPatch {
            on_success: Some("none".into()),
            ..Default::default()
        }
        .apply(&policy)
        .unwrap();
        assert_eq!(cleared.on_success, None);
        assert_eq!(cleared.retries, 5);
        let too_many = AsyncPatch {
            retries: Some(MAX_RETRIES + 1),
            ..Default::default()
        };
        assert!(too_many.apply(&base).unwrap().validate(None).is_err());
    }

    #[test]
    fn retry_delays_double_with_jitter_up_to_an_hour() {
        let policy = AsyncPolicy {
            backoff_ms: 1000,
            ..Default::default()
        };
        for (attempt, base) in [(1, 1000), (2, 2000), (3, 4000), (40, MAX_BACKOFF_MS)] {
            let delay = policy.delay_after(attempt);
            assert!(
                (base..=base + base / 5).contains(&delay),
                "{attempt}: {delay}"
            );
        }
    }
}
