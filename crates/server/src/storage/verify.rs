//! `airwave-server storage verify-backup`: the store's bucket and the backup bucket compared key by
//! key (keys under `tmp/` are not copied and not compared). Both listings are read whole
//! (`ListObjectsV2`, 1,000 keys a page); for each key in both, the sizes are compared, then the
//! contents: equal ETags are taken as equal contents (an ETag is the MD5 of the object, or of its
//! parts — equal ETags with equal part counts mean equal bytes); different ETags (a copy written
//! with other part boundaries has another) are settled by streaming both objects through sha256.
//! `deep` hashes every object whatever its ETag says. Memory grows with the number of keys (about
//! 200 bytes each), not with their sizes.

use super::s3::S3Store;
use super::{BlobStore as _, StorageError};
use aws_sdk_s3::error::DisplayErrorContext;
use futures_util::TryStreamExt as _;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

/// Keys listed per difference in the report (the counts are whole).
pub const LISTED: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Side {
    pub objects: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub store: Side,
    pub backup: Side,
    /// In the store, not in the backup.
    pub missing: Vec<String>,
    pub size_differs: Vec<String>,
    pub content_differs: Vec<String>,
    /// In the backup only: removed from the store, kept for the keep-deleted period.
    pub only_in_backup: Vec<String>,
    /// Keys whose contents were compared by ETag, and by sha256 of both.
    pub by_etag: u64,
    pub by_sha256: u64,
}

impl Report {
    /// Whether every key of the store has an equal copy.
    pub fn ok(&self) -> bool {
        self.missing.is_empty() && self.size_differs.is_empty() && self.content_differs.is_empty()
    }

    /// The report as printed, one `name: value` line each.
    pub fn lines(&self) -> Vec<String> {
        let keys = |v: &[String]| {
            if v.is_empty() {
                String::new()
            } else {
                let mut shown: Vec<&str> = v.iter().take(LISTED).map(String::as_str).collect();
                if v.len() > LISTED {
                    shown.push("…");
                }
                format!(" ({})", shown.join(", "))
            }
        };
        vec![
            format!(
                "store: {} objects, {} bytes",
                self.store.objects, self.store.bytes
            ),
            format!(
                "backup: {} objects, {} bytes",
                self.backup.objects, self.backup.bytes
            ),
            format!("missing in backup: {}{}", self.missing.len(), keys(&self.missing)),
            format!(
                "size differs: {}{}",
                self.size_differs.len(),
                keys(&self.size_differs)
            ),
            format!(
                "content differs: {}{}",
                self.content_differs.len(),
                keys(&self.content_differs)
            ),
            format!(
                "only in backup: {}{} (removed from the store; kept for AIRWAVE_BACKUP_BUCKET_KEEP_DELETED_HOURS)",
                self.only_in_backup.len(),
                keys(&self.only_in_backup)
            ),
            format!(
                "compared: {} by ETag, {} by sha256",
                self.by_etag, self.by_sha256
            ),
        ]
    }
}

/// Every key of a bucket but `tmp/`'s: size and ETag.
async fn listing(s: &S3Store) -> Result<BTreeMap<String, (u64, String)>, StorageError> {
    let mut out = BTreeMap::new();
    let mut pages = s
        .client()
        .list_objects_v2()
        .bucket(s.bucket())
        .max_keys(1000)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            StorageError::Backend(format!(
                "listing bucket {}: {}",
                s.bucket(),
                DisplayErrorContext(&e)
            ))
        })?;
        for o in page.contents() {
            let Some(key) = o.key() else { continue };
            if key.starts_with(super::mirror::SKIPPED_PREFIX) {
                continue;
            }
            let size = u64::try_from(o.size().unwrap_or(0)).unwrap_or(0);
            let etag = o.e_tag().unwrap_or_default().trim_matches('"').to_owned();
            out.insert(key.to_owned(), (size, etag));
        }
    }
    Ok(out)
}

async fn sha256_of(s: &S3Store, key: &str) -> Result<[u8; 32], StorageError> {
    let mut body = s.get_stream(key, None).await?.body;
    let mut h = Sha256::new();
    while let Some(chunk) = body.try_next().await? {
        h.update(&chunk);
    }
    Ok(h.finalize().into())
}

pub async fn verify(store: &S3Store, backup: &S3Store, deep: bool) -> Result<Report, StorageError> {
    let ours = listing(store).await?;
    let theirs = listing(backup).await?;
    let mut r = Report {
        store: Side {
            objects: ours.len() as u64,
            bytes: ours.values().map(|v| v.0).sum(),
        },
        backup: Side {
            objects: theirs.len() as u64,
            bytes: theirs.values().map(|v| v.0).sum(),
        },
        ..Report::default()
    };
    for (key, (size, etag)) in &ours {
        let Some((their_size, their_etag)) = theirs.get(key) else {
            r.missing.push(key.clone());
            continue;
        };
        if size != their_size {
            r.size_differs.push(key.clone());
            continue;
        }
        if !deep && !etag.is_empty() && etag == their_etag {
            r.by_etag += 1;
            continue;
        }
        r.by_sha256 += 1;
        match (sha256_of(store, key).await, sha256_of(backup, key).await) {
            (Ok(a), Ok(b)) if a != b => r.content_differs.push(key.clone()),
            (Ok(_), Ok(_)) => {}
            // Removed while we looked: its removal job has it.
            (Err(StorageError::NotFound(_)), _) => {}
            (_, Err(StorageError::NotFound(_))) => r.missing.push(key.clone()),
            (Err(e), _) | (_, Err(e)) => return Err(e),
        }
    }
    r.only_in_backup = theirs
        .keys()
        .filter(|k| !ours.contains_key(*k))
        .cloned()
        .collect();
    Ok(r)
}

/// Copies what the report found missing or different from the store to the backup bucket (the
/// `--copy-missing` of `verify-backup`); how many were copied.
pub async fn copy_missing(
    store: &S3Store,
    backup: &S3Store,
    report: &Report,
) -> Result<u64, StorageError> {
    let mut copied = 0;
    for key in report
        .missing
        .iter()
        .chain(&report.size_differs)
        .chain(&report.content_differs)
    {
        if super::mirror::copy_key(store, backup, key).await? {
            copied += 1;
        }
    }
    Ok(copied)
}
