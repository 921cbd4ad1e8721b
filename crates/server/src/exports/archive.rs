//! Writing an export's zip as a stream, straight into the blob store.
//!
//! A zip writer (`async_zip`, stored entries with data descriptors, Zip64 when sizes need it)
//! writes into one end of an in-memory pipe; the other end is the body of a streamed `put`. Both
//! run together, so at most the pipe's buffer and one chunk per side are in memory. The body ends
//! with a check that the writer finished: if it failed half-way, the `put` fails instead of
//! storing a truncated archive.

use super::Approved;
use crate::queue::worker::JobContext;
use crate::storage::{BlobInfo, BlobStore, ByteStream, StorageError, Written};
use async_zip::tokio::write::ZipFileWriter;
use async_zip::{Compression, ZipDateTime, ZipDateTimeBuilder, ZipEntryBuilder};
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt as _;
use tokio_util::compat::FuturesAsyncWriteCompatExt as _;

/// The pipe between the zip writer and the upload.
const PIPE_BYTES: usize = 256 * 1024;
/// Progress is written at most this often (and at least this often while bytes move).
const REPORT_EVERY: Duration = Duration::from_secs(2);
/// The manifest's format name, for whoever reads it later.
pub const MANIFEST_FORMAT: &str = "airwave-export/1";

/// What the archive says about itself.
pub struct Header {
    pub export_id: String,
    pub campaign_id: String,
    pub campaign_name: String,
    pub client_id: String,
    pub created_at: DateTime<Utc>,
}

