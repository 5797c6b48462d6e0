//! Garbage collection: mark every block reachable from a pin, sweep the rest.
//!
//! Runs under the store's writer lock, so no put is half-way through while it looks. The mark
//! phase reads (and verifies) every manifest of every pinned file; if one cannot be read, gc
//! stops before removing anything, since it could no longer tell that file's chunks from
//! garbage. The sweep removes unmarked blocks from the index in one durable commit, then deletes
//! their files, then deletes block files the index does not list (left by a put that was killed
//! or failed): a crash between the commit and the deletions leaves only such unlisted files,
//! which the next gc removes.

use std::{collections::HashSet, fs};

use redb::{ReadableDatabase, ReadableTable};
use warren_protocol::ContentId;

use crate::{
    Error, Store, read,
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

/// See the module doc. The caller holds the writer lock.
pub(crate) fn run(store: &Store) -> Result<GcReport, Error> {
    let mut live: HashSet<ContentId> = HashSet::new();
    for pin in store.pins()? {
        let (_, summary) = read::summarize(store, &pin.cid, false)?;
        live.extend(summary.blocks);
    }

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
            // Only files named like blocks: anything else is not ours to delete.
            let Some(cid) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<ContentId>().ok())
            else {
                continue;
            };
            if store.block_path(&cid) != path || store.has_block(&cid)? {
                continue;
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
