//! Bulk operations on jobs — retry everything matching a filter, purge finished jobs — run as a
//! `queue.bulk` job on the `cleanup` queue, never inside the request that asked for them (a
//! request timeout would cut them off half-way, with no record of how far they got).
//!
//! The operator route counts what matches (a dry run stops there), then enqueues the job with its
//! audit entry: in the same transaction where the queue lives in the database (SQL), written
//! before the job can start otherwise (Redis) — see [`super::QueueAdmin::enqueue_audited`]. The
//! job reports its progress (`GET /api/ops/jobs/{id}`: `progress`, `progress_message`) and, done,
//! its `result`. Both operations are safe to run again after a crash: a retried job no longer
//! matches "dead", a purged job is gone.

use super::worker::{JobContext, JobHandler};
use super::{Job, JobFailure, JobFilter, JobId, JobState, NewJob, QueueAdmin, QueueError, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

pub const QUEUE: &str = super::retention::QUEUE;
pub const KIND: &str = "queue.bulk";
/// Most jobs one bulk retry touches; a larger set is retried by running it again.
pub const RETRY_MAX: usize = 100_000;
/// Jobs deleted per statement (or script call) of a purge.
pub const PURGE_BATCH: u64 = 10_000;
/// Jobs listed per page while collecting what a retry matches.
const PAGE: usize = 500;
/// Jobs retried between two progress reports.
const REPORT_EVERY: usize = 250;

/// What a bulk job does. Its payload, so a restarted job does the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum BulkOp {
    /// Runs again every job of `queue` in `state` (dead or cancelled) that matches the filter.
    Retry {
        queue: String,
        state: JobState,
        #[serde(default)]
        kind: Option<String>,
        #[serde(default)]
        fingerprint: Option<String>,
        /// `field.path=value` (see [`super::PayloadMatch`]).
        #[serde(default)]
        payload: Option<String>,
        #[serde(default)]
        created_after: Option<DateTime<Utc>>,
        #[serde(default)]
        created_before: Option<DateTime<Utc>>,
    },
    /// Deletes the jobs of `queue` in a finished `state` that finished before `before`.
    Purge {
        queue: String,
        state: JobState,
        before: DateTime<Utc>,
    },
}

impl BulkOp {
    /// Every dead job of `queue`, or one fingerprint's.
    pub fn retry_dead(queue: &str, fingerprint: Option<&str>) -> Self {
        Self::Retry {
            queue: queue.into(),
            state: JobState::Dead,
            kind: None,
            fingerprint: fingerprint.map(str::to_owned),
            payload: None,
            created_after: None,
            created_before: None,
        }
    }

    /// The queue it works on.
    pub fn queue(&self) -> &str {
        match self {
            Self::Retry { queue, .. } | Self::Purge { queue, .. } => queue,
        }
    }

    /// Its audit action.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Retry {
                state: JobState::Dead,
                kind: None,
                payload: None,
                created_after: None,
                created_before: None,
                ..
            } => "queue.dead_retry",
            Self::Retry { .. } => "queue.jobs_retry",
            Self::Purge { .. } => "queue.purge",
        }
    }

    /// Checks the operation before anything is counted or started.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Retry { state, .. } if !matches!(state, JobState::Dead | JobState::Cancelled) => {
                Err(QueueError::Invalid(
                    "only dead or cancelled jobs can be retried".into(),
                ))
            }
            Self::Retry { .. } => self.filter().map(|_| ()),
            Self::Purge { state, .. } if !state.is_finished() => Err(QueueError::Invalid(format!(
                "only finished jobs are purged, not {state} ones"
            ))),
            Self::Purge { .. } => Ok(()),
        }
    }

    fn filter(&self) -> Result<JobFilter> {
        let Self::Retry {
            queue,
            state,
            kind,
            fingerprint,
            payload,
            created_after,
            created_before,
        } = self
        else {
            return Err(QueueError::Invalid("a purge has no job filter".into()));
        };
        Ok(JobFilter {
            kind: kind.clone(),
            fingerprint: fingerprint.clone(),
            payload: payload.as_deref().map(str::parse).transpose()?,
            created_after: *created_after,
            created_before: *created_before,
            ..JobFilter::new(queue, *state)
        })
    }

    /// How many jobs it would touch now (a retry: at most [`RETRY_MAX`]).
    pub async fn count(&self, queue: &dyn QueueAdmin) -> Result<u64> {
        self.validate()?;
        match self {
            Self::Retry { .. } => Ok(matching(queue, &self.filter()?).await?.len() as u64),
            Self::Purge {
                queue: q,
                state,
                before,
            } => queue.count_finished(q, *state, *before).await,
        }
    }

    /// The job that carries it out; `operation` (its correlation id too) ties the job to its
    /// audit entry.
    pub fn job(&self, policy: &super::QueuePolicy, operation: &str) -> NewJob {
        let mut payload = json!(self);
        payload["operation"] = json!(operation);
        NewJob {
            correlation_id: Some(operation.to_owned()),
            ..policy.job(QUEUE, KIND, payload)
        }
    }
}

