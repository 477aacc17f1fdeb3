//! Unread request bodies: an early answer (401, 404, 413, ...) reads what the client is still
//! sending and drops it chunk by chunk, within a bound, so the answer reaches the client and
//! no unread body ever holds memory. A leaf: the server and the invocation pipeline use it.

use std::time::Duration;

/// Most unread request body an early answer reads and throws away. Answering while the
/// client is still sending makes many clients see a reset instead of the answer; past this
/// much (or [`DISCARD_TIMEOUT`]) the connection is closed instead, so a client cannot make
/// the host read more.
pub const DISCARD_LIMIT: u64 = 1 << 20;
/// Longest an early answer waits for a client to finish sending what it declared.
pub const DISCARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads and drops up to [`DISCARD_LIMIT`] bytes of `body` for at most
/// [`DISCARD_TIMEOUT`], so an early answer reaches a client that is still uploading. Each
/// chunk is dropped as it arrives: an unread body never holds memory.
pub async fn discard<B>(body: B)
where
    B: http_body::Body,
{
    use http_body_util::BodyExt as _;
    let mut body = std::pin::pin!(body);
    let mut left = DISCARD_LIMIT;
    let _ = tokio::time::timeout(DISCARD_TIMEOUT, async {
        while let Some(Ok(frame)) = body.frame().await {
            let len = frame
                .data_ref()
                .map_or(0, |d| bytes::Buf::remaining(d) as u64);
            if len >= left {
                return;
            }
            left -= len;
        }
    })
    .await;
}
