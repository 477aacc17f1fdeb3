//! Key-value stores (`wasi:keyvalue`): names, the host's limits, and what a read returns.
//!
//! A store belongs to a namespace and is opened by name; a function may open only the
//! stores its config lists. Values are bytes; `increment` keeps a number as its decimal
//! text, so operators can read it with `fnhost kv get`. Every value has a version, bumped by
//! each write, which compare-and-swap compares.

use super::InvalidConfig;

/// Stores one function may name in its config.
pub const MAX_STORES_PER_FUNCTION: usize = 16;

/// The host's limits on key-value use, with the error each refusal gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLimits {
    pub key_bytes: usize,
    pub value_bytes: usize,
    pub keys_per_store: u64,
    /// Keys plus values, over one store.
    pub bytes_per_store: u64,
    /// Store operations one invocation may make (a batch counts each key).
    pub ops_per_request: u32,
}

impl Default for KvLimits {
    fn default() -> Self {
        Self {
            key_bytes: 512,
            value_bytes: 1 << 20,
            keys_per_store: 100_000,
            bytes_per_store: 256 << 20,
            ops_per_request: 1_000,
        }
    }
}

impl KvLimits {
    /// Refuses a key that is empty or too long.
    pub fn check_key(&self, key: &str) -> Result<(), String> {
        if key.is_empty() {
            return Err("keys are not empty".to_string());
        }
        if key.len() > self.key_bytes {
            return Err(format!(
                "key of {} bytes is over the limit of {} bytes",
                key.len(),
                self.key_bytes
            ));
        }
        Ok(())
    }

    /// Refuses a value that is too big.
    pub fn check_value(&self, value: &[u8]) -> Result<(), String> {
        if value.len() > self.value_bytes {
            return Err(format!(
                "value of {} bytes is over the limit of {} bytes",
                value.len(),
                self.value_bytes
            ));
        }
        Ok(())
    }

    /// Refuses a store that would grow past its limits: `keys` and `bytes` after the change.
    pub fn check_store(&self, store: &str, keys: i64, bytes: i64) -> Result<(), String> {
        if keys > self.keys_per_store as i64 {
            return Err(format!(
                "store {store:?} would hold {keys} keys, over the limit of {}",
                self.keys_per_store
            ));
        }
        if bytes > self.bytes_per_store as i64 {
            return Err(format!(
                "store {store:?} would hold {bytes} bytes, over the limit of {}",
                self.bytes_per_store
            ));
        }
        Ok(())
    }
}

/// One store: its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KvStoreId {
    pub namespace: String,
    pub store: String,
}

/// A stored value and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvEntry {
    pub value: Vec<u8>,
    pub version: i64,
}

/// Store names follow the function-name rule: lowercase DNS labels.
pub fn check_store_name(name: &str) -> Result<(), InvalidConfig> {
    if super::tenancy::is_label(name) {
        Ok(())
    } else {
        Err(InvalidConfig(format!(
            "key-value store name {name:?}: use 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'"
        )))
    }
}

/// What `increment` stores at a key holding `current` (absent: 0) after adding `delta`.
pub fn incremented(current: Option<&[u8]>, delta: i64) -> Result<i64, String> {
    let current = current.map_or(Ok(0), parse_counter)?;
    current
        .checked_add(delta)
        .ok_or_else(|| format!("incrementing {current} by {delta} overflows"))
}

/// The number `increment` keeps at a key: its decimal text.
pub fn parse_counter(value: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| "the value is not a number (increment keeps decimal text)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_what_is_over() {
        let limits = KvLimits::default();
        assert!(limits.check_key("cart:42").is_ok());
        assert!(limits.check_key("").is_err());
        assert!(
            limits
                .check_key(&"k".repeat(513))
                .unwrap_err()
                .contains("512")
        );
        assert!(limits.check_value(&vec![0; (1 << 20) + 1]).is_err());
        assert!(
            limits
                .check_store("s", 100_001, 0)
                .unwrap_err()
                .contains("keys")
        );
        assert!(
            limits
                .check_store("s", 1, 300 << 20)
                .unwrap_err()
                .contains("bytes")
        );
        assert_eq!(parse_counter(b"-12"), Ok(-12));
        assert!(parse_counter(b"ten").is_err());
        assert!(check_store_name("cart").is_ok() && check_store_name("Cart").is_err());
    }
}
