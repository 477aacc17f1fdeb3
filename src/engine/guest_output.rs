//! A request's stdout and stderr, captured into one bounded buffer.
//!
//! The guest never sees an error for writing (a Rust `println!` that fails would panic):
//! output past the bound is counted and dropped, so a function that prints without end costs
//! at most [`GUEST_OUTPUT_LIMIT`] bytes of host memory per request.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Bytes of output kept per request; the rest is dropped.
pub const GUEST_OUTPUT_LIMIT: usize = 8 * 1024;

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: u64,
}

/// Shared by the guest's stdout and stderr streams and read by the host afterwards.
#[derive(Clone, Default)]
pub struct GuestOutput(Arc<Mutex<Captured>>);

impl GuestOutput {
    /// The captured text (lossily decoded), noting how much was dropped; `None` if nothing
    /// was written.
    pub fn text(&self) -> Option<String> {
        let captured = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if captured.bytes.is_empty() && captured.dropped == 0 {
            return None;
        }
        let mut text = String::from_utf8_lossy(&captured.bytes).trim().to_string();
        if captured.dropped > 0 {
            text.push_str(&format!(" [... {} more bytes dropped]", captured.dropped));
        }
        Some(text)
    }

    /// Like [`Self::text`], and empties the buffer: a reused instance's output is handed
    /// out at the end of each request, with whatever it printed since the last one.
    pub fn take_text(&self) -> Option<String> {
        let text = self.text();
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Captured::default();
        text
    }

    fn append(&self, data: &[u8]) {
        let mut captured = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let room = GUEST_OUTPUT_LIMIT.saturating_sub(captured.bytes.len());
        let kept = data.len().min(room);
        captured.bytes.extend_from_slice(&data[..kept]);
        captured.dropped += (data.len() - kept) as u64;
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_bounded_prefix_and_counts_the_rest() {
        let output = GuestOutput::default();
        assert_eq!(output.text(), None);
        output.append(b"hello\n");
        assert_eq!(output.text().unwrap(), "hello");
        output.append(&vec![b'x'; GUEST_OUTPUT_LIMIT]);
        let text = output.text().unwrap();
        assert!(
            text.ends_with("[... 6 more bytes dropped]"),
            "{}",
            &text[text.len() - 40..]
        );
        assert!(text.len() < GUEST_OUTPUT_LIMIT + 64);
    }
}
