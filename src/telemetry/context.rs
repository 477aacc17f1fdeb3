//! W3C trace context (`traceparent`, `tracestate`): what a trace's place is as it crosses a
//! process. Pure: parsing, formatting, fresh ids and the sampling decision.

use std::fmt;

/// A trace id (16 bytes) and the span (8 bytes) a request is a child of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
    /// Vendors' `tracestate`, passed on as received.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Parses `traceparent` (version 00; later versions by their first four fields, as the
    /// spec asks); `None` for anything malformed, which starts a new trace.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let text = traceparent.trim();
        let mut parts = text.split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || !is_lower_hex(version) {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace_id: [u8; 16] = decode(trace)?;
        let span_id: [u8; 8] = decode(span)?;
        let [flags]: [u8; 1] = decode(flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
            tracestate: tracestate
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.len() <= 512)
                .map(str::to_string),
        })
    }

    /// The `traceparent` naming `span_id` of this trace as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            u8::from(self.sampled)
        )
    }

    /// The same trace, with `span_id` as the parent of what comes next.
    pub fn child(&self, span_id: [u8; 8]) -> Self {
        Self {
            span_id,
            ..self.clone()
        }
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 || !is_lower_hex(text) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// A fresh, non-zero trace id.
pub fn new_trace_id() -> [u8; 16] {
    loop {
        let id = fastrand::u128(..).to_be_bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

/// A fresh, non-zero span id.
pub fn new_span_id() -> [u8; 8] {
    loop {
        let id = fastrand::u64(..).to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

/// Whether a trace with no sampled parent is kept at `ratio` (0.0 to 1.0), decided by its
/// id, as OpenTelemetry's TraceIdRatioBased does: every process decides the same for it.
pub fn sampled_by_ratio(trace_id: &[u8; 16], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let low = u64::from_be_bytes(trace_id[8..].try_into().expect("8 bytes"));
    (low >> 1) < (ratio * (1u64 << 63) as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trips_and_keeps_tracestate() {
        let context = TraceContext::parse(SAMPLE, Some("congo=t61rcWkgMzE")).unwrap();
        assert!(context.sampled);
        assert_eq!(context.traceparent(), SAMPLE);
        assert_eq!(context.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        let child = context.child([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            child.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
        let unsampled = TraceContext::parse(&SAMPLE.replace("-01", "-00"), None).unwrap();
        assert!(!unsampled.sampled);
        // A later version: its first four fields are read, the rest ignored.
        assert!(
            TraceContext::parse(&format!("{}-extra", SAMPLE.replacen("00", "01", 1)), None)
                .is_some()
        );
    }

    #[test]
    fn malformed_traceparents_start_a_new_trace() {
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceContext::parse(bad, None), None, "{bad:?}");
        }
    }

    #[test]
    fn ratio_sampling_keeps_about_the_ratio_and_is_decided_by_the_id() {
        let kept = (0..10_000)
            .filter(|_| sampled_by_ratio(&new_trace_id(), 0.1))
            .count();
        assert!((800..1200).contains(&kept), "{kept} of 10000 at 10%");
        let id = new_trace_id();
        assert_eq!(sampled_by_ratio(&id, 0.5), sampled_by_ratio(&id, 0.5));
        assert!(sampled_by_ratio(&id, 1.0));
        assert!(!sampled_by_ratio(&id, 0.0));
    }
}
