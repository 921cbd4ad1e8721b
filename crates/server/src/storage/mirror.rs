//! The backup bucket (`AWS_S3_BACKUP_BUCKET`): every object written to the store is copied there
//! by a queued job, and `airwave-server storage verify-backup` compares the two.
//!
//! [`Mirrored`] wraps the store every feature writes through: after a write (or a server-side
//! copy) succeeds, it queues a `storage.mirror` job for the key on the `storage` queue (its own,
//! so a week of parked removals never crowds the `cleanup` queue); after a removal, one that runs
//! `AIRWAVE_BACKUP_BUCKET_KEEP_DELETED_HOURS` later (default a week), so the copy outlives a
//! mistaken deletion for that long and an erasure still reaches it. Keys under `tmp/`
//! (resumable-upload parts, probes) are not copied. The job reads the key as the store has it
//! *when the job runs*: a copy job streams it (constant memory) into the backup bucket, or does
//! nothing when the key is gone by then (its removal job follows); a removal job removes the copy
//! when the key is still gone, and copies it again when it was written back meanwhile. Every key
//! the server writes carries a fresh id, so one key is written once and two copies of it never
//! race. The job is queued before the write returns (a failure to queue is logged, and
//! `verify-backup` shows the key missing; `verify-backup --copy-missing` copies it).

use super::{BlobInfo, BlobStore, ByteRange, ByteStream, Listed, Reading, StorageError, Written};
use crate::queue::worker::{JobContext, JobHandler};
use crate::queue::{Job, JobFailure, JobQueue};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub const KIND: &str = "storage.mirror";
/// The queue the copies run on.
pub const QUEUE: &str = "storage";
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

    async fn announce(&self, key: &str, removed: bool) {
        if key.starts_with(SKIPPED_PREFIX) {
            return;
        }
        let mut job =
            self.queue
                .policy(QUEUE)
                .job(QUEUE, KIND, json!({"key": key, "removed": removed}));
        if removed {
            job.run_at = Some(
                self.clock.now()
                    + chrono::Duration::from_std(self.keep_deleted)
                        .unwrap_or(chrono::Duration::days(7)),
            );
        }
        if let Err(e) = self.queue.enqueue(job).await {
            tracing::warn!(error = %e, key = %key, "the backup copy of a blob could not be queued; `storage verify-backup` will show it");
        }
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
        self.announce(key, false).await;
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
        self.announce(to, false).await;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key).await?;
        self.announce(key, true).await;
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

/// Copies `key` from the store to the backup bucket, streaming; `false` when the store has no
/// such key (nothing is done then).
pub async fn copy_key(
    store: &dyn BlobStore,
    backup: &dyn BlobStore,
    key: &str,
) -> Result<bool, StorageError> {
    let reading = match store.get_stream(key, None).await {
        Ok(r) => r,
        Err(StorageError::NotFound(_)) => return Ok(false),
        Err(e) => return Err(e),
    };
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
    Ok(true)
}

/// A removal job: the copy goes if the key is still gone from the store, and is made again if
/// the key was written back (checked after the removal too, so a write racing it is not lost).
pub async fn remove_copy(
    store: &dyn BlobStore,
    backup: &dyn BlobStore,
    key: &str,
) -> Result<&'static str, StorageError> {
    if copy_key(store, backup, key).await? {
        return Ok("copied");
    }
    backup.delete(key).await?;
    if copy_key(store, backup, key).await? {
        return Ok("copied");
    }
    Ok("removed")
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
        super::check_key(key)
            .map_err(|e| JobFailure::permanent("storage.mirror.payload", e.to_string()))?;
        let removed = job.payload.get("removed").and_then(Value::as_bool) == Some(true);
        let done = if removed {
            remove_copy(self.store.as_ref(), self.backup.as_ref(), key).await
        } else {
            // Gone by now: its removal job (after the keep-deleted period) has it.
            copy_key(self.store.as_ref(), self.backup.as_ref(), key)
                .await
                .map(|copied| if copied { "copied" } else { "gone" })
        }
        .map_err(|e| JobFailure::retryable("storage.mirror", e.to_string()))?;
        Ok(json!({"key": key, "done": done}))
    }
}
