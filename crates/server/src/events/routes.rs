//! `/api/ops/events/consumers…`: each consumer's backlog, its pending and parked events, and the
//! operator's retry of parked ones (audited). Admins, operators and support staff read; admins
//! and operators retry.

use super::dispatcher::{self, PendingEvent};
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::http::extract::{ClientIp, Json, Path, Query};
use crate::state::AppState;
use airwave_api::{CountOut, EventConsumerOut, PendingEventOut, Problem, RetryParkedIn, Role};
use axum::extract::State;
use serde::Deserialize;

/// This feature's routes with their OpenAPI descriptions.
pub fn routes() -> crate::feature::Routes {
    crate::feature::Routes::new()
        .routes(utoipa_axum::routes!(list_consumers))
        .routes(utoipa_axum::routes!(list_pending))
        .routes(utoipa_axum::routes!(retry_parked))
}

const WATCHERS: &[Role] = &[Role::Admin, Role::Operator, Role::Support];
const OPERATORS: &[Role] = &[Role::Admin, Role::Operator];

fn known(s: &AppState, name: &str) -> Result<()> {
    if s.consumers.iter().any(|c| c.name() == name) {
        Ok(())
    } else {
        Err(Error::not_found("event consumer"))
    }
}

/// Every registered consumer with its backlog: undelivered events, the oldest one's age, pending
/// and parked counts.
#[utoipa::path(get, path = "/api/ops/events/consumers", tag = "operations",
    responses((status = 200, body = Vec<EventConsumerOut>), (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn list_consumers(
    State(s): State<AppState>,
    who: Principal,
) -> Result<axum::Json<Vec<EventConsumerOut>>> {
    who.require(WATCHERS)?;
    let now = s.clock.now();
    let lags = dispatcher::lag(&s.db, s.clock.as_ref(), &s.consumers).await?;
    Ok(axum::Json(
        lags.into_iter()
            .map(|l| EventConsumerOut {
                lag_seconds: l.lag_seconds(now),
                name: l.name,
                event_types: l.event_types,
                undelivered: l.undelivered,
                oldest_undelivered_at: l.oldest_undelivered_at,
                pending: l.pending,
                parked: l.parked,
                delivered: l.delivered,
                owner: l.owner,
            })
            .collect(),
    ))
}

/// `GET …/pending` filter.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PendingQuery {
    /// Only parked events (out of attempts).
    pub parked: Option<bool>,
    /// 1 to 500; 100 by default.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

fn pending_out(p: PendingEvent) -> PendingEventOut {
    PendingEventOut {
        next_attempt_at: p.parked_at.is_none().then_some(p.next_at),
        event_id: p.event_id,
        event_type: p.event_type,
        subject_id: p.subject_id,
        attempts: p.attempts,
        last_error: p.last_error,
        parked_at: p.parked_at,
        created_at: p.created_at,
    }
}

/// A consumer's events that failed (retrying or parked, with the error) and those waiting behind
/// them, oldest first.
#[utoipa::path(get, path = "/api/ops/events/consumers/{name}/pending", tag = "operations", params(("name" = String, Path), PendingQuery),
    responses((status = 200, body = Vec<PendingEventOut>), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_pending(
    State(s): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    Query(q): Query<PendingQuery>,
) -> Result<axum::Json<Vec<PendingEventOut>>> {
    who.require(WATCHERS)?;
    known(&s, &name)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(Error::invalid(
            "invalid_query",
            format!("`limit` must be between 1 and 500 (got {limit})"),
        ));
    }
    let rows = dispatcher::pending(&s.db, &name, q.parked.unwrap_or(false), limit).await?;
    Ok(axum::Json(rows.into_iter().map(pending_out).collect()))
}

/// Retry a consumer's parked events (one, or all): they get fresh attempts at once.
#[utoipa::path(post, path = "/api/ops/events/consumers/{name}/retry", tag = "operations", params(("name" = String, Path)), request_body = RetryParkedIn,
    responses((status = 200, body = CountOut), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn retry_parked(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(name): Path<String>,
    Json(body): Json<RetryParkedIn>,
) -> Result<axum::Json<CountOut>> {
    who.require(OPERATORS)?;
    known(&s, &name)?;
    if let Some(id) = &body.event_id {
        crate::ids::check(crate::ids::EventId::PREFIX, id)
            .map_err(|e| Error::invalid("validation_failed", e.to_string()))?;
    }
    let n = dispatcher::retry_parked(
        &s.db,
        s.clock.as_ref(),
        &who.actor(ip.0),
        &name,
        body.event_id.as_deref(),
    )
    .await?;
    if n == 0 && body.event_id.is_some() {
        return Err(Error::not_found("parked event"));
    }
    Ok(axum::Json(CountOut {
        count: n,
        dry_run: false,
    }))
}
