//! Directories in the store (`spec/storage.md`, "Directories"): a listing stored as the content
//! of a version-2 root, read back verified and decoded, and the blocks a pinned directory keeps.
//!
//! The listing is chunked and put exactly as a file is ([`ingest::put_tree`]), so everything that
//! handles a file's blocks (fetch, replication, audits, repair) handles a directory's listing the
//! same way; what is new is that a directory's entries name other roots, which [`Store::put_directory`]
//! checks (each entry's kind and size are those of the root it names, read here) and
//! [`Store::directory_blocks`] follows for gc.

use std::collections::HashSet;

use warren_protocol::{
    Class, ContentId, DirEntry, Directory, EntryKind, directory::DIRECTORY_MEDIA_TYPE,
};

use crate::{Error, PutOptions, PutOutcome, Store, ingest, read, store::Ready, tree::TreeBuilder};

/// Most roots one walk of a directory tree visits (files and directories, each distinct root
/// once): bounds gc's and a fetch's work on a hostile tree that repeats subdirectories.
pub const MAX_TREE_ROOTS: usize = 1 << 22;

impl Store {
    /// Stores a directory listing (sorted and checked here) as a version-2 root; pins it if
    /// `pin`. Every entry must name a root in this store, and its kind and size are set from
    /// that root (a file's size, a directory's total), so the id depends only on the tree.
    pub fn put_directory(
        &self,
        names: Vec<(String, ContentId)>,
        pin: bool,
    ) -> Result<PutOutcome, Error> {
        let mut dir = Directory::default();
        for (name, cid) in names {
            dir.entries.push(self.entry_for(name, &cid)?);
        }
        dir.sort();
        let bytes = dir.encode().map_err(|e| Error::Options(Box::new(e)))?;
        let opts = PutOptions {
            name: None,
            media_type: Some(DIRECTORY_MEDIA_TYPE.into()),
            pin,
        };
        ingest::put_tree(
            self,
            bytes.as_slice(),
            &opts,
            Class::Public,
            &|_| {},
            TreeBuilder::directory(),
        )
    }

    /// The entry `name` for the root `cid`, which must be stored here.
    fn entry_for(&self, name: String, cid: &ContentId) -> Result<DirEntry, Error> {
        let root = self.stat(cid)?;
        let (kind, size) = if root.is_directory() {
            let listing = self.read_directory(cid)?;
            (EntryKind::Dir, listing.total_size().unwrap_or(u64::MAX))
        } else {
            (EntryKind::File, root.size)
        };
        Ok(DirEntry {
            name,
            kind,
            cid: *cid,
            size,
        })
    }

    /// The listing of the directory `cid`, every block verified, decoded and checked (names,
    /// order, uniqueness); its blocks must be stored.
    pub fn read_directory(&self, cid: &ContentId) -> Result<Directory, Error> {
        self.read_directory_when_ready(cid, &|_| Ok(None))
    }

    /// [`Store::read_directory`] while the listing's chunks arrive (see [`Store::get_when_ready`]).
    pub fn read_directory_when_ready(
        &self,
        cid: &ContentId,
        ready: &Ready<'_>,
    ) -> Result<Directory, Error> {
        let bytes = read::listing_bytes(self, cid, ready)?;
        Directory::decode(cid, &bytes).map_err(|e| {
            let text = e.to_string();
            // The protocol's message names the directory too: say it once.
            let prefix = format!("directory {cid}: ");
            Error::BadDirectory {
                cid: *cid,
                reason: text.strip_prefix(&prefix).unwrap_or(&text).to_owned(),
            }
        })
    }

    /// Every block of the directory `root` and of what it contains that is stored here: the
    /// blocks gc keeps for a pinned directory. Each distinct root is walked once; an entry whose
    /// root is not stored here has nothing here to keep and is skipped.
    pub fn directory_blocks(&self, root: &ContentId) -> Result<HashSet<ContentId>, Error> {
        let mut blocks = HashSet::new();
        let mut seen = HashSet::from([*root]);
        let mut dirs = vec![*root];
        while let Some(dir) = dirs.pop() {
            let listing = match self.directory_part(&dir, &mut blocks) {
                Ok(Some(listing)) => listing,
                Ok(None) => continue,
                Err(e) if dir == *root => return Err(e),
                // A child that is not what its entry says keeps only the blocks found so far:
                // a bad entry must not stop gc from collecting everything else.
                Err(_) => continue,
            };
            for e in listing.entries {
                if !seen.insert(e.cid) {
                    continue;
                }
                if seen.len() > MAX_TREE_ROOTS {
                    return Err(Error::BadDirectory {
                        cid: *root,
                        reason: format!("it names more than {MAX_TREE_ROOTS} distinct roots"),
                    });
                }
                match e.kind {
                    EntryKind::Dir => dirs.push(e.cid),
                    EntryKind::File => {
                        if let Ok((_, summary)) = read::summarize(self, &e.cid, false) {
                            blocks.extend(summary.blocks);
                        }
                    }
                }
            }
        }
        Ok(blocks)
    }

