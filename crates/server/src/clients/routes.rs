//! `/api/clients…`

use super::invites;
use crate::auth::Principal;
use crate::error::Result;
use crate::http::extract::{ClientIp, Json, Path, Query};
use crate::ids::{ClientId, InviteId, UserId};
use crate::paging::PageQuery;
use crate::state::AppState;
use airwave_api::{
    ClientIn, ClientOut, InviteAcceptIn, InviteOut, MemberIn, MemberOut, Page, Problem,
};
use axum::extract::State;
use axum::http::StatusCode;

/// This feature's routes with their OpenAPI descriptions.
pub fn routes() -> crate::feature::Routes {
    crate::feature::Routes::new()
        .routes(utoipa_axum::routes!(create_client, list_clients))
        .routes(utoipa_axum::routes!(get_client))
        .routes(utoipa_axum::routes!(list_members, add_member))
        .routes(utoipa_axum::routes!(remove_member))
        .routes(utoipa_axum::routes!(list_invites))
        .routes(utoipa_axum::routes!(revoke_invite))
        .routes(utoipa_axum::routes!(accept_invite))
}

/// Create a client; the caller becomes a member (admin, member).
#[utoipa::path(post, path = "/api/clients", tag = "clients", request_body = ClientIn,
    responses((status = 201, body = ClientOut), (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_client(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Json(body): Json<ClientIn>,
) -> Result<(StatusCode, axum::Json<ClientOut>)> {
    let out = super::create(&s, &who, &body.name, &who.actor(ip.0)).await?;
    Ok((StatusCode::CREATED, axum::Json(out)))
}

/// List the clients the caller may see.
#[utoipa::path(get, path = "/api/clients", tag = "clients", params(PageQuery),
    responses((status = 200, body = Page<ClientOut>), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn list_clients(
    State(s): State<AppState>,
    who: Principal,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<ClientOut>>> {
    Ok(axum::Json(super::list(&s, &who, &q).await?))
}

#[utoipa::path(get, path = "/api/clients/{id}", tag = "clients", params(("id" = String, Path, description = "cli_… id")),
    responses((status = 200, body = ClientOut), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_client(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<ClientId>,
) -> Result<axum::Json<ClientOut>> {
    Ok(axum::Json(super::get(&s, &who, &id).await?))
}

#[utoipa::path(get, path = "/api/clients/{id}/members", tag = "clients", params(("id" = String, Path, description = "cli_… id")),
    responses((status = 200, body = Vec<MemberOut>), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn list_members(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<ClientId>,
) -> Result<axum::Json<Vec<MemberOut>>> {
    Ok(axum::Json(super::list_members(&s, &who, &id).await?))
}

/// Invite an e-mail address to a client. The answer (202) and the e-mail sent are the same whether or
/// not the address has an account; the membership exists once its owner accepts
/// (`POST /api/invites/accept`). An open invitation of the same address is replaced.
#[utoipa::path(post, path = "/api/clients/{id}/members", tag = "clients", params(("id" = String, Path, description = "cli_… id")),
    request_body = MemberIn,
    responses((status = 202, body = InviteOut), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn add_member(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(id): Path<ClientId>,
    Json(body): Json<MemberIn>,
) -> Result<(StatusCode, axum::Json<InviteOut>)> {
    let out = invites::invite(&s, &who, &id, &body.email, &who.actor(ip.0)).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(out)))
}

/// A client's open invitations (neither accepted, revoked nor expired).
#[utoipa::path(get, path = "/api/clients/{id}/invites", tag = "clients", params(("id" = String, Path, description = "cli_… id")),
    responses((status = 200, body = Vec<InviteOut>), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn list_invites(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<ClientId>,
) -> Result<axum::Json<Vec<InviteOut>>> {
    Ok(axum::Json(invites::list(&s, &who, &id).await?))
}

/// Revoke an open invitation; its link stops working.
#[utoipa::path(delete, path = "/api/clients/{id}/invites/{invite_id}", tag = "clients",
    params(("id" = String, Path, description = "cli_… id"), ("invite_id" = String, Path, description = "inv_… id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn revoke_invite(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path((id, invite)): Path<(ClientId, InviteId)>,
) -> Result<StatusCode> {
    invites::revoke(&s, &who, &id, &invite, &who.actor(ip.0)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accept an invitation sent to your own address (any role): you become a member of its client.
#[utoipa::path(post, path = "/api/invites/accept", tag = "clients", request_body = InviteAcceptIn,
    responses((status = 201, body = MemberOut), (status = 401, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn accept_invite(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Json(body): Json<InviteAcceptIn>,
) -> Result<(StatusCode, axum::Json<MemberOut>)> {
    let out = invites::accept(&s, &who, &body.token, &who.actor(ip.0)).await?;
    Ok((StatusCode::CREATED, axum::Json(out)))
}

#[utoipa::path(delete, path = "/api/clients/{id}/members/{user_id}", tag = "clients",
    params(("id" = String, Path, description = "cli_… id"), ("user_id" = String, Path, description = "usr_… id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn remove_member(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path((id, user)): Path<(ClientId, UserId)>,
) -> Result<StatusCode> {
    super::remove_member(&s, &who, &id, &user, &who.actor(ip.0)).await?;
    Ok(StatusCode::NO_CONTENT)
}
