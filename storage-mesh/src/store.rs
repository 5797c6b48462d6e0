//! The block store: blocks by id on disk, pins, and how much space is used and offered.
//!
//! # Layout of the store directory
//!
//! ```text
//! DIR/index.redb             redb: the block index, small blocks, pins, counters
//! DIR/blocks/00/bafkr4i…     one file per block larger than INLINE_MAX, named by its id,
//! …                          in 256 shard directories by the first byte of its hash
//! DIR/blocks/ff/
//! DIR/tmp/                   block files being written (`*.tmp`), renamed into blocks/ once
//!                            complete; whatever a crash leaves here is removed at open
//! ```
//!
//! Blocks of up to [`INLINE_MAX`] bytes (manifests of small files, tiny chunks) live in redb;
//! larger ones in files, with redb as their index. The measurements behind that choice are in
//! `spec/storage.md` ("Block store"): redb allocates a value in a power-of-two number of pages,
//! so a 1 MiB + 1 raw chunk takes 2 MiB in redb and 1 MiB in a file.
//!
//! # Durability
//!
//! A block is listed in the index only after its file is on disk: a batch of blocks is written,
//! each file and its directory fsynced, and only then the batch's index entries committed.
//! A put writes its block files under temporary names in `DIR/tmp/` and fsyncs them as they
//! come; at its end it renames the new ones into place, fsyncs their directories and commits
//! every index entry and its pin in one durable commit. After a crash the store opens with every
//! reported block present and no partial file listed; the temporary files of an interrupted put
//! are removed at open (and [`Store::gc`] removes any block file the index does not list).
//!
//! # Concurrency
//!
//! Readers never wait. Writers (put_block, pin, unpin, gc, and the end of a put) take one mutex,
//! each for a short local step: a put reads its input, chunks, hashes and writes its files
//! without it and takes it only to commit, so a slow or stalled uploader holds up nobody. The
//! blocks a running put uses (stored by it, or found already stored) are registered so that gc
//! keeps them until the put ends.

use std::{
    collections::{BTreeSet, HashMap},
    fs::{self, File},
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use warren_protocol::{Class, Codec, ContentId, MAX_MANIFEST_SIZE, Manifest};

use crate::{Error, GcReport, PutOptions, PutOutcome, chunk::MAX_BLOCK_SIZE, gc, ingest, read};

/// Blocks up to this size are kept in redb; larger ones in files.
pub const INLINE_MAX: usize = 16 * 1024;

/// Most blocks whose last use the store remembers (see [`Store::trim_cache`]).
const MAX_TRACKED_USES: usize = 1 << 22;
/// Memory redb may use for its page cache.
const CACHE_BYTES: usize = 16 << 20;
/// Version of the store's on-disk layout.
const SCHEMA: u64 = 1;

/// Block id (binary CID) → block length.
pub(crate) const INDEX: TableDefinition<&[u8], u64> = TableDefinition::new("blocks");
/// Block id → block bytes, for blocks of at most [`INLINE_MAX`] bytes.
pub(crate) const INLINE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("inline");
/// Root manifest id → (file size, blocks, stored bytes, name).
pub(crate) const PINS: TableDefinition<&[u8], (u64, u64, u64, Option<&str>)> =
    TableDefinition::new("pins");
/// File id → class byte ([`Class::to_byte`]) of the files this node sealed; absent = public.
pub(crate) const CLASSES: TableDefinition<&[u8], u8> = TableDefinition::new("classes");
/// Free space a user's own put leaves on the disk.
pub const DISK_RESERVE: u64 = 64 << 20;

/// Counters: `schema`, `blocks`, `stored_bytes`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Blocks held for the mesh (replicas placed here by other peers, or copies this node repairs):
/// block id → unix seconds when first held. `gc` keeps them like pinned files' blocks.
pub(crate) const HELD: TableDefinition<&[u8], u64> = TableDefinition::new("held");
/// File this node put → the replication factor it was placed with.
pub(crate) const FILE_RF: TableDefinition<&[u8], u8> = TableDefinition::new("file_rf");
/// Held block → the replication factor pushed with it, before placement tickets: no longer
/// written (the lease's RF counts, `lease_store.rs`); cleared on release.
pub(crate) const HELD_RF: TableDefinition<&[u8], u8> = TableDefinition::new("held_rf");

/// A pinned file, as [`Store::pins`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinInfo {
    /// The file's id.
    pub cid: ContentId,
    /// The file's size in bytes.
    pub size: u64,
    /// The name in its root manifest.
    pub name: Option<String>,
    /// Distinct blocks of the file (chunks and manifests).
    pub blocks: u64,
    /// Their bytes.
    pub stored_bytes: u64,
    /// How it was stored: plaintext, or sealed (then `size` is the sealed size and `name` is
    /// `None`: both are inside the encryption).
    pub class: Class,
}

/// What [`Store::responsibilities`] found.
#[derive(Debug)]
pub struct Responsibilities {
    /// Every block answered for, with its stored length, sorted and without repeats.
    pub blocks: Vec<(ContentId, u64)>,
    /// Pinned files whose manifests could not be read, with the error.
    pub unreadable: Vec<(ContentId, Error)>,
    /// The blocks of the pinned files (the user's own), possibly with repeats.
    pub own: Vec<ContentId>,
}

/// How much of its offer a store uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Blocks stored (pinned or not).
    pub blocks: u64,
    /// Their bytes.
    pub stored_bytes: u64,
    /// Bytes offered ([`Store::open`]'s `offer_bytes`).
    pub offered_bytes: u64,
}

/// How a streaming read learns that a chunk block is here ([`Store::get_when_ready`]): `None`
/// when it is in the store, or its bytes, already verified against its id.
pub type Ready<'a> = dyn Fn(&ContentId) -> Result<Option<Arc<Vec<u8>>>, Error> + 'a;

/// A content-addressed block store in one directory. `Send + Sync`; share it with an `Arc`.
pub struct Store {
    blocks_dir: PathBuf,
    tmp_dir: PathBuf,
    db: Database,
    offered: u64,
    writer: Mutex<()>,
    /// Blocks that running puts use, by how many puts: gc keeps them.
    in_flight: Mutex<HashMap<ContentId, u32>>,
    /// The use counter and each block's last use, for [`Store::trim_cache`].
    uses: Mutex<(u64, HashMap<ContentId, u64>)>,
}

