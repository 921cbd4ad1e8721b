//! Sending: `email.queued` (recorded with the message, in the transaction that caused it)
//! becomes an `email.send` job on the `email` queue, whose worker renders the message, puts the
//! links' tokens in place and hands it to the transport, recording every attempt. Also the
//! feature's mails that follow events: `Welcome` when an account is created and
//! `RenderComplete` to whoever asked for a render.
//!
//! queued → sent (the transport took it) → delivered / bounced / complained (the provider's
//! webhook); or failed (a permanent error, or out of attempts); or suppressed (the address is on
//! the suppression list when its turn comes). Delivery is at least once: a message the transport
//! took whose `sent` could not be recorded is sent again with the same `Message-ID` and, on
//! Resend, the same `Idempotency-Key` (delivered once).

use super::secrets;
use super::settings::EmailConfig;
use super::templates::{self, Message};
use super::transport::{Envelope, Transport, TransportError};
use super::NewEmail;
use crate::clock::Clock;
use crate::db::{BeginWrite as _, Db};
use crate::events::{types, Consumer, Delivery, DeliveryError};
use crate::ops::Publisher;
use crate::queue::worker::{JobContext, JobHandler};
use crate::queue::{Job, JobFailure, JobQueue};
use crate::with_db;
use airwave_api::{ops_event, EmailChangedEvent, EmailStatus};
use async_trait::async_trait;
use secrecy::SecretSlice;
use serde_json::{json, Value};
use sqlx::types::Json;
use std::sync::Arc;
use std::time::Instant;

pub const QUEUE: &str = "email";
pub const KIND: &str = "email.send";

/// `email.queued` → an `email.send` job (its unique key is the message's id: a redelivered event
/// finds the job already there).
pub struct QueuedConsumer {
    pub queue: Arc<dyn JobQueue>,
    pub ops: Publisher,
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl Consumer for QueuedConsumer {
    fn name(&self) -> &str {
        "email"
    }

    fn event_types(&self) -> &[&'static str] {
        &[types::EMAIL_QUEUED]
    }

    async fn deliver(&self, d: &Delivery<'_>) -> Result<(), DeliveryError> {
        let Some(id) = d.event.payload.get("email_id").and_then(Value::as_str) else {
            return Err(DeliveryError::permanent("the event has no email_id"));
        };
        let job = crate::queue::NewJob {
            unique_key: Some(id.to_owned()),
            correlation_id: Some(id.to_owned()),
            ..self
                .queue
                .policy(QUEUE)
                .job(QUEUE, KIND, json!({"email_id": id}))
        };
        match self.queue.enqueue(job).await {
            Ok(_) => {
                let template = d.event.payload.get("template").and_then(Value::as_str);
                let event = EmailChangedEvent {
                    id: id.to_owned(),
                    template: template.unwrap_or_default().to_owned(),
                    status: EmailStatus::Queued,
                    attempts: 0,
                    time: self.clock.now(),
                };
                self.ops
                    .publish(event.time, ops_event::EMAIL_CHANGED, &event)
                    .await;
                Ok(())
            }
            Err(e @ crate::queue::QueueError::Invalid(_)) => {
                Err(DeliveryError::permanent(e.to_string()))
            }
            Err(e) => Err(DeliveryError::retryable(format!(
                "enqueueing the send job: {e}"
            ))),
        }
    }
}

pub struct SendJob {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub transport: Arc<dyn Transport>,
    pub config: EmailConfig,
    pub key: Arc<SecretSlice<u8>>,
    pub ops: Publisher,
}

#[derive(sqlx::FromRow)]
struct Pending {
    template: String,
    to_address: String,
    from_address: Option<String>,
    status: String,
    message: Option<Json<Message>>,
    secret_ref: Option<Json<secrets::LinkSecret>>,
    message_id: Option<String>,
    attempts: i32,
    /// Set when a resend overrode the suppression list (with this reason).
    resend_reason: Option<String>,
}

fn db_failure(e: sqlx::Error) -> JobFailure {
    JobFailure::retryable("email.db", format!("database: {e}"))
}

/// What one attempt came to.
enum Outcome {
    Sent(Option<String>),
    Retry(String),
    Failed(String),
}

impl SendJob {
    /// Records an attempt and the message's new state in one transaction.
    async fn record(
        &self,
        (id, template): (&str, &str),
        attempt: i32,
        started: chrono::DateTime<chrono::Utc>,
        took_ms: i64,
        outcome: &Outcome,
        last: bool,
    ) -> Result<(), JobFailure> {
        let now = self.clock.now();
        let (label, status, error, provider) = match outcome {
            Outcome::Sent(p) => ("sent", "sent", None, p.as_deref()),
            Outcome::Retry(e) if !last => ("retry", "queued", Some(e.as_str()), None),
            Outcome::Retry(e) | Outcome::Failed(e) => ("failed", "failed", Some(e.as_str()), None),
        };
        let transport = self.transport.name();
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(db_failure)?;
            sqlx::query(
                "INSERT INTO email_attempts (email_id, attempt, transport, started_at, duration_ms, outcome, error, provider_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (email_id, attempt) DO UPDATE SET outcome = excluded.outcome, error = excluded.error, provider_id = excluded.provider_id, duration_ms = excluded.duration_ms",
            )
            .bind(id).bind(attempt).bind(transport).bind(started).bind(took_ms).bind(label).bind(error).bind(provider)
            .execute(&mut *tx).await.map_err(db_failure)?;
            let updated = sqlx::query(
                "UPDATE emails SET status = $2, attempts = $3, last_error = $4, transport = $5,
                    provider_id = COALESCE($6, provider_id), sent_at = CASE WHEN $2 = 'sent' THEN $7 ELSE sent_at END,
                    updated_at = $7, status_at = CASE WHEN status = $2 THEN status_at ELSE $7 END
                 WHERE id = $1 AND status = 'queued'",
            )
            .bind(id).bind(status).bind(attempt).bind(error).bind(transport).bind(provider).bind(now)
            .execute(&mut *tx).await.map_err(db_failure)?.rows_affected();
            tx.commit().await.map_err(db_failure)?;
            if updated == 0 {
                // Not queued any more (a resend raced it, or the webhook moved it on): no change.
                return Ok(());
            }
        });
        let status = match status {
            "sent" => EmailStatus::Sent,
            "queued" => EmailStatus::Queued,
            _ => EmailStatus::Failed,
        };
        self.changed(id, template, status, attempt).await;
        Ok(())
    }

    /// Tells the operations stream (the console's Emails view refreshes).
    async fn changed(&self, id: &str, template: &str, status: EmailStatus, attempts: i32) {
        let event = EmailChangedEvent {
            id: id.to_owned(),
            template: template.to_owned(),
            status,
            attempts,
            time: self.clock.now(),
        };
        self.ops
            .publish(event.time, ops_event::EMAIL_CHANGED, &event)
            .await;
    }
}

