//! Blobs in a folder (the embedded default): `ROOT/<key>`, streamed to a temp file beside it,
//! synced and renamed into place, so a reader never sees half a blob. The folder keeps no
//! metadata: a blob's content type comes from its key's extension (the server makes the keys).

use super::{
    check_key, check_prefix, BlobInfo, BlobStore, ByteRange, ByteStream, Listed, Reading,
    StorageError, Tally, Written,
};
use async_trait::async_trait;
use futures_util::{StreamExt as _, TryStreamExt as _};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

/// Temp files of unfinished writes end with this (never a valid key's last segment, which
/// cannot contain `~`).
const PARTIAL: &str = "~partial";

pub struct FolderStore {
    root: PathBuf,
}

impl FolderStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn path_of(&self, key: &str) -> Result<PathBuf, StorageError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    async fn write_from(
        &self,
        path: &Path,
        mut body: ByteStream,
        max_bytes: u64,
    ) -> Result<Written, StorageError> {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let tmp = PathBuf::from(format!(
            "{}.{:016x}{PARTIAL}",
            path.display(),
            rand::random::<u64>()
        ));
        // Removed on every way out but success — an error, or the write being dropped (a client
        // that went away mid-upload cancels the request's future).
        let guard = PartialFile(Some(tmp.clone()));
        let mut file = tokio::fs::File::create(&tmp).await?;
        let mut tally = Tally::new(max_bytes);
        while let Some(chunk) = body.try_next().await? {
            tally.add(&chunk)?;
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&tmp, path).await?;
        guard.disarm();
        // The rename is durable once the directory is.
        if let Some(dir) = path.parent() {
            tokio::fs::File::open(dir).await?.sync_all().await?;
        }
        Ok(tally.finish())
    }
}

/// A temp file removed when dropped, unless disarmed.
struct PartialFile(Option<PathBuf>);

impl PartialFile {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn not_found(key: &str) -> impl Fn(std::io::Error) -> StorageError + '_ {
    move |e| {
        // `a.png/b` under a file `a.png` is as absent as a missing file.
        if matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
        ) {
            StorageError::NotFound(key.into())
        } else {
            StorageError::Io(e)
        }
    }
}

/// The content type a folder blob is served with: from its extension (the folder keeps no
/// metadata; keys the server makes carry the right one).
fn content_type_of(key: &str) -> Option<String> {
    let ext = key.rsplit_once('.')?.1.to_ascii_lowercase();
    let ct = match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "pdf" => "application/pdf",
        "json" => "application/json",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        _ => return None,
    };
    Some(ct.to_owned())
}

#[async_trait]
impl BlobStore for FolderStore {
    fn backend(&self) -> &'static str {
        "fs"
    }

    async fn put_stream(
        &self,
        key: &str,
        body: ByteStream,
        _content_type: &str,
        max_bytes: u64,
    ) -> Result<Written, StorageError> {
        let path = self.path_of(key)?;
        self.write_from(&path, body, max_bytes).await
    }

    async fn get_stream(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Reading, StorageError> {
        let path = self.path_of(key)?;
        let mut file = tokio::fs::File::open(&path).await.map_err(not_found(key))?;
        let meta = file.metadata().await?;
        if meta.is_dir() {
            // A directory (a prefix of other keys) is not a blob.
            return Err(StorageError::NotFound(key.into()));
        }
        let size = meta.len();
        let info = BlobInfo {
            size,
            content_type: content_type_of(key),
        };
        let (range, len) = match range {
            Some(r) => {
                let (first, last) = r.within(size)?;
                file.seek(std::io::SeekFrom::Start(first)).await?;
                (Some((first, last)), last - first + 1)
            }
            None => (None, size),
        };
        let body = tokio_util::io::ReaderStream::with_capacity(file.take(len), 64 * 1024).boxed();
        Ok(Reading { info, range, body })
    }

    async fn head(&self, key: &str) -> Result<BlobInfo, StorageError> {
        let path = self.path_of(key)?;
        let meta = tokio::fs::metadata(&path).await.map_err(not_found(key))?;
        if meta.is_dir() {
            return Err(StorageError::NotFound(key.into()));
        }
        Ok(BlobInfo {
            size: meta.len(),
            content_type: content_type_of(key),
        })
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let source = self.path_of(from)?;
        let target = self.path_of(to)?;
        let file = tokio::fs::File::open(&source)
            .await
            .map_err(not_found(from))?;
        let body = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024).boxed();
        self.write_from(&target, body, u64::MAX).await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.path_of(key)?).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => Ok(other?),
        }
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Listed>, StorageError> {
        check_prefix(prefix)?;
        // Walk the tree in key order (byte order of the relative paths, as S3 lists).
        let mut found = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            while let Some(entry) = entries.next_entry().await? {
                let kind = entry.file_type().await?;
                let path = entry.path();
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let Some(key) = rel
                    .to_str()
                    .map(|k| k.replace(std::path::MAIN_SEPARATOR, "/"))
                else {
                    continue;
                };
                if kind.is_dir() {
                    // Only descend where keys with the prefix can be.
                    let dir_key = format!("{key}/");
                    if dir_key.starts_with(prefix) || prefix.starts_with(&dir_key) {
                        stack.push(path);
                    }
                } else if kind.is_file()
                    && key.starts_with(prefix)
                    && check_key(&key).is_ok()
                    && after.is_none_or(|a| key.as_str() > a)
                {
                    // A blob deleted during the walk is simply not listed.
                    match entry.metadata().await {
                        Ok(meta) => found.push(Listed {
                            key,
                            size: meta.len(),
                        }),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        found.truncate(limit);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_cannot_escape_the_root_and_partial_writes_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FolderStore::new(dir.path().to_path_buf());
        for bad in [
            "../x",
            "/etc/passwd",
            "a//b",
            "a/./b",
            "a\\b",
            "",
            "a/b~partial",
        ] {
            assert!(
                matches!(
                    store.put(bad, vec![], "x").await,
                    Err(StorageError::InvalidKey(_))
                ),
                "{bad}"
            );
        }
        // A body that fails half way: no blob, no temp file.
        let body = futures_util::stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"half")),
            Err(std::io::Error::other("the client went away")),
        ])
        .boxed();
        assert!(store
            .put_stream("a/b.bin", body, "x", 1 << 20)
            .await
            .is_err());
        assert!(store.list("", None, 10).await.unwrap().is_empty());
        let mut entries = std::fs::read_dir(dir.path().join("a")).unwrap();
        assert!(entries.next().is_none(), "no temp file is left");
    }
}
