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
use serde::Serialize;

use crate::model::check_bucket;

/// Longest accepted key, in bytes (S3's limit).
const MAX_KEY_BYTES: usize = 1024;

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
    Store(#[from] object_store::Error),
}

/// One listed object.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified_ms: i64,
}

pub struct Buckets {
    store: Arc<dyn ObjectStore>,
    /// What backs the store, for logs and status.
    pub description: String,
    /// Largest object accepted by `put`.
    pub max_object_bytes: u64,
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
        let (store, description): (Arc<dyn ObjectStore>, String) = match spec {
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
                        let mut builder =
                            object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                        if let Ok(endpoint) = std::env::var("AWS_ENDPOINT") {
                            builder = builder.with_allow_http(endpoint.starts_with("http://"));
                        }
                        let s3: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
                        let prefix = url.path().trim_matches('/');
                        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                            s3
                        } else {
                            Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
                        };
                        (store, spec.to_string())
                    }
                    other => anyhow::bail!(
                        "--object-store {spec:?}: unsupported scheme {other:?}; use file:///DIR or s3://BUCKET"
                    ),
                }
            }
        };
        Ok(Self {
            store,
            description,
            max_object_bytes,
        })
    }

    /// Streams `body` into `bucket`/`key`, refusing it past the size limit. Returns its size.
    pub async fn put<S, E>(&self, bucket: &str, key: &str, body: S) -> Result<u64, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let path = location(bucket, key)?;
        let upload = self.store.put_multipart(&path).await?;
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
            if size > self.max_object_bytes {
                let _ = writer.abort().await;
                return Err(ObjectError::TooLarge(self.max_object_bytes));
            }
            writer.wait_for_capacity(4).await?;
            writer.put(chunk);
        }
        writer.finish().await?;
        Ok(size)
    }

    /// Writes a whole object (a trigger's output).
    pub async fn put_bytes(
        &self,
        bucket: &str,
        key: &str,
        bytes: Bytes,
    ) -> Result<(), ObjectError> {
        let path = location(bucket, key)?;
        self.store.put(&path, bytes.into()).await?;
        Ok(())
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
        let found = self.fetch(bucket, key).await?;
        Ok((found.meta.size, found.into_stream()))
    }

    /// The whole object, refused if it is larger than `limit`.
    pub async fn get_bytes(
        &self,
        bucket: &str,
        key: &str,
        limit: u64,
    ) -> Result<Bytes, ObjectError> {
        let found = self.fetch(bucket, key).await?;
        if found.meta.size > limit {
            return Err(ObjectError::TooLarge(limit));
        }
        Ok(found.bytes().await?)
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
        self.store
            .head(&path)
            .await
            .map_err(|e| not_found(e, bucket, key))?;
        self.store.delete(&path).await?;
        Ok(())
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
        let mut objects: Vec<ObjectInfo> = self
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
            .await?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        objects.truncate(limit);
        Ok(objects)
    }
}

fn local(dir: &FsPath) -> anyhow::Result<(Arc<dyn ObjectStore>, String)> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("creating the object directory {}: {e}", dir.display()))?;
    let store =
        object_store::local::LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true);
    Ok((Arc::new(store), format!("directory {}", dir.display())))
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

/// The store path of `bucket`/`key`, after checking both.
fn location(bucket: &str, key: &str) -> Result<Path, ObjectError> {
    check_bucket(bucket).map_err(|e| ObjectError::Invalid(e.0))?;
    check_key(key)?;
    Path::parse(format!("{bucket}/{key}"))
        .map_err(|e| ObjectError::Invalid(format!("object key {key:?}: {e}")))
}

/// A key is 1 to 1024 bytes of `/`-separated segments, none empty, `.` or `..`, with no
/// control characters or backslashes.
pub fn check_key(key: &str) -> Result<(), ObjectError> {
    let problem = if key.is_empty() || key.len() > MAX_KEY_BYTES {
        Some(format!("must be 1 to {MAX_KEY_BYTES} bytes"))
    } else if key.chars().any(|c| c.is_control() || c == '\\') {
        Some("must not contain control characters or backslashes".to_string())
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
            &"k".repeat(1025),
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
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
            buckets.put("uploads", "img/a.txt", chunks).await.unwrap(),
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
            buckets.put("uploads", "big", too_big).await,
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
