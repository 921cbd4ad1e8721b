//! The job queue conformance suite: every backend must pass all of it. The backend comes from
//! `AIRWAVE_TEST_QUEUE` (`sql`, the default, on `AIRWAVE_TEST_DB`'s database).

use airwave_server::clock::{Clock, ManualClock};
use airwave_server::db::Db;
use airwave_server::queue::redis::RedisQueue;
use airwave_server::queue::sql::SqlQueue;
use airwave_server::queue::worker::{JobContext, JobHandler, Outcome, Worker};
use airwave_server::queue::{
    CancelOutcome, Enqueued, FailOutcome, Job, JobFailure, JobFilter, JobQueue, JobState, NewJob,
    QueueError, QueuePolicy,
};
use async_trait::async_trait;
use chrono::Duration as CDuration;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(30);

struct Fixture {
    queue: Arc<dyn JobQueue>,
    clock: Arc<ManualClock>,
    db: Db,
    /// The Redis key prefix, when on Redis.
    prefix: Option<String>,
    _dir: tempfile::TempDir,
}

async fn fixture_with(policies: HashMap<String, QueuePolicy>) -> Fixture {
    let (db, dir) = crate::fresh_db().await;
    let clock = crate::clock();
    let prefix = (std::env::var("AIRWAVE_TEST_QUEUE").as_deref() == Ok("redis"))
        .then(|| format!("test:{}", crate::rand_suffix()));
    let queue = open_queue(&db, clock.clone(), prefix.as_deref(), policies).await;
    Fixture {
        queue,
        clock,
        db,
        prefix,
        _dir: dir,
    }
}

/// The backend under test on `db` (or on Redis under `prefix`).
async fn open_queue(
    db: &Db,
    clock: Arc<ManualClock>,
    prefix: Option<&str>,
    policies: HashMap<String, QueuePolicy>,
) -> Arc<dyn JobQueue> {
    match std::env::var("AIRWAVE_TEST_QUEUE").as_deref() {
        Ok("sql") | Err(_) => Arc::new(SqlQueue::new(db.clone(), clock, policies)),
        Ok("redis") => {
            let url = std::env::var("AIRWAVE_TEST_REDIS_URL")
                .expect("AIRWAVE_TEST_QUEUE=redis needs AIRWAVE_TEST_REDIS_URL");
            Arc::new(
                RedisQueue::connect(&url, prefix.expect("a prefix"), clock, db.clone(), policies)
                    .await
                    .unwrap(),
            )
        }
        Ok(other) => panic!("AIRWAVE_TEST_QUEUE={other} is not a queue backend"),
    }
}

async fn fixture() -> Fixture {
    fixture_with(HashMap::new()).await
}

fn job(kind: &str) -> NewJob {
    NewJob::new("render", kind, json!({"n": kind}))
}

async fn enqueue(f: &Fixture, j: NewJob) -> airwave_server::ids::JobId {
    match f.queue.enqueue(j).await.unwrap() {
        Enqueued::Created(id) => id,
        other => panic!("expected a new job, got {other:?}"),
    }
}

async fn fetch_kinds(f: &Fixture, worker: &str, n: usize) -> Vec<String> {
    f.queue
        .fetch("render", worker, n, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.kind)
        .collect()
}

#[tokio::test]
async fn higher_priority_first_then_first_in_first_out() {
    let f = fixture().await;
    for (kind, prio) in [
        ("low1", 0),
        ("high1", 10),
        ("low2", 0),
        ("high2", 10),
        ("urgent", 100),
    ] {
        enqueue(
            &f,
            NewJob {
                priority: prio,
                ..job(kind)
            },
        )
        .await;
    }
    assert_eq!(fetch_kinds(&f, "w", 2).await, ["urgent", "high1"]);
    assert_eq!(fetch_kinds(&f, "w", 10).await, ["high2", "low1", "low2"]);
    assert!(fetch_kinds(&f, "w", 10).await.is_empty());
}

#[tokio::test]
async fn a_delayed_job_waits_for_its_time() {
    let f = fixture().await;
    let id = enqueue(
        &f,
        NewJob {
            run_at: Some(f.clock.now() + CDuration::seconds(60)),
            ..job("later")
        },
    )
    .await;
    assert_eq!(f.queue.get(&id).await.unwrap().state, JobState::Delayed);
    assert!(fetch_kinds(&f, "w", 1).await.is_empty());
    f.clock.advance(CDuration::seconds(59));
    assert!(fetch_kinds(&f, "w", 1).await.is_empty());
    f.clock.advance(CDuration::seconds(1));
    assert_eq!(fetch_kinds(&f, "w", 1).await, ["later"]);
}

#[tokio::test]
async fn failures_retry_after_a_jittered_backoff_then_go_to_the_dead_letter_queue() {
    let f = fixture().await;
    let id = enqueue(
        &f,
        NewJob {
            max_attempts: 3,
            backoff: airwave_server::queue::Backoff {
                base: Duration::from_secs(10),
                cap: Duration::from_secs(15),
            },
            ..job("flaky")
        },
    )
    .await;
    let boom = JobFailure::retryable("test.step", "connection reset by peer 10.0.0.1:443");
    let expected_ceilings = [10, 15];
    for (attempt, ceiling) in (1..=2).zip(expected_ceilings) {
        let fetched = f.queue.fetch("render", "w", 1, LEASE).await.unwrap();
        assert_eq!(fetched[0].attempts, attempt);
        let now = f.clock.now();
        let FailOutcome::WillRetry { at } = f.queue.fail(&id, "w", &boom, 0.999).await.unwrap()
        else {
            panic!("should retry")
        };
        assert!(
            at > now && at <= now + CDuration::seconds(ceiling),
            "retry at {at} for attempt {attempt}"
        );
        let j = f.queue.get(&id).await.unwrap();
        assert_eq!(
            (j.state, j.last_error.as_deref()),
            (
                JobState::Retrying,
                Some("connection reset by peer 10.0.0.1:443")
            )
        );
        assert!(
            fetch_kinds(&f, "w", 1).await.is_empty(),
            "not before its backoff"
        );
        f.clock.advance(CDuration::seconds(ceiling));
    }
    f.queue.fetch("render", "w", 1, LEASE).await.unwrap();
    assert_eq!(
        f.queue.fail(&id, "w", &boom, 0.5).await.unwrap(),
        FailOutcome::Dead
    );
    let dead = f.queue.get(&id).await.unwrap();
    assert_eq!((dead.state, dead.attempts), (JobState::Dead, 3));
    assert_eq!(
        dead.error_fingerprint.as_deref(),
        Some(boom.fingerprint("flaky").as_str())
    );
    assert_eq!(f.queue.counts("render").await.unwrap().dead, 1);
    f.clock.advance(CDuration::hours(2));
    assert!(
        fetch_kinds(&f, "w", 1).await.is_empty(),
        "dead jobs never run"
    );
    assert_dead_event(&f, &id).await;
}

