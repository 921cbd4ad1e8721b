//! Resumable uploads: tus 1.0 (<https://tus.io/protocols/resumable-upload>) with the creation,
//! termination, checksum and expiration extensions, at `/api/uploads`.
//!
//! An upload is a row (`uploads`) plus parts: each `PATCH` streams its body into one temporary
//! blob (`tmp/uploads/<upl_…>/<offset>-<random>`), and a part counts once a conditional update
//! (`received = <the PATCH's offset>`) records it — two PATCHes racing for one offset cannot both
//! land. A PATCH cut short keeps what arrived (unless it carried a checksum, which can then not be
//! verified), so a client resumes from `HEAD`'s `Upload-Offset`. When the last byte arrives the
//! parts stream, in order, through the sniffer into the asset's own key (sha256 computed on the
//! way), the asset records it and the parts go. Memory stays flat at any size: every step streams.
//! An upload unfinished for `AIRWAVE_UPLOAD_EXPIRY_HOURS` expires; the cleanup job removes it.

use super::sniff::{self, Scope};
use super::upload::{self, blob_key};
use crate::auth::Principal;
use crate::clients::ensure_can_write;
use crate::db::BeginWrite as _;
use crate::error::{Error, Result};
use crate::ids::{AssetId, UploadId};
use crate::state::AppState;
use crate::storage::{ByteStream, StorageError};
use crate::with_db;
use airwave_api::{AssetOut, AssetType, UploadOut, UploadStatus};
use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt as _, TryStreamExt as _};
use sha2::Digest as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

pub const VERSION: &str = "1.0.0";
pub const EXTENSIONS: &str = "creation,termination,checksum,expiration";
pub const CHECKSUMS: &str = "sha1,sha256";
/// The media type of a PATCH body.
pub const PATCH_TYPE: &str = "application/offset+octet-stream";
/// Where parts live until the upload completes.
pub const PARTS_PREFIX: &str = "tmp/uploads/";

#[derive(Clone, sqlx::FromRow)]
pub struct UploadRow {
    pub id: String,
    pub asset_id: String,
    pub client_id: String,
    pub length: i64,
    pub received: i64,
    pub content_type: String,
    pub filename: Option<String>,
    pub status: String,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, asset_id, client_id, length, received, content_type, filename, status, error, created_at, updated_at, expires_at";

/// Most parts one upload may have (each PATCH that stores bytes is one).
pub const MAX_PARTS: i64 = 10_000;
/// An assembly this long in `completing` is taken for dead (its process stopped) and may be
/// claimed again.
const STALE_COMPLETING: chrono::Duration = chrono::Duration::minutes(10);

impl UploadRow {
    pub fn out(&self) -> UploadOut {
        UploadOut {
            id: self.id.clone(),
            asset_id: self.asset_id.clone(),
            length: self.length,
            received: self.received,
            content_type: self.content_type.clone(),
            filename: self.filename.clone(),
            status: self.status.parse().unwrap_or(UploadStatus::Failed),
            error: self.error.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Every tus request but `OPTIONS` names the protocol version (the routes answer 412 otherwise).
pub fn version_ok(h: &HeaderMap) -> bool {
    header(h, "tus-resumable") == Some(VERSION)
}

/// `Upload-Metadata`: comma-separated `key base64(value)` pairs.
pub fn metadata(raw: Option<&str>) -> Result<Vec<(String, String)>> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(Vec::new());
    };
    if raw.len() > 4096 {
        return Err(Error::invalid(
            "invalid_metadata",
            "`Upload-Metadata` is over 4 KiB",
        ));
    }
    raw.split(',')
        .map(|pair| {
            let mut it = pair.trim().splitn(2, ' ');
            let key = it.next().unwrap_or_default();
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Error::invalid(
                    "invalid_metadata",
                    "`Upload-Metadata` has an empty or non-ASCII key",
                ));
            }
            let value = match it.next().map(str::trim).filter(|v| !v.is_empty()) {
                None => String::new(),
                Some(v) => B64
                    .decode(v)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        Error::invalid(
                            "invalid_metadata",
                            format!(
                                "`Upload-Metadata`: the value of `{key}` is not base64 of UTF-8"
                            ),
                        )
                    })?,
            };
            Ok((key.to_owned(), value))
        })
        .collect()
}

