//! `/api/campaigns/{id}/exports…`: request an export of a campaign's approved renders (those who
//! may change the campaign's client), follow it and download it (those who may read it).

use crate::auth::Principal;
use crate::error::Result;
use crate::http::extract::Path;
use crate::ids::{CampaignId, ExportId};
use crate::state::AppState;
use airwave_api::{ExportOut, Problem};
use axum::extract::State;
use axum::http::StatusCode;

pub fn routes() -> crate::feature::Routes {
    crate::feature::Routes::new()
        .routes(utoipa_axum::routes!(create_export, list_exports))
        .routes(utoipa_axum::routes!(get_export))
}

/// Queues an export: the campaign's approved renders (latest decision `approved`) and a
/// `manifest.json` in one zip. Poll the export for progress; `export.ready` announces it.
#[utoipa::path(post, path = "/api/campaigns/{id}/exports", tag = "campaigns",
    params(("id" = String, Path, description = "cmp_… id")),
    responses((status = 202, body = ExportOut), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "`nothing_to_export`, `export_running` or `export_too_large`", body = Problem),
        (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_export(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<CampaignId>,
) -> Result<(StatusCode, axum::Json<ExportOut>)> {
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(super::request(&s, &who, &id).await?),
    ))
}

/// The campaign's newest exports (50), without links.
#[utoipa::path(get, path = "/api/campaigns/{id}/exports", tag = "campaigns",
    params(("id" = String, Path, description = "cmp_… id")),
    responses((status = 200, body = Vec<ExportOut>), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_exports(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<CampaignId>,
) -> Result<axum::Json<Vec<ExportOut>>> {
    Ok(axum::Json(super::list(&s, &who, &id).await?))
}

/// An export's status and progress; once `ready`, a signed link to the archive that expires.
#[utoipa::path(get, path = "/api/campaigns/{id}/exports/{export_id}", tag = "campaigns",
    params(("id" = String, Path, description = "cmp_… id"), ("export_id" = String, Path, description = "exp_… id")),
    responses((status = 200, body = ExportOut), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_export(
    State(s): State<AppState>,
    who: Principal,
    Path((id, export_id)): Path<(CampaignId, ExportId)>,
) -> Result<axum::Json<ExportOut>> {
    Ok(axum::Json(super::get(&s, &who, &id, &export_id).await?))
}