async fn assert_dead_event(f: &Fixture, id: &airwave_server::ids::JobId) {
    let n: i64 = airwave_server::with_db!(&f.db, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE type = 'job.dead' AND subject_id = $1").bind(id.as_str()).fetch_one(pool).await.unwrap()
    });
    assert_eq!(n, 1, "a dead job emits job.dead");
}

#[tokio::test]
async fn a_permanent_failure_is_dead_at_once() {
    let f = fixture().await;
    let id = enqueue(
        &f,
        NewJob {
            max_attempts: 5,
            ..job("bad")
        },
    )
    .await;
    f.queue.fetch("render", "w", 1, LEASE).await.unwrap();
    assert_eq!(
        f.queue
            .fail(
                &id,
                "w",
                &JobFailure::permanent("x", "invalid template"),
                0.5
            )
            .await
            .unwrap(),
        FailOutcome::Dead
    );
}

#[tokio::test]
async fn a_unique_key_deduplicates_while_waiting_or_active_only() {
    let f = fixture().await;
    let unique = || NewJob {
        unique_key: Some("exe_1".into()),
        ..job("render")
    };
    let first = enqueue(&f, unique()).await;
    assert_eq!(
        f.queue.enqueue(unique()).await.unwrap(),
        Enqueued::Duplicate(first.clone())
    );
    f.queue.fetch("render", "w", 1, LEASE).await.unwrap();
    assert_eq!(
        f.queue.enqueue(unique()).await.unwrap(),
        Enqueued::Duplicate(first.clone()),
        "still held while active"
    );
    f.queue
        .complete(&first, "w", json!({"ok": true}))
        .await
        .unwrap();
    let second = enqueue(&f, unique()).await;
    assert_ne!(second, first);
}

#[tokio::test]
async fn a_full_queue_refuses_new_jobs_clearly() {
    let f = fixture_with(HashMap::from([(
        "render".to_string(),
        QueuePolicy {
            max_waiting: 2,
            ..Default::default()
        },
    )]))
    .await;
    enqueue(&f, job("a")).await;
    enqueue(&f, job("b")).await;
    assert!(matches!(
        f.queue.enqueue(job("c")).await,
        Err(QueueError::Full { limit: 2, .. })
    ));
    f.queue.fetch("render", "w", 1, LEASE).await.unwrap();
    enqueue(&f, job("c")).await;
}

#[tokio::test]
async fn invalid_jobs_are_refused() {
    let f = fixture().await;
    assert!(matches!(
        f.queue
            .enqueue(NewJob::new("no spaces", "k", Value::Null))
            .await,
        Err(QueueError::Invalid(_))
    ));
    assert!(matches!(
        f.queue
            .enqueue(NewJob {
                max_attempts: 0,
                ..job("k")
            })
            .await,
        Err(QueueError::Invalid(_))
    ));
    assert_eq!(f.queue.counts("render").await.unwrap().pending(), 0);
}

#[tokio::test]
async fn cancelling_a_waiting_job_stops_it_and_a_running_one_is_asked_to_stop() {
    let f = fixture().await;
    let waiting = enqueue(&f, job("w1")).await;
    assert_eq!(
        f.queue.cancel(&waiting).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert!(fetch_kinds(&f, "w", 1).await.is_empty());
    let running = enqueue(&f, job("r1")).await;
    f.queue.fetch("render", "w", 1, LEASE).await.unwrap();
    assert_eq!(
        f.queue
            .heartbeat("w", std::slice::from_ref(&running), LEASE)
            .await
            .unwrap(),
        [(true, false)]
    );
    assert_eq!(
        f.queue.cancel(&running).await.unwrap(),
        CancelOutcome::Requested
    );
    assert_eq!(
        f.queue
            .heartbeat("w", std::slice::from_ref(&running), LEASE)
            .await
            .unwrap(),
        [(true, true)]
    );
    f.queue.finish_cancelled(&running, "w").await.unwrap();
    assert_eq!(
        f.queue.get(&running).await.unwrap().state,
        JobState::Cancelled
    );
    assert!(matches!(
        f.queue.cancel(&running).await,
        Err(QueueError::WrongState(JobState::Cancelled))
    ));
}

#[tokio::test]
async fn a_dead_workers_job_comes_back_after_its_lease_and_counts_an_attempt() {
    let f = fixture().await;
    let id = enqueue(&f, job("orphan")).await;
    f.queue
        .fetch("render", "dead-worker", 1, LEASE)
        .await
        .unwrap();
    f.clock.advance(CDuration::seconds(29));
    assert_eq!(
        f.queue.recover_expired().await.unwrap(),
        0,
        "lease still running"
    );
    f.clock.advance(CDuration::seconds(2));
    assert_eq!(f.queue.recover_expired().await.unwrap(), 1);
    let again = f
        .queue
        .fetch("render", "live-worker", 1, LEASE)
        .await
        .unwrap();
    assert_eq!((again[0].id.clone(), again[0].attempts), (id.clone(), 2));
    // The first worker wakes up late: its outcome is refused.
    assert!(matches!(
        f.queue.complete(&id, "dead-worker", json!(1)).await,
        Err(QueueError::LeaseLost)
    ));
    f.queue
        .complete(&id, "live-worker", json!(2))
        .await
        .unwrap();
    assert_eq!(f.queue.get(&id).await.unwrap().result, Some(json!(2)));
}

#[tokio::test]
async fn a_heartbeat_keeps_the_lease() {
    let f = fixture().await;
    let id = enqueue(&f, job("long")).await;
    f.queue.fetch("render", "w", 1, LEASE).await.unwrap();
    for _ in 0..5 {
        f.clock.advance(CDuration::seconds(20));
        assert_eq!(
            f.queue
                .heartbeat("w", std::slice::from_ref(&id), LEASE)
                .await
                .unwrap(),
            [(true, false)]
        );
        assert_eq!(f.queue.recover_expired().await.unwrap(), 0);
    }
    assert_eq!(
        f.queue
            .heartbeat("other", std::slice::from_ref(&id), LEASE)
            .await
            .unwrap(),
        [(false, false)]
    );
}

#[tokio::test]
async fn an_expired_lease_on_the_last_attempt_is_dead() {
    let f = fixture().await;
    let id = enqueue(
        &f,
        NewJob {
            max_attempts: 1,
            ..job("once")
        },
    )
    .await;
    f.queue.fetch("render", "w", 1, LEASE).await.unwrap();
    f.clock.advance(CDuration::seconds(31));
    f.queue.recover_expired().await.unwrap();
    assert_eq!(f.queue.get(&id).await.unwrap().state, JobState::Dead);
    assert_dead_event(&f, &id).await;
}

#[tokio::test]
async fn a_released_job_is_ready_at_once_and_the_attempt_does_not_count() {
    let f = fixture().await;
    let id = enqueue(&f, job("r")).await;
    f.queue.fetch("render", "w", 1, LEASE).await.unwrap();
    f.queue.release(&id, "w").await.unwrap();
    let j = f.queue.get(&id).await.unwrap();
    assert_eq!((j.state, j.attempts), (JobState::Waiting, 0));
    assert_eq!(
        f.queue.fetch("render", "w2", 1, LEASE).await.unwrap()[0].attempts,
        1
    );
}

#[tokio::test]
async fn a_paused_queue_hands_out_nothing_until_resumed() {
    let f = fixture().await;
    enqueue(&f, job("p")).await;
    f.queue.set_paused("render", true).await.unwrap();
    assert!(f.queue.is_paused("render").await.unwrap());
    assert!(fetch_kinds(&f, "w", 1).await.is_empty());
    f.queue.set_paused("render", false).await.unwrap();
    assert_eq!(fetch_kinds(&f, "w", 1).await, ["p"]);
}

#[tokio::test]
async fn concurrent_workers_never_get_the_same_job() {
    let f = fixture().await;
    let jobs: Vec<NewJob> = (0..300).map(|i| job(&format!("j{i}"))).collect();
    f.queue.enqueue_bulk(jobs).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let q = f.queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = q.fetch("render", &format!("w{w}"), 7, LEASE).await.unwrap();
                if batch.is_empty() {
                    break got;
                }
                for j in batch {
                    q.complete(&j.id, &format!("w{w}"), Value::Null)
                        .await
                        .unwrap();
                    got.push(j.id);
                }
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (300, 300));
    assert_eq!(f.queue.counts("render").await.unwrap().completed, 300);
}

