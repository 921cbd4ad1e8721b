//! The e-mail log for support staff: search (recipient, template, status, time range; cursor
//! paged), one message rendered with its attempts, resending (a new message linked to the
//! original; a suppressed address only with a reason, audited) and the suppression list.

use super::secrets;
use super::templates::{self, Message};
use super::NewEmail;
use crate::audit::{Actor, Entry};
use crate::auth::Principal;
use crate::db::BeginWrite as _;
use crate::domain::{self, Email};
use crate::error::{Error, Result};
use crate::ids::EmailId;
use crate::state::AppState;
use crate::{record_on, with_db};
use airwave_api::{
    EmailAttemptOut, EmailDetailOut, EmailOut, EmailStatus, Page, SuppressionOut, SuppressionReason,
};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::types::Json;
use std::str::FromStr as _;

/// What `GET /api/ops/emails` filters by.
#[derive(Debug, Default)]
pub struct Search {
    /// Part of the recipient's address (case-insensitive).
    pub to: Option<String>,
    pub template: Option<String>,
    pub status: Option<EmailStatus>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub correlation_id: Option<String>,
    pub limit: i64,
    pub cursor: Option<EmailId>,
}

pub(crate) const COLUMNS: &str = "id, to_address, template, subject, status, attempts, last_error, transport, provider_id, message_id, correlation_id, resend_of, created_at, sent_at, status_at";

#[derive(sqlx::FromRow)]
pub(crate) struct Row {
    id: String,
    to_address: String,
    template: String,
    subject: String,
    status: String,
    attempts: i32,
    last_error: Option<String>,
    transport: Option<String>,
    provider_id: Option<String>,
    message_id: Option<String>,
    correlation_id: Option<String>,
    resend_of: Option<String>,
    created_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    status_at: Option<DateTime<Utc>>,
}

impl Row {
    fn into_out(self) -> Result<EmailOut> {
        let status = EmailStatus::from_str(&self.status).map_err(|_| {
            Error::Internal(anyhow::anyhow!(
                "e-mail {} has status {:?}",
                self.id,
                self.status
            ))
        })?;
        Ok(EmailOut {
            id: self.id,
            to: self.to_address,
            template: self.template,
            subject: self.subject,
            status,
            attempts: self.attempts,
            last_error: self.last_error,
            transport: self.transport,
            provider_id: self.provider_id,
            message_id: self.message_id,
            correlation_id: self.correlation_id,
            resend_of: self.resend_of,
            created_at: self.created_at,
            sent_at: self.sent_at,
            status_at: self.status_at,
        })
    }
}

/// `%` and `_` match themselves in a LIKE pattern (escaped with `\`).
fn like_pattern(s: &str) -> String {
    let escaped: String = s
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("%{}%", escaped.to_lowercase())
}

pub async fn search(state: &AppState, q: &Search) -> Result<Page<EmailOut>> {
    if let Some(to) = &q.to {
        if to.trim().is_empty() || to.chars().count() > 320 {
            return Err(Error::invalid(
                "invalid_filter",
                "`to` must be 1 to 320 characters",
            ));
        }
    }
    if q.correlation_id
        .as_ref()
        .is_some_and(|c| c.is_empty() || c.len() > 200)
    {
        return Err(Error::invalid(
            "invalid_filter",
            "`correlation_id` must be 1 to 200 characters",
        ));
    }
    if let Some(t) = &q.template {
        if !templates::TEMPLATES.iter().any(|d| d.name == t) {
            return Err(Error::invalid(
                "invalid_filter",
                format!(
                    "there is no template `{}`",
                    t.chars().take(60).collect::<String>()
                ),
            ));
        }
    }
    if let (Some(a), Some(b)) = (q.since, q.until) {
        if a > b {
            return Err(Error::invalid("invalid_filter", "`since` is after `until`"));
        }
    }
    let status: Option<&'static str> = q.status.map(Into::into);
    let to = q.to.as_deref().map(|t| like_pattern(t.trim()));
    let rows: Vec<Row> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM emails
             WHERE ($1 IS NULL OR LOWER(to_address) LIKE $1 ESCAPE '\\')
               AND ($2 IS NULL OR template = $2)
               AND ($3 IS NULL OR status = $3)
               AND ($4 IS NULL OR created_at >= $4)
               AND ($5 IS NULL OR created_at < $5)
               AND ($6 IS NULL OR correlation_id = $6)
               AND ($7 IS NULL OR id < $7)
             ORDER BY id DESC LIMIT $8"
        ))
        .bind(to.as_deref())
        .bind(q.template.as_deref())
        .bind(status)
        .bind(q.since)
        .bind(q.until)
        .bind(q.correlation_id.as_deref())
        .bind(q.cursor.as_ref().map(EmailId::as_str))
        .bind(q.limit + 1)
        .fetch_all(pool)
        .await?
    });
    let items = rows
        .into_iter()
        .map(Row::into_out)
        .collect::<Result<Vec<_>>>()?;
    Ok(crate::paging::page(items, q.limit, |e| e.id.clone()))
}

