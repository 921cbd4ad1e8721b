//! Extractors whose every rejection is a problem+json answer: JSON bodies (syntax → 400
//! `invalid_json`, wrong shape or unknown field → 422 `invalid_body`, too large → 413, wrong
//! content type → 415), path ids (400 `invalid_id`), query strings (400 `invalid_query`), the
//! bearer token (401) and the client's address.

use super::problem::problem;
use crate::auth::{self, Principal};
use crate::error::Error;
use crate::state::AppState;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use std::net::SocketAddr;

/// A JSON body.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> Response {
    match r {
        JsonRejection::MissingJsonContentType(_) => problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        ),
        JsonRejection::JsonSyntaxError(e) => problem(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {}", source_text(&e)),
        ),
        JsonRejection::JsonDataError(e) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            source_text(&e),
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        ),
        other => problem(other.status(), "bad_request", other.body_text()),
    }
}

/// serde's message without axum's prefix, e.g. "unknown field `foo`, expected … at line 1 column 8".
fn source_text(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg = s.to_string();
        src = s.source();
    }
    msg
}

/// Path parameters (our ids parse themselves, so a malformed id never reaches a handler).
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(problem(
                StatusCode::BAD_REQUEST,
                "invalid_id",
                e.body_text(),
            )),
            Err(other) => Err(problem(other.status(), "invalid_path", other.body_text())),
        }
    }
}

/// A query string.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(problem(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                source_text(&e),
            )),
            Err(other) => Err(problem(other.status(), "invalid_query", other.body_text())),
        }
    }
}

/// The caller's address as seen by this server (proxies are not trusted for it).
#[derive(Debug, Clone)]
pub struct ClientIp(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string()),
        ))
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 4096)
            .ok_or_else(|| {
                Error::Unauthenticated("send `Authorization: Bearer <token>`".into())
                    .into_response()
            })?;
        let who = auth::authenticate(state, token)
            .await
            .map_err(IntoResponse::into_response)?;
        // What this request reports to error tracking names the user by id only (and the role).
        sentry::configure_scope(|scope| {
            scope.set_user(Some(sentry::User {
                id: Some(who.user_id.to_string()),
                ..Default::default()
            }));
            scope.set_tag("role", who.role.as_str());
        });
        Ok(who)
    }
}
