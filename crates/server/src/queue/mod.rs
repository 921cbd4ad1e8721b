//! Background jobs: the `JobQueue` seam and what every backend shares.
//!
//! Semantics (on every backend, checked by one conformance suite):
//! - named queues; a job has a kind, a JSON payload, a priority (higher first, FIFO within a
//!   priority), a `run_at` (delayed jobs), attempts / max attempts, exponential backoff with full
//!   jitter, an optional unique key (deduplicated while a job with it is waiting or active),
//!   progress, a result, the last error and its fingerprint, a correlation id;
//! - states `waiting`, `delayed`, `active`, `completed`, `retrying` (failed, will retry), `dead`
//!   (the dead-letter queue) and `cancelled`;
//! - at-least-once execution with leases: fetching a job makes it `active` under a worker's lease
//!   and counts an attempt; the worker's heartbeat extends the lease; a job whose lease runs out
//!   (its worker died) is ready again, or dead if it has no attempts left;
//! - releasing a job (graceful shutdown) makes it ready at once without counting the attempt.
//!
//! This module knows no backend; `sql.rs` is the embedded default (PostgreSQL or SQLite).

pub mod bulk;
pub mod metrics;
pub mod rate;
pub mod redis;
pub mod retention;
pub mod routes;
pub mod sql;
pub mod worker;

use crate::ids::JobId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::Duration;

pub type Result<T, E = QueueError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue `{queue}` is full ({limit} jobs waiting)")]
    Full { queue: String, limit: u64 },
    #[error("{0}")]
    Invalid(String),
    #[error("job not found")]
    NotFound,
    /// The worker no longer holds the job (its lease ran out and another worker may have it).
    #[error("the lease on this job was lost")]
    LeaseLost,
    #[error("job is {0}, which does not allow this")]
    WrongState(JobState),
    #[error("queue backend unavailable: {0}")]
    Backend(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A long operation was told to stop (its job cancelled or its worker shutting down).
    #[error("stopped before the end")]
    Stopped,
}

/// Where a job is in its life.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
    strum::Display,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case", parse_err_ty = QueueError, parse_err_fn = unknown_state)]
pub enum JobState {
    Waiting,
    Delayed,
    Active,
    Completed,
    /// Failed; will run again at `run_at`.
    Retrying,
    /// Out of attempts: the dead-letter queue.
    Dead,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// States a job can be fetched from (once its `run_at` has come).
    pub fn is_ready_state(self) -> bool {
        matches!(self, Self::Waiting | Self::Delayed | Self::Retrying)
    }

    /// Completed, dead or cancelled: nothing will happen to the job any more by itself.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Dead | Self::Cancelled)
    }
}

fn unknown_state(s: &str) -> QueueError {
    QueueError::Invalid(format!(
        "unknown job state `{}`",
        s.chars().take(40).collect::<String>()
    ))
}

/// Exponential backoff with full jitter: the n-th retry waits a uniformly random time in
/// `[0, min(cap, base · 2^(n-1))]` (AWS's "full jitter", which spreads retries best).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The ceiling of the wait before retry number `attempt` (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A jittered wait before retry number `attempt`, from `unit` in `[0, 1)`.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub queue: String,
    pub kind: String,
    pub payload: Value,
    pub priority: i32,
    /// Run no earlier than this (a delayed job); now when `None`.
    pub run_at: Option<DateTime<Utc>>,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub unique_key: Option<String>,
    pub correlation_id: Option<String>,
}

impl NewJob {
    pub fn new(queue: &str, kind: &str, payload: Value) -> Self {
        Self {
            queue: queue.into(),
            kind: kind.into(),
            payload,
            priority: 0,
            run_at: None,
            max_attempts: 3,
            backoff: Backoff::default(),
            unique_key: None,
            correlation_id: None,
        }
    }

    /// [`NewJob::validate`], and what [`QueueAdmin::enqueue_audited`] asks more: the job runs
    /// now and has no unique key (so it is always created, with its audit entry).
    pub fn validate_audited(&self) -> Result<()> {
        self.validate()?;
        if self.unique_key.is_some() || self.run_at.is_some() {
            return Err(QueueError::Invalid(
                "an audited job runs now and has no unique key".into(),
            ));
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<()> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
        };
        if !name_ok(&self.queue) {
            return Err(QueueError::Invalid(format!(
                "queue name `{}` must be 1-64 of [A-Za-z0-9_-.:]",
                self.queue
            )));
        }
        if !name_ok(&self.kind) {
            return Err(QueueError::Invalid(format!(
                "job kind `{}` must be 1-64 of [A-Za-z0-9_-.:]",
                self.kind
            )));
        }
        if !(1..=100).contains(&self.max_attempts) {
            return Err(QueueError::Invalid(
                "max_attempts must be between 1 and 100".into(),
            ));
        }
        if !(-1000..=1000).contains(&self.priority) {
            return Err(QueueError::Invalid(
                "priority must be between -1000 and 1000".into(),
            ));
        }
        if self
            .unique_key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > 256)
        {
            return Err(QueueError::Invalid(
                "unique_key must have 1 to 256 characters".into(),
            ));
        }
        if serde_json::to_vec(&self.payload)
            .map(|v| v.len())
            .unwrap_or(usize::MAX)
            > 256 * 1024
        {
            return Err(QueueError::Invalid(
                "the payload must be at most 256 KiB of JSON".into(),
            ));
        }
        Ok(())
    }
}