#[derive(sqlx::FromRow)]
struct Attempt {
    attempt: i32,
    transport: String,
    started_at: DateTime<Utc>,
    duration_ms: i64,
    outcome: String,
    error: Option<String>,
    provider_id: Option<String>,
}

async fn fetch(state: &AppState, id: &EmailId) -> Result<Row> {
    let row: Option<Row> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM emails WHERE id = $1")).bind(id.as_str()).fetch_optional(pool).await?
    });
    row.ok_or_else(|| Error::not_found("e-mail"))
}

pub async fn detail(state: &AppState, id: &EmailId) -> Result<EmailDetailOut> {
    let row = fetch(state, id).await?;
    let (from, text_body, message): (Option<String>, String, Option<Json<Message>>) = with_db!(&state.db, pool => {
        sqlx::query_as("SELECT from_address, text_body, message FROM emails WHERE id = $1").bind(id.as_str()).fetch_one(pool).await?
    });
    // Rendered again from its data, links' tokens shown redacted; the stored text when the
    // message predates templates (or its template cannot render it any more).
    let rendered = message.and_then(|Json(m)| {
        templates::templates()
            .and_then(|t| t.render(&m, &state.config.email.branding))
            .ok()
    });
    let (text, html) = match rendered {
        Some(r) => (secrets::redact(&r.text), Some(secrets::redact(&r.html))),
        None => (text_body, None),
    };
    let attempts: Vec<Attempt> = with_db!(&state.db, pool => {
        sqlx::query_as("SELECT attempt, transport, started_at, duration_ms, outcome, error, provider_id FROM email_attempts WHERE email_id = $1 ORDER BY attempt")
            .bind(id.as_str()).fetch_all(pool).await?
    });
    let suppressed: Option<String> = with_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT address FROM email_suppressions WHERE address = $1").bind(&row.to_address).fetch_optional(pool).await?
    });
    let resent_as: Vec<String> = with_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT id FROM emails WHERE resend_of = $1 ORDER BY id").bind(id.as_str()).fetch_all(pool).await?
    });
    Ok(EmailDetailOut {
        email: row.into_out()?,
        from,
        text,
        html,
        attempts: attempts
            .into_iter()
            .map(|a| EmailAttemptOut {
                attempt: a.attempt,
                transport: a.transport,
                started_at: a.started_at,
                duration_ms: a.duration_ms,
                outcome: a.outcome,
                error: a.error,
                provider_id: a.provider_id,
            })
            .collect(),
        suppressed: suppressed.is_some(),
        resent_as,
    })
}

/// Sends a logged message again: a new message with the same template, data and link reference,
/// linked to the original. A suppressed address needs `override_reason` (audited).
pub async fn resend(
    state: &AppState,
    id: &EmailId,
    override_reason: Option<&str>,
    actor: &Actor,
) -> Result<EmailOut> {
    let reason = domain::optional_text("override_suppression_reason", override_reason, 500)?;
    let original = fetch(state, id).await?;
    let (message, secret): (Option<Json<Message>>, Option<Json<secrets::LinkSecret>>) = with_db!(&state.db, pool => {
        sqlx::query_as("SELECT message, secret_ref FROM emails WHERE id = $1").bind(id.as_str()).fetch_one(pool).await?
    });
    let Some(Json(message)) = message else {
        return Err(Error::Conflict {
            code: "not_resendable",
            detail: "this message was recorded before e-mail delivery existed and has no template data to send again".into(),
        });
    };
    let to = Email::parse(&original.to_address)?;
    let suppressed: Option<String> = with_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT reason FROM email_suppressions WHERE address = $1").bind(to.as_str()).fetch_optional(pool).await?
    });
    if let (Some(why), None) = (&suppressed, &reason) {
        return Err(Error::Conflict {
            code: "address_suppressed",
            detail: format!(
                "{} is on the suppression list ({why}); resend with `override_suppression_reason` to send anyway",
                to.as_str()
            ),
        });
    }
    let now = state.clock.now();
    let mut mail = NewEmail::new(
        &state.config.email,
        now,
        &to,
        message,
        secret.map(|Json(s)| s),
    )?
    .correlation(
        original
            .correlation_id
            .as_deref()
            .or(Some(original.id.as_str())),
    );
    mail.resend_of = Some(original.id.clone());
    let overriding = suppressed.is_some();
    let new_id = mail.id.clone();
    with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        crate::record_email_on!(&mut *tx, &mail)?;
        if overriding {
            sqlx::query("UPDATE emails SET resend_reason = $2 WHERE id = $1").bind(new_id.as_str()).bind(reason.as_deref()).execute(&mut *tx).await?;
        }
        record_on!(&mut *tx, now, actor, Entry {
            action: "email.resend",
            target_type: Some("email"),
            target_id: Some(original.id.as_str()),
            detail: json!({"new_email_id": new_id, "template": original.template, "suppression_overridden": overriding, "reason": reason}),
        })?;
        tx.commit().await?;
    });
    fetch(state, &new_id).await?.into_out()
}

