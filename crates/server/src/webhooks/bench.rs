//! `airwave-server bench webhooks --backend sqlite|postgres|redis --events N --endpoints M
//! --concurrency C`: N `export.ready` events of one client fanned out to its M endpoints on a
//! local receiver (N × M deliveries), through the real parts — the fan-out consumer, the
//! `webhook` queue on the chosen backend, the worker at concurrency C, signing, the SSRF-guarded
//! client and the attempt log — with deliveries/s and the p50/p99 from the event's hand-over to
//! the consumer to its first attempt's arrival at the receiver. Beside it, in the same run, the
//! receiver's own ceiling: the same number of POSTs of the same body from a plain reqwest client
//! at concurrency C. (The dispatcher's pickup of a committed event is not in the latency: the
//! consumer is called directly.)

use super::deliver::{self, Deliverer};
use super::fanout::Fanout;
use crate::bench::Backend;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, DatabaseConfig, DatabaseUrl};
use crate::db::Db;
use crate::events::outbox::{Event, Position};
use crate::events::{Consumer as _, Delivery};
use crate::queue::redis::RedisQueue;
use crate::queue::sql::SqlQueue;
use crate::queue::worker::Worker;
use crate::queue::{JobQueue, QueuePolicy};
use crate::with_db;
use anyhow::Context as _;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The receiver: counts requests and when each event's first delivery arrived.
#[derive(Clone)]
struct Receiver {
    hits: Arc<AtomicUsize>,
    arrivals: Arc<Mutex<Vec<(usize, Instant)>>>,
}