#[async_trait]
impl JobHandler for SendJob {
    async fn handle(&self, job: &Job, ctx: &JobContext) -> Result<Value, JobFailure> {
        let id = job
            .payload
            .get("email_id")
            .and_then(Value::as_str)
            .ok_or_else(|| JobFailure::permanent("email.payload", "the payload has no email_id"))?
            .to_owned();
        let pending: Option<Pending> = with_db!(&self.db, pool => {
            sqlx::query_as("SELECT template, to_address, from_address, status, message, secret_ref, message_id, attempts, resend_reason FROM emails WHERE id = $1")
                .bind(&id).fetch_optional(pool).await.map_err(db_failure)?
        });
        let Some(p) = pending else {
            return Ok(json!({"skipped": "the message no longer exists"}));
        };
        if p.status != "queued" {
            return Ok(json!({"skipped": format!("the message is {}", p.status)}));
        }
        let now = self.clock.now();
        let suppressed: Option<String> = with_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT reason FROM email_suppressions WHERE address = $1").bind(&p.to_address).fetch_optional(pool).await.map_err(db_failure)?
        });
        if let (Some(reason), None) = (suppressed, &p.resend_reason) {
            with_db!(&self.db, pool => {
                sqlx::query("UPDATE emails SET status = 'suppressed', last_error = $2, updated_at = $3, status_at = $3 WHERE id = $1 AND status = 'queued'")
                    .bind(&id).bind(format!("the address is suppressed ({reason})")).bind(now).execute(pool).await.map_err(db_failure)?;
            });
            self.changed(&id, &p.template, EmailStatus::Suppressed, p.attempts)
                .await;
            return Ok(json!({"suppressed": reason}));
        }
        let attempt = p.attempts + 1;
        let last = job.attempts >= job.max_attempts;
        let Some(Json(message)) = p.message else {
            let outcome = Outcome::Failed("the message has no template data".into());
            self.record((&id, &p.template), attempt, now, 0, &outcome, true)
                .await?;
            return Err(JobFailure::permanent(
                "email.load",
                "the message has no template data",
            ));
        };
        let rendered =
            match templates::templates().and_then(|t| t.render(&message, &self.config.branding)) {
                Ok(r) => r,
                Err(e) => {
                    let outcome = Outcome::Failed(format!("rendering: {e}"));
                    self.record((&id, &p.template), attempt, now, 0, &outcome, true)
                        .await?;
                    return Err(JobFailure::permanent("email.render", e.to_string()));
                }
            };
        let token = p.secret_ref.map(|Json(secret)| secret.token(&self.key));
        let (html, text) = match &token {
            Some(token) => (
                secrets::reveal(&rendered.html, token),
                secrets::reveal(&rendered.text, token),
            ),
            None => (rendered.html, rendered.text),
        };
        // A provider's error may quote the message (a rejected link): never record the token.
        let scrub = |m: String| match &token {
            Some(t) => m.replace(t.as_str(), secrets::REDACTED),
            None => m,
        };
        let envelope = Envelope {
            message_id: p.message_id.unwrap_or_else(|| {
                format!(
                    "<{id}@{}>",
                    super::transport::sender_domain(&self.config.from)
                )
            }),
            id: id.clone(),
            from: p.from_address.unwrap_or_else(|| self.config.from.clone()),
            to: p.to_address,
            subject: rendered.subject,
            html,
            text,
            tags: vec![("template".into(), message.template().into())],
        };
        let start = Instant::now();
        let result = tokio::select! {
            r = self.transport.send(&envelope) => r,
            // The attempt timed out or was cancelled: record it (the SMTP server may have taken
            // the message; a retry sends it again with the same Message-ID).
            () = ctx.cancel.cancelled() => Err(TransportError::retryable("the attempt timed out or was cancelled")),
        };
        let took = i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX);
        match result {
            Ok(accepted) => {
                self.record(
                    (&id, &p.template),
                    attempt,
                    now,
                    took,
                    &Outcome::Sent(accepted.provider_id.clone()),
                    false,
                )
                .await?;
                Ok(
                    json!({"sent": true, "transport": self.transport.name(), "provider_id": accepted.provider_id, "message_id": envelope.message_id}),
                )
            }
            Err(e) => {
                let (permanent, message) = match e {
                    TransportError::Retryable { message, .. } => (false, scrub(message)),
                    TransportError::Permanent { message } => (true, scrub(message)),
                };
                let outcome = if permanent {
                    Outcome::Failed(message.clone())
                } else {
                    Outcome::Retry(message.clone())
                };
                self.record(
                    (&id, &p.template),
                    attempt,
                    now,
                    took,
                    &outcome,
                    last || permanent,
                )
                .await?;
                Err(if permanent {
                    JobFailure::permanent("email.transport", message)
                } else {
                    JobFailure::retryable("email.transport", message)
                })
            }
        }
    }
}