fn find<'a>(meta: &'a [(String, String)], keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| meta.iter().find(|(mk, _)| mk == k).map(|(_, v)| v.as_str()))
}

/// `POST /api/uploads`: a new upload of an asset's file. Metadata `asset_id` (required),
/// `filetype` (or `content_type`) and `filename`.
pub async fn create(state: &AppState, who: &Principal, h: &HeaderMap) -> Result<UploadRow> {
    if header(h, "upload-defer-length").is_some() {
        return Err(Error::invalid(
            "invalid_length",
            "deferred lengths are not supported: send `Upload-Length`",
        ));
    }
    let length: u64 = header(h, "upload-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            Error::invalid(
                "invalid_length",
                "send `Upload-Length`: the file's size in bytes",
            )
        })?;
    if length == 0 {
        return Err(Error::invalid(
            "invalid_length",
            "`Upload-Length` must be at least 1: an empty file is no asset",
        ));
    }
    let meta = metadata(header(h, "upload-metadata"))?;
    let asset_id = find(&meta, &["asset_id"])
        .ok_or_else(|| Error::invalid("invalid_metadata", "`Upload-Metadata` needs `asset_id`"))?;
    let asset_id = AssetId::try_from(asset_id.to_owned())
        .map_err(|e| Error::invalid("invalid_metadata", format!("`asset_id`: {e}")))?;
    let asset = super::load(state, who, &asset_id).await?;
    ensure_can_write(state, who, &asset.client_id).await?;
    let asset_type: AssetType = asset
        .type_
        .parse()
        .map_err(|e| Error::Internal(anyhow::Error::new(e)))?;
    let kind = upload::accept(
        state,
        asset_type,
        find(&meta, &["filetype", "content_type"]),
    )?;
    let name = upload::filename(find(&meta, &["filename", "name"]))?;
    let max = state.config.uploads.max_bytes(asset_type);
    if length > max {
        return Err(upload::too_large(max));
    }
    let now = state.clock.now();
    let id = UploadId::new(now);
    let expires = now
        + chrono::Duration::from_std(state.config.uploads.expiry)
            .unwrap_or(chrono::Duration::days(1));
    let length = i64::try_from(length).map_err(|e| Error::Internal(e.into()))?;
    with_db!(&state.db, pool => {
        sqlx::query(
            "INSERT INTO uploads (id, asset_id, client_id, created_by, length, received, content_type, filename, status, created_at, updated_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, 0, $6, $7, 'open', $8, $8, $9)",
        )
        .bind(id.as_str()).bind(asset_id.as_str()).bind(&asset.client_id).bind(who.user_id.as_str())
        .bind(length).bind(kind.mime).bind(&name).bind(now).bind(expires)
        .execute(pool).await?;
    });
    load(state, who, &id).await
}

/// An upload the caller may write to (404 otherwise, as for its asset).
pub async fn load(state: &AppState, who: &Principal, id: &UploadId) -> Result<UploadRow> {
    let row: Option<UploadRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM uploads WHERE id = $1")).bind(id.as_str()).fetch_optional(pool).await?
    });
    let row = row.ok_or_else(|| Error::not_found("upload"))?;
    ensure_can_write(state, who, &row.client_id)
        .await
        .map_err(|_| Error::not_found("upload"))?;
    Ok(row)
}

