//! Secrets: values a function reads through `wasi:config` that nobody reads back. Each is
//! sealed with ChaCha20-Poly1305 under the host's secrets key before it reaches the store,
//! bound to its function and name (the additional data), so a sealed value copied to another
//! row does not open. The key is kept apart from the database: `FNHOST_SECRETS_KEY` (64 hex
//! digits) or a key file (mode 0600, made on first start on a single node). The database
//! keeps only a check value (an HMAC of a constant), so a node started with the wrong key
//! refuses to start rather than fail every secret later.

use std::path::Path;

use anyhow::Context as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Nonce bytes at the front of every sealed value.
const NONCE: usize = 12;
/// The registry setting holding the key's check value.
pub const CHECK_SETTING: &str = "secrets_key_check";

/// The host's secrets key.
#[derive(Clone)]
pub struct SecretsKey {
    cipher: ChaCha20Poly1305,
    check: String,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

/// A sealed value that did not open: the wrong key, or a damaged or moved row.
#[derive(Debug, thiserror::Error)]
#[error("secret {name:?} of {function:?} does not open with this host's secrets key")]
pub struct Unsealable {
    pub function: String,
    pub name: String,
}

impl SecretsKey {
    pub fn from_bytes(key: [u8; 32]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length");
        mac.update(b"fnhost secrets key check");
        Self {
            cipher: ChaCha20Poly1305::new(&key.into()),
            check: hex::encode(mac.finalize().into_bytes()),
        }
    }

    /// `FNHOST_SECRETS_KEY` if set, else the key file `path` (made, 0600, when `create`).
    /// `None` when there is neither and nothing may be made.
    pub fn load(env: Option<&str>, path: &Path, create: bool) -> anyhow::Result<Option<Self>> {
        if let Some(text) = env {
            return parse(text.trim())
                .map(Some)
                .context("FNHOST_SECRETS_KEY must be 64 hex digits (32 bytes)");
        }
        match std::fs::read_to_string(path) {
            Ok(text) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
                    if mode & 0o077 != 0 {
                        anyhow::bail!(
                            "the secrets key {} is readable by other users (mode {mode:o}); run \
                             `chmod 600 {}`",
                            path.display(),
                            path.display()
                        );
                    }
                }
                parse(text.trim())
                    .map(Some)
                    .with_context(|| format!("{} must hold 64 hex digits", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key)
                    .map_err(|e| anyhow::anyhow!("reading the OS random source: {e}"))?;
                crate::durable_file::write(
                    path,
                    format!("{}\n", hex::encode(key)).as_bytes(),
                    0o600,
                )
                .with_context(|| format!("writing {}", path.display()))?;
                tracing::info!(path = %path.display(), "created a new secrets key");
                Ok(Some(Self::from_bytes(key)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// What the registry keeps to recognise this key.
    pub fn check_value(&self) -> &str {
        &self.check
    }

    /// Seals `value` as `function`'s secret `name`: nonce, then ciphertext and tag.
    pub fn seal(&self, function: &str, name: &str, value: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).expect("the OS random source works");
        let aad = place(function, name);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value,
                    aad: &aad,
                },
            )
            .expect("sealing cannot fail for in-memory buffers");
        [nonce.as_slice(), &sealed].concat()
    }

    /// Opens what [`seal`](Self::seal) made for the same function and name.
    pub fn open(&self, function: &str, name: &str, sealed: &[u8]) -> Result<Vec<u8>, Unsealable> {
        let unsealable = || Unsealable {
            function: function.to_string(),
            name: name.to_string(),
        };
        if sealed.len() < NONCE {
            return Err(unsealable());
        }
        let (nonce, body) = sealed.split_at(NONCE);
        let aad = place(function, name);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .map_err(|_| unsealable())
    }
}

fn parse(text: &str) -> anyhow::Result<SecretsKey> {
    let bytes: [u8; 32] = hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("not 64 hex digits"))?;
    Ok(SecretsKey::from_bytes(bytes))
}

/// The additional data a value is sealed with: where it belongs.
fn place(function: &str, name: &str) -> Vec<u8> {
    [function.as_bytes(), b"\0", name.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_in_their_place_with_their_key() {
        let key = SecretsKey::from_bytes([7; 32]);
        let sealed = key.seal("shop", "API_KEY", b"s3cret");
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(key.open("shop", "API_KEY", &sealed).unwrap(), b"s3cret");
        assert_ne!(
            sealed,
            key.seal("shop", "API_KEY", b"s3cret"),
            "a fresh nonce each time"
        );
        assert!(
            key.open("shop", "OTHER", &sealed).is_err(),
            "bound to its name"
        );
        assert!(
            key.open("cart", "API_KEY", &sealed).is_err(),
            "bound to its function"
        );
        assert!(
            SecretsKey::from_bytes([8; 32])
                .open("shop", "API_KEY", &sealed)
                .is_err()
        );
        assert_ne!(
            key.check_value(),
            SecretsKey::from_bytes([8; 32]).check_value()
        );
        assert!(key.open("shop", "API_KEY", &sealed[..5]).is_err());
    }
}
