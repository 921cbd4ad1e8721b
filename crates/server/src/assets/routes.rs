//! `/api/assets…`

use super::AssetQuery;
use crate::auth::Principal;
use crate::error::Result;
use crate::http::extract::{ClientIp, Json, Path, Query};
use crate::ids::AssetId;
use crate::state::AppState;
use airwave_api::{AssetIn, AssetOut, AssetPatch, Page, Problem};
use axum::extract::State;
use axum::http::StatusCode;

/// This feature's routes with their OpenAPI descriptions.
pub fn routes() -> crate::feature::Routes {
    crate::feature::Routes::new()
        .routes(utoipa_axum::routes!(create_asset, list_assets))
        .routes(utoipa_axum::routes!(get_asset, update_asset, delete_asset))
}

/// Record an asset's metadata (admin, or a member of its client).
#[utoipa::path(post, path = "/api/assets", tag = "assets", request_body = AssetIn,
    responses((status = 201, body = AssetOut), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_asset(
    State(s): State<AppState>,
    who: Principal,
    Json(body): Json<AssetIn>,
) -> Result<(StatusCode, axum::Json<AssetOut>)> {
    let out = super::create(&s, &who, &body).await?;
    Ok((StatusCode::CREATED, axum::Json(out)))
}

/// List and search assets the caller may see.
#[utoipa::path(get, path = "/api/assets", tag = "assets", params(AssetQuery),
    responses((status = 200, body = Page<AssetOut>), (status = 400, body = Problem)), security(("bearer" = [])))]
pub async fn list_assets(
    State(s): State<AppState>,
    who: Principal,
    Query(q): Query<AssetQuery>,
) -> Result<axum::Json<Page<AssetOut>>> {
    Ok(axum::Json(super::list(&s, &who, &q).await?))
}

#[utoipa::path(get, path = "/api/assets/{id}", tag = "assets", params(("id" = String, Path, description = "ast_… id")),
    responses((status = 200, body = AssetOut), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_asset(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<AssetId>,
) -> Result<axum::Json<AssetOut>> {
    Ok(axum::Json(super::get(&s, &who, &id).await?))
}

#[utoipa::path(patch, path = "/api/assets/{id}", tag = "assets", params(("id" = String, Path, description = "ast_… id")),
    request_body = AssetPatch,
    responses((status = 200, body = AssetOut), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn update_asset(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<AssetId>,
    Json(body): Json<AssetPatch>,
) -> Result<axum::Json<AssetOut>> {
    Ok(axum::Json(super::update(&s, &who, &id, &body).await?))
}

#[utoipa::path(delete, path = "/api/assets/{id}", tag = "assets", params(("id" = String, Path, description = "ast_… id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn delete_asset(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(id): Path<AssetId>,
) -> Result<StatusCode> {
    super::delete(&s, &who, &id, &who.actor(ip.0)).await?;
    Ok(StatusCode::NO_CONTENT)
}
