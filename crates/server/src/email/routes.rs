//! `/api/ops/emails…`: the e-mail log (search, one message, resend), the suppression list, and
//! the templates with their previews — for support staff and above.

use super::log;
use super::templates::{self, Message};
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::http::extract::{ClientIp, Json};
use crate::http::extract::{Path, Query};
use crate::ids::EmailId;
use crate::state::AppState;
use airwave_api::{
    EmailDetailOut, EmailOut, EmailResendIn, EmailStatus, Page, SuppressionIn, SuppressionOut,
};
use airwave_api::{EmailTemplateOut, Problem, Role};
use axum::extract::State;
use axum::http::header;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Who may read e-mails and their templates, resend a message and suppress an address.
const READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Support];
/// Who may send to a suppressed address or take one off the list.
const OVERRIDERS: &[Role] = &[Role::Admin, Role::Operator];

/// This feature's routes with their OpenAPI descriptions.
pub fn routes() -> crate::feature::Routes {
    crate::feature::Routes::new()
        .routes(utoipa_axum::routes!(list_templates))
        .routes(utoipa_axum::routes!(preview_template))
        .routes(utoipa_axum::routes!(list_emails))
        .routes(utoipa_axum::routes!(get_email))
        .routes(utoipa_axum::routes!(resend_email))
        .routes(utoipa_axum::routes!(list_suppressions, add_suppression))
        .routes(utoipa_axum::routes!(remove_suppression))
        .routes(utoipa_axum::routes!(super::webhook::resend_webhook))
}

/// `GET /api/ops/emails` filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EmailQuery {
    /// Part of the recipient's address (case-insensitive).
    pub to: Option<String>,
    /// A template's name.
    pub template: Option<String>,
    pub status: Option<EmailStatus>,
    /// Recorded at or after (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Recorded before (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// The request, job or message that caused it.
    pub correlation_id: Option<String>,
    /// 1 to 200; 50 by default.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The e-mail log, newest first (admin, operator, support).
