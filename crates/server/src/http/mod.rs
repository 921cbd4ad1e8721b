//! The HTTP surface: the middleware stack, the features' routes merged into one router, and the
//! OpenAPI document generated from the handlers' annotations (so a route cannot exist without
//! being documented). The routes themselves live in each feature's `routes.rs`.
//!
//! Middleware, outermost first: request id → trace span (method, matched path, request id) →
//! problem normaliser (any bare 4xx/5xx becomes problem+json, with the request id) → CORS →
//! timeout → panic catcher → body limit → start-up gate (503 `starting` until the database is
//! reachable) → routes.

pub mod extract;
pub mod problem;
pub mod record;

use crate::feature::Feature;
use crate::health;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use problem::{default_for, problem, PROBLEM_JSON};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(OpenApi)]
#[openapi(
    info(title = "AIrWAVE API", description = "AIrWAVE's API: accounts, clients, assets, campaigns, renders, approvals and operations."),
    modifiers(&BearerAuth),
    tags((name = "health"), (name = "auth"), (name = "admin"), (name = "clients"), (name = "assets"), (name = "uploads"), (name = "campaigns"), (name = "approvals"), (name = "webhooks"), (name = "operations"), (name = "meta"))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "a session token from /api/auth/login or an API token (awt_…)",
                    ))
                    .build(),
            ),
        );
    }
}

/// This OpenAPI document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", responses((status = 200, description = "this document", content_type = "application/json", body = Object)))]
async fn openapi_json(
    axum::Extension(doc): axum::Extension<std::sync::Arc<utoipa::openapi::OpenApi>>,
) -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(doc.as_ref().clone())
}

/// Every feature's routes with their OpenAPI descriptions, and this document's own.
fn api_routes(features: &[Arc<dyn Feature>]) -> OpenApiRouter<AppState> {
    features.iter().fold(
        OpenApiRouter::with_openapi(ApiDoc::openapi()).routes(routes!(openapi_json)),
        |router, f| router.merge(f.routes()),
    )
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut api = api_routes(&crate::startup::features()).into_openapi();
    finish_document(&mut api);
    api
}

/// Makes the document say exactly what is sent: every problem response is
/// `application/problem+json` (utoipa writes `application/json` for any body), and every
/// operation's `default` response says that any status it does not list is a problem too.
fn finish_document(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let problem_ref = Ref::from_schema_name("Problem").ref_location;
    for item in api.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for op in ops.into_iter().flatten() {
            for resp in op.responses.responses.values_mut() {
                let RefOr::T(resp) = resp else { continue };
                let is_problem = resp.content.get("application/json").is_some_and(
                    |c| matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location == problem_ref),
                );
                if is_problem {
                    if let Some(c) = resp.content.shift_remove("application/json") {
                        resp.content.insert(PROBLEM_JSON.to_owned(), c);
                    }
                }
            }
            op.responses
                .responses
                .entry("default".to_owned())
                .or_insert_with(|| {
                    RefOr::T(
                        ResponseBuilder::new()
                            .description("Any other status is an RFC 9457 problem (see docs/api.md, Errors).")
                            .content(
                                PROBLEM_JSON,
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("Problem")))
                                    .build(),
                            )
                            .build(),
                    )
                });
        }
    }
}