/// How far a bulk operation got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// What matched when it started.
    pub matched: u64,
    /// Jobs retried or deleted.
    pub done: u64,
    /// Jobs that changed state (or went) meanwhile and were left alone.
    pub skipped: u64,
}

impl Report {
    fn percent(&self) -> i32 {
        if self.matched == 0 {
            return 100;
        }
        i32::try_from(((self.done + self.skipped) * 100 / self.matched).min(99)).unwrap_or(99)
    }
}

/// Runs `op` to the end, calling `progress` after every batch; stops with [`QueueError::Stopped`]
/// when `stop` fires. The job handler below and the conformance suite both call it.
pub async fn run<F, Fut>(
    queue: &dyn QueueAdmin,
    op: &BulkOp,
    stop: &tokio_util::sync::CancellationToken,
    mut progress: F,
) -> Result<Report>
where
    F: FnMut(Report) -> Fut + Send,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    op.validate()?;
    let mut report = Report::default();
    match op {
        BulkOp::Retry { .. } => {
            // Collect the ids first: retrying moves a job out of the listed state, which would
            // otherwise shift the pages under the cursor.
            let ids = matching(queue, &op.filter()?).await?;
            report.matched = ids.len() as u64;
            progress(report).await?;
            for chunk in ids.chunks(REPORT_EVERY) {
                if stop.is_cancelled() {
                    return Err(QueueError::Stopped);
                }
                for id in chunk {
                    match queue.retry(id).await {
                        Ok(()) => report.done += 1,
                        Err(QueueError::NotFound | QueueError::WrongState(_)) => {
                            report.skipped += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
                progress(report).await?;
            }
        }
        BulkOp::Purge {
            queue: q,
            state,
            before,
        } => {
            report.matched = queue.count_finished(q, *state, *before).await?;
            progress(report).await?;
            loop {
                if stop.is_cancelled() {
                    return Err(QueueError::Stopped);
                }
                let n = queue.purge(q, *state, *before, PURGE_BATCH).await?;
                report.done += n;
                progress(report).await?;
                if n < PURGE_BATCH {
                    break;
                }
            }
            // Jobs that finished meanwhile may be purged too: never report more than matched.
            report.matched = report.matched.max(report.done);
        }
    }
    Ok(report)
}

/// Deletes every job of `queue` in a finished `state` that finished before `before`, in batches.
pub async fn purge_all(
    queue: &dyn QueueAdmin,
    q: &str,
    state: JobState,
    before: DateTime<Utc>,
) -> Result<u64> {
    let mut total = 0;
    loop {
        let n = queue.purge(q, state, before, PURGE_BATCH).await?;
        total += n;
        if n < PURGE_BATCH {
            return Ok(total);
        }
    }
}

/// The ids of the jobs matching `filter`, newest first, at most [`RETRY_MAX`].
async fn matching(queue: &dyn QueueAdmin, filter: &JobFilter) -> Result<Vec<JobId>> {
    let mut ids = Vec::new();
    let mut cursor: Option<JobId> = None;
    loop {
        let batch = queue.list(filter, PAGE, cursor.as_ref()).await?;
        let done = batch.len() < PAGE;
        cursor = batch.last().map(|j| j.id.clone());
        ids.extend(batch.into_iter().map(|j| j.id));
        if done || ids.len() >= RETRY_MAX {
            break;
        }
    }
    ids.truncate(RETRY_MAX);
    Ok(ids)
}

/// The `queue.bulk` handler.
pub struct BulkJob {
    pub queue: Arc<dyn QueueAdmin>,
}

#[async_trait]
impl JobHandler for BulkJob {
    async fn handle(&self, job: &Job, ctx: &JobContext) -> Result<Value, JobFailure> {
        let op: BulkOp = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobFailure::permanent(KIND, format!("not a bulk operation: {e}")))?;
        let verb = match op {
            BulkOp::Retry { .. } => "retried",
            BulkOp::Purge { .. } => "deleted",
        };
        let report = run(self.queue.as_ref(), &op, &ctx.cancel, |r| async move {
            let message = format!("{} of {} {verb}, {} skipped", r.done, r.matched, r.skipped);
            ctx.progress(r.percent(), Some(&message)).await
        })
        .await
        .map_err(|e| match e {
            QueueError::Invalid(m) => JobFailure::permanent(KIND, m),
            e => JobFailure::retryable(KIND, e.to_string()),
        })?;
        Ok(json!({
            "op": op,
            "operation": job.payload.get("operation"),
            "matched": report.matched,
            "done": report.done,
            "skipped": report.skipped,
        }))
    }
}