async fn receiver() -> anyhow::Result<(String, Receiver)> {
    let r = Receiver {
        hits: Arc::new(AtomicUsize::new(0)),
        arrivals: Arc::new(Mutex::new(Vec::new())),
    };
    let state = r.clone();
    let app = axum::Router::new().fallback(move |body: bytes::Bytes| {
        let state = state.clone();
        async move {
            let at = Instant::now();
            state.hits.fetch_add(1, Ordering::Relaxed);
            // The event's number is in `data.export_id` (`exp_bench_<n>`); the plain client's
            // requests carry none.
            if let Some(n) = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["data"]["export_id"].as_str().map(str::to_owned))
                .and_then(|s| s.rsplit('_').next().and_then(|n| n.parse::<usize>().ok()))
            {
                state
                    .arrivals
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((n, at));
            }
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/hook"), r))
}

fn per_s(n: usize, d: Duration) -> u64 {
    (n as f64 / d.as_secs_f64().max(1e-9)) as u64
}

fn event(i: usize, client: &str) -> Event {
    Event {
        id: format!("evt_bench_{i}"),
        position: Position {
            tx: 0,
            seq: i64::try_from(i).unwrap_or(0),
        },
        event_type: crate::events::types::EXPORT_READY.into(),
        subject: format!("exp_bench_{i}"),
        payload: json!({
            "export_id": format!("exp_bench_{i}"), "campaign_id": "cmp_bench", "client_id": client,
            "renders": 12, "size_bytes": 123_456_789, "sha256": "0".repeat(64),
        }),
        created_at: chrono::Utc::now(),
    }
}

pub async fn run(
    config: &Config,
    backend: Backend,
    events: usize,
    endpoints: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.env != crate::config::Environment::Production,
        "bench webhooks writes to the database: not in production"
    );
    let (events, endpoints, concurrency) =
        (events.max(1), endpoints.clamp(1, 1000), concurrency.max(1));
    let total = events * endpoints;
    let (url, rx) = receiver().await?;

    // 1. The receiver's ceiling: a plain client, the same requests, the same concurrency.
    let body = super::catalogue::body(
        "export.ready",
        chrono::Utc::now(),
        &event(0, "cli_bench").payload,
    );
    let http = reqwest::Client::builder().no_proxy().build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (http, next, url, body) = (http.clone(), next.clone(), url.clone(), body.clone());
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                anyhow::ensure!(
                    r.status().is_success(),
                    "the receiver answered {}",
                    r.status()
                );
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let ceiling = per_s(total, start.elapsed());
    println!("bench=webhooks scenario=receiver_ceiling client=reqwest concurrency={concurrency} requests={total} requests_per_s={ceiling}");
    rx.hits.store(0, Ordering::Relaxed);

    // 2. The pipeline.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let dir = tempfile::tempdir()?;
    let sqlite = DatabaseConfig {
        url: DatabaseUrl::Sqlite(dir.path().join("bench.db")),
        ..config.database.clone()
    };
    let db = match backend {
        Backend::Postgres => {
            anyhow::ensure!(
                matches!(config.database.url, DatabaseUrl::Postgres(_)),
                "bench webhooks --backend postgres needs DATABASE_URL=postgres://…"
            );
            Db::connect(&config.database).await?
        }
        Backend::Sqlite | Backend::Redis => Db::connect(&sqlite).await?,
    };
    db.migrate().await?;
    let policy = QueuePolicy {
        max_waiting: total as u64 * 2 + 10,
        concurrency,
        ..QueuePolicy::defaults_for(deliver::QUEUE)
    };
    let policies = HashMap::from([(deliver::QUEUE.to_owned(), policy)]);
    let queue: Arc<dyn JobQueue> = match backend {
        Backend::Redis => {
            let url = config
                .queue
                .redis_url
                .as_ref()
                .context("bench webhooks --backend redis needs REDIS_URL=redis://…")?;
            let prefix = format!("airwave-bench:webhooks-{:08x}", rand::random::<u32>());
            Arc::new(
                RedisQueue::connect(
                    url.expose().as_str(),
                    &prefix,
                    clock.clone(),
                    db.clone(),
                    policies,
                )
                .await?,
            )
        }
        _ => Arc::new(SqlQueue::new(db.clone(), clock.clone(), policies)),
    };
    let mut wh = config.webhooks.clone();
    wh.allow = crate::outbound::parse_allow_list("127.0.0.1/32")?;
    wh.schedule = Vec::new();
    wh.circuit_failures = i32::MAX;
    let client = format!("cli_bench{:08x}", rand::random::<u32>());
    let now = clock.now();
    with_db!(&db, pool => {
        sqlx::query("INSERT INTO clients (id, name, created_at, updated_at) VALUES ($1, 'Bench', $2, $2)")
            .bind(&client).bind(now).execute(pool).await?;
        for _ in 0..endpoints {
            sqlx::query("INSERT INTO webhook_endpoints (id, client_id, url, event_types, created_at, updated_at) VALUES ($1, $2, $3, '[]', $4, $4)")
                .bind(crate::ids::WebhookEndpointId::new(now).as_str()).bind(&client).bind(&url).bind(now)
                .execute(pool).await?;
        }
    });
    let ops = crate::ops::Publisher::new(db.clone(), Arc::new(tokio::sync::Notify::new()));
    let resolver = super::endpoints::resolver(&wh)?;
    let deliverer = Arc::new(Deliverer::new(
        db.clone(),
        clock.clone(),
        wh.clone(),
        Arc::new(secrecy::SecretSlice::from(vec![7u8; 32])),
        queue.clone(),
        ops,
        resolver,
    )?);
    let fanout = Fanout {
        db: db.clone(),
        clock: clock.clone(),
        queue: queue.clone(),
        config: wh,
    };
    let worker = Arc::new(
        Worker::new(
            queue.clone(),
            deliver::QUEUE,
            concurrency,
            Duration::from_secs(60),
        )
        .handle(deliver::KIND_DELIVER, deliverer.clone())
        .handle(deliver::KIND_BATCH, deliverer.clone())
        .handle(deliver::KIND_PROBE, deliverer),
    );
    let stop = CancellationToken::new();
    let run = tokio::spawn(worker.run_until_stopped(stop.clone(), Duration::from_secs(5)));
    let handed = Arc::new(Mutex::new(vec![None::<Instant>; events]));
    let start = Instant::now();
    // The consumer takes events one after another, as the dispatcher does.
    for i in 0..events {
        let e = event(i, &client);
        handed.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(Instant::now());
        fanout
            .deliver(&Delivery {
                key: format!("webhooks:{}", e.id),
                event: &e,
                attempt: 1,
            })
            .await
            .map_err(|e| anyhow::anyhow!("fan-out: {e}"))?;
    }
    while rx.hits.load(Ordering::Relaxed) < total {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(1800),
            "delivering took over 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = start.elapsed();
    // Every message recorded delivered (the attempt log is written after the answer).
    loop {
        let n: i64 = with_db!(&db, pool => { sqlx::query_scalar("SELECT COUNT(*) FROM webhook_messages WHERE status = 'delivered' AND client_id = $1").bind(&client).fetch_one(pool).await? });
        if n as usize >= total {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(1800),
            "recording took over 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    run.await?;
    let handed = handed.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut lat: Vec<f64> = rx
        .arrivals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(|(n, at)| {
            handed
                .get(*n)
                .copied()
                .flatten()
                .map(|h| at.duration_since(h).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let rate = per_s(total, took);
    println!(
        "bench=webhooks scenario=pipeline backend={} events={events} endpoints={endpoints} concurrency={concurrency} deliveries={total} deliveries_per_s={rate} p50_event_to_attempt_ms={:.1} p99_event_to_attempt_ms={:.1} ratio_to_ceiling={:.2}",
        backend.name(),
        pct(0.5),
        pct(0.99),
        rate as f64 / ceiling.max(1) as f64
    );
    Ok(())
}
