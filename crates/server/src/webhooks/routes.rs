//! The webhooks' HTTP API, twice: under `/api/webhooks/…` for a client's members (their own
//! clients' endpoints) and under `/api/ops/webhooks/…` for staff (every client's; support
//! reads). Both trees have the same operations and answers; each handler is one line into
//! `endpoints.rs` or `messages.rs`.

use super::deliver::Deliverer;
use super::endpoints::{self, Access};
use super::messages;
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::http::extract::{ClientIp, Json, Path, Query};
use crate::ids::{ClientId, WebhookEndpointId, WebhookMessageId, WebhookRecoveryId};
use crate::state::AppState;
use airwave_api::{
    Page, Problem, WebhookAttemptOut, WebhookEndpointCreatedOut, WebhookEndpointIn,
    WebhookEndpointOut, WebhookEndpointPatch, WebhookEventTypeOut, WebhookMessageDetailOut,
    WebhookMessageOut, WebhookMessageStatus, WebhookRecoverIn, WebhookRecoverOut,
    WebhookRecoveryOut, WebhookRotateIn, WebhookSecretOut,
};
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

pub fn routes() -> crate::feature::Routes {
    crate::feature::Routes::new()
        .routes(utoipa_axum::routes!(event_types))
        .routes(utoipa_axum::routes!(
            ops_list_endpoints,
            ops_create_endpoint
        ))
        .routes(utoipa_axum::routes!(
            ops_get_endpoint,
            ops_update_endpoint,
            ops_delete_endpoint
        ))
        .routes(utoipa_axum::routes!(ops_rotate_secret))
        .routes(utoipa_axum::routes!(ops_revoke_previous))
        .routes(utoipa_axum::routes!(ops_test_endpoint))
        .routes(utoipa_axum::routes!(ops_list_messages))
        .routes(utoipa_axum::routes!(ops_recover))
        .routes(utoipa_axum::routes!(ops_get_message))
        .routes(utoipa_axum::routes!(ops_replay_message))
        .routes(utoipa_axum::routes!(ops_get_recovery))
        .routes(utoipa_axum::routes!(list_endpoints, create_endpoint))
        .routes(utoipa_axum::routes!(
            get_endpoint,
            update_endpoint,
            delete_endpoint
        ))
        .routes(utoipa_axum::routes!(rotate_secret))
        .routes(utoipa_axum::routes!(revoke_previous))
        .routes(utoipa_axum::routes!(test_endpoint))
        .routes(utoipa_axum::routes!(list_messages))
        .routes(utoipa_axum::routes!(recover))
        .routes(utoipa_axum::routes!(get_message))
        .routes(utoipa_axum::routes!(replay_message))
        .routes(utoipa_axum::routes!(get_recovery))
}

/// The event catalogue with each payload's JSON Schema (any signed-in user).
#[utoipa::path(get, path = "/api/webhooks/event-types", tag = "webhooks",
    responses((status = 200, body = Vec<WebhookEventTypeOut>), (status = 401, body = Problem)),
    security(("bearer" = [])))]
pub async fn event_types(_who: Principal) -> axum::Json<Vec<WebhookEventTypeOut>> {
    axum::Json(super::catalogue::catalogue())
}

/// `GET …/endpoints` filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EndpointQuery {
    /// The client whose endpoints to list (required under `/api/webhooks`).
    pub client_id: Option<String>,
    /// 1 to 200; 50 by default.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// `GET …/endpoints/{id}/messages` filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MessageQuery {
    pub status: Option<WebhookMessageStatus>,
    /// 1 to 200; 50 by default.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

fn paging(limit: Option<i64>, cursor: Option<String>) -> crate::paging::PageQuery {
    crate::paging::PageQuery { limit, cursor }
}

