//! Asynchronous invocations: what queueing one answers, and how one is shown.

use serde::{Deserialize, Serialize};

use crate::model::{EventRecord, EventStatus, InvocationResult};

/// What a queued invocation answers with (202): its id and where to follow it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationAccepted {
    pub id: String,
    pub function: String,
    /// The version that will run it (chosen when it was accepted, as for a live request).
    pub version: Option<String>,
    pub status: EventStatus,
    /// `GET` this on the admin plane to follow it.
    pub location: String,
}

/// One asynchronous invocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationView {
    pub id: String,
    pub function: String,
    pub version: Option<String>,
    /// `pending` (waiting for its next attempt), `running`, `delivered` (succeeded) or
    /// `failed` (dead-lettered: retry it with `POST /v1/invocations/ID/retry`).
    pub status: EventStatus,
    pub attempts: u32,
    pub max_attempts: u32,
    /// When the next attempt is due (pending), or the lease of the running one.
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub method: String,
    pub path: String,
    pub body_bytes: u64,
    /// How the last attempt ended, and where its result went.
    pub result: Option<InvocationResult>,
    /// Invocations chained through destinations before this one.
    pub hops: u32,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// `GET /v1/functions/NAME/invocations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationList {
    pub function: String,
    pub invocations: Vec<InvocationView>,
}

impl InvocationView {
    /// `None` for an event that is not an invocation.
    pub fn of(event: EventRecord) -> Option<Self> {
        let detail = event.invocation?;
        Some(Self {
            id: event.id,
            function: event.function,
            version: event.target,
            status: event.status,
            attempts: event.attempts,
            max_attempts: detail.max_attempts,
            next_attempt_ms: event.next_attempt_ms,
            last_error: event.last_error,
            method: detail.request.method,
            path: detail.request.path,
            body_bytes: detail.body_bytes,
            result: detail.result,
            hops: event.hops,
            created_ms: event.created_ms,
            updated_ms: event.updated_ms,
        })
    }
}
