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
