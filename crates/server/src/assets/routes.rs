//! `/api/assets…`

use super::{tus, AssetQuery};
use crate::auth::Principal;
use crate::error::Result;
use crate::http::extract::{ClientIp, Json, Path, Query};
use crate::ids::{AssetId, ClientId, UploadId};
use crate::state::AppState;
use airwave_api::{AssetIn, AssetOut, AssetPatch, DownloadUrlOut, Page, Problem, UploadOut};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// This feature's routes with their OpenAPI descriptions.
pub fn routes() -> crate::feature::Routes {
    crate::feature::Routes::new()
        .routes(utoipa_axum::routes!(create_asset, list_assets))
        .routes(utoipa_axum::routes!(get_asset, update_asset, delete_asset))
        .routes(utoipa_axum::routes!(upload_asset))
        .routes(utoipa_axum::routes!(asset_download_url))
        .routes(utoipa_axum::routes!(public_file))
        .routes(utoipa_axum::routes!(tus_options, tus_create))
        .routes(utoipa_axum::routes!(
            tus_head, tus_patch, tus_delete, get_upload
        ))
}

/// Paths whose requests stream bodies of any length: the request timeout does not apply to them
/// (their bodies have an idle timeout instead).
pub fn is_streaming_upload(path: &str) -> bool {
    path == "/api/uploads"
        || path.starts_with("/api/uploads/")
        || (path.starts_with("/api/assets/") && path.ends_with("/upload"))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The file's name (for downloads' `Content-Disposition`); paths are refused.
    pub filename: Option<String>,
}

