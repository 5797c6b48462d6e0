//! Garbage collection: mark every block reachable from a pin, sweep the rest.
//!
//! Runs under the store's writer lock, so no put commits while it looks, and keeps the blocks
//! running puts have registered ([`Store::use_block`]: staged by them, or found already stored
//! and named by their manifests), holding that registry for its whole run. The mark
//! phase reads (and verifies) every manifest of every pinned file; if one cannot be read, gc
//! stops before removing anything, since it could no longer tell that file's chunks from
//! garbage. The sweep removes unmarked blocks from the index in one durable commit, then deletes
//! their files, then deletes block files the index does not list (left by a put that was killed
//! or failed): a crash between the commit and the deletions leaves only such unlisted files,
//! which the next gc removes.

use std::{
    collections::{HashMap, HashSet},
    fs,
};

use redb::{ReadableDatabase, ReadableTable};
use warren_protocol::ContentId;

#[cfg(test)]
use crate::PinInfo;
use crate::{
    Error, Store,
    cache::{self, Cached},
    read,
    store::{INDEX, index_key},
};

/// What a gc removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blocks removed (including block files no index entry listed).
    pub blocks_removed: u64,
    /// Their bytes.
    pub bytes_freed: u64,
}

/// The blocks gc keeps: those running puts use (`in_flight`), every block of a pinned file, and
/// the blocks held for the mesh.
fn live(store: &Store, in_flight: &HashMap<ContentId, u32>) -> Result<HashSet<ContentId>, Error> {
    let mut live: HashSet<ContentId> = in_flight.keys().copied().collect();
    for pin in store.pins()? {
        let (root, summary) = read::summarize(store, &pin.cid, false)?;
        live.extend(summary.blocks);
        if root.is_directory() {
            live.extend(store.directory_blocks(&pin.cid)?);
        }
    }
    live.extend(store.held()?);
    Ok(live)
}

/// [`Store::trim_cache`]: removes the least recently used of the blocks gc would remove until
/// the rest fit `budget` bytes; returns what went and the indexed blocks that stay. The caller
/// holds the writer lock.
pub(crate) fn trim(
    store: &Store,
    budget: u64,
    uses: &HashMap<ContentId, u64>,
) -> Result<(GcReport, HashSet<ContentId>), Error> {
    let in_flight = store.lock_in_flight();
    let live = live(store, &in_flight)?;
    let mut cached = Vec::new();
    let mut indexed = HashSet::new();
    {
        let tx = store.db().begin_read()?;
        let index = tx.open_table(INDEX)?;
        for row in index.iter()? {
            let (key, len) = row?;
            let cid = index_key(key.value())?;
            indexed.insert(cid);
            if !live.contains(&cid) {
                cached.push(Cached {
                    cid,
                    len: len.value(),
                    last_use: uses.get(&cid).copied(),
                });
            }
        }
    }
    let gone = cache::evictions(&cached, budget);
    let (blocks_removed, bytes_freed) = store.remove_blocks(&gone)?;
    for cid in &gone {
        indexed.remove(cid);
    }
    Ok((
        GcReport {
            blocks_removed,
            bytes_freed,
        },
        indexed,
    ))
}

/// See the module doc. The caller holds the writer lock.
pub(crate) fn run(store: &Store) -> Result<GcReport, Error> {
    let in_flight = store.lock_in_flight();
    let live = live(store, &in_flight)?;

    let dead: Vec<ContentId> = {
        let tx = store.db().begin_read()?;
        let index = tx.open_table(INDEX)?;
        let mut dead = Vec::new();
        for row in index.iter()? {
            let (key, _) = row?;
            let cid = index_key(key.value())?;
            if !live.contains(&cid) {
                dead.push(cid);
            }
        }
        dead
    };
    let (mut blocks_removed, mut bytes_freed) = store.remove_blocks(&dead)?;

    // Block files the index does not list.
    let shards = fs::read_dir(store.blocks_dir()).map_err(Error::io(store.blocks_dir()))?;
    for shard in shards {
        let shard = shard.map_err(Error::io(store.blocks_dir()))?.path();
        if !shard.is_dir() {
            continue;
        }
        for file in fs::read_dir(&shard).map_err(Error::io(&shard))? {
            let path = file.map_err(Error::io(&shard))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            // A temporary block file of an older layout (`<cid>.<pid>-<n>.tmp`, written next
            // to the block; now they live in DIR/tmp/): a crash's leftover.
            let legacy_tmp = name.ends_with(".tmp")
                && name
                    .split('.')
                    .next()
                    .is_some_and(|c| c.parse::<ContentId>().is_ok());
            if !legacy_tmp {
                // Only files named like blocks: anything else is not ours to delete.
                let Ok(cid) = name.parse::<ContentId>() else {
                    continue;
                };
                if store.block_path(&cid) != path || store.has_block(&cid)? {
                    continue;
                }
            }
            let len = fs::metadata(&path).map_err(Error::io(&path))?.len();
            fs::remove_file(&path).map_err(Error::io(&path))?;
            blocks_removed += 1;
            bytes_freed += len;
        }
    }
    Ok(GcReport {
        blocks_removed,
        bytes_freed,
    })
}

