//! Blobs in a folder (the embedded default): `ROOT/<key>`, written to a temp file and renamed
//! into place, so a reader never sees half a blob.

use super::{check_key, BlobStore, StorageError};
use async_trait::async_trait;
use std::path::PathBuf;

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
}

#[async_trait]
impl BlobStore for FolderStore {
    fn backend(&self) -> &'static str {
        "fs"
    }

    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        _content_type: &str,
    ) -> Result<(), StorageError> {
        let path = self.path_of(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let tmp = path.with_extension(format!("tmp-{:08x}", rand::random::<u32>()));
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        match tokio::fs::read(self.path_of(key)?).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StorageError::NotFound(key.into()))
            }
            other => Ok(other?),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.path_of(key)?).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_round_trip_and_keys_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = FolderStore::new(dir.path().to_path_buf());
        store
            .put("a/b/c.png", vec![1, 2, 3], "image/png")
            .await
            .unwrap();
        assert_eq!(store.get("a/b/c.png").await.unwrap(), [1, 2, 3]);
        store.delete("a/b/c.png").await.unwrap();
        assert!(matches!(
            store.get("a/b/c.png").await,
            Err(StorageError::NotFound(_))
        ));
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", "a\\b", ""] {
            assert!(
                matches!(
                    store.put(bad, vec![], "x").await,
                    Err(StorageError::InvalidKey(_))
                ),
                "{bad}"
            );
        }
    }
}
