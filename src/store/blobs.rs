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

use crate::dependencies::{Dependencies, Part};
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
    /// Told of the store's outages, and of its answers.
    pub dependencies: Option<Arc<Dependencies>>,
}

impl SharedBlobs {
    /// Passes `out` on, telling the dependencies whether the store answered.
    fn noted<T>(&self, out: io::Result<T>) -> io::Result<T> {
        if let Some(dependencies) = &self.dependencies {
            match out.as_ref().err().and_then(ObjectStoreDown::of) {
                Some(down) => {
                    dependencies.failed(Part::ObjectStore, down);
                }
                None => dependencies.ok(Part::ObjectStore),
            }
        }
        out
    }
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
        shared.noted(shared.store.put(&module_key(digest), bytes).await)
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
        let got = async {
            shared
                .store
                .store
                .get(&module_key(digest))
                .await?
                .bytes()
                .await
        };
        let bytes = shared.noted(got.await.map_err(shared_error))?;
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
        shared.noted(
            shared
                .store
                .put(&compiled_key(name), Bytes::from(signed))
                .await,
        )
    }

    /// Compiled code another node shared under `name`, written to `dest` if found and
    /// authentic. Returns whether it was.
    pub async fn fetch_compiled(&self, name: &str, dest: &Path) -> bool {
        let Some(shared) = &self.shared else {
            return false;
        };
        let got = async {
            shared
                .store
                .store
                .get(&compiled_key(name))
                .await?
                .bytes()
                .await
        };
        let signed = match got.await {
            Ok(bytes) => shared.noted(Ok(bytes)).expect("ok"),
            Err(object_store::Error::NotFound { .. }) => {
                let _ = shared.noted(Ok(()));
                return false;
            }
            // Compiling from the module is the fallback; an outage is logged once, by
            // the dependencies.
            Err(e) => {
                let e = shared_error(e);
                if ObjectStoreDown::of(&e).is_none() {
                    tracing::warn!(name, error = %e, "could not read shared compiled code");
                }
                let _ = shared.noted(Err::<(), _>(e));
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

/// An object store error as an I/O error; an unreachable store is carried as
/// [`ObjectStoreDown`], which the registry's errors tell apart.
fn shared_error(e: object_store::Error) -> io::Error {
    if is_unreachable(&e) {
        io::Error::other(ObjectStoreDown(e.to_string()))
    } else {
        io::Error::other(format!("shared object store: {e}"))
    }
}

/// The object store could not be reached, or answered as broken; nothing was stored.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ObjectStoreDown(pub String);

impl ObjectStoreDown {
    /// The outage `e` carries, if it is one.
    pub fn of(e: &io::Error) -> Option<&ObjectStoreDown> {
        e.get_ref()?.downcast_ref()
    }
}

/// Whether `e` means the object store itself is out (a connection refused, reset or timed
/// out; a 5xx answer after the client's retries) rather than a refusal of this request.
/// `object_store` keeps its status-bearing error private, so a 5xx is recognised by the
/// message it formats (pinned by the tests below, against a real server); a network failure
/// by the HTTP client's error kind.
pub fn is_unreachable(e: &object_store::Error) -> bool {
    use object_store::client::HttpErrorKind;
    let object_store::Error::Generic { source, .. } = e else {
        return false;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(error) = cause {
        if let Some(http) = error.downcast_ref::<object_store::client::HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        // The client's own error is what the chain shows (its wrapper is transparent).
        if let Some(http) = error.downcast_ref::<reqwest::Error>() {
            return http.is_connect() || http.is_timeout() || http.is_request() || http.is_body();
        }
        let text = error.to_string();
        if text.starts_with("Server returned non-2xx status code: 5")
            || text.starts_with("Server returned error response")
        {
            return true;
        }
        cause = error.source();
    }
    false
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
                dependencies: None,
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

#[cfg(test)]
mod outage_tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An S3 client for a server on `port`, without retries (the classification is what is
    /// tested, not the retry loop).
    fn s3(port: u16) -> Arc<dyn ObjectStore> {
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name("b")
            .with_region("us-east-1")
            .with_access_key_id("k")
            .with_secret_access_key("s")
            .with_endpoint(format!("http://127.0.0.1:{port}"))
            .with_allow_http(true)
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
            .build()
            .unwrap();
        Arc::new(store)
    }

    /// A server that answers every request with `status` and no body.
    async fn answering(status: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let _ = conn.read(&mut buf).await;
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                });
            }
        });
        port
    }

    async fn get_error(port: u16) -> object_store::Error {
        s3(port)
            .get(&StorePath::from("a/b"))
            .await
            .expect_err("the server refuses")
    }

    #[tokio::test]
    async fn a_refused_connection_and_5xx_answers_are_outages() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = get_error(closed).await;
        assert!(is_unreachable(&e), "{e}");
        for status in ["503 Service Unavailable", "500 Internal Server Error"] {
            let e = get_error(answering(status).await).await;
            assert!(is_unreachable(&e), "{status}: {e}");
            let io = shared_error(e);
            assert!(ObjectStoreDown::of(&io).is_some(), "{status}: {io}");
        }
    }

    #[tokio::test]
    async fn refusals_of_the_request_are_not_outages() {
        for status in ["404 Not Found", "403 Forbidden", "400 Bad Request"] {
            let e = get_error(answering(status).await).await;
            assert!(!is_unreachable(&e), "{status}: {e}");
            assert!(ObjectStoreDown::of(&shared_error(e)).is_none());
        }
    }
}
