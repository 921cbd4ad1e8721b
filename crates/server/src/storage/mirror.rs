//! The backup bucket (`AWS_S3_BACKUP_BUCKET`): every object written to the store is copied there
//! by a queued job, and `airwave-server storage verify-backup` compares the two.
//!
//! [`Mirrored`] wraps the store every feature writes through: after a write (or a server-side
//! copy) succeeds, it queues a `storage.mirror` job for the key on the `cleanup` queue; after a
//! removal, one that runs `AIRWAVE_BACKUP_BUCKET_KEEP_DELETED_HOURS` later (default a week), so
//! the copy outlives a mistaken deletion for that long and an erasure still reaches it. Keys under
//! `tmp/` (resumable-upload parts, probes) are not copied. The job reads the key as the store has
//! it *when the job runs*: a copy streams it (constant memory) into the backup bucket; a key no
//! longer there is not copied, and a removal job whose key was written again copies it instead.
//! So jobs may run in any order or twice, and the backup converges on the store. The job is queued
//! from a task of its own, so a writer never waits for the queue; a process that dies between the
//! write and the queueing leaves the key uncopied, which `verify-backup` reports as missing.

use super::{BlobInfo, BlobStore, ByteRange, ByteStream, Listed, Reading, StorageError, Written};
use crate::queue::worker::{JobContext, JobHandler};
use crate::queue::{Job, JobFailure, JobQueue};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub const KIND: &str = "storage.mirror";
/// Not copied: temporary objects.
pub const SKIPPED_PREFIX: &str = "tmp/";

/// The store, announcing each write and removal to the backup job.
pub struct Mirrored {
    inner: Arc<dyn BlobStore>,
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn crate::clock::Clock>,
    keep_deleted: Duration,
}

impl Mirrored {
    pub fn new(
        inner: Arc<dyn BlobStore>,
        queue: Arc<dyn JobQueue>,
        clock: Arc<dyn crate::clock::Clock>,
        keep_deleted: Duration,
    ) -> Self {
        Self {
            inner,
            queue,
            clock,
            keep_deleted,
        }
    }

    fn announce(&self, key: &str, removed: bool) {
        if key.starts_with(SKIPPED_PREFIX) {
            return;
        }
        let q = crate::queue::retention::QUEUE;
        let mut job = self
            .queue
            .policy(q)
            .job(q, KIND, json!({"key": key, "removed": removed}));
        if removed {
            job.run_at = Some(
                self.clock.now()
                    + chrono::Duration::from_std(self.keep_deleted)
                        .unwrap_or(chrono::Duration::days(7)),
            );
        }
        let queue = self.queue.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            if let Err(e) = queue.enqueue(job).await {
                tracing::warn!(error = %e, key = %key, "the backup copy of a blob could not be queued; `storage verify-backup` will show it missing");
            }
        });
    }
}

#[async_trait]
impl BlobStore for Mirrored {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn put_stream(
        &self,
        key: &str,
        body: ByteStream,
        content_type: &str,
        max_bytes: u64,
    ) -> Result<Written, StorageError> {
        let w = self
            .inner
            .put_stream(key, body, content_type, max_bytes)
            .await?;
        self.announce(key, false);
        Ok(w)
    }

    async fn get_stream(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Reading, StorageError> {
        self.inner.get_stream(key, range).await
    }

    async fn head(&self, key: &str) -> Result<BlobInfo, StorageError> {
        self.inner.head(key).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), StorageError> {
        self.inner.copy(from, to).await?;
        self.announce(to, false);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key).await?;
        self.announce(key, true);
        Ok(())
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Listed>, StorageError> {
        self.inner.list(prefix, after, limit).await
    }

    async fn presigned_get(
        &self,
        key: &str,
        served: &super::delivery::Served,
        ttl: Duration,
    ) -> Result<Option<String>, StorageError> {
        self.inner.presigned_get(key, served, ttl).await
    }
}

/// Brings the backup bucket's copy of one key in line with the store.
pub async fn mirror_key(
    store: &dyn BlobStore,
    backup: &dyn BlobStore,
    key: &str,
) -> Result<&'static str, StorageError> {
    match store.get_stream(key, None).await {
        Ok(reading) => {
            let size = reading.info.size;
            let ct = reading
                .info
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".to_owned());
            let written = backup.put_stream(key, reading.body, &ct, size).await?;
            if written.size != size {
                return Err(StorageError::Backend(format!(
                    "`{key}` changed while it was copied ({} bytes read of {size})",
                    written.size
                )));
            }
            Ok("copied")
        }
        Err(StorageError::NotFound(_)) => {
            backup.delete(key).await?;
            Ok("removed")
        }
        Err(e) => Err(e),
    }
}

/// The `storage.mirror` job.
pub struct MirrorJob {
    pub store: Arc<dyn BlobStore>,
    pub backup: Arc<dyn BlobStore>,
}

#[async_trait]
impl JobHandler for MirrorJob {
    async fn handle(&self, job: &Job, _: &JobContext) -> Result<Value, JobFailure> {
        let key = job
            .payload
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                JobFailure::permanent("storage.mirror.payload", "the job has no `key`")
            })?;
        let removed = job.payload.get("removed").and_then(Value::as_bool) == Some(true);
        // A write queues a copy; a key that is gone by then is left to its own removal job (which
        // runs after the keep-deleted delay), so the backup keeps it until then.
        if !removed {
            match self.store.head(key).await {
                Err(StorageError::NotFound(_)) => return Ok(json!({"key": key, "done": "gone"})),
                Err(e) => return Err(JobFailure::retryable("storage.mirror", e.to_string())),
                Ok(_) => {}
            }
        }
        let done = mirror_key(self.store.as_ref(), self.backup.as_ref(), key)
            .await
            .map_err(|e| JobFailure::retryable("storage.mirror", e.to_string()))?;
        Ok(json!({"key": key, "done": done}))
    }
}
