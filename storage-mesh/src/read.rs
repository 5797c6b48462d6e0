//! Verified reads: walking a file's manifest tree, checking every block on the way.
//!
//! Every manifest is verified against its id, decoded with all of `spec/storage.md`'s rules, and
//! checked against what its parent says of it (depth, size, stored bytes, no name). Every chunk
//! block is verified against its id and decoded to exactly the length its manifest promises
//! before a single byte of it is written out, so a corrupt block stops the read with an error
//! naming it and nothing wrong is ever returned.

use std::{
    collections::{HashMap, HashSet},
    io::Write,
    sync::Arc,
};

use warren_protocol::{
    CHUNK_SIZE, Codec, ContentId, Manifest, ManifestEntry, directory::MAX_LISTING_SIZE,
};

use crate::store::Ready;
use crate::{Error, Store, chunk};

/// Most chunk reads one read of a file may make: 2^24, i.e. a file of at most 16 TiB. Far above
/// any file a node offers room for, low enough that a per-chunk count fits a `u32` with room to
/// spare, and 2^16 times below the 2^40 chunk reads of a "DAG bomb" (four levels of manifests
/// whose 1024 entries all name the same child), which stores a few hundred KiB and names 2^60
/// bytes.
pub const MAX_FILE_CHUNKS: u64 = 1 << 24;
/// Most bytes one read of a file may produce: [`MAX_FILE_CHUNKS`] full chunks (16 TiB). A root
/// that declares more is refused ([`Error::FileTooLarge`]) before anything is written.
pub const MAX_FILE_SIZE: u64 = MAX_FILE_CHUNKS * CHUNK_SIZE as u64;

/// Refuses a root that declares more than [`MAX_FILE_SIZE`] bytes.
fn check_declared_size(root: &ContentId, manifest: &Manifest) -> Result<(), Error> {
    if manifest.size > MAX_FILE_SIZE {
        return Err(Error::FileTooLarge {
            root: *root,
            size: manifest.size,
            limit: MAX_FILE_SIZE,
        });
    }
    Ok(())
}

/// Where a verified read takes its blocks from: the store, or a stream of blocks sent by a peer
/// (`crate::stream`). Every block it returns has been checked against `cid`.
pub(crate) trait Blocks {
    /// The block `cid`, verified against its id.
    fn block(&self, cid: &ContentId) -> Result<Vec<u8>, Error>;
}

impl Blocks for Store {
    fn block(&self, cid: &ContentId) -> Result<Vec<u8>, Error> {
        self.get_block(cid)
    }
}

/// Reads, verifies and decodes the manifest `cid`; returns it with its block's length.
pub(crate) fn load_manifest(
    store: &dyn Blocks,
    cid: &ContentId,
) -> Result<(Manifest, usize), Error> {
    if cid.codec() != Codec::Cbor {
        return Err(Error::NotAFile { cid: *cid });
    }
    let bytes = store.block(cid)?;
    let manifest = Manifest::decode(&bytes).map_err(|source| Error::Manifest {
        cid: *cid,
        source: Box::new(source),
    })?;
    Ok((manifest, bytes.len()))
}

