//! The put pipeline: a file in, chunk blocks and a manifest tree stored, its id out.
//!
//! ```text
//!          free buffers (`slots` of them: at most that many chunks in flight)
//!     ┌──────────────────────────────────────────────────────────────┐
//!     ▼                                                              │
//!  reader ──(i, chunk)──▶ N workers ──(i, block, id)──▶ writer (the caller's thread)
//!  1 MiB chunks           brotli + BLAKE3               in order: dedup, offer, write the
//!                                                       block file (DIR/tmp/), grow the tree
//!                                                              │ each file written
//!                                                              ▼
//!                                                      syncer: fsync each file as it comes
//!
//!  at the end, under the store's writer lock: check the offer, rename the new files into
//!  place, fsync their directories, commit every index entry and the pin in one durable commit
//! ```
//!
//! No lock is held while the input is read: a put whose uploader stalls holds up no other put,
//! pushed replica or gc. The blocks the put uses are registered with the store
//! ([`Store::use_block`]) so that gc keeps them until the put ends.
//!
//! Plain threads and bounded `std::sync::mpsc::sync_channel`s, not rayon: the pipeline needs a
//! strict bound on chunks in memory (the free-buffer tokens) and results in file order (the
//! writer reorders by index), which a work-stealing pool gives neither of; and a put should not
//! borrow a global pool the node may use for other work. N is `available_parallelism`; the
//! reader, writer and syncer mostly wait on I/O.
//!
//! Memory: at most `slots` = max(2N, 4) chunks are in flight, each a 1 MiB buffer and a block of
//! at most 1 MiB + 1; the writer holds the file's index entries (about 50 bytes
//! per MiB, and the bytes of its few inline blocks) and its distinct block ids (to count and dedup them, 33 bytes and some overhead per MiB). Written blocks are in
//! the page cache, not in this process, and at most [`SYNC_QUEUE`] files wait for their fsync
//! (beyond that the writer waits: the disk sets the pace). fsync happens on the syncer while the
//! writer goes on, so the writer never stalls the workers on the disk, and each file is flushed
//! as soon as it is written, so the end of a put waits for little more than the last files.
//!
//! On error the pipeline shuts down (every thread sees its channel close) and the put's
//! temporary files are removed: nothing of it was indexed.

use std::{
    collections::{BTreeMap, HashSet},
    io::{self, Read},
    num::NonZero,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        mpsc::{Receiver, SyncSender, sync_channel},
    },
    thread,
};

use warren_protocol::{CHUNK_SIZE, Class, Codec, ContentId, Manifest, ManifestEntry};

use crate::{
    Error, PinInfo, Store, chunk,
    store::{self, Batch},
    tree::{Block, TreeBuilder},
};

/// Most block files written but not yet fsynced during a put.
const SYNC_QUEUE: usize = 64;

/// How to store a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOptions {
    /// The file's name, recorded in its root manifest (at most 255 bytes, no control
    /// characters). Part of what the id names: the same bytes under another name get another id.
    pub name: Option<String>,
    /// The file's media type, e.g. `text/plain` (at most 127 bytes of printable ASCII).
    pub media_type: Option<String>,
    /// Pin the file, so [`Store::gc`] keeps it. Default: `true`.
    pub pin: bool,
}

impl Default for PutOptions {
    fn default() -> Self {
        Self {
            name: None,
            media_type: None,
            pin: true,
        }
    }
}

/// What a put stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    /// The file's id: the id of its root manifest.
    pub cid: ContentId,
    /// Bytes read from the input.
    pub size: u64,
    /// Distinct blocks of the file (chunks and manifests; a chunk repeated in the file counts
    /// once).
    pub blocks: u64,
    /// Bytes of those blocks.
    pub stored_bytes: u64,
    /// Bytes this put added to the store (0 when the file was already there).
    pub new_bytes: u64,
}