/// What enqueueing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    Created(JobId),
    /// A job with the same unique key is waiting or active already: this one.
    Duplicate(JobId),
}

impl Enqueued {
    pub fn id(&self) -> &JobId {
        match self {
            Enqueued::Created(id) | Enqueued::Duplicate(id) => id,
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub id: JobId,
    pub queue: String,
    pub kind: String,
    pub payload: Value,
    pub priority: i32,
    pub state: JobState,
    pub run_at: DateTime<Utc>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub unique_key: Option<String>,
    pub correlation_id: Option<String>,
    pub progress: i32,
    pub progress_message: Option<String>,
    pub result: Option<Value>,
    pub last_error: Option<String>,
    pub error_fingerprint: Option<String>,
    pub worker_id: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Why a job failed: the message and where (a handler names the step), for the fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    pub message: String,
    pub location: String,
    /// `false` sends the job to the dead-letter queue at once (a permanent error).
    pub retryable: bool,
}

impl JobFailure {
    pub fn retryable(location: &str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            location: location.into(),
            retryable: true,
        }
    }

    pub fn permanent(location: &str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            location: location.into(),
            retryable: false,
        }
    }

    /// The failure recorded when a worker stopped renewing a job's lease (it died or hung).
    pub fn lease_lost() -> Self {
        Self::retryable(
            LEASE_LOST_AT,
            "the worker stopped renewing its lease (it died or hung)",
        )
    }

    /// Groups failures that are the same problem: the message with numbers, ids, hex and quoted
    /// values replaced by placeholders, plus the job kind and the location, hashed.
    pub fn fingerprint(&self, kind: &str) -> String {
        // Lost leases are one problem whatever the job: one group per queue, on every backend.
        let kind = if self.location == LEASE_LOST_AT {
            "*"
        } else {
            kind
        };
        let normalised = normalise_message(&self.message);
        let digest = Sha256::digest(format!("{kind}\0{}\0{normalised}", self.location).as_bytes());
        hex::encode(&digest[..8])
    }
}

const LEASE_LOST_AT: &str = "queue.lease";

/// `connection to 10.0.0.7:5432 refused after 3012 ms` → `connection to <n>.<n>.<n>.<n>:<n> refused after <n> ms`.
pub fn normalise_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for word in msg.split_inclusive(|c: char| c.is_whitespace()) {
        let (token, ws) = match word.char_indices().last() {
            Some((i, c)) if c.is_whitespace() => (&word[..i], &word[i..]),
            _ => (word, ""),
        };
        let quoted = token.len() >= 2
            && ((token.starts_with('"') && token.ends_with('"'))
                || (token.starts_with('\'') && token.ends_with('\''))
                || (token.starts_with('`') && token.ends_with('`')));
        let is_id = token.len() > 20
            && token.contains('_')
            && token.rsplit('_').next().is_some_and(|b| b.len() == 26);
        let hex = token.strip_prefix("0x").unwrap_or(token);
        let is_hex = hex.len() >= 8 && hex.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        if quoted {
            out.push_str("<s>");
        } else if is_id {
            out.push_str("<id>");
        } else if is_hex && hex.chars().any(|c| c.is_ascii_digit()) {
            out.push_str("<hex>");
        } else {
            let mut in_digits = false;
            for c in token.chars() {
                if c.is_ascii_digit() {
                    if !in_digits {
                        out.push_str("<n>");
                    }
                    in_digits = true;
                } else {
                    in_digits = false;
                    out.push(c);
                }
            }
        }
        out.push_str(ws);
    }
    out
}

/// What a failure did to the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailOutcome {
    WillRetry { at: DateTime<Utc> },
    Dead,
}

/// What cancelling did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was waiting: it will never run.
    Cancelled,
    /// It is running: its handler has been asked to stop.
    Requested,
}

/// The plan's named queues (more can be added by code; they get `QueuePolicy::default()`).
pub const QUEUES: &[&str] = &[
    "render",
    "email",
    "webhook",
    "cleanup",
    "analytics",
    "storage",
];

/// Per-queue limits and policies (configured per queue, see `config.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct QueuePolicy {
    /// Most jobs waiting (waiting, delayed or retrying) before enqueueing answers `Full`.
    pub max_waiting: u64,
    /// Jobs of this queue one worker process runs at once.
    pub concurrency: usize,
    /// Attempts and backoff of the jobs this process enqueues through `QueuePolicy::job`.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Most jobs one worker process starts per second (`None`: as fast as they come).
    pub rate_per_s: Option<f64>,
    /// How long one attempt may run before it fails with `timeout` (and is retried).
    pub timeout: Duration,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        Self {
            max_waiting: 100_000,
            concurrency: 1,
            max_attempts: 3,
            backoff: Backoff::default(),
            rate_per_s: None,
            timeout: Duration::from_secs(300),
        }
    }
}

