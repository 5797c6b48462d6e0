//! The storage mesh on the network: placement at RF, verified parallel fetch, self-healing repair
//! and proof-of-storage audits.
//!
//! ```text
//! API put ──► replicate ──► place() per block ──► StoreRequest to each target ──► target stores,
//!                                                                                 holds, provides
//! API get ──► fetch ──► providers (DHT) ──► BlockRequest, several holders in parallel, verified
//! repair task (every REPAIR_EVERY) ──► per held block: live holders ──► Repairer::plan ──► push
//! audit task  (every AUDIT_EVERY)  ──► random held block, random other holder ──► challenge ──►
//!                                       verify against the block id ──► AuditRecord
//! ```
//!
//! Every decision is made by the pure code in `warren-storage-mesh` (placement, repair plan, hot
//! RF, proofs); this module only gathers what it needs (from the store and the event loop) and
//! moves blocks.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use libp2p::PeerId;
use libp2p::identity::Keypair;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use warren_protocol::block_transfer::{
    BlockRequest, Request, Response, StoreRequest, StoreResponse,
};
use warren_protocol::observation::Kind;
use warren_protocol::reputation::{FLOOR, NEUTRAL_SCORE, Rate, RateLimit};
use warren_protocol::{ContentId, Observation, REPUTATION_TOPIC, Reputation};
use warren_storage_mesh::hot::{HotConfig, HotTracker};
use warren_storage_mesh::placement::{Candidate, MAX_RF, PlacementPolicy, fetch_order, place};
use warren_storage_mesh::proof::{self, Challenge, Proof};
use warren_storage_mesh::repair::{RepairConfig, RepairInput, Repairer};
use warren_storage_mesh::{Error as StoreError, Store};

use crate::config::{FaultInject, MeshConfig};
use crate::error::NodeError;
use crate::metrics::Metrics;
use crate::network::Client;

/// Blocks moved at once by one replicate or fetch.
const PARALLEL: usize = 8;
/// Waits before asking the holders of a block again when none of them had it.
const FETCH_RETRY: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_millis(1500),
    Duration::from_millis(3000),
];
/// Blocks `warren audit` looks up (provider records) to find one the audited peer claims.
const AUDIT_PROBES: usize = 64;
/// Audit results kept for the API and reputation.
const AUDIT_LOG: usize = 1024;
/// How long a holder that failed an audit is not counted as a holder of that block.
const FAILED_HOLDER_MS: u64 = 10 * 60 * 1000;
/// How long a passed audit vouches for a holder before repair checks it again.
const VERIFIED_HOLDER_MS: u64 = 30 * 1000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
enum PushError {
    /// This node has no good copy to send.
    #[error("{0}")]
    Local(String),
    /// The target refused or could not be reached.
    #[error("{0}")]
    Remote(String),
}

/// One audit this node ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The holder audited.
    pub subject: String,
    /// The block challenged.
    pub block: String,
    /// Whether the proof verified against the block id.
    pub passed: bool,
    /// Why it failed.
    pub reason: Option<String>,
    /// When (unix ms).
    pub time_ms: u64,
}

/// One holder in a [`WhereReport`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HolderView {
    /// Its peer id.
    pub peer: String,
    /// Connected now and offering storage (this node counts as live).
    pub live: bool,
    /// This node (it stores the block).
    pub this_node: bool,
    /// The storage tier its record offers (connected peers only).
    pub tier: Option<warren_protocol::Tier>,
}

/// The holders of one block of a file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockHolders {
    /// The block.
    pub block: String,
    /// Its length in bytes.
    pub len: u64,
    /// This node if it stores the block, then the peers whose provider records claim it.
    pub holders: Vec<HolderView>,
    /// Live holders: the copies actually held now.
    pub rf_held: usize,
    /// Extra copies this node wants for the block because it served it often lately (hot
    /// content, 0 when it is cold); its repair pass places them on hot-tier peers.
    pub hot_extra: usize,
}

/// `warren where`: the holders of every block of a file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WhereReport {
    /// The file.
    pub cid: String,
    /// The RF this node placed it with, if it put it.
    pub wanted_rf: Option<usize>,
    /// The fewest live holders of any block.
    pub min_rf_held: usize,
    /// Every block, root first, in the order of the tree walk.
    pub blocks: Vec<BlockHolders>,
}

/// What `replicate` did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReplicationReport {
    /// Replication factor asked for.
    pub rf: usize,
    /// Blocks of the file.
    pub blocks: usize,
    /// Copies stored on other peers.
    pub copies: usize,
    /// Copies that failed (the repair task retries them).
    pub failed: usize,
    /// Distinct peers holding at least one block.
    pub holders: Vec<String>,
}

/// One fetch's memory of the holders that served it: they are asked first for the next blocks
/// (like a Bitswap session); the DHT is asked only when none of them has a block.
#[derive(Default)]
pub struct FetchSession {
    holders: Mutex<Vec<PeerId>>,
    /// Holders another one outran: asked last for the rest of the session.
    slow: Mutex<BTreeSet<PeerId>>,
    /// The last block times (ms), for the hedge delay.
    times: Mutex<VecDeque<u64>>,
}

/// Block times a session remembers.
const SESSION_TIMES: usize = 32;
/// Hedge delay before a session has timed any block.
const HEDGE_FIRST: Duration = Duration::from_secs(3);
/// Bounds of the hedge delay: four times the session's median block time, within these.
const HEDGE_MIN: Duration = Duration::from_secs(1);
const HEDGE_MAX: Duration = Duration::from_secs(10);

