//! Workers: fetch jobs of one queue, run their handlers, keep their leases alive, and stop
//! cleanly.
//!
//! While a handler runs, a heartbeat renews the lease every third of its length. If the lease is
//! lost (this process stalled past it and the job went to another worker) or an operator cancels
//! the job, the handler's cancellation token fires. On shutdown the worker stops fetching, lets
//! running jobs finish until a deadline, then cancels them and releases their leases, so another
//! worker takes them at once and the attempt does not count.

use super::metrics::Finished;
use super::{FailOutcome, Job, JobFailure, QueueError, WorkQueue};
use crate::ids::JobId;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most completions acknowledged in one backend call.
const ACK_BATCH: usize = 256;

/// A completion waiting to be acknowledged, and where its outcome goes.
type Ack = (
    JobId,
    Value,
    tokio::sync::oneshot::Sender<Result<(), QueueError>>,
);

/// Acknowledges completions in batches: whatever queued up while the previous batch was in
/// flight goes in the next `complete_many` call, so under load one round trip serves many jobs
/// and when idle a completion goes out at once. A backend error is retried twice (the call is
/// atomic, so a retry after a lost answer reports those jobs as no longer held, which is harmless).
async fn acknowledge(
    queue: Arc<dyn WorkQueue>,
    worker: String,
    mut rx: tokio::sync::mpsc::Receiver<Ack>,
) {
    // Two batches in flight at most: one being applied while the next one fills.
    const IN_FLIGHT: u32 = 2;
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT as usize));
    let mut batch: Vec<Ack> = Vec::with_capacity(ACK_BATCH);
    loop {
        // Take a slot first: while both are busy, acknowledgements pile up into a bigger batch.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            break;
        };
        batch.push(first);
        while batch.len() < ACK_BATCH {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        let (items, replies): (Vec<(JobId, Value)>, Vec<_>) =
            batch.drain(..).map(|(id, v, tx)| ((id, v), tx)).unzip();
        let (queue, worker) = (queue.clone(), worker.clone());
        tokio::spawn(async move {
            let _permit = permit;
            apply_batch(&*queue, &worker, items, replies).await;
        });
    }
    // Wait for the batches still in flight.
    let _ = slots.acquire_many(IN_FLIGHT).await;
}

