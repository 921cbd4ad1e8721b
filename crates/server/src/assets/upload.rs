//! An asset's file, streamed in. The server owns the key — `clients/<client>/assets/<asset>/<upl_…>`
//! — so a client never names a blob, and a new file never overwrites the one it replaces (the old
//! one is removed once the new one is committed). The body streams to the blob store in constant
//! memory through the sniffer (`sniff.rs`), with the type's size limit and an idle timeout; the
//! store computes its sha256 on the way. Nothing is recorded unless all of that held.

use super::sniff::{self, Known, Scope};
use super::AssetRow;
use crate::auth::Principal;
use crate::clients::ensure_can_write;
use crate::db::BeginWrite as _;
use crate::error::{Error, Result};
use crate::events::types;
use crate::ids::{AssetId, UploadId};
use crate::state::AppState;
use crate::storage::{ByteStream, StorageError, Written};
use crate::{emit_event, with_db};
use airwave_api::{AssetOut, AssetType};
use futures_util::StreamExt as _;
use serde_json::json;
use std::time::Duration;

/// Where an asset's file lives: under its client, so a key alone says whose it is.
pub fn blob_key(client_id: &str, asset_id: &str, upload: &UploadId) -> String {
    format!("clients/{client_id}/assets/{asset_id}/{upload}")
}

/// The prefix every blob of a client's assets lies under.
pub fn client_prefix(client_id: &str) -> String {
    format!("clients/{client_id}/")
}

/// The accepted type for an asset of `asset_type` declaring `content_type`: on the allow-list
/// and of the asset's kind (415 otherwise).
pub fn accept(
    state: &AppState,
    asset_type: AssetType,
    content_type: Option<&str>,
) -> Result<&'static Known> {
    let uploads = &state.config.uploads;
    let list = || {
        uploads
            .types
            .iter()
            .filter(|k| k.asset_type == asset_type)
            .map(|k| k.mime)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(declared) = sniff::declared(content_type) else {
        return Err(Error::UnsupportedMedia {
            code: "unsupported_type",
            detail: format!(
                "declare the file's Content-Type; a {} asset takes {}",
                asset_type.as_str(),
                list()
            ),
        });
    };
    match uploads.allowed(&declared) {
        Some(k) if k.asset_type == asset_type => Ok(k),
        _ => Err(Error::UnsupportedMedia {
            code: "unsupported_type",
            detail: format!(
                "`{declared}` is not accepted for a {} asset; it takes {}",
                asset_type.as_str(),
                list()
            ),
        }),
    }
}

pub fn filename(name: Option<&str>) -> Result<Option<String>> {
    name.map(|n| {
        sniff::sanitise_filename(n).map_err(|e| Error::invalid("invalid_filename", e.to_string()))
    })
    .transpose()
}

/// The error a request body gave (the client stopped sending, or stalled): kept apart from the
/// store's own errors so it can be told from them.
#[derive(Debug, thiserror::Error)]
#[error("the upload body ended early: {0}")]
pub struct BodyCut(pub String);

pub fn body_cut(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<BodyCut>())
}

/// A request body as a byte stream that fails when nothing arrives for `idle`.
pub fn request_body(body: axum::body::Body, idle: Duration) -> ByteStream {
    let inner = body.into_data_stream();
    Box::pin(futures_util::stream::unfold(
        inner,
        move |mut s| async move {
            match tokio::time::timeout(idle, s.next()).await {
                Ok(None) => None,
                Ok(Some(Ok(b))) => Some((Ok(b), s)),
                Ok(Some(Err(e))) => Some((Err(std::io::Error::other(BodyCut(e.to_string()))), s)),
                Err(_) => Some((
                    Err(std::io::Error::other(BodyCut(format!(
                        "nothing arrived for {} s",
                        idle.as_secs()
                    )))),
                    s,
                )),
            }
        },
    ))
}

/// What a failed write of an upload becomes.
pub fn write_error(e: StorageError, max: u64) -> Error {
    match e {
        StorageError::Io(e) => {
            if let Some(r) = sniff::refused(&e) {
                return Error::UnsupportedMedia {
                    code: "content_mismatch",
                    detail: r.to_string(),
                };
            }
            if e.kind() == std::io::ErrorKind::FileTooLarge {
                return too_large(max);
            }
            if body_cut(&e) {
                return Error::invalid("upload_interrupted", e.to_string());
            }
            Error::Internal(anyhow::Error::new(e).context("storing the upload"))
        }
        StorageError::Backend(m) => Error::Unavailable {
            code: "storage_unavailable",
            detail: format!("the blob store is unavailable: {m}"),
            retry_after: Duration::from_secs(5),
        },
        other => Error::Internal(anyhow::Error::new(other).context("storing the upload")),
    }
}

pub fn too_large(max: u64) -> Error {
    Error::TooLarge {
        code: "too_large",
        detail: format!(
            "the file is over this asset type's limit of {} MiB",
            max >> 20
        ),
    }
}

