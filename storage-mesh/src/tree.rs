//! Building a file's manifest tree as its chunks arrive, children first and the root last.
//!
//! Each level holds the entries of the manifest being filled at that depth. A full level is
//! sealed into a manifest only when one more entry arrives for it, so a file of exactly
//! `fanout` chunks gets a single depth-0 root; at the end every partial level is sealed into its
//! parent and the top level becomes the root, which alone carries the name and media type. That
//! gives the one tree `spec/storage.md` allows: every chunk at the same depth, every entry but the
//! last of each manifest full, and a root above depth 0 with at least two entries.

use warren_protocol::{
    ContentId, MANIFEST_FANOUT, MANIFEST_VERSION, Manifest, ManifestEntry,
    manifest::MAX_MANIFEST_DEPTH,
};

use crate::Error;

/// An encoded manifest block: id, bytes.
pub(crate) type Block = (ContentId, Vec<u8>);

/// How a manifest becomes a block. [`Manifest::to_block`] in production; tests of small fan-outs
/// (which the spec's validation refuses) use their own.
type Seal = fn(&Manifest) -> Result<Block, warren_protocol::Error>;

/// Collects a file's chunk entries into its manifest tree.
pub(crate) struct TreeBuilder {
    fanout: usize,
    seal: Seal,
    levels: Vec<Vec<ManifestEntry>>,
    /// The root's version: [`MANIFEST_VERSION`] for a file, `DIRECTORY_VERSION` for a
    /// directory's listing (the manifests below a root are always version 1).
    root_version: u16,
}

impl TreeBuilder {
    pub(crate) fn new() -> Self {
        Self {
            fanout: MANIFEST_FANOUT,
            seal: Manifest::to_block,
            levels: Vec::new(),
            root_version: MANIFEST_VERSION,
        }
    }

    /// A builder for a directory's listing: its root gets `DIRECTORY_VERSION`.
    pub(crate) fn directory() -> Self {
        Self {
            root_version: warren_protocol::DIRECTORY_VERSION,
            ..Self::new()
        }
    }

    /// Adds the next chunk; appends to `out` the manifest blocks this completes.
    pub(crate) fn push(&mut self, entry: ManifestEntry, out: &mut Vec<Block>) -> Result<(), Error> {
        self.push_at(0, entry, out)
    }

    fn push_at(
        &mut self,
        depth: usize,
        entry: ManifestEntry,
        out: &mut Vec<Block>,
    ) -> Result<(), Error> {
        if self.levels.len() <= depth {
            self.levels.push(Vec::with_capacity(self.fanout));
        }
        if self.levels[depth].len() == self.fanout {
            let entries =
                std::mem::replace(&mut self.levels[depth], Vec::with_capacity(self.fanout));
            let sealed = self.seal(depth, entries, None, None, out)?;
            self.push_at(depth + 1, sealed, out)?;
        }
        self.levels[depth].push(entry);
        Ok(())
    }

    /// Seals every level into the tree and returns the root manifest; its block is the last one
    /// appended to `out`.
    pub(crate) fn finish(
        mut self,
        name: Option<String>,
        media_type: Option<String>,
        out: &mut Vec<Block>,
    ) -> Result<Manifest, Error> {
        let mut depth = 0;
        while depth + 1 < self.levels.len() {
            let entries = std::mem::take(&mut self.levels[depth]);
            if !entries.is_empty() {
                let sealed = self.seal(depth, entries, None, None, out)?;
                self.push_at(depth + 1, sealed, out)?;
            }
            depth += 1;
        }
        let top = self.levels.len().saturating_sub(1);
        let entries = self.levels.pop().unwrap_or_default();
        let mut manifest = build(top, entries, name, media_type);
        manifest.version = self.root_version;
        let (cid, bytes) = (self.seal)(&manifest).map_err(|e| Error::BuildManifest(Box::new(e)))?;
        out.push((cid, bytes));
        Ok(manifest)
    }

    /// Encodes a manifest of `depth` and returns the parent's entry for it.
    fn seal(
        &self,
        depth: usize,
        entries: Vec<ManifestEntry>,
        name: Option<String>,
        media_type: Option<String>,
        out: &mut Vec<Block>,
    ) -> Result<ManifestEntry, Error> {
        if depth >= usize::from(MAX_MANIFEST_DEPTH) {
            // Unreachable for a u64 size (depth 4 covers 2^70 bytes); checked all the same.
            return Err(Error::BuildManifest(Box::new(
                warren_protocol::Error::TooLarge {
                    what: "manifest tree depth",
                    len: depth + 1,
                    limit: usize::from(MAX_MANIFEST_DEPTH),
                },
            )));
        }
        let manifest = build(depth, entries, name, media_type);
        let (cid, bytes) = (self.seal)(&manifest).map_err(|e| Error::BuildManifest(Box::new(e)))?;
        let entry = ManifestEntry {
            cid,
            raw_len: manifest.size,
            stored_len: manifest.stored_total(bytes.len()),
        };
        out.push((cid, bytes));
        Ok(entry)
    }
}

fn build(
    depth: usize,
    entries: Vec<ManifestEntry>,
    name: Option<String>,
    media_type: Option<String>,
) -> Manifest {
    Manifest {
        version: MANIFEST_VERSION,
        size: entries
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.raw_len)),
        // Bounded by MAX_MANIFEST_DEPTH in `seal`.
        depth: depth as u8,
        entries,
        name,
        media_type,
    }
}