impl FetchSession {
    /// How long requests may run before another holder is asked as well.
    fn hedge_after(&self) -> Duration {
        let Ok(times) = self.times.lock() else {
            return HEDGE_FIRST;
        };
        if times.is_empty() {
            return HEDGE_FIRST;
        }
        let mut sorted: Vec<u64> = times.iter().copied().collect();
        sorted.sort_unstable();
        let median = Duration::from_millis(sorted[sorted.len() / 2]);
        (median * 4).clamp(HEDGE_MIN, HEDGE_MAX)
    }

    fn record_time(&self, took: Duration) {
        if let Ok(mut times) = self.times.lock() {
            if times.len() == SESSION_TIMES {
                times.pop_front();
            }
            times.push_back(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
        }
    }

    fn mark_slow(&self, peer: PeerId) {
        if let Ok(mut slow) = self.slow.lock() {
            slow.insert(peer);
        }
    }

    /// `order` with the holders marked slow moved to the end (otherwise unchanged).
    fn slow_last(&self, order: Vec<PeerId>) -> Vec<PeerId> {
        let Ok(slow) = self.slow.lock() else {
            return order;
        };
        let (mut fast, late): (Vec<PeerId>, Vec<PeerId>) =
            order.into_iter().partition(|p| !slow.contains(p));
        fast.extend(late);
        fast
    }
}

/// Fetched blocks a streaming read may keep in memory at once, in bytes: beyond that the reader
/// reads them back from the store once they are written there, and a fetch whose blocks the store
/// would not take (a full offer) waits before asking for more.
const HELD_FOR_READER: usize = 16 << 20;

/// Where a streaming read learns that the blocks it waits for have arrived: the fetch hands each
/// block's verified bytes over as soon as it has them (kept in memory while the reader is less
/// than [`HELD_FOR_READER`] behind), then marks it stored (or failed); a blocking reader waits
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
        })
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Returns once the fetch may ask for another block: fewer than [`HELD_FOR_READER`] bytes
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

/// Mesh state shared by the API handlers and the background tasks.
pub struct Mesh {
    client: Client,
    store: Arc<Store>,
    repairer: Mutex<Repairer>,
    hot: Arc<Mutex<HotTracker>>,
    audits: Mutex<VecDeque<AuditRecord>>,
    /// (holder, block) → when it failed an audit.
    failed: Mutex<HashMap<(PeerId, [u8; 32]), u64>>,
    /// (holder, block) → when it last passed an audit.
    verified: Mutex<HashMap<(PeerId, [u8; 32]), u64>>,
    /// Replication factor wanted per block this node placed or holds.
    rf: Mutex<HashMap<ContentId, usize>>,
    config: MeshConfig,
    /// Signs this node's observations.
    key: Keypair,
    /// Local scores; audits feed it first-hand.
    reputation: Arc<Mutex<Reputation>>,
    /// This node's own observations published per window: kept under the limit the others
    /// enforce, so they never drop (or penalise) what it says.
    publish_rate: Mutex<RateLimit>,
    /// Audit, repair and latency counters (Prometheus) and the dashboard feed.
    metrics: Arc<Metrics>,
    /// Per block checked by the last repair pass: verified copies (this node's included) and the
    /// replication factor wanted, for the dashboard.
    copies: Mutex<HashMap<ContentId, (usize, usize)>>,
}

impl Mesh {
    /// Mesh services over `client` and `store`, counting into a registry of their own.
    pub fn new(
        client: Client,
        store: Arc<Store>,
        hot: Arc<Mutex<HotTracker>>,
        config: MeshConfig,
        key: Keypair,
        reputation: Arc<Mutex<Reputation>>,
    ) -> Arc<Self> {
        Self::with_metrics(
            client,
            store,
            hot,
            config,
            key,
            reputation,
            Arc::new(Metrics::new()),
        )
    }

