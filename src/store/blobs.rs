//! Content-addressed module storage: `<data-dir>/modules/<sha256>.wasm`, and in a fleet also
//! the shared object store (`_fnhost/modules/<sha256>.wasm`), so any node can serve any
//! version. Compiled code is shared there too (`_fnhost/compiled/`), so a component compiles
//! once per fleet rather than once per node.
//!
//! A blob is written (durably, and to the shared store) before any database row names it, so
//! metadata never points at missing bytes; a crash in between leaves at most an orphan,
//! removed at the next start (shared orphans once they are an hour old, so an upload another
//! node has not committed yet keeps its blob).
//!
//! Bytes from the shared store are checked before use: a module must hash to its digest, and
//! compiled code (native code the node will map and run) must carry a MAC made with the
//! fleet's artifact key, which lives in the registry, so write access to the object store
//! alone cannot plant code on the nodes.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use hmac::{Hmac, Mac};
use object_store::ObjectStore;
use object_store::path::Path as StorePath;

use crate::durable_file;
use crate::model::Digest;

/// Where fnhost keeps its own objects in the shared store; bucket names cannot start with
/// `_`, so no bucket collides.
const MODULES_PREFIX: &str = "_fnhost/modules";
const COMPILED_PREFIX: &str = "_fnhost/compiled";
/// A shared blob no row names is deleted only once it is this old: another node may have
/// written it for an upload it has not committed yet.
const SHARED_ORPHAN_AGE: Duration = Duration::from_secs(3600);
/// The file [`ModuleStore::probe_space`] writes, and how much: a small upload's worth.
const SPACE_PROBE: &str = ".space-probe";
const SPACE_PROBE_BYTES: usize = 64 * 1024;
/// Length of the MAC appended to shared compiled code.
const MAC_LEN: usize = 32;

/// The directory of module blobs, and the shared store behind it in a fleet.
pub struct ModuleStore {
    dir: PathBuf,
    shared: Option<SharedBlobs>,
}

/// The fleet's object store and the key that authenticates compiled code in it.
pub struct SharedBlobs {
    pub store: SharedStore,
    pub artifact_key: Vec<u8>,
}

/// The fleet's object store, and its directory when it is a local one (`file://`, a shared
/// filesystem): what is written there is fsynced before it counts as stored.
#[derive(Clone)]
pub struct SharedStore {
    pub store: Arc<dyn ObjectStore>,
    pub local_root: Option<PathBuf>,
}

impl SharedStore {
    /// Writes `bytes` under `key`, durably.
    async fn put(&self, key: &StorePath, bytes: Bytes) -> io::Result<()> {
        self.store
            .put(key, bytes.into())
            .await
            .map_err(shared_error)?;
        if let Some(root) = &self.local_root {
            let file = root.join(key.as_ref());
            tokio::task::spawn_blocking(move || durable_file::sync_file_and_dir(&file))
                .await
                .map_err(io::Error::other)??;
        }
        Ok(())
    }
}