#[cfg(test)]
mod tests {
    use warren_protocol::{CHUNK_SIZE, Codec};

    use super::*;

    const MIB: u64 = CHUNK_SIZE as u64;

    fn chunk(i: u64, raw_len: u64) -> ManifestEntry {
        ManifestEntry {
            cid: ContentId::of_block(Codec::Raw, &i.to_le_bytes()),
            raw_len,
            stored_len: raw_len + 1,
        }
    }

    /// A seal that skips validation (the spec's rules assume the real fan-out): the "block" is
    /// a line of text with what the checks need, and the entries' ids to keep ids distinct.
    fn fake_seal(m: &Manifest) -> Result<Block, warren_protocol::Error> {
        let mut text = format!(
            "{} {} {} {}",
            m.depth,
            m.size,
            m.entries.len(),
            m.name.is_some()
        );
        for e in &m.entries {
            text += &format!(" {}", e.cid);
        }
        Ok((
            ContentId::of_block(Codec::Cbor, text.as_bytes()),
            text.into_bytes(),
        ))
    }

    /// What a fake block says: depth, size, number of entries, named.
    struct Sealed {
        depth: u8,
        size: u64,
        entries: usize,
        named: bool,
    }

    fn parse(bytes: &[u8]) -> Sealed {
        let text = std::str::from_utf8(bytes).unwrap();
        let f: Vec<&str> = text.split(' ').collect();
        Sealed {
            depth: f[0].parse().unwrap(),
            size: f[1].parse().unwrap(),
            entries: f[2].parse().unwrap(),
            named: f[3] == "true",
        }
    }

    /// Builds the tree of `n` chunks (the last one `last` bytes long) and returns every
    /// manifest sealed, in the order they were sealed (root last).
    fn build_tree(fanout: usize, n: u64, last: u64) -> Vec<Sealed> {
        let mut builder = TreeBuilder {
            fanout,
            seal: fake_seal,
            levels: Vec::new(),
            root_version: MANIFEST_VERSION,
        };
        let mut out = Vec::new();
        for i in 0..n {
            let raw_len = if i + 1 == n { last } else { MIB };
            builder.push(chunk(i, raw_len), &mut out).unwrap();
        }
        builder.finish(Some("f".into()), None, &mut out).unwrap();
        out.iter().map(|(_, bytes)| parse(bytes)).collect()
    }

    fn check_tree(fanout: usize, n: u64, last: u64, depth: u8, manifests: usize) {
        let tree = build_tree(fanout, n, last);
        assert_eq!(tree.len(), manifests, "{n} chunks: manifests");
        let root = tree.last().unwrap();
        assert_eq!(root.depth, depth, "{n} chunks: root depth");
        assert_eq!(
            root.size,
            n.saturating_sub(1) * MIB + if n > 0 { last } else { 0 },
            "{n} chunks: size"
        );
        assert!(root.named);
        for m in &tree[..tree.len() - 1] {
            assert!(!m.named, "only the root is named");
            assert!(m.entries <= fanout);
            assert!(m.depth < depth);
            assert!(m.entries >= 1);
        }
        if depth > 0 {
            assert!(root.entries >= 2);
        }
    }

    #[test]
    fn small_files_get_one_manifest() {
        check_tree(4, 0, 0, 0, 1);
        check_tree(4, 1, 1, 0, 1);
        check_tree(4, 4, MIB, 0, 1);
    }

    #[test]
    fn a_full_level_is_sealed_only_when_more_follows() {
        // 5 chunks with fan-out 4: two leaves (4 + 1) under a depth-1 root.
        check_tree(4, 5, 10, 1, 3);
        // 16 chunks: four full leaves under one depth-1 root.
        check_tree(4, 16, MIB, 1, 5);
        // 17 chunks: a depth-2 root over a full depth-1 manifest (4 leaves) and a depth-1
        // manifest with one entry, the 17th chunk's leaf: every path from the root to a chunk
        // has the same length.
        check_tree(4, 17, 1, 2, 8);
        // 64 chunks: depth 2, 16 leaves, 4 depth-1 manifests, the root.
        check_tree(4, 64, MIB, 2, 21);
        // 65 chunks: depth 3.
        check_tree(4, 65, 3, 3, 25);
    }

    #[test]
    fn leaf_entry_counts_follow_the_fanout() {
        for n in 0..=40 {
            let tree = build_tree(3, n, 7);
            let leaves: Vec<_> = tree.iter().filter(|m| m.depth == 0).collect();
            let expected = if n == 0 { 1 } else { n.div_ceil(3) };
            assert_eq!(leaves.len() as u64, expected, "{n}");
            for (i, leaf) in leaves.iter().enumerate() {
                if i + 1 < leaves.len() {
                    assert_eq!(leaf.entries, 3, "{n}: leaf {i} is full");
                }
            }
        }
    }

    #[test]
    fn real_fanout_output_validates() {
        // 3 chunks with the spec's fan-out and the real seal: a valid depth-0 root.
        let mut builder = TreeBuilder::new();
        let mut out = Vec::new();
        for i in 0..3 {
            builder
                .push(chunk(i, if i == 2 { 5 } else { MIB }), &mut out)
                .unwrap();
        }
        assert!(out.is_empty());
        let root = builder
            .finish(
                Some("a.bin".into()),
                Some("application/octet-stream".into()),
                &mut out,
            )
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(Manifest::decode(&out[0].1).unwrap(), root);
        assert_eq!(root.size, 2 * MIB + 5);
    }
}