/// An open upload past its expiry is gone (410); a failed one too.
fn ensure_open(state: &AppState, row: &UploadRow) -> Result<()> {
    match row.status.as_str() {
        "open" if row.expires_at > state.clock.now() => Ok(()),
        "open" => Err(Error::Gone {
            code: "upload_expired",
            detail: "this upload expired; start a new one".into(),
        }),
        "completed" => Err(Error::conflict(
            "upload_completed",
            "this upload is complete",
        )),
        "completing" if row.updated_at > state.clock.now() - STALE_COMPLETING => Err(Error::conflict(
            "upload_completing",
            "every byte has arrived and the file is being assembled; GET the upload or its asset to see when it is done",
        )),
        "completing" => Ok(()),
        _ => Err(Error::Gone {
            code: "upload_failed",
            detail: format!(
                "this upload failed: {}",
                row.error.as_deref().unwrap_or("unknown error")
            ),
        }),
    }
}

/// A digest named by `Upload-Checksum`.
enum Expected {
    Sha1(Vec<u8>),
    Sha256(Vec<u8>),
}

fn expected_checksum(h: &HeaderMap) -> Result<Option<Expected>> {
    let Some(v) = header(h, "upload-checksum") else {
        return Ok(None);
    };
    let (alg, sum) = v.split_once(' ').ok_or_else(|| {
        Error::invalid(
            "invalid_checksum",
            "`Upload-Checksum` is `<algorithm> <base64 digest>`",
        )
    })?;
    let sum = B64.decode(sum.trim()).map_err(|_| {
        Error::invalid(
            "invalid_checksum",
            "`Upload-Checksum`'s digest is not base64",
        )
    })?;
    match alg {
        "sha1" if sum.len() == 20 => Ok(Some(Expected::Sha1(sum))),
        "sha256" if sum.len() == 32 => Ok(Some(Expected::Sha256(sum))),
        "sha1" | "sha256" => Err(Error::invalid(
            "invalid_checksum",
            "`Upload-Checksum`'s digest has the wrong length",
        )),
        other => Err(Error::invalid(
            "unsupported_checksum",
            format!("checksum algorithm `{other}` is not supported; use {CHECKSUMS}"),
        )),
    }
}

/// A body that ends (instead of failing) when the client stops sending, and says so: a cut
/// PATCH keeps what arrived.
struct KeepWhatArrived {
    inner: ByteStream,
    cut: Arc<AtomicBool>,
    sha1: Option<Arc<Mutex<sha1::Sha1>>>,
    sha256: Option<Arc<Mutex<sha2::Sha256>>>,
}

impl Stream for KeepWhatArrived {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Err(e))) if upload::body_cut(&e) => {
                self.cut.store(true, Ordering::SeqCst);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(b))) => {
                if let Some(h) = &self.sha1 {
                    h.lock().unwrap_or_else(|p| p.into_inner()).update(&b);
                }
                if let Some(h) = &self.sha256 {
                    h.lock().unwrap_or_else(|p| p.into_inner()).update(&b);
                }
                Poll::Ready(Some(Ok(b)))
            }
            other => other,
        }
    }
}

/// What a PATCH achieved.
pub struct Patched {
    pub offset: i64,
    pub expires_at: DateTime<Utc>,
    /// The asset, when this PATCH completed the upload.
    pub asset: Option<AssetOut>,
}

