//! Verified reads: walking a file's manifest tree, checking every block on the way.
//!
//! Every manifest is verified against its id, decoded with all of `spec/storage.md`'s rules, and
//! checked against what its parent says of it (depth, size, stored bytes, no name). Every chunk
//! block is verified against its id and decoded to exactly the length its manifest promises
//! before a single byte of it is written out, so a corrupt block stops the read with an error
//! naming it and nothing wrong is ever returned.

use std::{collections::HashSet, io::Write};

use warren_protocol::{CHUNK_SIZE, Codec, ContentId, Manifest, ManifestEntry};

use crate::{Error, Store, chunk};

/// Reads, verifies and decodes the manifest `cid`; returns it with its block's length.
pub(crate) fn load_manifest(store: &Store, cid: &ContentId) -> Result<(Manifest, usize), Error> {
    if cid.codec() != Codec::Cbor {
        return Err(Error::NotAFile { cid: *cid });
    }
    let bytes = store.get_block(cid)?;
    let manifest = Manifest::decode(&bytes).map_err(|source| Error::Manifest {
            cid: *cid,
            source: Box::new(source),
        })?;
    Ok((manifest, bytes.len()))
}

/// [`load_manifest`] for a file's root: also checks the rules only a root must satisfy.
pub(crate) fn load_root(store: &Store, cid: &ContentId) -> Result<(Manifest, usize), Error> {
    let (manifest, len) = load_manifest(store, cid)?;
    manifest
        .validate_root()
        .map_err(|source| Error::Manifest {
            cid: *cid,
            source: Box::new(source),
        })?;
    Ok((manifest, len))
}

/// What a walk does at each node of the tree.
pub(crate) trait Visitor {
    /// Called for every manifest, root first, parents before children. Returning `false` skips
    /// the manifest's entries (for walks that need each distinct subtree once).
    fn manifest(&mut self, cid: &ContentId, manifest: &Manifest, len: usize)
    -> Result<bool, Error>;
    /// Called for every chunk entry, in file order.
    fn chunk(&mut self, entry: &ManifestEntry) -> Result<(), Error>;
}

/// Walks the tree of the file `root` depth-first in file order; returns the root manifest.
pub(crate) fn walk(
    store: &Store,
    root: &ContentId,
    visitor: &mut dyn Visitor,
) -> Result<Manifest, Error> {
    let (manifest, len) = load_root(store, root)?;
    if visitor.manifest(root, &manifest, len)? {
        walk_entries(store, root, &manifest, visitor)?;
    }
    Ok(manifest)
}

fn walk_entries(
    store: &Store,
    cid: &ContentId,
    manifest: &Manifest,
    visitor: &mut dyn Visitor,
) -> Result<(), Error> {
    for entry in &manifest.entries {
        if manifest.depth == 0 {
            visitor.chunk(entry)?;
            continue;
        }
        let (child, len) = load_manifest(store, &entry.cid)?;
        check_child(cid, manifest.depth, entry, &child, len)?;
        if visitor.manifest(&entry.cid, &child, len)? {
            walk_entries(store, &entry.cid, &child, visitor)?;
        }
    }
    Ok(())
}

/// Checks a child manifest against its parent's entry for it.
fn check_child(
    parent: &ContentId,
    parent_depth: u8,
    entry: &ManifestEntry,
    child: &Manifest,
    len: usize,
) -> Result<(), Error> {
    let wrong = |what: String| {
        Err(Error::Corrupt {
            cid: entry.cid,
            reason: format!("does not match its parent manifest {parent}: {what}"),
        })
    };
    if child.depth + 1 != parent_depth {
        return wrong(format!(
            "depth {}, the parent has depth {parent_depth}",
            child.depth
        ));
    }
    if child.size != entry.raw_len {
        return wrong(format!(
            "size {}, the parent says {}",
            child.size, entry.raw_len
        ));
    }
    let stored = child.stored_total(len);
    if stored != entry.stored_len {
        return wrong(format!(
            "{stored} bytes stored under it, the parent says {}",
            entry.stored_len
        ));
    }
    if child.name.is_some() || child.media_type.is_some() {
        return wrong("a name or media type below the root".into());
    }
    Ok(())
}

