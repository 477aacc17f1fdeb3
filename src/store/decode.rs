//! Reading stored columns back into model types, the same for every backend: a value that
//! does not parse is corruption, reported with what was found.

use crate::model::{Digest, FunctionConfig};
use crate::store::StoreError;

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("stored {what} {text:?} does not parse: {e}")))
}

pub(crate) fn parse_config(text: &str) -> Result<FunctionConfig, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("stored config {text:?} does not parse: {e}")))
}

pub(crate) fn parse_digest(text: &str) -> Result<Digest, StoreError> {
    Digest::from_hex(text)
        .ok_or_else(|| StoreError::Corrupt(format!("stored digest {text:?} is not sha256 hex")))
}

/// A text column where '' means "none" (the column's default, for rows older than it).
pub(crate) fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// A stored health sample's columns as a sample.
pub(crate) fn health_sample(
    function: String,
    version: &str,
    second: i64,
    requests: i64,
    errors: i64,
    latency: &str,
) -> Result<crate::model::HealthSample, StoreError> {
    Ok(crate::model::HealthSample {
        version: crate::model::VersionLabel::parse(version)
            .ok_or_else(|| StoreError::Corrupt(format!("stored health version {version:?}")))?,
        function,
        second,
        requests: requests.max(0) as u64,
        errors: errors.max(0) as u64,
        latency: parse_json(latency, "health latency histogram")?,
    })
}
