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
}

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
        let key = format!("tmp/health/{:016x}", rand::random::<u64>());
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
        out
    }
}