/// Reads and drops what is left of a refused body (up to 8 MiB, for up to 2 s), so the client,
/// still sending, reads the answer instead of a reset connection.
pub async fn drain(body: axum::body::Body) {
    let mut s = body.into_data_stream();
    let mut n = 0usize;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(c)) = s.next().await {
            n += c.len();
            if n > 8 << 20 {
                break;
            }
        }
    })
    .await;
}

/// `POST /api/assets/{id}/upload`: the whole file in one body.
pub async fn upload(
    state: &AppState,
    who: &Principal,
    id: &AssetId,
    content_type: Option<&str>,
    name: Option<&str>,
    content_length: Option<u64>,
    body: axum::body::Body,
) -> Result<AssetOut> {
    let checked = async {
        let asset = super::load(state, who, id).await?;
        ensure_can_write(state, who, &asset.client_id).await?;
        let asset_type: AssetType = asset
            .type_
            .parse()
            .map_err(|e| Error::Internal(anyhow::Error::new(e)))?;
        let kind = accept(state, asset_type, content_type)?;
        let name = filename(name)?;
        let max = state.config.uploads.max_bytes(asset_type);
        if content_length.is_some_and(|n| n > max) {
            return Err(too_large(max));
        }
        Ok((asset, kind, name, max))
    }
    .await;
    let (asset, kind, name, max) = match checked {
        Ok(c) => c,
        Err(e) => {
            drain(body).await;
            return Err(e);
        }
    };
    let upload = UploadId::new(state.clock.now());
    let key = blob_key(&asset.client_id, id.as_str(), &upload);
    let body = sniff::inspect(
        request_body(body, state.config.uploads.idle),
        kind,
        Scope::Whole,
    );
    let written = state
        .blobs
        .put_stream(&key, body, kind.mime, max)
        .await
        .map_err(|e| write_error(e, max))?;
    commit(state, &asset, &key, kind, name.as_deref(), &written, None).await
}

/// Records a stored file on its asset (and, for a resumable upload, closes it) in one
/// transaction; removes the file it replaces. When the asset is gone meanwhile, the new blob is
/// removed and the answer is 404.
pub(super) async fn commit(
    state: &AppState,
    asset: &AssetRow,
    key: &str,
    kind: &Known,
    name: Option<&str>,
    written: &Written,
    upload: Option<&UploadId>,
) -> Result<AssetOut> {
    let now = state.clock.now();
    let checksum = format!("sha256:{}", hex::encode(written.sha256));
    let size = i64::try_from(written.size).map_err(|e| Error::Internal(e.into()))?;
    let result: Result<Option<(Option<String>, AssetRow)>> = async {
        Ok(with_db!(&state.db, pool => {
            let mut tx = pool.begin_write().await?;
            let old: Option<Option<String>> = sqlx::query_scalar("SELECT storage_key FROM assets WHERE id = $1")
                .bind(&asset.id).fetch_optional(&mut *tx).await?;
            match old {
                None => None,
                Some(old) => {
                    sqlx::query(
                        "UPDATE assets SET storage_key = $2, content_type = $3, filename = $4, size = $5, checksum = $6, uploaded_at = $7, updated_at = $7 WHERE id = $1",
                    )
                    .bind(&asset.id).bind(key).bind(kind.mime).bind(name).bind(size).bind(&checksum).bind(now)
                    .execute(&mut *tx).await?;
                    if let Some(u) = upload {
                        let closed = sqlx::query("UPDATE uploads SET status = 'completed', received = length, updated_at = $2 WHERE id = $1 AND status = 'completing'")
                            .bind(u.as_str()).bind(now).execute(&mut *tx).await?.rows_affected();
                        if closed != 1 {
                            return Err(Error::conflict("upload_terminated", "the upload was terminated while its file was assembled"));
                        }
                    }
                    emit_event!(&mut *tx, now, types::ASSET_UPDATED, &asset.id, json!({
                        "asset_id": asset.id, "client_id": asset.client_id, "uploaded": true,
                        "content_type": kind.mime, "size": size, "checksum": checksum,
                    }))?;
                    let row: AssetRow = sqlx::query_as(&format!("SELECT {} FROM assets a WHERE a.id = $1", super::COLUMNS))
                        .bind(&asset.id).fetch_one(&mut *tx).await?;
                    tx.commit().await?;
                    Some((old, row))
                }
            }
        }))
    }
    .await;
    let (old, row) = match result {
        Ok(Some(found)) => found,
        Ok(None) => {
            remove_blob(state, key).await;
            return Err(Error::not_found("asset"));
        }
        Err(e) => {
            remove_blob(state, key).await;
            return Err(e);
        }
    };
    if let Some(old) = old.filter(|o| o != key) {
        remove_blob(state, &old).await;
    }
    row.into_out(state.config.public_assets_base())
}

/// Deletes a blob, logging (not failing) when it cannot: the cleanup job's orphan sweep removes
/// what is left.
pub async fn remove_blob(state: &AppState, key: &str) {
    match state.blobs.delete(key).await {
        Ok(()) | Err(StorageError::NotFound(_)) => {}
        Err(e) => tracing::warn!(key, error = %e, "removing a blob failed; the orphan sweep will"),
    }
}