#[cfg(test)]
mod tests {
    use warren_protocol::{CHUNK_SIZE, Codec};

    use super::*;
    use crate::{
        PutOptions,
        store::index_len,
        test_util::{get, put, put_with, store},
        testdata::random_chunk,
    };

    fn unpinned() -> PutOptions {
        PutOptions {
            pin: false,
            ..PutOptions::default()
        }
    }

    #[test]
    fn trim_cache_keeps_cached_blocks_within_a_quarter_of_the_offer_least_recently_used_first() {
        let mib = CHUNK_SIZE as u64;
        let (_dir, store) = store(16 * mib);
        let data = |seed| random_chunk(seed, 2 * CHUNK_SIZE);
        let pinned = put(&store, &data(1));
        let (a, b, c) = (
            put_with(&store, &data(2), &unpinned()),
            put_with(&store, &data(3), &unpinned()),
            put_with(&store, &data(4), &unpinned()),
        );
        // Within the budget (4 MiB): nothing to do.
        let small = crate::test_util::store(16 * mib);
        put_with(&small.1, &data(5), &unpinned());
        assert_eq!(small.1.trim_cache().unwrap(), GcReport::default());
        // a is read: the most recent. b and c were never read here: the oldest.
        assert_eq!(get(&store, &a.cid), data(2));
        let report = store.trim_cache().unwrap();
        assert!(report.blocks_removed >= 3, "{report:?}");
        assert_eq!(get(&store, &a.cid), data(2));
        assert_eq!(get(&store, &pinned.cid), data(1));
        let gone = [b.cid, c.cid]
            .iter()
            .filter(|cid| store.get(cid, std::io::sink(), &|_| {}).is_err())
            .count();
        assert!(gone >= 1);
        let pinned_bytes = store.pins().unwrap()[0].stored_bytes;
        let cached = store.usage().unwrap().stored_bytes - pinned_bytes;
        assert!(cached <= 4 * mib, "{cached}");
        // Trimming again changes nothing.
        assert_eq!(store.trim_cache().unwrap().blocks_removed, 0);
    }

    #[test]
    fn gc_removes_unpinned_blocks_and_keeps_pinned_and_shared_ones() {
        let (_dir, store) = store(u64::MAX);
        let shared = random_chunk(1, CHUNK_SIZE);
        let kept_data = [&shared[..], &random_chunk(2, CHUNK_SIZE)].concat();
        let gone_data = [&shared[..], &random_chunk(3, CHUNK_SIZE + 10)].concat();
        let kept = put(&store, &kept_data);
        let gone = put_with(&store, &gone_data, &unpinned());
        let before = store.usage().unwrap();
        assert_eq!(before.blocks, 3 + 3, "the shared chunk is stored once");

        let report = store.gc().unwrap();
        // `gone`'s manifest and its two own chunks.
        assert_eq!(report.blocks_removed, 3);
        let after = store.usage().unwrap();
        assert_eq!(after.blocks, 3);
        assert_eq!(report.bytes_freed, before.stored_bytes - after.stored_bytes);
        assert_eq!(after.stored_bytes, kept.stored_bytes);
        assert_eq!(get(&store, &kept.cid), kept_data);
        let err = store.get(&gone.cid, &mut Vec::new(), &|_| {}).unwrap_err();
        assert!(
            matches!(err, Error::Missing { cid } if cid == gone.cid),
            "{err}"
        );

        // Nothing left to collect.
        assert_eq!(store.gc().unwrap(), GcReport::default());

        // Unpinned, everything goes, files included.
        assert!(store.unpin(&kept.cid).unwrap());
        assert!(!store.unpin(&kept.cid).unwrap());
        let report = store.gc().unwrap();
        assert_eq!(report.blocks_removed, 3);
        assert_eq!(store.usage().unwrap().blocks, 0);
        assert_eq!(store.usage().unwrap().stored_bytes, 0);
        assert_eq!(index_len(&store), 0);
        assert_eq!(files_in(store.blocks_dir()), 0);
    }

