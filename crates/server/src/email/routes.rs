//! `/api/ops/emails/templates…`: the e-mail templates and their previews with sample data, for
//! support staff and above.

use super::templates::{self, Message};
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::http::extract::{Path, Query};
use crate::state::AppState;
use airwave_api::{EmailTemplateOut, Problem, Role};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// Who may read e-mails and their templates.
const READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Support];

/// This feature's routes with their OpenAPI descriptions.
pub fn routes() -> crate::feature::Routes {
    crate::feature::Routes::new()
        .routes(utoipa_axum::routes!(list_templates))
        .routes(utoipa_axum::routes!(preview_template))
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
