//! The fan-out: a committed event of the catalogue becomes one message per enabled endpoint of
//! its client that takes its type. Their first attempts go out in `webhook.deliver_batch` jobs of
//! up to [`deliver::BATCH`] messages, sent at once (one endpoint's slow answer does not hold
//! another's request back); from a failure on, each message has its own `webhook.deliver` jobs.
//! A redelivered event finds its messages already there (one per endpoint and event) and their
//! jobs too (unique keys).

use super::catalogue;
use super::deliver::{self, DeliverJobs};
use super::endpoints::{EndpointRow, COLUMNS};
use super::settings::WebhookConfig;
use crate::clock::Clock;
use crate::db::{BeginWrite as _, Db};
use crate::events::{types, Consumer, Delivery, DeliveryError};
use crate::ids::WebhookMessageId;
use crate::queue::JobQueue;
use crate::with_db;
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;

pub struct Fanout {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub queue: Arc<dyn JobQueue>,
    pub config: WebhookConfig,
}

fn db_error(e: sqlx::Error) -> DeliveryError {
    DeliveryError::retryable(format!("database: {e}"))
}

#[async_trait]
impl Consumer for Fanout {
    fn name(&self) -> &str {
        "webhooks"
    }

    fn event_types(&self) -> &[&'static str] {
        catalogue::DELIVERED
    }

    async fn deliver(&self, d: &Delivery<'_>) -> Result<(), DeliveryError> {
        let event = d.event;
        let p = &event.payload;
        let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned);
        // Render events name the execution only: its client and campaign come from it.
        let (client, campaign) = match event.event_type.as_str() {
            types::RENDER_STARTED | types::RENDER_COMPLETED | types::RENDER_FAILED => {
                let Some(exe) = text("execution_id") else {
                    return Err(DeliveryError::permanent("the event has no execution_id"));
                };
                let row: Option<(String, String)> = with_db!(&self.db, pool => {
                    sqlx::query_as("SELECT client_id, campaign_id FROM executions WHERE id = $1")
                        .bind(&exe).fetch_optional(pool).await.map_err(db_error)?
                });
                match row {
                    Some((c, m)) => (c, Some(m)),
                    // Deleted since: nobody to tell.
                    None => return Ok(()),
                }
            }
            _ => match text("client_id") {
                Some(c) => (c, None),
                None => return Err(DeliveryError::permanent("the event has no client_id")),
            },
        };
        let endpoints: Vec<EndpointRow> = with_db!(&self.db, pool => {
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE client_id = $1 AND disabled_at IS NULL"))
                .bind(&client).fetch_all(pool).await.map_err(db_error)?
        });
        let endpoints: Vec<EndpointRow> = endpoints
            .into_iter()
            .filter(|e| e.takes(&event.event_type))
            .collect();
        if endpoints.is_empty() {
            return Ok(());
        }
        let data = catalogue::data(&event.event_type, p, &client, campaign.as_deref());
        let body = catalogue::body(&event.event_type, event.created_at, &data);
        let too_large = body.len() > self.config.max_payload_bytes;
        let now = self.clock.now();
        let mut jobs = DeliverJobs::default();
        let error = too_large.then(|| {
            format!(
                "payload_too_large: {} bytes, more than AIRWAVE_WEBHOOK_MAX_PAYLOAD_KIB",
                body.len()
            )
        });
        let stored = if too_large { "{}" } else { body.as_str() };
        let by_id: std::collections::HashMap<&str, &EndpointRow> =
            endpoints.iter().map(|e| (e.id.as_str(), e)).collect();
        // (id, endpoint, status, attempts, round) of every message of this event.
        let mut messages: Vec<(String, String, String, i32, i32)> = Vec::new();
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(db_error)?;
            // One statement per 200 endpoints; a redelivered event's messages exist already
            // (nothing inserted for them) and are read back.
            for chunk in endpoints.chunks(200) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO webhook_messages (id, endpoint_id, client_id, event_id, event_type, body, status, last_error, next_attempt_at, created_at, updated_at) ",
                );
                q.push_values(chunk, |mut b, e| {
                    let status = match (too_large, e.open()) {
                        (true, _) => "failed",
                        (false, true) => "held",
                        (false, false) => "pending",
                    };
                    b.push_bind(WebhookMessageId::new(now).to_string())
                        .push_bind(e.id.clone())
                        .push_bind(client.clone())
                        .push_bind(event.id.clone())
                        .push_bind(event.event_type.clone())
                        .push_bind(stored.to_owned())
                        .push_bind(status)
                        .push_bind(error.clone())
                        .push_bind(now)
                        .push_bind(now)
                        .push_bind(now);
                });
                q.push(" ON CONFLICT (endpoint_id, event_id) DO NOTHING RETURNING id, endpoint_id, status, attempts, round_start");
                let inserted: Vec<(String, String, String, i32, i32)> =
                    q.build_query_as().fetch_all(&mut *tx).await.map_err(db_error)?;
                if inserted.len() < chunk.len() {
                    for e in chunk.iter().filter(|e| !inserted.iter().any(|m| m.1 == e.id)) {
                        let m: (String, String, String, i32, i32) = sqlx::query_as(
                            "SELECT id, endpoint_id, status, attempts, round_start FROM webhook_messages WHERE endpoint_id = $1 AND event_id = $2",
                        )
                        .bind(&e.id).bind(&event.id).fetch_one(&mut *tx).await.map_err(db_error)?;
                        messages.push(m);
                    }
                }
                messages.extend(inserted);
            }
            tx.commit().await.map_err(db_error)?;
        });
        // First attempts go in batches (sent at once, recorded together); a redelivered event's
        // message already on its retries keeps its own job (found by its key).
        let mut first: Vec<(String, i32, i32)> = Vec::new();
        for (id, endpoint, status, attempts, round) in &messages {
            match status.as_str() {
                "pending" if *attempts == 0 && *round == 0 => first.push((id.clone(), 0, 1)),
                "pending" => jobs.deliver(id, *round, attempts + 1, None),
                "held" => jobs.probe(
                    endpoint,
                    by_id
                        .get(endpoint.as_str())
                        .and_then(|e| e.circuit_retry_at),
                ),
                _ => {}
            }
        }
        first.sort_unstable();
        for (i, chunk) in first.chunks(deliver::BATCH).enumerate() {
            jobs.batch(format!("batch:{}:{i}", event.id), chunk);
        }
        deliver::enqueue(&*self.queue, jobs)
            .await
            .map_err(|e| DeliveryError::retryable(format!("enqueueing deliveries: {e}")))
    }
}