impl QueuePolicy {
    /// The defaults of the plan's queues, before configuration.
    pub fn defaults_for(queue: &str) -> Self {
        let secs = Duration::from_secs;
        let (concurrency, max_attempts, base, cap, max_waiting, timeout) = match queue {
            // Renders are heavy (CPU or a paid provider): few at once, a bounded backlog; a
            // Creatomate render polls for up to 30 minutes.
            "render" => (2, 3, secs(5), secs(600), 10_000, secs(2400)),
            "email" => (10, 5, secs(2), secs(3600), 100_000, secs(60)),
            // Receivers go down for hours; retry for about a day.
            "webhook" => (10, 8, secs(5), secs(6 * 3600), 100_000, secs(60)),
            // Retention and operators' bulk jobs: two at once, so one never waits for the other.
            "cleanup" => (2, 3, secs(10), secs(600), 1_000, secs(3600)),
            "analytics" => (4, 5, secs(1), secs(600), 100_000, secs(300)),
            // Copies to the backup bucket: one per write, and one per removal parked for the
            // keep-deleted period (a week of removals waits here); an outage of the backup bucket
            // is retried for about a day.
            "storage" => (4, 12, secs(10), secs(3 * 3600), 10_000_000, secs(3600)),
            _ => return Self::default(),
        };
        Self {
            max_waiting,
            concurrency,
            max_attempts,
            backoff: Backoff { base, cap },
            rate_per_s: None,
            timeout,
        }
    }

    /// A new job for `queue` with this policy's attempts and backoff.
    pub fn job(&self, queue: &str, kind: &str, payload: Value) -> NewJob {
        let mut job = NewJob::new(queue, kind, payload);
        job.max_attempts = self.max_attempts;
        job.backoff = self.backoff;
        job
    }
}

/// Job counts by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub waiting: u64,
    pub delayed: u64,
    pub active: u64,
    pub completed: u64,
    pub retrying: u64,
    pub dead: u64,
    pub cancelled: u64,
}

impl From<Counts> for airwave_api::QueueCountsOut {
    fn from(c: Counts) -> Self {
        Self {
            waiting: c.waiting,
            delayed: c.delayed,
            active: c.active,
            completed: c.completed,
            retrying: c.retrying,
            dead: c.dead,
            cancelled: c.cancelled,
        }
    }
}

/// The plan's queues (listed even before their first job), then any other the backend has seen.
pub async fn all_queue_names(queue: &dyn QueueAdmin) -> Result<Vec<String>> {
    let mut names: Vec<String> = QUEUES.iter().map(|q| q.to_string()).collect();
    for q in queue.queue_names().await? {
        if !names.contains(&q) {
            names.push(q);
        }
    }
    Ok(names)
}

impl Counts {
    pub fn add(&mut self, state: JobState, n: u64) {
        let slot = match state {
            JobState::Waiting => &mut self.waiting,
            JobState::Delayed => &mut self.delayed,
            JobState::Active => &mut self.active,
            JobState::Completed => &mut self.completed,
            JobState::Retrying => &mut self.retrying,
            JobState::Dead => &mut self.dead,
            JobState::Cancelled => &mut self.cancelled,
        };
        *slot += n;
    }

    pub fn pending(&self) -> u64 {
        self.waiting + self.delayed + self.retrying
    }
}

