//! The fan-out: a committed event of the catalogue becomes one message per enabled endpoint of
//! its client that takes its type — each with its own `webhook.deliver` job, so one endpoint
//! failing never delays another. A redelivered event finds its messages already there (one per
//! endpoint and event) and their jobs too (unique keys).

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
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(db_error)?;
            for e in &endpoints {
                let (status, error) = match (too_large, e.open()) {
                    (true, _) => ("failed", Some(format!("payload_too_large: {} bytes, more than AIRWAVE_WEBHOOK_MAX_PAYLOAD_KIB", body.len()))),
                    (false, true) => ("held", None),
                    (false, false) => ("pending", None),
                };
                sqlx::query(
                    "INSERT INTO webhook_messages (id, endpoint_id, client_id, event_id, event_type, body, status, last_error, next_attempt_at, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9)
                     ON CONFLICT (endpoint_id, event_id) DO NOTHING",
                )
                .bind(WebhookMessageId::new(now).as_str()).bind(&e.id).bind(&client).bind(&event.id)
                .bind(&event.event_type).bind(if too_large { "{}" } else { body.as_str() }).bind(status).bind(error).bind(now)
                .execute(&mut *tx).await.map_err(db_error)?;
                let (id, status, attempts, round): (String, String, i32, i32) = sqlx::query_as(
                    "SELECT id, status, attempts, round_start FROM webhook_messages WHERE endpoint_id = $1 AND event_id = $2",
                )
                .bind(&e.id).bind(&event.id).fetch_one(&mut *tx).await.map_err(db_error)?;
                match status.as_str() {
                    "pending" => jobs.deliver(&id, round, attempts + 1, None),
                    "held" => jobs.probe(&e.id, e.circuit_retry_at),
                    _ => {}
                }
            }
            tx.commit().await.map_err(db_error)?;
        });
        deliver::enqueue(&*self.queue, jobs)
            .await
            .map_err(|e| DeliveryError::retryable(format!("enqueueing deliveries: {e}")))
    }
}