/// The whole application: routes, documentation and middleware.
pub fn router(state: AppState) -> Router {
    let (routes, mut api) = api_routes(&state.features).split_for_parts();
    finish_document(&mut api);
    let api = std::sync::Arc::new(api);
    let config = state.config.clone();
    let ready = state.ready.clone();
    let request_timeout = state.config.request_timeout;
    let tus_discovery =
        std::sync::Arc::new(crate::assets::routes::tus_discovery(&state.config.uploads));
    let routes = routes.layer(axum::Extension(api)).with_state(state);

    let cors = if config.cors_origins.is_empty() {
        CorsLayer::new()
    } else {
        let origins: Vec<HeaderValue> = config
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                // tus (browser uploads to /api/uploads)
                HeaderName::from_static("tus-resumable"),
                HeaderName::from_static("upload-length"),
                HeaderName::from_static("upload-offset"),
                HeaderName::from_static("upload-metadata"),
                HeaderName::from_static("upload-checksum"),
            ])
            .expose_headers([
                header::LOCATION,
                HeaderName::from_static("tus-resumable"),
                HeaderName::from_static("upload-offset"),
                HeaderName::from_static("upload-length"),
                HeaderName::from_static("upload-expires"),
            ])
            .max_age(Duration::from_secs(600))
    };

    let stack = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
            let path = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("(unmatched)");
            let id = req.extensions().get::<RequestId>().and_then(|r| r.header_value().to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %path, request_id = %id)
        }))
        // Each request in its own error-tracking hub, one transaction named by its matched route,
        // tagged with its request id; a panic below is caught inside it (one event).
        .layer(sentry::integrations::tower::SentryLayer::new(|_: &Request<Body>| {
            // From the main hub, not this thread's: nothing of another request carries over.
            std::sync::Arc::new(sentry::Hub::new_from_top(sentry::Hub::main()))
        }))
        .layer(middleware::from_fn(tag_request_id))
        .layer(middleware::from_fn(normalise_problems))
        // tus discovery (`OPTIONS /api/uploads` without CORS preflight headers) is answered
        // here: the CORS layer takes every OPTIONS request for a preflight.
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let tus = tus_discovery.clone();
            async move {
                let preflight = req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
                if req.method() == Method::OPTIONS && req.uri().path() == "/api/uploads" && !preflight {
                    return tus.as_ref().clone().into_response();
                }
                next.run(req).await
            }
        }))
        .layer(cors)
        // Streaming uploads run as long as their bodies keep coming (each has an idle timeout).
        .layer(middleware::from_fn(move |req: Request, next: Next| async move {
            if crate::assets::routes::is_streaming_upload(req.uri().path()) {
                return next.run(req).await;
            }
            match tokio::time::timeout(request_timeout, next.run(req)).await {
                Ok(r) => r,
                Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
            }
        }))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            // The panic itself is the error-tracking event: this line stays a breadcrumb.
            tracing::error!(target: crate::tracking::ALREADY_REPORTED, "a request handler panicked");
            problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
        }))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let ready = ready.clone();
            async move { require_ready(&ready, req, next).await }
        }));

    let app = routes
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(stack);
    match config
        .record_responses
        .as_deref()
        .map(record::Recorder::open)
    {
        Some(Ok(recorder)) => app.layer(middleware::from_fn(move |req: Request, next: Next| {
            recorder.clone().layer(req, next)
        })),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot open AIRWAVE_RECORD_RESPONSES: responses are not recorded");
            app
        }
        None => app,
    }
}

/// Names what this request reports to error tracking by its route (`GET /api/ops/emails/{id}`)
/// and tags it with the request id.
async fn tag_request_id(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let name = format!("{} {}", req.method(), route.unwrap_or("(unmatched)"));
    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok());
    // Our own transaction: its name, timing and status only — no URL, query or headers (no
    // scrubbing hook runs on transactions), and a caller's `sentry-trace` cannot force sampling.
    let tx = sentry::start_transaction(sentry::TransactionContext::new(&name, "http.server"));
    sentry::configure_scope(|scope| {
        scope.set_transaction(Some(&name));
        scope.set_span(Some(tx.clone().into()));
        if let Some(id) = id {
            scope.set_tag("request_id", id);
        }
    });
    let resp = next.run(req).await;
    let status = resp.status();
    tx.set_status(if status.is_server_error() {
        sentry::protocol::SpanStatus::InternalError
    } else if status.is_client_error() {
        sentry::protocol::SpanStatus::InvalidArgument
    } else {
        sentry::protocol::SpanStatus::Ok
    });
    tx.finish();
    resp
}

/// Until the database is reachable and migrated, only health and the API document are served;
/// everything else is `503 starting` with `Retry-After` (never a 500 from a missing table).
async fn require_ready(ready: &crate::state::Ready, req: Request, next: Next) -> Response {
    const ALWAYS: &[&str] = &["/api/health/live", "/api/health", "/api/openapi.json"];
    if ready.is_set() || ALWAYS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let mut r = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "starting",
        "the server is starting: its database is not reachable yet; try again shortly",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// Makes every error answer a problem document carrying the request id: bare statuses from the
/// fallback, method routing, timeouts and limits get one; our own problems get the id added.
async fn normalise_problems(req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if content_type.starts_with(health::routes::HEALTH_JSON)
        || content_type.starts_with("text/html")
    {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let mut problem_doc: Option<airwave_api::Problem> = None;
    if content_type.starts_with(PROBLEM_JSON) {
        if let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await {
            problem_doc = serde_json::from_slice(&bytes).ok();
        }
    }
    let mut doc = problem_doc.unwrap_or_else(|| {
        let (code, detail) = default_for(status);
        airwave_api::Problem {
            type_: format!("https://airwave.app/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.into(),
            request_id: None,
        }
    });
    doc.request_id = request_id;
    let body = serde_json::to_vec(&doc).unwrap_or_default();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body)).into_response()
}