/// Writes the file `cid` to `out`; see [`Store::get`].
pub(crate) fn get<W: Write>(
    store: &Store,
    cid: &ContentId,
    out: W,
    progress: &dyn Fn(u64),
) -> Result<u64, Error> {
    struct Copy<'a, W> {
        store: &'a Store,
        out: W,
        buf: Vec<u8>,
        written: u64,
        progress: &'a dyn Fn(u64),
    }
    impl<W: Write> Visitor for Copy<'_, W> {
        fn manifest(&mut self, _: &ContentId, _: &Manifest, _: usize) -> Result<bool, Error> {
            Ok(true)
        }
        fn chunk(&mut self, entry: &ManifestEntry) -> Result<(), Error> {
            let block = self.store.get_block(&entry.cid)?;
            if block.len() as u64 != entry.stored_len {
                return Err(Error::Corrupt {
                    cid: entry.cid,
                    reason: format!(
                        "{} bytes, its manifest says {}",
                        block.len(),
                        entry.stored_len
                    ),
                });
            }
            // The manifest was validated: raw_len is at most CHUNK_SIZE.
            let raw_len = usize::try_from(entry.raw_len).unwrap_or(CHUNK_SIZE + 1);
            self.buf.clear();
            chunk::decode_block(&entry.cid, &block, raw_len, &mut self.buf)?;
            self.out.write_all(&self.buf).map_err(Error::Write)?;
            self.written += self.buf.len() as u64;
            (self.progress)(self.written);
            Ok(())
        }
    }
    let mut copy = Copy {
        store,
        out,
        buf: Vec::with_capacity(CHUNK_SIZE),
        written: 0,
        progress,
    };
    walk(store, cid, &mut copy)?;
    copy.out.flush().map_err(Error::Write)?;
    Ok(copy.written)
}

/// The distinct blocks of a file's DAG and their total size.
#[derive(Default)]
pub(crate) struct Summary {
    pub(crate) blocks: HashSet<ContentId>,
    pub(crate) stored_bytes: u64,
}

/// Walks the file `root` once per distinct subtree, collecting its blocks. With `require_chunks`,
/// fails with [`Error::Incomplete`] at the first chunk not in the store (manifests are always
/// read, so a missing one fails the walk).
pub(crate) fn summarize(
    store: &Store,
    root: &ContentId,
    require_chunks: bool,
) -> Result<(Manifest, Summary), Error> {
    struct Collect<'a> {
        store: &'a Store,
        root: ContentId,
        require_chunks: bool,
        summary: Summary,
    }
    impl Visitor for Collect<'_> {
        fn manifest(&mut self, cid: &ContentId, _: &Manifest, len: usize) -> Result<bool, Error> {
            let new = self.summary.blocks.insert(*cid);
            if new {
                self.summary.stored_bytes += len as u64;
            }
            Ok(new)
        }
        fn chunk(&mut self, entry: &ManifestEntry) -> Result<(), Error> {
            if !self.summary.blocks.insert(entry.cid) {
                return Ok(());
            }
            self.summary.stored_bytes += entry.stored_len;
            if self.require_chunks && !self.store.has_block(&entry.cid)? {
                return Err(Error::Incomplete {
                    root: self.root,
                    missing: entry.cid,
                });
            }
            Ok(())
        }
    }
    let mut collect = Collect {
        store,
        root: *root,
        require_chunks,
        summary: Summary::default(),
    };
    let manifest = walk(store, root, &mut collect).map_err(|e| match e {
        Error::Missing { cid } if cid != *root => Error::Incomplete {
            root: *root,
            missing: cid,
        },
        e => e,
    })?;
    Ok((manifest, collect.summary))
}
