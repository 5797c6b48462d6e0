//! The streaming board: fetched blocks handed to the reader in memory as soon as they verify.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use warren_protocol::ContentId;
use warren_storage_mesh::Error as StoreError;

use crate::error::NodeError;

/// Fetched blocks a streaming read may keep in memory at once, in bytes: beyond that the reader
/// reads them back from the store once they are written there, and a fetch whose blocks the store
/// would not take (a full offer) waits before asking for more.
const HELD_FOR_READER: usize = 16 << 20;

/// Where a streaming read learns that the blocks it waits for have arrived: the fetch hands each
/// block's verified bytes over as soon as it has them (kept in memory while the reader is less
/// than `HELD_FOR_READER` behind), then marks it stored (or failed); a blocking reader waits
/// for the one it needs next. A block the store would not take (its offer is full: the copy is
/// only a cache) stays in memory until the reader has read it as often as the file repeats it,
/// and the fetch waits for room ([`Arrivals::room`]) before asking for another, so a file larger
/// than the offer still streams. Blocks never listed were already stored. Dropping the fetch's
/// [`ArrivalsCloser`] fails whatever is still pending, so a reader never waits on a fetch that is
/// gone.
pub struct Arrivals {
    state: Mutex<Board>,
    changed: std::sync::Condvar,
    /// Wakes a fetch waiting for room.
    room: tokio::sync::Notify,
    /// Whether fetched blocks are also written to the store (`get --no-cache`: not).
    cache: bool,
}

#[derive(Default)]
struct Board {
    slots: HashMap<ContentId, Slot>,
    /// Bytes of the blocks kept in `slots` for the reader.
    held: usize,
    /// Readers blocked waiting for a block.
    waiting: usize,
    /// The read is over (done or failed): nothing more is held.
    finished: bool,
}

#[derive(Default)]
struct Slot {
    /// The block's bytes, verified against its id, until the reader has used them.
    bytes: Option<Arc<Vec<u8>>>,
    /// Reads of it still to come (a chunk repeated in the file is read once per repetition).
    uses: u32,
    /// In the store now.
    stored: bool,
    /// Why it could not be fetched or stored.
    failed: Option<String>,
}

impl Arrivals {
    /// A board waiting for `pending`: each block and how many times the reader will read it.
    pub fn new(pending: impl IntoIterator<Item = (ContentId, u32)>) -> Arc<Self> {
        Self::with_cache(pending, true)
    }

