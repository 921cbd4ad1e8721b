//! The outbox dispatcher: reads events not yet dispatched, in order, and hands them to their
//! consumers; today `execution.created` becomes a `render` job. An event is marked dispatched only
//! after its consumers took it, so a committed change never misses its job; if a process dies in
//! between, the event is handed out again and the job's unique key (the execution id) makes the
//! second enqueue a no-op. Several dispatchers (one per worker process) may run at once for the
//! same reason.

use crate::clock::Clock;
use crate::db::Db;
use crate::events::types;
use crate::queue::{JobQueue, NewJob, QueuePolicy};
use crate::render::job as render_job;
use crate::with_db;
use serde_json::{json, Value};
use sqlx::types::Json;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BATCH: i64 = 200;

pub struct Dispatcher {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub queue: Arc<dyn JobQueue>,
}

/// The job an event causes, if any, with its queue's configured attempts and backoff.
pub fn job_for(
    event_type: &str,
    payload: &Value,
    policy: impl Fn(&str) -> QueuePolicy,
) -> Option<NewJob> {
    match event_type {
        types::EXECUTION_CREATED => {
            let execution = payload.get("execution_id")?.as_str()?;
            Some(NewJob {
                unique_key: Some(execution.to_owned()),
                correlation_id: Some(execution.to_owned()),
                ..policy(render_job::QUEUE).job(
                    render_job::QUEUE,
                    render_job::KIND,
                    json!({"execution_id": execution}),
                )
            })
        }
        _ => None,
    }
}

impl Dispatcher {
    /// Dispatches one batch; returns how many events it handled.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let events: Vec<(String, String, Json<Value>)> = with_db!(&self.db, pool => {
            sqlx::query_as("SELECT id, type, payload FROM events WHERE dispatched_at IS NULL ORDER BY id LIMIT $1").bind(BATCH).fetch_all(pool).await?
        });
        for (id, event_type, payload) in &events {
            if let Some(job) = job_for(event_type, &payload.0, |q| self.queue.policy(q)) {
                self.queue
                    .enqueue(job)
                    .await
                    .map_err(|e| anyhow::anyhow!("enqueueing the job of event {id}: {e}"))?;
            }
            let now = self.clock.now();
            with_db!(&self.db, pool => {
                sqlx::query("UPDATE events SET dispatched_at = $2 WHERE id = $1 AND dispatched_at IS NULL").bind(id).bind(now).execute(pool).await?;
            });
        }
        Ok(events.len())
    }

    /// Dispatches until `stop`; polls every `every` when idle, backs off on errors.
    pub async fn run_until_stopped(self, stop: CancellationToken, every: Duration) {
        let mut wait = every;
        while !stop.is_cancelled() {
            match self.run_once().await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => wait = every,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "dispatching events failed; retrying");
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