#[derive(sqlx::FromRow)]
struct SuppressionRow {
    address: String,
    reason: String,
    note: Option<String>,
    email_id: Option<String>,
    created_by: Option<String>,
    created_at: DateTime<Utc>,
}

impl SuppressionRow {
    fn into_out(self) -> Result<SuppressionOut> {
        Ok(SuppressionOut {
            reason: SuppressionReason::from_str(&self.reason).map_err(|_| {
                Error::Internal(anyhow::anyhow!("suppression reason {:?}", self.reason))
            })?,
            address: self.address,
            note: self.note,
            email_id: self.email_id,
            created_by: self.created_by,
            created_at: self.created_at,
        })
    }
}

/// The suppression list, by address (a part of one filters), cursor paged.
pub async fn suppressions(
    state: &AppState,
    address: Option<&str>,
    limit: i64,
    cursor: Option<&str>,
) -> Result<Page<SuppressionOut>> {
    if address.is_some_and(|a| a.trim().is_empty() || a.chars().count() > 320) {
        return Err(Error::invalid(
            "invalid_filter",
            "`address` must be 1 to 320 characters",
        ));
    }
    // A cursor is the last address of the previous page.
    if cursor.is_some_and(|c| Email::parse(c).is_err()) {
        return Err(Error::invalid(
            "invalid_query",
            "`cursor` is invalid: not an address from a previous page",
        ));
    }
    let pattern = address.map(like_pattern);
    let rows: Vec<SuppressionRow> = with_db!(&state.db, pool => {
        sqlx::query_as(
            "SELECT address, reason, note, email_id, created_by, created_at FROM email_suppressions
             WHERE ($1 IS NULL OR address LIKE $1 ESCAPE '\\') AND ($2 IS NULL OR address > $2)
             ORDER BY address LIMIT $3",
        )
        .bind(pattern.as_deref())
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?
    });
    let items = rows
        .into_iter()
        .map(SuppressionRow::into_out)
        .collect::<Result<Vec<_>>>()?;
    Ok(crate::paging::page(items, limit, |s| s.address.clone()))
}

/// Puts an address on the suppression list by hand (or updates the note of one there).
pub async fn suppress(
    state: &AppState,
    who: &Principal,
    address: &str,
    note: &str,
    actor: &Actor,
) -> Result<SuppressionOut> {
    let address = Email::parse(address)?;
    let note = domain::name("note", note, 500)?;
    let now = state.clock.now();
    let row: SuppressionRow = with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        let row: SuppressionRow = sqlx::query_as(
            "INSERT INTO email_suppressions (address, reason, note, created_by, created_at) VALUES ($1, 'manual', $2, $3, $4)
             ON CONFLICT (address) DO UPDATE SET note = excluded.note
             RETURNING address, reason, note, email_id, created_by, created_at",
        )
        .bind(address.as_str()).bind(&note).bind(who.user_id.as_str()).bind(now)
        .fetch_one(&mut *tx).await?;
        record_on!(&mut *tx, now, actor, Entry { action: "email.suppress", target_type: Some("email_address"), target_id: Some(address.as_str()), detail: json!({"note": note}) })?;
        tx.commit().await?;
        row
    });
    row.into_out()
}

/// Takes an address off the suppression list.
pub async fn unsuppress(state: &AppState, address: &str, actor: &Actor) -> Result<()> {
    let address = Email::parse(address)?;
    let now = state.clock.now();
    with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        let removed: Option<String> = sqlx::query_scalar("DELETE FROM email_suppressions WHERE address = $1 RETURNING reason")
            .bind(address.as_str()).fetch_optional(&mut *tx).await?;
        let Some(reason) = removed else {
            return Err(Error::not_found("suppressed address"));
        };
        record_on!(&mut *tx, now, actor, Entry { action: "email.unsuppress", target_type: Some("email_address"), target_id: Some(address.as_str()), detail: json!({"was": reason}) })?;
        tx.commit().await?;
    });
    Ok(())
}
