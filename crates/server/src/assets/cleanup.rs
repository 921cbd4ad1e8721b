//! What uploads leave behind, removed by a recurring `storage.cleanup` job on the `cleanup` queue:
//! resumable uploads past their expiry (parts and row), failed ones, and orphans — blobs under
//! `tmp/uploads/` that no part row records, and asset files (`clients/<c>/assets/<a>/<upl_…>`)
//! that no asset row points at — once older than the grace period. A blob's age is read from the
//! time inside its `upl_…` id, so the sweep needs no object metadata and follows the
//! application's clock (tests move it). Each run does a bounded amount of work.

use super::tus::PARTS_PREFIX;
use crate::error::Result;
use crate::queue::worker::{JobContext, JobHandler};
use crate::queue::{Job, JobFailure, NewJob};
use crate::state::AppState;
use crate::with_db;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::time::Duration;

pub const KIND: &str = "storage.cleanup";
/// How often worker processes schedule it.
pub const EVERY: Duration = Duration::from_secs(600);
/// Most blobs one run removes (the next run goes on).
const MAX_REMOVALS: usize = 10_000;
/// Most keys one run looks at.
const MAX_LISTED: usize = 200_000;

/// The recurring job (unique while one is waiting or running).
pub fn job(policy: &crate::queue::QueuePolicy) -> NewJob {
    NewJob {
        unique_key: Some(KIND.into()),
        ..policy.job(crate::queue::retention::QUEUE, KIND, json!({}))
    }
}

/// The time inside a ULID-based id or id body (`upl_01…` or `01…`).
fn time_of(id: &str) -> Option<DateTime<Utc>> {
    let body = id.rsplit('_').next()?;
    let u = ulid::Ulid::from_string(&body.to_ascii_uppercase()).ok()?;
    DateTime::from_timestamp_millis(i64::try_from(u.timestamp_ms()).ok()?)
}

/// Removes every blob under `prefix` (best effort).
pub async fn remove_prefix(state: &AppState, prefix: &str) {
    let mut after: Option<String> = None;
    loop {
        let page = match state.blobs.list(prefix, after.as_deref(), 1000).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(prefix, error = %e, "listing blobs to remove failed");
                return;
            }
        };
        let Some(last) = page.last() else { return };
        after = Some(last.key.clone());
        for b in &page {
            super::upload::remove_blob(state, &b.key).await;
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub expired_uploads: u64,
    pub failed_uploads: u64,
    pub orphan_parts: u64,
    pub orphan_files: u64,
}