/// The mails that follow events: `Welcome` for a new account, `RenderComplete` to whoever asked
/// for the render, `WebhookDisabled` to a client's members when its endpoint is disabled. Each is recorded once per event (its delivery key).
pub struct EventMails {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<crate::config::Config>,
}

fn db_delivery(e: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::retryable(format!("database: {e}"))
}

impl EventMails {
    async fn record(
        &self,
        key: &str,
        to: &str,
        message: Message,
        correlation: Option<&str>,
    ) -> Result<(), DeliveryError> {
        let to = match crate::domain::Email::parse(to) {
            Ok(to) => to,
            // An account's address was checked when it was made; one that no longer parses gets no mail.
            Err(e) => return Err(DeliveryError::permanent(e.to_string())),
        };
        let mut mail = NewEmail::new(&self.config.email, self.clock.now(), &to, message, None)
            .map_err(|e| DeliveryError::permanent(e.to_string()))?
            .by_staff_or_system()
            .correlation(correlation);
        mail.dedupe_key = Some(key.to_owned());
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(db_delivery)?;
            crate::record_email_on!(&mut *tx, &mail).map_err(db_delivery)?;
            tx.commit().await.map_err(db_delivery)?;
        });
        Ok(())
    }

    fn link(&self, path: &str) -> Result<String, DeliveryError> {
        self.config
            .link(path, None)
            .map(|u| u.to_string())
            .map_err(|e| DeliveryError::permanent(e.to_string()))
    }
}

