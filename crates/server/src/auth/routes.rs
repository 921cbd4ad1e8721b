//! `/api/auth…`, `/api/tokens…`, `/api/admin/users…`

use crate::auth::{self, Principal};
use crate::error::{Error, Result};
use crate::http::extract::{ClientIp, Json, Path, Query};
use crate::ids::{ApiTokenId, UserId};
use crate::paging::PageQuery;
use crate::state::AppState;
use airwave_api::{
    ApiTokenCreatedOut, ApiTokenIn, ApiTokenOut, LoginIn, LoginOut, Page, PasswordResetConfirmIn,
    PasswordResetIn, Problem, RegisterIn, RegistrationConfirmIn, Role, UserOut, UserPatch,
};
use axum::extract::State;
use axum::http::StatusCode;

/// This feature's routes with their OpenAPI descriptions.
pub fn routes() -> crate::feature::Routes {
    crate::feature::Routes::new()
        .routes(utoipa_axum::routes!(register))
        .routes(utoipa_axum::routes!(register_confirm))
        .routes(utoipa_axum::routes!(login))
        .routes(utoipa_axum::routes!(logout))
        .routes(utoipa_axum::routes!(me))
        .routes(utoipa_axum::routes!(password_reset))
        .routes(utoipa_axum::routes!(password_reset_confirm))
        .routes(utoipa_axum::routes!(create_token, list_tokens))
        .routes(utoipa_axum::routes!(revoke_token))
        .routes(utoipa_axum::routes!(list_users))
        .routes(utoipa_axum::routes!(set_user_role))
}

/// Ask for an account (role `member`). Always 202 for a well-formed request, so it reveals nothing:
/// a new address is mailed a confirmation link (the account exists once it is followed), a taken
/// one a note that it already has an account.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterIn,
    responses((status = 202), (status = 422, body = Problem)))]
pub async fn register(
    State(s): State<AppState>,
    ip: ClientIp,
    Json(body): Json<RegisterIn>,
) -> Result<StatusCode> {
    auth::registration::request(&s, &body.email, &body.password, &body.name, ip.0).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Follow the link from the confirmation e-mail, with the password chosen when asking: the account
/// is created, and the link is spent.
#[utoipa::path(post, path = "/api/auth/register/confirm", tag = "auth", request_body = RegistrationConfirmIn,
    responses((status = 201, body = UserOut), (status = 422, body = Problem)))]
pub async fn register_confirm(
    State(s): State<AppState>,
    ip: ClientIp,
    Json(body): Json<RegistrationConfirmIn>,
) -> Result<(StatusCode, axum::Json<UserOut>)> {
    let user = auth::registration::confirm(&s, &body.token, &body.password, ip.0).await?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

/// Log in; the answer's token is a bearer token for the session.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginIn,
    responses((status = 200, body = LoginOut), (status = 401, body = Problem), (status = 429, body = Problem)))]
pub async fn login(
    State(s): State<AppState>,
    ip: ClientIp,
    Json(body): Json<LoginIn>,
) -> Result<axum::Json<LoginOut>> {
    Ok(axum::Json(
        auth::login(&s, &body.email, &body.password, ip.0).await?,
    ))
}

/// End this session (or revoke the API token used for this call).
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", responses((status = 204), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn logout(State(s): State<AppState>, who: Principal, ip: ClientIp) -> Result<StatusCode> {
    auth::logout(&s, &who, &who.actor(ip.0)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's account; `role` is the role in force for this token.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", responses((status = 200, body = UserOut), (status = 401, body = Problem)), security(("bearer" = [])))]
pub async fn me(State(s): State<AppState>, who: Principal) -> Result<axum::Json<UserOut>> {
    let mut user = auth::get_user(&s, &who.user_id).await?;
    user.role = who.role;
    Ok(axum::Json(user))
}

/// Mail a reset link if the address has an account. Always 202, so it reveals nothing.
#[utoipa::path(post, path = "/api/auth/password-reset", tag = "auth", request_body = PasswordResetIn, responses((status = 202)))]
pub async fn password_reset(
    State(s): State<AppState>,
    ip: ClientIp,
    Json(body): Json<PasswordResetIn>,
) -> Result<StatusCode> {
    auth::request_password_reset(&s, &body.email, ip.0).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Set a new password with the token from the reset link; every session of the user ends.
#[utoipa::path(post, path = "/api/auth/password-reset/confirm", tag = "auth", request_body = PasswordResetConfirmIn,
    responses((status = 204), (status = 422, body = Problem)))]
