//! Buckets of objects, reached through the `object_store` crate: a directory in the data
//! directory by default, any S3-compatible service when configured. Buckets are top-level
//! prefixes of the store, so one S3 bucket (or one directory) holds all of fnhost's.
//!
//! Keys are checked before anything touches the store: no absolute paths, no `.` or `..`
//! segments, no empty segments or control characters, so no key escapes its bucket.

use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, WriteMultipart};

use crate::dependencies::{Dependencies, Part};
use crate::model::check_bucket;
use crate::store::SharedStore;

/// Longest accepted key, in bytes (S3's limit).
const MAX_KEY_BYTES: usize = 1024;
/// Longest `/`-separated segment of a key: a file name on a local store.
const MAX_SEGMENT_BYTES: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("{0}")]
    Invalid(String),
    #[error("no object {key:?} in bucket {bucket:?}")]
    NotFound { bucket: String, key: String },
    #[error("the object is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("reading the upload failed: {0}")]
    Upload(String),
    #[error("object store: {0}")]
    Store(object_store::Error),
    /// The local store's filesystem is full; nothing was kept of the object.
    #[error("the disk is full ({0}); nothing was written; free space on it and retry")]
    DiskFull(String),
    /// The store could not be reached or answered as broken; nothing was kept of a write.
    #[error(
        "the object store is unreachable ({0}); nothing was stored; functions already deployed \
         keep serving; retry once it is back"
    )]
    Unavailable(String),
    #[error(transparent)]
    Quota(#[from] crate::model::QuotaExceeded),
}

/// A full disk under a local store and an unreachable store are told apart from other
/// store failures: the fix is the operator's, and the client should hear it.
impl From<object_store::Error> for ObjectError {
    fn from(e: object_store::Error) -> Self {
        if crate::store::object_store_unreachable(&e) {
            return ObjectError::Unavailable(e.to_string());
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<std::io::Error>()
                && crate::store::is_disk_full(io)
            {
                return ObjectError::DiskFull(io.to_string());
            }
            source = cause.source();
        }
        ObjectError::Store(e)
    }
}

/// What a namespace's `bucket_bytes` quota leaves for one object: its other objects use
/// `used` of `limit`.
#[derive(Clone, Debug)]
pub struct Room {
    pub namespace: String,
    pub limit: u64,
    pub used: u64,
}

impl Room {
    /// Refuses an object of `size` that would pass the quota.
    pub fn check(room: Option<&Room>, size: u64) -> Result<(), ObjectError> {
        match room {
            Some(room) => Ok(crate::model::Quotas::check(
                Some(room.limit),
                "bucket_bytes",
                &room.namespace,
                room.used + size,
            )?),
            None => Ok(()),
        }
    }
}

/// One listed object.
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified_ms: i64,
}

pub struct Buckets {
    store: Arc<dyn ObjectStore>,
    /// The directory of a local store: objects there are fsynced before an upload is
    /// acknowledged, and a key cannot be both an object and a folder.
    local_root: Option<std::path::PathBuf>,
    /// What backs the store, for logs and status.
    pub description: String,
    /// Largest object accepted by `put`.
    pub max_object_bytes: u64,
    /// Where an unreachable store, or a full disk under a local one, is reported.
    dependencies: Option<Arc<Dependencies>>,
}

