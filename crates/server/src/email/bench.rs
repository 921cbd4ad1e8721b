//! `airwave-server bench email --messages N --concurrency C` (`SMTP_URL` names the SMTP server):
//! template rendering per core; a plain lettre loop (C senders on one pooled transport) against
//! the server; and the same number of messages through the real pipeline — recorded in a
//! database (a temporary SQLite file), sent by the `email` queue's worker at concurrency C
//! through the SMTP transport — with messages/s and the p50/p99 of one hand-over to the server.

use super::send::{SendJob, KIND};
use super::templates::{templates, Message};
use super::transport::{smtp::Smtp, Envelope, Transport};
use super::NewEmail;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, DatabaseConfig, DatabaseUrl};
use crate::db::{BeginWrite as _, Db};
use crate::queue::sql::SqlQueue;
use crate::queue::worker::Worker;
use crate::queue::{JobQueue, QueuePolicy};
use crate::with_db;
use anyhow::Context as _;
use secrecy::ExposeSecret as _;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn per_s(n: usize, d: Duration) -> u64 {
    (n as f64 / d.as_secs_f64().max(1e-9)) as u64
}

fn envelope(i: usize, config: &Config) -> anyhow::Result<Envelope> {
    let r = templates()?.render(&sample(i)?, &config.email.branding)?;
    Ok(Envelope {
        id: format!("msg_bench_{i}"),
        message_id: format!("<msg_bench_{i}@airwave.bench>"),
        from: config.email.from.clone(),
        to: format!("bench{i}@example.com"),
        subject: r.subject,
        html: r.html,
        text: r.text,
        tags: vec![("template".into(), "render_complete".into())],
    })
}

fn sample(i: usize) -> anyhow::Result<Message> {
    let names = [
        "render_complete",
        "welcome",
        "client_approval",
        "password_reset",
    ];
    Message::sample(names[i % names.len()]).context("a sample")
}

pub async fn run(config: &Config, messages: usize, concurrency: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.env != crate::config::Environment::Production,
        "bench email sends real messages to SMTP_URL: not in production"
    );
    let url = match &config.email.transport {
        super::settings::TransportConfig::Smtp { url, .. } => url.expose_secret().to_owned(),
        _ => anyhow::bail!("bench email needs SMTP_URL (and no RESEND_API_KEY)"),
    };
    let concurrency = concurrency.max(1);

    // 1. Rendering, on one core.
    let t = templates()?;
    let n = messages.max(1000);
    let start = Instant::now();
    for i in 0..n {
        std::hint::black_box(t.render(&sample(i)?, &config.email.branding)?);
    }
    println!(
        "bench=email scenario=render threads=1 messages={n} messages_per_s={}",
        per_s(n, start.elapsed())
    );

    // 2. The peer: lettre alone, C senders on one pool.
    let smtp: Arc<dyn Transport> = Arc::new(Smtp::new(
        &url,
        u32::try_from(concurrency).unwrap_or(10),
        Duration::from_secs(30),
    )?);
    let envelopes: Arc<Vec<Envelope>> = Arc::new(
        (0..messages)
            .map(|i| envelope(i, config))
            .collect::<anyhow::Result<_>>()?,
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (smtp, envelopes, next) = (smtp.clone(), envelopes.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(e) = envelopes.get(i) else {
                    return anyhow::Ok(());
                };
                smtp.send(e).await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    println!("bench=email scenario=lettre_loop concurrency={concurrency} messages={messages} messages_per_s={}", per_s(messages, start.elapsed()));

    // 3. The pipeline: recorded, queued, sent by the worker.
    let dir = tempfile::tempdir()?;
    let db = Db::connect(&DatabaseConfig {
        url: DatabaseUrl::Sqlite(dir.path().join("bench.db")),
        ..config.database.clone()
    })
    .await?;
    db.migrate().await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let policy = QueuePolicy {
        max_waiting: messages as u64 * 2 + 10,
        concurrency,
        ..QueuePolicy::defaults_for(super::send::QUEUE)
    };
    let queue: Arc<dyn JobQueue> = Arc::new(SqlQueue::new(
        db.clone(),
        clock.clone(),
        HashMap::from([(super::send::QUEUE.to_owned(), policy.clone())]),
    ));
    let job = SendJob {
        db: db.clone(),
        clock: clock.clone(),
        transport: smtp.clone(),
        config: config.email.clone(),
        key: Arc::new(secrecy::SecretSlice::from(vec![7u8; 32])),
        // As in production: every state change goes on the operations stream too.
        ops: crate::ops::Publisher::new(db.clone(), Arc::new(tokio::sync::Notify::new())),
    };
    let worker = Arc::new(
        Worker::new(
            queue.clone(),
            super::send::QUEUE,
            concurrency,
            Duration::from_secs(60),
        )
        .handle(KIND, Arc::new(job)),
    );
    for chunk in (0..messages).collect::<Vec<_>>().chunks(500) {
        let mut jobs = Vec::with_capacity(chunk.len());
        with_db!(&db, pool => {
            let mut tx = pool.begin_write().await?;
            for &i in chunk {
                let to = crate::domain::Email::parse(&format!("bench{i}@example.com"))?;
                let mail = NewEmail::new(&config.email, clock.now(), &to, sample(i)?, None)?;
                crate::record_email_on!(&mut *tx, &mail)?;
                jobs.push(policy.job(super::send::QUEUE, KIND, json!({"email_id": mail.id})));
            }
            tx.commit().await?;
        });
        queue.enqueue_bulk(jobs).await?;
    }
    // Recorded first, then sent: SQLite takes one writer at a time, so recording while the
    // worker writes would measure lock waits (PostgreSQL does both at once in production).
    let stop = CancellationToken::new();
    let start = Instant::now();
    let run = tokio::spawn(worker.run_until_stopped(stop.clone(), Duration::from_secs(5)));
    loop {
        let sent: i64 = with_db!(&db, pool => { sqlx::query_scalar("SELECT COUNT(*) FROM emails WHERE status = 'sent'").fetch_one(pool).await? });
        if sent as usize >= messages {
            break;
        }
        let failed: i64 = with_db!(&db, pool => { sqlx::query_scalar("SELECT COUNT(*) FROM emails WHERE status = 'failed'").fetch_one(pool).await? });
        anyhow::ensure!(failed == 0, "{failed} messages failed");
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(1800),
            "sending took over 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed();
    stop.cancel();
    run.await?;
    let times: Vec<i64> = with_db!(&db, pool => {
        sqlx::query_scalar("SELECT duration_ms FROM email_attempts WHERE outcome = 'sent'").fetch_all(pool).await?
    });
    let mut lat: Vec<f64> = times.iter().map(|&ms| ms as f64).collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "bench=email scenario=pipeline transport=smtp db=sqlite concurrency={concurrency} messages={messages} messages_per_s={} p50_handover_ms={:.1} p99_handover_ms={:.1}",
        per_s(messages, took),
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}