pub async fn password_reset_confirm(
    State(s): State<AppState>,
    ip: ClientIp,
    Json(body): Json<PasswordResetConfirmIn>,
) -> Result<StatusCode> {
    auth::confirm_password_reset(&s, &body.token, &body.password, ip.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create an API token for yourself (the console does this after logging in). Shown once.
#[utoipa::path(post, path = "/api/tokens", tag = "auth", request_body = ApiTokenIn,
    responses((status = 201, body = ApiTokenCreatedOut), (status = 403, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn create_token(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Json(body): Json<ApiTokenIn>,
) -> Result<(StatusCode, axum::Json<ApiTokenCreatedOut>)> {
    let out = auth::issue_token(&s, &who.user_id, who.role, &body, &who.actor(ip.0)).await?;
    Ok((StatusCode::CREATED, axum::Json(out)))
}

/// Your API tokens (never their secrets).
#[utoipa::path(get, path = "/api/tokens", tag = "auth", responses((status = 200, body = Vec<ApiTokenOut>)), security(("bearer" = [])))]
pub async fn list_tokens(
    State(s): State<AppState>,
    who: Principal,
) -> Result<axum::Json<Vec<ApiTokenOut>>> {
    Ok(axum::Json(auth::list_tokens(&s, &who.user_id).await?))
}

/// Revoke one of your tokens (an admin may revoke anyone's).
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "auth", params(("id" = String, Path, description = "tok_… id")),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn revoke_token(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(id): Path<ApiTokenId>,
) -> Result<StatusCode> {
    auth::revoke_token(&s, &who, &id, &who.actor(ip.0)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every user (admin).
#[utoipa::path(get, path = "/api/admin/users", tag = "admin", params(PageQuery),
    responses((status = 200, body = Page<UserOut>), (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn list_users(
    State(s): State<AppState>,
    who: Principal,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<UserOut>>> {
    who.require(&[Role::Admin])?;
    Ok(axum::Json(
        auth::list_users(&s, q.limit()?, q.cursor::<UserId>()?.as_ref()).await?,
    ))
}

/// Change a user's role, or disable / enable the account (admin). The last admin can be neither
/// demoted nor disabled; disabling ends every session and API token of the user at once.
#[utoipa::path(patch, path = "/api/admin/users/{id}", tag = "admin", params(("id" = String, Path, description = "usr_… id")),
    request_body = UserPatch,
    responses((status = 200, body = UserOut), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn set_user_role(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(id): Path<UserId>,
    Json(body): Json<UserPatch>,
) -> Result<axum::Json<UserOut>> {
    who.require(&[Role::Admin])?;
    let actor = who.actor(ip.0);
    if body.role.is_none() && body.disabled.is_none() {
        return Err(Error::invalid(
            "validation_failed",
            "give `role`, `disabled` or both",
        ));
    }
    // Every check before any change: a refused part changes nothing.
    if body.disabled == Some(true) && who.user_id == id {
        return Err(Error::conflict(
            "self_disable",
            "you cannot disable your own account",
        ));
    }
    let mut user = None;
    if let Some(role) = body.role {
        user = Some(auth::set_role(&s, &id, role, &actor).await?);
    }
    if let Some(disabled) = body.disabled {
        user = Some(
            auth::set_disabled(&s, &who, &id, disabled, body.reason.as_deref(), &actor).await?,
        );
    }
    Ok(axum::Json(user.ok_or_else(|| Error::not_found("user"))?))
}