/// The job queue seam, worker side: what producers and workers use. Every method takes the
/// current time from the backend's clock, so tests move time instead of sleeping.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// `sql` or `redis`.
    fn backend(&self) -> &'static str;

    /// The configured policy of `queue` (the default policy for a queue nobody configured).
    fn policy(&self, queue: &str) -> QueuePolicy;

    /// This process's per-queue metrics (enqueues are counted by the backend, finished
    /// attempts by the worker).
    fn metrics(&self) -> &std::sync::Arc<metrics::Metrics>;

    /// Adds a job (or finds the waiting/active one with the same unique key).
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued>;

    /// Adds many jobs in one round trip where the backend allows.
    async fn enqueue_bulk(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>>;

    /// Takes up to `max` ready jobs of `queue` for `worker`, under a lease of `lease`; each
    /// counts an attempt. Nothing when the queue is paused.
    async fn fetch(
        &self,
        queue: &str,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Job>>;

    /// Extends the leases `worker` holds on `ids`. Returns, per id, whether the lease is still
    /// held and whether cancellation was requested: `(held, cancel_requested)`.
    async fn heartbeat(
        &self,
        worker: &str,
        ids: &[JobId],
        lease: Duration,
    ) -> Result<Vec<(bool, bool)>>;

    /// Records progress (0–100) of a job `worker` holds.
    async fn progress(
        &self,
        id: &JobId,
        worker: &str,
        percent: i32,
        message: Option<&str>,
    ) -> Result<()>;

    /// Marks a job `worker` holds completed with its result.
    async fn complete(&self, id: &JobId, worker: &str, result: Value) -> Result<()>;

    /// Marks many jobs `worker` holds completed, in as few round trips as the backend allows
    /// (workers batch their acknowledgements through it). Per job, in order: `Ok` or
    /// `Err(LeaseLost)`; any other error fails the whole call.
    async fn complete_many(
        &self,
        worker: &str,
        done: Vec<(JobId, Value)>,
    ) -> Result<Vec<Result<()>>> {
        let mut out = Vec::with_capacity(done.len());
        for (id, result) in done {
            out.push(match self.complete(&id, worker, result).await {
                Ok(()) => Ok(()),
                Err(QueueError::LeaseLost) => Err(QueueError::LeaseLost),
                Err(e) => return Err(e),
            });
        }
        Ok(out)
    }

    /// Records a failed attempt: retry after the backoff, or dead when out of attempts (or when
    /// the failure is permanent). `jitter` in `[0, 1)` picks the wait within the backoff.
    async fn fail(
        &self,
        id: &JobId,
        worker: &str,
        failure: &JobFailure,
        jitter: f64,
    ) -> Result<FailOutcome>;

    /// Gives a job back without counting the attempt (graceful shutdown): ready at once.
    async fn release(&self, id: &JobId, worker: &str) -> Result<()>;

    /// Makes jobs whose lease ran out ready again (or dead when out of attempts). Returns how many.
    async fn recover_expired(&self) -> Result<u64>;

    /// Marks a cancelled running job as finished (its handler stopped).
    async fn finish_cancelled(&self, id: &JobId, worker: &str) -> Result<()>;

    /// Relays other processes' "work is ready" signals to this process's idle workers until
    /// `stop` (PostgreSQL `LISTEN`, Redis pub/sub), reconnecting by itself. Returns at once on a
    /// backend without such signals (SQLite: one process owns the file).
    async fn listen_for_work(&self, stop: tokio_util::sync::CancellationToken) {
        let _ = stop;
    }

    /// Waits until work may be ready in `queue` (something was enqueued or released in this
    /// process, or another process signalled it), or `at_most` passes. Workers call it when idle; the timeout covers other
    /// processes and delayed jobs coming due.
    async fn wait_for_work(&self, queue: &str, at_most: Duration) {
        let _ = queue;
        tokio::time::sleep(at_most).await;
    }
}

/// What operators use: inspect, list and change jobs and queues (the operator API, retention,
/// the health checker).
#[async_trait]
pub trait QueueAdmin: Send + Sync {
    /// Cancels a waiting job, or asks a running one to stop.
    async fn cancel(&self, id: &JobId) -> Result<CancelOutcome>;

    async fn get(&self, id: &JobId) -> Result<Job>;

    async fn counts(&self, queue: &str) -> Result<Counts>;

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<()>;

    async fn is_paused(&self, queue: &str) -> Result<bool>;

    /// Every queue that has (or had) jobs or settings.
    async fn queue_names(&self) -> Result<Vec<String>>;

    /// Jobs of `queue` in `state`, newest first, optionally of one kind or error fingerprint,
    /// after the cursor `before` (a job id).
    async fn list(
        &self,
        filter: &JobFilter,
        limit: usize,
        before: Option<&JobId>,
    ) -> Result<Vec<Job>>;

    /// A job's finished attempts, oldest first.
    async fn attempts(&self, id: &JobId) -> Result<Vec<Attempt>>;

    /// Runs a dead or cancelled job again from scratch (attempts start over).
    async fn retry(&self, id: &JobId) -> Result<()>;

    /// Makes a delayed or retrying job ready now.
    async fn promote(&self, id: &JobId) -> Result<()>;

    /// Deletes a job that is not running.
    async fn discard(&self, id: &JobId) -> Result<()>;

    /// The dead-letter queue grouped by error fingerprint, largest group first.
    async fn dead_groups(&self, queue: &str) -> Result<Vec<DeadGroup>>;

    /// Deletes at most `at_most` jobs of `queue` in a finished `state` (completed, dead or
    /// cancelled) that finished before `before`, oldest first. Returns how many
    /// ([`bulk::purge_all`] deletes them all, batch by batch).
    async fn purge(
        &self,
        queue: &str,
        state: JobState,
        before: DateTime<Utc>,
        at_most: u64,
    ) -> Result<u64>;

    /// How many jobs of `queue` in a finished `state` finished before `before`.
    async fn count_finished(
        &self,
        queue: &str,
        state: JobState,
        before: DateTime<Utc>,
    ) -> Result<u64>;

    /// Enqueues an operator's job together with its audit entry: in one transaction where the
    /// queue lives in the audit log's database (SQL); where it cannot (Redis), the entry is
    /// written first, so no job ever runs unaudited.
    async fn enqueue_audited(&self, job: NewJob, audit: Audited<'_>) -> Result<JobId>;

    /// Keeps only the newest `keep` jobs of `queue` in a finished `state`; deletes the rest
    /// (at most 100 000 a call). Returns how many.
    async fn trim(&self, queue: &str, state: JobState, keep: u64) -> Result<u64>;
}

/// The audit entry of an operator's job ([`QueueAdmin::enqueue_audited`]).
pub struct Audited<'a> {
    /// The database holding the audit log.
    pub db: &'a crate::db::Db,
    pub at: DateTime<Utc>,
    pub actor: &'a crate::audit::Actor,
    pub entry: crate::audit::Entry<'a>,
}

/// The whole seam: every backend is both. Workers and producers take [`WorkQueue`], the
/// operator side [`QueueAdmin`].
pub trait JobQueue: WorkQueue + QueueAdmin {}

impl<T: WorkQueue + QueueAdmin + ?Sized> JobQueue for T {}

/// Which jobs to list.
#[derive(Debug, Clone)]
pub struct JobFilter {
    pub queue: String,
    pub state: JobState,
    pub kind: Option<String>,
    pub fingerprint: Option<String>,
    /// Only jobs whose payload has this value at this path.
    pub payload: Option<PayloadMatch>,
    /// Only jobs created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only jobs created before this time.
    pub created_before: Option<DateTime<Utc>>,
}

impl JobFilter {
    pub fn new(queue: &str, state: JobState) -> Self {
        Self {
            queue: queue.into(),
            state,
            kind: None,
            fingerprint: None,
            payload: None,
            created_after: None,
            created_before: None,
        }
    }

    /// Whether `job` passes every filter but the queue and state (backends that filter in
    /// process use it; the SQL backend says the same in SQL).
    pub fn matches(&self, job: &Job) -> bool {
        self.kind.as_ref().is_none_or(|k| &job.kind == k)
            && self
                .fingerprint
                .as_ref()
                .is_none_or(|f| job.error_fingerprint.as_ref() == Some(f))
            && self
                .payload
                .as_ref()
                .is_none_or(|m| m.matches(&job.payload))
            && self.created_after.is_none_or(|t| job.created_at >= t)
            && self.created_before.is_none_or(|t| job.created_at < t)
    }
}

/// A payload field and the value it must have: `customer.id=cus_42` matches
/// `{"customer": {"id": "cus_42"}}`. Strings compare as they are; numbers and booleans as their
/// JSON text (`count=3`, `urgent=true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadMatch {
    /// Object keys from the payload's root, each 1–64 of `[A-Za-z0-9_-]`, at most 8.
    pub path: Vec<String>,
    pub value: String,
}