/// Blocks written to disk (not yet fsynced) whose index entries wait for one commit.
#[derive(Default)]
pub(crate) struct Batch {
    /// Block files to fsync before the commit (the put pipeline's syncer takes them out and
    /// fsyncs them as they are written).
    pub(crate) files: Vec<PathBuf>,
    /// Block files written under a temporary name, renamed into place by the commit (or
    /// removed, when the block is indexed by then).
    pub(crate) renames: Vec<(ContentId, PathBuf)>,
    /// Index entries: id, length, and the bytes for inline blocks.
    pub(crate) entries: Vec<(ContentId, u64, Option<Vec<u8>>)>,
    /// A pin to record in the same commit.
    pub(crate) pin: Option<(ContentId, PinInfo)>,
    /// Commit with fsync (`Durability::Immediate`).
    pub(crate) durable: bool,
    /// Bytes of the blocks in the batch.
    pub(crate) bytes: u64,
}

impl Store {
    /// Opens the store in `dir`, creating the directory and an empty store if needed, with
    /// `offer_bytes` of space offered. After a crash redb repairs its index on open.
    pub fn open(dir: &Path, offer_bytes: u64) -> Result<Store, Error> {
        let blocks_dir = dir.join("blocks");
        fs::create_dir_all(&blocks_dir).map_err(Error::io(&blocks_dir))?;
        for shard in 0..=255u8 {
            let path = blocks_dir.join(format!("{shard:02x}"));
            fs::create_dir_all(&path).map_err(Error::io(&path))?;
        }
        let tmp_dir = dir.join("tmp");
        fs::create_dir_all(&tmp_dir).map_err(Error::io(&tmp_dir))?;
        remove_temporaries(&tmp_dir)?;
        sync_dir(&blocks_dir)?;
        sync_dir(dir)?;
        let index = dir.join("index.redb");
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&index)?;
        let tx = db.begin_write()?;
        {
            tx.open_table(INDEX)?;
            tx.open_table(INLINE)?;
            tx.open_table(PINS)?;
            tx.open_table(HELD)?;
            tx.open_table(HELD_RF)?;
            tx.open_table(FILE_RF)?;
            tx.open_table(CLASSES)?;
            Store::open_lease_tables(&tx)?;
            let mut meta = tx.open_table(META)?;
            let found = meta.get("schema")?.map(|v| v.value());
            match found {
                None => {
                    meta.insert("schema", SCHEMA)?;
                }
                Some(SCHEMA) => {}
                Some(found) => {
                    return Err(Error::Schema {
                        path: index,
                        found,
                        supported: SCHEMA,
                    });
                }
            }
        }
        tx.commit()?;
        Ok(Store {
            blocks_dir,
            tmp_dir,
            db,
            offered: offer_bytes,
            writer: Mutex::new(()),
            in_flight: Mutex::new(HashMap::new()),
            uses: Mutex::new((0, HashMap::new())),
        })
    }

    /// Stores a file read from `reader`: cuts it into chunks, compresses and hashes them on all
    /// cores, stores the chunk blocks and the manifest tree, and pins the root if `opts.pin`.
    /// Returns the file's id. Memory stays bounded whatever the input's size; `progress` is
    /// called on the calling thread with the number of input bytes stored so far.
    ///
    /// Idempotent: the same bytes with the same options give the same id and store nothing new.
    /// Refuses ([`Error::OfferExceeded`]) as soon as the new blocks would exceed the offer; on
    /// any error the blocks this put added are removed again.
    pub fn put<R: std::io::Read + Send>(
        &self,
        reader: R,
        opts: &PutOptions,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<PutOutcome, Error> {
        ingest::put(self, reader, opts, Class::Public, progress)
    }

    /// Stores a file from chunks encoded elsewhere (a sandboxed worker did the chunking,
    /// brotli and hashing of hostile input): each block must hash to its id, be a valid raw or
    /// brotli block for its chunk length (checked without decompressing: a raw payload is the
    /// chunk's length, a brotli one shorter), and every chunk but the last must be full. The
    /// manifest tree is built here from the chunks' ids and lengths; the offer, disk, dedup and
    /// durability rules are those of [`Store::put`]. Nothing is stored unless all of it is.
    pub fn put_encoded(
        &self,
        chunks: impl Iterator<Item = Result<crate::ingest::EncodedChunk, Error>>,
        opts: &PutOptions,
    ) -> Result<PutOutcome, Error> {
        ingest::put_encoded(self, chunks, opts, Class::Public)
    }

    /// Writes the file `cid` names to `out`: walks its manifest tree and verifies every block
    /// against its id (and against what its manifest says) before writing any byte of it.
    /// Returns the number of bytes written; `progress` gets the same count as it grows.
    pub fn get<W: std::io::Write>(
        &self,
        cid: &ContentId,
        out: W,
        progress: &dyn Fn(u64),
    ) -> Result<u64, Error> {
        read::get(self, cid, out, progress, &|_| Ok(None))
    }

    /// [`Store::get`] for a file whose chunks are still arriving: before reading each chunk
    /// block, in file order, calls `ready` with its id, which returns once the block is here
    /// (or fails the read, e.g. with [`Error::Unavailable`]): `None` when it is in the store,
    /// or its bytes, which the caller has already verified against the id (a fetch hands them
    /// over before they are stored, and this does not hash them again). Its manifests must be
    /// stored.
    pub fn get_when_ready<W: std::io::Write>(
        &self,
        cid: &ContentId,
        out: W,
        progress: &dyn Fn(u64),
        ready: &Ready<'_>,
    ) -> Result<u64, Error> {
        read::get(self, cid, out, progress, ready)
    }

    /// [`Store::get_when_ready`] from byte `from` of the file on: chunks and subtrees wholly
    /// before it are neither read nor waited for; the chunk holding `from` is read and verified
    /// whole and written from `from` on. Returns the file's size.
    pub fn get_from_when_ready<W: std::io::Write>(
        &self,
        cid: &ContentId,
        from: u64,
        out: W,
        ready: &Ready<'_>,
    ) -> Result<u64, Error> {
        read::get_from(self, cid, from, out, ready)
    }

    /// The root manifest of the file `cid`, verified.
    pub fn stat(&self, cid: &ContentId) -> Result<Manifest, Error> {
        read::load_root(self, cid).map(|(m, _)| m)
    }

    /// Whether the block is in the store (listed in the index; its bytes are not checked).
    pub fn has_block(&self, cid: &ContentId) -> Result<bool, Error> {
        let tx = self.db.begin_read()?;
        let found = tx
            .open_table(INDEX)?
            .get(cid.to_bytes().as_slice())?
            .is_some();
        Ok(found)
    }

    /// The block's bytes, verified against its id.
    pub fn get_block(&self, cid: &ContentId) -> Result<Vec<u8>, Error> {
        let bytes = self.read_block(cid)?.ok_or(Error::Missing { cid: *cid })?;
        cid.verify(&bytes).map_err(|_| Error::Corrupt {
            cid: *cid,
            reason: format!("its {} bytes do not hash to its id", bytes.len()),
        })?;
        self.used(cid);
        Ok(bytes)
    }

    /// Counts a use of `cid`, for the cache's recency.
    fn used(&self, cid: &ContentId) {
        let mut uses = self.uses.lock().unwrap_or_else(|e| e.into_inner());
        uses.0 += 1;
        let tick = uses.0;
        // Keyed by stored blocks; pruned by each trim. A fail-safe bound all the same: forgotten
        // uses count as the oldest.
        if uses.1.len() >= MAX_TRACKED_USES && !uses.1.contains_key(cid) {
            uses.1.clear();
        }
        uses.1.insert(*cid, tick);
    }

    /// Keeps the cached blocks (those [`Store::gc`] would remove) within
    /// [`cache::budget`](crate::cache::budget) of the offer, removing the least recently used
    /// first ([`crate::cache`]). Cheap while the store's bytes are within that budget.
    pub fn trim_cache(&self) -> Result<GcReport, Error> {
        let budget = crate::cache::budget(self.offered);
        if self.usage()?.stored_bytes <= budget {
            return Ok(GcReport::default());
        }
        let _writer = self.lock_writer();
        let uses = self
            .uses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone();
        let (report, kept) = gc::trim(self, budget, &uses)?;
        let mut now = self.uses.lock().unwrap_or_else(|e| e.into_inner());
        now.1.retain(|c, _| kept.contains(c));
        Ok(report)
    }

    /// Stores one block after checking it against its id and its kind's size limit; durable when
    /// this returns. For blocks other peers push to this node as their holder.
    pub fn put_block(&self, cid: &ContentId, bytes: &[u8]) -> Result<(), Error> {
        self.put_block_with(cid, bytes, true)
    }

    /// Stores one block fetched for a read, with the same checks as [`Store::put_block`]. Its
    /// file is on disk (fsynced) before it is indexed, as always, but the index entry commits
    /// without fsync: it becomes durable with the store's next durable commit (a put, a pin, a
    /// durable `put_block`). A crash before that can only forget the block (its file is then
    /// removed by [`Store::gc`]), never list a block whose bytes are missing.
    pub fn put_block_cached(&self, cid: &ContentId, bytes: &[u8]) -> Result<(), Error> {
        self.put_block_with(cid, bytes, false)?;
        self.used(cid);
        Ok(())
    }

    /// The body of `put_block`/`put_block_cached`. A large block's file is written to a
    /// temporary name, fsynced and renamed into place before the writer lock is taken, so
    /// concurrent fetches overlap their disk waits instead of queueing on the lock; the lock
    /// covers only the offer check and the index commit.
    fn put_block_with(&self, cid: &ContentId, bytes: &[u8], durable: bool) -> Result<(), Error> {
        let (max, kind) = match cid.codec() {
            Codec::Raw => (MAX_BLOCK_SIZE, "chunk"),
            Codec::Cbor => (MAX_MANIFEST_SIZE, "manifest"),
        };
        if bytes.len() > max {
            return Err(Error::BlockTooLarge {
                cid: *cid,
                len: bytes.len(),
                max,
                kind,
            });
        }
        cid.verify(bytes).map_err(|_| Error::Corrupt {
            cid: *cid,
            reason: format!("the {} bytes offered do not hash to its id", bytes.len()),
        })?;
        let inline = bytes.len() <= INLINE_MAX;
        let path = self.block_path(cid);
        // Listed and present: nothing to do. Listed but its file gone (a disk that lost it, a
        // wiped holder): the file is written again below, so a push refills it.
        if self.has_block(cid)? && (inline || path.exists()) {
            return Ok(());
        }
        if !inline {
            self.write_block_file(&path, bytes)?;
        }
        let _writer = self.lock_writer();
        if self.has_block(cid)? {
            return Ok(());
        }
        // The offer limits what others place here (replicas) and what reads cache, not the
        // user's own files: their bytes are not counted.
        let used = self.usage()?.stored_bytes.saturating_sub(self.own_bytes()?);
        if let Err(e) = self.check_offer(used, bytes.len() as u64) {
            if !inline {
                let _ = fs::remove_file(&path);
            }
            return Err(e);
        }
        let mut batch = Batch {
            durable,
            ..Batch::default()
        };
        if inline || !path.exists() {
            // Inline, or a gc between our rename and the lock took the (then unlisted) file.
            self.stage_block(&mut batch, *cid, bytes)?;
        } else {
            batch.entries.push((*cid, bytes.len() as u64, None));
            batch.bytes += bytes.len() as u64;
        }
        self.commit(batch)
    }

    /// Writes `bytes` to `path` through a temporary file in `DIR/tmp/`, fsynced, renamed into
    /// place and the folder fsynced: a reader of `path` sees either nothing, the old bytes or all
    /// of the new ones.
    fn write_block_file(&self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        let tmp = self.tmp_path();
        let written = File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(bytes)?;
                f.sync_all()
            })
            .map_err(Error::io(&tmp))
            .and_then(|()| fs::rename(&tmp, path).map_err(Error::io(path)));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        match path.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    }

    /// Pins the file `cid`: its blocks are kept by [`gc`](Self::gc). Refuses unless every block
    /// of the file is in the store, naming the first one missing.
    pub fn pin(&self, cid: &ContentId) -> Result<(), Error> {
        let _writer = self.lock_writer();
        let (root, summary) = read::summarize(self, cid, true)?;
        let info = PinInfo {
            cid: *cid,
            size: root.size,
            name: root.name,
            blocks: summary.blocks.len() as u64,
            stored_bytes: summary.stored_bytes,
            class: self.class_of(cid)?,
        };
        self.commit(Batch {
            pin: Some((*cid, info)),
            durable: true,
            ..Batch::default()
        })
    }

    /// Unpins the file `cid`; returns whether it was pinned. Its blocks stay until the next
    /// [`gc`](Self::gc).
    pub fn unpin(&self, cid: &ContentId) -> Result<bool, Error> {
        let _writer = self.lock_writer();
        let tx = self.db.begin_write()?;
        let removed = tx
            .open_table(PINS)?
            .remove(cid.to_bytes().as_slice())?
            .is_some();
        tx.open_table(FILE_RF)?.remove(cid.to_bytes().as_slice())?;
        tx.commit()?;
        Ok(removed)
    }

    /// Records the replication factor the file `root` was put with (this node placed its
    /// copies), durably: the repair pass keeps that many after a restart. Cleared by
    /// [`Store::unpin`].
    pub fn set_file_rf(&self, root: &ContentId, rf: u8) -> Result<(), Error> {
        let _writer = self.lock_writer();
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        tx.open_table(FILE_RF)?
            .insert(root.to_bytes().as_slice(), rf)?;
        tx.commit()?;
        Ok(())
    }

    /// Every file this node put with the replication factor it was placed with.
    pub fn file_rfs(&self) -> Result<Vec<(ContentId, u8)>, Error> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(FILE_RF)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            out.push((index_key(key.value())?, value.value()));
        }
        Ok(out)
    }

    /// Whether the file `cid` is pinned.
    pub fn is_pinned(&self, cid: &ContentId) -> Result<bool, Error> {
        let tx = self.db.begin_read()?;
        let found = tx
            .open_table(PINS)?
            .get(cid.to_bytes().as_slice())?
            .is_some();
        Ok(found)
    }

    /// The pinned files, ordered by id.
    pub fn pins(&self) -> Result<Vec<PinInfo>, Error> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(PINS)?;
        let classes = tx.open_table(CLASSES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            let cid = index_key(key.value())?;
            let (size, blocks, stored_bytes, name) = value.value();
            let class = classes.get(key.value())?.map(|v| v.value());
            out.push(PinInfo {
                cid,
                size,
                name: name.map(str::to_owned),
                blocks,
                stored_bytes,
                class: decode_class(&cid, class)?,
            });
        }
        Ok(out)
    }

    /// The class this node stored the file `cid` with ([`Class::Public`] unless it sealed it).
    pub fn class_of(&self, cid: &ContentId) -> Result<Class, Error> {
        let tx = self.db.begin_read()?;
        let class = tx
            .open_table(CLASSES)?
            .get(cid.to_bytes().as_slice())?
            .map(|v| v.value());
        decode_class(cid, class)
    }

    /// The stored length of a block, if it is in the store (from the index; reads no block).
    pub fn block_len(&self, cid: &ContentId) -> Result<Option<u64>, Error> {
        let tx = self.db.begin_read()?;
        let len = tx
            .open_table(INDEX)?
            .get(cid.to_bytes().as_slice())?
            .map(|v| v.value());
        Ok(len)
    }

    /// The replication factor a held block was placed with (its lease's), if this node holds it
    /// for the mesh.
    pub fn held_rf(&self, cid: &ContentId) -> Result<Option<u8>, Error> {
        Ok(self.lease(cid)?.map(|l| l.rf))
    }

    /// Stops holding a block for the mesh (it goes at the next `gc` unless a pin needs it).
    pub fn release(&self, cid: &ContentId) -> Result<bool, Error> {
        let _writer = self.lock_writer();
        let len = self.block_len(cid)?.unwrap_or(0);
        let tx = self.db.begin_write()?;
        Store::forget_lease(&tx, cid, len)?;
        let was = tx
            .open_table(HELD)?
            .remove(cid.to_bytes().as_slice())?
            .is_some();
        tx.open_table(HELD_RF)?.remove(cid.to_bytes().as_slice())?;
        tx.commit()?;
        Ok(was)
    }

    /// The blocks held for the mesh, ordered by id.
    pub fn held(&self) -> Result<Vec<ContentId>, Error> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(HELD)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (key, _) = row?;
            out.push(index_key(key.value())?);
        }
        Ok(out)
    }

    /// Removes one block whose stored copy is bad (and stops holding it), so a good copy can
    /// take its place.
    pub fn discard_block(&self, cid: &ContentId) -> Result<(), Error> {
        let _writer = self.lock_writer();
        let len = self.block_len(cid)?.unwrap_or(0);
        self.remove_blocks(std::slice::from_ref(cid))?;
        let tx = self.db.begin_write()?;
        Store::forget_lease(&tx, cid, len)?;
        tx.open_table(HELD)?.remove(cid.to_bytes().as_slice())?;
        tx.open_table(HELD_RF)?.remove(cid.to_bytes().as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Every block of the file `root` (manifests and chunks) with its stored length, root
    /// first; the manifests must be stored, the chunks need not be.
    pub fn dag(&self, root: &ContentId) -> Result<Vec<(ContentId, u64)>, Error> {
        read::dag_blocks(self, root)
    }

    /// The blocks this node answers for in the mesh, with their stored lengths, sorted: the
    /// replicas it holds and every block of its pinned files. A pinned file whose manifests
    /// cannot be read (a lost or damaged manifest) is listed in `unreadable` with the error,
    /// and the rest are still listed: one bad file never stops repair of the others.
    pub fn responsibilities(&self) -> Result<Responsibilities, Error> {
        let mut blocks: Vec<(ContentId, u64)> = Vec::new();
        for cid in self.held()? {
            if let Some(len) = self.block_len(&cid)? {
                blocks.push((cid, len));
            }
        }
        let mut unreadable = Vec::new();
        let mut own = Vec::new();
        for pin in self.pins()? {
            match self.dag(&pin.cid) {
                Ok(dag) => {
                    own.extend(dag.iter().map(|(c, _)| *c));
                    blocks.extend(dag);
                }
                Err(e) => unreadable.push((pin.cid, e)),
            }
        }
        blocks.sort();
        blocks.dedup();
        Ok(Responsibilities {
            blocks,
            unreadable,
            own,
        })
    }

    /// How many times a read of the file `root` reads each of its chunk blocks (a chunk repeated
    /// in the file counts each time); the manifests must be stored, the chunks need not be.
    /// Visits each distinct manifest once; fails with [`Error::FileTooLarge`] past
    /// [`MAX_FILE_CHUNKS`](crate::MAX_FILE_CHUNKS) chunk reads.
    pub fn chunk_uses(
        &self,
        root: &ContentId,
    ) -> Result<std::collections::HashMap<ContentId, u32>, Error> {
        read::chunk_uses(self, root)
    }

    /// Removes every block not reachable from a pin (and any block file the index does not
    /// list, left by an interrupted put). Refuses to remove anything if a pinned file's
    /// manifests cannot be read, since its blocks could not be told apart.
    pub fn gc(&self) -> Result<GcReport, Error> {
        let _writer = self.lock_writer();
        gc::run(self)
    }

    /// Blocks stored, their bytes, and the bytes offered.
    pub fn usage(&self) -> Result<Usage, Error> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        let get = |key| -> Result<u64, Error> { Ok(meta.get(key)?.map_or(0, |v| v.value())) };
        Ok(Usage {
            blocks: get("blocks")?,
            stored_bytes: get("stored_bytes")?,
            offered_bytes: self.offered,
        })
    }

    // ---------------------------------------------------------------------------------------
    // Internals shared by the other modules.

    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, ()> {
        // The guarded state lives in redb, which a panicking writer cannot leave half-updated.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The blocks running puts use, by how many puts. gc holds this for its whole run; take it
    /// after the writer lock, never before.
    pub(crate) fn lock_in_flight(&self) -> MutexGuard<'_, HashMap<ContentId, u32>> {
        // A plain counter map: a panic cannot leave it half-updated.
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `cid` as used by a running put (gc keeps it until [`Store::unuse_blocks`]) and
    /// says whether it is stored. Atomic with respect to gc: a block found stored here stays.
    pub(crate) fn use_block(&self, cid: &ContentId) -> Result<bool, Error> {
        let mut used = self.lock_in_flight();
        let n = used.entry(*cid).or_default();
        *n = n.saturating_add(1);
        self.has_block(cid)
    }

    /// Ends the registrations of [`Store::use_block`] for `cids`.
    pub(crate) fn unuse_blocks<'a>(&self, cids: impl IntoIterator<Item = &'a ContentId>) {
        let mut used = self.lock_in_flight();
        for cid in cids {
            if let Some(n) = used.get_mut(cid) {
                *n -= 1;
                if *n == 0 {
                    used.remove(cid);
                }
            }
        }
    }

    /// A fresh temporary file name in `DIR/tmp/` (removed at open if a crash leaves it).
    pub(crate) fn tmp_path(&self) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.tmp_dir.join(format!("{}-{n}.tmp", std::process::id()))
    }

    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    pub(crate) fn blocks_dir(&self) -> &Path {
        &self.blocks_dir
    }

    /// Bytes of the user's own files (every pinned file's blocks; a block two files share, or
    /// that is also held for the mesh, counts for each).
    pub fn own_bytes(&self) -> Result<u64, Error> {
        Ok(self.pins()?.iter().map(|p| p.stored_bytes).sum())
    }

    /// Refuses ([`Error::DiskFull`]) a user's own put of `adding` more bytes when the disk would
    /// keep less than [`DISK_RESERVE`] free. Where the free space cannot be read, allows it.
    pub(crate) fn check_disk(&self, adding: u64) -> Result<(), Error> {
        let Ok(st) = rustix::fs::statvfs(&self.blocks_dir) else {
            return Ok(());
        };
        let available = st.f_bavail.saturating_mul(st.f_frsize);
        if available < adding.saturating_add(DISK_RESERVE) {
            return Err(Error::DiskFull {
                adding,
                available,
                reserve: DISK_RESERVE,
            });
        }
        Ok(())
    }

    pub(crate) fn check_offer(&self, used: u64, adding: u64) -> Result<(), Error> {
        if used.saturating_add(adding) > self.offered {
            return Err(Error::OfferExceeded {
                used,
                adding,
                offered: self.offered,
            });
        }
        Ok(())
    }

    /// Where the block's file is (or would be).
    pub(crate) fn block_path(&self, cid: &ContentId) -> PathBuf {
        self.blocks_dir
            .join(format!("{:02x}", cid.hash()[0]))
            .join(cid.to_string())
    }

    /// The block's bytes as stored, unverified; `None` if the index does not list it.
    pub(crate) fn read_block(&self, cid: &ContentId) -> Result<Option<Vec<u8>>, Error> {
        let key = cid.to_bytes();
        let tx = self.db.begin_read()?;
        let Some(len) = tx
            .open_table(INDEX)?
            .get(key.as_slice())?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        if len <= INLINE_MAX as u64 {
            let inline = tx.open_table(INLINE)?;
            return match inline.get(key.as_slice())? {
                Some(bytes) => Ok(Some(bytes.value().to_vec())),
                None => Err(Error::Corrupt {
                    cid: *cid,
                    reason: "listed in the index but its bytes are missing".into(),
                }),
            };
        }
        drop(tx);
        let path = self.block_path(cid);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Missing { cid: *cid });
            }
            Err(e) => return Err(Error::io(path)(e)),
        };
        let mut bytes = Vec::with_capacity(len.min(MAX_BLOCK_SIZE as u64 + 1) as usize);
        // Read at most one byte more than a block may have: a grown file is corrupt, not a
        // reason to read without bound.
        (&mut file)
            .take(MAX_BLOCK_SIZE as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(Error::io(&path))?;
        Ok(Some(bytes))
    }

    /// Writes a block's file (or keeps an inline block's bytes) and adds it to `batch`. The file
    /// is not fsynced and the block not indexed until the batch is committed.
    pub(crate) fn stage_block(
        &self,
        batch: &mut Batch,
        cid: ContentId,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let len = bytes.len() as u64;
        if bytes.len() <= INLINE_MAX {
            batch.entries.push((cid, len, Some(bytes.to_vec())));
        } else {
            let tmp = self.tmp_path();
            let written = File::create(&tmp).and_then(|mut file| file.write_all(bytes));
            if let Err(e) = written {
                let _ = fs::remove_file(&tmp);
                return Err(Error::io(&tmp)(e));
            }
            batch.files.push(tmp.clone());
            batch.renames.push((cid, tmp));
            batch.entries.push((cid, len, None));
        }
        batch.bytes += len;
        Ok(())
    }

    /// Makes a batch's files durable and moves them into place, then indexes its blocks (and
    /// records its pin) in one commit. The caller holds the writer lock.
    pub(crate) fn commit(&self, batch: Batch) -> Result<(), Error> {
        for path in &batch.files {
            sync_file(path)?;
        }
        let mut dirs = BTreeSet::new();
        for (cid, tmp) in &batch.renames {
            if self.has_block(cid)? {
                // Stored meanwhile (by another put or a pushed replica): this copy is not needed.
                let _ = fs::remove_file(tmp);
                continue;
            }
            let path = self.block_path(cid);
            fs::rename(tmp, &path).map_err(Error::io(&path))?;
            if let Some(dir) = path.parent() {
                dirs.insert(dir.to_owned());
            }
        }
        for dir in &dirs {
            sync_dir(dir)?;
        }
        let mut tx = self.db.begin_write()?;
        if !batch.durable {
            tx.set_durability(Durability::None)?;
        }
        {
            let mut index = tx.open_table(INDEX)?;
            let mut inline = tx.open_table(INLINE)?;
            let (mut added_blocks, mut added_bytes) = (0u64, 0u64);
            for (cid, len, bytes) in &batch.entries {
                let key = cid.to_bytes();
                if index.insert(key.as_slice(), *len)?.is_none() {
                    added_blocks += 1;
                    added_bytes += len;
                }
                if let Some(bytes) = bytes {
                    inline.insert(key.as_slice(), bytes.as_slice())?;
                }
            }
            add_counters(&tx, added_blocks as i128, added_bytes as i128)?;
            if let Some((cid, info)) = &batch.pin {
                tx.open_table(PINS)?.insert(
                    cid.to_bytes().as_slice(),
                    (
                        info.size,
                        info.blocks,
                        info.stored_bytes,
                        info.name.as_deref(),
                    ),
                )?;
                if info.class != Class::Public {
                    tx.open_table(CLASSES)?
                        .insert(cid.to_bytes().as_slice(), info.class.to_byte())?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes blocks from the index (durably), then their files. Returns the blocks and bytes
    /// removed from the index.
    pub(crate) fn remove_blocks(&self, cids: &[ContentId]) -> Result<(u64, u64), Error> {
        let tx = self.db.begin_write()?;
        let mut files = Vec::new();
        let (mut blocks, mut bytes) = (0u64, 0u64);
        {
            let mut index = tx.open_table(INDEX)?;
            let mut inline = tx.open_table(INLINE)?;
            for cid in cids {
                let key = cid.to_bytes();
                let Some(len) = index.remove(key.as_slice())?.map(|v| v.value()) else {
                    // Never indexed (an interrupted put's file): just remove the file.
                    files.push(self.block_path(cid));
                    continue;
                };
                blocks += 1;
                bytes += len;
                if len <= INLINE_MAX as u64 {
                    inline.remove(key.as_slice())?;
                } else {
                    files.push(self.block_path(cid));
                }
            }
            add_counters(&tx, -(blocks as i128), -(bytes as i128))?;
        }
        tx.commit()?;
        for path in files {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path)(e)),
            }
        }
        Ok((blocks, bytes))
    }

    /// Reaches under the API to damage a stored block, for corruption tests.
    #[cfg(test)]
    pub(crate) fn corrupt_block(&self, cid: &ContentId, at: usize) {
        let key = cid.to_bytes();
        let bytes = self.read_block(cid).unwrap().unwrap();
        let mut bytes = bytes;
        bytes[at] ^= 0x01;
        if bytes.len() <= INLINE_MAX {
            let tx = self.db.begin_write().unwrap();
            tx.open_table(INLINE)
                .unwrap()
                .insert(key.as_slice(), bytes.as_slice())
                .unwrap();
            tx.commit().unwrap();
        } else {
            fs::write(self.block_path(cid), bytes).unwrap();
        }
    }
}