/// [`load_manifest`] for a file's root: also checks the rules only a root must satisfy.
pub(crate) fn load_root(store: &dyn Blocks, cid: &ContentId) -> Result<(Manifest, usize), Error> {
    let (manifest, len) = load_manifest(store, cid)?;
    manifest.validate_root().map_err(|source| Error::Manifest {
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
    /// Called before the child manifest that `entry` (of a manifest at `parent_depth`) names is
    /// loaded and checked: `true` skips it (load, check and visit), for a walk that has seen
    /// the same child checked against the same entry at the same depth, whose outcome is known.
    /// A DAG that repeats a subtree then costs its distinct entries, not its paths.
    fn skip(&mut self, _entry: &ManifestEntry, _parent_depth: u8) -> bool {
        false
    }
}

/// Walks the tree of the file `root` depth-first in file order; returns the root manifest.
pub(crate) fn walk(
    store: &dyn Blocks,
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
    store: &dyn Blocks,
    cid: &ContentId,
    manifest: &Manifest,
    visitor: &mut dyn Visitor,
) -> Result<(), Error> {
    for entry in &manifest.entries {
        if manifest.depth == 0 {
            visitor.chunk(entry)?;
            continue;
        }
        if visitor.skip(entry, manifest.depth) {
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
    if child.is_directory() {
        return wrong("a directory root below the root".into());
    }
    if child.name.is_some() || child.media_type.is_some() {
        return wrong("a name or media type below the root".into());
    }
    Ok(())
}

/// Writes the file `cid` to `out`; see [`Store::get`]. A directory is refused
/// ([`Error::IsDirectory`]) before any byte is written.
pub(crate) fn get<W: Write>(
    store: &dyn Blocks,
    cid: &ContentId,
    out: W,
    progress: &dyn Fn(u64),
    ready: &Ready<'_>,
) -> Result<u64, Error> {
    copy_content(store, cid, out, progress, ready, false, 0)
}

/// Writes the file `cid` from byte `from` on to `out`; see [`Store::get_from_when_ready`].
pub(crate) fn get_from<W: Write>(
    store: &dyn Blocks,
    cid: &ContentId,
    from: u64,
    out: W,
    ready: &Ready<'_>,
) -> Result<u64, Error> {
    copy_content(store, cid, out, &|_| {}, ready, false, from)
}

/// The content of the directory `cid` (its listing's bytes, not yet decoded): refuses a file
/// ([`Error::NotADirectory`]) and a listing declared larger than `MAX_LISTING_SIZE` before
/// reading any chunk.
pub(crate) fn listing_bytes(
    store: &dyn Blocks,
    cid: &ContentId,
    ready: &Ready<'_>,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    copy_content(store, cid, &mut out, &|_| {}, ready, true, 0)?;
    Ok(out)
}

fn copy_content<W: Write>(
    store: &dyn Blocks,
    cid: &ContentId,
    out: W,
    progress: &dyn Fn(u64),
    ready: &Ready<'_>,
    directory: bool,
    from: u64,
) -> Result<u64, Error> {
    struct Copy<'a, W> {
        /// File bytes before this are not written, and chunks (and subtrees) wholly before it
        /// are neither read nor waited for.
        from: u64,
        /// File offset of the next entry visited.
        offset: u64,
        /// Whether the root must be a directory (or must not be).
        directory: bool,
        store: &'a dyn Blocks,
        root: ContentId,
        /// The root's size, once its manifest is read: no more than this is ever written.
        declared: Option<u64>,
        out: W,
        buf: Vec<u8>,
        written: u64,
        progress: &'a dyn Fn(u64),
        ready: &'a Ready<'a>,
    }
    impl<W: Write> Visitor for Copy<'_, W> {
        fn manifest(&mut self, cid: &ContentId, m: &Manifest, _: usize) -> Result<bool, Error> {
            if self.declared.is_none() {
                // The root, visited first.
                match (self.directory, m.is_directory()) {
                    (false, true) => return Err(Error::IsDirectory { cid: *cid }),
                    (true, false) => return Err(Error::NotADirectory { cid: *cid }),
                    _ => {}
                }
                if self.directory && m.size > MAX_LISTING_SIZE as u64 {
                    return Err(Error::BadDirectory {
                        cid: *cid,
                        reason: format!(
                            "its listing declares {} bytes, over the limit of {MAX_LISTING_SIZE}",
                            m.size
                        ),
                    });
                }
                check_declared_size(cid, m)?;
                self.declared = Some(m.size);
            }
            Ok(true)
        }
        fn skip(&mut self, entry: &ManifestEntry, _parent_depth: u8) -> bool {
            self.passed(entry)
        }
        fn chunk(&mut self, entry: &ManifestEntry) -> Result<(), Error> {
            if self.passed(entry) {
                return Ok(());
            }
            // Handed over by a fetch (verified there), or read and verified here.
            let block = match (self.ready)(&entry.cid)? {
                Some(bytes) => bytes,
                None => Arc::new(self.store.block(&entry.cid)?),
            };
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
            // Validation already makes the chunks add up to the root's size; never trust that
            // alone to bound what is written.
            let declared = self.declared.unwrap_or(0);
            if self.written.saturating_add(self.buf.len() as u64) > declared {
                return Err(Error::Corrupt {
                    cid: self.root,
                    reason: format!("its chunks hold more than the {declared} bytes it declares"),
                });
            }
            let cut = usize::try_from(self.from.saturating_sub(self.offset))
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            self.out.write_all(&self.buf[cut..]).map_err(Error::Write)?;
            self.written += self.buf.len() as u64;
            self.offset += self.buf.len() as u64;
            (self.progress)(self.written);
            Ok(())
        }
    }
    impl<W> Copy<'_, W> {
        /// Whether `entry` lies wholly before `from` (then it is counted as passed over).
        fn passed(&mut self, entry: &ManifestEntry) -> bool {
            let end = self.offset.saturating_add(entry.raw_len);
            if end > self.from {
                return false;
            }
            self.offset = end;
            self.written = self.written.saturating_add(entry.raw_len);
            true
        }
    }
    let mut copy = Copy {
        from,
        offset: 0,
        directory,
        store,
        root: *cid,
        declared: None,
        out,
        buf: Vec::with_capacity(CHUNK_SIZE),
        written: 0,
        progress,
        ready,
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

/// Every distinct block of the file `root` with its stored length, in walk order (root first,
/// parents before children); chunks need not be stored, manifests must be.
pub(crate) fn dag_blocks(store: &Store, root: &ContentId) -> Result<Vec<(ContentId, u64)>, Error> {
    struct List {
        seen: std::collections::HashSet<ContentId>,
        /// Child entries already loaded and checked, with their parent's depth.
        checked: HashSet<(ContentId, u64, u64, u8)>,
        out: Vec<(ContentId, u64)>,
    }
    impl Visitor for List {
        fn skip(&mut self, entry: &ManifestEntry, parent_depth: u8) -> bool {
            // Seen with this very entry: loading it again would give the same check, and its
            // subtree is listed already.
            !self
                .checked
                .insert((entry.cid, entry.raw_len, entry.stored_len, parent_depth))
        }
        fn manifest(&mut self, cid: &ContentId, _: &Manifest, len: usize) -> Result<bool, Error> {
            let new = self.seen.insert(*cid);
            if new {
                self.out.push((*cid, len as u64));
            }
            Ok(new)
        }
        fn chunk(&mut self, entry: &ManifestEntry) -> Result<(), Error> {
            if self.seen.insert(entry.cid) {
                self.out.push((entry.cid, entry.stored_len));
            }
            Ok(())
        }
    }
    let mut list = List {
        seen: Default::default(),
        checked: HashSet::new(),
        out: Vec::new(),
    };
    walk(store, root, &mut list)?;
    Ok(list.out)
}

/// How many times a read of the file `root` reads each chunk block (more than once for a chunk
/// repeated in the file); the manifests must be stored, the chunks need not be.
///
/// Visits each distinct manifest once, level by level, carrying how many times a read passes
/// through it (its multiplicity, saturating), so a DAG whose manifests repeat a subtree costs
/// its distinct manifests, not its paths. Fails with [`Error::FileTooLarge`] for a root that
/// declares more than [`MAX_FILE_SIZE`] bytes or names more than [`MAX_FILE_CHUNKS`] chunk reads.
/// Every manifest is checked against each distinct parent entry that names it, as a read does.
pub(crate) fn chunk_uses(
    store: &Store,
    root: &ContentId,
) -> Result<HashMap<ContentId, u32>, Error> {
    let (manifest, _) = load_root(store, root)?;
    check_declared_size(root, &manifest)?;
    let too_many = |uses: u64| Error::FileTooLarge {
        root: *root,
        size: uses.saturating_mul(CHUNK_SIZE as u64).max(manifest.size),
        limit: MAX_FILE_SIZE,
    };
    // The distinct manifests of one level, in first-seen order, with their multiplicities.
    let mut level: Vec<(ContentId, u64)> = vec![(*root, 1)];
    let mut depth = manifest.depth;
    let mut counts: HashMap<ContentId, u64> = HashMap::new();
    let mut total: u64 = 0;
    loop {
        let mut next: Vec<(ContentId, u64)> = Vec::new();
        let mut index: HashMap<ContentId, usize> = HashMap::new();
        // Per child, the (raw_len, stored_len) of the parent entries it was checked against.
        let mut checked: HashMap<ContentId, HashSet<(u64, u64)>> = HashMap::new();
        for &(cid, mult) in &level {
            let m = if cid == *root {
                manifest.clone()
            } else {
                load_manifest(store, &cid)?.0
            };
            for entry in &m.entries {
                if depth == 0 {
                    total = total.saturating_add(mult);
                    if total > MAX_FILE_CHUNKS {
                        return Err(too_many(total));
                    }
                    let n = counts.entry(entry.cid).or_default();
                    *n = n.saturating_add(mult);
                    continue;
                }
                let seen = checked.entry(entry.cid).or_default();
                if seen.insert((entry.raw_len, entry.stored_len)) {
                    let (child, len) = load_manifest(store, &entry.cid)?;
                    check_child(&cid, depth, entry, &child, len)?;
                }
                match index.get(&entry.cid) {
                    Some(&i) => next[i].1 = next[i].1.saturating_add(mult),
                    None => {
                        index.insert(entry.cid, next.len());
                        next.push((entry.cid, mult));
                    }
                }
            }
        }
        if depth == 0 {
            break;
        }
        // Every path of the next level ends in at least one chunk read.
        let paths = next.iter().fold(0u64, |sum, (_, m)| sum.saturating_add(*m));
        if paths > MAX_FILE_CHUNKS {
            return Err(too_many(paths));
        }
        level = next;
        depth -= 1;
    }
    // Each count is at most MAX_FILE_CHUNKS, which fits a u32.
    Ok(counts
        .into_iter()
        .map(|(c, n)| (c, u32::try_from(n).unwrap_or(u32::MAX)))
        .collect())
}

#[cfg(test)]
mod tests {
    use warren_protocol::{MANIFEST_FANOUT, MANIFEST_VERSION};

    use super::*;
    use crate::{
        chunk::encode_block,
        test_util::{get, put, store},
        testdata::random_chunk,
    };

    const MIB: u64 = CHUNK_SIZE as u64;

    /// Runs a get that must fail; returns the error and what was written before it failed.
    fn failing_get(store: &Store, cid: &ContentId) -> (Error, Vec<u8>) {
        let mut out = Vec::new();
        let err = store.get(cid, &mut out, &|_| {}).unwrap_err();
        (err, out)
    }

    #[test]
    fn a_get_from_an_offset_reads_no_chunk_before_it() {
        let (_dir, store) = store(u64::MAX);
        let data = random_chunk(2, 3 * CHUNK_SIZE + 100);
        let file = put(&store, &data);
        let first = store.stat(&file.cid).unwrap().entries[0].cid;
        let ready = |_: &ContentId| Ok(None);
        for from in [
            0,
            7,
            MIB - 1,
            MIB,
            MIB + 5,
            3 * MIB + 99,
            3 * MIB + 100,
            4 * MIB,
        ] {
            let mut out = Vec::new();
            let size = store
                .get_from_when_ready(&file.cid, from, &mut out, &ready)
                .unwrap();
            assert_eq!(size, data.len() as u64);
            assert_eq!(out, &data[(from as usize).min(data.len())..], "from {from}");
        }
        // The first chunk is corrupt: a read from the second on never touches it.
        store.corrupt_block(&first, 1000);
        let mut out = Vec::new();
        store
            .get_from_when_ready(&file.cid, MIB + 5, &mut out, &ready)
            .unwrap();
        assert_eq!(out, &data[CHUNK_SIZE + 5..]);
        let err = store
            .get_from_when_ready(&file.cid, MIB - 1, &mut Vec::new(), &ready)
            .unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { cid, .. } if *cid == first),
            "{err}"
        );
    }

    #[test]
    fn a_flipped_byte_in_a_chunk_fails_the_get_naming_it() {
        let (_dir, store) = store(u64::MAX);
        let data = random_chunk(1, 3 * CHUNK_SIZE);
        let file = put(&store, &data);
        let second = store.stat(&file.cid).unwrap().entries[1].cid;
        store.corrupt_block(&second, 1000);

        let (err, out) = failing_get(&store, &file.cid);
        assert!(
            matches!(&err, Error::Corrupt { cid, .. } if *cid == second),
            "{err}"
        );
        assert!(err.to_string().contains(&second.to_string()), "{err}");
        // The first chunk was written, nothing of the corrupt one.
        assert_eq!(out, &data[..CHUNK_SIZE]);
        let err = store.get_block(&second).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }

    #[test]
    fn a_flipped_byte_in_an_inline_chunk_fails_the_get() {
        let (_dir, store) = store(u64::MAX);
        let file = put(&store, b"hello\n");
        let chunk = store.stat(&file.cid).unwrap().entries[0].cid;
        store.corrupt_block(&chunk, 3);
        let (err, out) = failing_get(&store, &file.cid);
        assert!(
            matches!(&err, Error::Corrupt { cid, .. } if *cid == chunk),
            "{err}"
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_corrupt_manifest_fails_get_and_stat() {
        let (_dir, store) = store(u64::MAX);
        let file = put(&store, &random_chunk(2, 10));
        store.corrupt_block(&file.cid, 5);
        for err in [
            failing_get(&store, &file.cid).0,
            store.stat(&file.cid).unwrap_err(),
        ] {
            assert!(
                matches!(&err, Error::Corrupt { cid, .. } if *cid == file.cid),
                "{err}"
            );
        }
    }

    #[test]
    fn garbage_and_truncated_manifests_give_clear_errors() {
        let (_dir, store) = store(u64::MAX);
        let file = put(&store, &random_chunk(3, 2 * CHUNK_SIZE));
        let good = store.get_block(&file.cid).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", b"\xffnot a manifest at all".to_vec()),
            ("truncated", good[..good.len() / 2].to_vec()),
            ("empty", vec![]),
            ("trailing", [&good[..], &[0]].concat()),
        ];
        for (what, bytes) in cases {
            // Stored under their own (correct) id, so the hash check passes and decoding fails.
            let cid = ContentId::of_block(Codec::Cbor, &bytes);
            store.put_block(&cid, &bytes).unwrap();
            let (err, out) = failing_get(&store, &cid);
            assert!(out.is_empty());
            match &err {
                Error::Manifest { cid: named, .. } => assert_eq!(*named, cid, "{what}"),
                other => panic!("{what}: {other}"),
            }
            let text = err.to_string();
            assert!(
                text.contains(&cid.to_string()) && text.contains("invalid"),
                "{what}: {text}"
            );
        }
    }

    #[test]
    fn chunk_and_unknown_ids_are_refused() {
        let (_dir, store) = store(u64::MAX);
        let file = put(&store, b"abc");
        let chunk = store.stat(&file.cid).unwrap().entries[0].cid;
        let err = failing_get(&store, &chunk).0;
        assert!(matches!(err, Error::NotAFile { .. }), "{err}");
        let unknown = ContentId::of_block(Codec::Cbor, b"nothing");
        let err = failing_get(&store, &unknown).0;
        assert!(
            matches!(err, Error::Missing { cid } if cid == unknown),
            "{err}"
        );
    }

    /// Stores `manifest` with `put_block`; returns its id.
    fn store_manifest(store: &Store, manifest: &Manifest) -> ContentId {
        let (cid, bytes) = manifest.to_block().unwrap();
        store.put_block(&cid, &bytes).unwrap();
        cid
    }

    #[test]
    fn a_manifest_lying_about_a_chunk_fails_naming_the_chunk() {
        let (_dir, store) = store(u64::MAX);
        let text = vec![b'a'; 100];
        let block = encode_block(&text);
        assert_eq!(block[0], crate::chunk::TAG_BROTLI);
        let stored = block.len() as u64;
        let cid = ContentId::of_block(Codec::Raw, &block);
        store.put_block(&cid, &block).unwrap();
        let lie = |raw_len: u64, stored_len: u64| Manifest {
            version: MANIFEST_VERSION,
            size: raw_len,
            depth: 0,
            entries: vec![ManifestEntry {
                cid,
                raw_len,
                stored_len,
            }],
            name: None,
            media_type: None,
        };
        let honest = store_manifest(&store, &lie(100, stored));
        assert_eq!(get(&store, &honest), text);
        for (raw_len, stored_len, expect) in [
            (
                100,
                stored + 1,
                format!("{stored} bytes, its manifest says {}", stored + 1),
            ),
            (99, stored, "decompresses to more than the 99 bytes".into()),
            (
                101,
                stored,
                "decompresses to 100 bytes, the manifest says 101".into(),
            ),
        ] {
            let root = store_manifest(&store, &lie(raw_len, stored_len));
            let (err, out) = failing_get(&store, &root);
            assert!(
                matches!(&err, Error::Corrupt { cid: c, .. } if *c == cid),
                "{err}"
            );
            assert!(err.to_string().contains(&expect), "{err}");
            assert!(out.is_empty());
        }
    }

    /// A depth-1 file of 1 GiB + 1 byte built by hand: a full leaf of 1024 zero chunks (one
    /// distinct block) and a leaf of one 1-byte chunk. Returns the root and the two leaves.
    fn hand_built_tree(
        store: &Store,
        tweak_leaf: impl Fn(&mut Manifest),
        tweak_root: impl Fn(&mut Manifest),
    ) -> (ContentId, Manifest, Manifest) {
        let zeros = encode_block(&vec![0; CHUNK_SIZE]);
        let zero = ContentId::of_block(Codec::Raw, &zeros);
        store.put_block(&zero, &zeros).unwrap();
        let one = encode_block(b"!");
        let one_id = ContentId::of_block(Codec::Raw, &one);
        store.put_block(&one_id, &one).unwrap();
        let entry = |cid, raw_len, stored_len| ManifestEntry {
            cid,
            raw_len,
            stored_len,
        };
        let leaf = |entries: Vec<ManifestEntry>| Manifest {
            version: MANIFEST_VERSION,
            size: entries.iter().map(|e| e.raw_len).sum(),
            depth: 0,
            entries,
            name: None,
            media_type: None,
        };
        let mut full = leaf(vec![entry(zero, MIB, zeros.len() as u64); MANIFEST_FANOUT]);
        tweak_leaf(&mut full);
        let last = leaf(vec![entry(one_id, 1, 2)]);
        let (full_id, full_bytes) = full.to_block().unwrap();
        let (last_id, last_bytes) = last.to_block().unwrap();
        store.put_block(&full_id, &full_bytes).unwrap();
        store.put_block(&last_id, &last_bytes).unwrap();
        let mut root = Manifest {
            version: MANIFEST_VERSION,
            size: full.size + 1,
            depth: 1,
            entries: vec![
                entry(full_id, full.size, full.stored_total(full_bytes.len())),
                entry(last_id, 1, last.stored_total(last_bytes.len())),
            ],
            name: Some("big".into()),
            media_type: None,
        };
        tweak_root(&mut root);
        (store_manifest(store, &root), full, last)
    }

    #[test]
    fn a_hand_built_tree_reads_back() {
        let (_dir, store) = store(u64::MAX);
        let (root, _, _) = hand_built_tree(&store, |_| {}, |_| {});
        let mut tail = TailSink::default();
        let n = store.get(&root, &mut tail, &|_| {}).unwrap();
        assert_eq!(n, MIB * MANIFEST_FANOUT as u64 + 1);
        assert_eq!(tail.last, Some(b'!'));
        store.pin(&root).unwrap();
        let pin = &store.pins().unwrap()[0];
        assert_eq!((pin.blocks, pin.name.as_deref()), (5, Some("big")));
    }

    #[test]
    fn chunk_uses_counts_a_chunk_repeated_in_the_file_each_time() {
        let (_dir, store) = store(u64::MAX);
        let (x, y) = (random_chunk(1, CHUNK_SIZE), random_chunk(2, CHUNK_SIZE));
        let data = [&x[..], &y, &x, &x, &y[..100]].concat();
        let put = store
            .put(data.as_slice(), &crate::PutOptions::default(), &|_| {})
            .unwrap();
        let uses = store.chunk_uses(&put.cid).unwrap();
        let id = |bytes: &[u8]| ContentId::of_block(Codec::Raw, &chunk::encode_block(bytes));
        assert_eq!(uses.len(), 3, "{uses:?}");
        assert_eq!(uses[&id(&x)], 3);
        assert_eq!(uses[&id(&y)], 1);
        assert_eq!(uses[&id(&y[..100])], 1);
        // The distinct list has each once, in first-use order.
        let dag: Vec<ContentId> = store
            .dag(&put.cid)
            .unwrap()
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        let chunks: Vec<&ContentId> = dag.iter().filter(|c| uses.contains_key(c)).collect();
        assert_eq!(chunks, [&id(&x), &id(&y), &id(&y[..100])]);
    }

    /// A DAG of `levels` manifests above one chunk of `chunk_len` zero bytes, every manifest
    /// listing `fanout` entries that all name the level below: `fanout^levels` chunk reads from
    /// `levels + 1` distinct blocks. With full chunks (and `fanout` 1024 above depth 0) a valid
    /// tree: every rule of `spec/storage.md` holds. Returns the root and the chunk.
    fn repeated_dag(
        store: &Store,
        levels: u8,
        fanout: usize,
        chunk_len: usize,
    ) -> (ContentId, ContentId) {
        let block = encode_block(&vec![0; chunk_len]);
        let chunk = ContentId::of_block(Codec::Raw, &block);
        store.put_block(&chunk, &block).unwrap();
        let mut below = ManifestEntry {
            cid: chunk,
            raw_len: chunk_len as u64,
            stored_len: block.len() as u64,
        };
        let mut root = chunk;
        for depth in 0..levels {
            let m = Manifest {
                version: MANIFEST_VERSION,
                size: below.raw_len * fanout as u64,
                depth,
                entries: vec![below.clone(); fanout],
                name: None,
                media_type: None,
            };
            let (cid, bytes) = m.to_block().unwrap();
            store.put_block(&cid, &bytes).unwrap();
            below = ManifestEntry {
                cid,
                raw_len: m.size,
                stored_len: m.stored_total(bytes.len()),
            };
            root = cid;
        }
        (root, chunk)
    }

    /// Counts chunk reads the slow way, one visit per path (what `chunk_uses` did before).
    fn uses_by_walking(store: &Store, root: &ContentId) -> HashMap<ContentId, u32> {
        struct Count(HashMap<ContentId, u32>);
        impl Visitor for Count {
            fn manifest(&mut self, _: &ContentId, _: &Manifest, _: usize) -> Result<bool, Error> {
                Ok(true)
            }
            fn chunk(&mut self, entry: &ManifestEntry) -> Result<(), Error> {
                *self.0.entry(entry.cid).or_default() += 1;
                Ok(())
            }
        }
        let mut count = Count(HashMap::new());
        walk(store, root, &mut count).unwrap();
        count.0
    }

    #[test]
    fn the_dag_of_a_repeated_subtree_lists_each_block_once_and_loads_it_once() {
        let (_dir, store) = store(u64::MAX);
        // Four levels of 1024 entries naming the level below: 2^40 paths, 5 blocks.
        let (root, chunk) = repeated_dag(&store, 4, MANIFEST_FANOUT, CHUNK_SIZE);
        let started = std::time::Instant::now();
        let dag = store.dag(&root).unwrap();
        let took = started.elapsed();
        assert_eq!(dag.len(), 5, "{dag:?}");
        assert_eq!(dag[0].0, root);
        assert!(dag.iter().any(|(c, _)| *c == chunk));
        // Each of the 3 distinct child manifests is loaded once, not 1024 times per parent
        // (which took tens of seconds on a loaded debug build).
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn chunk_uses_multiplies_through_a_repeated_dag() {
        let (_dir, store) = store(u64::MAX);
        // A full leaf of 1024 reads of chunk x, named three times by the root, then a leaf of
        // [y, x]: 3·1024 + 1 reads of x, 1 of y, from 5 distinct manifests and chunks.
        let (leaf, x) = repeated_dag(&store, 1, MANIFEST_FANOUT, CHUNK_SIZE);
        let full = store.stat(&leaf).unwrap();
        let y_block = encode_block(&random_chunk(7, CHUNK_SIZE));
        let y = ContentId::of_block(Codec::Raw, &y_block);
        store.put_block(&y, &y_block).unwrap();
        let x_entry = full.entries[0].clone();
        let y_entry = ManifestEntry {
            cid: y,
            raw_len: MIB,
            stored_len: y_block.len() as u64,
        };
        let last = Manifest {
            version: MANIFEST_VERSION,
            size: 2 * MIB,
            depth: 0,
            entries: vec![y_entry, x_entry],
            name: None,
            media_type: None,
        };
        let last_id = store_manifest(&store, &last);
        let entry = |cid: ContentId, m: &Manifest| ManifestEntry {
            cid,
            raw_len: m.size,
            stored_len: m.stored_total(store.get_block(&cid).unwrap().len()),
        };
        let full_entry = entry(leaf, &full);
        let root = Manifest {
            version: MANIFEST_VERSION,
            size: 3 * full.size + last.size,
            depth: 1,
            entries: vec![
                full_entry.clone(),
                full_entry.clone(),
                full_entry,
                entry(last_id, &last),
            ],
            name: None,
            media_type: None,
        };
        let root = store_manifest(&store, &root);
        let uses = store.chunk_uses(&root).unwrap();
        assert_eq!(uses.len(), 2, "{uses:?}");
        assert_eq!(uses[&x], 3 * 1024 + 1);
        assert_eq!(uses[&y], 1);
        assert_eq!(uses, uses_by_walking(&store, &root));
        // The file reads back at its declared size.
        let mut tail = TailSink::default();
        let n = store.get(&root, &mut tail, &|_| {}).unwrap();
        assert_eq!(n, 3 * full.size + 2 * MIB);
    }

    /// A store holding [`repeated_dag`] of `levels` levels of full chunks.
    fn store_with_fanout_dag(
        levels: u8,
        fanout: usize,
    ) -> (tempfile::TempDir, (Store, (ContentId, ContentId))) {
        let (dir, store) = store(u64::MAX);
        let dag = repeated_dag(&store, levels, fanout, CHUNK_SIZE);
        (dir, (store, dag))
    }

    #[test]
    fn a_dag_bomb_fails_fast_with_the_cap_and_writes_nothing() {
        let (_dir, store) = store(u64::MAX);
        // Four manifests of 1024 equal entries: 2^40 chunk reads, 2^60 bytes declared.
        let (root, _) = repeated_dag(&store, 4, MANIFEST_FANOUT, CHUNK_SIZE);
        assert_eq!(store.stat(&root).unwrap().size, 1 << 60);
        let started = std::time::Instant::now();
        let err = store.chunk_uses(&root).unwrap_err();
        assert!(
            matches!(err, Error::FileTooLarge { root: r, size, limit }
                if r == root && size == 1 << 60 && limit == MAX_FILE_SIZE),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&root.to_string()) && text.contains(&MAX_FILE_SIZE.to_string()),
            "{text}"
        );
        let (err, out) = failing_get(&store, &root);
        assert!(matches!(err, Error::FileTooLarge { .. }), "{err}");
        assert!(out.is_empty());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_file_just_at_the_cap_is_counted_past_it_is_refused() {
        // Two levels of 1024 over one chunk: 2^20 reads (1 TiB), under the cap of 2^24.
        let (_dir, (store, (root, chunk))) = store_with_fanout_dag(2, MANIFEST_FANOUT);
        assert_eq!(store.chunk_uses(&root).unwrap()[&chunk], 1 << 20);
        // Three levels: 2^30 reads, over it; counted in a few thousand steps, not 2^30.
        let (_dir, (store, (root, _))) = store_with_fanout_dag(3, MANIFEST_FANOUT);
        let started = std::time::Instant::now();
        let err = store.chunk_uses(&root).unwrap_err();
        assert!(
            matches!(err, Error::FileTooLarge { size, .. } if size == 1 << 50),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn children_must_match_their_parent() {
        type Tweak = fn(&mut Manifest);
        let cases: [(&str, Tweak, Tweak); 3] = [
            (
                "a name or media type below the root",
                |leaf| leaf.name = Some("sneaky".into()),
                |_| {},
            ),
            (
                "bytes stored under it",
                |_| {},
                |root| root.entries[0].stored_len += 1,
            ),
            (
                "depth 0, the parent has depth 2",
                |_| {},
                |root| {
                    // A depth-2 root whose entries are leaves: sizes follow depth 2's rule.
                    root.depth = 2;
                    root.entries[0].raw_len = MIB << 20;
                    root.size = root.entries[0].raw_len + 1;
                },
            ),
        ];
        for (expect, tweak_leaf, tweak_root) in cases {
            let (_dir, store) = store(u64::MAX);
            let (root, full, _) = hand_built_tree(&store, tweak_leaf, tweak_root);
            let (err, out) = failing_get(&store, &root);
            let leaf_id = full.to_block().unwrap().0;
            assert!(
                matches!(&err, Error::Corrupt { cid, .. } if *cid == leaf_id),
                "{err}"
            );
            assert!(err.to_string().contains(expect), "{expect}: {err}");
            assert!(out.is_empty());
        }
    }

    #[test]
    fn a_deeper_than_needed_root_is_refused() {
        let (_dir, store) = store(u64::MAX);
        let file = put(&store, b"tiny");
        let leaf_len = store.get_block(&file.cid).unwrap().len() as u64;
        let leaf = store.stat(&file.cid).unwrap();
        let root = Manifest {
            version: MANIFEST_VERSION,
            size: 4,
            depth: 1,
            entries: vec![ManifestEntry {
                cid: file.cid,
                raw_len: 4,
                stored_len: leaf.stored_total(leaf_len as usize),
            }],
            name: None,
            media_type: None,
        };
        let root = store_manifest(&store, &root);
        let err = failing_get(&store, &root).0;
        assert!(err.to_string().contains("at least 2 entries"), "{err}");
        assert!(err.to_string().contains(&root.to_string()), "{err}");
    }

    /// Counts nothing, remembers the last byte written.
    #[derive(Default)]
    struct TailSink {
        last: Option<u8>,
    }

    impl std::io::Write for TailSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(&b) = buf.last() {
                self.last = Some(b);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