impl Buckets {
    /// `spec`: `None` for `<data_dir>/objects`, `file:///DIR`, or `s3://BUCKET[/PREFIX]` with
    /// the usual `AWS_*` variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ENDPOINT` for S3-compatible services).
    pub fn open(
        spec: Option<&str>,
        data_dir: &FsPath,
        max_object_bytes: u64,
    ) -> anyhow::Result<Self> {
        let (store, description, local_root) = match spec {
            None => local(&data_dir.join("objects"))?,
            Some(spec) => {
                let url = url::Url::parse(spec)
                    .map_err(|e| anyhow::anyhow!("--object-store {spec:?}: {e}"))?;
                match url.scheme() {
                    "file" => local(FsPath::new(url.path()))?,
                    "s3" => {
                        let bucket = url.host_str().ok_or_else(|| {
                            anyhow::anyhow!(
                                "--object-store {spec:?}: name the S3 bucket, s3://BUCKET"
                            )
                        })?;
                        let s3: Arc<dyn ObjectStore> = Arc::new(s3_client(bucket).build()?);
                        let prefix = url.path().trim_matches('/');
                        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                            s3
                        } else {
                            Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
                        };
                        (store, spec.to_string(), None)
                    }
                    other => anyhow::bail!(
                        "--object-store {spec:?}: unsupported scheme {other:?}; use file:///DIR or s3://BUCKET"
                    ),
                }
            }
        };
        Ok(Self {
            store,
            local_root,
            description,
            max_object_bytes,
            dependencies: None,
        })
    }

    /// Reports outages met by calls (the store unreachable, its disk full) to
    /// `dependencies`, and the store's answers as it being up.
    pub fn reporting_to(mut self, dependencies: Arc<Dependencies>) -> Self {
        self.dependencies = Some(dependencies);
        self
    }

    /// Passes `out` on, telling `dependencies` what it says of the store.
    fn noted<T>(&self, out: Result<T, ObjectError>) -> Result<T, ObjectError> {
        if let Some(dependencies) = &self.dependencies {
            match &out {
                Err(e @ ObjectError::DiskFull(_)) => {
                    dependencies.failed(Part::Disk, e);
                }
                Err(e @ ObjectError::Unavailable(_)) => {
                    dependencies.failed(Part::ObjectStore, e);
                }
                // Anything else is an answer from the store.
                _ => dependencies.ok(Part::ObjectStore),
            }
        }
        out
    }

    /// Whether the store answers (a missing object is an answer): the outage probe.
    pub async fn probe(&self) -> Result<(), ObjectError> {
        let answer = match self.store.head(&Path::from(PROBE_KEY)).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        };
        self.noted(answer)
    }

    /// The object store behind the buckets (for fnhost's own objects under `_fnhost/`).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The store as the module store shares it with a fleet (with its directory when local,
    /// so what is written there can be made durable).
    pub fn shared(&self) -> SharedStore {
        SharedStore {
            store: self.store.clone(),
            local_root: self.local_root.clone(),
        }
    }

    /// Streams `body` into `bucket`/`key`, refusing it past the size limit or the `room` its
    /// namespace's quota leaves. Returns its size.
    pub async fn put<S, E>(
        &self,
        bucket: &str,
        key: &str,
        body: S,
        room: Option<&Room>,
    ) -> Result<u64, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let path = location(bucket, key)?;
        self.check_place(bucket, key).await?;
        let written = self.write(&path, body, self.max_object_bytes, room).await;
        self.noted(written)
    }

    /// Streams `body` to `path`, refusing it past `limit` bytes or the `room` left, and makes
    /// it durable. Returns its size.
    async fn write<S, E>(
        &self,
        path: &Path,
        body: S,
        limit: u64,
        room: Option<&Room>,
    ) -> Result<u64, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let upload = self.store.put_multipart(path).await?;
        let mut writer = WriteMultipart::new(upload);
        let mut size = 0u64;
        let mut body = body;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(ObjectError::Upload(e.to_string()));
                }
            };
            size += chunk.len() as u64;
            if size > limit {
                let _ = writer.abort().await;
                return Err(ObjectError::TooLarge(limit));
            }
            if let Err(e) = Room::check(room, size) {
                let _ = writer.abort().await;
                return Err(e);
            }
            if let Err(e) = writer.wait_for_capacity(4).await {
                // Best effort (the store may be the thing that failed): an unfinished
                // upload is never visible as an object, on S3 nor on a local store.
                let _ = writer.abort().await;
                return Err(e.into());
            }
            writer.put(chunk);
        }
        writer.finish().await?;
        self.sync(path).await?;
        Ok(size)
    }

    /// Stores the body of asynchronous invocation `id` (fnhost's own object, beside the
    /// buckets), at most `limit` bytes. Returns where it lies and its size.
    pub async fn put_payload<S, E>(
        &self,
        id: &str,
        body: S,
        limit: u64,
    ) -> Result<(String, u64), ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let path = payload_path(id)?;
        let written = self.write(&path, body, limit, None).await;
        let size = self.noted(written)?;
        Ok((path.to_string(), size))
    }

    /// A stored invocation body's size and a stream of its bytes (never all in memory),
    /// refused if it is larger than `limit`.
    pub async fn get_payload(
        &self,
        location: &str,
        limit: u64,
    ) -> Result<
        (
            u64,
            impl Stream<Item = Result<Bytes, object_store::Error>> + Send + use<>,
        ),
        ObjectError,
    > {
        let path = payload_location(location)?;
        let found = self.noted(self.store.get(&path).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                ObjectError::Invalid(format!("the stored request body {location} is missing"))
            }
            other => other.into(),
        }))?;
        if found.meta.size > limit {
            return Err(ObjectError::TooLarge(limit));
        }
        Ok((found.meta.size, found.into_stream()))
    }

    /// Stored invocation bodies last written before `before_ms`: (location, invocation id).
    pub async fn payloads_before(
        &self,
        before_ms: i64,
    ) -> Result<Vec<(String, String)>, ObjectError> {
        let root = Path::from(PAYLOADS);
        let found: Vec<(String, String)> = self
            .store
            .list(Some(&root))
            .try_filter_map(|meta| {
                let location = meta.location.to_string();
                let old = meta.last_modified.timestamp_millis() < before_ms;
                let id = location
                    .strip_prefix(PAYLOADS)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .map(str::to_string);
                async move { Ok(id.filter(|_| old).map(|id| (location, id))) }
            })
            .try_collect()
            .await?;
        Ok(found)
    }

    /// Deletes a stored invocation body (gone already is fine).
    pub async fn delete_payload(&self, location: &str) -> Result<(), ObjectError> {
        match self.store.delete(&payload_location(location)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a whole object (a trigger's output), within the `room` its namespace's quota
    /// leaves.
    pub async fn put_bytes(
        &self,
        bucket: &str,
        key: &str,
        bytes: Bytes,
        room: Option<&Room>,
    ) -> Result<(), ObjectError> {
        Room::check(room, bytes.len() as u64)?;
        let path = location(bucket, key)?;
        self.check_place(bucket, key).await?;
        let written = match self.store.put(&path, bytes.into()).await {
            Ok(_) => self.sync(&path).await,
            Err(e) => Err(e.into()),
        };
        self.noted(written)
    }

    /// On a local store, a key cannot lie below another object (`a/b` below `a`) nor be a
    /// folder of others (`a` above `a/b`): a file cannot also be a directory. S3 keys are
    /// flat, so there both are fine.
    async fn check_place(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        if self.local_root.is_none() {
            return Ok(());
        }
        let mut ancestor = String::new();
        for segment in key.split('/').take(key.split('/').count() - 1) {
            if !ancestor.is_empty() {
                ancestor.push('/');
            }
            ancestor.push_str(segment);
            if self.store.head(&location(bucket, &ancestor)?).await.is_ok() {
                return Err(ObjectError::Invalid(format!(
                    "object key {key:?} lies below the object {ancestor:?}; on a local store a \
                     key cannot be both an object and a folder"
                )));
            }
        }
        let below = self
            .store
            .list(Some(&location(bucket, key)?))
            .next()
            .await
            .transpose()
            .ok()
            .flatten();
        if let Some(object) = below {
            return Err(ObjectError::Invalid(format!(
                "object key {key:?} is the folder of {:?}; on a local store a key cannot be \
                 both an object and a folder",
                object.location.as_ref()
            )));
        }
        Ok(())
    }

    /// Makes a just-written local object durable (file and directory) before the upload is
    /// acknowledged.
    async fn sync(&self, path: &Path) -> Result<(), ObjectError> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let file = root.join(path.as_ref());
        tokio::task::spawn_blocking(move || crate::durable_file::sync_file_and_dir(&file))
            .await
            .expect("fsync task panicked")
            .map_err(|e| {
                object_store::Error::Generic {
                    store: "local",
                    source: Box::new(e),
                }
                .into()
            })
    }

    /// The object's size and a stream of its bytes.
    pub async fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<
        (
            u64,
            impl Stream<Item = Result<Bytes, object_store::Error>> + use<>,
        ),
        ObjectError,
    > {
        let found = self.noted(self.fetch(bucket, key).await)?;
        Ok((found.meta.size, found.into_stream()))
    }

    /// The whole object, refused if it is larger than `limit`.
    pub async fn get_bytes(
        &self,
        bucket: &str,
        key: &str,
        limit: u64,
    ) -> Result<Bytes, ObjectError> {
        let found = self.noted(self.fetch(bucket, key).await)?;
        if found.meta.size > limit {
            return Err(ObjectError::TooLarge(limit));
        }
        self.noted(found.bytes().await.map_err(ObjectError::from))
    }

    async fn fetch(&self, bucket: &str, key: &str) -> Result<object_store::GetResult, ObjectError> {
        let path = location(bucket, key)?;
        self.store
            .get(&path)
            .await
            .map_err(|e| not_found(e, bucket, key))
    }

    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        let path = location(bucket, key)?;
        self.noted(
            self.store
                .head(&path)
                .await
                .map_err(|e| not_found(e, bucket, key)),
        )?;
        self.noted(self.store.delete(&path).await.map_err(ObjectError::from))
    }

    /// Bytes stored in every bucket of `namespace`. A listing: exact, and as slow as the
    /// namespace has objects.
    pub async fn namespace_bytes(&self, namespace: &str) -> Result<u64, ObjectError> {
        Ok(self.namespace_usage(namespace).await?.1)
    }

    /// (objects, bytes) in every bucket of `namespace`.
    pub async fn namespace_usage(&self, namespace: &str) -> Result<(u64, u64), ObjectError> {
        let top = self.store.list_with_delimiter(None).await?;
        let mut total = (0, 0);
        for prefix in top.common_prefixes {
            let name = prefix.as_ref();
            if check_bucket(name).is_err() || crate::model::namespace_of(name) != namespace {
                continue;
            }
            let (objects, bytes) = self
                .store
                .list(Some(&prefix))
                .try_fold((0, 0), |(n, sum), meta| async move {
                    Ok((n + 1, sum + meta.size))
                })
                .await?;
            total = (total.0 + objects, total.1 + bytes);
        }
        Ok(total)
    }

    /// The size of `bucket`/`key`, 0 if there is none (what a new object there replaces).
    pub async fn size_of(&self, bucket: &str, key: &str) -> Result<u64, ObjectError> {
        match self.store.head(&location(bucket, key)?).await {
            Ok(meta) => Ok(meta.size),
            Err(object_store::Error::NotFound { .. }) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Objects of `bucket` whose keys start with `prefix`, sorted by key, at most `limit`.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>, ObjectError> {
        check_bucket(bucket).map_err(|e| ObjectError::Invalid(e.0))?;
        let root = Path::from(bucket);
        let objects: Result<Vec<ObjectInfo>, _> = self
            .store
            .list(Some(&root))
            .try_filter_map(|meta| {
                let key = meta
                    .location
                    .as_ref()
                    .strip_prefix(&format!("{bucket}/"))
                    .map(str::to_string);
                let info = key.filter(|k| k.starts_with(prefix)).map(|key| ObjectInfo {
                    key,
                    size: meta.size,
                    last_modified_ms: meta.last_modified.timestamp_millis(),
                });
                async move { Ok(info) }
            })
            .try_collect()
            .await
            .map_err(ObjectError::from);
        let mut objects = self.noted(objects)?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        objects.truncate(limit);
        Ok(objects)
    }
}

type Opened = (Arc<dyn ObjectStore>, String, Option<std::path::PathBuf>);

/// How long an S3 call may take before it counts as failed, unless `AWS_CONNECT_TIMEOUT` /
/// `AWS_TIMEOUT` say otherwise. A write that waits on a hung store fails within seconds, as
/// an admin write must; a large object is sent in parts of a few MiB, each its own request.
const S3_CONNECT_TIMEOUT: &str = "2s";
const S3_REQUEST_TIMEOUT: &str = "8s";
/// Retries of a failed S3 call (connection errors, 5xx; PUTs are not retried on timeout):
/// a brief blip is absorbed, an outage is reported within seconds rather than the client
/// library's default three minutes.
const S3_RETRY: object_store::RetryConfig = object_store::RetryConfig {
    backoff: object_store::BackoffConfig {
        init_backoff: std::time::Duration::from_millis(100),
        max_backoff: std::time::Duration::from_secs(1),
        base: 2.0,
    },
    max_retries: 3,
    retry_timeout: std::time::Duration::from_secs(4),
};

/// An S3 client for `bucket` from the `AWS_*` variables, with fnhost's timeouts and retries.
fn s3_client(bucket: &str) -> object_store::aws::AmazonS3Builder {
    use object_store::ClientConfigKey;
    use object_store::aws::AmazonS3ConfigKey;
    let mut builder = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(S3_RETRY);
    for (variable, key, default) in [
        (
            "AWS_CONNECT_TIMEOUT",
            ClientConfigKey::ConnectTimeout,
            S3_CONNECT_TIMEOUT,
        ),
        ("AWS_TIMEOUT", ClientConfigKey::Timeout, S3_REQUEST_TIMEOUT),
    ] {
        if std::env::var_os(variable).is_none() {
            builder = builder.with_config(AmazonS3ConfigKey::Client(key), default);
        }
    }
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT") {
        builder = builder.with_allow_http(endpoint.starts_with("http://"));
    }
    builder
}

fn local(dir: &FsPath) -> anyhow::Result<Opened> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("creating the object directory {}: {e}", dir.display()))?;
    let removed = remove_staging(dir);
    if removed > 0 {
        tracing::info!(
            files = removed,
            "removed partial objects left by an interrupted upload"
        );
    }
    let store =
        object_store::local::LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true);
    Ok((
        Arc::new(store),
        format!("directory {}", dir.display()),
        Some(dir.to_path_buf()),
    ))
}

