//! Resend's webhook (`POST /api/webhooks/resend`): what happened to a message after Resend took it.
//! Resend signs with Svix — the Standard Webhooks scheme under `svix-*` header names: `svix-id`,
//! `svix-timestamp` (unix seconds) and `svix-signature`, space-separated `v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">` keyed with the base64 part of the `whsec_…` secret. Accepted: a
//! signature that matches over the exact bytes received, at most 5 minutes from now either way
//! (compared in constant time). The `webhook-*` names of the standard are accepted too.
//!
//! `email.delivered` → delivered; `email.bounced` → bounced, and a permanent bounce puts the
//! address on the suppression list; `email.complained` → complained and suppressed. Each state
//! moves forward only (a late `delivered` never undoes a bounce), so a redelivered event changes
//! nothing; an event for a message this server does not know is acknowledged and ignored.

use crate::error::Error;
use crate::http::problem::problem;
use crate::state::AppState;
use crate::with_db;
use airwave_api::{ops_event, EmailChangedEvent, EmailStatus};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret as _;
use serde::Deserialize;

/// How far a signature's timestamp may be from now, either way.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// Why a delivery was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the {0} header is missing or not text")]
    Missing(&'static str),
    #[error("the timestamp is more than 5 minutes from now (a replay, or a clock far off)")]
    Stale,
    #[error("no signature matches the body")]
    Mismatch,
}

fn header<'a>(h: &'a HeaderMap, names: [&'static str; 2]) -> Result<&'a str, Refused> {
    names
        .iter()
        .find_map(|n| h.get(*n))
        .and_then(|v| v.to_str().ok())
        .ok_or(Refused::Missing(names[0]))
}

/// Checks a delivery's signature (see the module's documentation).
pub fn verify(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), Refused> {
    let id = header(headers, ["svix-id", "webhook-id"])?;
    let ts_raw = header(headers, ["svix-timestamp", "webhook-timestamp"])?.trim();
    let sigs = header(headers, ["svix-signature", "webhook-signature"])?;
    let ts: i64 = ts_raw.parse().map_err(|_| Refused::Stale)?;
    if now
        .timestamp()
        .checked_sub(ts)
        .is_none_or(|d| d.unsigned_abs() > TOLERANCE_SECS.unsigned_abs())
    {
        return Err(Refused::Stale);
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).map_err(|_| Refused::Mismatch)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts_raw.as_bytes());
    mac.update(b".");
    mac.update(body);
    let ok = sigs
        .split(' ')
        .filter_map(|s| s.split_once(','))
        .filter(|(v, _)| *v == "v1")
        .filter_map(|(_, b64)| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        // `verify_slice` compares in constant time.
        .any(|sig| mac.clone().verify_slice(&sig).is_ok());
    ok.then_some(()).ok_or(Refused::Mismatch)
}

#[derive(Debug, Deserialize)]
struct ResendEvent {
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    email_id: String,
    #[serde(default)]
    bounce: Option<Bounce>,
}

#[derive(Debug, Deserialize)]
struct Bounce {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Changed {
    id: String,
    template: String,
    to_address: String,
    attempts: i32,
}

/// Takes one of Resend's events (no bearer token: the signature is the credential).
#[utoipa::path(post, path = "/api/webhooks/resend", tag = "operations",
    request_body(content = String, content_type = "application/json", description = "A Resend event (`email.delivered`, `email.bounced`, `email.complained`, …), signed with Svix headers"),
    responses((status = 200, description = "Taken (or ignored: an event type or a message this server does not track)"),
        (status = 400, body = airwave_api::Problem), (status = 401, body = airwave_api::Problem), (status = 404, body = airwave_api::Problem)))]