/// Adds to (or, with negative numbers, subtracts from) the block and byte counters.
fn add_counters(tx: &WriteTransaction, blocks: i128, bytes: i128) -> Result<(), Error> {
    let mut meta = tx.open_table(META)?;
    for (key, delta) in [("blocks", blocks), ("stored_bytes", bytes)] {
        let old = meta.get(key)?.map_or(0, |v| v.value());
        let new = (i128::from(old) + delta).clamp(0, i128::from(u64::MAX)) as u64;
        meta.insert(key, new)?;
    }
    Ok(())
}

/// Reads an index key back into an id.
pub(crate) fn index_key(key: &[u8]) -> Result<ContentId, Error> {
    ContentId::from_bytes(key).map_err(|e| {
        Error::Index(Box::new(redb::Error::Corrupted(format!(
            "index key is not a content id: {e}"
        ))))
    })
}

/// A class byte from the index, or a clear error if a newer build wrote one this build lacks.
fn decode_class(cid: &ContentId, byte: Option<u8>) -> Result<Class, Error> {
    match byte {
        None => Ok(Class::Public),
        Some(b) => Class::from_byte(b).ok_or_else(|| Error::Corrupt {
            cid: *cid,
            reason: format!("the index records an unknown data class {b}"),
        }),
    }
}

