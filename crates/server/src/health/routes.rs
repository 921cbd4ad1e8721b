//! `/api/health/live`, `/api/health`

use crate::state::AppState;
use airwave_api::{HealthOut, HealthStatus};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// This feature's routes with their OpenAPI descriptions.
pub fn routes() -> crate::feature::Routes {
    crate::feature::Routes::new()
        .routes(utoipa_axum::routes!(live))
        .routes(utoipa_axum::routes!(health))
}

pub const HEALTH_JSON: &str = "application/health+json";

fn health_json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(HEALTH_JSON));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Liveness: the process answers. Touches nothing.
#[utoipa::path(get, path = "/api/health/live", tag = "health", responses((status = 200, content_type = "application/health+json")))]
pub async fn live() -> Response {
    health_json(StatusCode::OK, &serde_json::json!({"status": "pass"}))
}

/// Every component's status; 503 when any fails.
#[utoipa::path(get, path = "/api/health", tag = "health",
    responses((status = 200, body = HealthOut, content_type = "application/health+json"), (status = 503, body = HealthOut, content_type = "application/health+json")))]
pub async fn health(State(s): State<AppState>) -> Response {
    let (status, checks) = s.health.run().await;
    let body = HealthOut {
        status,
        version: env!("CARGO_PKG_VERSION").into(),
        service_id: "airwave-server".into(),
        description: "AIrWAVE API and workers".into(),
        checks,
    };
    let code = if status == HealthStatus::Fail {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    health_json(code, &body)
}