    /// Mesh services over `client` and `store`, counting into the node's `metrics`.
    pub fn with_metrics(
        client: Client,
        store: Arc<Store>,
        hot: Arc<Mutex<HotTracker>>,
        config: MeshConfig,
        key: Keypair,
        reputation: Arc<Mutex<Reputation>>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            store,
            repairer: Mutex::new(Repairer::new(
                RepairConfig {
                    // Long enough that a push lands and is announced before the block is
                    // planned again; the closest-holder rule and target back-off prevent loops.
                    cooldown_ms: (3 * config.repair_every_ms).max(3_000),
                    ..RepairConfig::default()
                },
                now_ms(),
            )),
            hot,
            audits: Mutex::new(VecDeque::new()),
            failed: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            rf: Mutex::new(HashMap::new()),
            config,
            key,
            reputation,
            publish_rate: Mutex::new(RateLimit::default()),
            metrics,
            copies: Mutex::new(HashMap::new()),
        })
    }

    /// The node's metrics and dashboard feed.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The replication factor wanted for `block` (the default when this node never placed it).
    pub fn wanted_rf(&self, block: &ContentId) -> usize {
        self.rf
            .lock()
            .ok()
            .and_then(|m| m.get(block).copied())
            .unwrap_or(self.config.rf)
    }

    /// Copies of `block` the last repair pass verified (this node's included), if it checked it.
    pub fn verified_copies(&self, block: &ContentId) -> Option<usize> {
        self.copies
            .lock()
            .ok()
            .and_then(|m| m.get(block).map(|(n, _)| *n))
    }

    /// A fresh hot-content tracker to share between the event loop and the mesh.
    pub fn hot_tracker(config: &MeshConfig) -> Arc<Mutex<HotTracker>> {
        Arc::new(Mutex::new(HotTracker::new(HotConfig {
            window_ms: config.hot_window_ms,
            heat_up: config.hot_heat_up,
            cool_down: config.hot_cool_down,
            ..HotConfig::default()
        })))
    }

    /// This node's reputation table.
    pub fn reputation(&self) -> &Arc<Mutex<Reputation>> {
        &self.reputation
    }

    /// The default replication factor.
    pub fn default_rf(&self) -> usize {
        self.config.rf
    }

    /// The audits this node ran, newest last.
    pub fn audits(&self) -> Vec<AuditRecord> {
        self.audits
            .lock()
            .map(|a| a.iter().cloned().collect())
            .unwrap_or_default()
    }

    async fn store_call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, NodeError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| NodeError::Network(format!("store task: {e}")))?
            .map_err(NodeError::from)
    }

    /// Places every block of the file `root` on the `rf` peers XOR-closest to it (other than
    /// this node), and announces this node as a provider of all of them.
    pub async fn replicate(
        &self,
        root: ContentId,
        rf: usize,
    ) -> Result<ReplicationReport, NodeError> {
        let dag = self.announce(root).await?;
        let (me, candidates) = self.client.candidates().await?;
        self.want_rf(root, &dag, rf).await?;
        let policy = PlacementPolicy::with_rf(rf);
        let mut jobs = Vec::new();
        for (cid, len) in &dag {
            for to in place(&cid.hash(), &candidates, &policy, *len, &[me]).into_peers() {
                jobs.push((*cid, to));
            }
        }
        let results: Vec<(PeerId, Result<(), PushError>)> = futures::stream::iter(jobs)
            .map(|(cid, to)| async move { (to, self.push(cid, to, rf).await) })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let mut report = ReplicationReport {
            rf,
            blocks: dag.len(),
            ..Default::default()
        };
        let mut holders = BTreeSet::new();
        for (to, r) in results {
            match r {
                Ok(()) => {
                    report.copies += 1;
                    holders.insert(to.to_string());
                }
                Err(e) => {
                    report.failed += 1;
                    warn!(peer = %to, "replica not stored: {e}");
                }
            }
        }
        report.holders = holders.into_iter().collect();
        info!(%root, rf, copies = report.copies, holders = report.holders.len(), "replicated");
        Ok(report)
    }

    /// Keeps the file `root` on this node only (RF 0): announces it, so others can fetch it from
    /// here, and tells the repair pass to place no copies of it (unless it gets hot).
    pub async fn keep_here(&self, root: ContentId) -> Result<(), NodeError> {
        let dag = self.announce(root).await?;
        self.want_rf(root, &dag, 0).await
    }

    /// Remembers (durably, in the store) that the file `root`, of blocks `dag`, is kept at `rf`.
    async fn want_rf(
        &self,
        root: ContentId,
        dag: &[(ContentId, u64)],
        rf: usize,
    ) -> Result<(), NodeError> {
        let rf = rf.min(MAX_RF);
        self.remember_rf(dag, rf);
        let rf = u8::try_from(rf).unwrap_or(u8::MAX);
        self.store_call(move |s| s.set_file_rf(&root, rf)).await
    }

    /// Notes in memory that every block of `dag` is kept at `rf`.
    fn remember_rf(&self, dag: &[(ContentId, u64)], rf: usize) {
        if let Ok(mut wanted) = self.rf.lock() {
            for (cid, _) in dag {
                wanted.insert(*cid, rf);
            }
        }
    }

    /// Loads the RF of every file this node put (after a restart), so repair keeps each at its
    /// own RF rather than the default.
    async fn restore_file_rfs(&self) -> Result<usize, NodeError> {
        let files = self.store_call(|s| s.file_rfs()).await?;
        let mut restored = 0;
        for (root, rf) in files {
            match self.store_call(move |s| s.dag(&root)).await {
                Ok(dag) => {
                    self.remember_rf(&dag, usize::from(rf));
                    restored += 1;
                }
                Err(e) => debug!(%root, "RF of a file not restored: {e}"),
            }
        }
        Ok(restored)
    }

    /// Announces this node as a provider of every block of the file `root`; returns its blocks.
    pub async fn announce(&self, root: ContentId) -> Result<Vec<(ContentId, u64)>, NodeError> {
        let dag = self.store_call(move |s| s.dag(&root)).await?;
        self.client
            .provide(dag.iter().map(|(c, _)| *c).collect())
            .await?;
        Ok(dag)
    }

    /// Sends this node's copy of `cid` to `to`. A local copy that cannot be read is discarded
    /// (it is this node's fault, not the target's).
    async fn push(&self, cid: ContentId, to: PeerId, rf: usize) -> Result<(), PushError> {
        let store = self.store.clone();
        let data = tokio::task::spawn_blocking(move || match store.get_block(&cid) {
            Ok(data) => Ok(data),
            Err(e) => {
                let _ = not_served(&store, &cid, e);
                Err(PushError::Local(format!("no good local copy of {cid}")))
            }
        })
        .await
        .map_err(|e| PushError::Local(e.to_string()))??;
        self.push_data(cid, data, to, rf)
            .await
            .map_err(PushError::Remote)
    }

    async fn push_data(
        &self,
        cid: ContentId,
        data: Vec<u8>,
        to: PeerId,
        rf: usize,
    ) -> Result<(), String> {
        let rf = u8::try_from(rf.min(MAX_RF)).unwrap_or(u8::MAX);
        let request = Request::Store(StoreRequest {
            block: cid,
            data,
            rf,
        });
        match self.client.blocks(to, request).await? {
            Response::Stored(StoreResponse { accepted: true, .. }) => {
                // It verified the bytes against the id before storing: a good copy now.
                let key = (to, cid.hash());
                if let Ok(mut v) = self.verified.lock() {
                    v.insert(key, now_ms());
                }
                if let Ok(mut f) = self.failed.lock() {
                    f.remove(&key);
                }
                Ok(())
            }
            Response::Stored(StoreResponse { reason, .. }) => {
                Err(reason.unwrap_or_else(|| "refused".into()))
            }
            other => Err(format!("unexpected answer {}", other.kind())),
        }
    }

    /// Makes every block of the file `root` local, fetching what is missing from its holders.
    pub async fn fetch(&self, root: ContentId) -> Result<(), NodeError> {
        let session = FetchSession::default();
        let missing = self.fetch_manifests(root, &session).await?;
        let results: Vec<Result<(), NodeError>> =
            self.fetch_blocks(missing, &session, None).collect().await;
        results.into_iter().collect()
    }

    /// The first half of a fetch: makes every manifest of the file `root` local (level by level,
    /// until the whole tree is listed) and returns the blocks still missing, in file order.
    pub async fn fetch_manifests(
        &self,
        root: ContentId,
        session: &FetchSession,
    ) -> Result<Vec<ContentId>, NodeError> {
        let dag = self.dag_fetching_manifests(root, session).await?;
        let store = self.store.clone();
        let cids: Vec<ContentId> = dag.iter().map(|(c, _)| *c).collect();
        tokio::task::spawn_blocking(move || {
            cids.into_iter()
                .filter(|c| !store.has_block(c).unwrap_or(false))
                .collect()
        })
        .await
        .map_err(|e| NodeError::Network(e.to_string()))
    }

    /// Every block of the file `root` with its length ([`Store::dag`]), fetching the manifests
    /// this node lacks, level by level, until the whole tree is listed (not the chunks).
    async fn dag_fetching_manifests(
        &self,
        root: ContentId,
        session: &FetchSession,
    ) -> Result<Vec<(ContentId, u64)>, NodeError> {
        loop {
            match self.store_call(move |s| s.dag(&root)).await {
                Ok(dag) => return Ok(dag),
                Err(NodeError::Storage(StoreError::Missing { cid })) => {
                    let bytes = self.fetch_block(cid, session).await?;
                    self.store_call(move |s| s.put_block_cached(&cid, &bytes))
                        .await?
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The second half: fetches `blocks`, [`PARALLEL`] at a time and started in the order given
    /// (file order, so a reader streaming the file waits as little as possible), and stores each
    /// in the store. With a `board`, each block's bytes are handed to it as soon as they are
    /// verified (the reader need not wait for the store), it learns when each is stored or
    /// failed, a block the store refuses for its offer is kept there for the reader instead,
    /// and no block is asked for while the board has no [`room`](Arrivals::room).
    pub fn fetch_blocks<'a>(
        &'a self,
        blocks: Vec<ContentId>,
        session: &'a FetchSession,
        board: Option<Arc<Arrivals>>,
    ) -> impl Stream<Item = Result<(), NodeError>> + 'a {
        futures::stream::iter(blocks)
            .map(move |cid| {
                let board = board.clone();
                async move {
                    if let Some(b) = &board {
                        b.room().await;
                    }
                    let result = match self.fetch_block(cid, session).await {
                        Ok(bytes) => {
                            let bytes = Arc::new(bytes);
                            if let Some(b) = &board {
                                b.fetched(cid, &bytes);
                            }
                            let copy = bytes.clone();
                            let stored = self
                                .store_call(move |s| s.put_block_cached(&cid, &copy))
                                .await;
                            match (&board, stored) {
                                // The fetched copy is only a cache: the read goes on from
                                // memory.
                                (
                                    Some(b),
                                    Err(NodeError::Storage(StoreError::OfferExceeded { .. })),
                                ) => {
                                    b.keep(cid, &bytes);
                                    return Ok(());
                                }
                                (_, stored) => stored,
                            }
                        }
                        Err(e) => Err(e),
                    };
                    if let Some(b) = &board {
                        b.done(cid, &result);
                    }
                    result
                }
            })
            .buffer_unordered(PARALLEL)
    }

    /// Asks `peer` for `cid`: its bytes, when the answer matches the id.
    async fn try_fetch(&self, cid: ContentId, peer: PeerId) -> Result<Vec<u8>, String> {
        match self
            .client
            .blocks(peer, Request::Get(BlockRequest { block: cid }))
            .await?
        {
            // Decoding verified the bytes against the id before we see them.
            Response::Block(b) if b.block == cid => Ok(b.data),
            other => Err(format!("{peer} answered {}", other.kind())),
        }
    }

    /// `holders` of `cid` in the order to ask them: best reputation first, below-floor holders
    /// last ([`fetch_order`]).
    fn fetch_order(&self, cid: &ContentId, holders: &[PeerId]) -> Vec<PeerId> {
        let now = now_ms();
        let scored: Vec<(PeerId, Option<f64>)> = match self.reputation.lock() {
            Ok(rep) => holders
                .iter()
                .map(|p| {
                    let score = rep
                        .score(p, now)
                        .map(|s| if s.is_below_floor() { 0.0 } else { s.total });
                    (*p, score)
                })
                .collect(),
            Err(_) => holders.iter().map(|p| (*p, None)).collect(),
        };
        fetch_order(&cid.hash(), &scored, FLOOR, NEUTRAL_SCORE)
    }

    /// Fetches one block from whichever holder answers with bytes that match its id: first the
    /// session's holders, then those the DHT names, each in [`Self::fetch_order`]. When none of
    /// them has it, asks again after [`FETCH_RETRY`] (a holder's provider record can still be on
    /// its way through the DHT right after a put, a holder can be briefly overloaded).
    async fn fetch_block(
        &self,
        cid: ContentId,
        session: &FetchSession,
    ) -> Result<Vec<u8>, NodeError> {
        let mut last = String::new();
        for (attempt, wait) in std::iter::once(&Duration::ZERO)
            .chain(FETCH_RETRY.iter())
            .enumerate()
        {
            if !wait.is_zero() {
                debug!(%cid, attempt, "no holder answered; asking again in {wait:?}");
                tokio::time::sleep(*wait).await;
            }
            match self.fetch_block_once(cid, session).await {
                Ok(bytes) => return Ok(bytes),
                Err(e) => last = e,
            }
        }
        Err(NodeError::Network(format!(
            "cannot fetch block {cid} after {} attempts: {last}",
            FETCH_RETRY.len() + 1
        )))
    }

    /// One round of [`Self::fetch_block`]: every known holder once.
    async fn fetch_block_once(
        &self,
        cid: ContentId,
        session: &FetchSession,
    ) -> Result<Vec<u8>, String> {
        let known: Vec<PeerId> = session
            .holders
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let mut failures = Vec::new();
        let order = session.slow_last(self.fetch_order(&cid, &known));
        if let Some((_, bytes)) = self.race(cid, order, session, &mut failures).await {
            return Ok(bytes);
        }
        let (me, _) = self.client.candidates().await.map_err(|e| e.to_string())?;
        let mut providers = self
            .client
            .providers(cid)
            .await
            .map_err(|e| e.to_string())?;
        providers.retain(|p| *p != me && !known.contains(p));
        let order = session.slow_last(self.fetch_order(&cid, &providers));
        if let Some((peer, bytes)) = self.race(cid, order, session, &mut failures).await {
            if let Ok(mut s) = session.holders.lock()
                && !s.contains(&peer)
                && s.len() < 16
            {
                s.push(peer);
            }
            return Ok(bytes);
        }
        if failures.is_empty() {
            return Err("no holder of it found in the DHT".into());
        }
        Err(failures.join("; "))
    }

    /// Asks `peers` for `cid` in order: the next one when a request fails, and also when the
    /// requests under way have taken longer than the session's hedge delay (a slow holder is
    /// outrun, not waited for). Returns the peer that delivered and the block; a peer still busy then is
    /// asked last for the rest of the session. Failures are added to `failures`.
    async fn race(
        &self,
        cid: ContentId,
        peers: Vec<PeerId>,
        session: &FetchSession,
        failures: &mut Vec<String>,
    ) -> Option<(PeerId, Vec<u8>)> {
        use futures::stream::FuturesUnordered;
        let attempt = |peer: PeerId| async move {
            let started = std::time::Instant::now();
            (peer, started, self.try_fetch(cid, peer).await)
        };
        let mut queue: VecDeque<PeerId> = peers.into();
        let mut running = FuturesUnordered::new();
        let mut busy: Vec<PeerId> = Vec::new();
        let first = queue.pop_front()?;
        running.push(attempt(first));
        busy.push(first);
        loop {
            let hedge = session.hedge_after();
            tokio::select! {
                done = running.next() => match done {
                    None => return None,
                    Some((peer, started, Ok(bytes))) => {
                        session.record_time(started.elapsed());
                        busy.retain(|p| *p != peer);
                        for slow in busy {
                            info!(%cid, %slow, %peer, "a slow holder was outrun: asked last from now on");
                            session.mark_slow(slow);
                        }
                        return Some((peer, bytes));
                    }
                    Some((peer, _, Err(e))) => {
                        debug!(%cid, %peer, "holder failed: {e}");
                        failures.push(e);
                        busy.retain(|p| *p != peer);
                        if let Some(next) = queue.pop_front() {
                            running.push(attempt(next));
                            busy.push(next);
                        } else if running.is_empty() {
                            return None;
                        }
                    }
                },
                () = tokio::time::sleep(hedge), if !queue.is_empty() => {
                    if let Some(next) = queue.pop_front() {
                        debug!(%cid, %next, "no answer after {hedge:?}: asking another holder too");
                        running.push(attempt(next));
                        busy.push(next);
                    }
                }
            }
        }
    }

    /// Where the blocks of the file `root` are: for each block (root first, in the order of the
    /// tree walk), the peers whose provider records claim it and whether each is connected now,
    /// this node included when it stores the block. Fetches the file's manifests if they are not
    /// local (not its chunks).
    pub async fn where_is(&self, root: ContentId) -> Result<WhereReport, NodeError> {
        let dag = self
            .dag_fetching_manifests(root, &FetchSession::default())
            .await?;
        let (me, candidates) = self.client.candidates().await?;
        let tiers: HashMap<PeerId, warren_protocol::Tier> =
            candidates.iter().map(|c| (c.peer, c.tier)).collect();
        let rows: Vec<Result<BlockHolders, NodeError>> = futures::stream::iter(dag)
            .map(|(cid, len)| {
                let tiers = &tiers;
                async move {
                    let here = self.store_call(move |s| s.has_block(&cid)).await?;
                    let mut claimed = self.client.providers(cid).await?;
                    claimed.retain(|p| *p != me);
                    claimed.sort();
                    claimed.dedup();
                    let mut holders: Vec<HolderView> = Vec::new();
                    if here {
                        holders.push(HolderView {
                            peer: me.to_string(),
                            live: true,
                            this_node: true,
                            tier: None,
                        });
                    }
                    holders.extend(claimed.iter().map(|p| HolderView {
                        peer: p.to_string(),
                        live: tiers.contains_key(p),
                        this_node: false,
                        tier: tiers.get(p).copied(),
                    }));
                    let rf_held = holders.iter().filter(|h| h.live).count();
                    let hot_extra = self
                        .hot
                        .lock()
                        .map(|mut h| h.extra_rf(&cid.hash(), now_ms()))
                        .unwrap_or(0);
                    Ok(BlockHolders {
                        block: cid.to_string(),
                        len,
                        holders,
                        rf_held,
                        hot_extra,
                    })
                }
            })
            .buffered(PARALLEL)
            .collect()
            .await;
        let blocks = rows.into_iter().collect::<Result<Vec<_>, _>>()?;
        let wanted_rf = self.rf.lock().ok().and_then(|m| m.get(&root).copied());
        Ok(WhereReport {
            cid: root.to_string(),
            min_rf_held: blocks.iter().map(|b| b.rf_held).min().unwrap_or(0),
            wanted_rf,
            blocks,
        })
    }

    /// Runs one proof-of-storage audit of `peer` now and records it like the scheduled ones.
    /// The block: `cid` itself if it is a chunk this node knows the length of; for a file, a
    /// random block of it that `peer`'s provider records claim; without `cid`, a random block
    /// this node is responsible for that `peer` claims.
    pub async fn audit_peer(
        &self,
        peer: PeerId,
        cid: Option<ContentId>,
    ) -> Result<AuditRecord, NodeError> {
        let (me, _) = self.client.candidates().await?;
        if peer == me {
            return Err(NodeError::Network(
                "a node does not audit itself: name another peer".into(),
            ));
        }
        let mut pool: Vec<(ContentId, u64)> = match cid {
            Some(c) if c.codec() == warren_protocol::Codec::Raw => {
                let len = self.store_call(move |s| s.block_len(&c)).await?;
                let len = len.ok_or_else(|| {
                    NodeError::Network(format!(
                        "block {c} is not in this node's store, so its length is unknown: \
                         name the file it belongs to instead"
                    ))
                })?;
                let mut seed = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut seed);
                return Ok(self.audit(c, len, peer, seed).await);
            }
            Some(root) => {
                self.dag_fetching_manifests(root, &FetchSession::default())
                    .await?
            }
            None => self.responsibilities().await?,
        };
        // Random order; look for a block the peer claims among the first AUDIT_PROBES.
        let mut rng = rand::rngs::OsRng;
        rand::seq::SliceRandom::shuffle(pool.as_mut_slice(), &mut rng);
        let probed = pool.len().min(AUDIT_PROBES);
        for (block, len) in pool.into_iter().take(AUDIT_PROBES) {
            if self.client.providers(block).await?.contains(&peer) {
                let mut seed = [0u8; 32];
                rng.fill_bytes(&mut seed);
                return Ok(self.audit(block, len, peer, seed).await);
            }
        }
        Err(NodeError::Network(match cid {
            Some(root) => format!(
                "{peer} claims none of the {probed} blocks of {root} looked up (provider records)"
            ),
            None => format!(
                "{peer} claims none of the {probed} blocks this node holds that were looked up: \
                 name a file or block"
            ),
        }))
    }

    /// Blocks this node is responsible for: held replicas and the blocks of its pinned files.
    async fn responsibilities(&self) -> Result<Vec<(ContentId, u64)>, NodeError> {
        self.store_call(|s| {
            let mut out: Vec<(ContentId, u64)> = Vec::new();
            for cid in s.held()? {
                if let Some(len) = s.block_len(&cid)? {
                    out.push((cid, len));
                }
            }
            for pin in s.pins()? {
                out.extend(s.dag(&pin.cid)?);
            }
            out.sort();
            out.dedup();
            Ok(out)
        })
        .await
    }

    /// One pass of self-healing over every block this node is responsible for.
    pub async fn repair_pass(&self) -> Result<usize, NodeError> {
        let (me, candidates) = self.client.candidates().await?;
        let live: BTreeSet<PeerId> = candidates.iter().map(|c| c.peer).collect();
        let blocks = self.responsibilities().await?;
        let pushed: Vec<usize> = futures::stream::iter(blocks)
            .map(|(cid, len)| self.repair_block(cid, len, me, &candidates, &live))
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        Ok(pushed.into_iter().sum())
    }

    /// The RF `cid`'s file was placed with: as this node put it, else as the peer that pushed
    /// it here said, else the default.
    async fn base_rf(&self, cid: ContentId) -> usize {
        if let Some(rf) = self.rf.lock().ok().and_then(|m| m.get(&cid).copied()) {
            return rf;
        }
        match self.store_call(move |s| s.held_rf(&cid)).await {
            Ok(Some(rf)) => usize::from(rf),
            _ => self.config.rf,
        }
    }

    /// Checks one block's holders and, if this node is the closest good holder, restores RF.
    async fn repair_block(
        &self,
        cid: ContentId,
        len: u64,
        me: PeerId,
        candidates: &[Candidate],
        live: &BTreeSet<PeerId>,
    ) -> usize {
        let now = now_ms();
        let Ok(providers) = self.client.providers(cid).await else {
            return 0;
        };
        // A provider record is a claim; a holder counts once it proved it has the block.
        let mut holders = vec![me];
        for p in providers
            .into_iter()
            .filter(|p| *p != me && live.contains(p))
        {
            if self.holds(cid, len, p, now).await {
                holders.push(p);
            }
        }
        let base_rf = self.base_rf(cid).await;
        let hot_extra = self
            .hot
            .lock()
            .map(|mut h| h.extra_rf(&cid.hash(), now))
            .unwrap_or(0);
        let rf = base_rf + hot_extra;
        if let Ok(mut copies) = self.copies.lock() {
            copies.insert(cid, (holders.len(), rf));
        }
        // The origin's pinned copy is one of the RF + 1 copies of a file it put. The base copies
        // prefer cold-tier peers, the extra copies of hot content hot-tier peers.
        let policy = PlacementPolicy {
            rf: base_rf + 1,
            hot_extra,
            ..PlacementPolicy::default()
        };
        let hash = cid.hash();
        let plan = match self.repairer.lock() {
            Ok(mut r) => r.plan(
                &RepairInput {
                    block: &hash,
                    block_len: len,
                    me: &me,
                    holders: &holders,
                    candidates,
                    policy,
                },
                now,
            ),
            Err(_) => return 0,
        };
        let mut pushed = 0;
        for action in plan.actions {
            match self.push(cid, action.to, base_rf).await {
                Ok(()) => {
                    pushed += 1;
                    info!(block = %cid, to = %action.to, "repaired: copy restored");
                }
                Err(PushError::Local(e)) => {
                    warn!(block = %cid, "cannot repair from here: {e}");
                    break;
                }
                Err(PushError::Remote(e)) => {
                    warn!(block = %cid, to = %action.to, "repair push failed: {e}");
                    if let Ok(mut r) = self.repairer.lock() {
                        r.target_failed(&hash, &action.to, now_ms());
                    }
                }
            }
        }
        pushed
    }

    /// Whether `peer` holds a good copy of `cid`: a recent audit result, or a fresh audit.
    async fn holds(&self, cid: ContentId, len: u64, peer: PeerId, now: u64) -> bool {
        let key = (peer, cid.hash());
        let failed = self.failed.lock().ok().and_then(|f| f.get(&key).copied());
        if failed.is_some_and(|t| now.saturating_sub(t) < FAILED_HOLDER_MS) {
            return false;
        }
        let passed = self.verified.lock().ok().and_then(|v| v.get(&key).copied());
        if passed.is_some_and(|t| now.saturating_sub(t) < VERIFIED_HOLDER_MS) {
            return true;
        }
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        self.audit(cid, len, peer, seed).await.passed
    }

    /// Challenges `subject` on a random slice of `cid` and records the result.
    async fn audit(
        &self,
        cid: ContentId,
        len: u64,
        subject: PeerId,
        seed: [u8; 32],
    ) -> AuditRecord {
        let challenge = Challenge::new(cid.hash(), len, seed);
        let request = Request::Audit(challenge.to_request(cid.codec()));
        let verdict = match self.client.blocks(subject, request).await {
            Ok(Response::Proof(p)) => Proof::from_bytes(&cid.hash(), &p.proof)
                .and_then(|proof| proof::verify(&challenge, &proof))
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Ok(other) => Err(format!("answered {} instead of a proof", other.kind())),
            Err(e) => Err(e),
        };
        let record = AuditRecord {
            subject: subject.to_string(),
            block: cid.to_string(),
            passed: verdict.is_ok(),
            reason: verdict.err(),
            time_ms: now_ms(),
        };
        let key = (subject, cid.hash());
        if record.passed {
            debug!(%subject, block = %cid, "audit passed");
            if let Ok(mut v) = self.verified.lock() {
                v.insert(key, record.time_ms);
            }
            if let Ok(mut f) = self.failed.lock() {
                f.remove(&key);
            }
        } else {
            warn!(%subject, block = %cid, reason = ?record.reason, "audit failed");
            if let Ok(mut f) = self.failed.lock() {
                f.insert(key, record.time_ms);
            }
            if let Ok(mut v) = self.verified.lock() {
                v.remove(&key);
            }
        }
        self.observe(subject, &cid, record.passed, record.time_ms)
            .await;
        if let Ok(mut a) = self.audits.lock() {
            a.push_back(record.clone());
            while a.len() > AUDIT_LOG {
                a.pop_front();
            }
        }
        record
    }

    /// Turns an audit result into a signed observation: scored first-hand here, and published on
    /// `warren/reputation/1` for the others.
    async fn observe(&self, subject: PeerId, block: &ContentId, passed: bool, time_ms: u64) {
        let kind = if passed {
            Kind::StorageProofPassed
        } else {
            Kind::StorageProofFailed
        };
        self.observe_kind(subject, kind, block.to_bytes(), time_ms)
            .await;
    }

    /// Records a first-hand observation of `subject` (scored here) and publishes it signed on
    /// `warren/reputation/1`, within the publishing rate limit. `evidence` names what it is about
    /// (a block id, a model id).
    pub(crate) async fn observe_kind(
        &self,
        subject: PeerId,
        kind: Kind,
        evidence: Vec<u8>,
        time_ms: u64,
    ) {
        let obs = Observation {
            observer: self.key.public().to_peer_id(),
            subject,
            kind,
            value: 1,
            time_ms,
            evidence: Some(evidence),
        };
        if let Ok(mut rep) = self.reputation.lock() {
            rep.observe_first_hand(&obs, time_ms);
        }
        let me = obs.observer;
        let allowed = self
            .publish_rate
            .lock()
            .is_ok_and(|mut r| r.check(&me, time_ms) == Rate::Allowed);
        if !allowed {
            debug!(%subject, "observation counted here but not published: over the rate limit");
            return;
        }
        match obs.sign(&self.key).and_then(|signed| signed.encode()) {
            Ok(bytes) => {
                let _ = self.client.publish(REPUTATION_TOPIC, bytes).await;
            }
            Err(e) => warn!(%subject, "cannot sign an observation: {e}"),
        }
    }

    /// Audits one random other holder of one random block this node is responsible for.
    pub async fn audit_once(&self) -> Result<Option<AuditRecord>, NodeError> {
        let blocks = self.responsibilities().await?;
        if blocks.is_empty() {
            return Ok(None);
        }
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let (cid, len) = blocks[(u64::from_le_bytes([
            seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
        ]) as usize)
            % blocks.len()];
        let (me, candidates) = self.client.candidates().await?;
        let live: BTreeSet<PeerId> = candidates.iter().map(|c| c.peer).collect();
        let others: Vec<PeerId> = self
            .client
            .providers(cid)
            .await?
            .into_iter()
            .filter(|p| *p != me && live.contains(p))
            .collect();
        if others.is_empty() {
            return Ok(None);
        }
        let subject = others[seed[8] as usize % others.len()];
        let record = self.audit(cid, len, subject, seed).await;
        Ok(Some(record))
    }

    /// Runs the repair and audit tasks until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        match self.restore_file_rfs().await {
            Ok(n) if n > 0 => info!(files = n, "replication factors restored"),
            Ok(_) => {}
            Err(e) => warn!("cannot restore the files' replication factors: {e}"),
        }
        let mut repair = tokio::time::interval(Duration::from_millis(self.config.repair_every_ms));
        let mut audit = tokio::time::interval(Duration::from_millis(self.config.audit_every_ms));
        repair.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        audit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = repair.tick() => {
                    match self.repair_pass().await {
                        Ok(n) => {
                            self.metrics.counters.repairs.inc_by(n as u64);
                        }
                        Err(e) => debug!("repair pass: {e}"),
                    }
                }
                _ = audit.tick() => {
                    let started = std::time::Instant::now();
                    match self.audit_once().await {
                        Ok(Some(record)) => self
                            .metrics
                            .counters
                            .audit(record.passed, started.elapsed().as_secs_f64()),
                        Ok(None) => {}
                        Err(e) => debug!("audit: {e}"),
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
    }
}

