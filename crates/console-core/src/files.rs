//! The console's own files (profiles, preferences): written atomically — a temporary file in the
//! same folder (`tempfile`, created readable by the user only), flushed to disk, then renamed over
//! the old one — so a crash or a full disk never leaves half a file.

use crate::error::{Error, ErrorKind};
use std::io::Write as _;
use std::path::Path;

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("{what} {}: {e}", path.display()))
}

/// Replaces `path` with `bytes` atomically; the file is readable by the user only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| io("cannot write in", dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io("cannot write", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| io("cannot replace", path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("prefs.json");
        write_private(&path, b"{\"a\":1}").unwrap();
        write_private(&path, b"{\"a\":2}").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":2}");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "readable by the user only: {mode:o}");
        }
    }
}