/// Number of entries in the index, for tests.
#[cfg(test)]
pub(crate) fn index_len(store: &Store) -> u64 {
    use redb::ReadableTableMetadata as _;
    let tx = store.db.begin_read().unwrap();
    tx.open_table(INDEX).unwrap().len().unwrap()
}

/// Removes the `*.tmp` files in `dir` (what a crash left of puts and pushed replicas being
/// written). Other names are not ours to delete.
fn remove_temporaries(dir: &Path) -> Result<(), Error> {
    for entry in fs::read_dir(dir).map_err(Error::io(dir))? {
        let path = entry.map_err(Error::io(dir))?.path();
        if path.extension().is_some_and(|e| e == "tmp") && path.is_file() {
            fs::remove_file(&path).map_err(Error::io(&path))?;
        }
    }
    Ok(())
}

/// fsyncs a file by path (any descriptor of a file flushes all of its dirty pages).
pub(crate) fn sync_file(path: &Path) -> Result<(), Error> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(Error::io(path))
}

/// fsyncs a directory, making the entries created in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(dir))
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Store>();
}

#[cfg(test)]
mod tests {
    use warren_protocol::CHUNK_SIZE;

    use super::*;
    use crate::{
        chunk::encode_block,
        test_util::{get, put, reopen, store},
        testdata::{random_chunk, text_chunk},
    };

