//! The parts fnhost depends on (the metadata database, the data directory's disk, the
//! object store) and whether each is up, as the host last saw it.
//!
//! Every caller that meets a dependency's failure reports it here, and every success clears
//! it, so the state follows real traffic without probes of its own (the heartbeat touches
//! the database every second, which bounds how stale the database's state can be). The
//! outage is logged once when it starts and once when it ends, not once per failed call:
//! callers whose error is a dependency's outage stay quiet (see [`Dependencies::failed`]).
//! `/readyz`, `/v1/status` and `fnhost_dependency_up` read [`Dependencies::report`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::model::{DependencyReport, now_ms};

/// One part fnhost depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The metadata store: SQLite in the data directory, or PostgreSQL in a fleet.
    Database,
    /// The filesystem holding the data directory (modules, compiled code, SQLite).
    Disk,
    /// The object store: buckets, asynchronous invocation bodies and, in a fleet, the
    /// modules and compiled code every node fetches.
    ObjectStore,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Database, Part::Disk, Part::ObjectStore];

    /// The name in reports and the metric's `name` label.
    pub fn name(self) -> &'static str {
        match self {
            Part::Database => "database",
            Part::Disk => "disk",
            Part::ObjectStore => "object_store",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The state of every [`Part`]; shared by everything that talks to one.
pub struct Dependencies {
    parts: [PartState; 3],
}

struct PartState {
    /// What it is, for people: "PostgreSQL postgres://fnhost:***@db:5432/fnhost".
    what: String,
    /// Read on every success; the lock is only taken when the state changes.
    up: AtomicBool,
    outage: Mutex<Outage>,
}

#[derive(Default)]
struct Outage {
    /// When the current outage began (Unix ms), `None` while up.
    since_ms: Option<i64>,
    /// The last failure seen, while down.
    error: Option<String>,
    /// Failures seen during the current outage.
    failures: u64,
    /// Outages since start.
    outages: u64,
}

impl Dependencies {
    /// Every part up; `what` describes each part, in [`Part::ALL`] order.
    pub fn new(database: String, disk: String, object_store: String) -> Self {
        let state = |what| PartState {
            what,
            up: AtomicBool::new(true),
            outage: Mutex::new(Outage::default()),
        };
        Self {
            parts: [state(database), state(disk), state(object_store)],
        }
    }

    fn state(&self, part: Part) -> &PartState {
        &self.parts[part.index()]
    }

    pub fn is_up(&self, part: Part) -> bool {
        self.state(part).up.load(Ordering::Acquire)
    }

    /// A call to `part` failed because `part` is unavailable. The first failure of an
    /// outage is logged (with what fails meanwhile); later ones are counted. Returns whether
    /// this failure started the outage.
    pub fn failed(&self, part: Part, error: &dyn std::fmt::Display) -> bool {
        let state = self.state(part);
        let mut outage = state.outage.lock().unwrap_or_else(|p| p.into_inner());
        outage.failures += 1;
        outage.error = Some(error.to_string());
        if outage.since_ms.is_some() {
            return false;
        }
        outage.since_ms = Some(now_ms());
        outage.outages += 1;
        state.up.store(false, Ordering::Release);
        tracing::error!(
            dependency = part.name(),
            what = %state.what,
            error = %error,
            "{} is down: deployed functions keep serving; {}; fnhost retries by itself",
            part.name(),
            consequence(part)
        );
        true
    }

    /// A call to `part` succeeded: ends its outage, if any, with one log line.
    pub fn ok(&self, part: Part) {
        let state = self.state(part);
        if state.up.load(Ordering::Acquire) {
            return;
        }
        let mut outage = state.outage.lock().unwrap_or_else(|p| p.into_inner());
        let Some(since) = outage.since_ms.take() else {
            return;
        };
        state.up.store(true, Ordering::Release);
        let failures = std::mem::take(&mut outage.failures);
        outage.error = None;
        tracing::info!(
            dependency = part.name(),
            what = %state.what,
            down_ms = now_ms() - since,
            failures,
            "{} is back",
            part.name()
        );
    }

    /// Every part's state, in [`Part::ALL`] order.
    pub fn report(&self) -> Vec<DependencyReport> {
        Part::ALL
            .iter()
            .map(|&part| {
                let state = self.state(part);
                let outage = state.outage.lock().unwrap_or_else(|p| p.into_inner());
                DependencyReport {
                    name: part.name().to_string(),
                    what: state.what.clone(),
                    up: outage.since_ms.is_none(),
                    down_since_ms: outage.since_ms,
                    error: outage.error.clone(),
                    failures: outage.failures,
                    outages: outage.outages,
                }
            })
            .collect()
    }

    /// The parts that are down, by name: "database, disk". Empty when all are up.
    pub fn down(&self) -> Vec<&'static str> {
        Part::ALL
            .iter()
            .filter(|&&part| !self.is_up(part))
            .map(|part| part.name())
            .collect()
    }
}

/// What stops working while `part` is down, for the outage's log line.
fn consequence(part: Part) -> &'static str {
    match part {
        Part::Database => {
            "admin changes, key-value calls, object uploads and asynchronous invocations fail \
             with 503 until it is back; usage is kept in memory and flushed then"
        }
        Part::Disk => {
            "uploads, object puts and key-value writes that need space are refused with 507 \
             until space is freed"
        }
        Part::ObjectStore => {
            "object puts and reads, asynchronous invocations with a body and (in a fleet) \
             uploads fail with 503; deliveries that need an object wait without spending an \
             attempt"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps() -> Dependencies {
        Dependencies::new("db".into(), "/data".into(), "s3://bucket".into())
    }

    #[test]
    fn an_outage_starts_once_and_ends_with_a_success() {
        let deps = deps();
        assert!(deps.is_up(Part::Database));
        assert!(deps.failed(Part::Database, &"connection refused"));
        assert!(!deps.failed(Part::Database, &"connection refused again"));
        assert!(!deps.is_up(Part::Database));
        assert!(deps.is_up(Part::Disk), "one part's outage is not another's");
        assert_eq!(deps.down(), vec!["database"]);
        let report = deps.report();
        assert_eq!(report[0].name, "database");
        assert!(!report[0].up);
        assert_eq!(report[0].failures, 2);
        assert_eq!(report[0].error.as_deref(), Some("connection refused again"));
        assert!(report[0].down_since_ms.is_some());

        deps.ok(Part::Database);
        assert!(deps.is_up(Part::Database));
        let report = deps.report();
        assert!(report[0].up && report[0].error.is_none());
        assert_eq!((report[0].failures, report[0].outages), (0, 1));
        assert!(deps.down().is_empty());
        // A second outage is counted as one more, and starts afresh.
        assert!(deps.failed(Part::Database, &"gone"));
        assert_eq!(deps.report()[0].outages, 2);
    }

    #[test]
    fn a_success_while_up_changes_nothing() {
        let deps = deps();
        deps.ok(Part::Disk);
        let report = deps.report();
        assert!(report.iter().all(|r| r.up && r.outages == 0));
        assert_eq!(
            report.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["database", "disk", "object_store"]
        );
    }
}