/// Removes the staging files (`KEY#N`) a crash left in a local store. Keys never contain
/// `#` (`check_key` refuses it), so such a file is never an object.
fn remove_staging(dir: &FsPath) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            removed += remove_staging(&path);
        } else if entry.file_name().to_string_lossy().contains('#')
            && std::fs::remove_file(&path).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

fn not_found(error: object_store::Error, bucket: &str, key: &str) -> ObjectError {
    match error {
        object_store::Error::NotFound { .. } => ObjectError::NotFound {
            bucket: bucket.to_string(),
            key: key.to_string(),
        },
        other => other.into(),
    }
}

/// Where asynchronous invocations' bodies lie: beside the buckets (`_` is no bucket's first
/// character), like fnhost's other objects under `_fnhost/`.
const PAYLOADS: &str = "_fnhost/invocations";
/// The key the outage probe asks for; it never exists.
const PROBE_KEY: &str = "_fnhost/probe";

fn payload_path(id: &str) -> Result<Path, ObjectError> {
    check_key(id)?;
    if id.contains('/') {
        return Err(ObjectError::Invalid(format!(
            "invocation id {id:?} has a '/'"
        )));
    }
    Ok(Path::from(format!("{PAYLOADS}/{id}")))
}

/// A payload location as stored, checked to lie among the payloads.
fn payload_location(location: &str) -> Result<Path, ObjectError> {
    match location
        .strip_prefix(PAYLOADS)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        Some(id) => payload_path(id),
        None => Err(ObjectError::Invalid(format!(
            "{location:?} is not a stored request body"
        ))),
    }
}

