//! The SQL job queue: the embedded default, in the application's database.
//!
//! - PostgreSQL: fetching takes rows with `FOR UPDATE SKIP LOCKED`, so any number of workers in any
//!   number of processes share a queue without taking a job twice or waiting on each other.
//! - SQLite: one writer at a time. Every state change goes through an in-process lock (SQLite
//!   allows one writer anyway; queuing here instead of in `busy_timeout` keeps it fair and free of
//!   `SQLITE_BUSY`), and each change is a single statement or transaction, so concurrent workers in
//!   one process stay correct.
//!
//! A job that dies writes `job.dead` to the events outbox in the same transaction.

use super::Audited;
use super::{Attempt, DeadGroup, JobFilter};
use super::{
    Backoff, CancelOutcome, Counts, Enqueued, FailOutcome, Job, JobFailure, JobState, NewJob,
    QueueAdmin, QueueError, QueuePolicy, Result, Wakeups, WorkQueue,
};
use crate::clock::Clock;
use crate::db::BeginWrite as _;
use crate::db::Db;
use crate::ids::JobId;
use crate::{emit_event, with_db};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::types::Json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// The `INSERT` of one job (`RETURNING id`; nothing when its unique key is held), bound and ready
/// to run on a pool or a transaction.
macro_rules! insert_job {
    ($job:expr, $id:expr, $state:expr, $run_at:expr, $now:expr) => {{
        let job: &NewJob = $job;
        let id: &JobId = $id;
        sqlx::query_scalar::<_, String>(
            "INSERT INTO jobs (id, queue, kind, payload, priority, state, run_at, attempts, max_attempts, backoff_base_ms,
                               backoff_cap_ms, unique_key, correlation_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10, $11, $12, $13, $13)
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(id.as_str().to_owned())
        .bind(job.queue.clone())
        .bind(job.kind.clone())
        .bind(Json(job.payload.clone()))
        .bind(job.priority)
        .bind(JobState::as_str($state))
        .bind($run_at)
        .bind(i32::try_from(job.max_attempts).unwrap_or(1))
        .bind(duration_ms(job.backoff.base))
        .bind(duration_ms(job.backoff.cap))
        .bind(job.unique_key.clone())
        .bind(job.correlation_id.clone())
        .bind($now)
    }};
}

pub struct SqlQueue {
    db: Db,
    clock: Arc<dyn Clock>,
    policies: HashMap<String, QueuePolicy>,
    default_policy: QueuePolicy,
    /// SQLite's single writer; `None` on PostgreSQL.
    writer: Option<tokio::sync::Mutex<()>>,
    wakeups: Wakeups,
    metrics: Arc<super::metrics::Metrics>,
}

/// The PostgreSQL channel new and re-readied jobs are announced on (payload: the queue).
pub const NOTIFY_CHANNEL: &str = "airwave_jobs";

const READY: &str = "('waiting', 'delayed', 'retrying')";
const UNIQUE_HELD: &str = "('waiting', 'delayed', 'retrying', 'active')";
const COLUMNS: &str = "id, queue, kind, payload, priority, state, run_at, attempts, max_attempts, backoff_base_ms, backoff_cap_ms, \
    unique_key, correlation_id, progress, progress_message, result, last_error, error_fingerprint, worker_id, lease_until, \
    cancel_requested, created_at, updated_at, started_at, finished_at";

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    queue: String,
    kind: String,
    payload: Json<Value>,
    priority: i32,
    state: String,
    run_at: DateTime<Utc>,
    attempts: i32,
    max_attempts: i32,
    backoff_base_ms: i64,
    backoff_cap_ms: i64,
    unique_key: Option<String>,
    correlation_id: Option<String>,
    progress: i32,
    progress_message: Option<String>,
    result: Option<Json<Value>>,
    last_error: Option<String>,
    error_fingerprint: Option<String>,
    worker_id: Option<String>,
    lease_until: Option<DateTime<Utc>>,
    cancel_requested: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

/// What finishing an attempt needs to know about the job.
#[derive(sqlx::FromRow)]
struct AttemptRow {
    queue: String,
    kind: String,
    attempts: i32,
    max_attempts: i32,
    backoff_base_ms: i64,
    backoff_cap_ms: i64,
    started_at: Option<DateTime<Utc>>,
    worker_id: Option<String>,
}