/// One run of the sweep at `state.clock`'s now, with `grace` for orphans.
pub async fn sweep(state: &AppState, grace: Duration) -> Result<Swept> {
    let now = state.clock.now();
    let cutoff = now - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::hours(1));
    let mut out = Swept::default();
    let mut removals = 0usize;

    // Expired open uploads: their parts, then their rows.
    let expired: Vec<String> = with_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT id FROM uploads WHERE status = 'open' AND expires_at < $1 ORDER BY expires_at LIMIT 500")
            .bind(now).fetch_all(pool).await?
    });
    for id in expired {
        // The row goes first, then its parts' blobs: a PATCH landing meanwhile finds no row
        // (and the landing update checks the expiry too).
        let keys: Vec<String> = with_db!(&state.db, pool => {
            sqlx::query_scalar("SELECT storage_key FROM upload_parts WHERE upload_id = $1").bind(&id).fetch_all(pool).await?
        });
        let deleted = with_db!(&state.db, pool => {
            sqlx::query("DELETE FROM uploads WHERE id = $1 AND status = 'open' AND expires_at < $2").bind(&id).bind(now).execute(pool).await?.rows_affected() == 1
        });
        if deleted {
            for k in &keys {
                super::upload::remove_blob(state, k).await;
            }
            out.expired_uploads += 1;
        }
    }
    // Health probes cut off before they removed their blob.
    let probes = state
        .blobs
        .list("tmp/health/", None, 1000)
        .await
        .map_err(storage)?;
    for b in probes {
        if b.key
            .rsplit('/')
            .next()
            .and_then(time_of)
            .is_some_and(|t| t < cutoff)
        {
            super::upload::remove_blob(state, &b.key).await;
        }
    }
    // Failed uploads (their parts went when they failed) are kept until they would have expired.
    out.failed_uploads = with_db!(&state.db, pool => {
        sqlx::query("DELETE FROM uploads WHERE status = 'failed' AND expires_at < $1").bind(now).execute(pool).await?.rows_affected()
    });

    // Parts no row records (a PATCH that lost its race, or a process that died mid-PATCH).
    let mut listed = 0usize;
    let mut after: Option<String> = None;
    'parts: loop {
        let page = state
            .blobs
            .list(PARTS_PREFIX, after.as_deref(), 1000)
            .await
            .map_err(storage)?;
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        for b in page {
            listed += 1;
            // tmp/uploads/<upl_…>/<offset>-<ulid>
            let made = b.key.rsplit('-').next().and_then(time_of);
            if made.is_none_or(|t| t > cutoff) {
                continue;
            }
            let recorded: Option<i32> = with_db!(&state.db, pool => {
                sqlx::query_scalar("SELECT 1 FROM upload_parts WHERE storage_key = $1").bind(&b.key).fetch_optional(pool).await?
            });
            if recorded.is_none() {
                super::upload::remove_blob(state, &b.key).await;
                out.orphan_parts += 1;
                removals += 1;
            }
            if removals >= MAX_REMOVALS || listed >= MAX_LISTED {
                break 'parts;
            }
        }
    }

    // Asset files no asset points at (a commit that failed, a delete that could not remove).
    let mut after: Option<String> = None;
    'files: loop {
        let page = state
            .blobs
            .list("clients/", after.as_deref(), 1000)
            .await
            .map_err(storage)?;
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        for b in page {
            listed += 1;
            let parts: Vec<&str> = b.key.split('/').collect();
            let [_, _, "assets", _, upload] = parts.as_slice() else {
                continue;
            };
            if !upload.starts_with("upl_") || time_of(upload).is_none_or(|t| t > cutoff) {
                continue;
            }
            let used: Option<i32> = with_db!(&state.db, pool => {
                sqlx::query_scalar("SELECT 1 FROM assets WHERE storage_key = $1").bind(&b.key).fetch_optional(pool).await?
            });
            if used.is_none() {
                super::upload::remove_blob(state, &b.key).await;
                out.orphan_files += 1;
                removals += 1;
            }
            if removals >= MAX_REMOVALS || listed >= MAX_LISTED {
                break 'files;
            }
        }
    }
    Ok(out)
}

fn storage(e: crate::storage::StorageError) -> crate::error::Error {
    crate::error::Error::Internal(anyhow::Error::new(e).context("listing blobs"))
}

pub struct CleanupJob {
    pub state: AppState,
}

#[async_trait]
impl JobHandler for CleanupJob {
    async fn handle(&self, _job: &Job, _ctx: &JobContext) -> Result<Value, JobFailure> {
        let grace = self.state.config.uploads.orphan_grace;
        let s = sweep(&self.state, grace)
            .await
            .map_err(|e| JobFailure::retryable("storage.cleanup", e.to_string()))?;
        Ok(json!({
            "expired_uploads": s.expired_uploads,
            "failed_uploads": s.failed_uploads,
            "orphan_parts": s.orphan_parts,
            "orphan_files": s.orphan_files,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UploadId;

    #[test]
    fn an_ids_time_is_read_back() {
        let t = DateTime::from_timestamp_millis(1_790_000_000_123).unwrap();
        let id = UploadId::new(t);
        assert_eq!(time_of(id.as_str()), Some(t));
        assert_eq!(time_of(&crate::ids::new_body(1_790_000_000_123)), Some(t));
        assert_eq!(time_of("upl_nonsense"), None);
    }
}