impl std::str::FromStr for PayloadMatch {
    type Err = QueueError;
    fn from_str(s: &str) -> Result<Self, QueueError> {
        let (path, value) = s.split_once('=').ok_or_else(|| {
            QueueError::Invalid(format!(
                "`{s}` is not `field=value` (e.g. `execution_id=exe_…`)"
            ))
        })?;
        let path: Vec<String> = path.split('.').map(str::to_owned).collect();
        let key_ok = |k: &String| {
            (1..=64).contains(&k.len())
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if path.len() > 8 || !path.iter().all(key_ok) {
            return Err(QueueError::Invalid(format!(
                "the payload field must be up to 8 dot-separated keys of [A-Za-z0-9_-] (got `{}`)",
                path.join(".")
            )));
        }
        if value.len() > 1024 {
            return Err(QueueError::Invalid(
                "the payload value must be at most 1024 characters".into(),
            ));
        }
        Ok(Self {
            path,
            value: value.to_owned(),
        })
    }
}

impl PayloadMatch {
    pub fn matches(&self, payload: &Value) -> bool {
        let mut v = payload;
        for key in &self.path {
            match v.get(key) {
                Some(next) => v = next,
                None => return false,
            }
        }
        match v {
            Value::String(s) => *s == self.value,
            // As JSON text: `3`, `3.5`, `true` (not `Value == String`, which only sees strings).
            Value::Number(_) | Value::Bool(_) => {
                let text = v.to_string();
                text == self.value
            }
            _ => false,
        }
    }

    /// The path as PostgreSQL's `#>>` takes it: `{customer,id}`.
    pub fn pg_path(&self) -> String {
        format!("{{{}}}", self.path.join(","))
    }

    /// The path as SQLite's `json_extract` takes it: `$."customer"."id"`.
    pub fn sqlite_path(&self) -> String {
        let mut p = String::from("$");
        for k in &self.path {
            p.push_str(&format!(".\"{k}\""));
        }
        p
    }
}

/// One finished attempt of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    pub worker_id: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: String,
    pub error: Option<String>,
    pub fingerprint: Option<String>,
}

/// Dead jobs that failed the same way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadGroup {
    pub fingerprint: String,
    pub kind: String,
    pub count: u64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub sample_error: String,
}

