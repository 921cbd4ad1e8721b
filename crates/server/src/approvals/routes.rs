//! `/api/executions/{id}/approvals`, `/api/approvals…`, and the page a client's link opens.

use super::ApprovalQuery;
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::http::extract::{ClientIp, Json, Path, Query};
use crate::ids::{ApprovalId, ExecutionId};
use crate::state::AppState;
use airwave_api::{
    ApprovalCreatedOut, ApprovalDecisionIn, ApprovalIn, ApprovalOut, ApprovalViewOut, Decision,
    Page, Problem,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

/// This feature's routes with their OpenAPI descriptions.
pub fn routes() -> crate::feature::Routes {
    crate::feature::Routes::new()
        .routes(utoipa_axum::routes!(request_approval))
        .routes(utoipa_axum::routes!(list_approvals))
        .routes(utoipa_axum::routes!(view_approval, decide_approval))
        .routes(utoipa_axum::routes!(get_approval))
        .routes(utoipa_axum::routes!(approval_page, approval_form))
}

/// Ask the client to approve an execution; returns the single-purpose link (shown once).
#[utoipa::path(post, path = "/api/executions/{id}/approvals", tag = "approvals", params(("id" = String, Path, description = "exe_… id")),
    request_body = ApprovalIn,
    responses((status = 201, body = ApprovalCreatedOut), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn request_approval(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(id): Path<ExecutionId>,
    Json(body): Json<ApprovalIn>,
) -> Result<(StatusCode, axum::Json<ApprovalCreatedOut>)> {
    let out = super::request(&s, &who, &id, &body, &who.actor(ip.0)).await?;
    Ok((StatusCode::CREATED, axum::Json(out)))
}

#[utoipa::path(get, path = "/api/approvals", tag = "approvals", params(ApprovalQuery),
    responses((status = 200, body = Page<ApprovalOut>)), security(("bearer" = [])))]
pub async fn list_approvals(
    State(s): State<AppState>,
    who: Principal,
    Query(q): Query<ApprovalQuery>,
) -> Result<axum::Json<Page<ApprovalOut>>> {
    Ok(axum::Json(super::list(&s, &who, &q).await?))
}