/// Answers one inbound block request from `peer` against the local store. Returns the answer
/// and, for a stored replica, the block to announce as provided. `fault` is
/// [`FaultInject::None`] except in tests that simulate a faulty node.
pub fn serve(
    store: &Store,
    peer: &PeerId,
    request: Request,
    now_secs: u64,
    fault: FaultInject,
) -> (Response, Option<ContentId>) {
    match request {
        Request::Get(BlockRequest { block }) => match store.get_block(&block) {
            Ok(data) => {
                tracing::info!(%peer, %block, "serving a block");
                (
                    Response::Block(warren_protocol::block_transfer::BlockResponse { block, data }),
                    None,
                )
            }
            Err(e) => (not_served(store, &block, e), None),
        },
        Request::Store(StoreRequest { block, data, rf }) => {
            let result = store
                .put_block(&block, &data)
                .and_then(|()| store.hold(&block, now_secs, rf));
            match result {
                Ok(()) => {
                    debug!(%peer, %block, "holding a replica");
                    (
                        Response::Stored(StoreResponse {
                            block,
                            accepted: true,
                            reason: None,
                        }),
                        Some(block),
                    )
                }
                Err(e) => {
                    let reason = e.to_string().chars().take(200).collect();
                    (
                        Response::Stored(StoreResponse {
                            block,
                            accepted: false,
                            reason: Some(reason),
                        }),
                        None,
                    )
                }
            }
        }
        Request::Audit(req) => {
            let block = req.block;
            match store.get_block(&block) {
                Ok(data) => {
                    let challenge = Challenge::from_request(&req);
                    match proof::prove(&data, &challenge) {
                        Ok(p) => {
                            let mut proof = p.to_bytes();
                            if fault == FaultInject::CorruptAudits
                                && let Some(b) = proof.first_mut()
                            {
                                // A faulty disk: the tag no longer matches the slice.
                                *b ^= 0xff;
                            }
                            (
                                Response::Proof(warren_protocol::block_transfer::AuditResponse {
                                    block,
                                    proof,
                                }),
                                None,
                            )
                        }
                        Err(e) => (
                            Response::Failed {
                                reason: e.to_string().chars().take(200).collect(),
                            },
                            None,
                        ),
                    }
                }
                Err(e) => (not_served(store, &block, e), None),
            }
        }
    }
}