async fn list_endpoints_in(
    s: AppState,
    who: Principal,
    access: Access,
    q: EndpointQuery,
) -> Result<axum::Json<Page<WebhookEndpointOut>>> {
    let client: Option<ClientId> = q
        .client_id
        .map(|c| {
            c.parse()
                .map_err(|e| Error::invalid("invalid_query", format!("`client_id`: {e}")))
        })
        .transpose()?;
    let p = paging(q.limit, q.cursor);
    let cursor: Option<WebhookEndpointId> = p.cursor()?;
    Ok(axum::Json(
        endpoints::list(
            &s,
            &who,
            access,
            client.as_ref(),
            p.limit()?,
            cursor.as_ref(),
        )
        .await?,
    ))
}

async fn create_endpoint_in(
    s: AppState,
    who: Principal,
    access: Access,
    ip: ClientIp,
    body: WebhookEndpointIn,
) -> Result<(StatusCode, axum::Json<WebhookEndpointCreatedOut>)> {
    let out = endpoints::create(&s, &who, access, body, &who.actor(ip.0)).await?;
    Ok((StatusCode::CREATED, axum::Json(out)))
}

async fn get_endpoint_in(
    s: AppState,
    who: Principal,
    access: Access,
    id: WebhookEndpointId,
) -> Result<axum::Json<WebhookEndpointOut>> {
    let row = endpoints::find(&s, &who, access, &id, false).await?;
    Ok(axum::Json(endpoints::to_out(&s.db, row).await?))
}

async fn test_endpoint_in(
    s: AppState,
    who: Principal,
    access: Access,
    id: WebhookEndpointId,
) -> Result<axum::Json<WebhookAttemptOut>> {
    let row = endpoints::find(&s, &who, access, &id, true).await?;
    if row.disabled_at.is_some() {
        return Err(Error::conflict(
            "endpoint_disabled",
            "the endpoint is disabled: enable it first",
        ));
    }
    let deliverer = Deliverer::from_state(&s).map_err(Error::Internal)?;
    Ok(axum::Json(deliverer.test(&row).await?))
}

async fn list_messages_in(
    s: AppState,
    who: Principal,
    access: Access,
    id: WebhookEndpointId,
    q: MessageQuery,
) -> Result<axum::Json<Page<WebhookMessageOut>>> {
    let p = paging(q.limit, q.cursor);
    let cursor: Option<WebhookMessageId> = p.cursor()?;
    Ok(axum::Json(
        messages::list(&s, &who, access, &id, q.status, p.limit()?, cursor.as_ref()).await?,
    ))
}