#[async_trait]
impl Consumer for EventMails {
    fn name(&self) -> &str {
        "email-notifications"
    }

    fn event_types(&self) -> &[&'static str] {
        &[
            types::USER_REGISTERED,
            types::RENDER_COMPLETED,
            types::WEBHOOK_ENDPOINT_DISABLED,
        ]
    }

    async fn deliver(&self, d: &Delivery<'_>) -> Result<(), DeliveryError> {
        let field = |name: &str| {
            d.event
                .payload
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        match d.event.event_type.as_str() {
            types::USER_REGISTERED => {
                let Some(user) = field("user_id") else {
                    return Err(DeliveryError::permanent("the event has no user_id"));
                };
                let row: Option<(String, String)> = with_db!(&self.db, pool => {
                    sqlx::query_as("SELECT email, name FROM users WHERE id = $1").bind(&user).fetch_optional(pool).await.map_err(db_delivery)?
                });
                let Some((email, name)) = row else {
                    return Ok(());
                };
                let message = Message::Welcome(templates::Welcome {
                    name,
                    email: email.clone(),
                    login_url: self.link("/login")?,
                });
                self.record(&d.key, &email, message, Some(&user)).await
            }
            types::RENDER_COMPLETED => {
                let Some(execution) = field("execution_id") else {
                    return Err(DeliveryError::permanent("the event has no execution_id"));
                };
                let row: Option<(Option<String>, Option<String>, String, String)> = with_db!(&self.db, pool => {
                    sqlx::query_as(
                        "SELECT u.email, u.name, c.name, m.name FROM executions e
                         JOIN campaigns c ON c.id = e.campaign_id JOIN matrices m ON m.id = e.matrix_id
                         LEFT JOIN users u ON u.id = e.created_by AND u.disabled_at IS NULL
                           AND (u.role IN ('admin', 'operator')
                                OR EXISTS (SELECT 1 FROM client_memberships cm WHERE cm.client_id = e.client_id AND cm.user_id = u.id))
                         WHERE e.id = $1",
                    )
                    .bind(&execution).fetch_optional(pool).await.map_err(db_delivery)?
                });
                // Executions made before their creator was recorded, or whose creator is gone or
                // no longer on the client: no mail.
                let Some((Some(email), Some(name), campaign, matrix)) = row else {
                    return Ok(());
                };
                let message = Message::RenderComplete(templates::RenderComplete {
                    name,
                    campaign_name: campaign,
                    execution_name: format!("{matrix} ({execution})"),
                    view_url: self.link(&format!("/executions/{execution}"))?,
                });
                self.record(&d.key, &email, message, Some(&execution)).await
            }
            types::WEBHOOK_ENDPOINT_DISABLED => {
                let (Some(endpoint), Some(client), Some(url), Some(reason)) = (
                    field("endpoint_id"),
                    field("client_id"),
                    field("url"),
                    field("reason"),
                ) else {
                    return Err(DeliveryError::permanent(
                        "the event lacks its endpoint's fields",
                    ));
                };
                // Every member of the client still on it (at most 100: a client's team).
                let members: Vec<(String, String, String, String)> = with_db!(&self.db, pool => {
                    sqlx::query_as(
                        "SELECT u.id, u.email, u.name, c.name FROM client_memberships m
                         JOIN users u ON u.id = m.user_id AND u.disabled_at IS NULL
                         JOIN clients c ON c.id = m.client_id
                         WHERE m.client_id = $1 ORDER BY u.id LIMIT 100",
                    )
                    .bind(&client).fetch_all(pool).await.map_err(db_delivery)?
                });
                for (user, email, name, client_name) in members {
                    let message = Message::WebhookDisabled(templates::WebhookDisabled {
                        name,
                        client_name,
                        url: url.clone(),
                        endpoint_id: endpoint.clone(),
                        reason: reason.clone(),
                    });
                    self.record(
                        &format!("{}:{user}", d.key),
                        &email,
                        message,
                        Some(&endpoint),
                    )
                    .await?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