/// Upload an asset's file in one request: the body is the file, `Content-Type` its type (on the
/// allow-list and of the asset's kind; the bytes are sniffed and must match). Streams to storage;
/// replaces the previous file. For large files use the resumable `/api/uploads`.
#[utoipa::path(post, path = "/api/assets/{id}/upload", tag = "assets",
    params(("id" = String, Path, description = "ast_… id"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file"),
    responses((status = 200, body = AssetOut), (status = 403, body = Problem), (status = 404, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn upload_asset(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<AssetId>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<AssetOut>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let out = super::upload::upload(
        &s,
        &who,
        &id,
        content_type,
        q.filename.as_deref(),
        length,
        body,
    )
    .await?;
    Ok(axum::Json(out))
}

/// A signed, expiring link to the asset's file, served with its type, a `Content-Disposition`
/// naming it and HTTP range support.
#[utoipa::path(get, path = "/api/assets/{id}/download-url", tag = "assets",
    params(("id" = String, Path, description = "ast_… id")),
    responses((status = 200, body = DownloadUrlOut), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn asset_download_url(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<AssetId>,
) -> Result<axum::Json<DownloadUrlOut>> {
    Ok(axum::Json(super::download_url(&s, &who, &id).await?))
}

fn tus_response(status: StatusCode) -> Response {
    let mut r = status.into_response();
    r.headers_mut().insert(
        HeaderName::from_static("tus-resumable"),
        HeaderValue::from_static(tus::VERSION),
    );
    r
}

fn set(r: &mut Response, name: &'static str, value: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        r.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

/// An error with the tus header (clients read it on every answer).
fn tus_error(e: crate::error::Error) -> Response {
    let mut r = e.into_response();
    r.headers_mut().insert(
        HeaderName::from_static("tus-resumable"),
        HeaderValue::from_static(tus::VERSION),
    );
    r
}

/// 412 when the client speaks another tus version.
fn tus_version(h: &HeaderMap) -> std::result::Result<(), Box<Response>> {
    if tus::version_ok(h) {
        return Ok(());
    }
    let mut r = crate::http::problem::problem(
        StatusCode::PRECONDITION_FAILED,
        "tus_version",
        format!(
            "this server speaks tus {}: send `Tus-Resumable: {}`",
            tus::VERSION,
            tus::VERSION
        ),
    );
    set(&mut r, "tus-version", tus::VERSION);
    Err(Box::new(r))
}

/// tus discovery's answer (`http/mod.rs` serves it ahead of the CORS layer, which would take the
/// `OPTIONS` request for a preflight).
pub fn tus_discovery(uploads: &super::settings::UploadConfig) -> (StatusCode, HeaderMap) {
    let mut h = HeaderMap::new();
    let max = [
        airwave_api::AssetType::Image,
        airwave_api::AssetType::Video,
        airwave_api::AssetType::Audio,
        airwave_api::AssetType::Font,
        airwave_api::AssetType::Text,
    ]
    .into_iter()
    .map(|t| uploads.max_bytes(t))
    .max()
    .unwrap_or(0);
    for (name, value) in [
        ("tus-resumable", tus::VERSION.to_owned()),
        ("tus-version", tus::VERSION.to_owned()),
        ("tus-extension", tus::EXTENSIONS.to_owned()),
        ("tus-checksum-algorithm", tus::CHECKSUMS.to_owned()),
        ("tus-max-size", max.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    (StatusCode::NO_CONTENT, h)
}

/// tus discovery: version, extensions, checksum algorithms, largest upload.
#[utoipa::path(options, path = "/api/uploads", tag = "uploads", responses((status = 204)))]
pub async fn tus_options(State(s): State<AppState>) -> (StatusCode, HeaderMap) {
    tus_discovery(&s.config.uploads)
}

/// tus creation: `Upload-Length` and `Upload-Metadata` (`asset_id`, `filetype`, `filename`, each
/// base64); answers 201 with the upload's `Location`.
#[utoipa::path(post, path = "/api/uploads", tag = "uploads",
    responses((status = 201), (status = 404, body = Problem), (status = 412, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn tus_create(State(s): State<AppState>, who: Principal, headers: HeaderMap) -> Response {
    if let Err(r) = tus_version(&headers) {
        return *r;
    }
    match tus::create(&s, &who, &headers).await {
        Ok(row) => {
            let mut r = tus_response(StatusCode::CREATED);
            set(&mut r, "location", format!("/api/uploads/{}", row.id));
            set(&mut r, "upload-expires", tus::http_date(row.expires_at));
            r
        }
        Err(e) => tus_error(e),
    }
}

/// tus: where the upload stands (`Upload-Offset`, `Upload-Length`).
#[utoipa::path(head, path = "/api/uploads/{id}", tag = "uploads", params(("id" = String, Path, description = "upl_… id")),
    responses((status = 200), (status = 404, body = Problem), (status = 410, body = Problem), (status = 412, body = Problem)), security(("bearer" = [])))]
pub async fn tus_head(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<UploadId>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = tus_version(&headers) {
        return *r;
    }
    match tus::head(&s, &who, &id).await {
        Ok(row) => {
            let mut r = tus_response(StatusCode::OK);
            set(&mut r, "upload-offset", row.received);
            set(&mut r, "upload-length", row.length);
            set(&mut r, "cache-control", "no-store");
            if row.status == "open" {
                set(&mut r, "upload-expires", tus::http_date(row.expires_at));
            }
            r
        }
        // The body of an error is dropped on HEAD; its status and headers stay.
        Err(e) => tus_error(e),
    }
}

/// tus: bytes from `Upload-Offset` on (`Content-Type: application/offset+octet-stream`;
/// optional `Upload-Checksum: sha256 <base64>`). A cut-off body keeps what arrived.
#[utoipa::path(patch, path = "/api/uploads/{id}", tag = "uploads", params(("id" = String, Path, description = "upl_… id")),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem), (status = 410, body = Problem),
        (status = 412, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem),
        (status = 460, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn tus_patch(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<UploadId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(r) = tus_version(&headers) {
        return *r;
    }
    match tus::patch(&s, &who, &id, &headers, body).await {
        Ok(p) => {
            let mut r = tus_response(StatusCode::NO_CONTENT);
            set(&mut r, "upload-offset", p.offset);
            if p.asset.is_none() {
                set(&mut r, "upload-expires", tus::http_date(p.expires_at));
            }
            r
        }
        Err(e) => tus_error(e),
    }
}

/// tus termination: the upload and what it stored go.
#[utoipa::path(delete, path = "/api/uploads/{id}", tag = "uploads", params(("id" = String, Path, description = "upl_… id")),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem)), security(("bearer" = [])))]
pub async fn tus_delete(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<UploadId>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = tus_version(&headers) {
        return *r;
    }
    match tus::terminate(&s, &who, &id).await {
        Ok(()) => tus_response(StatusCode::NO_CONTENT),
        Err(e) => tus_error(e),
    }
}

/// An upload's progress as JSON (bytes received of its length, status, expiry).
#[utoipa::path(get, path = "/api/uploads/{id}", tag = "uploads", params(("id" = String, Path, description = "upl_… id")),
    responses((status = 200, body = UploadOut), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_upload(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<UploadId>,
) -> Result<axum::Json<UploadOut>> {
    Ok(axum::Json(tus::load(&s, &who, &id).await?.out()))
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

/// How long browsers and the CDN keep a public file. Its URL names one upload, so the bytes never
/// change; a file made private again stops being served at once here, and at the CDN when this
/// runs out (or on an invalidation, see storage.md).
pub const PUBLIC_CACHE_CONTROL: &str = "public, max-age=86400";

/// A public asset's file, to anyone: the CDN's origin (`CDN_DOMAIN`). `404` unless the asset is
/// public and the path names its current file.
#[utoipa::path(get, path = "/cdn/clients/{client_id}/assets/{asset_id}/{upload_id}", tag = "assets",
    params(("client_id" = String, Path, description = "cli_… id"), ("asset_id" = String, Path, description = "ast_… id"),
        ("upload_id" = String, Path, description = "upl_… id of the file")),
    responses((status = 200, description = "the file, with its own type", content_type = "*/*", body = Vec<u8>),
        (status = 206, description = "the range asked for", content_type = "*/*", body = Vec<u8>),
        (status = 400, body = Problem), (status = 404, body = Problem), (status = 416, body = Problem)))]
pub async fn public_file(
    State(s): State<AppState>,
    Path((client, asset, upload)): Path<(ClientId, AssetId, UploadId)>,
    headers: HeaderMap,
) -> Response {
    let key = super::upload::blob_key(client.as_str(), asset.as_str(), &upload);
    let found = super::public_file(&s, &key).await;
    match found {
        Ok(Some((content_type, filename))) => {
            let mut served = crate::storage::delivery::Served::for_file(
                &content_type,
                filename.as_deref(),
                std::time::Duration::ZERO,
            );
            served.cache_control = PUBLIC_CACHE_CONTROL.to_owned();
            crate::storage::routes::serve(&s, &key, &served, &headers).await
        }
        Ok(None) => crate::error::Error::not_found("file").into_response(),
        Err(e) => e.into_response(),
    }
}
