//! What functions print, kept per function in a bounded ring (oldest entries go first), with
//! the request id, version and time of each invocation. Read through the admin API and
//! `fnhost logs`; a follower waits for new entries instead of polling.
//!
//! Each request contributes at most `engine::GUEST_OUTPUT_LIMIT` bytes and each function at most
//! [`BYTES_PER_FUNCTION`], so a function that prints without end cannot exhaust host memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::Notify;

/// Memory kept per function: the entries' text, ids and bookkeeping together.
pub const BYTES_PER_FUNCTION: usize = 256 * 1024;

#[derive(Clone, Debug)]
pub struct LogEntry {
    /// Increases by one per entry of this function; pass the last one seen as `after`.
    pub seq: u64,
    pub time_ms: i64,
    pub request_id: String,
    pub version: String,
    pub text: String,
}

impl LogEntry {
    /// What the entry costs in memory, so that many short (even empty) entries are bounded
    /// as surely as a few long ones.
    fn footprint(&self) -> usize {
        std::mem::size_of::<Self>() + self.text.len() + self.request_id.len() + self.version.len()
    }
}

#[derive(Default)]
struct Ring {
    entries: Mutex<RingEntries>,
    appended: Notify,
}

#[derive(Default)]
struct RingEntries {
    entries: VecDeque<LogEntry>,
    bytes: usize,
    next_seq: u64,
}

#[derive(Default)]
pub struct FunctionLogs {
    rings: DashMap<Arc<str>, Arc<Ring>>,
}

impl FunctionLogs {
    pub fn append(&self, function: &Arc<str>, version: &str, request_id: &str, text: String) {
        let ring = self.ring(function);
        {
            let mut ring = ring.entries.lock().unwrap_or_else(|p| p.into_inner());
            ring.next_seq += 1;
            let entry = LogEntry {
                seq: ring.next_seq,
                time_ms: crate::model::now_ms(),
                request_id: request_id.to_string(),
                version: version.to_string(),
                text,
            };
            ring.bytes += entry.footprint();
            ring.entries.push_back(entry);
            while ring.bytes > BYTES_PER_FUNCTION {
                let Some(old) = ring.entries.pop_front() else {
                    break;
                };
                ring.bytes -= old.footprint();
            }
        }
        ring.appended.notify_waiters();
    }

    /// Entries after `after`, optionally of one version, at most `limit`.
    pub fn read(
        &self,
        function: &str,
        after: u64,
        version: Option<&str>,
        limit: usize,
    ) -> Vec<LogEntry> {
        let Some(ring) = self.rings.get(function).map(|r| r.clone()) else {
            return Vec::new();
        };
        let ring = ring.entries.lock().unwrap_or_else(|p| p.into_inner());
        ring.entries
            .iter()
            .filter(|e| e.seq > after && version.is_none_or(|v| e.version == v))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Waits until `function` has an entry after `after`, or `timeout` passes.
    pub async fn wait(&self, function: &str, after: u64, timeout: Duration) {
        let ring = self.ring(&Arc::from(function));
        let _ = tokio::time::timeout(timeout, async {
            loop {
                let appended = ring.appended.notified();
                let newest = ring
                    .entries
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .next_seq;
                if newest > after {
                    return;
                }
                appended.await;
            }
        })
        .await;
    }

    /// Forgets a deleted function's logs.
    pub fn remove(&self, function: &str) {
        self.rings.remove(function);
    }

    fn ring(&self, function: &Arc<str>) -> Arc<Ring> {
        match self.rings.get(function) {
            Some(ring) => ring.clone(),
            None => self.rings.entry(function.clone()).or_default().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_newest_entries_within_the_byte_bound() {
        let logs = FunctionLogs::default();
        let f: Arc<str> = Arc::from("f");
        for i in 0..100 {
            logs.append(
                &f,
                if i % 2 == 0 { "1" } else { "2" },
                "r",
                "x".repeat(8 * 1024),
            );
        }
        let all = logs.read("f", 0, None, usize::MAX);
        assert!(all.len() * 8 * 1024 <= BYTES_PER_FUNCTION);
        assert_eq!(all.last().unwrap().seq, 100);
        let v2 = logs.read("f", 0, Some("2"), usize::MAX);
        assert!(v2.iter().all(|e| e.version == "2"));
        assert_eq!(logs.read("f", 99, None, 10).len(), 1);
        assert!(logs.read("g", 0, None, 10).is_empty());
    }

    #[test]
    fn empty_entries_count_against_the_bound() {
        let logs = FunctionLogs::default();
        let f: Arc<str> = Arc::from("f");
        for _ in 0..100_000 {
            logs.append(&f, "1", "request", String::new());
        }
        let kept = logs.read("f", 0, None, usize::MAX).len();
        assert!(kept < 5_000, "{kept} empty entries kept");
        assert!(kept > 100, "{kept}");
    }

    #[tokio::test(start_paused = true)]
    async fn followers_wake_on_new_entries() {
        let logs = Arc::new(FunctionLogs::default());
        let f: Arc<str> = Arc::from("f");
        let waiter = {
            let logs = logs.clone();
            tokio::spawn(async move { logs.wait("f", 0, Duration::from_secs(30)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            !waiter.is_finished(),
            "a follower waits while nothing is new"
        );
        let appended = tokio::time::Instant::now();
        logs.append(&f, "1", "r", "hello".into());
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the follower woke")
            .unwrap();
        assert!(
            appended.elapsed() < Duration::from_millis(100),
            "woken by the append, not by a timeout"
        );
    }
}
