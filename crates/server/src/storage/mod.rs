//! Blob storage: the `BlobStore` seam, streaming both ways. The embedded default keeps blobs in a
//! folder of the data dir (`fs.rs`); production uses S3 or any S3-compatible server (`s3.rs`);
//! `settings.rs` picks one. Keys are relative paths (`renders/cli_…/exe_….png`), checked here so
//! no backend can be led outside its root. One conformance suite runs against both
//! (`tests/it/storage.rs`).

pub mod bench;
pub mod delivery;
pub mod fs;
pub mod health;
pub mod mirror;
pub mod routes;
pub mod s3;
pub mod settings;
pub mod setup;
pub mod verify;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use sha2::{Digest as _, Sha256};

/// Storage's part of the platform: its settings, the signed-link route and its health component.
pub struct Feature;

impl crate::feature::Feature for Feature {
    fn name(&self) -> &'static str {
        "storage"
    }

    fn routes(&self) -> crate::feature::Routes {
        routes::routes()
    }

    fn health_checks(
        &self,
        b: &crate::feature::Backends,
    ) -> Vec<std::sync::Arc<dyn crate::health::HealthCheck>> {
        vec![std::sync::Arc::new(health::StorageCheck {
            blobs: b.blobs.clone(),
            warn_after: std::time::Duration::from_millis(500),
            last: tokio::sync::Mutex::new(None),
        })]
    }

    fn tasks(&self, state: &crate::state::AppState) -> Vec<crate::feature::Task> {
        use crate::feature::{Runs, Task, SHUTDOWN_GRACE};
        let Some(backup) = state.backup_blobs.clone() else {
            return Vec::new();
        };
        let worker = std::sync::Arc::new(
            crate::queue::worker::Worker::for_queue(
                state.queue.clone(),
                mirror::QUEUE,
                state.config.queue.lease,
            )
            .handle(
                mirror::KIND,
                std::sync::Arc::new(mirror::MirrorJob {
                    store: state.blobs.clone(),
                    backup,
                }),
            ),
        );
        vec![Task::new(
            "storage-mirror-worker",
            Runs::Workers,
            move |stop| worker.clone().run_until_stopped(stop, SHUTDOWN_GRACE),
        )]
    }
}

/// A body, chunk by chunk: what `put` reads and `get` gives back.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid key `{0}`")]
    InvalidKey(String),
    #[error("no blob at `{0}`")]
    NotFound(String),
    /// The range starts at or past the end of the blob.
    #[error("range not satisfiable: the blob is {size} bytes")]
    InvalidRange { size: u64 },
    #[error("storage failed: {0}")]
    Io(#[from] std::io::Error),
    /// The backend (S3) refused or could not be reached; the message is the service's own.
    #[error("storage backend: {0}")]
    Backend(String),
}

/// Bytes `start..=end` of a blob (`end` past the blob's end is cut at it; none: to the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: Option<u64>,
}

impl ByteRange {
    /// The range within a blob of `size` bytes, as `(first, last)` inclusive.
    pub fn within(&self, size: u64) -> Result<(u64, u64), StorageError> {
        if self.start >= size || self.end.is_some_and(|e| e < self.start) {
            return Err(StorageError::InvalidRange { size });
        }
        Ok((self.start, self.end.map_or(size - 1, |e| e.min(size - 1))))
    }
}

/// What is known of a stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub size: u64,
    pub content_type: Option<String>,
}

/// What a `put` wrote: its size and the sha256 of its bytes, computed while streaming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub size: u64,
    pub sha256: [u8; 32],
}

/// A blob being read: the whole blob's info, the range served and its bytes.
pub struct Reading {
    pub info: BlobInfo,
    /// The bytes served, `(first, last)` inclusive (the whole blob when no range was asked).
    pub range: Option<(u64, u64)>,
    pub body: ByteStream,
}

/// One listed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
}

#[async_trait]
pub trait BlobStore: Send + Sync {
    /// `fs` or `s3`.
    fn backend(&self) -> &'static str;