/// A stored archive.
#[derive(Debug)]
pub struct Built {
    pub written: Written,
    pub files: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the render of {execution} is missing from storage (`{key}`)")]
    Missing { execution: String, key: String },
    #[error("the approved renders come to more than the {max} bytes one export may hold (AIRWAVE_EXPORT_MAX_GIB)")]
    TooLarge { max: u64 },
    #[error("reading a render: {0}")]
    Storage(#[from] StorageError),
    #[error("writing the archive: {0}")]
    Zip(#[from] async_zip::error::ZipError),
    #[error("writing the archive: {0}")]
    Io(#[from] std::io::Error),
}

impl ArchiveError {
    fn is_broken_pipe(&self) -> bool {
        match self {
            Self::Io(e) => e.kind() == std::io::ErrorKind::BrokenPipe,
            Self::Zip(async_zip::error::ZipError::UpstreamReadError(e)) => {
                e.kind() == std::io::ErrorKind::BrokenPipe
            }
            _ => false,
        }
    }
}

/// The name a render has inside the archive: `renders/<execution>.<ext>`.
fn entry_path(r: &Approved) -> String {
    let ext = r
        .output_key
        .rsplit_once('.')
        .map(|(_, e)| e)
        .filter(|e| !e.is_empty() && e.len() <= 8 && e.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or("bin");
    format!("renders/{}.{ext}", r.execution_id)
}

fn zip_time(t: DateTime<Utc>) -> ZipDateTime {
    ZipDateTimeBuilder::new()
        .year(t.year())
        .month(t.month())
        .day(t.day())
        .hour(t.hour())
        .minute(t.minute())
        .second(t.second())
        .build()
}

/// Packages `renders` and their manifest into one zip at `key` (at most `max_bytes`).
pub async fn build<F, Fut>(
    blobs: &dyn BlobStore,
    key: &str,
    header: &Header,
    renders: &[Approved],
    max_bytes: u64,
    report: &F,
    ctx: Option<&JobContext>,
) -> Result<Built, ArchiveError>
where
    F: Fn(i32) -> Fut + Sync,
    Fut: Future<Output = ()> + Send,
{
    // Every render is there, and together they fit, before a byte is written.
    let mut sizes = Vec::with_capacity(renders.len());
    for r in renders {
        let info = blobs.head(&r.output_key).await.map_err(|e| match e {
            StorageError::NotFound(_) => ArchiveError::Missing {
                execution: r.execution_id.clone(),
                key: r.output_key.clone(),
            },
            e => e.into(),
        })?;
        sizes.push(info);
    }
    let total: u64 = sizes.iter().map(|i| i.size).sum();
    if total > max_bytes {
        return Err(ArchiveError::TooLarge { max: max_bytes });
    }

    let (pipe_in, pipe_out) = tokio::io::duplex(PIPE_BYTES);
    let (finished, finished_rx) = tokio::sync::oneshot::channel::<()>();
    let tail = futures_util::stream::once(async move {
        match finished_rx.await {
            Ok(()) => None,
            Err(_) => Some(Err(std::io::Error::other("the archive was not finished"))),
        }
    })
    .filter_map(std::future::ready);
    let body: ByteStream = tokio_util::io::ReaderStream::with_capacity(pipe_out, 64 * 1024)
        .chain(tail)
        .boxed();

    let writing = write(
        blobs, pipe_in, header, renders, &sizes, total, report, ctx, finished,
    );
    let storing = blobs.put_stream(key, body, "application/zip", max_bytes);
    let (wrote, stored) = tokio::join!(writing, storing);
    match (wrote, stored) {
        (Ok(files), Ok(written)) => Ok(Built { written, files }),
        // The upload stopped reading first: its error is the cause.
        (Err(w), Err(s)) if w.is_broken_pipe() => Err(stored_error(s, max_bytes)),
        (Err(w), _) => Err(w),
        (Ok(_), Err(s)) => Err(stored_error(s, max_bytes)),
    }
}

fn stored_error(e: StorageError, max: u64) -> ArchiveError {
    match e {
        StorageError::Io(io) if io.kind() == std::io::ErrorKind::FileTooLarge => {
            ArchiveError::TooLarge { max }
        }
        e => e.into(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn write<F, Fut>(
    blobs: &dyn BlobStore,
    pipe: tokio::io::DuplexStream,
    header: &Header,
    renders: &[Approved],
    sizes: &[BlobInfo],
    total: u64,
    report: &F,
    ctx: Option<&JobContext>,
    finished: tokio::sync::oneshot::Sender<()>,
) -> Result<usize, ArchiveError>
where
    F: Fn(i32) -> Fut + Sync,
    Fut: Future<Output = ()> + Send,
{
    let mut zip = ZipFileWriter::with_tokio(pipe);
    let mut files: Vec<Value> = Vec::with_capacity(renders.len());
    let (mut moved, mut shown, mut last) = (0u64, 1i32, Instant::now());
    for (r, info) in renders.iter().zip(sizes) {
        let path = entry_path(r);
        let reading = blobs.get_stream(&r.output_key, None).await?;
        let entry = ZipEntryBuilder::new(path.clone().into(), Compression::Stored)
            .last_modification_date(zip_time(r.rendered_at));
        let mut out = zip.write_entry_stream(entry).await?.compat_write();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = reading.body;
        while let Some(chunk) = body.try_next().await? {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            out.write_all(&chunk).await?;
            moved += chunk.len() as u64;
            let percent = 1 + i32::try_from(moved.saturating_mul(98) / total.max(1)).unwrap_or(98);
            if percent != shown && last.elapsed() >= REPORT_EVERY {
                (shown, last) = (percent, Instant::now());
                report(percent).await;
                if let Some(ctx) = ctx {
                    let _ = ctx.progress(percent, Some(&path)).await;
                }
            }
        }
        out.into_inner().close().await?;
        files.push(json!({
            "path": path,
            "execution_id": r.execution_id,
            "matrix_id": r.matrix_id,
            "content_type": info.content_type,
            "size": size,
            "sha256": hex::encode(hasher.finalize()),
            "params": r.params.0,
            "rendered_at": r.rendered_at,
            "approval": {
                "id": r.approval_id,
                "reviewer_email": r.reviewer_email,
                "comment": r.comment,
                "decided_at": r.decided_at,
            },
        }));
    }
    let manifest = json!({
        "format": MANIFEST_FORMAT,
        "export_id": header.export_id,
        "created_at": header.created_at,
        "campaign": {
            "id": header.campaign_id,
            "name": header.campaign_name,
            "client_id": header.client_id,
        },
        "files": files,
    });
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
    let entry = ZipEntryBuilder::new("manifest.json".into(), Compression::Stored)
        .last_modification_date(zip_time(header.created_at));
    zip.write_entry_whole(entry, &bytes).await?;
    let mut pipe = zip.close().await?.into_inner();
    pipe.shutdown().await?;
    let _ = finished.send(());
    Ok(renders.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approved(key: &str) -> Approved {
        Approved {
            execution_id: "exe_1".into(),
            matrix_id: "mtx_1".into(),
            output_key: key.into(),
            params: sqlx::types::Json(json!({})),
            rendered_at: Utc::now(),
            approval_id: "apr_1".into(),
            reviewer_email: None,
            comment: None,
            decided_at: None,
        }
    }

    #[test]
    fn entries_are_named_by_execution_with_a_plain_extension() {
        assert_eq!(
            entry_path(&approved("renders/cli_1/exe_1.mp4")),
            "renders/exe_1.mp4"
        );
        assert_eq!(
            entry_path(&approved("renders/cli_1/exe_1")),
            "renders/exe_1.bin"
        );
        assert_eq!(
            entry_path(&approved("renders/cli_1/exe_1.m/../p")),
            "renders/exe_1.bin"
        );
    }
}
