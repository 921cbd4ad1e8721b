//! `GET /api/blobs/{token}`: a folder-backed signed link, served. The token is the authority (no
//! session): it must be ours, intact and unexpired. One `Range: bytes=…` range is honoured (206
//! with `Content-Range`; 416 past the end), so video seeks; several ranges get the whole file.

use super::delivery;
use super::{ByteRange, StorageError};
use crate::http::problem::problem;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub fn routes() -> crate::feature::Routes {
    crate::feature::Routes::new().routes(utoipa_axum::routes!(get_blob))
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` (the last n); `None` for anything else (served whole).
pub fn parse_range(v: &str, size: u64) -> Option<Result<ByteRange, ()>> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return Some(Err(()));
        }
        return Some(Ok(ByteRange {
            start: size.saturating_sub(n),
            end: None,
        }));
    }
    let start: u64 = a.parse().ok()?;
    let end: Option<u64> = if b.is_empty() {
        None
    } else {
        Some(b.parse().ok()?)
    };
    if end.is_some_and(|e| e < start) {
        return None;
    }
    Some(Ok(ByteRange { start, end }))
}

fn set(r: &mut Response, name: header::HeaderName, v: &str) {
    if let Ok(v) = HeaderValue::from_str(v) {
        r.headers_mut().insert(name, v);
    }
}

/// A signed link's file (see `GET /api/assets/{id}/download-url`).
#[utoipa::path(get, path = "/api/blobs/{token}", tag = "assets", params(("token" = String, Path, description = "the signed token")),
    responses((status = 200, description = "the file, with its own type", content_type = "*/*", body = Vec<u8>),
        (status = 206, description = "the range asked for", content_type = "*/*", body = Vec<u8>),
        (status = 403, body = airwave_api::Problem), (status = 404, body = airwave_api::Problem), (status = 416, body = airwave_api::Problem)))]
pub async fn get_blob(
    State(s): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(grant) = delivery::verify(&s.signing_key, &token, s.clock.now()) else {
        return problem(
            StatusCode::FORBIDDEN,
            "invalid_link",
            "this link is not valid or has expired",
        );
    };
    serve(&s, &grant.key, &grant.served, &headers).await
}

/// The blob at `key` with the headers of `served`, honouring one `Range`.
pub async fn serve(
    s: &AppState,
    key: &str,
    served: &delivery::Served,
    headers: &HeaderMap,
) -> Response {
    let size = match s.blobs.head(key).await {
        Ok(i) => i.size,
        Err(StorageError::NotFound(_)) => {
            return problem(StatusCode::NOT_FOUND, "not_found", "the file is gone")
        }
        Err(e) => return crate::error::Error::Internal(anyhow::Error::new(e)).into_response(),
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, size));
    let range = match range {
        Some(Err(())) => return unsatisfiable(size),
        Some(Ok(r)) => Some(r),
        None => None,
    };
    let reading = match s.blobs.get_stream(key, range).await {
        Ok(r) => r,
        Err(StorageError::InvalidRange { size }) => return unsatisfiable(size),
        Err(StorageError::NotFound(_)) => {
            return problem(StatusCode::NOT_FOUND, "not_found", "the file is gone")
        }
        Err(e) => return crate::error::Error::Internal(anyhow::Error::new(e)).into_response(),
    };
    let total = reading.info.size;
    let (status, length, content_range) = match (range, reading.range) {
        (Some(_), Some((first, last))) => (
            StatusCode::PARTIAL_CONTENT,
            last - first + 1,
            Some(format!("bytes {first}-{last}/{total}")),
        ),
        _ => (StatusCode::OK, total, None),
    };
    let mut r = (status, Body::from_stream(reading.body)).into_response();
    set(&mut r, header::CONTENT_TYPE, &served.content_type);
    set(&mut r, header::CONTENT_DISPOSITION, &served.disposition);
    set(&mut r, header::CACHE_CONTROL, &served.cache_control);
    set(&mut r, header::CONTENT_LENGTH, &length.to_string());
    set(&mut r, header::ACCEPT_RANGES, "bytes");
    set(&mut r, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(
        &mut r,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; sandbox",
    );
    if let Some(cr) = content_range {
        set(&mut r, header::CONTENT_RANGE, &cr);
    }
    r
}

fn unsatisfiable(size: u64) -> Response {
    let mut r = problem(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range_not_satisfiable",
        format!("the file is {size} bytes"),
    );
    set(&mut r, header::CONTENT_RANGE, &format!("bytes */{size}"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_rfc_9110_says() {
        let r = |start, end| Some(Ok(ByteRange { start, end }));
        assert_eq!(parse_range("bytes=0-99", 1000), r(0, Some(99)));
        assert_eq!(parse_range("bytes=500-", 1000), r(500, None));
        assert_eq!(parse_range("bytes=-100", 1000), r(900, None));
        assert_eq!(parse_range("bytes=-5000", 1000), r(0, None));
        assert_eq!(parse_range("bytes=-0", 1000), Some(Err(())));
        assert_eq!(
            parse_range("bytes=0-1,5-6", 1000),
            None,
            "several ranges: the whole file"
        );
        assert_eq!(parse_range("items=0-1", 1000), None);
        assert_eq!(parse_range("bytes=9-3", 1000), None);
    }
}