/// `PATCH /api/uploads/{id}`: bytes from `Upload-Offset` on.
pub async fn patch(
    state: &AppState,
    who: &Principal,
    id: &UploadId,
    h: &HeaderMap,
    body: axum::body::Body,
) -> Result<Patched> {
    let checked = async {
        if sniff::declared(header(h, "content-type")).as_deref() != Some(PATCH_TYPE) {
            return Err(Error::UnsupportedMedia {
                code: "unsupported_type",
                detail: format!("a PATCH body is `{PATCH_TYPE}`"),
            });
        }
        let offset: i64 = header(h, "upload-offset")
            .and_then(|v| v.parse().ok())
            .filter(|o| *o >= 0)
            .ok_or_else(|| {
                Error::invalid(
                    "invalid_offset",
                    "send `Upload-Offset`: where these bytes start",
                )
            })?;
        let expected = expected_checksum(h)?;
        let row = load(state, who, id).await?;
        ensure_open(state, &row)?;
        if offset != row.received {
            return Err(Error::conflict(
                "offset_mismatch",
                format!(
                    "this upload has {} bytes; send from there (HEAD tells)",
                    row.received
                ),
            ));
        }
        let parts: i64 = with_db!(&state.db, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM upload_parts WHERE upload_id = $1").bind(id.as_str()).fetch_one(pool).await?
        });
        if parts >= MAX_PARTS && row.received < row.length {
            return Err(Error::invalid(
                "too_many_parts",
                format!("this upload has {MAX_PARTS} parts already: send the rest in larger PATCHes, or start again"),
            ));
        }
        Ok((offset, expected, row))
    }
    .await;
    let (offset, expected, row) = match checked {
        Ok(c) => c,
        Err(e) => {
            upload::drain(body).await;
            return Err(e);
        }
    };
    if row.received == row.length {
        // Every byte arrived before and the assembly did not finish (it failed, or its process
        // stopped): this PATCH finishes it.
        upload::drain(body).await;
        let asset = complete(state, id, &row).await?;
        return Ok(Patched {
            offset: row.length,
            expires_at: row.expires_at,
            asset: Some(asset),
        });
    }
    let kind = sniff::known(&row.content_type).ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "upload of unknown type {}",
            row.content_type
        ))
    })?;
    let remaining = u64::try_from(row.length - row.received).unwrap_or(0);
    let cut = Arc::new(AtomicBool::new(false));
    let sha1 = matches!(expected, Some(Expected::Sha1(_)))
        .then(|| Arc::new(Mutex::new(sha1::Sha1::default())));
    let sha256 = matches!(expected, Some(Expected::Sha256(_)))
        .then(|| Arc::new(Mutex::new(sha2::Sha256::default())));
    let mut body: ByteStream = Box::pin(KeepWhatArrived {
        inner: upload::request_body(body, state.config.uploads.idle),
        cut: cut.clone(),
        sha1: sha1.clone(),
        sha256: sha256.clone(),
    });
    if offset == 0 {
        body = sniff::inspect(body, kind, Scope::Start);
    }
    // The suffix is a fresh ULID: unique, and it dates the part for the orphan sweep.
    let made = u64::try_from(state.clock.now().timestamp_millis()).unwrap_or(0);
    let part = format!(
        "{PARTS_PREFIX}{id}/{offset:020}-{}",
        crate::ids::new_body(made)
    );
    let written = match state
        .blobs
        .put_stream(&part, body, "application/octet-stream", remaining)
        .await
    {
        Ok(w) => w,
        Err(StorageError::Io(e)) if sniff::refused(&e).is_some() => {
            let err = upload::write_error(StorageError::Io(e), remaining);
            fail(state, id, &err.to_string()).await;
            return Err(err);
        }
        Err(e) => return Err(upload::write_error(e, remaining)),
    };
    if let Some(expected) = &expected {
        let got = match expected {
            Expected::Sha1(_) => sha1.map(|h| {
                h.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .finalize()
                    .to_vec()
            }),
            Expected::Sha256(_) => sha256.map(|h| {
                h.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .finalize()
                    .to_vec()
            }),
        };
        let want = match expected {
            Expected::Sha1(s) | Expected::Sha256(s) => s,
        };
        if cut.load(Ordering::SeqCst) || got.as_deref() != Some(want.as_slice()) {
            upload::remove_blob(state, &part).await;
            if cut.load(Ordering::SeqCst) {
                return Err(Error::invalid(
                    "upload_interrupted",
                    "the body ended early; a checksummed part is kept only whole",
                ));
            }
            return Err(Error::ChecksumMismatch(
                "the bytes do not match `Upload-Checksum`; nothing of this PATCH was kept".into(),
            ));
        }
    }
    let n = i64::try_from(written.size).map_err(|e| Error::Internal(e.into()))?;
    if n == 0 {
        return Ok(Patched {
            offset,
            expires_at: row.expires_at,
            asset: None,
        });
    }
    let now = state.clock.now();
    let expires = now
        + chrono::Duration::from_std(state.config.uploads.expiry)
            .unwrap_or(chrono::Duration::days(1));
    let landed: bool = with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        let done = sqlx::query("UPDATE uploads SET received = received + $3, updated_at = $4, expires_at = $5 WHERE id = $1 AND received = $2 AND status = 'open' AND expires_at > $4")
            .bind(id.as_str()).bind(offset).bind(n).bind(now).bind(expires)
            .execute(&mut *tx).await?.rows_affected() == 1;
        if done {
            sqlx::query("INSERT INTO upload_parts (upload_id, start_offset, size, storage_key) VALUES ($1, $2, $3, $4)")
                .bind(id.as_str()).bind(offset).bind(n).bind(&part).execute(&mut *tx).await?;
            tx.commit().await?;
        }
        done
    });
    if !landed {
        upload::remove_blob(state, &part).await;
        return Err(Error::conflict(
            "offset_mismatch",
            "another request wrote at this offset first; HEAD tells where to go on",
        ));
    }
    let received = offset + n;
    let asset = if received == row.length {
        Some(complete(state, id, &row).await?)
    } else {
        None
    };
    Ok(Patched {
        offset: received,
        expires_at: expires,
        asset,
    })
}

