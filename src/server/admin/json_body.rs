//! Reading JSON request bodies on the admin plane, shared by every operation.

use http::Request;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use crate::server::error::ApiError;

/// JSON request bodies on the admin plane are small; anything bigger is a mistake.
const MAX_JSON_BODY: usize = 1 << 20;

/// Reads a small JSON body; an empty body means the type's default.
pub async fn read_json<T: DeserializeOwned + Default>(
    request: Request<Incoming>,
) -> Result<T, ApiError> {
    let bytes = Limited::new(request.into_body(), MAX_JSON_BODY)
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?
        .to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not valid JSON for this call: {e}"
        ))
    })
}