pub async fn resend_webhook(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match take(&s, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn take(s: &AppState, headers: &HeaderMap, body: &[u8]) -> crate::error::Result<Response> {
    let Some(secret) = s.config.email.resend_webhook_secret.as_ref() else {
        return Err(Error::not_found(
            "webhook (RESEND_WEBHOOK_SECRET is not set)",
        ));
    };
    let now = s.clock.now();
    if let Err(why) = verify(secret.expose_secret(), headers, body, now) {
        let code = if why == Refused::Stale {
            "stale_signature"
        } else {
            "invalid_signature"
        };
        tracing::warn!(%why, "refused a Resend webhook delivery");
        return Ok(problem(StatusCode::UNAUTHORIZED, code, why.to_string()));
    }
    let event: ResendEvent = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) => {
            return Ok(problem(
                StatusCode::BAD_REQUEST,
                "invalid_event",
                format!("not a Resend event: {e}"),
            ))
        }
    };
    let (status, from, note, suppress): (_, &[&str], _, _) = match event.kind.as_str() {
        "email.delivered" => (EmailStatus::Delivered, &["sent"], None, None),
        "email.bounced" => {
            let bounce = event.data.bounce.as_ref();
            let permanent = bounce
                .and_then(|b| b.kind.as_deref())
                .is_none_or(|k| k.eq_ignore_ascii_case("permanent"));
            let message = bounce.and_then(|b| b.message.clone());
            let note = Some(airwave_api::redact::redact(&format!(
                "bounced{}",
                message.map(|m| format!(": {m}")).unwrap_or_default()
            )));
            (
                EmailStatus::Bounced,
                &["sent", "delivered"],
                note,
                permanent.then_some("hard_bounce"),
            )
        }
        "email.complained" => (
            EmailStatus::Complained,
            &["sent", "delivered", "bounced"],
            Some("the recipient marked it as spam".to_owned()),
            Some("complaint"),
        ),
        _ => return Ok(StatusCode::OK.into_response()),
    };
    let status_str: &'static str = status.into();
    let provider_id = event.data.email_id.clone();
    let changed: Option<Changed> = with_db!(&s.db, pool => {
        let mut tx = crate::db::BeginWrite::begin_write(pool).await?;
        let sql = format!(
            "UPDATE emails SET status = $2, status_at = $3, updated_at = $3, last_error = COALESCE($4, last_error)
             WHERE provider_id = $1 AND status IN ({})
             RETURNING id, template, to_address, attempts",
            from.iter().map(|f| format!("'{f}'")).collect::<Vec<_>>().join(", ")
        );
        let changed: Option<Changed> = sqlx::query_as(&sql)
            .bind(&provider_id).bind(status_str).bind(now).bind(note.as_deref())
            .fetch_optional(&mut *tx).await?;
        if let (Some(c), Some(reason)) = (&changed, suppress) {
            sqlx::query(
                "INSERT INTO email_suppressions (address, reason, note, email_id, created_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (address) DO NOTHING",
            )
            .bind(&c.to_address).bind(reason).bind(note.as_deref()).bind(&c.id).bind(now)
            .execute(&mut *tx).await?;
        }
        tx.commit().await?;
        changed
    });
    match changed {
        Some(c) => {
            let event = EmailChangedEvent {
                id: c.id,
                template: c.template,
                status,
                attempts: c.attempts,
                time: now,
            };
            s.ops().publish(now, ops_event::EMAIL_CHANGED, &event).await;
        }
        None => tracing::info!(
            kind = %event.kind,
            "a Resend event for a message this server does not track, or already past that state"
        ),
    }
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &[u8], id: &str, ts: i64, body: &str) -> HeaderMap {
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
        mac.update(format!("{id}.{ts}.{body}").as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let mut h = HeaderMap::new();
        h.insert("svix-id", id.parse().unwrap_or_else(|_| unreachable!()));
        h.insert(
            "svix-timestamp",
            ts.to_string().parse().unwrap_or_else(|_| unreachable!()),
        );
        h.insert(
            "svix-signature",
            format!("v1,bm90IGl0 v1,{sig}")
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        h
    }

    #[test]
    fn a_signature_is_checked_over_the_exact_bytes_and_the_time() {
        let secret = b"a secret of enough bytes";
        let now = Utc::now();
        let body = r#"{"type":"email.delivered"}"#;
        let h = signed(secret, "msg_1", now.timestamp(), body);
        assert_eq!(verify(secret, &h, body.as_bytes(), now), Ok(()));
        assert_eq!(
            verify(secret, &h, br#"{"type":"email.delivered" }"#, now),
            Err(Refused::Mismatch)
        );
        assert_eq!(
            verify(b"another secret entirely", &h, body.as_bytes(), now),
            Err(Refused::Mismatch)
        );
        let later = now + chrono::Duration::seconds(TOLERANCE_SECS + 1);
        assert_eq!(
            verify(secret, &h, body.as_bytes(), later),
            Err(Refused::Stale)
        );
        assert_eq!(
            verify(secret, &HeaderMap::new(), body.as_bytes(), now),
            Err(Refused::Missing("svix-id"))
        );
    }
}