/// Counts the jobs a (bulk) enqueue created, per queue.
fn count_created(m: &metrics::Metrics, jobs: &[NewJob], out: &[Enqueued]) {
    let mut per_queue: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (j, e) in jobs.iter().zip(out) {
        if matches!(e, Enqueued::Created(_)) {
            *per_queue.entry(j.queue.as_str()).or_default() += 1;
        }
    }
    for (q, n) in per_queue {
        m.enqueued(q, n);
    }
}

/// Wakes this process's idle workers when a queue gets work.
#[derive(Debug, Default)]
pub struct Wakeups {
    notify:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Notify>>>,
}

impl Wakeups {
    fn slot(&self, queue: &str) -> std::sync::Arc<tokio::sync::Notify> {
        let mut m = self.notify.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(queue.to_owned()).or_default().clone()
    }

    pub fn wake(&self, queue: &str) {
        self.slot(queue).notify_waiters();
    }

    /// Wakes every queue a batch of jobs went to.
    pub fn wake_all(&self, jobs: &[NewJob]) {
        let mut queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
        queues.sort_unstable();
        queues.dedup();
        for q in queues {
            self.wake(q);
        }
    }

    pub async fn wait(&self, queue: &str, at_most: Duration) {
        let slot = self.slot(queue);
        let notified = slot.notified();
        let _ = tokio::time::timeout(at_most, notified).await;
    }
}

/// The queue feature: the operator routes, the queue's health component, the listener for other
/// processes' wake-ups, the metrics flusher and retention (a cleanup worker and its schedule).
pub struct Feature;

impl crate::feature::Feature for Feature {
    fn name(&self) -> &'static str {
        "queue"
    }

    fn settings(&self) -> Option<crate::config::settings::Section> {
        Some(settings::section())
    }

    fn routes(&self) -> crate::feature::Routes {
        routes::routes()
    }

    fn health_checks(
        &self,
        b: &crate::feature::Backends,
    ) -> Vec<std::sync::Arc<dyn crate::health::HealthCheck>> {
        vec![std::sync::Arc::new(crate::health::QueueCheck {
            queue: b.queue.clone(),
            warn_after: Duration::from_millis(250),
        })]
    }

    fn tasks(&self, s: &crate::state::AppState) -> Vec<crate::feature::Task> {
        use crate::feature::{Runs, Task, SHUTDOWN_GRACE};
        use std::sync::Arc;
        let mut tasks = Vec::new();
        // Queue metrics are written by every role (the API enqueues too), last of all at exit.
        let (metrics, db, every) = (
            s.queue.metrics().clone(),
            s.db.clone(),
            s.config.queue.metrics_flush,
        );
        tasks.push(Task::new(
            "queue-metrics",
            Runs::EveryRoleStoppedLast,
            move |stop| metrics.clone().run_flusher(db.clone(), stop, every),
        ));
        // Other processes' "work is ready" signals wake this process's idle workers.
        let queue = s.queue.clone();
        tasks.push(Task::new("queue-listener", Runs::Workers, move |stop| {
            let queue = queue.clone();
            async move {
                queue.listen_for_work(stop.clone()).await;
                // Backends without cross-process signals (SQLite) return at once: nothing to do.
                stop.cancelled().await;
            }
        }));
        // The cleanup worker runs retention (scheduled every ten minutes, unique: one at a time) and
        // operators' bulk jobs.
        let mut cleanup =
            worker::Worker::for_queue(s.queue.clone(), retention::QUEUE, s.config.queue.lease);
        for f in s.features.iter() {
            for (kind, handler) in f.cleanup_jobs(s) {
                cleanup = cleanup.handle(kind, handler);
            }
        }
        let cleanup = Arc::new(
            cleanup
                .handle(
                    retention::KIND,
                    Arc::new(retention::RetentionJob {
                        queue: s.queue.clone(),
                        clock: s.clock.clone(),
                        retention: s.config.queue.retention,
                    }),
                )
                .handle(
                    bulk::KIND,
                    Arc::new(bulk::BulkJob {
                        queue: s.queue.clone(),
                    }),
                ),
        );
        tasks.push(Task::new("cleanup-worker", Runs::Workers, move |stop| {
            cleanup.clone().run_until_stopped(stop, SHUTDOWN_GRACE)
        }));
        let queue = s.queue.clone();
        tasks.push(Task::new(
            "retention-schedule",
            Runs::Workers,
            move |stop| {
                let queue = queue.clone();
                async move {
                    while !stop.is_cancelled() {
                        if let Err(e) = queue
                            .enqueue(retention::job(&queue.policy(retention::QUEUE)))
                            .await
                        {
                            tracing::warn!(error = %e, "scheduling the retention job failed");
                        }
                        tokio::select! {
                            () = stop.cancelled() => {}
                            () = tokio::time::sleep(retention::EVERY) => {}
                        }
                    }
                }
            },
        ));
        tasks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters_below_the_ceiling() {
        let b = Backoff {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(30),
        };
        assert_eq!(b.ceiling(1), Duration::from_secs(2));
        assert_eq!(b.ceiling(2), Duration::from_secs(4));
        assert_eq!(b.ceiling(5), Duration::from_secs(30));
        assert_eq!(b.ceiling(500), Duration::from_secs(30));
        assert_eq!(b.delay(3, 0.5), Duration::from_secs(4));
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
    }

    #[test]
    fn fingerprints_group_the_same_error_with_different_values() {
        let a = JobFailure::retryable(
            "render.upload",
            "timeout after 3012 ms talking to 10.0.0.7:9000 for exe_01jz0000000000000000000000",
        );
        let b = JobFailure::retryable(
            "render.upload",
            "timeout after 15 ms talking to 10.0.0.9:9000 for exe_01jz1111111111111111111111",
        );
        let c = JobFailure::retryable("render.upload", "permission denied for 'bucket-a'");
        let d = JobFailure::retryable(
            "render.fetch",
            "timeout after 3012 ms talking to 10.0.0.7:9000 for exe_01jz0000000000000000000000",
        );
        assert_eq!(a.fingerprint("render"), b.fingerprint("render"));
        assert_ne!(a.fingerprint("render"), c.fingerprint("render"));
        assert_ne!(
            a.fingerprint("render"),
            d.fingerprint("render"),
            "the location is part of it"
        );
        assert_eq!(
            normalise_message("got 'x' and \"y\" at 0xdeadbeef01"),
            "got <s> and <s> at <hex>"
        );
    }

    #[test]
    fn payload_matches_compare_strings_numbers_and_booleans() {
        let m = |s: &str| s.parse::<PayloadMatch>().unwrap();
        let p = serde_json::json!({"customer": {"id": "cus_42"}, "count": 3, "urgent": true, "n": null});
        assert!(m("customer.id=cus_42").matches(&p));
        assert!(!m("customer.id=cus_4").matches(&p));
        assert!(m("count=3").matches(&p));
        assert!(m("urgent=true").matches(&p));
        assert!(!m("n=null").matches(&p), "null matches nothing");
        assert!(!m("customer=cus_42").matches(&p), "objects match nothing");
        assert_eq!(m("customer.id=x").pg_path(), "{customer,id}");
        assert_eq!(m("customer.id=x").sqlite_path(), "$.\"customer\".\"id\"");
        assert_eq!(m("a=b=c").value, "b=c");
        for bad in [
            "nofield",
            "=x",
            "a..b=x",
            "a b=x",
            "a.b.c.d.e.f.g.h.i=x",
            "x'=1",
        ] {
            assert!(bad.parse::<PayloadMatch>().is_err(), "{bad}");
        }
    }

    #[test]
    fn new_jobs_are_validated() {
        assert!(NewJob::new("render", "render", Value::Null)
            .validate()
            .is_ok());
        assert!(NewJob::new("bad queue", "k", Value::Null)
            .validate()
            .is_err());
        let mut j = NewJob::new("q", "k", Value::Null);
        j.max_attempts = 0;
        assert!(j.validate().is_err());
    }
}

