//! An endpoint's messages and their attempts; replaying one message (the same `webhook-id`, a
//! fresh round of attempts); recovering every failed message of an endpoint since T — counted
//! first (a dry run), then given back to delivery by a `webhook.recover` job whose progress the
//! recovery's row records.

use super::deliver::{self, DeliverJobs, Deliverer};
use super::endpoints::{self, Access};
use crate::audit::{Actor, Entry};
use crate::auth::Principal;
use crate::db::BeginWrite as _;
use crate::error::{Error, Result};
use crate::ids::{WebhookEndpointId, WebhookMessageId, WebhookRecoveryId};
use crate::queue::worker::{JobContext, JobHandler};
use crate::queue::{Job, JobFailure};
use crate::state::AppState;
use crate::{record_on, with_db};
use airwave_api::{
    Page, WebhookAttemptOut, WebhookMessageDetailOut, WebhookMessageOut, WebhookMessageStatus,
    WebhookRecoverOut, WebhookRecoveryOut, WebhookRecoveryStatus,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::sync::Arc;

pub const RECOVER_KIND: &str = "webhook.recover";
/// Messages that have a body to send (an event over the size limit was recorded without one).
const SENDABLE: &str = "(last_error IS NULL OR last_error NOT LIKE 'payload_too_large%')";
/// Messages one step of a recovery gives back.
const RECOVER_BATCH: i64 = 500;

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    endpoint_id: String,
    event_type: String,
    event_id: Option<String>,
    status: String,
    attempts: i32,
    next_attempt_at: Option<DateTime<Utc>>,
    last_status: Option<i32>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, endpoint_id, event_type, event_id, status, attempts, next_attempt_at, last_status, last_error, created_at, delivered_at";

fn status(s: &str) -> Result<WebhookMessageStatus> {
    s.parse()
        .map_err(|_| Error::Internal(anyhow::anyhow!("unknown webhook message status `{s}`")))
}

impl Row {
    fn into_out(self) -> Result<WebhookMessageOut> {
        Ok(WebhookMessageOut {
            status: status(&self.status)?,
            id: self.id,
            endpoint_id: self.endpoint_id,
            event_type: self.event_type,
            event_id: self.event_id,
            attempts: self.attempts,
            next_attempt_at: self.next_attempt_at,
            last_status: self.last_status,
            last_error: self.last_error,
            created_at: self.created_at,
            delivered_at: self.delivered_at,
        })
    }
}

pub async fn list(
    s: &AppState,
    who: &Principal,
    access: Access,
    endpoint: &WebhookEndpointId,
    filter: Option<WebhookMessageStatus>,
    limit: i64,
    cursor: Option<&WebhookMessageId>,
) -> Result<Page<WebhookMessageOut>> {
    endpoints::find(s, who, access, endpoint, false).await?;
    let filter: Option<&'static str> = filter.map(Into::into);
    let rows: Vec<Row> = with_db!(&s.db, pool => {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM webhook_messages WHERE endpoint_id = $1 AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        ))
        .bind(endpoint.as_str()).bind(filter).bind(cursor.map(WebhookMessageId::as_str)).bind(limit + 1)
        .fetch_all(pool).await?
    });
    let items = rows
        .into_iter()
        .map(Row::into_out)
        .collect::<Result<Vec<_>>>()?;
    Ok(crate::paging::page(items, limit, |m| m.id.clone()))
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    id: String,
    message_id: String,
    attempt: i32,
    started_at: DateTime<Utc>,
    duration_ms: i64,
    status_code: Option<i32>,
    outcome: String,
    error_class: Option<String>,
    error: Option<String>,
    request_headers: String,
    response_headers: Option<String>,
    response_body: Option<String>,
}

impl From<AttemptRow> for WebhookAttemptOut {
    fn from(a: AttemptRow) -> Self {
        WebhookAttemptOut {
            delivered: a.outcome == "delivered",
            error_class: a.error_class.and_then(|c| c.parse().ok()),
            request_headers: serde_json::from_str(&a.request_headers).unwrap_or_default(),
            response_headers: a
                .response_headers
                .and_then(|h| serde_json::from_str(&h).ok())
                .unwrap_or_default(),
            id: a.id,
            message_id: a.message_id,
            attempt: a.attempt,
            started_at: a.started_at,
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            error: a.error,
            response_body: a.response_body,
        }
    }
}