/// Two handlers per operation, one per tree, each with its OpenAPI description.
macro_rules! both {
    (
        $(#[doc = $doc:literal])*
        $method:ident $ops:ident $ops_path:literal, $client:ident $client_path:literal,
        [$($extra:tt)*]
        ($s:ident, $who:ident, $access:ident $(, $arg:ident : $ty:ty)*) -> $ret:ty $body:block
    ) => {
        $(#[doc = $doc])*
        #[utoipa::path($method, path = $ops_path, tag = "operations", $($extra)*, security(("bearer" = [])))]
        pub async fn $ops(State($s): State<AppState>, $who: Principal, $($arg: $ty),*) -> $ret {
            let $access = Access::Ops;
            $body
        }
        $(#[doc = $doc])*
        #[utoipa::path($method, path = $client_path, tag = "webhooks", $($extra)*, security(("bearer" = [])))]
        pub async fn $client(State($s): State<AppState>, $who: Principal, $($arg: $ty),*) -> $ret {
            let $access = Access::Client;
            $body
        }
    };
}

both! {
    /// Endpoints, newest first (`client_id` narrows; required for members).
    get ops_list_endpoints "/api/ops/webhooks/endpoints", list_endpoints "/api/webhooks/endpoints",
    [params(EndpointQuery), responses((status = 200, body = Page<WebhookEndpointOut>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem))]
    (s, who, access, q: Query<EndpointQuery>) -> Result<axum::Json<Page<WebhookEndpointOut>>> {
        list_endpoints_in(s, who, access, q.0).await
    }
}

both! {
    /// Creates an endpoint; the answer carries its secret, shown this once (201).
    post ops_create_endpoint "/api/ops/webhooks/endpoints", create_endpoint "/api/webhooks/endpoints",
    [request_body = WebhookEndpointIn, responses((status = 201, body = WebhookEndpointCreatedOut), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem))]
    (s, who, access, ip: ClientIp, body: Json<WebhookEndpointIn>) -> Result<(StatusCode, axum::Json<WebhookEndpointCreatedOut>)> {
        create_endpoint_in(s, who, access, ip, body.0).await
    }
}

both! {
    /// One endpoint with its health score, circuit and counts.
    get ops_get_endpoint "/api/ops/webhooks/endpoints/{id}", get_endpoint "/api/webhooks/endpoints/{id}",
    [params(("id" = String, Path, description = "whe_… id")), responses((status = 200, body = WebhookEndpointOut), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))]
    (s, who, access, id: Path<WebhookEndpointId>) -> Result<axum::Json<WebhookEndpointOut>> {
        get_endpoint_in(s, who, access, id.0).await
    }
}

both! {
    /// Changes an endpoint: URL, event types, headers, rate limit; `enabled` disables (with a
    /// reason) or enables it (closing its circuit and releasing held messages).
    patch ops_update_endpoint "/api/ops/webhooks/endpoints/{id}", update_endpoint "/api/webhooks/endpoints/{id}",
    [params(("id" = String, Path, description = "whe_… id")), request_body = WebhookEndpointPatch, responses((status = 200, body = WebhookEndpointOut), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem))]
    (s, who, access, ip: ClientIp, id: Path<WebhookEndpointId>, body: Json<WebhookEndpointPatch>) -> Result<axum::Json<WebhookEndpointOut>> {
        Ok(axum::Json(endpoints::update(&s, &who, access, &id.0, body.0, &who.actor(ip.0)).await?))
    }
}

both! {
    /// Deletes an endpoint with its messages and attempts (204).
    delete ops_delete_endpoint "/api/ops/webhooks/endpoints/{id}", delete_endpoint "/api/webhooks/endpoints/{id}",
    [params(("id" = String, Path, description = "whe_… id")), responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))]
    (s, who, access, ip: ClientIp, id: Path<WebhookEndpointId>) -> Result<StatusCode> {
        endpoints::delete(&s, &who, access, &id.0, &who.actor(ip.0)).await?;
        Ok(StatusCode::NO_CONTENT)
    }
}

both! {
    /// A new secret, shown once; deliveries carry the previous secret's signature too for the
    /// overlap. During an overlap a rotation needs `force` (409 `rotation_in_progress`).
    post ops_rotate_secret "/api/ops/webhooks/endpoints/{id}/secret/rotate", rotate_secret "/api/webhooks/endpoints/{id}/secret/rotate",
    [params(("id" = String, Path, description = "whe_… id")), request_body = WebhookRotateIn, responses((status = 200, body = WebhookSecretOut), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem))]
    (s, who, access, ip: ClientIp, id: Path<WebhookEndpointId>, body: Json<WebhookRotateIn>) -> Result<axum::Json<WebhookSecretOut>> {
        Ok(axum::Json(endpoints::rotate(&s, &who, access, &id.0, body.0.force, &who.actor(ip.0)).await?))
    }
}

both! {
    /// Ends a rotation's overlap now: only the current secret signs.
    post ops_revoke_previous "/api/ops/webhooks/endpoints/{id}/secret/revoke-previous", revoke_previous "/api/webhooks/endpoints/{id}/secret/revoke-previous",
    [params(("id" = String, Path, description = "whe_… id")), responses((status = 200, body = WebhookEndpointOut), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))]
    (s, who, access, ip: ClientIp, id: Path<WebhookEndpointId>) -> Result<axum::Json<WebhookEndpointOut>> {
        Ok(axum::Json(endpoints::revoke_previous(&s, &who, access, &id.0, &who.actor(ip.0)).await?))
    }
}

