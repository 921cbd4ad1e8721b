//! `airwave-server bench queue …`: measures the job queue on a real backend and prints one line
//! per scenario in the contract's form (`bench=queue backend=… scenario=… key=value…`).
//! Scenarios: enqueue one at a time from `concurrency` producers; enqueue in bulk; process with a
//! no-op handler at each concurrency; the same with 20 % of jobs failing once; and pickup latency
//! on an idle queue. Numbers go to BENCHMARKS.md by hand, with the command that made them.

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, DatabaseConfig, DatabaseUrl};
use crate::db::Db;
use crate::queue::redis::RedisQueue;
use crate::queue::sql::SqlQueue;
use crate::queue::worker::{JobContext, JobHandler, Worker};
use crate::queue::{Backoff, Job, JobFailure, JobQueue, NewJob, QueuePolicy};
use anyhow::Context as _;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
    Redis,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Redis => "redis",
        }
    }
}

struct Setup {
    queue: Arc<dyn JobQueue>,
    name: String,
    _dir: Option<TempDir>,
}

/// A temp dir removed on drop (the bench's SQLite file lives there).
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn setup(backend: Backend, config: &Config, jobs: usize) -> anyhow::Result<Setup> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let name = format!("bench_{:08x}", rand::random::<u32>());
    let policies = HashMap::from([(
        name.clone(),
        QueuePolicy {
            max_waiting: jobs as u64 * 2 + 10,
            ..Default::default()
        },
    )]);
    let temp_sqlite = || async {
        let dir = std::env::temp_dir().join(format!("airwave-bench-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir)?;
        let db = Db::connect(&DatabaseConfig {
            url: DatabaseUrl::Sqlite(dir.join("bench.db")),
            ..config.database.clone()
        })
        .await?;
        db.migrate().await?;
        anyhow::Ok((db, TempDir(dir)))
    };
    Ok(match backend {
        Backend::Sqlite => {
            let (db, dir) = temp_sqlite().await?;
            Setup {
                queue: Arc::new(SqlQueue::new(db, clock, policies)),
                name,
                _dir: Some(dir),
            }
        }
        Backend::Postgres => {
            anyhow::ensure!(
                matches!(config.database.url, DatabaseUrl::Postgres(_)),
                "bench --backend postgres needs DATABASE_URL=postgres://…"
            );
            let db = Db::connect(&config.database).await?;
            db.migrate().await?;
            Setup {
                queue: Arc::new(SqlQueue::new(db, clock, policies)),
                name,
                _dir: None,
            }
        }
        Backend::Redis => {
            let url = config
                .queue
                .redis_url
                .as_ref()
                .context("bench --backend redis needs REDIS_URL=redis://…")?;
            let (db, dir) = temp_sqlite().await?;
            let prefix = format!("airwave-bench:{name}");
            let q =
                RedisQueue::connect(url.expose().as_str(), &prefix, clock, db, policies).await?;
            Setup {
                queue: Arc::new(q),
                name,
                _dir: Some(dir),
            }
        }
    })
}

fn new_job(queue: &str, i: usize) -> NewJob {
    NewJob {
        backoff: Backoff {
            base: Duration::ZERO,
            cap: Duration::ZERO,
        },
        ..NewJob::new(queue, "noop", json!({"i": i}))
    }
}

/// Succeeds, or fails the first attempt of every fifth job.
struct Noop {
    fail_every: Option<u64>,
    /// Successful runs so far (the drain watches this instead of querying the queue).
    succeeded: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait]
impl JobHandler for Noop {
    async fn handle(&self, job: &Job, _ctx: &JobContext) -> Result<Value, JobFailure> {
        let i = job.payload.get("i").and_then(Value::as_u64).unwrap_or(0);
        match self.fail_every {
            Some(n) if i % n == 0 && job.attempts == 1 => {
                Err(JobFailure::retryable("bench", "planned failure"))
            }
            _ => {
                self.succeeded
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(Value::Null)
            }
        }
    }
}

fn rate(n: usize, d: Duration) -> u64 {
    (n as f64 / d.as_secs_f64()).round() as u64
}

async fn fill(s: &Setup, jobs: usize) -> anyhow::Result<()> {
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(1000) {
        s.queue
            .enqueue_bulk(chunk.iter().map(|&i| new_job(&s.name, i)).collect())
            .await?;
    }
    Ok(())
}

/// Processes everything in the queue with `concurrency` slots; returns the time it took.
async fn drain(
    s: &Setup,
    jobs: usize,
    concurrency: usize,
    fail_every: Option<u64>,
) -> anyhow::Result<Duration> {
    let succeeded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let worker = Arc::new(
        Worker::new(
            s.queue.clone(),
            &s.name,
            concurrency,
            Duration::from_secs(60),
        )
        .handle(
            "noop",
            Arc::new(Noop {
                fail_every,
                succeeded: succeeded.clone(),
            }),
        ),
    );
    let stop = CancellationToken::new();
    let start = Instant::now();
    let run = tokio::spawn(worker.run_until_stopped(stop.clone(), Duration::from_secs(5)));
    // Watch the handler's counter (free), then the queue (a query) only for the last
    // acknowledgements, so the watching does not load the database being measured.
    loop {
        if succeeded.load(std::sync::atomic::Ordering::Relaxed) >= jobs
            && s.queue.counts(&s.name).await?.completed as usize >= jobs
        {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(1800),
            "processing took over 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = start.elapsed();
    stop.cancel();
    run.await?;
    Ok(took)
}

pub async fn queue(
    config: &Config,
    backend: Backend,
    jobs: usize,
    concurrencies: &[usize],
    latency_samples: usize,
) -> anyhow::Result<()> {
    let b = backend.name();
    let producers = concurrencies.iter().copied().max().unwrap_or(10);

    let s = setup(backend, config, jobs).await?;
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..producers {
        let (q, name, next) = (s.queue.clone(), s.name.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= jobs {
                    return anyhow::Ok(());
                }
                q.enqueue(new_job(&name, i)).await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    println!("bench=queue backend={b} scenario=enqueue mode=single producers={producers} jobs={jobs} jobs_per_s={}", rate(jobs, start.elapsed()));

    let s = setup(backend, config, jobs).await?;
    let start = Instant::now();
    fill(&s, jobs).await?;
    println!(
        "bench=queue backend={b} scenario=enqueue mode=bulk batch=1000 jobs={jobs} jobs_per_s={}",
        rate(jobs, start.elapsed())
    );

    for &c in concurrencies {
        let s = setup(backend, config, jobs).await?;
        fill(&s, jobs).await?;
        let took = drain(&s, jobs, c, None).await?;
        println!(
            "bench=queue backend={b} scenario=process concurrency={c} jobs={jobs} jobs_per_s={}",
            rate(jobs, took)
        );
    }
    for &c in concurrencies {
        let s = setup(backend, config, jobs).await?;
        fill(&s, jobs).await?;
        let took = drain(&s, jobs, c, Some(5)).await?;
        println!("bench=queue backend={b} scenario=process failing=20% concurrency={c} jobs={jobs} jobs_per_s={}", rate(jobs, took));
    }

    // Pickup latency: one job at a time into an idle queue with a waiting worker.
    let s = setup(backend, config, latency_samples).await?;
    let worker = Arc::new(
        Worker::new(s.queue.clone(), &s.name, 1, Duration::from_secs(60)).handle(
            "noop",
            Arc::new(Noop {
                fail_every: None,
                succeeded: Arc::default(),
            }),
        ),
    );
    let stop = CancellationToken::new();
    let run = tokio::spawn(worker.run_until_stopped(stop.clone(), Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut samples = Vec::with_capacity(latency_samples);
    for i in 0..latency_samples {
        let id = s.queue.enqueue(new_job(&s.name, i)).await?.id().clone();
        let sent = Instant::now();
        loop {
            let j = s.queue.get(&id).await?;
            if j.started_at.is_some() {
                // started_at is the pickup time on the queue's clock; measure on ours.
                samples.push(sent.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(7)).await;
    }
    stop.cancel();
    run.await?;
    samples.sort();
    let pct = |p: f64| {
        samples[((samples.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
    };
    println!("bench=queue backend={b} scenario=pickup_latency samples={latency_samples} p50_ms={:.2} p99_ms={:.2}", pct(0.5), pct(0.99));
    Ok(())
}