    #[test]
    fn cached_blocks_from_many_threads_land_once_and_leave_no_temporaries() {
        let (_dir, big) = store(u64::MAX);
        let block = encode_block(&random_chunk(9, 300_000));
        let cid = ContentId::of_block(Codec::Raw, &block);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| big.put_block_cached(&cid, &block).unwrap());
            }
        });
        assert_eq!(big.get_block(&cid).unwrap(), block);
        assert_eq!(big.usage().unwrap().blocks, 1);
        assert_eq!(big.usage().unwrap().stored_bytes, block.len() as u64);
        let shard = big.block_path(&cid).parent().unwrap().to_owned();
        let names: Vec<String> = std::fs::read_dir(&shard)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![cid.to_string()]);
        // The offer still holds, and a refused block leaves no file behind.
        let (_dir2, small) = store(100_000);
        let err = small.put_block_cached(&cid, &block).unwrap_err();
        assert!(matches!(err, Error::OfferExceeded { .. }), "{err}");
        assert!(!small.block_path(&cid).exists());
        assert!(!small.has_block(&cid).unwrap());
    }

    #[test]
    fn put_block_verifies_before_storing() {
        let (_dir, store) = store(u64::MAX);
        let block = encode_block(&text_chunk(1, 100_000));
        let cid = ContentId::of_block(Codec::Raw, &block);
        assert!(!store.has_block(&cid).unwrap());
        let err = store.get_block(&cid).unwrap_err();
        assert!(matches!(err, Error::Missing { .. }), "{err}");

        let mut evil = block.clone();
        evil[7] ^= 1;
        let err = store.put_block(&cid, &evil).unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { cid: c, .. } if c == cid),
            "{err}"
        );
        assert!(!store.has_block(&cid).unwrap());

        store.put_block(&cid, &block).unwrap();
        store.put_block(&cid, &block).unwrap();
        assert!(store.has_block(&cid).unwrap());
        assert_eq!(store.get_block(&cid).unwrap(), block);
        assert_eq!(store.usage().unwrap().blocks, 1);
        assert_eq!(store.usage().unwrap().stored_bytes, block.len() as u64);

        let big = vec![0; MAX_BLOCK_SIZE + 1];
        let big_id = ContentId::of_block(Codec::Raw, &big);
        let err = store.put_block(&big_id, &big).unwrap_err();
        assert!(matches!(err, Error::BlockTooLarge { .. }), "{err}");
        let manifest = vec![0; MAX_MANIFEST_SIZE + 1];
        let manifest_id = ContentId::of_block(Codec::Cbor, &manifest);
        let err = store.put_block(&manifest_id, &manifest).unwrap_err();
        assert!(
            matches!(
                err,
                Error::BlockTooLarge {
                    kind: "manifest",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_push_refills_a_listed_block_whose_file_is_gone() {
        let (_dir, store) = store(1 << 30);
        let block = encode_block(&random_chunk(21, CHUNK_SIZE));
        let cid = ContentId::of_block(Codec::Raw, &block);
        store.put_block(&cid, &block).unwrap();
        std::fs::remove_file(store.block_path(&cid)).unwrap();
        assert!(store.get_block(&cid).is_err(), "the file is gone");
        store.put_block(&cid, &block).unwrap();
        assert_eq!(store.get_block(&cid).unwrap(), block);
        assert_eq!(store.usage().unwrap().blocks, 1, "counted once");
    }

    #[test]
    fn put_block_respects_the_offer() {
        let (_dir, store) = store(100);
        let small = b"\x00small";
        store
            .put_block(&ContentId::of_block(Codec::Raw, small), small)
            .unwrap();
        let big = [0u8; 100];
        let err = store
            .put_block(&ContentId::of_block(Codec::Raw, &big), &big)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::OfferExceeded {
                    used: 6,
                    adding: 100,
                    offered: 100
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn everything_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let data = random_chunk(9, CHUNK_SIZE + 3);
        let (cid, usage, pins) = {
            let store = reopen(dir.path(), 1 << 40);
            let file = put(&store, &data);
            (file.cid, store.usage().unwrap(), store.pins().unwrap())
        };
        let store = reopen(dir.path(), 1 << 40);
        assert_eq!(store.usage().unwrap(), usage);
        assert_eq!(store.pins().unwrap(), pins);
        assert_eq!(get(&store, &cid), data);
        // The offer is whatever the node says now.
        drop(store);
        assert_eq!(reopen(dir.path(), 5).usage().unwrap().offered_bytes, 5);
    }

    #[test]
    fn an_uncommitted_batch_leaves_only_temporaries_which_open_removes() {
        // What a put killed between writing block files and committing them leaves behind.
        let dir = tempfile::tempdir().unwrap();
        let block = encode_block(&random_chunk(3, CHUNK_SIZE));
        let cid = ContentId::of_block(Codec::Raw, &block);
        {
            let store = reopen(dir.path(), u64::MAX);
            let mut batch = Batch::default();
            store.stage_block(&mut batch, cid, &block).unwrap();
            assert!(
                batch.renames[0].1.exists(),
                "written under a temporary name"
            );
            assert!(
                !store.block_path(&cid).exists(),
                "not in place before the commit"
            );
            // Dropped without commit.
        }
        // A crash can also leave a pushed replica's temporary file; both go at open.
        std::fs::write(dir.path().join("tmp").join("1-7.tmp"), b"half a block").unwrap();
        std::fs::write(dir.path().join("tmp").join("keep.me"), b"not ours").unwrap();
        let store = reopen(dir.path(), u64::MAX);
        let left: Vec<_> = std::fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["keep.me"], "temporaries removed at open");
        assert!(!store.has_block(&cid).unwrap());
        assert_eq!(store.usage().unwrap().blocks, 0);
        // A later put of the same block rewrites the file and indexes it.
        store.put_block(&cid, &block).unwrap();
        assert_eq!(store.get_block(&cid).unwrap(), block);
    }

    #[test]
    fn small_blocks_are_inline_and_large_ones_are_files() {
        let (_dir, store) = store(u64::MAX);
        let file = put(&store, &random_chunk(1, CHUNK_SIZE + 100));
        let entries = store.stat(&file.cid).unwrap().entries;
        assert!(store.block_path(&entries[0].cid).exists());
        assert!(
            !store.block_path(&entries[1].cid).exists(),
            "101-byte block"
        );
        assert!(!store.block_path(&file.cid).exists(), "small manifest");
        assert_eq!(store.get_block(&entries[1].cid).unwrap().len(), 101);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(reopen(dir.path(), 1));
        {
            let db = Database::create(dir.path().join("index.redb")).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META).unwrap().insert("schema", 99).unwrap();
            tx.commit().unwrap();
        }
        let err = Store::open(dir.path(), 1).err().unwrap();
        assert!(matches!(err, Error::Schema { found: 99, .. }), "{err}");
    }

    #[test]
    fn readers_run_while_a_put_holds_the_writer_lock() {
        let (_dir, store) = store(u64::MAX);
        let first = put(&store, b"already here");
        let _writer = store.lock_writer();
        // Reads do not take the lock.
        assert_eq!(get(&store, &first.cid), b"already here");
        assert_eq!(store.pins().unwrap().len(), 1);
    }
}

#[cfg(test)]
mod held_tests {
    use super::*;

    #[test]
    fn held_blocks_survive_gc_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 30).unwrap();
        let block = vec![0u8; 100];
        let cid = ContentId::of_block(Codec::Raw, &block);
        let ticket = |rf, expires| {
            let key = warren_protocol::keypair_from_secret([1; 32]);
            warren_protocol::ticket::PlacementTicket::sign(&key, cid, rf, expires).unwrap()
        };
        assert!(matches!(
            store.hold_leased(&cid, &ticket(3, 100), u64::MAX, 1),
            Err(Error::Missing { .. })
        ));
        store.put_block(&cid, &block).unwrap();
        store
            .hold_leased(&cid, &ticket(3, 100), u64::MAX, 1)
            .unwrap();
        assert_eq!(store.held().unwrap(), vec![cid]);
        assert_eq!(store.held_rf(&cid).unwrap(), Some(3));
        // The origin's later ticket with another RF (the file was put again) wins.
        store
            .hold_leased(&cid, &ticket(5, 200), u64::MAX, 2)
            .unwrap();
        assert_eq!(store.held_rf(&cid).unwrap(), Some(5));
        assert_eq!(store.gc().unwrap().blocks_removed, 0);
        assert!(store.release(&cid).unwrap());
        assert_eq!(store.held_rf(&cid).unwrap(), None);
        assert_eq!(store.gc().unwrap().blocks_removed, 1);
        assert!(!store.has_block(&cid).unwrap());
    }

    #[test]
    fn a_files_rf_survives_a_reopen_until_it_is_unpinned() {
        let dir = tempfile::tempdir().unwrap();
        let root = {
            let store = Store::open(dir.path(), 1 << 30).unwrap();
            let root = crate::test_util::put(&store, b"kept at rf 5").cid;
            store.set_file_rf(&root, 5).unwrap();
            root
        };
        let store = Store::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(store.file_rfs().unwrap(), vec![(root, 5)]);
        assert!(store.unpin(&root).unwrap());
        assert!(store.file_rfs().unwrap().is_empty());
    }

    #[test]
    fn a_lost_pinned_manifest_leaves_the_other_responsibilities_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 30).unwrap();
        let opts = PutOptions::default();
        let kept = store
            .put(&b"a file whose manifest stays"[..], &opts, &|_| {})
            .unwrap();
        let lost = store
            .put(&b"a file whose manifest goes"[..], &opts, &|_| {})
            .unwrap();
        let replica = b"a replica held for the mesh".to_vec();
        let replica_cid = ContentId::of_block(Codec::Raw, &replica);
        store.put_block(&replica_cid, &replica).unwrap();
        let key = warren_protocol::keypair_from_secret([1; 32]);
        let ticket =
            warren_protocol::ticket::PlacementTicket::sign(&key, replica_cid, 3, 100).unwrap();
        store
            .hold_leased(&replica_cid, &ticket, u64::MAX, 1)
            .unwrap();
        store.discard_block(&lost.cid).unwrap();
        let r = store.responsibilities().unwrap();
        let listed: Vec<ContentId> = r.blocks.iter().map(|(c, _)| *c).collect();
        assert!(listed.contains(&replica_cid), "{listed:?}");
        for (cid, _) in store.dag(&kept.cid).unwrap() {
            assert!(listed.contains(&cid), "{listed:?}");
        }
        assert!(!listed.contains(&lost.cid));
        assert_eq!(r.unreadable.len(), 1);
        assert_eq!(r.unreadable[0].0, lost.cid);
    }

    #[test]
    fn discard_removes_a_block_and_its_hold() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 30).unwrap();
        let block = vec![7u8; 20_000];
        let cid = ContentId::of_block(Codec::Raw, &block);
        store.put_block(&cid, &block).unwrap();
        let key = warren_protocol::keypair_from_secret([1; 32]);
        let ticket = warren_protocol::ticket::PlacementTicket::sign(&key, cid, 3, 100).unwrap();
        store.hold_leased(&cid, &ticket, u64::MAX, 1).unwrap();
        store.discard_block(&cid).unwrap();
        assert_eq!(store.origin_use(&ticket.origin).unwrap(), 0);
        assert!(!store.has_block(&cid).unwrap());
        assert!(store.held().unwrap().is_empty());
        assert_eq!(store.held_rf(&cid).unwrap(), None);
        assert_eq!(store.usage().unwrap().blocks, 0);
    }
}