/// A row of `job_attempts`.
#[derive(sqlx::FromRow)]
struct AttemptLogRow {
    attempt: i32,
    worker_id: String,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    outcome: Option<String>,
    error: Option<String>,
    error_fingerprint: Option<String>,
}

/// A group of dead jobs.
#[derive(sqlx::FromRow)]
struct DeadGroupRow {
    fingerprint: String,
    kind: String,
    count: i64,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    sample_error: String,
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl TryFrom<JobRow> for Job {
    type Error = QueueError;
    fn try_from(r: JobRow) -> Result<Job> {
        Ok(Job {
            id: r
                .id
                .try_into()
                .map_err(|e: crate::ids::IdError| QueueError::Invalid(e.to_string()))?,
            queue: r.queue,
            kind: r.kind,
            payload: r.payload.0,
            priority: r.priority,
            state: r.state.parse()?,
            run_at: r.run_at,
            attempts: u32::try_from(r.attempts).unwrap_or(0),
            max_attempts: u32::try_from(r.max_attempts).unwrap_or(1),
            backoff: Backoff {
                base: millis(r.backoff_base_ms),
                cap: millis(r.backoff_cap_ms),
            },
            unique_key: r.unique_key,
            correlation_id: r.correlation_id,
            progress: r.progress,
            progress_message: r.progress_message,
            result: r.result.map(|j| j.0),
            last_error: r.last_error,
            error_fingerprint: r.error_fingerprint,
            worker_id: r.worker_id,
            lease_until: r.lease_until,
            cancel_requested: r.cancel_requested,
            created_at: r.created_at,
            updated_at: r.updated_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        })
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl SqlQueue {
    pub fn new(db: Db, clock: Arc<dyn Clock>, policies: HashMap<String, QueuePolicy>) -> Self {
        let writer = matches!(db, Db::Sqlite(_)).then(|| tokio::sync::Mutex::new(()));
        Self {
            db,
            metrics: Arc::new(super::metrics::Metrics::new(clock.clone())),
            clock,
            policies,
            default_policy: QueuePolicy::default(),
            writer,
            wakeups: Wakeups::default(),
        }
    }

    fn policy_of(&self, queue: &str) -> &QueuePolicy {
        self.policies.get(queue).unwrap_or(&self.default_policy)
    }

    /// Work is ready in `queue`: wake this process's workers and, on PostgreSQL, the others'
    /// (new jobs notify through a trigger; this is for jobs made ready by an update).
    async fn signal(&self, queue: &str) {
        self.wakeups.wake(queue);
        if let Db::Postgres(pool) = &self.db {
            if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(NOTIFY_CHANNEL)
                .bind(queue)
                .execute(pool)
                .await
            {
                tracing::debug!(error = %e, "pg_notify failed; other processes will poll");
            }
        }
    }

    async fn write_lock(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.writer {
            Some(m) => Some(m.lock().await),
            None => None,
        }
    }

    /// Inserts one job on a connection; the caller holds the write lock.
    async fn insert(&self, job: &NewJob, now: DateTime<Utc>) -> Result<Enqueued> {
        job.validate()?;
        let limit = self.policy_of(&job.queue).max_waiting;
        let waiting: i64 = with_db!(&self.db, pool => {
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM jobs WHERE queue = $1 AND state IN {READY}")).bind(&job.queue).fetch_one(pool).await?
        });
        if u64::try_from(waiting).unwrap_or(0) >= limit {
            return Err(QueueError::Full {
                queue: job.queue.clone(),
                limit,
            });
        }
        let run_at = job.run_at.unwrap_or(now).max(now);
        let state = if run_at > now {
            JobState::Delayed
        } else {
            JobState::Waiting
        };
        let id = JobId::new(now);
        let inserted: Option<String> = with_db!(&self.db, pool => {
            insert_job!(job, &id, state, run_at, now).fetch_optional(pool).await?
        });
        if inserted.is_some() {
            return Ok(Enqueued::Created(id));
        }
        let existing: Option<String> = with_db!(&self.db, pool => {
            sqlx::query_scalar(&format!("SELECT id FROM jobs WHERE queue = $1 AND unique_key = $2 AND state IN {UNIQUE_HELD}"))
                .bind(&job.queue)
                .bind(&job.unique_key)
                .fetch_optional(pool)
                .await?
        });
        match existing {
            Some(e) => Ok(Enqueued::Duplicate(e.try_into().map_err(
                |e: crate::ids::IdError| QueueError::Invalid(e.to_string()),
            )?)),
            // The holder finished between the two statements: the key is free now.
            None => Box::pin(self.insert(job, now)).await,
        }
    }

    /// Inserts jobs of one queue without unique keys in multi-row statements (one size check for
    /// the whole batch). The caller holds the write lock.
    async fn insert_many(&self, jobs: &[NewJob], now: DateTime<Utc>) -> Result<Vec<Enqueued>> {
        let queue = &jobs[0].queue;
        let limit = self.policy_of(queue).max_waiting;
        let waiting: i64 = with_db!(&self.db, pool => {
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM jobs WHERE queue = $1 AND state IN {READY}")).bind(queue).fetch_one(pool).await?
        });
        if u64::try_from(waiting).unwrap_or(0) + jobs.len() as u64 > limit {
            return Err(QueueError::Full {
                queue: queue.clone(),
                limit,
            });
        }
        let ids: Vec<JobId> = jobs.iter().map(|_| JobId::new(now)).collect();
        // 14 parameters a row; SQLite allows 32766 per statement.
        for (chunk, chunk_ids) in jobs.chunks(500).zip(ids.chunks(500)) {
            with_db!(&self.db, pool => {
                let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO jobs (id, queue, kind, payload, priority, state, run_at, attempts, max_attempts, backoff_base_ms, \
                     backoff_cap_ms, correlation_id, created_at, updated_at) ",
                );
                qb.push_values(chunk.iter().zip(chunk_ids), |mut row, (job, id)| {
                    let run_at = job.run_at.unwrap_or(now).max(now);
                    let state = if run_at > now { JobState::Delayed } else { JobState::Waiting };
                    row.push_bind(id.as_str().to_owned())
                        .push_bind(job.queue.clone())
                        .push_bind(job.kind.clone())
                        .push_bind(Json(job.payload.clone()))
                        .push_bind(job.priority)
                        .push_bind(state.as_str())
                        .push_bind(run_at)
                        .push_bind(0i32)
                        .push_bind(i32::try_from(job.max_attempts).unwrap_or(1))
                        .push_bind(duration_ms(job.backoff.base))
                        .push_bind(duration_ms(job.backoff.cap))
                        .push_bind(job.correlation_id.clone())
                        .push_bind(now)
                        .push_bind(now);
                });
                qb.build().execute(pool).await?;
            });
        }
        Ok(ids.into_iter().map(Enqueued::Created).collect())
    }

    /// Marks a job dead or retrying after a failed attempt, in one transaction with its attempt
    /// row and (when dead) its `job.dead` event. `None` when `worker` no longer holds it.
    async fn finish_attempt(
        &self,
        id: &JobId,
        worker: Option<&str>,
        failure: &JobFailure,
        jitter: f64,
        now: DateTime<Utc>,
    ) -> Result<Option<FailOutcome>> {
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let row: Option<AttemptRow> = sqlx::query_as(
                "SELECT queue, kind, attempts, max_attempts, backoff_base_ms, backoff_cap_ms, started_at, worker_id FROM jobs
                 WHERE id = $1 AND state = 'active' AND ($2 IS NULL OR worker_id = $2)",
            )
            .bind(id.as_str())
            .bind(worker)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(AttemptRow { queue, kind, attempts, max_attempts, backoff_base_ms: base, backoff_cap_ms: cap, started_at, worker_id: holder }) = row else {
                return Ok(None);
            };
            let fingerprint = failure.fingerprint(&kind);
            let outcome = if failure.retryable && attempts < max_attempts {
                let backoff = Backoff { base: millis(base), cap: millis(cap) };
                let at = now + chrono(backoff.delay(u32::try_from(attempts).unwrap_or(1), jitter));
                FailOutcome::WillRetry { at }
            } else {
                FailOutcome::Dead
            };
            let (state, run_at) = match &outcome {
                FailOutcome::WillRetry { at } => (JobState::Retrying, *at),
                FailOutcome::Dead => (JobState::Dead, now),
            };
            let changed = sqlx::query(
                "UPDATE jobs SET state = $2, run_at = $3, last_error = $4, error_fingerprint = $5, worker_id = NULL, lease_until = NULL,
                        updated_at = $6, finished_at = CASE WHEN $2 = 'dead' THEN $6 ELSE NULL END
                 WHERE id = $1 AND state = 'active'",
            )
            .bind(id.as_str())
            .bind(state.as_str())
            .bind(run_at)
            .bind(&failure.message)
            .bind(&fingerprint)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if changed.rows_affected() != 1 {
                return Ok(None);
            }
            sqlx::query(
                "INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at, outcome, error, error_fingerprint)
                 VALUES ($1, $2, $3, $4, $5, 'failed', $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(id.as_str())
            .bind(attempts)
            .bind(holder.as_deref().unwrap_or("?"))
            .bind(started_at.unwrap_or(now))
            .bind(now)
            .bind(&failure.message)
            .bind(&fingerprint)
            .execute(&mut *tx)
            .await?;
            if outcome == FailOutcome::Dead {
                emit_event!(&mut *tx, now, "job.dead", id.as_str(), json!({
                    "job_id": id, "queue": queue, "kind": kind, "attempts": attempts, "error": failure.message, "fingerprint": fingerprint
                }))?;
            }
            tx.commit().await?;
            Ok(Some(outcome))
        })
    }

    async fn state_of(&self, id: &JobId) -> Result<JobState> {
        let s: Option<String> = with_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1").bind(id.as_str()).fetch_optional(pool).await?
        });
        s.ok_or(QueueError::NotFound)?.parse()
    }
}

