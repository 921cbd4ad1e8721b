//! Blob storage: the `BlobStore` seam. The embedded default keeps blobs in a folder of the data
//! dir (`fs.rs`); the storage issue adds S3 behind the same trait. Keys are relative paths
//! (`renders/cli_…/exe_….png`), checked here so no backend can be led outside its root.

pub mod fs;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid key `{0}`")]
    InvalidKey(String),
    #[error("no blob at `{0}`")]
    NotFound(String),
    #[error("storage failed: {0}")]
    Io(#[from] std::io::Error),
}

#[async_trait]
pub trait BlobStore: Send + Sync {
    /// `fs` or `s3`.
    fn backend(&self) -> &'static str;
    /// Writes a blob whole: readers see the old one or the new one, never a part.
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), StorageError>;
    async fn get(&self, key: &str) -> Result<Vec<u8>, StorageError>;
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
}

/// A key is a relative path of safe segments.
pub fn check_key(key: &str) -> Result<(), StorageError> {
    let ok = !key.is_empty()
        && key.len() <= 1024
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidKey(key.chars().take(100).collect()))
    }
}