    /// [`Arrivals::new`]; with `cache` false the fetch keeps no copy: every block goes to the
    /// reader from memory only (`get --no-cache`), nothing is written to the store.
    pub fn with_cache(
        pending: impl IntoIterator<Item = (ContentId, u32)>,
        cache: bool,
    ) -> Arc<Self> {
        let slots = pending
            .into_iter()
            .map(|(c, uses)| {
                let slot = Slot {
                    uses: uses.max(1),
                    ..Slot::default()
                };
                (c, slot)
            })
            .collect();
        Arc::new(Self {
            state: Mutex::new(Board {
                slots,
                ..Board::default()
            }),
            changed: std::sync::Condvar::new(),
            room: tokio::sync::Notify::new(),
            cache,
        })
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the fetch stores what it fetches ([`Arrivals::with_cache`]).
    pub fn caches(&self) -> bool {
        self.cache
    }

    /// Hands over the verified bytes of `cid`, before they are stored: kept for the reader if
    /// there is room.
    pub fn fetched(&self, cid: ContentId, bytes: &Arc<Vec<u8>>) {
        let mut board = self.board();
        let room = board.held + bytes.len() <= HELD_FOR_READER;
        if room {
            self.hold(&mut board, cid, bytes);
        }
    }

    /// The store would not take `cid`: the reader gets its bytes from memory, room or not.
    pub fn keep(&self, cid: ContentId, bytes: &Arc<Vec<u8>>) {
        let mut board = self.board();
        self.hold(&mut board, cid, bytes);
    }

    fn hold(&self, board: &mut Board, cid: ContentId, bytes: &Arc<Vec<u8>>) {
        if board.finished {
            return;
        }
        if let Some(slot) = board.slots.get_mut(&cid)
            && slot.bytes.is_none()
            && slot.uses > 0
            && !slot.stored
        {
            slot.bytes = Some(bytes.clone());
            board.held += bytes.len();
            self.changed.notify_all();
        }
    }

    /// Records how fetching and storing `cid` ended.
    pub fn done(&self, cid: ContentId, result: &Result<(), NodeError>) {
        let mut board = self.board();
        if let Some(slot) = board.slots.get_mut(&cid)
            && !slot.stored
            && slot.failed.is_none()
        {
            match result {
                Ok(()) => slot.stored = true,
                Err(e) => slot.failed = Some(e.to_string()),
            }
        }
        self.changed.notify_all();
    }

    /// Blocks until `cid` is here: its verified bytes when the fetch handed them over, `None`
    /// when it is to be read from the store; fails with why it could not be fetched.
    pub fn wait(&self, cid: &ContentId) -> Result<Option<Arc<Vec<u8>>>, StoreError> {
        let mut board = self.board();
        loop {
            let Some(slot) = board.slots.get_mut(cid) else {
                return Ok(None);
            };
            if let Some(bytes) = slot.bytes.clone() {
                slot.uses = slot.uses.saturating_sub(1);
                if slot.uses == 0 || slot.stored {
                    // Read for the last time, or later reads find it in the store.
                    slot.bytes = None;
                    board.held -= bytes.len();
                    self.room.notify_waiters();
                }
                return Ok(Some(bytes));
            }
            if slot.stored {
                return Ok(None);
            }
            if let Some(reason) = &slot.failed {
                return Err(StoreError::Unavailable {
                    cid: *cid,
                    reason: reason.clone(),
                });
            }
            // The reader waits: a fetch held back for room may go on whatever is held.
            board.waiting += 1;
            self.room.notify_waiters();
            board = self.changed.wait(board).unwrap_or_else(|e| e.into_inner());
            board.waiting -= 1;
        }
    }

    /// Returns once the fetch may ask for another block: fewer than `HELD_FOR_READER` bytes
    /// are held for the reader, or the reader is waiting for a block (then only a fetch can let
    /// it go on: blocks held for repeated use must not stall it).
    pub async fn room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let board = self.board();
                if board.held < HELD_FOR_READER || board.waiting > 0 || board.finished {
                    return;
                }
            }
            notified.await;
        }
    }

    /// The read is over (done or failed): drops what is held and lets the fetch go on without
    /// waiting for room (what it fetches still goes into the store).
    pub fn finished(&self) {
        let mut board = self.board();
        board.finished = true;
        board.held = 0;
        for slot in board.slots.values_mut() {
            slot.bytes = None;
        }
        self.room.notify_waiters();
    }

    /// A guard for the fetch side: when dropped, every block not yet done fails.
    pub fn closer(self: &Arc<Self>) -> ArrivalsCloser {
        ArrivalsCloser(self.clone())
    }
}

/// See [`Arrivals::closer`].
pub struct ArrivalsCloser(pub(crate) Arc<Arrivals>);