/// The answer for a block this node cannot serve. A corrupt copy is discarded so that a good one
/// can replace it, and is never sent.
fn not_served(store: &Store, block: &ContentId, e: StoreError) -> Response {
    let listed = store.has_block(block).unwrap_or(false);
    let bad = matches!(e, StoreError::Corrupt { .. } | StoreError::Io { .. })
        || (matches!(e, StoreError::Missing { .. }) && listed);
    if bad {
        // Listed but unreadable or altered: drop it so a good copy can take its place.
        warn!(%block, "discarding a bad local copy: {e}");
        if let Err(e) = store.discard_block(block) {
            warn!(%block, "cannot discard the bad copy: {e}");
        }
    }
    Response::NotFound { block: *block }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn a_session_hedges_at_four_times_its_median_block_time_within_bounds() {
        let s = FetchSession::default();
        assert_eq!(s.hedge_after(), HEDGE_FIRST);
        for ms in [100, 120, 400, 90, 110] {
            s.record_time(Duration::from_millis(ms));
        }
        // Median 110 ms → 440 ms, raised to the floor.
        assert_eq!(s.hedge_after(), HEDGE_MIN);
        for _ in 0..SESSION_TIMES {
            s.record_time(Duration::from_millis(700));
        }
        assert_eq!(s.hedge_after(), Duration::from_millis(2800));
        for _ in 0..SESSION_TIMES {
            s.record_time(Duration::from_secs(30));
        }
        assert_eq!(s.hedge_after(), HEDGE_MAX);
        assert_eq!(s.times.lock().unwrap().len(), SESSION_TIMES);
    }

    #[test]
    fn slow_holders_are_asked_last_in_their_given_order() {
        let s = FetchSession::default();
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        assert_eq!(s.slow_last(peers.clone()), peers);
        s.mark_slow(peers[0]);
        s.mark_slow(peers[2]);
        assert_eq!(
            s.slow_last(peers.clone()),
            vec![peers[1], peers[3], peers[0], peers[2]]
        );
    }
}