    #[test]
    fn pin_lists_and_requires_the_whole_dag() {
        let (_dir, store) = store(u64::MAX);
        let data = random_chunk(4, 2 * CHUNK_SIZE + 1);
        let opts = PutOptions {
            name: Some("report.pdf".into()),
            media_type: Some("application/pdf".into()),
            pin: false,
        };
        let file = put_with(&store, &data, &opts);
        assert!(store.pins().unwrap().is_empty());
        store.pin(&file.cid).unwrap();
        store.pin(&file.cid).unwrap(); // idempotent
        let pins = store.pins().unwrap();
        assert_eq!(
            pins,
            vec![PinInfo {
                cid: file.cid,
                size: data.len() as u64,
                name: Some("report.pdf".into()),
                blocks: 4,
                stored_bytes: file.stored_bytes,
                class: warren_protocol::Class::Public,
            }]
        );

        // A file with a chunk missing cannot be pinned.
        let other = put_with(&store, &random_chunk(5, 2 * CHUNK_SIZE), &unpinned());
        let chunks = store.stat(&other.cid).unwrap().entries;
        store.remove_blocks(&[chunks[1].cid]).unwrap();
        let err = store.pin(&other.cid).unwrap_err();
        assert!(
            matches!(err, Error::Incomplete { root, missing } if root == other.cid && missing == chunks[1].cid),
            "{err}"
        );
        let unknown = ContentId::of_block(Codec::Cbor, b"?");
        let err = store.pin(&unknown).unwrap_err();
        assert!(matches!(err, Error::Missing { .. }), "{err}");
        assert_eq!(store.pins().unwrap().len(), 1);
    }

    #[test]
    fn pin_info_counts_distinct_blocks() {
        let (_dir, store) = store(u64::MAX);
        let file = put(&store, &vec![7u8; 4 * CHUNK_SIZE]);
        let pin = &store.pins().unwrap()[0];
        assert_eq!((pin.blocks, pin.stored_bytes), (2, file.stored_bytes));
        assert_eq!(file.blocks, 2);
    }

    #[test]
    fn gc_removes_unlisted_block_files_and_leaves_other_files() {
        let (_dir, store) = store(u64::MAX);
        let kept = put(&store, &random_chunk(6, CHUNK_SIZE));
        // A block file written by a put that was killed before its commit.
        let stray = ContentId::of_block(Codec::Raw, b"stray");
        std::fs::write(store.block_path(&stray), vec![1; 50_000]).unwrap();
        let foreign = store.blocks_dir().join("00").join("README");
        std::fs::write(&foreign, b"not a block").unwrap();
        // A temporary file of the older layout (next to the block), left by a crash.
        let legacy = store.block_path(&stray).with_extension("4242-7.tmp");
        std::fs::write(&legacy, vec![2; 1000]).unwrap();
        let other_tmp = store.blocks_dir().join("00").join("notes.tmp");
        std::fs::write(&other_tmp, b"not ours").unwrap();

        let report = store.gc().unwrap();
        assert_eq!(
            report,
            GcReport {
                blocks_removed: 2,
                bytes_freed: 51_000
            }
        );
        assert!(!store.block_path(&stray).exists());
        assert!(!legacy.exists());
        assert!(foreign.exists() && other_tmp.exists());
        assert_eq!(get(&store, &kept.cid), random_chunk(6, CHUNK_SIZE));
    }

    #[test]
    fn gc_refuses_to_sweep_when_a_pinned_manifest_is_unreadable() {
        let (_dir, store) = store(u64::MAX);
        let pinned = put(&store, &random_chunk(7, 3 * CHUNK_SIZE));
        let garbage = put_with(&store, b"garbage", &unpinned());
        store.corrupt_block(&pinned.cid, 10);
        let blocks = store.usage().unwrap().blocks;
        let err = store.gc().unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { cid, .. } if cid == pinned.cid),
            "{err}"
        );
        assert_eq!(store.usage().unwrap().blocks, blocks, "nothing removed");
        assert_eq!(get(&store, &garbage.cid), b"garbage");
    }

    fn files_in(blocks_dir: &std::path::Path) -> usize {
        std::fs::read_dir(blocks_dir)
            .unwrap()
            .map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap().count())
            .sum()
    }
}