impl ModuleStore {
    pub fn open(dir: PathBuf, shared: Option<SharedBlobs>) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        durable_file::remove_leftovers(&dir)?;
        Ok(Self { dir, shared })
    }

    /// Whether blobs are shared with other nodes.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Makes a module written with [`Self::put`] available to every node: written to the
    /// shared store (always rewritten, which refreshes its age for garbage collection).
    pub async fn publish(&self, digest: &Digest, bytes: Bytes) -> io::Result<()> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        shared.store.put(&module_key(digest), bytes).await
    }

    /// A module's bytes: from this node's copy, or else from the shared store (checked
    /// against its digest and then kept locally).
    pub async fn fetch(&self, digest: &Digest) -> io::Result<Bytes> {
        let path = self.path(digest);
        match tokio::fs::read(&path).await {
            Ok(bytes) => return Ok(bytes.into()),
            Err(e) if e.kind() != io::ErrorKind::NotFound || self.shared.is_none() => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("reading module {}: {e}", path.display()),
                ));
            }
            Err(_) => {}
        }
        let shared = self.shared.as_ref().expect("checked above");
        let bytes = shared
            .store
            .store
            .get(&module_key(digest))
            .await
            .map_err(shared_error)?
            .bytes()
            .await
            .map_err(shared_error)?;
        if Digest::of(&bytes) != *digest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the shared store's copy of module {digest} does not match its digest"),
            ));
        }
        let local = bytes.clone();
        let this = self.path(digest);
        tokio::task::spawn_blocking(move || durable_file::write(&this, &local, 0o644))
            .await
            .expect("module write task panicked")?;
        Ok(bytes)
    }

    /// Shares compiled code (`name` is its cache file name, which carries the engine's
    /// compatibility hash), authenticated with the artifact key.
    pub async fn share_compiled(&self, name: &str, code: &[u8]) -> io::Result<()> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let mut signed = Vec::with_capacity(code.len() + MAC_LEN);
        signed.extend_from_slice(code);
        signed.extend_from_slice(
            &mac(&shared.artifact_key, name, code)
                .finalize()
                .into_bytes(),
        );
        shared
            .store
            .put(&compiled_key(name), Bytes::from(signed))
            .await
    }

    /// Compiled code another node shared under `name`, written to `dest` if found and
    /// authentic. Returns whether it was.
    pub async fn fetch_compiled(&self, name: &str, dest: &Path) -> bool {
        let Some(shared) = &self.shared else {
            return false;
        };
        let signed = match shared.store.store.get(&compiled_key(name)).await {
            Ok(found) => match found.bytes().await {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::warn!(name, error = %e, "could not read shared compiled code");
                    return false;
                }
            },
            Err(object_store::Error::NotFound { .. }) => return false,
            Err(e) => {
                tracing::warn!(name, error = %e, "could not read shared compiled code");
                return false;
            }
        };
        let Some(split) = signed.len().checked_sub(MAC_LEN) else {
            return false;
        };
        let (code, tag) = signed.split_at(split);
        if mac(&shared.artifact_key, name, code)
            .verify_slice(tag)
            .is_err()
        {
            tracing::error!(
                name,
                "shared compiled code failed its authenticity check; ignoring it and compiling"
            );
            return false;
        }
        let (code, dest) = (Bytes::copy_from_slice(code), dest.to_path_buf());
        match tokio::task::spawn_blocking(move || durable_file::write(&dest, &code, 0o644)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(name, error = %e, "could not keep shared compiled code");
                false
            }
            Err(_) => false,
        }
    }

    /// Deletes shared modules and compiled code of modules outside `known` that are older
    /// than [`SHARED_ORPHAN_AGE`]. Returns how many objects went.
    pub async fn collect_shared_garbage(&self, known: &HashSet<Digest>) -> io::Result<usize> {
        let Some(shared) = &self.shared else {
            return Ok(0);
        };
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(SHARED_ORPHAN_AGE).expect("an hour fits");
        let mut removed = 0;
        for prefix in [MODULES_PREFIX, COMPILED_PREFIX] {
            let listed: Vec<_> = shared
                .store
                .store
                .list(Some(&StorePath::from(prefix)))
                .try_collect()
                .await
                .map_err(shared_error)?;
            for meta in listed {
                let name = meta.location.filename().unwrap_or_default();
                let digest = name.get(..64).and_then(Digest::from_hex);
                if digest.is_some_and(|d| !known.contains(&d)) && meta.last_modified < cutoff {
                    shared
                        .store
                        .store
                        .delete(&meta.location)
                        .await
                        .map_err(shared_error)?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.wasm", digest.to_hex()))
    }

    /// Stores `bytes` under their digest. Writing the same module twice is a no-op, since
    /// content addressing makes an existing file the right file.
    pub fn put(&self, digest: &Digest, bytes: &[u8]) -> io::Result<()> {
        let path = self.path(digest);
        if path.exists() {
            return Ok(());
        }
        durable_file::write(&path, bytes, 0o644)
    }

    /// Whether the module directory's filesystem has room again after it was full: writes
    /// (and fsyncs) [`SPACE_PROBE_BYTES`] and removes them.
    pub fn probe_space(&self) -> io::Result<()> {
        let probe = self.dir.join(SPACE_PROBE);
        let written = durable_file::write(&probe, &[0u8; SPACE_PROBE_BYTES], 0o600);
        let _ = fs::remove_file(&probe);
        written
    }

    pub fn remove(&self, digest: &Digest) -> io::Result<()> {
        match fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every digest with a blob on disk (for garbage collection at start-up).
    pub fn list(&self) -> io::Result<Vec<Digest>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(d) = name.strip_suffix(".wasm").and_then(Digest::from_hex) {
                out.push(d);
            }
        }
        Ok(out)
    }
}

fn module_key(digest: &Digest) -> StorePath {
    StorePath::from(format!("{MODULES_PREFIX}/{}.wasm", digest.to_hex()))
}

fn compiled_key(name: &str) -> StorePath {
    StorePath::from(format!("{COMPILED_PREFIX}/{name}"))
}

/// HMAC-SHA256 over the artifact's name and bytes (the name too, so code cannot be passed
/// off under another module's name), ready to finalize or to verify in constant time.
fn mac(key: &[u8], name: &str, code: &[u8]) -> Hmac<sha2::Sha256> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(name.as_bytes());
    mac.update(&[0]);
    mac.update(code);
    mac
}