#[utoipa::path(get, path = "/api/approvals/{id}", tag = "approvals", params(("id" = String, Path, description = "apr_… id")),
    responses((status = 200, body = ApprovalOut), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_approval(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<ApprovalId>,
) -> Result<axum::Json<ApprovalOut>> {
    Ok(axum::Json(super::get(&s, &who, &id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TokenQuery {
    /// The token of an approval link.
    pub token: String,
}

/// What an approval link shows (no account needed: the link's token is the credential).
#[utoipa::path(get, path = "/api/approvals/decide", tag = "approvals", params(TokenQuery),
    responses((status = 200, body = ApprovalViewOut), (status = 404, body = Problem), (status = 410, body = Problem)))]
pub async fn view_approval(
    State(s): State<AppState>,
    Query(q): Query<TokenQuery>,
) -> Result<axum::Json<ApprovalViewOut>> {
    Ok(axum::Json(super::view(&s, &q.token).await?))
}

/// Approve or reject through an approval link. Works once.
#[utoipa::path(post, path = "/api/approvals/decide", tag = "approvals", request_body = ApprovalDecisionIn,
    responses((status = 200, body = ApprovalOut), (status = 404, body = Problem), (status = 409, body = Problem), (status = 410, body = Problem)))]
pub async fn decide_approval(
    State(s): State<AppState>,
    ip: ClientIp,
    Json(body): Json<ApprovalDecisionIn>,
) -> Result<axum::Json<ApprovalOut>> {
    Ok(axum::Json(super::decide(&s, &body, ip.0).await?))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{t} · AIrWAVE</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#1b1b1f}}\
         button{{font-size:1rem;padding:.6rem 1.4rem;margin-right:.5rem;border-radius:.4rem;border:1px solid #888;cursor:pointer}}\
         .approve{{background:#1f7a3a;color:#fff}}.reject{{background:#a32020;color:#fff}}textarea{{width:100%;min-height:5rem}}</style>\
         </head><body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    ))
}

fn error_page(e: Error) -> Response {
    let (status, msg) = match &e {
        Error::Gone { detail, .. } => (StatusCode::GONE, detail.clone()),
        Error::NotFound(d) => (StatusCode::NOT_FOUND, d.clone()),
        Error::Conflict { detail, .. } => (StatusCode::CONFLICT, detail.clone()),
        Error::Invalid { detail, .. } => (StatusCode::UNPROCESSABLE_ENTITY, detail.clone()),
        _ => return e.into_response(),
    };
    (
        status,
        page(
            "This link cannot be used",
            &format!("<p>{}</p>", escape(&msg)),
        ),
    )
        .into_response()
}

/// The page an approval link opens: what is to be approved, and the two buttons.
#[utoipa::path(get, path = "/approve", tag = "approvals", params(TokenQuery), responses((status = 200, content_type = "text/html", body = String), (status = "4XX", description = "an error page for people (a malformed request: a problem)", content((String = "text/html"), (Problem = "application/problem+json")))))]
pub async fn approval_page(State(s): State<AppState>, Query(q): Query<TokenQuery>) -> Response {
    match super::view(&s, &q.token).await {
        Err(e) => error_page(e),
        Ok(v) if v.approval.status != airwave_api::ApprovalStatus::Pending => page(
            "Already decided",
            &format!("<p>This ad was already <strong>{}</strong>. Thank you.</p>", v.approval.status.as_str()),
        )
        .into_response(),
        Ok(v) => page(
            &format!("Approve an ad for {}", v.client_name),
            &format!(
                "<p>Campaign <strong>{campaign}</strong>, render <code>{exe}</code> ({status}).</p>{note}\
                 <form method=\"post\" action=\"/approve\"><input type=\"hidden\" name=\"token\" value=\"{token}\">\
                 <p><label>Comment (optional)<br><textarea name=\"comment\" maxlength=\"5000\"></textarea></label></p>\
                 <button class=\"approve\" name=\"decision\" value=\"approve\">Approve</button>\
                 <button class=\"reject\" name=\"decision\" value=\"reject\">Reject</button></form>\
                 <p><small>This link works once, until {expires}.</small></p>",
                campaign = escape(&v.campaign_name),
                exe = escape(&v.execution.id),
                status = v.execution.status.as_str(),
                note = v.approval.note.as_deref().map(|n| format!("<blockquote>{}</blockquote>", escape(n))).unwrap_or_default(),
                token = escape(&q.token),
                expires = v.approval.expires_at.format("%Y-%m-%d %H:%M UTC"),
            ),
        )
        .into_response(),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DecisionForm {
    pub token: String,
    pub decision: Decision,
    #[serde(default)]
    pub comment: Option<String>,
}

/// The approval page's form.
#[utoipa::path(post, path = "/approve", tag = "approvals", request_body(content = DecisionForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, content_type = "text/html", body = String), (status = "4XX", description = "an error page for people (a malformed request: a problem)", content((String = "text/html"), (Problem = "application/problem+json")))))]
pub async fn approval_form(
    State(s): State<AppState>,
    ip: ClientIp,
    form: Result<axum::Form<DecisionForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(axum::Form(f)) = form else {
        return (
            StatusCode::BAD_REQUEST,
            page(
                "This form is incomplete",
                "<p>Open the link from your e-mail again.</p>",
            ),
        )
            .into_response();
    };
    let input = ApprovalDecisionIn {
        token: f.token,
        decision: f.decision,
        comment: f.comment,
    };
    match super::decide(&s, &input, ip.0).await {
        Ok(a) => page(
            "Thank you",
            &format!(
                "<p>Your decision is recorded: <strong>{}</strong>.</p>",
                a.status.as_str()
            ),
        )
        .into_response(),
        Err(e) => error_page(e),
    }
}