/// A message with its body and every attempt.
pub async fn detail(
    s: &AppState,
    who: &Principal,
    access: Access,
    id: &WebhookMessageId,
) -> Result<WebhookMessageDetailOut> {
    let (row, body): (Option<Row>, Option<(String,)>) = with_db!(&s.db, pool => {
        (
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM webhook_messages WHERE id = $1")).bind(id.as_str()).fetch_optional(pool).await?,
            sqlx::query_as("SELECT body FROM webhook_messages WHERE id = $1").bind(id.as_str()).fetch_optional(pool).await?,
        )
    });
    let (Some(row), Some((body,))) = (row, body) else {
        return Err(Error::not_found("webhook message"));
    };
    let endpoint: WebhookEndpointId = row
        .endpoint_id
        .parse()
        .map_err(|e| Error::Internal(anyhow::Error::new(e)))?;
    endpoints::find(s, who, access, &endpoint, false)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::not_found("webhook message"),
            e => e,
        })?;
    let attempts: Vec<AttemptRow> = with_db!(&s.db, pool => {
        sqlx::query_as(
            "SELECT id, message_id, attempt, started_at, duration_ms, status_code, outcome, error_class, error, request_headers, response_headers, response_body
             FROM webhook_attempts WHERE message_id = $1 ORDER BY attempt DESC, started_at DESC LIMIT 200",
        )
        .bind(id.as_str()).fetch_all(pool).await?
    });
    Ok(WebhookMessageDetailOut {
        message: row.into_out()?,
        body,
        // The newest 200, oldest first.
        attempt_log: attempts.into_iter().rev().map(Into::into).collect(),
    })
}

/// Delivers a message again: the same `webhook-id`, a fresh round of attempts. A message still
/// waiting for its attempts answers 409 `already_pending`.
pub async fn replay(
    s: &AppState,
    who: &Principal,
    access: Access,
    id: &WebhookMessageId,
    actor: &Actor,
) -> Result<WebhookMessageOut> {
    let msg = deliver::load_message(&s.db, id.as_str())
        .await?
        .ok_or_else(|| Error::not_found("webhook message"))?;
    let endpoint: WebhookEndpointId = msg
        .endpoint_id
        .parse()
        .map_err(|e| Error::Internal(anyhow::Error::new(e)))?;
    let ep = endpoints::find(s, who, access, &endpoint, true)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::not_found("webhook message"),
            e => e,
        })?;
    if ep.disabled_at.is_some() {
        return Err(Error::conflict(
            "endpoint_disabled",
            "the endpoint is disabled: enable it first",
        ));
    }
    if msg.too_large() {
        return Err(Error::conflict(
            "payload_too_large",
            "this event was larger than AIRWAVE_WEBHOOK_MAX_PAYLOAD_KIB: there is no body to send",
        ));
    }
    let now = s.clock.now();
    with_db!(&s.db, pool => {
        let mut tx = pool.begin_write().await?;
        let n = sqlx::query(
            "UPDATE webhook_messages SET status = 'pending', round_start = attempts, next_attempt_at = $2, updated_at = $2
             WHERE id = $1 AND status IN ('delivered', 'failed')",
        )
        .bind(id.as_str()).bind(now).execute(&mut *tx).await?.rows_affected();
        if n == 0 {
            return Err(Error::conflict("already_pending", "this message is waiting for its attempts already"));
        }
        record_on!(&mut *tx, now, actor, Entry { action: "webhook.message.replay", target_type: Some("webhook_message"), target_id: Some(id.as_str()),
            detail: json!({"endpoint_id": ep.id, "previous_status": msg.status}) })?;
        tx.commit().await?;
    });
    let mut jobs = DeliverJobs::default();
    jobs.deliver(id.as_str(), msg.attempts, msg.attempts + 1, None);
    deliver::enqueue(&*s.queue, jobs).await?;
    endpoints::changed(
        &s.ops(),
        now,
        &ep.id,
        &ep.client_id,
        "replayed",
        Some(id.as_str()),
        None,
    )
    .await;
    let row: Row = with_db!(&s.db, pool => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM webhook_messages WHERE id = $1")).bind(id.as_str()).fetch_one(pool).await?
    });
    row.into_out()
}