/// The job queue's settings, and the per-queue family.
pub mod settings {
    use crate::config::settings::{Kind, Reader, Section, Setting};
    use crate::config::SecretUrl;
    use std::borrow::Cow;
    use std::collections::HashMap;
    use std::time::Duration;

    /// The queue's section of the configuration.
    #[derive(Debug, Clone)]
    pub struct QueueConfig {
        /// The job queue on Redis instead of the database.
        pub redis_url: Option<SecretUrl>,
        pub lease: Duration,
        pub retention: super::retention::Retention,
        /// Each of the plan's queues' policy ([`super::QueuePolicy::defaults_for`] overridden).
        pub policies: HashMap<String, super::QueuePolicy>,
        pub metrics_flush: Duration,
    }

    impl QueueConfig {
        pub fn read(r: &mut Reader) -> Self {
            let mut policies = HashMap::new();
            for name in super::QUEUES {
                let [concurrency, max_attempts, base, cap, rate, max_waiting, timeout] =
                    <[Setting; 7]>::try_from(for_queue(name))
                        .unwrap_or_else(|_| unreachable!("seven settings per queue"));
                let base_ms = r.millis(&base);
                let cap_ms = r.millis(&cap);
                if cap_ms < base_ms {
                    r.error(format!("{} must not be below {}", cap.name, base.name));
                }
                let rate = r.float(&rate);
                policies.insert(
                    (*name).to_owned(),
                    super::QueuePolicy {
                        max_waiting: u64::try_from(r.int(&max_waiting)).unwrap_or(1),
                        concurrency: usize::try_from(r.int(&concurrency)).unwrap_or(1),
                        max_attempts: u32::try_from(r.int(&max_attempts)).unwrap_or(1),
                        backoff: super::Backoff {
                            base: base_ms,
                            cap: cap_ms,
                        },
                        rate_per_s: (rate > 0.0).then_some(rate),
                        timeout: r.secs(&timeout),
                    },
                );
            }
            Self {
                redis_url: r.url(&REDIS_URL).map(SecretUrl::new),
                lease: r.millis(&LEASE),
                retention: super::retention::Retention {
                    finished_age: r.secs(&KEEP_COMPLETED_HOURS) * 3600,
                    finished_max: u64::try_from(r.int(&KEEP_COMPLETED_MAX)).unwrap_or(0),
                    dead_age: r.secs(&KEEP_DEAD_DAYS) * 86_400,
                },
                policies,
                metrics_flush: r.millis(&METRICS_FLUSH),
            }
        }
    }

