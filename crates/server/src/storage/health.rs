//! Health component `storage`: write, read back and delete a small probe blob; its round trip in
//! milliseconds (warn when slow).

use super::BlobStore;
use crate::health::HealthCheck;
use airwave_api::{HealthCheckOut, HealthStatus};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct StorageCheck {
    pub blobs: Arc<dyn BlobStore>,
    pub warn_after: Duration,
    /// The last answer and when it was made: `/api/health` is public and polled, and each probe
    /// is three requests to the store, so one probe serves every check for [`CACHE_FOR`].
    pub last: tokio::sync::Mutex<Option<(Instant, HealthCheckOut)>>,
}

pub const CACHE_FOR: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("{0}")]
    Storage(#[from] super::StorageError),
    #[error("the probe read back different bytes")]
    Mismatch,
}

impl StorageCheck {
    async fn probe(&self) -> Result<Duration, ProbeError> {
        let started = Instant::now();
        // A ULID: unique, and it dates the probe for the cleanup sweep should one be left behind.
        let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        let key = format!("tmp/health/{}", crate::ids::new_body(now));
        let bytes = b"airwave storage probe".to_vec();
        self.blobs.put(&key, bytes.clone(), "text/plain").await?;
        let back = self.blobs.get_bounded(&key, 1024).await;
        let deleted = self.blobs.delete(&key).await;
        if back? != bytes {
            return Err(ProbeError::Mismatch);
        }
        deleted?;
        Ok(started.elapsed())
    }
}

#[async_trait]
impl HealthCheck for StorageCheck {
    fn key(&self) -> &str {
        "storage:responseTime"
    }

    fn component_type(&self) -> &str {
        "datastore"
    }

    async fn check(&self) -> HealthCheckOut {
        // One probe at a time; the others wait for its answer.
        let mut last = self.last.lock().await;
        if let Some((at, out)) = last.as_ref() {
            if at.elapsed() < CACHE_FOR {
                return out.clone();
            }
        }
        let took = self.probe().await;
        let mut out = crate::health::response_time(
            self.blobs.backend(),
            self.component_type(),
            took,
            self.warn_after,
        );
        if out.status == HealthStatus::Fail {
            out.output = out
                .output
                .map(|o| format!("write/read/delete of a probe blob failed: {o}"));
        }
        *last = Some((Instant::now(), out.clone()));
        out
    }
}