async fn part_keys(state: &AppState, id: &UploadId) -> Result<Vec<String>> {
    Ok(with_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT storage_key FROM upload_parts WHERE upload_id = $1 ORDER BY start_offset")
            .bind(id.as_str()).fetch_all(pool).await?
    }))
}

/// Marks an upload failed and removes its parts.
async fn fail(state: &AppState, id: &UploadId, why: &str) {
    let now = state.clock.now();
    let r: Result<()> = async {
        with_db!(&state.db, pool => {
            sqlx::query("UPDATE uploads SET status = 'failed', error = $2, updated_at = $3 WHERE id = $1")
                .bind(id.as_str()).bind(why).bind(now).execute(pool).await?;
        });
        Ok(())
    }
    .await;
    if let Err(e) = r {
        tracing::warn!(upload = %id, error = %e, "marking an upload failed");
    }
    remove_parts(state, id).await;
}

/// Removes an upload's parts (blobs, then rows).
pub(super) async fn remove_parts(state: &AppState, id: &UploadId) {
    let keys = part_keys(state, id).await.unwrap_or_default();
    for k in &keys {
        upload::remove_blob(state, k).await;
    }
    let r: Result<()> = async {
        with_db!(&state.db, pool => {
            sqlx::query("DELETE FROM upload_parts WHERE upload_id = $1").bind(id.as_str()).execute(pool).await?;
        });
        Ok(())
    }
    .await;
    if let Err(e) = r {
        tracing::warn!(upload = %id, error = %e, "removing an upload's part rows");
    }
}