async fn apply_batch(
    queue: &dyn WorkQueue,
    worker: &str,
    items: Vec<(JobId, Value)>,
    replies: Vec<tokio::sync::oneshot::Sender<Result<(), QueueError>>>,
) {
    {
        let mut tries = 0;
        let result = loop {
            match queue.complete_many(worker, items.clone()).await {
                Err(QueueError::Backend(e)) if tries < 2 => {
                    tries += 1;
                    tracing::warn!(error = %e, "acknowledging completions failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                other => break other,
            }
        };
        match result {
            Ok(results) => {
                for (tx, r) in replies.into_iter().zip(results) {
                    let _ = tx.send(r);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for tx in replies {
                    let _ = tx.send(Err(QueueError::Backend(msg.clone())));
                }
            }
        }
    }
}

/// A job's place among the worker's `concurrency`: freed when its handler returns, not when its
/// completion is acknowledged, so acknowledgements never hold back the next jobs.
struct Slot {
    busy: Arc<std::sync::atomic::AtomicUsize>,
    freed: Arc<tokio::sync::Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.busy.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        self.freed.notify_one();
    }
}

/// Runs jobs of one kind.
#[async_trait]
pub trait JobHandler: Send + Sync {
    async fn handle(&self, job: &Job, ctx: &JobContext) -> Result<Value, JobFailure>;
}

/// How long a handler told to stop at its attempt's timeout may take to wind up.
const TIMEOUT_GRACE: Duration = Duration::from_secs(2);

/// What a running handler can use: its cancellation token and progress reporting.
pub struct JobContext {
    /// Fires when the job is cancelled, its lease is lost, or the worker shuts down past its deadline.
    pub cancel: CancellationToken,
    queue: Arc<dyn WorkQueue>,
    id: JobId,
    worker: String,
}

impl JobContext {
    pub async fn progress(&self, percent: i32, message: Option<&str>) -> Result<(), QueueError> {
        self.queue
            .progress(&self.id, &self.worker, percent, message)
            .await
    }
}

/// What happened to one job.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Completed(JobId),
    Failed(JobId, FailOutcome),
    Cancelled(JobId),
    /// Shutdown: given back without counting the attempt.
    Released(JobId),
    /// Another worker has it now; whatever this one did is discarded.
    LeaseLost(JobId),
}

/// A unique worker id: host, process and a random part, so every process (and every restart in
/// a rolling deploy) is told apart.
pub fn new_worker_id(queue: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!(
        "{host}:{}:{queue}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

pub struct Worker {
    queue: Arc<dyn WorkQueue>,
    queue_name: String,
    id: String,
    handlers: HashMap<String, Arc<dyn JobHandler>>,
    concurrency: usize,
    lease: Duration,
    poll: Duration,
    /// Most jobs started a second (see [`super::rate`]).
    rate: Option<f64>,
    /// How long one attempt may run.
    timeout: Duration,
}

impl Worker {
    pub fn new(
        queue: Arc<dyn WorkQueue>,
        queue_name: &str,
        concurrency: usize,
        lease: Duration,
    ) -> Self {
        Self {
            queue,
            queue_name: queue_name.into(),
            id: new_worker_id(queue_name),
            handlers: HashMap::new(),
            concurrency: concurrency.max(1),
            lease,
            poll: Duration::from_millis(50),
            rate: None,
            timeout: super::QueuePolicy::default().timeout,
        }
    }

    /// Starts at most `per_s` jobs a second in this worker (`None` or 0: no limit).
    pub fn rate_limit(mut self, per_s: Option<f64>) -> Self {
        self.rate = per_s.filter(|r| *r > 0.0);
        self
    }

    /// Fails an attempt that runs longer than `timeout` (its handler's token fires).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A worker with the queue's configured concurrency, rate and attempt timeout.
    pub fn for_queue(queue: Arc<dyn WorkQueue>, queue_name: &str, lease: Duration) -> Self {
        let policy = queue.policy(queue_name);
        Self::new(queue, queue_name, policy.concurrency, lease)
            .rate_limit(policy.rate_per_s)
            .timeout(policy.timeout)
    }

    pub fn handle(mut self, kind: &str, handler: Arc<dyn JobHandler>) -> Self {
        self.handlers.insert(kind.into(), handler);
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Fetches one job and runs it to the end. `None` when nothing is ready.
    pub async fn run_one(&self) -> Result<Option<Outcome>, QueueError> {
        let jobs = self
            .queue
            .fetch(&self.queue_name, &self.id, 1, self.lease)
            .await?;
        match jobs.into_iter().next() {
            None => Ok(None),
            Some(job) => Ok(Some(
                self.run_job(job, CancellationToken::new(), None, None)
                    .await?,
            )),
        }
    }

    /// Runs one fetched job with its heartbeat. `shutdown` firing means: give it back.
    async fn run_job(
        &self,
        job: Job,
        shutdown: CancellationToken,
        acks: Option<&tokio::sync::mpsc::Sender<Ack>>,
        slot: Option<Slot>,
    ) -> Result<Outcome, QueueError> {
        let started = std::time::Instant::now();
        let wait = job
            .started_at
            .and_then(|s| (s - job.run_at).to_std().ok())
            .unwrap_or_default();
        let queue = job.queue.clone();
        let outcome = self.run_job_inner(job, shutdown, acks, slot).await?;
        let how = match &outcome {
            Outcome::Completed(_) => Some(Finished::Completed),
            Outcome::Failed(_, FailOutcome::WillRetry { .. }) => Some(Finished::Failed),
            Outcome::Failed(_, FailOutcome::Dead) => Some(Finished::Dead),
            Outcome::Cancelled(_) | Outcome::Released(_) | Outcome::LeaseLost(_) => None,
        };
        if let Some(how) = how {
            self.queue
                .metrics()
                .finished(&queue, how, wait, started.elapsed());
        }
        Ok(outcome)
    }

    async fn run_job_inner(
        &self,
        job: Job,
        shutdown: CancellationToken,
        acks: Option<&tokio::sync::mpsc::Sender<Ack>>,
        slot: Option<Slot>,
    ) -> Result<Outcome, QueueError> {
        let cancel = CancellationToken::new();
        let ctx = JobContext {
            cancel: cancel.clone(),
            queue: self.queue.clone(),
            id: job.id.clone(),
            worker: self.id.clone(),
        };
        let Some(handler) = self.handlers.get(&job.kind).cloned() else {
            let f = JobFailure::permanent(
                "queue.dispatch",
                format!("no handler for job kind `{}`", job.kind),
            );
            return Ok(Outcome::Failed(
                job.id.clone(),
                self.queue.fail(&job.id, &self.id, &f, 0.0).await?,
            ));
        };
        let mut cancelled_by_operator = false;
        let mut lease_lost = false;
        // What the attempt reports to error tracking carries the job (a panic included).
        let hub = crate::tracking::job_hub(&job);
        let result = {
            // A panicking handler is a failed attempt with the panic's message (not a lost lease).
            let run = async {
                futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                    handler.handle(&job, &ctx),
                ))
                .await
                .unwrap_or_else(|panic| {
                    Err(JobFailure::retryable(
                        "queue.panic",
                        format!("the handler panicked: {}", crate::panic_message(&*panic)),
                    ))
                })
            };
            let run = sentry::SentryFutureExt::bind_hub(run, hub.clone());
            tokio::pin!(run);
            let deadline = tokio::time::sleep(self.timeout);
            tokio::pin!(deadline);
            let mut beat = tokio::time::interval(self.lease / 3);
            beat.tick().await;
            loop {
                tokio::select! {
                    r = &mut run => break Some(r),
                    // Too long: the handler is told to stop, and given a moment to record why (a
                    // render marks its execution); then the attempt fails with `timeout` and the
                    // future is dropped (work it runs in a child process dies with it).
                    () = &mut deadline => {
                        cancel.cancel();
                        // A handler that finishes its work within the grace keeps its result.
                        if let Ok(Ok(done)) = tokio::time::timeout(TIMEOUT_GRACE, &mut run).await {
                            break Some(Ok(done));
                        }
                        break Some(Err(JobFailure::retryable(
                            "queue.timeout",
                            format!("timeout: the attempt ran longer than {} s", self.timeout.as_secs_f64()),
                        )));
                    }
                    () = shutdown.cancelled(), if !cancel.is_cancelled() => {
                        cancel.cancel();
                        break None;
                    }
                    _ = beat.tick() => {
                        match self.queue.heartbeat(&self.id, std::slice::from_ref(&job.id), self.lease).await {
                            Ok(v) => match v.first() {
                                Some((true, false)) => {}
                                Some((true, true)) => { cancelled_by_operator = true; cancel.cancel(); }
                                _ => { lease_lost = true; cancel.cancel(); break None; }
                            },
                            Err(e) => tracing::warn!(error = %e, job = %job.id, "heartbeat failed; retrying"),
                        }
                    }
                }
            }
        };
        drop(slot);
        if lease_lost {
            return Ok(Outcome::LeaseLost(job.id.clone()));
        }
        let id = job.id.clone();
        let outcome = match result {
            None => match self.queue.release(&id, &self.id).await {
                Ok(()) => Outcome::Released(id),
                Err(QueueError::LeaseLost) => Outcome::LeaseLost(id),
                Err(e) => return Err(e),
            },
            Some(_) if cancelled_by_operator => {
                match self.queue.finish_cancelled(&id, &self.id).await {
                    Ok(()) => Outcome::Cancelled(id),
                    Err(QueueError::LeaseLost) => Outcome::LeaseLost(id),
                    Err(e) => return Err(e),
                }
            }
            Some(Ok(value)) => match self.complete(&id, value, acks).await {
                Ok(()) => Outcome::Completed(id),
                Err(QueueError::LeaseLost) => Outcome::LeaseLost(id),
                Err(e) => return Err(e),
            },
            Some(Err(failure)) => match self
                .queue
                .fail(&id, &self.id, &failure, rand::random::<f64>())
                .await
            {
                Ok(f) => {
                    if matches!(f, FailOutcome::Dead) {
                        crate::tracking::job_dead(&hub, &job, &failure);
                    }
                    Outcome::Failed(id, f)
                }
                Err(QueueError::LeaseLost) => Outcome::LeaseLost(id),
                Err(e) => return Err(e),
            },
        };
        Ok(outcome)
    }

    /// Completes through the batching acknowledger when there is one.
    async fn complete(
        &self,
        id: &JobId,
        value: Value,
        acks: Option<&tokio::sync::mpsc::Sender<Ack>>,
    ) -> Result<(), QueueError> {
        let Some(acks) = acks else {
            return self.queue.complete(id, &self.id, value).await;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        if acks.send((id.clone(), value, tx)).await.is_err() {
            return Err(QueueError::Backend("the acknowledger stopped".into()));
        }
        rx.await
            .unwrap_or_else(|_| Err(QueueError::Backend("the acknowledger stopped".into())))
    }

    /// Runs up to `concurrency` jobs at a time until `stop` fires; then lets running jobs finish
    /// for up to `grace` before cancelling and releasing them. Recovers expired leases of dead
    /// workers as it goes. Queue outages are logged and retried with backoff.
    pub async fn run_until_stopped(self: Arc<Self>, stop: CancellationToken, grace: Duration) {
        let shutdown = CancellationToken::new();
        let mut running = tokio::task::JoinSet::new();
        let (acks, ack_rx) = tokio::sync::mpsc::channel::<Ack>(self.concurrency.max(ACK_BATCH));
        let acknowledger = tokio::spawn(acknowledge(self.queue.clone(), self.id.clone(), ack_rx));
        // Refill in batches: with many slots, wait until a quarter are free before fetching, so
        // one fetch serves many jobs instead of one fetch per finished job.
        let refill_at = (self.concurrency / 4).max(1);
        let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let freed = Arc::new(tokio::sync::Notify::new());
        let mut last_recovery = tokio::time::Instant::now() - self.lease;
        let mut backoff = Duration::from_millis(100);
        let rate = self.rate.and_then(super::rate::StartRate::new);
        while !stop.is_cancelled() {
            while running.try_join_next().is_some() {}
            if last_recovery.elapsed() >= self.lease / 2 {
                last_recovery = tokio::time::Instant::now();
                if let Err(e) = self.queue.recover_expired().await {
                    tracing::warn!(error = %e, queue = %self.queue_name, "recovering expired leases failed");
                }
            }
            let in_handlers = busy.load(std::sync::atomic::Ordering::Acquire);
            let mut free = self.concurrency.saturating_sub(in_handlers);
            // Jobs whose handler returned but whose acknowledgement is pending count too, up to a
            // bound, so a slow backend cannot make the worker pile up finished jobs.
            let backlog_full = running.len() >= self.concurrency * 4;
            if backlog_full {
                free = 0;
            }
            let wait_for_slots = free == 0 || (free < refill_at && in_handlers > 0);
            if let (Some(rate), false) = (&rate, wait_for_slots) {
                // Starts taken and not used (fewer jobs waiting) are not given back: the rate is
                // never exceeded, and an idle queue banks at most one burst anyway.
                let (allowed, wait) = rate.take(free);
                if allowed == 0 {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
                free = allowed;
            }
            let fetched = if wait_for_slots {
                Ok(Vec::new())
            } else {
                self.queue
                    .fetch(&self.queue_name, &self.id, free, self.lease)
                    .await
            };
            match fetched {
                Ok(jobs) if jobs.is_empty() => {
                    backoff = Duration::from_millis(100);
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = self.queue.wait_for_work(&self.queue_name, self.poll) => {}
                        () = freed.notified(), if in_handlers > 0 => {}
                        Some(_) = running.join_next(), if backlog_full => {}
                    }
                }
                Ok(jobs) => {
                    backoff = Duration::from_millis(100);
                    for job in jobs {
                        let me = self.clone();
                        let shutdown = shutdown.clone();
                        let acks = acks.clone();
                        busy.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                        let slot = Slot {
                            busy: busy.clone(),
                            freed: freed.clone(),
                        };
                        running.spawn(async move {
                            let id = job.id.clone();
                            if let Err(e) = me.run_job(job, shutdown, Some(&acks), Some(slot)).await {
                                tracing::error!(error = %e, job = %id, "could not record a job's outcome");
                            }
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, queue = %self.queue_name, retry_in_ms = backoff.as_millis(), "fetching jobs failed");
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Stop: no more fetching. Let running jobs finish until the deadline, then give them back.
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = running.join_next() => if next.is_none() { break },
                () = &mut deadline => {
                    shutdown.cancel();
                    while running.join_next().await.is_some() {}
                    break;
                }
            }
        }
        // Every job is done: the last acknowledgements go out, then the acknowledger ends.
        drop(acks);
        let _ = acknowledger.await;
    }
}
