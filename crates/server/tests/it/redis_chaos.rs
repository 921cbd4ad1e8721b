//! Chaos with a real Redis: restarted (SHUTDOWN, then started again on its AOF) while 10 000 jobs
//! are being processed. Every job must complete, none may be lost, and the workers must recover
//! by themselves. The test runs its own redis-server (so restarting it disturbs no other test);
//! it needs the `redis-server` that `scripts/test` installs, and says so when it is missing.

use airwave_server::clock::SystemClock;
use airwave_server::queue::redis::RedisQueue;
use airwave_server::queue::worker::{JobContext, JobHandler, Worker};
use airwave_server::queue::{Job, JobFailure, JobQueue, NewJob, QueuePolicy};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const JOBS: usize = 10_000;

struct Noop;

#[async_trait]
impl JobHandler for Noop {
    async fn handle(&self, _job: &Job, _ctx: &JobContext) -> Result<Value, JobFailure> {
        Ok(Value::Null)
    }
}

fn start_redis(dir: &std::path::Path, port: u16) -> std::process::Child {
    std::process::Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start redis-server")
}

async fn wait_ready(url: &str) {
    let client = redis::Client::open(url).unwrap();
    for _ in 0..200 {
        if let Ok(mut c) = client.get_multiplexed_async_connection().await {
            if redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_ok()
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("redis did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_under_load_loses_no_job_and_workers_recover_alone() {
    if std::env::var("AIRWAVE_TEST_REDIS_URL").is_err() {
        // Under scripts/test the services are required: a missing Redis is a failure there.
        assert!(
            std::env::var("AIRWAVE_TEST_REQUIRE_SERVICES").is_err(),
            "scripts/test runs need Redis (AIRWAVE_TEST_REDIS_URL)"
        );
        eprintln!("redis chaos test: not run (needs redis-server; scripts/test provides it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut server = start_redis(dir.path(), port);
    wait_ready(&url).await;

    let (db, _db_dir) = crate::fresh_db().await;
    let policies = HashMap::from([(
        "chaos".to_string(),
        QueuePolicy {
            max_waiting: JOBS as u64 + 1,
            ..Default::default()
        },
    )]);
    let queue: Arc<dyn JobQueue> = Arc::new(
        RedisQueue::connect(&url, "chaos", Arc::new(SystemClock), db, policies)
            .await
            .unwrap(),
    );
    for chunk in (0..JOBS).collect::<Vec<_>>().chunks(1000) {
        queue
            .enqueue_bulk(
                chunk
                    .iter()
                    .map(|i| NewJob::new("chaos", "noop", json!({"i": i})))
                    .collect(),
            )
            .await
            .unwrap();
    }
    assert_eq!(queue.counts("chaos").await.unwrap().waiting, JOBS as u64);

    let stop = tokio_util::sync::CancellationToken::new();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let w = Arc::new(
            Worker::new(queue.clone(), "chaos", 25, Duration::from_secs(2))
                .handle("noop", Arc::new(Noop)),
        );
        workers.push(tokio::spawn(
            w.run_until_stopped(stop.clone(), Duration::from_secs(1)),
        ));
    }

    // Let a part of the work happen, then restart Redis under the workers' feet.
    let started = Instant::now();
    loop {
        let done = queue
            .counts("chaos")
            .await
            .map(|c| c.completed)
            .unwrap_or(0);
        if done >= (JOBS / 5) as u64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no progress before the restart"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let shutdown = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "shutdown"])
        .status()
        .unwrap();
    assert!(shutdown.success() || server.try_wait().unwrap().is_some());
    server.wait().unwrap();
    let mut server = start_redis(dir.path(), port);
    wait_ready(&url).await;

    // Everything completes with the same worker tasks, none restarted.
    let deadline = Instant::now() + Duration::from_secs(180);
    let counts = loop {
        if let Ok(c) = queue.counts("chaos").await {
            if c.completed as usize == JOBS {
                break c;
            }
            assert!(
                Instant::now() < deadline,
                "not all jobs completed after the restart: {c:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (counts.waiting, counts.active, counts.retrying, counts.dead),
        (0, 0, 0, 0),
        "{counts:?}"
    );
    assert!(workers.iter().all(|w| !w.is_finished()), "a worker gave up");
    stop.cancel();
    for w in workers {
        w.await.unwrap();
    }
    let _ = server.kill();
    let _ = server.wait();
}