    /// Writes a blob from a stream in constant memory: readers see the old blob or the new one,
    /// never a part, and a failed write leaves nothing behind. At most `max_bytes` are accepted
    /// (more fails with [`std::io::ErrorKind::FileTooLarge`] and stores nothing).
    async fn put_stream(
        &self,
        key: &str,
        body: ByteStream,
        content_type: &str,
        max_bytes: u64,
    ) -> Result<Written, StorageError>;

    /// Reads a blob (or a range of it) as a stream.
    async fn get_stream(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Reading, StorageError>;

    async fn head(&self, key: &str) -> Result<BlobInfo, StorageError>;

    /// Copies a blob within the store (server-side on S3).
    async fn copy(&self, from: &str, to: &str) -> Result<(), StorageError>;

    /// Removes a blob; removing one that is not there succeeds.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// Blobs whose keys start with `prefix`, in key order, after `after`, at most `limit`.
    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Listed>, StorageError>;

    /// A URL that reads `key` directly from the backend until `ttl` passes, served with `served`'s
    /// headers (S3: a presigned GET); `None` when the backend has no such URLs (the folder: the
    /// server signs and serves its own, see `delivery.rs`).
    async fn presigned_get(
        &self,
        key: &str,
        served: &delivery::Served,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, StorageError> {
        let _ = (key, served, ttl);
        Ok(None)
    }

    /// Writes a blob held in memory (small blobs: rendered outputs).
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), StorageError> {
        let size = bytes.len() as u64;
        let body = futures_util::stream::once(async move { Ok(Bytes::from(bytes)) }).boxed();
        self.put_stream(key, body, content_type, size).await?;
        Ok(())
    }

    /// Reads a whole blob into memory, refusing one over `max_bytes` before reading it.
    async fn get_bounded(&self, key: &str, max_bytes: u64) -> Result<Vec<u8>, StorageError> {
        // One request: the size comes with the answer, checked before the body is read.
        let reading = self.get_stream(key, None).await?;
        let size = reading.info.size;
        if size > max_bytes {
            return Err(StorageError::Io(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!("`{key}` is {size} bytes, over {max_bytes}"),
            )));
        }
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        let mut body = reading.body;
        while let Some(chunk) = body.try_next().await? {
            if (out.len() + chunk.len()) as u64 > max_bytes {
                return Err(StorageError::Io(std::io::Error::new(
                    std::io::ErrorKind::FileTooLarge,
                    format!("`{key}` grew over {max_bytes} bytes while being read"),
                )));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// A key is a relative path of safe segments.
pub fn check_key(key: &str) -> Result<(), StorageError> {
    let ok = !key.is_empty()
        && key.len() <= 1024
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidKey(key.chars().take(100).collect()))
    }
}

/// A prefix for `list`: empty, or safe segments (a trailing `/` allowed).
pub fn check_prefix(prefix: &str) -> Result<(), StorageError> {
    match prefix.strip_suffix('/').unwrap_or(prefix) {
        "" => Ok(()),
        p => check_key(p).map_err(|_| StorageError::InvalidKey(prefix.chars().take(100).collect())),
    }
}

/// Counts and hashes a body as it passes, failing once it exceeds `max_bytes`.
pub(crate) struct Tally {
    pub size: u64,
    hasher: Sha256,
    max_bytes: u64,
}

impl Tally {
    pub fn new(max_bytes: u64) -> Self {
        Self {
            size: 0,
            hasher: Sha256::new(),
            max_bytes,
        }
    }

    pub fn add(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.size += chunk.len() as u64;
        if self.size > self.max_bytes {
            return Err(too_large(self.max_bytes));
        }
        self.hasher.update(chunk);
        Ok(())
    }

    pub fn finish(self) -> Written {
        Written {
            size: self.size,
            sha256: self.hasher.finalize().into(),
        }
    }
}

pub(crate) fn too_large(max_bytes: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::FileTooLarge,
        format!("the body is over {max_bytes} bytes"),
    )
}
