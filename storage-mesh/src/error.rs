//! The crate's one error type. Every error about a block names the block's id.

use std::{io, path::PathBuf};

use warren_protocol::ContentId;

/// Everything that can go wrong in `warren-storage-mesh`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The block is not in the store.
    #[error("block {cid} is not in the store")]
    Missing {
        /// The block.
        cid: ContentId,
    },

    /// A pushed replica was not taken for the mesh: no or a bad placement ticket, or over the
    /// origin's quota.
    #[error("replica {cid} refused: {reason}")]
    Refused {
        /// The block.
        cid: ContentId,
        /// Why.
        reason: String,
    },

    /// A block the read waited for could not be fetched from any holder.
    #[error("block {cid} could not be fetched: {reason}")]
    Unavailable {
        /// The block.
        cid: ContentId,
        /// Why, as the fetcher saw it.
        reason: String,
    },

    /// The block's bytes are wrong: they do not hash to its id, or (for a block whose hash is
    /// right) they are not what the manifest that names it promises.
    #[error("block {cid} is corrupt: {reason}")]
    Corrupt {
        /// The block.
        cid: ContentId,
        /// What is wrong with it.
        reason: String,
    },

    /// A manifest block that does not decode or breaks a rule of `spec/storage.md`.
    #[error("manifest {cid} is invalid: {source}")]
    Manifest {
        /// The manifest's id.
        cid: ContentId,
        /// What is wrong with it.
        #[source]
        source: Box<warren_protocol::Error>,
    },

    /// A shared or private file could not be sealed.
    #[error("sealing the file: {0}")]
    Seal(String),

    /// A sealed file could not be opened: wrong key, altered, reordered or cut-short data, or a
    /// malformed inner stream. Nothing after the first bad segment was written out.
    #[error("cannot open sealed file {cid}: {reason}")]
    Open {
        /// The sealed file's id.
        cid: ContentId,
        /// What failed.
        reason: String,
    },

    /// A chunk id where a file id (the id of a root manifest) was expected.
    #[error(
        "{cid} is a chunk id, not a file id (a file's id is the id of its root manifest, codec cbor)"
    )]
    NotAFile {
        /// The chunk id given.
        cid: ContentId,
    },

    /// A directory's id where a file was expected.
    #[error(
        "{cid} is a directory, not a file: list it with `warren ls {cid}`, fetch it with \
         `warren get {cid} -o DIR`, or one entry with `warren get {cid}/PATH`"
    )]
    IsDirectory {
        /// The directory's id.
        cid: ContentId,
    },

    /// A file's id where a directory was expected.
    #[error("{cid} is a file, not a directory")]
    NotADirectory {
        /// The file's id.
        cid: ContentId,
    },

    /// A directory's listing breaks the rules of `spec/storage.md` ("Directories"), or an entry
    /// does not match what it names.
    #[error("directory {cid} is refused: {reason}")]
    BadDirectory {
        /// The directory's id.
        cid: ContentId,
        /// What is wrong (the entry's name, when one is wrong).
        reason: String,
    },

    /// Pinning needs every block of the file in the store.
    #[error("cannot pin {root}: block {missing} of its DAG is not in the store")]
    Incomplete {
        /// The file being pinned.
        root: ContentId,
        /// The first missing block found.
        missing: ContentId,
    },

    /// A file whose read would produce more than [`MAX_FILE_SIZE`](crate::MAX_FILE_SIZE) bytes
    /// (its root declares more, or its manifests name more chunk reads than that allows): refused
    /// before anything is written or any thread is pinned. A hostile DAG whose manifests repeat
    /// one subtree names up to 2^60 bytes while storing a few hundred KiB.
    #[error(
        "file {root} is refused: reading it would produce {size} bytes or more, over the limit of \
         {limit} bytes a read may produce (its manifests may repeat a subtree to name far more \
         data than they store)"
    )]
    FileTooLarge {
        /// The file (its root manifest).
        root: ContentId,
        /// The bytes a read would produce (at least).
        size: u64,
        /// [`MAX_FILE_SIZE`](crate::MAX_FILE_SIZE).
        limit: u64,
    },

    /// Storing more would exceed the space this node offers.
    #[error(
        "the storage offer would be exceeded: {used} bytes stored + {adding} bytes to add > {offered} bytes offered"
    )]
    OfferExceeded {
        /// Bytes stored before this operation.
        used: u64,
        /// Bytes this operation would add (so far, for a put still reading its input).
        adding: u64,
        /// Bytes offered.
        offered: u64,
    },

    /// The disk has no room for a user's own put (the offer to others does not limit it).
    #[error(
        "the disk is full: {adding} bytes to add, {available} bytes free (a put leaves {reserve} bytes free)"
    )]
    DiskFull {
        /// Bytes this operation would add (so far, for a put still reading its input).
        adding: u64,
        /// Bytes free on the store's file system now.
        available: u64,
        /// Bytes a put leaves free.
        reserve: u64,
    },

    /// A block handed to the store is larger than any block may be.
    #[error("block {cid} is {len} bytes, more than the {max} a {kind} block may have")]
    BlockTooLarge {
        /// The block.
        cid: ContentId,
        /// Its length.
        len: usize,
        /// The limit for its kind.
        max: usize,
        /// `"chunk"` or `"manifest"`.
        kind: &'static str,
    },

    /// The options of a put are not valid manifest fields (name or media type).
    #[error("invalid put options: {0}")]
    Options(#[source] Box<warren_protocol::Error>),

    /// The tree builder produced a manifest the spec refuses (a bug in this crate).
    #[error("building a manifest failed: {0}")]
    BuildManifest(#[source] Box<warren_protocol::Error>),

    /// Erasure-coded pieces (spec/storage.md, "Pieces"): a piece manifest that breaks a rule, a
    /// stripe that cannot be encoded, or too few good pieces to rebuild one.
    #[error("pieces{}: {reason}", cid.map(|c| format!(" ({c})")).unwrap_or_default())]
    Pieces {
        /// The piece manifest or piece concerned, when known.
        cid: Option<ContentId>,
        /// What is wrong.
        reason: String,
    },

    /// A thread of the put pipeline stopped unexpectedly (a bug in this crate, or a panic).
    #[error("the put pipeline stopped: {0}")]
    Pipeline(&'static str),

    /// Reading the input of a put failed.
    #[error("reading the input: {0}")]
    Read(#[source] io::Error),

    /// Writing the output of a get failed.
    #[error("writing the output: {0}")]
    Write(#[source] io::Error),

    /// A file or directory of the store could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },

    /// The block index (redb) failed.
    #[error("block index: {0}")]
    Index(#[from] Box<redb::Error>),

    /// A saved sweep snapshot is malformed (spec/sweep-snapshot.md); nothing was taken from it.
    #[error("sweep snapshot: {reason} at byte {offset}")]
    SweepSnapshot {
        /// Where decoding stopped.
        offset: usize,
        /// What was wrong there.
        reason: &'static str,
    },

    /// The store directory was written by a newer (or unknown) version of this crate.
    #[error("{}: store schema {found} is not supported (this build reads schema {supported})", path.display())]
    Schema {
        /// The index file.
        path: PathBuf,
        /// The schema version found.
        found: u64,
        /// The schema version this build reads.
        supported: u64,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

/// redb has one error type per operation; they all end up in [`Error::Index`].
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Index(Box::new(e.into()))
            }
        }
    )*};
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

#[cfg(test)]
mod tests {
    use warren_protocol::Codec;

    use super::*;

    #[test]
    fn messages_name_the_block() {
        let cid = ContentId::of_block(Codec::Raw, b"x");
        for err in [
            Error::Missing { cid },
            Error::Corrupt {
                cid,
                reason: "bad".into(),
            },
            Error::NotAFile { cid },
        ] {
            assert!(err.to_string().contains(&cid.to_string()), "{err}");
        }
    }

    #[test]
    fn error_stays_small() {
        // Callers embed `Error` in their own error types; keep `Result<_, Error>` cheap to move.
        assert!(
            std::mem::size_of::<Error>() <= 80,
            "{}",
            std::mem::size_of::<Error>()
        );
    }
}
