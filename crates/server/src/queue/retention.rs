//! Retention: finished jobs do not pile up. A recurring `queue.retention` job on the `cleanup`
//! queue deletes, in every queue, completed and cancelled jobs older than a number of hours and
//! beyond a count, and dead jobs older than a number of days. Worker processes enqueue it every
//! ten minutes under one unique key, so however many workers run, one runs at a time.

use super::bulk::purge_all;
use super::worker::{JobContext, JobHandler};
use super::{Job, JobFailure, JobState, NewJob, QueueAdmin};
use crate::clock::Clock;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub const QUEUE: &str = "cleanup";
pub const KIND: &str = "queue.retention";
/// How often worker processes schedule it.
pub const EVERY: Duration = Duration::from_secs(600);

/// How long finished jobs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Completed and cancelled jobs older than this go.
    pub finished_age: Duration,
    /// At most this many completed jobs are kept per queue (the newest).
    pub finished_max: u64,
    /// Dead jobs older than this go.
    pub dead_age: Duration,
}

/// The job that schedules the next run (unique while one is waiting or running).
pub fn job(policy: &super::QueuePolicy) -> NewJob {
    NewJob {
        unique_key: Some(KIND.into()),
        ..policy.job(QUEUE, KIND, json!({}))
    }
}

pub struct RetentionJob {
    pub queue: Arc<dyn QueueAdmin>,
    pub clock: Arc<dyn Clock>,
    pub retention: Retention,
}

fn failed(e: super::QueueError) -> JobFailure {
    JobFailure::retryable("queue.retention", e.to_string())
}

#[async_trait]
impl JobHandler for RetentionJob {
    async fn handle(&self, _job: &Job, _ctx: &JobContext) -> Result<Value, JobFailure> {
        let now = self.clock.now();
        let age =
            |d: Duration| now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        let mut report = serde_json::Map::new();
        let mut names = self.queue.queue_names().await.map_err(failed)?;
        names.sort();
        names.dedup();
        for q in names {
            let queue = self.queue.as_ref();
            let completed = purge_all(
                queue,
                &q,
                JobState::Completed,
                age(self.retention.finished_age),
            )
            .await
            .map_err(failed)?
                + self
                    .queue
                    .trim(&q, JobState::Completed, self.retention.finished_max)
                    .await
                    .map_err(failed)?;
            let cancelled = purge_all(
                queue,
                &q,
                JobState::Cancelled,
                age(self.retention.finished_age),
            )
            .await
            .map_err(failed)?;
            let dead = purge_all(queue, &q, JobState::Dead, age(self.retention.dead_age))
                .await
                .map_err(failed)?;
            if completed + cancelled + dead > 0 {
                report.insert(
                    q,
                    json!({"completed": completed, "cancelled": cancelled, "dead": dead}),
                );
            }
        }
        Ok(Value::Object(report))
    }
}