#[utoipa::path(get, path = "/api/ops/emails", tag = "operations", params(EmailQuery),
    responses((status = 200, body = Page<EmailOut>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_emails(
    State(s): State<AppState>,
    who: Principal,
    Query(q): Query<EmailQuery>,
) -> Result<axum::Json<Page<EmailOut>>> {
    who.require(READERS)?;
    let paging = crate::paging::PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let search = log::Search {
        to: q.to,
        template: q.template,
        status: q.status,
        since: q.since,
        until: q.until,
        correlation_id: q.correlation_id,
        limit: paging.limit()?,
        cursor: paging.cursor()?,
    };
    Ok(axum::Json(log::search(&s, &search).await?))
}

/// One message: its rendered parts (links' tokens redacted), its attempts and whether its
/// recipient is suppressed.
#[utoipa::path(get, path = "/api/ops/emails/{id}", tag = "operations", params(("id" = String, Path, description = "msg_… id")),
    responses((status = 200, body = EmailDetailOut), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_email(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<EmailId>,
) -> Result<axum::Json<EmailDetailOut>> {
    who.require(READERS)?;
    Ok(axum::Json(log::detail(&s, &id).await?))
}

/// Sends a message again: a new message linked to the original (202; admin, operator, support).
/// A suppressed recipient answers 409 `address_suppressed` unless `override_suppression_reason`
/// is given (admin and operator only; audited).
#[utoipa::path(post, path = "/api/ops/emails/{id}/resend", tag = "operations", params(("id" = String, Path, description = "msg_… id")),
    request_body = EmailResendIn,
    responses((status = 202, body = EmailOut), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn resend_email(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(id): Path<EmailId>,
    Json(body): Json<EmailResendIn>,
) -> Result<(StatusCode, axum::Json<EmailOut>)> {
    who.require(READERS)?;
    if body.override_suppression_reason.is_some() {
        who.require(OVERRIDERS)?;
    }
    let out = log::resend(
        &s,
        &id,
        body.override_suppression_reason.as_deref(),
        &who.actor(ip.0),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(out)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SuppressionQuery {
    /// Part of the address.
    pub address: Option<String>,
    /// 1 to 200; 50 by default.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The suppression list: addresses no message is sent to (hard bounces, complaints, by hand).
#[utoipa::path(get, path = "/api/ops/emails/suppressions", tag = "operations", params(SuppressionQuery),
    responses((status = 200, body = Page<SuppressionOut>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_suppressions(
    State(s): State<AppState>,
    who: Principal,
    Query(q): Query<SuppressionQuery>,
) -> Result<axum::Json<Page<SuppressionOut>>> {
    who.require(READERS)?;
    let limit = crate::paging::PageQuery {
        limit: q.limit,
        cursor: None,
    }
    .limit()?;
    Ok(axum::Json(
        log::suppressions(&s, q.address.as_deref(), limit, q.cursor.as_deref()).await?,
    ))
}

/// Puts an address on the suppression list by hand, with a note (audited).
#[utoipa::path(post, path = "/api/ops/emails/suppressions", tag = "operations", request_body = SuppressionIn,
    responses((status = 201, body = SuppressionOut), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn add_suppression(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Json(body): Json<SuppressionIn>,
) -> Result<(StatusCode, axum::Json<SuppressionOut>)> {
    who.require(READERS)?;
    let out = log::suppress(&s, &who, &body.address, &body.note, &who.actor(ip.0)).await?;
    Ok((StatusCode::CREATED, axum::Json(out)))
}

/// Takes an address off the suppression list (admin and operator; audited).
#[utoipa::path(delete, path = "/api/ops/emails/suppressions/{address}", tag = "operations", params(("address" = String, Path, description = "the address")),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn remove_suppression(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(address): Path<String>,
) -> Result<StatusCode> {
    who.require(OVERRIDERS)?;
    log::unsuppress(&s, &address, &who.actor(ip.0)).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn render_sample(s: &AppState, name: &str) -> Result<templates::Rendered> {
    let message = Message::sample(name).ok_or_else(|| Error::not_found("template"))?;
    templates::templates()
        .and_then(|t| t.render(&message, &s.config.email.branding))
        .map_err(|e| Error::Internal(e.into()))
}

/// The e-mail templates, each with its subject for sample data (admin, operator, support).
#[utoipa::path(get, path = "/api/ops/emails/templates", tag = "operations",
    responses((status = 200, body = Vec<EmailTemplateOut>), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_templates(
    State(s): State<AppState>,
    who: Principal,
) -> Result<axum::Json<Vec<EmailTemplateOut>>> {
    who.require(READERS)?;
    let mut out = Vec::new();
    for d in templates::TEMPLATES {
        out.push(EmailTemplateOut {
            name: d.name.into(),
            description: d.description.into(),
            sample_subject: render_sample(&s, d.name)?.subject,
        });
    }
    Ok(axum::Json(out))
}

/// Which part of a message a preview shows.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PreviewFormat {
    #[default]
    Html,
    Text,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PreviewQuery {
    /// `html` (the default) or `text`.
    #[serde(default)]
    pub format: PreviewFormat,
}

/// A template rendered with sample data: its HTML (served sandboxed: no scripts, no remote
/// loads) or its text part.
#[utoipa::path(get, path = "/api/ops/emails/templates/{name}/preview", tag = "operations",
    params(("name" = String, Path, description = "a template's name"), PreviewQuery),
    responses((status = 200, content((String = "text/html"), (String = "text/plain"))),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn preview_template(
    State(s): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    Query(q): Query<PreviewQuery>,
) -> Result<Response> {
    who.require(READERS)?;
    let rendered = render_sample(&s, &name)?;
    Ok(match q.format {
        PreviewFormat::Html => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                ),
            ],
            rendered.html,
        )
            .into_response(),
        PreviewFormat::Text => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            rendered.text,
        )
            .into_response(),
    })
}