/// The store path of `bucket`/`key`, after checking both.
fn location(bucket: &str, key: &str) -> Result<Path, ObjectError> {
    check_bucket(bucket).map_err(|e| ObjectError::Invalid(e.0))?;
    check_key(key)?;
    Path::parse(format!("{bucket}/{key}"))
        .map_err(|e| ObjectError::Invalid(format!("object key {key:?}: {e}")))
}

/// A key is 1 to 1024 bytes of `/`-separated segments of at most 255 bytes, none empty, `.`
/// or `..`, with no control characters, backslashes or `#` (a local store's staging mark).
pub fn check_key(key: &str) -> Result<(), ObjectError> {
    let problem = if key.is_empty() || key.len() > MAX_KEY_BYTES {
        Some(format!("must be 1 to {MAX_KEY_BYTES} bytes"))
    } else if key.chars().any(|c| c.is_control() || c == '\\' || c == '#') {
        Some("must not contain control characters, backslashes or '#'".to_string())
    } else if key
        .split('/')
        .any(|segment| segment.len() > MAX_SEGMENT_BYTES)
    {
        Some(format!(
            "must not have a segment longer than {MAX_SEGMENT_BYTES} bytes"
        ))
    } else if key
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        Some("must not start or end with '/', or contain empty, '.' or '..' segments".to_string())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ObjectError::Invalid(format!(
            "object key {key:?} {problem}"
        ))),
        None => Ok(()),
    }
}