    pub const REDIS_URL: Setting = Setting::new(
        "REDIS_URL",
        Kind::Url {
            schemes: &["redis", "rediss"],
            default: None,
            secret: true,
        },
        "The job queue on Redis instead of SQL tables in the database (see [queue.md](queue.md)).",
    );
    pub const LEASE: Setting = Setting::millis(
        "AIRWAVE_QUEUE_LEASE_MS",
        60_000,
        1_000,
        3_600_000,
        "How long a worker holds a job between heartbeats; a dead worker's jobs run again this long after it died.",
    );
    pub const KEEP_COMPLETED_HOURS: Setting = Setting::int(
        "AIRWAVE_QUEUE_KEEP_COMPLETED_HOURS",
        24,
        1,
        8_760,
        "hours",
        "Completed and cancelled jobs older than this are deleted (see [queue.md](queue.md#retention)).",
    );
    pub const KEEP_COMPLETED_MAX: Setting = Setting::int(
        "AIRWAVE_QUEUE_KEEP_COMPLETED_MAX",
        10_000,
        0,
        100_000_000,
        "jobs",
        "Completed jobs kept per queue at most (the newest).",
    );
    pub const KEEP_DEAD_DAYS: Setting = Setting::int(
        "AIRWAVE_QUEUE_KEEP_DEAD_DAYS",
        14,
        1,
        365,
        "days",
        "Dead jobs older than this are deleted.",
    );
    pub const METRICS_FLUSH: Setting = Setting::millis(
        "AIRWAVE_QUEUE_METRICS_FLUSH_MS",
        5_000,
        10,
        600_000,
        "How often a process writes its per-queue metrics (charts lag by at most this).",
    );

    /// `AIRWAVE_QUEUE_<QUEUE>_<WHAT>`.
    pub fn var(queue: &str, what: &str) -> String {
        format!("AIRWAVE_QUEUE_{}_{what}", queue.to_uppercase())
    }

    /// The settings of one of the plan's queues, with that queue's defaults.
    pub fn for_queue(queue: &str) -> Vec<Setting> {
        let d = super::QueuePolicy::defaults_for(queue);
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let int = |what: &str,
                   default: i64,
                   min: i64,
                   max: i64,
                   unit: &'static str,
                   doc: &'static str| Setting {
            name: Cow::Owned(var(queue, what)),
            kind: Kind::Int {
                default,
                min,
                max,
                unit,
            },
            doc: Cow::Borrowed(doc),
        };
        vec![
            int("CONCURRENCY", d.concurrency as i64, 1, 256, "", "Jobs one worker process runs at once."),
            int("MAX_ATTEMPTS", i64::from(d.max_attempts), 1, 100, "", "Attempts of the jobs the server enqueues before they go to the dead-letter queue."),
            int("BACKOFF_BASE_MS", ms(d.backoff.base), 1, 86_400_000, "ms", "The first retry waits up to this (full jitter), doubling per attempt …"),
            int("BACKOFF_CAP_MS", ms(d.backoff.cap), 1, 7 * 86_400_000, "ms", "… up to this. Must not be below the base."),
            Setting {
                name: Cow::Owned(var(queue, "RATE_PER_S")),
                kind: Kind::Float { default: 0.0, min: 0.0, max: 1_000_000.0 },
                doc: Cow::Borrowed("Jobs one worker process starts per second at most (GCRA, bursts of one second's worth); `0` is unlimited."),
            },
            int("MAX_WAITING", i64::try_from(d.max_waiting).unwrap_or(i64::MAX), 1, 100_000_000, "jobs", "Jobs waiting, delayed or retrying before enqueueing answers `503 queue_full` with `Retry-After`."),
            int("TIMEOUT_S", i64::try_from(d.timeout.as_secs()).unwrap_or(i64::MAX), 1, 86_400, "s", "One attempt running longer fails with `timeout` (its handler is told to stop) and is retried."),
        ]
    }

    pub fn section() -> Section {
        let mut settings = vec![
            REDIS_URL,
            LEASE,
            KEEP_COMPLETED_HOURS,
            KEEP_COMPLETED_MAX,
            KEEP_DEAD_DAYS,
            METRICS_FLUSH,
        ];
        for q in super::QUEUES {
            settings.extend(for_queue(q));
        }
        Section {
            title: "Job queue",
            intro: "Then, for each of the plan's queues (`RENDER`, `EMAIL`, `WEBHOOK`, `CLEANUP`, `ANALYTICS`), its own concurrency, attempts, backoff, rate, backlog and attempt timeout.",
            settings,
        }
    }
}
