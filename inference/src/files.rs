//! Reading model files and checking them against the hashes their manifest names.
//!
//! A model reaches an operator as files fetched from the storage mesh. The mesh already checks
//! every block against its content id; this check binds the bytes the executor actually loads to
//! the model manifest, so a file swapped on disk after the fetch is refused rather than served.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A model file on disk and, when known, the BLAKE3 hash its manifest names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelFile {
    /// Where it is.
    pub path: PathBuf,
    /// The expected BLAKE3 hash; `None` loads without checking (local files the user named).
    pub blake3: Option<[u8; 32]>,
}

impl ModelFile {
    /// A file loaded without a hash check.
    pub fn unchecked(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            blake3: None,
        }
    }

    /// A file that must hash to `blake3`.
    pub fn checked(path: impl Into<PathBuf>, blake3: [u8; 32]) -> Self {
        Self {
            path: path.into(),
            blake3: Some(blake3),
        }
    }

    /// Reads the whole file and checks its hash.
    pub fn read(&self) -> Result<Vec<u8>> {
        let bytes = std::fs::read(&self.path).map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })?;
        if let Some(expected) = self.blake3 {
            let actual = blake3::hash(&bytes);
            if actual.as_bytes() != &expected {
                return Err(Error::HashMismatch {
                    path: self.path.clone(),
                    expected: hex::encode(expected),
                    actual: actual.to_hex().to_string(),
                });
            }
        }
        Ok(bytes)
    }

    /// The file's size in bytes (0 when it cannot be read; reading it reports the error).
    pub fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

/// BLAKE3 of a file's bytes, as a model manifest records it.
pub fn hash_file(path: &Path) -> Result<[u8; 32]> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(*blake3::hash(&bytes).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w");
        std::fs::write(&path, b"weights").unwrap();
        let hash = hash_file(&path).unwrap();
        assert_eq!(ModelFile::checked(&path, hash).read().unwrap(), b"weights");
        std::fs::write(&path, b"weightz").unwrap();
        let err = ModelFile::checked(&path, hash).read().unwrap_err();
        assert!(matches!(err, Error::HashMismatch { .. }), "{err}");
        assert_eq!(ModelFile::unchecked(&path).read().unwrap(), b"weightz");
    }
}