// --- the worker ---------------------------------------------------------------------------

struct Echo;

#[async_trait]
impl JobHandler for Echo {
    async fn handle(&self, job: &Job, ctx: &JobContext) -> Result<Value, JobFailure> {
        ctx.progress(50, Some("half way"))
            .await
            .map_err(|e| JobFailure::retryable("echo", e.to_string()))?;
        match job.payload.get("fail").and_then(Value::as_str) {
            Some(msg) => Err(JobFailure::retryable("echo", msg)),
            None => Ok(json!({"echo": job.payload})),
        }
    }
}

/// Waits until cancelled, then reports it.
struct UntilCancelled;

#[async_trait]
impl JobHandler for UntilCancelled {
    async fn handle(&self, _job: &Job, ctx: &JobContext) -> Result<Value, JobFailure> {
        ctx.cancel.cancelled().await;
        Err(JobFailure::retryable("wait", "cancelled"))
    }
}

#[tokio::test]
async fn a_worker_runs_handlers_and_records_results_and_failures() {
    let f = fixture().await;
    let worker = Worker::new(f.queue.clone(), "render", 1, LEASE).handle("echo", Arc::new(Echo));
    let ok = enqueue(&f, NewJob::new("render", "echo", json!({"x": 1}))).await;
    let bad = enqueue(&f, NewJob::new("render", "echo", json!({"fail": "nope"}))).await;
    let unknown = enqueue(&f, NewJob::new("render", "mystery", json!({}))).await;
    assert_eq!(
        worker.run_one().await.unwrap(),
        Some(Outcome::Completed(ok.clone()))
    );
    let done = f.queue.get(&ok).await.unwrap();
    assert_eq!(
        (done.state, done.progress, done.result),
        (JobState::Completed, 100, Some(json!({"echo": {"x": 1}})))
    );
    assert!(
        matches!(worker.run_one().await.unwrap(), Some(Outcome::Failed(id, FailOutcome::WillRetry { .. })) if id == bad)
    );
    assert_eq!(
        worker.run_one().await.unwrap(),
        Some(Outcome::Failed(unknown, FailOutcome::Dead)),
        "no handler: dead at once"
    );
    assert_eq!(worker.run_one().await.unwrap(), None);
}

/// Records when each job started.
struct Starts(std::sync::Mutex<Vec<std::time::Instant>>);

#[async_trait]
impl JobHandler for Starts {
    async fn handle(&self, _job: &Job, _ctx: &JobContext) -> Result<Value, JobFailure> {
        self.0.lock().unwrap().push(std::time::Instant::now());
        Ok(Value::Null)
    }
}