    /// Adds the listing blocks of the directory `dir` to `blocks` and returns its listing, or
    /// `None` when not all of it is stored here.
    fn directory_part(
        &self,
        dir: &ContentId,
        blocks: &mut HashSet<ContentId>,
    ) -> Result<Option<Directory>, Error> {
        match read::summarize(self, dir, false) {
            Ok((_, summary)) => blocks.extend(summary.blocks),
            Err(Error::Missing { .. } | Error::Incomplete { .. }) => return Ok(None),
            Err(e) => return Err(e),
        }
        match self.read_directory(dir) {
            Ok(listing) => Ok(Some(listing)),
            Err(Error::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use warren_protocol::{CHUNK_SIZE, Manifest};

    use super::*;
    use crate::test_util::{get, put_with, store};

    fn file(store: &Store, name: &str, data: &[u8], pin: bool) -> ContentId {
        let opts = PutOptions {
            name: Some(name.into()),
            media_type: None,
            pin,
        };
        put_with(store, data, &opts).cid
    }

    /// a.txt, sub/b.bin (2 MiB + 1), sub/empty/ — files unpinned, only the top pinned.
    fn tree(store: &Store) -> (ContentId, ContentId, ContentId) {
        let a = file(store, "a.txt", b"hello", false);
        let big: Vec<u8> = (0..2 * CHUNK_SIZE + 1)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let b = file(store, "b.bin", &big, false);
        let empty = store.put_directory(Vec::new(), false).unwrap().cid;
        let sub = store
            .put_directory(vec![("b.bin".into(), b), ("empty".into(), empty)], false)
            .unwrap()
            .cid;
        let top = store
            .put_directory(vec![("sub".into(), sub), ("a.txt".into(), a)], true)
            .unwrap()
            .cid;
        (top, sub, b)
    }

    #[test]
    fn a_directory_round_trips_and_is_not_a_file() {
        let (_d, s) = store(1 << 30);
        let (top, sub, b) = tree(&s);
        let listing = s.read_directory(&top).unwrap();
        let names: Vec<_> = listing.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a.txt", "sub"]);
        assert_eq!(listing.entries[0].kind, EntryKind::File);
        assert_eq!(listing.entries[0].size, 5);
        assert_eq!(listing.entries[1].kind, EntryKind::Dir);
        assert_eq!(listing.entries[1].cid, sub);
        assert_eq!(listing.entries[1].size, 2 * CHUNK_SIZE as u64 + 1);
        assert!(s.stat(&top).unwrap().is_directory());
        let err = s.get(&top, Vec::new(), &|_| {}).unwrap_err();
        assert!(matches!(err, Error::IsDirectory { .. }), "{err}");
        assert!(err.to_string().contains("warren ls"), "{err}");
        let err = s.read_directory(&b).unwrap_err();
        assert!(matches!(err, Error::NotADirectory { .. }), "{err}");
        // The root is a version-2 manifest, which a version-1 reader refuses (UnsupportedVersion).
        let root = s.get_block(&top).unwrap();
        let decoded: Manifest = Manifest::decode(&root).unwrap();
        assert_eq!(decoded.version, warren_protocol::DIRECTORY_VERSION);
    }

    #[test]
    fn equal_trees_get_equal_ids_in_any_store_in_any_order() {
        let (_d1, s1) = store(1 << 30);
        let (_d2, s2) = store(1 << 30);
        let (top1, ..) = tree(&s1);
        let (top2, ..) = tree(&s2);
        assert_eq!(top1, top2);
        // An entry that names a root not stored here is refused.
        let (_d3, s3) = store(1 << 30);
        assert!(s3.put_directory(vec![("x".into(), top1)], true).is_err());
        // Bad names are refused.
        let a = file(&s1, "a", b"a", true);
        for bad in ["..", "a/b", "", "n\0ul"] {
            let err = s1.put_directory(vec![(bad.into(), a)], true).unwrap_err();
            assert!(matches!(err, Error::Options(_)), "{bad:?}: {err}");
        }
        let err = s1
            .put_directory(vec![("a".into(), a), ("a".into(), a)], true)
            .unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn gc_keeps_every_block_of_a_pinned_directory_and_frees_it_once_unpinned() {
        let (_d, s) = store(1 << 30);
        let (top, _, b) = tree(&s);
        s.gc().unwrap();
        let mut out = Vec::new();
        s.get(&b, &mut out, &|_| {}).unwrap();
        assert_eq!(out.len(), 2 * CHUNK_SIZE + 1);
        assert!(s.read_directory(&top).is_ok());
        s.unpin(&top).unwrap();
        let report = s.gc().unwrap();
        assert!(report.blocks_removed >= 6, "{report:?}");
        assert!(!s.has_block(&b).unwrap());
    }

    #[test]
    fn a_large_directory_is_split_into_chunks_as_a_file_is() {
        let (_d, s) = store(1 << 30);
        let a = file(&s, "a", b"a", true);
        // ~5000 entries of ~250-byte names: a listing over one chunk.
        let names: Vec<_> = (0..5000)
            .map(|i| (format!("{i:05}{}", "x".repeat(240)), a))
            .collect();
        let top = s.put_directory(names, true).unwrap().cid;
        let root = s.stat(&top).unwrap();
        assert!(root.size > CHUNK_SIZE as u64, "{}", root.size);
        assert!(root.entries.len() >= 2);
        let listing = s.read_directory(&top).unwrap();
        assert_eq!(listing.entries.len(), 5000);
        assert_eq!(get(&s, &a), b"a");
    }
}