impl Drop for ArrivalsCloser {
    fn drop(&mut self) {
        let mut board = self.0.board();
        for slot in board.slots.values_mut() {
            if !slot.stored && slot.failed.is_none() {
                slot.failed = Some("the fetch stopped before this block arrived".into());
            }
        }
        self.0.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use warren_protocol::Codec;

    fn block(i: u8, len: usize) -> (ContentId, Arc<Vec<u8>>) {
        let bytes = vec![i; len];
        (ContentId::of_block(Codec::Raw, &bytes), Arc::new(bytes))
    }

    #[test]
    fn a_reader_gets_handed_over_bytes_before_they_are_stored_and_the_store_after() {
        let (a, bytes_a) = block(1, 1000);
        let (b, _) = block(2, 1000);
        let (stored_before, _) = block(3, 10);
        let board = Arrivals::new([(a, 1), (b, 1)]);
        board.fetched(a, &bytes_a);
        // Handed over: the reader has the bytes at once, without waiting for the store.
        assert_eq!(board.wait(&a).expect("arrived").as_deref(), Some(&*bytes_a));
        // Taken once; a second read of the same block (a chunk repeated in the file) waits for
        // the store, then reads it from there.
        board.done(a, &Ok(()));
        assert!(board.wait(&a).expect("stored").is_none());
        // Never listed: already in the store.
        assert!(board.wait(&stored_before).expect("stored").is_none());
        board.done(b, &Ok(()));
        assert!(board.wait(&b).expect("stored").is_none());
    }

    #[test]
    fn handed_over_bytes_beyond_the_readers_room_wait_for_the_store() {
        let blocks: Vec<_> = (0..20).map(|i| block(i, 1 << 20)).collect();
        let board = Arrivals::new(blocks.iter().map(|(c, _)| (*c, 1)));
        let kept = HELD_FOR_READER >> 20;
        for (c, b) in &blocks[..=kept] {
            board.fetched(*c, b);
        }
        for (c, b) in &blocks[..kept] {
            assert_eq!(board.wait(c).expect("held").as_deref(), Some(&**b));
        }
        // Not kept (no room then): the reader blocks until the fetch has stored it.
        let (late, _) = blocks[kept];
        let reader = {
            let board = board.clone();
            std::thread::spawn(move || board.wait(&late).map(|b| b.is_none()))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!reader.is_finished(), "the reader must wait for the store");
        board.done(late, &Ok(()));
        assert!(reader.join().expect("reader").expect("stored"));
        // The reader took what it was handed: there is room again.
        let (next, bytes) = &blocks[kept + 1];
        board.fetched(*next, bytes);
        assert_eq!(board.wait(next).expect("held").as_deref(), Some(&**bytes));
    }

    #[test]
    fn a_block_the_store_refused_stays_in_memory_until_its_last_use_whatever_the_room() {
        let blocks: Vec<_> = (0..20).map(|i| block(i, 1 << 20)).collect();
        let (rep, rep_bytes) = block(200, 1 << 20);
        let board = Arrivals::new(blocks.iter().map(|(c, _)| (*c, 1)).chain([(rep, 3)]));
        // The room is full of blocks handed over, then the store refuses two more.
        for (c, b) in &blocks[..16] {
            board.fetched(*c, b);
        }
        board.keep(rep, &rep_bytes);
        let refused = NodeError::Network("the storage offer would be exceeded".into());
        board.done(rep, &Err(refused));
        let (late, late_bytes) = &blocks[16];
        board.keep(*late, late_bytes);
        assert_eq!(
            board.wait(late).expect("kept").as_deref(),
            Some(&**late_bytes)
        );
        // Read three times (a chunk the file repeats), then gone from memory.
        for _ in 0..3 {
            assert_eq!(
                board.wait(&rep).expect("kept").as_deref(),
                Some(&*rep_bytes)
            );
        }
        assert!(board.board().slots[&rep].bytes.is_none());
        let err = board
            .wait(&rep)
            .expect_err("a fourth read was not announced");
        assert!(err.to_string().contains("offer"), "{err}");
        for (c, _) in &blocks[..16] {
            board.wait(c).expect("held");
        }
        assert_eq!(board.board().held, 0);
    }

    #[test]
    fn a_fetch_waits_for_room_unless_the_reader_waits_or_is_gone() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let blocks: Vec<_> = (0..18).map(|i| block(i, 1 << 20)).collect();
        let board = Arrivals::new(blocks.iter().map(|(c, _)| (*c, 1)));
        let has_room = |board: &Arc<Arrivals>| {
            rt.block_on(async {
                tokio::time::timeout(Duration::from_millis(50), board.room())
                    .await
                    .is_ok()
            })
        };
        assert!(has_room(&board));
        for (c, b) in &blocks[..16] {
            board.keep(*c, b);
        }
        assert!(!has_room(&board), "16 MiB held: the fetch waits");
        // The reader takes one: room again.
        board.wait(&blocks[0].0).expect("held");
        assert!(has_room(&board));
        board.keep(blocks[16].0, &blocks[16].1);
        assert!(!has_room(&board));
        // A reader blocked on a block not fetched yet lets the fetch go on.
        let reader = {
            let (board, next) = (board.clone(), blocks[17].0);
            std::thread::spawn(move || board.wait(&next).map(|b| b.is_some()))
        };
        while board.board().waiting == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(has_room(&board));
        board.keep(blocks[17].0, &blocks[17].1);
        assert!(reader.join().expect("reader").expect("kept"));
        // The read is over: nothing is held and the fetch never waits.
        board.finished();
        assert_eq!(board.board().held, 0);
        assert!(has_room(&board));
    }

    #[test]
    fn a_failed_or_abandoned_fetch_fails_the_reader_naming_the_block_unless_it_has_the_bytes() {
        let (a, _) = block(1, 100);
        let (b, bytes_b) = block(2, 100);
        let (c, _) = block(3, 100);
        let board = Arrivals::new([(a, 1), (b, 1), (c, 1)]);
        board.done(a, &Err(NodeError::Network("no holder of it found".into())));
        let err = board.wait(&a).expect_err("failed");
        assert!(err.to_string().contains(&a.to_string()), "{err}");
        assert!(err.to_string().contains("no holder of it found"), "{err}");
        // Handed over, then storing it failed (a full offer, say): the reader still has it.
        board.fetched(b, &bytes_b);
        board.done(b, &Err(NodeError::Network("offer exceeded".into())));
        assert!(board.wait(&b).expect("held bytes").is_some());
        drop(board.closer());
        let err = board.wait(&c).expect_err("abandoned");
        assert!(err.to_string().contains("the fetch stopped"), "{err}");
    }
}
