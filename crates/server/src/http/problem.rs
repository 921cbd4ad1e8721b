//! The one mapping from errors to HTTP: RFC 9457 `application/problem+json` with a stable `code`.
//! A 5xx body never carries internals; the cause goes to the log.

use crate::error::Error;
use airwave_api::Problem;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem+json response.
pub fn problem(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
    let body = Problem {
        type_: format!("https://airwave.app/problems/{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: detail.into(),
        code: code.to_owned(),
        request_id: None,
    };
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    resp
}

/// The code and detail used when a response carries only a status (fallback 404, 405, timeouts…).
pub fn default_for(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::BAD_REQUEST => ("bad_request", "the request is malformed"),
        StatusCode::UNAUTHORIZED => ("unauthenticated", "a valid bearer token is required"),
        StatusCode::FORBIDDEN => ("forbidden", "your role does not allow this"),
        StatusCode::NOT_FOUND => ("not_found", "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this method is not allowed on this resource",
        ),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long and was abandoned"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send the body as application/json",
        ),
        StatusCode::UNPROCESSABLE_ENTITY => (
            "invalid_body",
            "the request body is not valid for this endpoint",
        ),
        StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "too many requests"),
        StatusCode::SERVICE_UNAVAILABLE => {
            ("unavailable", "the service is temporarily unavailable")
        }
        s if s.is_client_error() => ("bad_request", "the request cannot be served"),
        _ => ("internal", "internal error"),
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::NotFound(d) => problem(StatusCode::NOT_FOUND, "not_found", d),
            Error::Invalid { code, detail } => {
                problem(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
            }
            Error::Conflict { code, detail } => problem(StatusCode::CONFLICT, code, detail),
            Error::Unauthenticated(d) => {
                let mut r = problem(StatusCode::UNAUTHORIZED, "unauthenticated", d);
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                r
            }
            Error::Forbidden(d) => problem(StatusCode::FORBIDDEN, "forbidden", d),
            Error::Gone { code, detail } => problem(StatusCode::GONE, code, detail),
            Error::TooLarge { code, detail } => {
                problem(StatusCode::PAYLOAD_TOO_LARGE, code, detail)
            }
            Error::UnsupportedMedia { code, detail } => {
                problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, code, detail)
            }
            Error::ChecksumMismatch(detail) => problem(
                StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
                "checksum_mismatch",
                detail,
            ),
            Error::TooMany {
                code,
                detail,
                retry_after,
            } => {
                let mut r = problem(StatusCode::TOO_MANY_REQUESTS, code, detail);
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs().max(1)),
                );
                r
            }
            Error::Unavailable {
                code,
                detail,
                retry_after,
            } => {
                let mut r = problem(StatusCode::SERVICE_UNAVAILABLE, code, detail);
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs().max(1)),
                );
                r
            }
            Error::Database(sqlx::Error::PoolTimedOut) => {
                tracing::warn!("database pool exhausted: no connection within the acquire timeout");
                let mut r = problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_busy",
                    "the database is busy; try again shortly",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            Error::Database(ref e) if crate::db::is_unreachable_sqlx(e) => {
                tracing::warn!(error = %e, "the database is unreachable");
                let mut r = problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database cannot be reached; try again shortly",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                r
            }
            Error::Database(e) => {
                tracing::error!(error = ?e, "database error");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
            Error::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}