/// Messages to the writer.
enum Msg {
    /// Chunk `index`, encoded; `raw` is its buffer, handed back to the reader after use.
    Chunk {
        index: u64,
        raw: Vec<u8>,
        block: Vec<u8>,
        cid: ContentId,
    },
    /// The reader reached the end of the input after this many chunks.
    End(u64),
    /// The reader failed.
    Failed(Error),
}

/// See the module doc.
pub(crate) fn put<R: Read + Send>(
    store: &Store,
    reader: R,
    opts: &PutOptions,
    class: Class,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<PutOutcome, Error> {
    put_tree(store, reader, opts, class, progress, TreeBuilder::new())
}

/// [`put`] with the tree builder to use (a directory's listing gets a version-2 root).
pub(crate) fn put_tree<R: Read + Send>(
    store: &Store,
    reader: R,
    opts: &PutOptions,
    class: Class,
    progress: &(dyn Fn(u64) + Sync),
    tree: TreeBuilder,
) -> Result<PutOutcome, Error> {
    // Sealed streams do not compress: their chunks are stored raw, without trying.
    let compress = !class.is_encrypted();
    // Refuse bad names before reading a byte.
    Manifest::empty(opts.name.clone(), opts.media_type.clone())
        .validate()
        .map_err(|e| Error::Options(Box::new(e)))?;
    let workers = thread::available_parallelism().map_or(1, NonZero::get);
    let slots = (2 * workers).max(4);
    let mut writer = Writer {
        store,
        new_bytes: 0,
        size: 0,
        seen: HashSet::new(),
        dag_bytes: 0,
        batch: Batch::default(),
        tree,
        sealed: Vec::new(),
    };

    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(slots);
    for _ in 0..slots {
        // Cannot fail: the channel has room for every buffer and its receiver is alive.
        let _ = free_tx.send(Vec::new());
    }
    let (work_tx, work_rx) = sync_channel::<(u64, Vec<u8>)>(slots);
    // Shared by the workers and dropped with the last of them, so that a reader blocked on a
    // full queue wakes up when the workers are gone.
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = sync_channel::<Msg>(slots);
    let (sync_tx, sync_rx) = sync_channel::<PathBuf>(SYNC_QUEUE);

    let result = thread::scope(|scope| {
        let syncer = scope.spawn(move || sync_files(sync_rx));
        let reader_done = done_tx.clone();
        scope.spawn(move || read_chunks(reader, free_rx, work_tx, reader_done));
        for _ in 0..workers {
            let (work_rx, done_tx) = (Arc::clone(&work_rx), done_tx.clone());
            scope.spawn(move || encode_chunks(&work_rx, done_tx, compress));
        }
        drop((done_tx, work_rx));

        let written = writer.run(done_rx, free_tx, &sync_tx, progress);
        drop(sync_tx);
        let synced = match syncer.join() {
            Ok(synced) => synced,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        // The syncer's error first: a writer that could not hand it a batch failed because of
        // it.
        synced?;
        written?;
        writer.finish(opts, class)
    });
    if result.is_err() {
        // Nothing of this put is indexed: its temporary files are all it leaves (best effort;
        // the next open removes any left).
        for (_, tmp) in &writer.batch.renames {
            let _ = std::fs::remove_file(tmp);
        }
    }
    store.unuse_blocks(&writer.seen);
    result
}

/// A chunk encoded elsewhere (a sandboxed worker): its block, the block's id and the length of
/// the chunk it encodes. [`Store::put_encoded`] checks it before storing anything of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedChunk {
    /// The block's id, which must be the BLAKE3 of `block` (codec raw).
    pub cid: ContentId,
    /// The block: a tag byte and the chunk, raw or brotli.
    pub block: Vec<u8>,
    /// Bytes of the chunk (1 ..= `CHUNK_SIZE`; only the last chunk of a file may be shorter).
    pub raw_len: u64,
}

/// A put of chunks already encoded (see [`Store::put_encoded`]): each is checked against its id
/// and its length, then goes through the same writer as [`put`] (dedup, offer and disk checks,
/// one durable commit at the end, temporary files removed on error).
pub(crate) fn put_encoded(
    store: &Store,
    chunks: impl Iterator<Item = Result<EncodedChunk, Error>>,
    opts: &PutOptions,
    class: Class,
) -> Result<PutOutcome, Error> {
    Manifest::empty(opts.name.clone(), opts.media_type.clone())
        .validate()
        .map_err(|e| Error::Options(Box::new(e)))?;
    let mut writer = Writer {
        store,
        new_bytes: 0,
        size: 0,
        seen: HashSet::new(),
        dag_bytes: 0,
        batch: Batch::default(),
        tree: TreeBuilder::new(),
        sealed: Vec::new(),
    };
    let (sync_tx, sync_rx) = sync_channel::<PathBuf>(SYNC_QUEUE);
    let result = thread::scope(|scope| {
        let syncer = scope.spawn(move || sync_files(sync_rx));
        let mut written = Ok(());
        let mut short = false;
        for c in chunks {
            let step = c.and_then(|c| {
                if short {
                    return Err(Error::Corrupt {
                        cid: c.cid,
                        reason: "a chunk after a short one (only the last may be short)".into(),
                    });
                }
                chunk::check_encoded(&c.cid, &c.block, c.raw_len)?;
                short = c.raw_len < CHUNK_SIZE as u64;
                writer.add_chunk(c.cid, &c.block, c.raw_len)?;
                for path in writer.batch.files.drain(..) {
                    if sync_tx.send(path).is_err() {
                        return Err(Error::Pipeline("the syncer stopped"));
                    }
                }
                Ok(())
            });
            if step.is_err() {
                written = step;
                break;
            }
        }
        drop(sync_tx);
        let synced = match syncer.join() {
            Ok(synced) => synced,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        synced?;
        written?;
        writer.finish(opts, class)
    });
    if result.is_err() {
        for (_, tmp) in &writer.batch.renames {
            let _ = std::fs::remove_file(tmp);
        }
    }
    store.unuse_blocks(&writer.seen);
    result
}

/// Reads the input in chunks into free buffers and queues them for the workers.
fn read_chunks<R: Read>(
    mut reader: R,
    free: Receiver<Vec<u8>>,
    work: SyncSender<(u64, Vec<u8>)>,
    done: SyncSender<Msg>,
) {
    let mut index = 0;
    loop {
        let Ok(mut buf) = free.recv() else { return };
        buf.resize(CHUNK_SIZE, 0);
        match fill(&mut reader, &mut buf) {
            Ok(n) => buf.truncate(n),
            Err(e) => {
                let _ = done.send(Msg::Failed(Error::Read(e)));
                return;
            }
        }
        let n = buf.len();
        if n == 0 {
            break;
        }
        if work.send((index, buf)).is_err() {
            return;
        }
        index += 1;
        if n < CHUNK_SIZE {
            break;
        }
    }
    let _ = done.send(Msg::End(index));
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Compresses and hashes chunks until the queue closes or the writer is gone.
fn encode_chunks(work: &Mutex<Receiver<(u64, Vec<u8>)>>, done: SyncSender<Msg>, compress: bool) {
    loop {
        let job = work.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((index, raw)) = job else { return };
        let block = if compress {
            chunk::encode_block(&raw)
        } else {
            chunk::raw_block(&raw)
        };
        let cid = ContentId::of_block(Codec::Raw, &block);
        if done
            .send(Msg::Chunk {
                index,
                raw,
                block,
                cid,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Makes files durable as they come, until the writer hangs up or something fails.
fn sync_files(queue: Receiver<PathBuf>) -> Result<(), Error> {
    for path in queue {
        store::sync_file(&path)?;
    }
    Ok(())
}

/// The writer's state: see the module doc.
struct Writer<'a> {
    store: &'a Store,
    /// Bytes of the blocks this put added.
    new_bytes: u64,
    /// Input bytes stored so far.
    size: u64,
    /// The file's distinct blocks so far, each registered with [`Store::use_block`].
    seen: HashSet<ContentId>,
    /// Their bytes.
    dag_bytes: u64,
    /// The file's new blocks: index entries, and the files to rename into place at the end.
    batch: Batch,
    tree: TreeBuilder,
    /// Manifest blocks sealed by the tree, waiting to be stored.
    sealed: Vec<Block>,
}

impl Writer<'_> {
    /// Takes encoded chunks in file order until the input ends.
    fn run(
        &mut self,
        done: Receiver<Msg>,
        free: SyncSender<Vec<u8>>,
        syncer: &SyncSender<PathBuf>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), Error> {
        let mut early: BTreeMap<u64, (Vec<u8>, Vec<u8>, ContentId)> = BTreeMap::new();
        let (mut next, mut end) = (0u64, None);
        for msg in done {
            match msg {
                Msg::Chunk {
                    index,
                    raw,
                    block,
                    cid,
                } => {
                    early.insert(index, (raw, block, cid));
                }
                Msg::End(chunks) => end = Some(chunks),
                Msg::Failed(e) => return Err(e),
            }
            while let Some((raw, block, cid)) = early.remove(&next) {
                self.add_chunk(cid, &block, raw.len() as u64)?;
                for path in self.batch.files.drain(..) {
                    if syncer.send(path).is_err() {
                        return Err(Error::Pipeline("the syncer stopped"));
                    }
                }
                // The reader may be gone (end of input); then the buffer is simply dropped.
                let _ = free.send(raw);
                next += 1;
                progress(self.size);
            }
            if end == Some(next) {
                break;
            }
        }
        if end != Some(next) {
            // Only a worker that panicked can lose a chunk; the scope re-raises its panic.
            return Err(Error::Pipeline("a chunk was lost"));
        }
        Ok(())
    }

    fn add_chunk(&mut self, cid: ContentId, block: &[u8], raw_len: u64) -> Result<(), Error> {
        self.add_block(cid, block)?;
        self.size += raw_len;
        let entry = ManifestEntry {
            cid,
            raw_len,
            stored_len: block.len() as u64,
        };
        self.tree.push(entry, &mut self.sealed)?;
        self.store_sealed()
    }

    fn store_sealed(&mut self) -> Result<(), Error> {
        for (cid, bytes) in std::mem::take(&mut self.sealed) {
            self.add_block(cid, &bytes)?;
        }
        Ok(())
    }

    /// Stages a block of the file unless the file already has it or the store does.
    fn add_block(&mut self, cid: ContentId, bytes: &[u8]) -> Result<(), Error> {
        if !self.seen.insert(cid) {
            return Ok(());
        }
        let len = bytes.len() as u64;
        self.dag_bytes += len;
        if self.store.use_block(&cid)? {
            return Ok(());
        }
        // The user's own files are limited by the disk, not by the offer to others.
        self.store.check_disk(self.new_bytes + len)?;
        self.store.stage_block(&mut self.batch, cid, bytes)?;
        self.new_bytes += len;
        Ok(())
    }

    /// Stores the manifests left and the root, then, under the writer lock, checks the offer
    /// again (other writers may have stored since the put began) and commits every block of
    /// the put (with the pin) durably.
    fn finish(&mut self, opts: &PutOptions, class: Class) -> Result<PutOutcome, Error> {
        let tree = std::mem::replace(&mut self.tree, TreeBuilder::new());
        let root = tree.finish(opts.name.clone(), opts.media_type.clone(), &mut self.sealed)?;
        let root_cid = match self.sealed.last() {
            Some((cid, _)) => *cid,
            None => return Err(Error::Pipeline("the tree has no root")),
        };
        self.store_sealed()?;
        let outcome = PutOutcome {
            cid: root_cid,
            size: self.size,
            blocks: self.seen.len() as u64,
            stored_bytes: self.dag_bytes,
            new_bytes: self.new_bytes,
        };
        self.batch.durable = true;
        if opts.pin {
            let info = PinInfo {
                cid: root_cid,
                size: root.size,
                name: root.name,
                blocks: outcome.blocks,
                stored_bytes: outcome.stored_bytes,
                class,
            };
            self.batch.pin = Some((root_cid, info));
        }
        let _writer = self.store.lock_writer();
        self.store.check_disk(self.batch.bytes)?;
        let batch = std::mem::take(&mut self.batch);
        // On failure `put` removes the temporary files the commit did not move.
        let renames = batch.renames.clone();
        let committed = self.store.commit(batch);
        if committed.is_err() {
            self.batch.renames = renames;
        }
        committed?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use warren_protocol::MAX_MANIFEST_SIZE;

    use super::*;
    use crate::{
        store::index_len,
        test_util::{get, put, put_with, store},
        testdata::{mixed_data, random_chunk, text_chunk},
    };

    const MIB: usize = CHUNK_SIZE;

    #[test]
    fn round_trips_edge_sizes() {
        let (_dir, store) = store(u64::MAX);
        let cases: Vec<(&str, Vec<u8>, u64)> = vec![
            ("empty", vec![], 0),
            ("one byte", vec![7], 1),
            ("1 MiB", random_chunk(1, MIB), 1),
            ("1 MiB + 1", random_chunk(2, MIB + 1), 2),
            ("3 MiB + 7 random", random_chunk(3, 3 * MIB + 7), 4),
            ("5 MiB text", text_chunk(4, 5 * MIB), 5),
            ("mixed", mixed_data(4 * MIB as u64 + 99, 5), 5),
        ];
        for (what, data, chunks) in cases {
            let out = put(&store, &data);
            assert_eq!(out.size, data.len() as u64, "{what}");
            assert_eq!(out.blocks, chunks + 1, "{what}: chunks and the manifest");
            assert_eq!(get(&store, &out.cid), data, "{what}");
            let root = store.stat(&out.cid).unwrap();
            assert_eq!((root.size, root.depth), (data.len() as u64, 0), "{what}");
            assert_eq!(root.entries.len() as u64, chunks, "{what}");
            assert!(store.is_pinned(&out.cid).unwrap());
        }
    }

    fn encoded(data: &[u8]) -> Vec<EncodedChunk> {
        data.chunks(MIB)
            .map(|c| {
                let block = chunk::encode_block(c);
                EncodedChunk {
                    cid: ContentId::of_block(Codec::Raw, &block),
                    block,
                    raw_len: c.len() as u64,
                }
            })
            .collect()
    }

    #[test]
    fn a_put_of_encoded_chunks_is_the_same_file_and_bad_blocks_store_nothing() {
        let data = mixed_data(3 * MIB as u64 + 77, 9);
        let opts = PutOptions {
            name: Some("f".into()),
            media_type: None,
            pin: false,
        };
        let (_dir2, other) = store(u64::MAX);
        let (_dir, store) = store(u64::MAX);
        let chunks = encoded(&data);
        let before = index_len(&store);
        // A block that is not its id, a raw block of the wrong length, a short chunk in the
        // middle: each refused, and nothing of the put is left.
        let mut wrong_id = chunks.clone();
        wrong_id[1].cid = chunks[0].cid;
        let mut wrong_len = chunks.clone();
        wrong_len[3].raw_len += 1;
        let mut short_first = chunks.clone();
        short_first.swap(0, 3);
        for bad in [wrong_id, wrong_len, short_first] {
            let r = store.put_encoded(bad.into_iter().map(Ok), &opts);
            assert!(matches!(r, Err(Error::Corrupt { .. })), "{r:?}");
            assert_eq!(index_len(&store), before);
        }
        let failed = store.put_encoded(
            chunks
                .clone()
                .into_iter()
                .map(Ok)
                .chain([Err(Error::Pipeline("cut"))]),
            &opts,
        );
        assert!(failed.is_err());
        assert_eq!(index_len(&store), before);
        // The honest chunks make the very file a put of the bytes makes.
        let out = store
            .put_encoded(chunks.into_iter().map(Ok), &opts)
            .unwrap();
        let direct = other.put(&data[..], &opts, &|_| {}).unwrap();
        assert_eq!(out.cid, direct.cid);
        assert_eq!(out.size, data.len() as u64);
        assert_eq!(get(&store, &out.cid), data);
        assert!(!store.is_pinned(&out.cid).unwrap());
        // The empty file too.
        let empty = store.put_encoded(std::iter::empty(), &opts).unwrap();
        assert_eq!(empty.cid, other.put(&b""[..], &opts, &|_| {}).unwrap().cid);
    }

    #[test]
    fn text_is_compressed_and_random_is_not() {
        let (_dir, store) = store(u64::MAX);
        let text = put(&store, &text_chunk(1, 4 * MIB));
        assert!(text.stored_bytes < text.size / 3, "{text:?}");
        let random = put(&store, &random_chunk(1, 4 * MIB));
        assert!(random.stored_bytes > random.size, "{random:?}");
        assert!(random.stored_bytes < random.size + 4096, "{random:?}");
    }

    #[test]
    fn put_is_idempotent_and_deduplicates() {
        let (_dir, store) = store(u64::MAX);
        let data = mixed_data(3 * MIB as u64 + 5, 9);
        let first = put(&store, &data);
        assert_eq!(first.new_bytes, first.stored_bytes);
        let usage = store.usage().unwrap();
        assert_eq!(usage.stored_bytes, first.stored_bytes);
        assert_eq!(usage.blocks, first.blocks);

        let second = put(&store, &data);
        assert_eq!(second.cid, first.cid);
        assert_eq!(second.new_bytes, 0);
        assert_eq!(
            (second.blocks, second.stored_bytes),
            (first.blocks, first.stored_bytes)
        );
        assert_eq!(store.usage().unwrap(), usage);
        assert_eq!(store.pins().unwrap().len(), 1);

        // Another name is another file, sharing every chunk: only a manifest is new.
        let opts = PutOptions {
            name: Some("copy.bin".into()),
            ..PutOptions::default()
        };
        let named = put_with(&store, &data, &opts);
        assert_ne!(named.cid, first.cid);
        assert!(named.new_bytes < 1000, "{named:?}");
        assert_eq!(
            store.stat(&named.cid).unwrap().name.as_deref(),
            Some("copy.bin")
        );
    }

    #[test]
    fn repeated_chunks_are_stored_once() {
        let (_dir, store) = store(u64::MAX);
        let out = put(&store, &vec![0u8; 3 * MIB]);
        assert_eq!(out.blocks, 2, "one zero chunk and the manifest");
        assert_eq!(index_len(&store), 2);
        assert_eq!(get(&store, &out.cid), vec![0u8; 3 * MIB]);
    }

    #[test]
    fn same_input_gives_same_id_in_another_store() {
        let data = mixed_data(2 * MIB as u64 + 1, 3);
        let (_a, a) = store(u64::MAX);
        let (_b, b) = store(u64::MAX);
        assert_eq!(put(&a, &data).cid, put(&b, &data).cid);
    }

    #[test]
    fn progress_counts_input_bytes_in_order() {
        let (_dir, store) = store(u64::MAX);
        let data = random_chunk(5, 3 * MIB + 10);
        let seen = Mutex::new(Vec::new());
        store
            .put(data.as_slice(), &PutOptions::default(), &|n| {
                seen.lock().unwrap().push(n)
            })
            .unwrap();
        let seen = seen.into_inner().unwrap();
        assert_eq!(
            seen,
            vec![
                MIB as u64,
                2 * MIB as u64,
                3 * MIB as u64,
                3 * MIB as u64 + 10
            ]
        );
    }

    #[test]
    fn unpinned_put_is_not_pinned() {
        let (_dir, store) = store(u64::MAX);
        let opts = PutOptions {
            pin: false,
            ..PutOptions::default()
        };
        let out = put_with(&store, b"scratch", &opts);
        assert!(!store.is_pinned(&out.cid).unwrap());
        assert!(store.pins().unwrap().is_empty());
        assert_eq!(get(&store, &out.cid), b"scratch");
    }

    #[test]
    fn the_users_own_put_is_not_limited_by_the_offer_to_others() {
        let offer = 2 * MIB as u64;
        let (_dir, store) = store(offer);
        // 3 MiB of the user's own data in a 2 MiB offer: the disk, not the offer, limits it.
        let data = random_chunk(6, 3 * MIB);
        let own = store
            .put(data.as_slice(), &PutOptions::default(), &|_| {})
            .unwrap();
        assert_eq!(get(&store, &own.cid), data);
        assert!(store.usage().unwrap().stored_bytes > offer);
        assert_eq!(store.own_bytes().unwrap(), own.stored_bytes);
        // Replicas for others still fit the offer, counted without the user's own bytes.
        let mut held = 0;
        for seed in [7, 8] {
            let block = random_chunk(seed, MIB);
            store
                .put_block(&ContentId::of_block(Codec::Raw, &block), &block)
                .unwrap();
            held += block.len() as u64;
        }
        let third = random_chunk(9, 1000);
        let cid3 = ContentId::of_block(Codec::Raw, &third);
        match store.put_block(&cid3, &third).unwrap_err() {
            Error::OfferExceeded { used, offered, .. } => {
                assert_eq!(used, held);
                assert_eq!(offered, offer);
            }
            other => panic!("{other}"),
        }
        // A full disk is a clear error naming the room left.
        let full = Error::DiskFull {
            adding: 5,
            available: 3,
            reserve: crate::DISK_RESERVE,
        };
        assert!(full.to_string().contains("the disk is full"), "{full}");
    }

    #[test]
    fn read_error_fails_the_put_and_rolls_back() {
        struct Broken(usize);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(0x5a);
                self.0 -= n;
                Ok(n)
            }
        }
        let (dir, store) = store(u64::MAX);
        let err = store
            .put(Broken(3 * MIB + 5), &PutOptions::default(), &|_| {})
            .unwrap_err();
        assert!(matches!(err, Error::Read(_)), "{err}");
        assert!(err.to_string().contains("disk on fire"), "{err}");
        assert_eq!(store.usage().unwrap().blocks, 0);
        assert_eq!(block_files(dir.path()), 0);
        assert!(store.pins().unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        assert!(store.lock_in_flight().is_empty());
    }

    #[test]
    fn bad_options_are_refused_before_reading() {
        struct Unread;
        impl Read for Unread {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                panic!("read");
            }
        }
        let (_dir, store) = store(u64::MAX);
        for opts in [
            PutOptions {
                name: Some("x".repeat(256)),
                ..PutOptions::default()
            },
            PutOptions {
                media_type: Some("plain".into()),
                ..PutOptions::default()
            },
        ] {
            let err = store.put(Unread, &opts, &|_| {}).unwrap_err();
            assert!(matches!(err, Error::Options(_)), "{err}");
        }
    }

    #[test]
    fn more_than_one_leaf_of_chunks_gets_a_tree() {
        // 1 GiB + 1 MiB of zeros: 1025 chunks (one distinct block), so a depth-1 root over a
        // full leaf of 1024 chunks and a leaf of one.
        let (_dir, store) = store(u64::MAX);
        let size = (MANIFEST_FANOUT_U64 + 1) * MIB as u64;
        let out = store
            .put(io::repeat(0).take(size), &PutOptions::default(), &|_| {})
            .unwrap();
        assert_eq!(out.size, size);
        assert_eq!(out.blocks, 4, "the zero chunk, two leaves, the root");
        let root = store.stat(&out.cid).unwrap();
        assert_eq!((root.depth, root.entries.len(), root.size), (1, 2, size));
        assert_eq!(root.entries[0].raw_len, MANIFEST_FANOUT_U64 * MIB as u64);
        assert_eq!(root.entries[1].raw_len, MIB as u64);
        let leaf = store.get_block(&root.entries[0].cid).unwrap();
        assert!(leaf.len() < MAX_MANIFEST_SIZE);
        assert_eq!(Manifest::decode(&leaf).unwrap().entries.len(), 1024);

        struct Zeros(u64);
        impl io::Write for Zeros {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                assert!(buf.iter().all(|&b| b == 0));
                self.0 += buf.len() as u64;
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut sink = Zeros(0);
        assert_eq!(store.get(&out.cid, &mut sink, &|_| {}).unwrap(), size);
        assert_eq!(sink.0, size);
    }

    /// A reader that hands out `parts` as they are sent on its channel and ends when it closes:
    /// an uploader that may stall for as long as the test likes.
    struct Stalling(std::sync::mpsc::Receiver<Vec<u8>>, Vec<u8>);
    impl Read for Stalling {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            while self.1.is_empty() {
                match self.0.recv() {
                    Ok(part) => self.1 = part,
                    Err(_) => return Ok(0),
                }
            }
            let n = buf.len().min(self.1.len());
            buf[..n].copy_from_slice(&self.1[..n]);
            self.1.drain(..n);
            Ok(n)
        }
    }

    #[test]
    fn a_stalled_upload_holds_up_no_other_writer_and_gc_keeps_what_it_uses() {
        let (_dir, store) = store(u64::MAX);
        // An unpinned file: garbage for gc, except while a put uses its chunk.
        let shared = random_chunk(1, MIB);
        let garbage = put_with(
            &store,
            &shared,
            &PutOptions {
                pin: false,
                ..PutOptions::default()
            },
        );
        let shared_cid = store.stat(&garbage.cid).unwrap().entries[0].cid;
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let mut expected = shared.clone();
        expected.extend(random_chunk(2, MIB + 10));
        std::thread::scope(|scope| {
            let stalled = scope
                .spawn(|| store.put(Stalling(rx, Vec::new()), &PutOptions::default(), &|_| {}));
            // The first chunk (the shared one) and one byte more, then nothing.
            tx.send(expected[..MIB + 1].to_vec()).unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !store.lock_in_flight().contains_key(&shared_cid) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the put never used the shared chunk"
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            // Meanwhile every other writer goes on: a put, a pushed replica, gc.
            let other = put(&store, b"an honest put");
            assert_eq!(get(&store, &other.cid), b"an honest put");
            let replica = chunk::encode_block(&random_chunk(3, MIB));
            let replica_cid = ContentId::of_block(Codec::Raw, &replica);
            store.put_block(&replica_cid, &replica).unwrap();
            store.gc().unwrap();
            assert!(
                store.has_block(&shared_cid).unwrap(),
                "gc kept the chunk the put uses"
            );
            assert!(
                !store.has_block(&garbage.cid).unwrap(),
                "gc removed the rest"
            );
            // The upload resumes and ends.
            tx.send(expected[MIB + 1..].to_vec()).unwrap();
            drop(tx);
            let out = stalled.join().unwrap().unwrap();
            assert_eq!(get(&store, &out.cid), expected);
        });
        assert!(
            store.lock_in_flight().is_empty(),
            "the put's registrations ended"
        );
        assert_eq!(
            std::fs::read_dir(_dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    const MANIFEST_FANOUT_U64: u64 = warren_protocol::MANIFEST_FANOUT as u64;

    fn block_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir.join("blocks"))
            .unwrap()
            .map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap().count())
            .sum()
    }
}
