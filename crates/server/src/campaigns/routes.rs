//! `/api/campaigns…`, `/api/matrices…`, `/api/executions…`

use super::{CampaignQuery, ExecutionQuery};
use crate::auth::Principal;
use crate::error::Result;
use crate::http::extract::{Json, Path, Query};
use crate::ids::{CampaignId, ExecutionId, MatrixId};
use crate::state::AppState;
use airwave_api::{
    CampaignIn, CampaignOut, ExecutionIn, ExecutionOut, MatrixIn, MatrixOut, Page, Problem,
};
use axum::extract::State;
use axum::http::StatusCode;

/// This feature's routes with their OpenAPI descriptions.
pub fn routes() -> crate::feature::Routes {
    crate::feature::Routes::new()
        .routes(utoipa_axum::routes!(create_campaign, list_campaigns))
        .routes(utoipa_axum::routes!(get_campaign))
        .routes(utoipa_axum::routes!(create_matrix, list_matrices))
        .routes(utoipa_axum::routes!(get_matrix))
        .routes(utoipa_axum::routes!(create_execution))
        .routes(utoipa_axum::routes!(list_executions))
        .routes(utoipa_axum::routes!(get_execution))
}

#[utoipa::path(post, path = "/api/campaigns", tag = "campaigns", request_body = CampaignIn,
    responses((status = 201, body = CampaignOut), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_campaign(
    State(s): State<AppState>,
    who: Principal,
    Json(body): Json<CampaignIn>,
) -> Result<(StatusCode, axum::Json<CampaignOut>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(super::create_campaign(&s, &who, &body).await?),
    ))
}

#[utoipa::path(get, path = "/api/campaigns", tag = "campaigns", params(CampaignQuery),
    responses((status = 200, body = Page<CampaignOut>)), security(("bearer" = [])))]
pub async fn list_campaigns(
    State(s): State<AppState>,
    who: Principal,
    Query(q): Query<CampaignQuery>,
) -> Result<axum::Json<Page<CampaignOut>>> {
    Ok(axum::Json(super::list_campaigns(&s, &who, &q).await?))
}

#[utoipa::path(get, path = "/api/campaigns/{id}", tag = "campaigns", params(("id" = String, Path, description = "cmp_… id")),
    responses((status = 200, body = CampaignOut), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_campaign(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<CampaignId>,
) -> Result<axum::Json<CampaignOut>> {
    Ok(axum::Json(super::get_campaign(&s, &who, &id).await?))
}

#[utoipa::path(post, path = "/api/campaigns/{id}/matrices", tag = "campaigns", params(("id" = String, Path, description = "cmp_… id")),
    request_body = MatrixIn,
    responses((status = 201, body = MatrixOut), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn create_matrix(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<CampaignId>,
    Json(body): Json<MatrixIn>,
) -> Result<(StatusCode, axum::Json<MatrixOut>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(super::create_matrix(&s, &who, &id, &body).await?),
    ))
}

#[utoipa::path(get, path = "/api/campaigns/{id}/matrices", tag = "campaigns", params(("id" = String, Path, description = "cmp_… id")),
    responses((status = 200, body = Vec<MatrixOut>), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn list_matrices(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<CampaignId>,
) -> Result<axum::Json<Vec<MatrixOut>>> {
    Ok(axum::Json(super::list_matrices(&s, &who, &id).await?))
}

#[utoipa::path(get, path = "/api/matrices/{id}", tag = "campaigns", params(("id" = String, Path, description = "mtx_… id")),
    responses((status = 200, body = MatrixOut), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_matrix(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<MatrixId>,
) -> Result<axum::Json<MatrixOut>> {
    Ok(axum::Json(super::get_matrix(&s, &who, &id).await?))
}

/// Request a render of the matrix with these values.
#[utoipa::path(post, path = "/api/matrices/{id}/executions", tag = "campaigns", params(("id" = String, Path, description = "mtx_… id")),
    request_body = ExecutionIn,
    responses((status = 201, body = ExecutionOut), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn create_execution(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<MatrixId>,
    Json(body): Json<ExecutionIn>,
) -> Result<(StatusCode, axum::Json<ExecutionOut>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(super::create_execution(&s, &who, &id, &body).await?),
    ))
}

#[utoipa::path(get, path = "/api/executions", tag = "campaigns", params(ExecutionQuery),
    responses((status = 200, body = Page<ExecutionOut>)), security(("bearer" = [])))]
pub async fn list_executions(
    State(s): State<AppState>,
    who: Principal,
    Query(q): Query<ExecutionQuery>,
) -> Result<axum::Json<Page<ExecutionOut>>> {
    Ok(axum::Json(super::list_executions(&s, &who, &q).await?))
}

#[utoipa::path(get, path = "/api/executions/{id}", tag = "campaigns", params(("id" = String, Path, description = "exe_… id")),
    responses((status = 200, body = ExecutionOut), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_execution(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<ExecutionId>,
) -> Result<axum::Json<ExecutionOut>> {
    Ok(axum::Json(super::get_execution(&s, &who, &id).await?))
}