#[async_trait]
impl WorkQueue for SqlQueue {
    fn policy(&self, queue: &str) -> QueuePolicy {
        self.policy_of(queue).clone()
    }

    fn backend(&self) -> &'static str {
        "sql"
    }

    fn metrics(&self) -> &Arc<super::metrics::Metrics> {
        &self.metrics
    }

    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        let out = {
            let _w = self.write_lock().await;
            self.insert(&job, self.clock.now()).await?
        };
        if matches!(out, Enqueued::Created(_)) {
            self.metrics.enqueued(&job.queue, 1);
        }
        self.wakeups.wake(&job.queue);
        Ok(out)
    }

    async fn wait_for_work(&self, queue: &str, at_most: Duration) {
        self.wakeups.wait(queue, at_most).await;
    }

    async fn listen_for_work(&self, stop: tokio_util::sync::CancellationToken) {
        let Db::Postgres(pool) = &self.db else {
            return;
        };
        let mut backoff = Duration::from_millis(100);
        while !stop.is_cancelled() {
            match sqlx::postgres::PgListener::connect_with(pool).await {
                Ok(mut listener) => match listener.listen(NOTIFY_CHANNEL).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(100);
                        loop {
                            tokio::select! {
                                () = stop.cancelled() => return,
                                n = listener.recv() => match n {
                                    Ok(n) => self.wakeups.wake(n.payload()),
                                    Err(e) => {
                                        tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                                        break;
                                    }
                                },
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "LISTEN failed; retrying"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot open the LISTEN connection; retrying"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn enqueue_bulk(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        for j in &jobs {
            j.validate()?;
        }
        let out = {
            let _w = self.write_lock().await;
            let now = self.clock.now();
            let simple = jobs
                .iter()
                .all(|j| j.unique_key.is_none() && j.queue == jobs[0].queue);
            if simple && !jobs.is_empty() {
                self.insert_many(&jobs, now).await?
            } else {
                let mut out = Vec::with_capacity(jobs.len());
                for j in &jobs {
                    out.push(self.insert(j, now).await?);
                }
                out
            }
        };
        super::count_created(&self.metrics, &jobs, &out);
        self.wakeups.wake_all(&jobs);
        Ok(out)
    }

    async fn fetch(
        &self,
        queue: &str,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Job>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let _w = self.write_lock().await;
        let now = self.clock.now();
        let lock = if matches!(self.db, Db::Postgres(_)) {
            "FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE jobs SET state = 'active', attempts = attempts + 1, worker_id = $1, lease_until = $2, started_at = $3,
                    updated_at = $3, cancel_requested = FALSE
             WHERE id IN (SELECT id FROM jobs WHERE queue = $4 AND state IN {READY} AND run_at <= $3
                            AND NOT EXISTS (SELECT 1 FROM queue_settings s WHERE s.queue = $4 AND s.paused)
                          ORDER BY priority DESC, id LIMIT $5 {lock})
             RETURNING {COLUMNS}"
        );
        let rows: Vec<JobRow> = with_db!(&self.db, pool => {
            sqlx::query_as(&sql)
                .bind(worker)
                .bind(now + chrono(lease))
                .bind(now)
                .bind(queue)
                .bind(i64::try_from(max).unwrap_or(i64::MAX))
                .fetch_all(pool)
                .await?
        });
        let mut jobs = rows
            .into_iter()
            .map(Job::try_from)
            .collect::<Result<Vec<_>>>()?;
        jobs.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
        Ok(jobs)
    }

    async fn heartbeat(
        &self,
        worker: &str,
        ids: &[JobId],
        lease: Duration,
    ) -> Result<Vec<(bool, bool)>> {
        let _w = self.write_lock().await;
        let now = self.clock.now();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let cancel: Option<bool> = with_db!(&self.db, pool => {
                sqlx::query_scalar(
                    "UPDATE jobs SET lease_until = $3, updated_at = $4 WHERE id = $1 AND worker_id = $2 AND state = 'active' RETURNING cancel_requested",
                )
                .bind(id.as_str())
                .bind(worker)
                .bind(now + chrono(lease))
                .bind(now)
                .fetch_optional(pool)
                .await?
            });
            out.push(cancel.map_or((false, false), |c| (true, c)));
        }
        Ok(out)
    }

    async fn progress(
        &self,
        id: &JobId,
        worker: &str,
        percent: i32,
        message: Option<&str>,
    ) -> Result<()> {
        let _w = self.write_lock().await;
        let now = self.clock.now();
        let done = with_db!(&self.db, pool => {
            sqlx::query("UPDATE jobs SET progress = $3, progress_message = $4, updated_at = $5 WHERE id = $1 AND worker_id = $2 AND state = 'active'")
                .bind(id.as_str())
                .bind(worker)
                .bind(percent.clamp(0, 100))
                .bind(message.map(|m| m.chars().take(500).collect::<String>()))
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if done == 1 {
            Ok(())
        } else {
            Err(QueueError::LeaseLost)
        }
    }

    async fn complete(&self, id: &JobId, worker: &str, result: Value) -> Result<()> {
        self.complete_many(worker, vec![(id.clone(), result)])
            .await?
            .pop()
            .unwrap_or(Err(QueueError::LeaseLost))
    }

    async fn complete_many(
        &self,
        worker: &str,
        done: Vec<(JobId, Value)>,
    ) -> Result<Vec<Result<()>>> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let _w = self.write_lock().await;
        let now = self.clock.now();
        let completed: HashSet<String> = match &self.db {
            // One statement: update the batch, write its attempt rows, return what was held.
            Db::Postgres(pool) => {
                let ids: Vec<&str> = done.iter().map(|(id, _)| id.as_str()).collect();
                let results: Vec<String> = done.iter().map(|(_, r)| r.to_string()).collect();
                let rows: Vec<String> = sqlx::query_scalar(
                    "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[]) AS v(id, result)),
                     done AS (UPDATE jobs j SET state = 'completed', result = v.result::jsonb, progress = 100, worker_id = NULL,
                                     lease_until = NULL, updated_at = $4, finished_at = $4
                              FROM v WHERE j.id = v.id AND j.id = ANY($1) AND j.worker_id = $3 AND j.state = 'active'
                              RETURNING j.id, j.attempts, j.started_at),
                     ins AS (INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at, outcome)
                             SELECT id, attempts, $3, COALESCE(started_at, $4), $4, 'completed' FROM done ON CONFLICT DO NOTHING)
                     SELECT id FROM done",
                )
                .bind(&ids)
                .bind(&results)
                .bind(worker)
                .bind(now)
                .fetch_all(pool)
                .await?;
                rows.into_iter().collect()
            }
            // The single writer: one transaction for the batch.
            Db::Sqlite(pool) => {
                let mut tx = pool.begin_write().await?;
                let mut held = HashSet::new();
                for (id, result) in &done {
                    let row: Option<(i32, Option<DateTime<Utc>>)> = sqlx::query_as(
                        "UPDATE jobs SET state = 'completed', result = $3, progress = 100, worker_id = NULL, lease_until = NULL, updated_at = $4, finished_at = $4
                         WHERE id = $1 AND worker_id = $2 AND state = 'active' RETURNING attempts, started_at",
                    )
                    .bind(id.as_str())
                    .bind(worker)
                    .bind(Json(result))
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some((attempt, started_at)) = row {
                        sqlx::query(
                            "INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at, outcome) VALUES ($1, $2, $3, $4, $5, 'completed')
                             ON CONFLICT DO NOTHING",
                        )
                        .bind(id.as_str())
                        .bind(attempt)
                        .bind(worker)
                        .bind(started_at.unwrap_or(now))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        held.insert(id.as_str().to_owned());
                    }
                }
                tx.commit().await?;
                held
            }
        };
        Ok(done
            .iter()
            .map(|(id, _)| {
                if completed.contains(id.as_str()) {
                    Ok(())
                } else {
                    Err(QueueError::LeaseLost)
                }
            })
            .collect())
    }

    async fn fail(
        &self,
        id: &JobId,
        worker: &str,
        failure: &JobFailure,
        jitter: f64,
    ) -> Result<FailOutcome> {
        let _w = self.write_lock().await;
        self.finish_attempt(id, Some(worker), failure, jitter, self.clock.now())
            .await?
            .ok_or(QueueError::LeaseLost)
    }

    async fn release(&self, id: &JobId, worker: &str) -> Result<()> {
        let queue: Option<String> = {
            let _w = self.write_lock().await;
            let now = self.clock.now();
            with_db!(&self.db, pool => {
                sqlx::query_scalar(
                    "UPDATE jobs SET state = 'waiting', attempts = attempts - 1, worker_id = NULL, lease_until = NULL, run_at = $3, updated_at = $3
                     WHERE id = $1 AND worker_id = $2 AND state = 'active' RETURNING queue",
                )
                .bind(id.as_str())
                .bind(worker)
                .bind(now)
                .fetch_optional(pool)
                .await?
            })
        };
        let queue = queue.ok_or(QueueError::LeaseLost)?;
        self.signal(&queue).await;
        Ok(())
    }

    async fn recover_expired(&self) -> Result<u64> {
        let _w = self.write_lock().await;
        let now = self.clock.now();
        let expired: Vec<String> = with_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT id FROM jobs WHERE state = 'active' AND lease_until < $1 ORDER BY id LIMIT 1000").bind(now).fetch_all(pool).await?
        });
        let mut n = 0;
        for id in expired {
            let id: JobId = id
                .try_into()
                .map_err(|e: crate::ids::IdError| QueueError::Invalid(e.to_string()))?;
            let failure = JobFailure::lease_lost();
            // The lease is part of the attempt: retry right away rather than after a backoff.
            if self
                .finish_attempt(&id, None, &failure, 0.0, now)
                .await?
                .is_some()
            {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn finish_cancelled(&self, id: &JobId, worker: &str) -> Result<()> {
        let _w = self.write_lock().await;
        let now = self.clock.now();
        let done = with_db!(&self.db, pool => {
            sqlx::query(
                "UPDATE jobs SET state = 'cancelled', worker_id = NULL, lease_until = NULL, updated_at = $3, finished_at = $3
                 WHERE id = $1 AND worker_id = $2 AND state = 'active'",
            )
            .bind(id.as_str())
            .bind(worker)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 1 {
            Ok(())
        } else {
            Err(QueueError::LeaseLost)
        }
    }
}

#[async_trait]
impl QueueAdmin for SqlQueue {
    async fn cancel(&self, id: &JobId) -> Result<CancelOutcome> {
        let _w = self.write_lock().await;
        let now = self.clock.now();
        let cancelled = with_db!(&self.db, pool => {
            sqlx::query(&format!("UPDATE jobs SET state = 'cancelled', updated_at = $2, finished_at = $2 WHERE id = $1 AND state IN {READY}"))
                .bind(id.as_str())
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if cancelled == 1 {
            return Ok(CancelOutcome::Cancelled);
        }
        let requested = with_db!(&self.db, pool => {
            sqlx::query("UPDATE jobs SET cancel_requested = TRUE, updated_at = $2 WHERE id = $1 AND state = 'active'")
                .bind(id.as_str())
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if requested == 1 {
            return Ok(CancelOutcome::Requested);
        }
        Err(QueueError::WrongState(self.state_of(id).await?))
    }

    async fn get(&self, id: &JobId) -> Result<Job> {
        let row: Option<JobRow> = with_db!(&self.db, pool => {
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1")).bind(id.as_str()).fetch_optional(pool).await?
        });
        row.ok_or(QueueError::NotFound)?.try_into()
    }

    async fn counts(&self, queue: &str) -> Result<Counts> {
        let rows: Vec<(String, i64)> = with_db!(&self.db, pool => {
            sqlx::query_as("SELECT state, COUNT(*) FROM jobs WHERE queue = $1 GROUP BY state").bind(queue).fetch_all(pool).await?
        });
        let mut c = Counts::default();
        for (state, n) in rows {
            c.add(state.parse()?, u64::try_from(n).unwrap_or(0));
        }
        Ok(c)
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<()> {
        let _w = self.write_lock().await;
        let now = self.clock.now();
        with_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO queue_settings (queue, paused, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (queue) DO UPDATE SET paused = $2, updated_at = $3",
            )
            .bind(queue)
            .bind(paused)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    async fn is_paused(&self, queue: &str) -> Result<bool> {
        let p: Option<bool> = with_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT paused FROM queue_settings WHERE queue = $1").bind(queue).fetch_optional(pool).await?
        });
        Ok(p.unwrap_or(false))
    }

    async fn queue_names(&self) -> Result<Vec<String>> {
        Ok(with_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT DISTINCT queue FROM jobs UNION SELECT queue FROM queue_settings ORDER BY 1").fetch_all(pool).await?
        }))
    }

    async fn list(
        &self,
        filter: &JobFilter,
        limit: usize,
        before: Option<&JobId>,
    ) -> Result<Vec<Job>> {
        // The payload match is the one dialect split: `#>>` on PostgreSQL's JSONB, `json_extract`
        // on SQLite (whose booleans come out as 1/0, hence the `json_type` case).
        let (payload_sql, path) = match (&filter.payload, &self.db) {
            (None, _) => ("TRUE", None),
            (Some(m), Db::Postgres(_)) => ("payload #>> CAST($7 AS TEXT[]) = $8", Some(m.pg_path())),
            (Some(m), Db::Sqlite(_)) => (
                "(CASE json_type(payload, $7) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(json_extract(payload, $7) AS TEXT) END) = $8",
                Some(m.sqlite_path()),
            ),
        };
        let value = filter.payload.as_ref().map(|m| m.value.clone());
        let rows: Vec<JobRow> = with_db!(&self.db, pool => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE queue = $1 AND state = $2 AND ($3 IS NULL OR kind = $3)
                   AND ($4 IS NULL OR error_fingerprint = $4) AND ($5 IS NULL OR id < $5)
                   AND ($7 IS NULL OR {payload_sql}) AND ($9 IS NULL OR created_at >= $9)
                   AND ($10 IS NULL OR created_at < $10)
                 ORDER BY id DESC LIMIT $6"
            ))
            .bind(&filter.queue)
            .bind(filter.state.as_str())
            .bind(&filter.kind)
            .bind(&filter.fingerprint)
            .bind(before.map(JobId::as_str))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(&path)
            .bind(&value)
            .bind(filter.created_after)
            .bind(filter.created_before)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(Job::try_from).collect()
    }

    async fn attempts(&self, id: &JobId) -> Result<Vec<Attempt>> {
        let rows: Vec<AttemptLogRow> = with_db!(&self.db, pool => {
            sqlx::query_as("SELECT attempt, worker_id, started_at, finished_at, outcome, error, error_fingerprint FROM job_attempts WHERE job_id = $1 ORDER BY attempt")
                .bind(id.as_str())
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| Attempt {
                attempt: u32::try_from(r.attempt).unwrap_or(0),
                worker_id: r.worker_id,
                started_at: r.started_at,
                finished_at: r.finished_at,
                outcome: r.outcome.unwrap_or_default(),
                error: r.error,
                fingerprint: r.error_fingerprint,
            })
            .collect())
    }

    async fn retry(&self, id: &JobId) -> Result<()> {
        let queue: Option<String> = {
            let _w = self.write_lock().await;
            let now = self.clock.now();
            let result = with_db!(&self.db, pool => {
                sqlx::query_scalar(
                    "UPDATE jobs SET state = 'waiting', attempts = 0, run_at = $2, updated_at = $2, finished_at = NULL, cancel_requested = FALSE
                     WHERE id = $1 AND state IN ('dead', 'cancelled') RETURNING queue",
                )
                .bind(id.as_str())
                .bind(now)
                .fetch_optional(pool)
                .await
            });
            match result {
                Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                    return Err(QueueError::Invalid(
                        "another job with the same unique key is waiting or running".into(),
                    ));
                }
                other => other?,
            }
        };
        match queue {
            Some(q) => {
                self.signal(&q).await;
                Ok(())
            }
            None => Err(QueueError::WrongState(self.state_of(id).await?)),
        }
    }

    async fn promote(&self, id: &JobId) -> Result<()> {
        let done = {
            let _w = self.write_lock().await;
            let now = self.clock.now();
            let queue: Option<String> = with_db!(&self.db, pool => {
                sqlx::query_scalar("UPDATE jobs SET state = 'waiting', run_at = $2, updated_at = $2 WHERE id = $1 AND state IN ('delayed', 'retrying') RETURNING queue")
                    .bind(id.as_str())
                    .bind(now)
                    .fetch_optional(pool)
                    .await?
            });
            queue
        };
        if let Some(q) = done {
            self.signal(&q).await;
            Ok(())
        } else {
            Err(QueueError::WrongState(self.state_of(id).await?))
        }
    }

    async fn discard(&self, id: &JobId) -> Result<()> {
        let done = {
            let _w = self.write_lock().await;
            with_db!(&self.db, pool => {
                sqlx::query("DELETE FROM jobs WHERE id = $1 AND state <> 'active'").bind(id.as_str()).execute(pool).await?.rows_affected()
            })
        };
        if done == 1 {
            Ok(())
        } else {
            Err(QueueError::WrongState(self.state_of(id).await?))
        }
    }

    async fn dead_groups(&self, queue: &str) -> Result<Vec<DeadGroup>> {
        let rows: Vec<DeadGroupRow> = with_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT COALESCE(error_fingerprint, '') AS fingerprint, MIN(kind) AS kind, COUNT(*) AS count, MIN(updated_at) AS first_seen,
                        MAX(updated_at) AS last_seen, COALESCE(MAX(last_error), '') AS sample_error
                 FROM jobs WHERE queue = $1 AND state = 'dead' GROUP BY error_fingerprint ORDER BY COUNT(*) DESC, MAX(updated_at) DESC LIMIT 500",
            )
            .bind(queue)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| DeadGroup {
                fingerprint: r.fingerprint,
                kind: r.kind,
                count: u64::try_from(r.count).unwrap_or(0),
                first_seen: r.first_seen,
                last_seen: r.last_seen,
                sample_error: r.sample_error,
            })
            .collect())
    }

    async fn purge(
        &self,
        queue: &str,
        state: JobState,
        before: DateTime<Utc>,
        at_most: u64,
    ) -> Result<u64> {
        if !state.is_finished() {
            return Err(QueueError::Invalid(format!(
                "only finished jobs are purged, not {state} ones"
            )));
        }
        let _w = self.write_lock().await;
        Ok(with_db!(&self.db, pool => {
            sqlx::query(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE queue = $1 AND state = $2 AND finished_at < $3
                 ORDER BY finished_at LIMIT $4)",
            )
            .bind(queue)
            .bind(state.as_str())
            .bind(before)
            .bind(i64::try_from(at_most).unwrap_or(i64::MAX))
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }

    async fn count_finished(
        &self,
        queue: &str,
        state: JobState,
        before: DateTime<Utc>,
    ) -> Result<u64> {
        let n: i64 = with_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE queue = $1 AND state = $2 AND finished_at < $3")
                .bind(queue)
                .bind(state.as_str())
                .bind(before)
                .fetch_one(pool)
                .await?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn enqueue_audited(&self, job: NewJob, audit: Audited<'_>) -> Result<JobId> {
        job.validate_audited()?;
        let id = {
            let _w = self.write_lock().await;
            let now = self.clock.now();
            let id = JobId::new(now);
            let mut entry = audit.entry;
            entry.detail["job_id"] = serde_json::json!(id.as_str());
            with_db!(&self.db, pool => {
                let mut tx = pool.begin_write().await?;
                insert_job!(&job, &id, JobState::Waiting, now, now)
                    .fetch_optional(&mut *tx)
                    .await?;
                crate::record_on!(&mut *tx, audit.at, audit.actor, entry)?;
                tx.commit().await?;
            });
            id
        };
        self.metrics.enqueued(&job.queue, 1);
        self.wakeups.wake(&job.queue);
        Ok(id)
    }

    async fn trim(&self, queue: &str, state: JobState, keep: u64) -> Result<u64> {
        if !state.is_finished() {
            return Err(QueueError::Invalid(format!(
                "only finished jobs are trimmed, not {state} ones"
            )));
        }
        let _w = self.write_lock().await;
        Ok(with_db!(&self.db, pool => {
            sqlx::query(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE queue = $1 AND state = $2 ORDER BY id DESC LIMIT 100000 OFFSET $3)",
            )
            .bind(queue)
            .bind(state.as_str())
            .bind(i64::try_from(keep).unwrap_or(i64::MAX))
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }
}
