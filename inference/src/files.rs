//! Reading model files and checking them against the hashes their manifest names.
//!
//! A model reaches an operator as files fetched from the storage mesh. The mesh already checks
//! every block against its content id; this check binds the bytes the executor actually loads to
//! the model manifest, so a file swapped on disk after the fetch is refused rather than served.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

/// A model file on disk and, when known, the BLAKE3 hash its manifest names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelFile {
    /// Where it is.
    pub path: PathBuf,
    /// The expected BLAKE3 hash; `None` loads without checking (local files the user named).
    pub blake3: Option<[u8; 32]>,
    /// Where the bytes come from when not from `path`: a file opened by someone else (the
    /// sandboxed model worker, which may open nothing, gets its model this way) or bytes in memory.
    pub source: Option<Source>,
}

/// The bytes of a [`ModelFile`] that is not read from its path.
#[derive(Clone, Debug)]
pub enum Source {
    /// An open file, read from its start (positioned reads: the offset is left alone).
    Open(Arc<std::fs::File>),
    /// Bytes in memory.
    Bytes(Arc<[u8]>),
}

impl PartialEq for Source {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Source::Open(a), Source::Open(b)) => Arc::ptr_eq(a, b),
            (Source::Bytes(a), Source::Bytes(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Source {}

impl ModelFile {
    /// A file loaded without a hash check.
    pub fn unchecked(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            blake3: None,
            source: None,
        }
    }

    /// A file read from `source` that must hash to `blake3`; `label` names it in errors.
    pub fn from_source(label: impl Into<PathBuf>, source: Source, blake3: [u8; 32]) -> Self {
        Self {
            path: label.into(),
            blake3: Some(blake3),
            source: Some(source),
        }
    }

    /// A file that must hash to `blake3`.
    pub fn checked(path: impl Into<PathBuf>, blake3: [u8; 32]) -> Self {
        Self {
            path: path.into(),
            blake3: Some(blake3),
            source: None,
        }
    }

    /// Reads the whole file and checks its hash.
    pub fn read(&self) -> Result<Vec<u8>> {
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let bytes = match &self.source {
            None => std::fs::read(&self.path).map_err(io)?,
            Some(Source::Bytes(b)) => b.to_vec(),
            Some(Source::Open(f)) => read_all_at(f).map_err(io)?,
        };
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
        match &self.source {
            None => std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0),
            Some(Source::Bytes(b)) => b.len() as u64,
            Some(Source::Open(f)) => f.metadata().map(|m| m.len()).unwrap_or(0),
        }
    }
}

/// The whole of an open file from its start, by positioned reads.
fn read_all_at(f: &std::fs::File) -> std::io::Result<Vec<u8>> {
    let len = f.metadata()?.len();
    let mut out = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    let mut at = 0usize;
    while at < out.len() {
        match f.read_at(&mut out[at..], at as u64) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file shrank while read",
                ));
            }
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
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
        // The same through an open file and through bytes: the hash is checked there too.
        let open = Source::Open(Arc::new(std::fs::File::open(&path).unwrap()));
        let err = ModelFile::from_source("fd", open.clone(), hash)
            .read()
            .unwrap_err();
        assert!(matches!(err, Error::HashMismatch { .. }), "{err}");
        let good = *blake3::hash(b"weightz").as_bytes();
        assert_eq!(
            ModelFile::from_source("fd", open, good).read().unwrap(),
            b"weightz"
        );
        let bytes = Source::Bytes(Arc::from(&b"cfg"[..]));
        let f = ModelFile::from_source("cfg", bytes, *blake3::hash(b"cfg").as_bytes());
        assert_eq!((f.read().unwrap(), f.size()), (b"cfg".to_vec(), 3));
    }
}