#[tokio::test]
async fn a_rate_limited_worker_starts_a_burst_then_no_more_than_its_rate() {
    let f = fixture().await;
    let jobs: Vec<NewJob> = (0..40)
        .map(|i| NewJob::new("render", "tick", json!({"i": i})))
        .collect();
    f.queue.enqueue_bulk(jobs).await.unwrap();
    let starts = Arc::new(Starts(std::sync::Mutex::new(Vec::new())));
    let worker = Arc::new(
        Worker::new(f.queue.clone(), "render", 64, LEASE)
            .rate_limit(Some(20.0))
            .handle("tick", starts.clone()),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    // Before the worker (and its limiter) exists: every bound below holds from here too.
    let began = std::time::Instant::now();
    let run = tokio::spawn(worker.run_until_stopped(stop.clone(), Duration::from_secs(1)));
    for _ in 0..1000 {
        if starts.0.lock().unwrap().len() == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    run.await.unwrap();
    let mut at = starts.0.lock().unwrap().clone();
    assert_eq!(at.len(), 40);
    at.sort();
    // A burst of 20 (one second's worth), then one every 50 ms: job k (from 0) never starts
    // before (k - 19) × 50 ms. Only a lower bound: a slow machine can be later, never earlier.
    for (k, t) in at.iter().enumerate().skip(20) {
        let earliest = Duration::from_millis(50 * (k as u64 - 19));
        assert!(
            t.duration_since(began) >= earliest,
            "job {k} started {:?} in, before {earliest:?}",
            t.duration_since(began)
        );
    }
}

#[tokio::test]
async fn shutdown_releases_running_jobs_so_another_worker_takes_them_at_once() {
    let f = fixture().await;
    let id = enqueue(&f, job("stuck")).await;
    let worker = Arc::new(
        Worker::new(f.queue.clone(), "render", 2, LEASE).handle("stuck", Arc::new(UntilCancelled)),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(
        worker
            .clone()
            .run_until_stopped(stop.clone(), Duration::from_millis(200)),
    );
    // Wait until the worker holds the job (a real signal: the job's state), then stop it.
    for _ in 0..200 {
        if f.queue.get(&id).await.unwrap().state == JobState::Active {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(f.queue.get(&id).await.unwrap().state, JobState::Active);
    stop.cancel();
    run.await.unwrap();
    let j = f.queue.get(&id).await.unwrap();
    assert_eq!(
        (j.state, j.attempts, j.worker_id),
        (JobState::Waiting, 0, None)
    );
    assert_eq!(
        f.queue.fetch("render", "next", 1, LEASE).await.unwrap()[0].id,
        id
    );
}

/// Defect: job handlers had no timeout, so a stuck one held its slot (and its lease, renewed by
/// heartbeats) for ever. Now an attempt past the queue's timeout fails with `timeout`, its handler
/// told to stop, and is retried.
#[tokio::test]
async fn an_attempt_past_its_timeout_fails_with_timeout_and_is_retried() {
    let f = fixture().await;
    let id = enqueue(&f, job("stuck")).await;
    let worker = Worker::new(f.queue.clone(), "render", 1, LEASE)
        .timeout(Duration::from_millis(300))
        .handle("stuck", Arc::new(UntilCancelled));
    let outcome = worker.run_one().await.unwrap();
    assert!(
        matches!(outcome, Some(Outcome::Failed(ref got, FailOutcome::WillRetry { .. })) if *got == id),
        "{outcome:?}"
    );
    let j = f.queue.get(&id).await.unwrap();
    assert_eq!(j.state, JobState::Retrying);
    assert!(
        j.last_error
            .as_deref()
            .unwrap_or_default()
            .starts_with("timeout"),
        "{:?}",
        j.last_error
    );
    assert_eq!(
        QueuePolicy::defaults_for("email").timeout,
        Duration::from_secs(60),
        "every queue has one"
    );
}

#[tokio::test]
async fn cancelling_a_running_job_reaches_its_handler() {
    let f = fixture().await;
    let id = enqueue(&f, job("stuck")).await;
    let worker = Arc::new(
        Worker::new(f.queue.clone(), "render", 1, Duration::from_millis(300))
            .handle("stuck", Arc::new(UntilCancelled)),
    );
    let w = worker.clone();
    let run = tokio::spawn(async move { w.run_one().await.unwrap() });
    for _ in 0..200 {
        if f.queue.get(&id).await.unwrap().state == JobState::Active {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(f.queue.cancel(&id).await.unwrap(), CancelOutcome::Requested);
    assert_eq!(run.await.unwrap(), Some(Outcome::Cancelled(id.clone())));
    assert_eq!(f.queue.get(&id).await.unwrap().state, JobState::Cancelled);
}

// --- operator actions -----------------------------------------------------------------------

fn filter(state: JobState) -> JobFilter {
    JobFilter::new("render", state)
}

async fn kill(f: &Fixture, id: &airwave_server::ids::JobId, message: &str) {
    f.queue.fetch("render", "w", 1, LEASE).await.unwrap();
    assert_eq!(
        f.queue
            .fail(id, "w", &JobFailure::permanent("step", message), 0.5)
            .await
            .unwrap(),
        FailOutcome::Dead
    );
}

#[tokio::test]
async fn jobs_are_listed_by_state_kind_and_fingerprint_newest_first_with_a_cursor() {
    let f = fixture().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(enqueue(&f, job(if i % 2 == 0 { "even" } else { "odd" })).await);
    }
    let waiting = f
        .queue
        .list(&filter(JobState::Waiting), 10, None)
        .await
        .unwrap();
    assert_eq!(
        waiting.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        ids.iter().rev().cloned().collect::<Vec<_>>()
    );
    let page1 = f
        .queue
        .list(&filter(JobState::Waiting), 2, None)
        .await
        .unwrap();
    let page2 = f
        .queue
        .list(&filter(JobState::Waiting), 2, Some(&page1[1].id))
        .await
        .unwrap();
    assert_eq!(
        (page1[0].id.clone(), page2[0].id.clone()),
        (ids[4].clone(), ids[2].clone())
    );
    let odd = f
        .queue
        .list(
            &JobFilter {
                kind: Some("odd".into()),
                ..filter(JobState::Waiting)
            },
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!(odd.len(), 2);
    assert!(f
        .queue
        .queue_names()
        .await
        .unwrap()
        .contains(&"render".to_string()));
}

#[tokio::test]
async fn idle_workers_in_another_process_are_woken_by_an_enqueue() {
    let f = fixture().await;
    // A second instance on the same database / Redis: what another process would have.
    let other = open_queue(&f.db, f.clock.clone(), f.prefix.as_deref(), HashMap::new()).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let listening = tokio::spawn({
        let other = other.clone();
        let stop = stop.clone();
        async move { other.listen_for_work(stop).await }
    });
    if f.prefix.is_none() && matches!(f.db, Db::Sqlite(_)) {
        // The SQL queue on SQLite: one process owns a SQLite file: there is nothing to relay, and listening ends at once.
        tokio::time::timeout(Duration::from_secs(30), listening)
            .await
            .expect("listen_for_work returns at once on SQLite")
            .unwrap();
        return;
    }
    // The listener subscribes asynchronously: keep enqueueing until a wake-up gets through, and
    // never let the idle wait itself end the test (its timeout is far past the test's).
    let woken = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let wait = other.wait_for_work("render", Duration::from_secs(3600));
            tokio::pin!(wait);
            tokio::select! {
                () = &mut wait => break,
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    f.queue.enqueue(job("x")).await.unwrap();
                    tokio::select! {
                        () = &mut wait => break,
                        () = tokio::time::sleep(Duration::from_millis(400)) => {}
                    }
                }
            }
        }
    })
    .await;
    stop.cancel();
    listening.await.unwrap();
    assert!(woken.is_ok(), "the other instance was never woken");
}

#[tokio::test]
async fn a_batch_of_completions_completes_what_the_worker_holds_and_reports_the_rest() {
    let f = fixture().await;
    let a = enqueue(&f, job("a")).await;
    let b = enqueue(&f, job("b")).await;
    let c = enqueue(&f, job("c")).await;
    assert_eq!(
        f.queue.fetch("render", "w1", 2, LEASE).await.unwrap().len(),
        2
    );
    assert_eq!(
        f.queue.fetch("render", "w2", 1, LEASE).await.unwrap().len(),
        1
    );
    let results = f
        .queue
        .complete_many(
            "w1",
            vec![
                (a.clone(), json!({"n": 1})),
                (c.clone(), json!({"n": 3})),
                (b.clone(), json!({"n": 2})),
            ],
        )
        .await
        .unwrap();
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(
        matches!(results[1], Err(QueueError::LeaseLost)),
        "c belongs to w2: {:?}",
        results[1]
    );
    let ja = f.queue.get(&a).await.unwrap();
    assert_eq!(
        (ja.state, ja.result),
        (JobState::Completed, Some(json!({"n": 1})))
    );
    assert_eq!(f.queue.get(&c).await.unwrap().state, JobState::Active);
    let attempts = f.queue.attempts(&b).await.unwrap();
    assert_eq!(
        (attempts.len(), attempts[0].outcome.as_str()),
        (1, "completed")
    );
    assert!(f
        .queue
        .complete_many("w1", vec![])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn jobs_are_found_by_a_payload_field_and_by_creation_time() {
    let f = fixture().await;
    let payloads = [
        json!({"customer": {"id": "cus_1"}, "count": 3, "urgent": true}),
        json!({"customer": {"id": "cus_2"}, "count": 30, "urgent": false}),
        json!({"customer": {"id": "cus_1"}, "count": 3.5}),
    ];
    let mut ids = Vec::new();
    for p in payloads {
        ids.push(enqueue(&f, NewJob::new("render", "k", p)).await);
        f.clock.advance(CDuration::seconds(10));
    }
    let found = |m: &'static str| {
        let f = &f;
        async move {
            f.queue
                .list(
                    &JobFilter {
                        payload: Some(m.parse().unwrap()),
                        ..filter(JobState::Waiting)
                    },
                    10,
                    None,
                )
                .await
                .unwrap()
                .into_iter()
                .map(|j| j.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        found("customer.id=cus_1").await,
        [ids[2].clone(), ids[0].clone()]
    );
    assert_eq!(found("count=3").await, [ids[0].clone()]);
    assert_eq!(found("count=3.5").await, [ids[2].clone()]);
    assert_eq!(found("urgent=true").await, [ids[0].clone()]);
    assert_eq!(found("urgent=false").await, [ids[1].clone()]);
    assert!(
        found("customer=cus_1").await.is_empty(),
        "an object is no value"
    );
    assert!(found("nope.deeper=1").await.is_empty());

    let t0 = f.clock.now() - CDuration::seconds(30);
    let between = f
        .queue
        .list(
            &JobFilter {
                created_after: Some(t0 + CDuration::seconds(5)),
                created_before: Some(t0 + CDuration::seconds(15)),
                ..filter(JobState::Waiting)
            },
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        between.into_iter().map(|j| j.id).collect::<Vec<_>>(),
        [ids[1].clone()]
    );
}

#[tokio::test]
async fn metrics_count_enqueues_and_finished_attempts_by_queue() {
    let f = fixture().await;
    for _ in 0..3 {
        enqueue(&f, job("a")).await;
    }
    let dup = NewJob {
        unique_key: Some("u".into()),
        ..job("a")
    };
    f.queue.enqueue(dup.clone()).await.unwrap();
    f.queue.enqueue(dup).await.unwrap();
    let worker = Worker::new(f.queue.clone(), "render", 1, LEASE).handle("a", Arc::new(Echo));
    for _ in 0..4 {
        worker.run_one().await.unwrap().unwrap();
    }
    f.queue.metrics().flush(&f.db).await.unwrap();
    let now = f.clock.now();
    let m = airwave_server::queue::metrics::read(
        &f.db,
        "render",
        now - CDuration::hours(1),
        now + CDuration::minutes(1),
    )
    .await
    .unwrap();
    assert_eq!(m.len(), 1, "one minute");
    let s = &m[0].1;
    assert_eq!(
        (s.enqueued, s.completed, s.failed, s.dead),
        (4, 4, 0, 0),
        "a duplicate is not an enqueue"
    );
    assert_eq!((s.wait.count(), s.run.count()), (4, 4));
}

#[tokio::test]
async fn dead_jobs_group_by_fingerprint_and_retry_in_bulk_after_a_dry_run() {
    let f = fixture().await;
    for i in 0..3 {
        let id = enqueue(&f, job("a")).await;
        kill(&f, &id, &format!("timeout after {} ms", 100 + i)).await;
    }
    let other = enqueue(&f, job("b")).await;
    kill(&f, &other, "permission denied").await;
    let groups = f.queue.dead_groups("render").await.unwrap();
    assert_eq!(groups.iter().map(|g| g.count).collect::<Vec<_>>(), [3, 1]);
    assert!(groups[0].sample_error.starts_with("timeout after"));
    let fp = groups[0].fingerprint.clone();
    assert_eq!(retry_dead(&f, "render", Some(&fp), true).await, 3);
    assert_eq!(
        f.queue.counts("render").await.unwrap().dead,
        4,
        "a dry run changes nothing"
    );
    assert_eq!(retry_dead(&f, "render", Some(&fp), false).await, 3);
    let c = f.queue.counts("render").await.unwrap();
    assert_eq!((c.dead, c.waiting), (1, 3));
    let retried = f
        .queue
        .list(&filter(JobState::Waiting), 10, None)
        .await
        .unwrap();
    assert!(
        retried.iter().all(|j| j.attempts == 0),
        "attempts start over"
    );
    let listed = f
        .queue
        .list(
            &JobFilter {
                fingerprint: Some(groups[1].fingerprint.clone()),
                ..filter(JobState::Dead)
            },
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!(listed[0].id, other);
}

#[tokio::test]
async fn one_job_can_be_retried_promoted_or_discarded_and_attempts_are_kept() {
    let f = fixture().await;
    let dead = enqueue(&f, job("d")).await;
    kill(&f, &dead, "boom").await;
    let attempts = f.queue.attempts(&dead).await.unwrap();
    assert_eq!(
        (
            attempts.len(),
            attempts[0].outcome.as_str(),
            attempts[0].error.as_deref()
        ),
        (1, "failed", Some("boom"))
    );
    f.queue.retry(&dead).await.unwrap();
    assert_eq!(f.queue.get(&dead).await.unwrap().state, JobState::Waiting);
    assert!(matches!(
        f.queue.retry(&dead).await,
        Err(QueueError::WrongState(JobState::Waiting))
    ));

    let later = enqueue(
        &f,
        NewJob {
            run_at: Some(f.clock.now() + CDuration::hours(1)),
            ..job("later")
        },
    )
    .await;
    f.queue.promote(&later).await.unwrap();
    let kinds = fetch_kinds(&f, "w", 10).await;
    assert!(kinds.contains(&"later".to_string()), "{kinds:?}");

    let gone = enqueue(&f, job("gone")).await;
    f.queue.discard(&gone).await.unwrap();
    assert!(matches!(
        f.queue.get(&gone).await,
        Err(QueueError::NotFound)
    ));
    assert!(
        matches!(
            f.queue.discard(&later).await,
            Err(QueueError::WrongState(JobState::Active))
        ),
        "a running job is not discarded"
    );
}

#[tokio::test]
async fn completed_jobs_older_than_a_time_are_purged() {
    let f = fixture().await;
    for _ in 0..3 {
        let id = enqueue(&f, job("c")).await;
        f.queue.fetch("render", "w", 1, LEASE).await.unwrap();
        f.queue.complete(&id, "w", Value::Null).await.unwrap();
    }
    f.clock.advance(CDuration::days(8));
    let fresh = enqueue(&f, job("c")).await;
    f.queue.fetch("render", "w", 1, LEASE).await.unwrap();
    f.queue.complete(&fresh, "w", Value::Null).await.unwrap();
    let op = BulkOp::Purge {
        queue: "render".into(),
        state: JobState::Completed,
        before: f.clock.now() - CDuration::days(7),
    };
    assert_eq!(op.count(f.queue.as_ref()).await.unwrap(), 3, "a dry run");
    assert_eq!(f.queue.counts("render").await.unwrap().completed, 4);
    let report = run_bulk(&f, &op).await;
    assert_eq!((report.matched, report.done), (3, 3));
    assert_eq!(f.queue.counts("render").await.unwrap().completed, 1);
    // At most `at_most` a call, oldest first.
    let before = f.clock.now() + CDuration::days(1);
    assert_eq!(
        f.queue
            .purge("render", JobState::Completed, before, 1)
            .await
            .unwrap(),
        1
    );
    assert_eq!(f.queue.counts("render").await.unwrap().completed, 0);
    let dead = BulkOp::Purge {
        queue: "render".into(),
        state: JobState::Waiting,
        before,
    };
    assert!(matches!(
        dead.count(f.queue.as_ref()).await,
        Err(QueueError::Invalid(_))
    ));
}

// --- bulk operations ------------------------------------------------------------------------

use airwave_server::queue::bulk::{self, BulkOp, Report};

/// Retries the dead jobs of `queue` (of one fingerprint) as the bulk job does; with `dry_run`
/// only counts them.
async fn retry_dead(f: &Fixture, queue: &str, fingerprint: Option<&str>, dry_run: bool) -> u64 {
    let op = BulkOp::retry_dead(queue, fingerprint);
    if dry_run {
        return op.count(f.queue.as_ref()).await.unwrap();
    }
    run_bulk(f, &op).await.done
}

async fn run_bulk(f: &Fixture, op: &BulkOp) -> Report {
    let stop = tokio_util::sync::CancellationToken::new();
    bulk::run(f.queue.as_ref(), op, &stop, |_| async { Ok(()) })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_bulk_retry_reports_progress_skips_what_changed_and_stops_when_told() {
    let f = fixture().await;
    let kill_all = || async {
        let fetched = f.queue.fetch("render", "w", 600, LEASE).await.unwrap();
        for j in &fetched {
            f.queue
                .fail(&j.id, "w", &JobFailure::permanent("t", "boom"), 0.0)
                .await
                .unwrap();
        }
        fetched.into_iter().map(|j| j.id).collect::<Vec<_>>()
    };
    let jobs: Vec<NewJob> = (0..600)
        .map(|i| {
            let mut j = NewJob::new("render", "p", json!({"i": i}));
            j.max_attempts = 1;
            j
        })
        .collect();
    f.queue.enqueue_bulk(jobs).await.unwrap();
    let ids = kill_all().await;
    assert_eq!(f.queue.counts("render").await.unwrap().dead, 600);
    let op = BulkOp::retry_dead("render", None);
    // Progress after the count and after every batch; a job retried meanwhile is skipped.
    let seen = std::sync::Mutex::new(Vec::new());
    let stop = tokio_util::sync::CancellationToken::new();
    let (queue, first) = (f.queue.clone(), ids[0].clone());
    let report = bulk::run(f.queue.as_ref(), &op, &stop, |r| {
        seen.lock().unwrap().push(r);
        let (queue, first) = (queue.clone(), first.clone());
        async move {
            if r.done == 0 && r.skipped == 0 {
                queue.retry(&first).await.unwrap();
            }
            Ok(())
        }
    })
    .await
    .unwrap();
    assert_eq!((report.matched, report.done, report.skipped), (600, 599, 1));
    let seen = seen.into_inner().unwrap();
    assert_eq!(
        seen.len(),
        1 + 3,
        "after counting and after each batch of 250"
    );
    assert!(seen.windows(2).all(|w| w[0].done <= w[1].done));
    assert_eq!(f.queue.counts("render").await.unwrap().waiting, 600);
    // A stop between batches ends it early, with an error, having done only whole batches.
    assert_eq!(kill_all().await.len(), 600);
    let stop = tokio_util::sync::CancellationToken::new();
    let stopper = stop.clone();
    let err = bulk::run(f.queue.as_ref(), &op, &stop, |r| {
        if r.done > 0 {
            stopper.cancel();
        }
        async { Ok(()) }
    })
    .await
    .unwrap_err();
    assert!(matches!(err, QueueError::Stopped), "{err:?}");
    assert_eq!(f.queue.counts("render").await.unwrap().waiting, 250);
}

#[tokio::test]
async fn an_audited_job_is_enqueued_with_its_audit_entry() {
    use airwave_server::audit::{Actor, Entry};
    use airwave_server::queue::Audited;
    let f = fixture().await;
    let actor = Actor {
        user_id: Some("usr_x".into()),
        ..Actor::default()
    };
    let op = BulkOp::retry_dead("render", None);
    let id = f
        .queue
        .enqueue_audited(
            op.job(&QueuePolicy::defaults_for(bulk::QUEUE), "opr_1"),
            Audited {
                db: &f.db,
                at: f.clock.now(),
                actor: &actor,
                entry: Entry {
                    action: op.action(),
                    target_type: Some("queue"),
                    target_id: Some("render"),
                    detail: json!({"operation": "opr_1"}),
                },
            },
        )
        .await
        .unwrap();
    let job = f.queue.get(&id).await.unwrap();
    assert_eq!(
        (job.queue.as_str(), job.kind.as_str()),
        (bulk::QUEUE, bulk::KIND)
    );
    assert_eq!(job.correlation_id.as_deref(), Some("opr_1"));
    let entries: Vec<String> = airwave_server::with_db!(&f.db, pool => {
        sqlx::query_scalar("SELECT action FROM audit_log WHERE CAST(detail AS TEXT) LIKE '%opr_1%'")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert_eq!(entries, ["queue.dead_retry"]);
    // A job that could not run now is refused, and nothing is audited for it.
    let mut later = op.job(&QueuePolicy::defaults_for(bulk::QUEUE), "opr_2");
    later.unique_key = Some("k".into());
    let refused = f
        .queue
        .enqueue_audited(
            later,
            Audited {
                db: &f.db,
                at: f.clock.now(),
                actor: &actor,
                entry: Entry {
                    action: op.action(),
                    target_type: None,
                    target_id: None,
                    detail: json!({"operation": "opr_2"}),
                },
            },
        )
        .await;
    assert!(matches!(refused, Err(QueueError::Invalid(_))));
}

// --- retention ------------------------------------------------------------------------------

use airwave_server::queue::retention::{self, Retention, RetentionJob};

async fn complete_one(f: &Fixture, kind: &str) -> airwave_server::ids::JobId {
    let id = enqueue(f, job(kind)).await;
    let got = f.queue.fetch("render", "w", 1, LEASE).await.unwrap();
    assert_eq!(got[0].id, id);
    f.queue.complete(&id, "w", Value::Null).await.unwrap();
    id
}

#[tokio::test]
async fn finished_jobs_are_trimmed_to_a_count_keeping_the_newest() {
    let f = fixture().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        f.clock.advance(CDuration::seconds(1));
        ids.push(complete_one(&f, &format!("k{i}")).await);
    }
    assert_eq!(
        f.queue
            .trim("render", JobState::Completed, 2)
            .await
            .unwrap(),
        3
    );
    let left: Vec<_> = f
        .queue
        .list(&filter(JobState::Completed), 10, None)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(left, [ids[4].clone(), ids[3].clone()]);
    assert!(
        matches!(
            f.queue.trim("render", JobState::Waiting, 0).await,
            Err(QueueError::Invalid(_))
        ),
        "only finished jobs"
    );
}

#[tokio::test]
async fn the_retention_job_clears_old_finished_jobs_in_every_queue() {
    let f = fixture().await;
    complete_one(&f, "old").await;
    let dead = enqueue(&f, job("dead")).await;
    kill(&f, &dead, "boom").await;
    f.clock.advance(CDuration::days(2));
    let recent = complete_one(&f, "recent").await;

    let handler = RetentionJob {
        queue: f.queue.clone(),
        clock: f.clock.clone(),
        retention: Retention {
            finished_age: Duration::from_secs(24 * 3600),
            finished_max: 100,
            dead_age: Duration::from_secs(7 * 86_400),
        },
    };
    let worker = Worker::new(f.queue.clone(), retention::QUEUE, 1, LEASE)
        .handle(retention::KIND, Arc::new(handler));
    f.queue
        .enqueue(retention::job(&Default::default()))
        .await
        .unwrap();
    assert_eq!(
        f.queue
            .enqueue(retention::job(&Default::default()))
            .await
            .unwrap()
            .id(),
        f.queue
            .enqueue(retention::job(&Default::default()))
            .await
            .unwrap()
            .id(),
        "one at a time"
    );
    assert!(matches!(
        worker.run_one().await.unwrap(),
        Some(Outcome::Completed(_))
    ));
    let c = f.queue.counts("render").await.unwrap();
    assert_eq!(
        (c.completed, c.dead),
        (1, 1),
        "the old completed job went; the recent one and the 2-day-old dead one stay"
    );
    assert_eq!(
        f.queue.get(&recent).await.unwrap().state,
        JobState::Completed
    );

    f.clock.advance(CDuration::days(6));
    f.queue
        .enqueue(retention::job(&Default::default()))
        .await
        .unwrap();
    worker.run_one().await.unwrap();
    let c = f.queue.counts("render").await.unwrap();
    assert_eq!((c.completed, c.dead), (0, 0), "a week on, both are gone");
}

#[tokio::test]
async fn lost_leases_form_one_dead_letter_group_whatever_the_kind() {
    let f = fixture().await;
    for kind in ["a", "b"] {
        enqueue(
            &f,
            NewJob {
                max_attempts: 1,
                ..job(kind)
            },
        )
        .await;
    }
    f.queue.fetch("render", "gone", 2, LEASE).await.unwrap();
    f.clock.advance(CDuration::seconds(31));
    assert_eq!(f.queue.recover_expired().await.unwrap(), 2);
    let groups = f.queue.dead_groups("render").await.unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0].count, 2);
    assert!(groups[0]
        .sample_error
        .contains("stopped renewing its lease"));
}

/// The fixture's queue relays too (a second relay racing the first).
async fn f_relay(f: &Fixture) -> u64 {
    let url = std::env::var("AIRWAVE_TEST_REDIS_URL").unwrap();
    let other = RedisQueue::connect(
        &url,
        f.prefix.as_deref().unwrap(),
        f.clock.clone(),
        f.db.clone(),
        HashMap::new(),
    )
    .await
    .unwrap();
    other.relay_outbox().await.unwrap()
}

/// On Redis `job.dead` is written into Redis in the job's own script, then relayed to the
/// database's outbox under an id fixed in Redis first: a relay that died after the insert and
/// before cleaning up is repeated without writing the event twice.
#[tokio::test]
async fn a_dead_job_event_survives_a_relay_that_died_half_way() {
    let f = fixture().await;
    let Some(prefix) = f.prefix.clone() else {
        return;
    };
    let url = std::env::var("AIRWAVE_TEST_REDIS_URL").unwrap();
    let redis = RedisQueue::connect(&url, &prefix, f.clock.clone(), f.db.clone(), HashMap::new())
        .await
        .unwrap();
    let mut j = job("doomed");
    j.max_attempts = 1;
    let id = enqueue(&f, j).await;
    fetch_kinds(&f, "w", 1).await;
    let boom = JobFailure::retryable("test.boom", "boom");
    assert_eq!(
        f.queue.fail(&id, "w", &boom, 0.5).await.unwrap(),
        FailOutcome::Dead
    );
    assert_dead_event(&f, &id).await;
    assert_eq!(
        redis.relay_outbox().await.unwrap(),
        0,
        "nothing left behind"
    );

    // A relay that inserted the event and died before removing its Redis entry, and two relays
    // racing over the same entries: each event is written once.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let entry = json!({"job_id": "job_01jz0000000000000000000000", "queue": "render", "kind": "doomed", "attempts": 1, "error": "boom", "fingerprint": "x", "at": 1_700_000_000_000_i64});
    for n in ["998", "999"] {
        let _: () = redis::cmd("HSET")
            .arg(format!("{prefix}:outbox"))
            .arg(n)
            .arg(entry.to_string())
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let (a, b) = tokio::join!(redis.relay_outbox(), f_relay(&f));
    assert!(a.unwrap() + b >= 2);
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}:outbox"))
        .arg("999")
        .arg(entry.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        redis.relay_outbox().await.unwrap(),
        1,
        "a repeated entry is moved again…"
    );
    let n: i64 = airwave_server::with_db!(&f.db, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE type = 'job.dead' AND subject_id = 'job_01jz0000000000000000000000'").fetch_one(pool).await.unwrap()
    });
    assert_eq!(n, 2, "… but written once: two entries, two events");
}

struct Panics;

#[async_trait]
impl JobHandler for Panics {
    async fn handle(&self, _job: &Job, _ctx: &JobContext) -> Result<Value, JobFailure> {
        panic!("the renderer hit an impossible frame");
    }
}

#[tokio::test]
async fn a_panicking_job_is_recorded_as_a_failure_with_the_panic_message() {
    let f = fixture().await;
    let worker =
        Worker::new(f.queue.clone(), "render", 1, LEASE).handle("panics", Arc::new(Panics));
    let id = enqueue(&f, job("panics")).await;
    let outcome = worker.run_one().await.unwrap().unwrap();
    assert!(
        matches!(outcome, Outcome::Failed(ref got, FailOutcome::WillRetry { .. }) if *got == id),
        "{outcome:?}"
    );
    let j = f.queue.get(&id).await.unwrap();
    assert_eq!(
        j.state,
        JobState::Retrying,
        "not left active until its lease runs out"
    );
    assert_eq!(
        j.last_error.as_deref(),
        Some("the handler panicked: the renderer hit an impossible frame")
    );
    let attempts = f.queue.attempts(&id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, "failed");
}

/// Dead-letter groups, retry-by-filter and listing see every job, not a window of the newest
/// (Redis once read only the newest 5,000 of a state).
#[tokio::test]
async fn twelve_thousand_dead_jobs_are_all_grouped_counted_and_retried() {
    const N: usize = 12_000;
    let f = fixture().await;
    let jobs: Vec<NewJob> = (0..N)
        .map(|i| {
            let mut j = NewJob::new("bulk", if i % 3 == 0 { "a" } else { "b" }, json!({"i": i}));
            j.max_attempts = 1;
            j
        })
        .collect();
    for chunk in jobs.chunks(1000) {
        f.queue.enqueue_bulk(chunk.to_vec()).await.unwrap();
    }
    let boom_a = JobFailure::permanent("test.bulk", "boom a");
    let boom_b = JobFailure::permanent("test.bulk", "boom b");
    loop {
        let batch = f.queue.fetch("bulk", "w", 500, LEASE).await.unwrap();
        if batch.is_empty() {
            break;
        }
        let fails = batch.iter().map(|j| {
            let why = if j.kind == "a" { &boom_a } else { &boom_b };
            f.queue.fail(&j.id, "w", why, 0.0)
        });
        for r in futures_util::future::join_all(fails).await {
            assert_eq!(r.unwrap(), FailOutcome::Dead);
        }
    }
    assert_eq!(f.queue.counts("bulk").await.unwrap().dead, N as u64);
    let groups = f.queue.dead_groups("bulk").await.unwrap();
    let counts: Vec<(String, u64)> = groups.iter().map(|g| (g.kind.clone(), g.count)).collect();
    assert_eq!(
        counts,
        vec![("b".to_string(), 8000), ("a".to_string(), 4000)]
    );
    let fp_a = boom_a.fingerprint("a");
    assert_eq!(retry_dead(&f, "bulk", Some(&fp_a), true).await, 4000);
    assert_eq!(retry_dead(&f, "bulk", None, true).await, N as u64);
    // Listing pages through all of them, newest first.
    let filter = JobFilter::new("bulk", JobState::Dead);
    let first = f.queue.list(&filter, 50, None).await.unwrap();
    assert_eq!(first.len(), 50);
    assert!(first.windows(2).all(|w| w[0].id > w[1].id));
    let second = f
        .queue
        .list(&filter, 50, first.last().map(|j| &j.id))
        .await
        .unwrap();
    assert_eq!(second.len(), 50);
    assert!(second[0].id < first[49].id);
    let mut by_fp = JobFilter::new("bulk", JobState::Dead);
    by_fp.fingerprint = Some(fp_a.clone());
    assert_eq!(f.queue.list(&by_fp, N, None).await.unwrap().len(), 4000);
    // Retrying one group brings back exactly its 4,000.
    assert_eq!(retry_dead(&f, "bulk", Some(&fp_a), false).await, 4000);
    let c = f.queue.counts("bulk").await.unwrap();
    assert_eq!((c.dead, c.waiting), (8000, 4000));
}