#[derive(sqlx::FromRow)]
struct RecoveryRow {
    id: String,
    endpoint_id: String,
    since: DateTime<Utc>,
    status: String,
    total: i32,
    done: i32,
    error: Option<String>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl RecoveryRow {
    fn into_out(self) -> Result<WebhookRecoveryOut> {
        Ok(WebhookRecoveryOut {
            status: self
                .status
                .parse::<WebhookRecoveryStatus>()
                .map_err(|_| Error::Internal(anyhow::anyhow!("unknown recovery status")))?,
            id: self.id,
            endpoint_id: self.endpoint_id,
            since: self.since,
            total: self.total,
            done: self.done,
            error: self.error,
            created_at: self.created_at,
            finished_at: self.finished_at,
        })
    }
}

const RECOVERY_COLUMNS: &str =
    "id, endpoint_id, since, status, total, done, error, created_at, finished_at";

/// Counts the endpoint's failed messages since `since` (a dry run), or starts their recovery.
pub async fn recover(
    s: &AppState,
    who: &Principal,
    access: Access,
    endpoint: &WebhookEndpointId,
    since: DateTime<Utc>,
    dry_run: bool,
    actor: &Actor,
) -> Result<WebhookRecoverOut> {
    let ep = endpoints::find(s, who, access, endpoint, !dry_run).await?;
    let now = s.clock.now();
    if since > now {
        return Err(Error::invalid("invalid_since", "`since` is in the future"));
    }
    // Nothing is older than the endpoint (and no far-away date reaches the database).
    let since = since.max(ep.created_at);
    let (n,): (i64,) = with_db!(&s.db, pool => {
        sqlx::query_as(&format!("SELECT COUNT(*) FROM webhook_messages WHERE endpoint_id = $1 AND status = 'failed' AND created_at >= $2 AND created_at <= $3 AND {SENDABLE}"))
            .bind(endpoint.as_str()).bind(since).bind(now).fetch_one(pool).await?
    });
    if dry_run {
        return Ok(WebhookRecoverOut {
            count: n,
            recovery: None,
        });
    }
    if ep.disabled_at.is_some() {
        return Err(Error::conflict(
            "endpoint_disabled",
            "the endpoint is disabled: enable it first",
        ));
    }
    let id = WebhookRecoveryId::new(now);
    let total = i32::try_from(n).unwrap_or(i32::MAX);
    with_db!(&s.db, pool => {
        let mut tx = pool.begin_write().await?;
        sqlx::query("INSERT INTO webhook_recoveries (id, endpoint_id, since, status, total, created_by, created_at) VALUES ($1, $2, $3, 'running', $4, $5, $6)")
            .bind(id.as_str()).bind(endpoint.as_str()).bind(since).bind(total).bind(who.user_id.as_str()).bind(now)
            .execute(&mut *tx).await?;
        record_on!(&mut *tx, now, actor, Entry { action: "webhook.recover", target_type: Some("webhook_endpoint"), target_id: Some(endpoint.as_str()),
            detail: json!({"recovery_id": id.as_str(), "since": since, "messages": n}) })?;
        tx.commit().await?;
    });
    let job = crate::queue::NewJob {
        unique_key: Some(id.to_string()),
        correlation_id: Some(id.to_string()),
        ..s.queue.policy(deliver::QUEUE).job(
            deliver::QUEUE,
            RECOVER_KIND,
            json!({"recovery_id": id.as_str()}),
        )
    };
    s.queue.enqueue(job).await?;
    endpoints::changed(
        &s.ops(),
        now,
        endpoint.as_str(),
        &ep.client_id,
        "recovery",
        None,
        Some(format!("{n} message(s) since {}", since.to_rfc3339())),
    )
    .await;
    Ok(WebhookRecoverOut {
        count: n,
        recovery: Some(recovery_row(s, &id).await?.into_out()?),
    })
}

async fn recovery_row(s: &AppState, id: &WebhookRecoveryId) -> Result<RecoveryRow> {
    let row: Option<RecoveryRow> = with_db!(&s.db, pool => {
        sqlx::query_as(&format!("SELECT {RECOVERY_COLUMNS} FROM webhook_recoveries WHERE id = $1"))
            .bind(id.as_str()).fetch_optional(pool).await?
    });
    row.ok_or_else(|| Error::not_found("webhook recovery"))
}

pub async fn recovery(
    s: &AppState,
    who: &Principal,
    access: Access,
    id: &WebhookRecoveryId,
) -> Result<WebhookRecoveryOut> {
    let row = recovery_row(s, id).await?;
    let endpoint: WebhookEndpointId = row
        .endpoint_id
        .parse()
        .map_err(|e| Error::Internal(anyhow::Error::new(e)))?;
    endpoints::find(s, who, access, &endpoint, false)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::not_found("webhook recovery"),
            e => e,
        })?;
    row.into_out()
}