/// The last byte arrived: claim the assembly (one at a time: `open` → `completing`, or a stale
/// `completing`), then run it apart from the request, so a client that goes away mid-assembly
/// does not stop it. A failure that is not the content's puts the upload back to `open`, and the
/// next PATCH (or HEAD-then-PATCH of a tus client resuming) runs it again.
async fn complete(state: &AppState, id: &UploadId, row: &UploadRow) -> Result<AssetOut> {
    let now = state.clock.now();
    let claimed = with_db!(&state.db, pool => {
        sqlx::query("UPDATE uploads SET status = 'completing', updated_at = $2 WHERE id = $1 AND received = length
                     AND (status = 'open' OR (status = 'completing' AND updated_at < $3))")
            .bind(id.as_str()).bind(now).bind(now - STALE_COMPLETING)
            .execute(pool).await?.rows_affected() == 1
    });
    if !claimed {
        return Err(Error::conflict(
            "upload_completing",
            "every byte has arrived and the file is being assembled",
        ));
    }
    let (st, id2, row2) = (state.clone(), id.clone(), row.clone());
    let task = tokio::spawn(async move {
        let out = assemble(&st, &id2, &row2).await;
        if let Err(e) = &out {
            if !matches!(e, Error::UnsupportedMedia { .. }) {
                reopen(&st, &id2).await;
            }
        }
        out
    });
    task.await
        .map_err(|e| Error::Internal(anyhow::anyhow!("the assembly stopped: {e}")))?
}

/// An assembly that failed for a reason other than the content: back to `open` for a retry.
async fn reopen(state: &AppState, id: &UploadId) {
    let now = state.clock.now();
    let r: Result<()> = async {
        with_db!(&state.db, pool => {
            sqlx::query("UPDATE uploads SET status = 'open', updated_at = $2 WHERE id = $1 AND status = 'completing'")
                .bind(id.as_str()).bind(now).execute(pool).await?;
        });
        Ok(())
    }
    .await;
    if let Err(e) = r {
        tracing::warn!(upload = %id, error = %e, "reopening an upload whose assembly failed");
    }
}

async fn assemble(state: &AppState, id: &UploadId, row: &UploadRow) -> Result<AssetOut> {
    let asset = super::load_any(state, &row.asset_id).await?;
    let kind = sniff::known(&row.content_type).ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "upload of unknown type {}",
            row.content_type
        ))
    })?;
    let keys = part_keys(state, id).await?;
    let blobs = state.blobs.clone();
    let joined: ByteStream = Box::pin(
        futures_util::stream::iter(keys)
            .then(move |k| {
                let blobs = blobs.clone();
                async move {
                    blobs
                        .get_stream(&k, None)
                        .await
                        .map(|r| r.body)
                        .map_err(|e| std::io::Error::other(e.to_string()))
                }
            })
            .try_flatten(),
    );
    let body = sniff::inspect(joined, kind, Scope::Whole);
    let key = blob_key(&row.client_id, &row.asset_id, id);
    let length = u64::try_from(row.length).unwrap_or(0);
    let written = match state.blobs.put_stream(&key, body, kind.mime, length).await {
        Ok(w) if w.size == length => w,
        Ok(w) => {
            upload::remove_blob(state, &key).await;
            let why = format!(
                "the parts add up to {} bytes, not the {length} declared",
                w.size
            );
            fail(state, id, &why).await;
            return Err(Error::Internal(anyhow::anyhow!(why)));
        }
        Err(e) => {
            let err = upload::write_error(e, length);
            if matches!(err, Error::UnsupportedMedia { .. }) {
                fail(state, id, &err.to_string()).await;
            }
            return Err(err);
        }
    };
    let out = upload::commit(
        state,
        &asset,
        &key,
        kind,
        row.filename.as_deref(),
        &written,
        Some(id),
    )
    .await?;
    remove_parts(state, id).await;
    Ok(out)
}

/// `DELETE /api/uploads/{id}` (termination): the upload and its parts go.
pub async fn terminate(state: &AppState, who: &Principal, id: &UploadId) -> Result<()> {
    let row = load(state, who, id).await?;
    if row.status == "completed" {
        return Err(Error::conflict(
            "upload_completed",
            "this upload is complete: delete the asset's file through the asset",
        ));
    }
    // The row goes first (unless it is being assembled), then its parts: nothing can land on
    // a row that is gone.
    let keys = part_keys(state, id).await?;
    let deleted = with_db!(&state.db, pool => {
        sqlx::query("DELETE FROM uploads WHERE id = $1 AND status <> 'completing' AND status <> 'completed'")
            .bind(id.as_str()).execute(pool).await?.rows_affected() == 1
    });
    if !deleted {
        return Err(Error::conflict(
            "upload_completing",
            "the file is being assembled; delete the asset's file through the asset once it is done",
        ));
    }
    for k in &keys {
        upload::remove_blob(state, k).await;
    }
    Ok(())
}

/// `HEAD`'s answer: where to go on.
pub async fn head(state: &AppState, who: &Principal, id: &UploadId) -> Result<UploadRow> {
    let row = load(state, who, id).await?;
    if row.status != "completed" {
        ensure_open(state, &row)?;
    }
    Ok(row)
}

/// `Upload-Expires`' format (RFC 9110's HTTP-date).
pub fn http_date(t: DateTime<Utc>) -> String {
    httpdate::fmt_http_date(t.into())
}