fn shared_error(e: object_store::Error) -> io::Error {
    io::Error::other(format!("shared object store: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_through_hex() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex("zz"), None);
    }

    #[test]
    fn put_is_idempotent_and_listable() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path().join("modules"), None).unwrap();
        let d = Digest::of(b"module");
        store.put(&d, b"module").unwrap();
        store.put(&d, b"module").unwrap();
        assert_eq!(fs::read(store.path(&d)).unwrap(), b"module");
        assert_eq!(store.list().unwrap(), vec![d]);
        store.remove(&d).unwrap();
        store.remove(&d).unwrap();
        assert!(store.list().unwrap().is_empty());
    }
}

#[cfg(test)]
mod shared_tests {
    use super::*;

    fn node(root: &Path, shared: &Path, key: &[u8]) -> ModuleStore {
        let store = object_store::local::LocalFileSystem::new_with_prefix(shared).unwrap();
        ModuleStore::open(
            root.join("modules"),
            Some(SharedBlobs {
                store: SharedStore {
                    store: Arc::new(store),
                    local_root: Some(shared.to_path_buf()),
                },
                artifact_key: key.to_vec(),
            }),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn another_node_fetches_modules_and_only_authentic_compiled_code() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        fs::create_dir_all(&shared).unwrap();
        let a = node(&dir.path().join("a"), &shared, b"fleet key");
        let b = node(&dir.path().join("b"), &shared, b"fleet key");
        let wasm = Bytes::from_static(b"\0asm module bytes");
        let digest = Digest::of(&wasm);
        a.put(&digest, &wasm).unwrap();
        a.publish(&digest, wasm.clone()).await.unwrap();
        assert_eq!(b.fetch(&digest).await.unwrap(), wasm);
        assert!(
            b.path(&digest).exists(),
            "kept locally after the first fetch"
        );

        a.share_compiled("x-engine.cwasm", b"native code")
            .await
            .unwrap();
        let dest = dir.path().join("b-x.cwasm");
        assert!(b.fetch_compiled("x-engine.cwasm", &dest).await);
        assert_eq!(fs::read(&dest).unwrap(), b"native code");
        assert!(!b.fetch_compiled("missing.cwasm", &dest).await);
        // Code signed with another key (or tampered with in the store) is refused.
        let stranger = node(&dir.path().join("c"), &shared, b"another key");
        stranger
            .share_compiled("y-engine.cwasm", b"evil")
            .await
            .unwrap();
        assert!(
            !b.fetch_compiled("y-engine.cwasm", &dir.path().join("y"))
                .await
        );
        // A module whose shared bytes do not hash to the digest is refused.
        let other = Digest::of(b"other");
        fs::write(
            shared.join(format!("_fnhost/modules/{}.wasm", other.to_hex())),
            b"forged",
        )
        .unwrap();
        let error = b.fetch(&other).await.unwrap_err();
        assert!(error.to_string().contains("does not match"), "{error}");
    }

    #[tokio::test]
    async fn shared_garbage_goes_only_when_unknown_and_old() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        fs::create_dir_all(&shared).unwrap();
        let a = node(&dir.path().join("a"), &shared, b"k");
        let (kept, fresh) = (Digest::of(b"kept"), Digest::of(b"fresh"));
        a.publish(&kept, Bytes::from_static(b"kept")).await.unwrap();
        a.publish(&fresh, Bytes::from_static(b"fresh"))
            .await
            .unwrap();
        // Fresh orphans stay (another node may be about to commit them).
        assert_eq!(
            a.collect_shared_garbage(&HashSet::from([kept]))
                .await
                .unwrap(),
            0
        );
        // An old one goes.
        let old = shared.join(format!("_fnhost/modules/{}.wasm", fresh.to_hex()));
        let file = fs::File::options().write(true).open(&old).unwrap();
        file.set_modified(std::time::SystemTime::now() - 2 * SHARED_ORPHAN_AGE)
            .unwrap();
        assert_eq!(
            a.collect_shared_garbage(&HashSet::from([kept]))
                .await
                .unwrap(),
            1
        );
        assert!(!old.exists());
        assert!(a.fetch(&kept).await.is_ok());
    }
}
