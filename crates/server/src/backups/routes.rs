//! `/api/ops/backups…`: list backups with their drills (admins, operators, support), take one now
//! and drill one (admins and operators).

use crate::audit::Entry;
use crate::auth::Principal;
use crate::error::Result;
use crate::http::extract::{ClientIp, Path, Query};
use crate::state::AppState;
use airwave_api::{BackupOut, DrillOut, Problem, Role};
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

const WATCHERS: &[Role] = &[Role::Admin, Role::Operator, Role::Support];
const OPERATORS: &[Role] = &[Role::Admin, Role::Operator];

pub fn routes() -> crate::feature::Routes {
    crate::feature::Routes::new()
        .routes(utoipa_axum::routes!(list_backups, run_backup))
        .routes(utoipa_axum::routes!(get_backup))
        .routes(utoipa_axum::routes!(verify_backup))
        .routes(utoipa_axum::routes!(get_drill))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BackupQuery {
    /// 1 to 200; 50 by default.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// Backups, newest first, each with its latest restore drill (RTO, RPO, result).
#[utoipa::path(get, path = "/api/ops/backups", tag = "operations", params(BackupQuery),
    responses((status = 200, body = Vec<BackupOut>), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_backups(
    State(s): State<AppState>,
    who: Principal,
    Query(q): Query<BackupQuery>,
) -> Result<axum::Json<Vec<BackupOut>>> {
    who.require(WATCHERS)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(crate::error::Error::invalid(
            "invalid_query",
            "`limit` must be between 1 and 200",
        ));
    }
    Ok(axum::Json(super::list(&s, limit).await?))
}

/// Take a backup now: queued at once (202); poll it for `progress` and `status`.
#[utoipa::path(post, path = "/api/ops/backups", tag = "operations",
    responses((status = 202, body = BackupOut), (status = 403, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn run_backup(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
) -> Result<(StatusCode, axum::Json<BackupOut>)> {
    who.require(OPERATORS)?;
    let out = super::request_backup(&s, Some(who.user_id.as_str())).await?;
    crate::audit::record(
        &s.db,
        s.clock.as_ref(),
        &who.actor(ip.0),
        Entry {
            action: "backup.run",
            target_type: Some("backup"),
            target_id: Some(&out.id),
            detail: json!({}),
        },
    )
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(out)))
}

#[utoipa::path(get, path = "/api/ops/backups/{id}", tag = "operations", params(("id" = String, Path, description = "bkp_… id")),
    responses((status = 200, body = BackupOut), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_backup(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<crate::ids::BackupId>,
) -> Result<axum::Json<BackupOut>> {
    who.require(WATCHERS)?;
    Ok(axum::Json(super::get(&s, id.as_str()).await?))
}

/// Run a restore drill of a succeeded backup: queued at once (202); poll the drill.
#[utoipa::path(post, path = "/api/ops/backups/{id}/verify", tag = "operations", params(("id" = String, Path, description = "bkp_… id")),
    responses((status = 202, body = DrillOut), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn verify_backup(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(id): Path<crate::ids::BackupId>,
) -> Result<(StatusCode, axum::Json<DrillOut>)> {
    who.require(OPERATORS)?;
    let out = super::request_drill(&s, id.as_str(), Some(who.user_id.as_str())).await?;
    crate::audit::record(
        &s.db,
        s.clock.as_ref(),
        &who.actor(ip.0),
        Entry {
            action: "backup.verify",
            target_type: Some("backup"),
            target_id: Some(id.as_str()),
            detail: json!({"drill_id": out.id}),
        },
    )
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(out)))
}

#[utoipa::path(get, path = "/api/ops/drills/{id}", tag = "operations", params(("id" = String, Path, description = "drl_… id")),
    responses((status = 200, body = DrillOut), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_drill(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<crate::ids::DrillId>,
) -> Result<axum::Json<DrillOut>> {
    who.require(WATCHERS)?;
    Ok(axum::Json(super::get_drill(&s, id.as_str()).await?))
}