/// A content type from the key's extension, for objects served back.
pub fn guess_content_type(key: &str) -> &'static str {
    let extension = key.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        Some("pdf") => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_their_bucket() {
        for ok in ["a.jpg", "img/2026/a b.jpg", "x..y", ".hidden"] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "a/../../b",
            "./a",
            "a//b",
            "a/",
            "a\\b",
            "a\nb",
            "x#1",
            &"k".repeat(1025),
            &format!("a/{}", "s".repeat(256)),
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }

    /// On a local store every accepted key stores: a key below an object, or above one, is
    /// refused with the rule; staging files a crash left are removed at open.
    #[tokio::test]
    async fn local_keys_are_either_objects_or_folders() {
        let dir = tempfile::tempdir().unwrap();
        let buckets = Buckets::open(None, dir.path(), 1 << 20).unwrap();
        buckets
            .put_bytes("bkt", "a", Bytes::from_static(b"1"), None)
            .await
            .unwrap();
        let below = buckets
            .put_bytes("bkt", "a/x", Bytes::from_static(b"2"), None)
            .await;
        assert!(
            matches!(&below, Err(ObjectError::Invalid(m)) if m.contains("lies below the object \"a\"")),
            "{below:?}"
        );
        buckets
            .put_bytes("bkt", "f/x", Bytes::from_static(b"3"), None)
            .await
            .unwrap();
        let above = buckets
            .put_bytes("bkt", "f", Bytes::from_static(b"4"), None)
            .await;
        assert!(
            matches!(&above, Err(ObjectError::Invalid(m)) if m.contains("is the folder of")),
            "{above:?}"
        );
        drop(buckets);
        let staging = dir.path().join("objects/bkt/f/x#3");
        std::fs::write(&staging, b"partial").unwrap();
        let _buckets = Buckets::open(None, dir.path(), 1 << 20).unwrap();
        assert!(!staging.exists(), "staging leftovers are removed at open");
        assert!(dir.path().join("objects/bkt/f/x").exists());
    }

    #[tokio::test]
    async fn put_get_list_delete_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let buckets = Buckets::open(None, dir.path(), 10).unwrap();
        let chunks = futures::stream::iter(vec![
            Ok::<_, std::io::Error>(Bytes::from_static(b"hello")),
            Ok(Bytes::from_static(b" you")),
        ]);
        assert_eq!(
            buckets
                .put("uploads", "img/a.txt", chunks, None)
                .await
                .unwrap(),
            9
        );
        assert_eq!(
            buckets
                .get_bytes("uploads", "img/a.txt", 100)
                .await
                .unwrap(),
            "hello you"
        );
        let too_big =
            futures::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 11]))]);
        assert!(matches!(
            buckets.put("uploads", "big", too_big, None).await,
            Err(ObjectError::TooLarge(10))
        ));
        let listed = buckets.list("uploads", "img/", 100).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].key.as_str(), listed[0].size), ("img/a.txt", 9));
        assert!(
            buckets
                .list("uploads", "doc/", 100)
                .await
                .unwrap()
                .is_empty()
        );
        buckets.delete("uploads", "img/a.txt").await.unwrap();
        assert!(matches!(
            buckets.get_bytes("uploads", "img/a.txt", 100).await,
            Err(ObjectError::NotFound { .. })
        ));
        assert!(matches!(
            buckets.delete("uploads", "img/a.txt").await,
            Err(ObjectError::NotFound { .. })
        ));
    }
}