/// Runs a recovery: the failed messages created between `since` and the recovery's start, in
/// batches, each batch given back to delivery with a fresh round and counted in `done`.
pub struct RecoverJob(pub Arc<Deliverer>);

fn db_failure(e: sqlx::Error) -> JobFailure {
    JobFailure::retryable("webhook.db", format!("database: {e}"))
}

#[async_trait]
impl JobHandler for RecoverJob {
    async fn handle(&self, job: &Job, _ctx: &JobContext) -> std::result::Result<Value, JobFailure> {
        let d = &self.0;
        let id = job
            .payload
            .get("recovery_id")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                JobFailure::permanent("webhook.payload", "the payload has no recovery_id")
            })?
            .to_owned();
        let row: Option<(String, DateTime<Utc>, DateTime<Utc>, String)> = with_db!(&d.db, pool => {
            sqlx::query_as("SELECT endpoint_id, since, created_at, status FROM webhook_recoveries WHERE id = $1")
                .bind(&id).fetch_optional(pool).await.map_err(db_failure)?
        });
        let Some((endpoint, since, until, status)) = row else {
            return Ok(Value::Null);
        };
        if status != "running" {
            return Ok(Value::Null);
        }
        let mut cursor = String::new();
        loop {
            let now = d.clock.now();
            let batch: Vec<(String, i32)> = with_db!(&d.db, pool => {
                let mut tx = pool.begin_write().await.map_err(db_failure)?;
                let ids: Vec<(String, i32)> = sqlx::query_as(
                    &format!("SELECT id, attempts FROM webhook_messages WHERE endpoint_id = $1 AND status = 'failed' AND created_at >= $2 AND created_at <= $3 AND id > $4 AND {SENDABLE}
                     ORDER BY id LIMIT $5"),
                )
                .bind(&endpoint).bind(since).bind(until).bind(&cursor).bind(RECOVER_BATCH)
                .fetch_all(&mut *tx).await.map_err(db_failure)?;
                let mut n = 0;
                for (m, _) in &ids {
                    let done = sqlx::query("UPDATE webhook_messages SET status = 'pending', round_start = attempts, next_attempt_at = $2, updated_at = $2 WHERE id = $1 AND status = 'failed'")
                        .bind(m).bind(now).execute(&mut *tx).await.map_err(db_failure)?.rows_affected();
                    n += i32::try_from(done).unwrap_or(0);
                }
                if ids.is_empty() {
                    sqlx::query("UPDATE webhook_recoveries SET status = 'done', finished_at = $2 WHERE id = $1")
                        .bind(&id).bind(now).execute(&mut *tx).await.map_err(db_failure)?;
                } else {
                    sqlx::query("UPDATE webhook_recoveries SET done = done + $2 WHERE id = $1")
                        .bind(&id).bind(n).execute(&mut *tx).await.map_err(db_failure)?;
                }
                tx.commit().await.map_err(db_failure)?;
                ids
            });
            let Some((last, _)) = batch.last() else {
                break;
            };
            cursor = last.clone();
            let mut jobs = DeliverJobs::default();
            for (m, attempts) in &batch {
                jobs.deliver(m, *attempts, attempts + 1, None);
            }
            deliver::enqueue(&*d.queue, jobs)
                .await
                .map_err(|e| JobFailure::retryable("webhook.enqueue", e.to_string()))?;
        }
        Ok(json!({"recovery_id": id}))
    }
}