both! {
    /// Sends a `webhook.test` event now and answers its attempt.
    post ops_test_endpoint "/api/ops/webhooks/endpoints/{id}/test", test_endpoint "/api/webhooks/endpoints/{id}/test",
    [params(("id" = String, Path, description = "whe_… id")), responses((status = 200, body = WebhookAttemptOut), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem))]
    (s, who, access, id: Path<WebhookEndpointId>) -> Result<axum::Json<WebhookAttemptOut>> {
        test_endpoint_in(s, who, access, id.0).await
    }
}

both! {
    /// An endpoint's messages, newest first.
    get ops_list_messages "/api/ops/webhooks/endpoints/{id}/messages", list_messages "/api/webhooks/endpoints/{id}/messages",
    [params(("id" = String, Path, description = "whe_… id"), MessageQuery), responses((status = 200, body = Page<WebhookMessageOut>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))]
    (s, who, access, id: Path<WebhookEndpointId>, q: Query<MessageQuery>) -> Result<axum::Json<Page<WebhookMessageOut>>> {
        list_messages_in(s, who, access, id.0, q.0).await
    }
}

both! {
    /// Recovers the endpoint's failed messages since `since`: `dry_run` counts them; otherwise a
    /// job delivers them again (202) and `GET …/recoveries/{id}` shows its progress.
    post ops_recover "/api/ops/webhooks/endpoints/{id}/recover", recover "/api/webhooks/endpoints/{id}/recover",
    [params(("id" = String, Path, description = "whe_… id")), request_body = WebhookRecoverIn, responses((status = 200, body = WebhookRecoverOut, description = "A dry run's count"), (status = 202, body = WebhookRecoverOut), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem))]
    (s, who, access, ip: ClientIp, id: Path<WebhookEndpointId>, body: Json<WebhookRecoverIn>) -> Result<(StatusCode, axum::Json<WebhookRecoverOut>)> {
        let out = messages::recover(&s, &who, access, &id.0, body.0.since, body.0.dry_run, &who.actor(ip.0)).await?;
        let status = if out.recovery.is_some() { StatusCode::ACCEPTED } else { StatusCode::OK };
        Ok((status, axum::Json(out)))
    }
}

both! {
    /// One message: its exact body and every attempt (request and response headers, truncated
    /// body, latency, error class).
    get ops_get_message "/api/ops/webhooks/messages/{id}", get_message "/api/webhooks/messages/{id}",
    [params(("id" = String, Path, description = "whm_… id")), responses((status = 200, body = WebhookMessageDetailOut), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))]
    (s, who, access, id: Path<WebhookMessageId>) -> Result<axum::Json<WebhookMessageDetailOut>> {
        Ok(axum::Json(messages::detail(&s, &who, access, &id.0).await?))
    }
}

both! {
    /// Delivers a message again with the same `webhook-id` and a fresh round of attempts (202).
    post ops_replay_message "/api/ops/webhooks/messages/{id}/replay", replay_message "/api/webhooks/messages/{id}/replay",
    [params(("id" = String, Path, description = "whm_… id")), responses((status = 202, body = WebhookMessageOut), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem))]
    (s, who, access, ip: ClientIp, id: Path<WebhookMessageId>) -> Result<(StatusCode, axum::Json<WebhookMessageOut>)> {
        let out = messages::replay(&s, &who, access, &id.0, &who.actor(ip.0)).await?;
        Ok((StatusCode::ACCEPTED, axum::Json(out)))
    }
}

both! {
    /// A recovery's progress.
    get ops_get_recovery "/api/ops/webhooks/recoveries/{id}", get_recovery "/api/webhooks/recoveries/{id}",
    [params(("id" = String, Path, description = "whr_… id")), responses((status = 200, body = WebhookRecoveryOut), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))]
    (s, who, access, id: Path<WebhookRecoveryId>) -> Result<axum::Json<WebhookRecoveryOut>> {
        Ok(axum::Json(messages::recovery(&s, &who, access, &id.0).await?))
    }
}
