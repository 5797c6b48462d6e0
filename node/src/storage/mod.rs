//! The storage mesh on the network: placement at RF, verified parallel fetch, self-healing repair
//! and proof-of-storage audits.
//!
//! ```text
//! API put ──► replicate ──► place() per block ──► StoreRequest to each target ──► target stores,
//!                                                                                 holds, provides
//! API get ──► fetch ──► providers (DHT) ──► BlockRequest, several holders in parallel, verified
//! sweep task (every repair_every_ms) ──► evidence (holders gone, hot blocks) ──► Sweep: blocks
//!   due (urgent first, else each once per recheck period), within the Budget ──► per block: live
//!   holders (audited once per period) ──► Repairer::plan ──► push; own provider record renewed
//! audit task (every audit_every_ms) ──► random block of the sweep, a holder it knows ──►
//!   challenge ──► verify against the block id ──► AuditRecord (a failure makes the block urgent)
//! ```
//!
//! Every decision is made by the pure code in `warren-storage-mesh` (placement, repair plan, hot
//! RF, proofs); this module only gathers what it needs (from the store and the event loop) and
//! moves blocks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::identity::Keypair;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use warren_protocol::ContentId;
use warren_protocol::reputation::RateLimit;
use warren_storage_mesh::hot::{HotConfig, HotTracker};
use warren_storage_mesh::repair::{RepairConfig, Repairer};
use warren_storage_mesh::{Error as StoreError, Store};

use crate::clock::unix_now_ms as now_ms;
use crate::config::MeshConfig;
use crate::error::NodeError;
use crate::metrics::Metrics;
use crate::net::Client;
use crate::reputation::Reputations;
use crate::view::AuditRecord;
use warren_storage_mesh::audit::AuditLedger;
use warren_storage_mesh::audit_pace::{InFlight, Pacer};
use warren_storage_mesh::background::{Budget, BudgetConfig};
use warren_storage_mesh::pieces_watch::{PiecesWatch, WatchConfig};
use warren_storage_mesh::sweep::{Sweep, SweepConfig};

mod arrivals;
mod audit;
mod fetch;
mod lease;
mod pieces;
mod pieces_repair;
mod pieces_watch;
mod repair;
mod replicate;
mod samples;
pub mod serve;
mod sweep;
mod where_is;

pub use arrivals::{Arrivals, ArrivalsCloser};
/// One fetch's memory of the holders that served it (asked first for the next blocks, like a
/// Bitswap session), the slow ones and the block times: the pure
/// [`warren_storage_mesh::fetch::Session`], shared by a fetch's parallel block requests.
pub type FetchSession = Mutex<warren_storage_mesh::fetch::Session>;

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

/// Mesh state shared by the API handlers and the background tasks.
pub struct Mesh {
    client: Client,
    store: Arc<Store>,
    repairer: Mutex<Repairer>,
    hot: Arc<Mutex<HotTracker>>,
    /// Recent audit results per (holder, block), bounded, and the audit log.
    ledger: Mutex<AuditLedger>,
    /// The audits running now: their blocks are not served to their holders meanwhile (shared
    /// with the block [`serve::Server`]).
    in_flight: Arc<Mutex<InFlight>>,
    /// The repair pass's audit budget and interval, adapted to load.
    pacer: Mutex<Pacer>,
    /// Which blocks to check when: each once per recheck period, at once on evidence.
    sweep: Mutex<Sweep>,
    /// The background work's budget: DHT queries, audits, CPU share.
    budget: Mutex<Budget>,
    /// The sweep's evidence and pacing state.
    sweep_state: Mutex<sweep::SweepState>,
    /// Replication factor wanted per block this node placed or holds.
    rf: Mutex<HashMap<ContentId, usize>>,
    config: MeshConfig,
    /// Signs this node's observations.
    key: Keypair,
    /// Local scores; audits feed it first-hand.
    reputation: Reputations,
    /// This node's own observations published per window: kept under the limit the others
    /// enforce, so they never drop (or penalise) what it says.
    publish_rate: Mutex<RateLimit>,
    /// Audit, repair and latency counters (Prometheus) and the dashboard feed.
    metrics: Arc<Metrics>,
    /// Per block checked by the last repair pass: verified copies (this node's included) and the
    /// replication factor wanted, for the dashboard.
    copies: Mutex<HashMap<ContentId, (usize, usize)>>,
    /// When this node last renewed the leases of each block of the files it put (ms).
    renewed: Mutex<HashMap<ContentId, u64>>,
    /// Pieces whose holders the last piece checks missed, and since when (ms); bounded.
    piece_missing: Mutex<HashMap<ContentId, u64>>,
    /// The files kept as pieces whose manifest is stored here, and when each is next checked.
    pieces_watch: Arc<Mutex<PiecesWatch>>,
    /// The credit ledger: fetched blocks and passed audits are owed to their holders.
    credits: std::sync::OnceLock<crate::credits::Credits>,
}

impl Mesh {
    /// Mesh services over `client` and `store`, counting into the node's `metrics`.
    pub fn with_metrics(
        client: Client,
        store: Arc<Store>,
        hot: Arc<Mutex<HotTracker>>,
        config: MeshConfig,
        key: Keypair,
        reputation: Reputations,
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
                    // A holder that is not the closest restores missing copies itself when the
                    // closest has not within ten passes (it may not know the holders yet).
                    stand_in_ms: (10 * config.repair_every_ms).clamp(3_000, 120_000),
                    ..RepairConfig::default()
                },
                now_ms(),
            )),
            hot,
            ledger: Mutex::new(AuditLedger::default()),
            in_flight: Arc::new(Mutex::new(InFlight::new())),
            pacer: Mutex::new(Pacer::default()),
            sweep: Mutex::new(Sweep::new(SweepConfig {
                period_ms: config.recheck_period_ms(),
                retry_ms: (5 * config.repair_every_ms).clamp(1_000, 60_000),
                ..SweepConfig::default()
            })),
            budget: Mutex::new(Budget::new(
                BudgetConfig {
                    dht_per_min: config.background_dht_per_min,
                    audits_per_min: config.background_audits_per_min,
                    cpu_permille: config.background_cpu_permille,
                },
                now_ms(),
            )),
            sweep_state: Mutex::new(sweep::SweepState::default()),
            rf: Mutex::new(HashMap::new()),
            pieces_watch: Arc::new(Mutex::new(PiecesWatch::new(WatchConfig {
                period_ms: config.pieces_check_every_ms,
                per_tick: pieces_watch::FILES_PER_TICK,
            }))),
            config,
            key,
            reputation,
            publish_rate: Mutex::new(RateLimit::default()),
            metrics,
            copies: Mutex::new(HashMap::new()),
            renewed: Mutex::new(HashMap::new()),
            piece_missing: Mutex::new(HashMap::new()),
            credits: std::sync::OnceLock::new(),
        })
    }

    /// Gives the mesh the node's credit ledger (once; later calls are ignored).
    pub fn set_credits(&self, credits: crate::credits::Credits) {
        let _ = self.credits.set(credits);
    }

    /// The node's credit ledger, once set.
    pub fn credits(&self) -> Option<&crate::credits::Credits> {
        self.credits.get()
    }

    /// The files kept as pieces this node watches, for the block server (a piece manifest it
    /// stores is watched).
    pub fn pieces_watch(&self) -> Arc<Mutex<PiecesWatch>> {
        self.pieces_watch.clone()
    }

    /// The audits this node runs now, for the block server (it withholds their blocks from
    /// their holders).
    pub fn audits_in_flight(&self) -> Arc<Mutex<InFlight>> {
        self.in_flight.clone()
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
    pub fn reputation(&self) -> &Reputations {
        &self.reputation
    }

    /// The default replication factor.
    pub fn default_rf(&self) -> usize {
        self.config.rf
    }

    /// The audits this node ran, newest last.
    pub fn audits(&self) -> Vec<AuditRecord> {
        self.ledger
            .lock()
            .map(|l| l.log().map(AuditRecord::from).collect())
            .unwrap_or_default()
    }

    pub(crate) async fn store_call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, NodeError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|source| NodeError::Task {
                what: "store",
                source,
            })?
            .map_err(NodeError::from)
    }

    /// Runs the repair and audit tasks until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        match self.restore_file_rfs().await {
            Ok(n) if n > 0 => info!(files = n, "replication factors restored"),
            Ok(_) => {}
            Err(e) => warn!("cannot restore the files' replication factors: {e}"),
        }
        // Holds from before leases, once (the periodic expiry reads only the leases that end).
        match self.store_call(|s| s.release_unleased()).await {
            Ok(released) if !released.is_empty() => info!(
                blocks = released.len(),
                "replicas held without a lease released"
            ),
            Ok(_) => {}
            Err(e) => warn!("cannot release the replicas held without a lease: {e}"),
        }
        // The sweep waits the configured interval, widened by the pacer under load.
        let mut next_repair = tokio::time::Instant::now();
        let mut audit = tokio::time::interval(Duration::from_millis(self.config.audit_every_ms));
        audit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut samples = tokio::time::interval(samples::SAMPLE_TICK);
        samples.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sampler = warren_protocol::reputation::sampling::Sampler::default();
        // Files kept as pieces: checked by their one repairer (off at 0).
        let mut pieces = tokio::time::interval(Duration::from_millis(
            self.config.pieces_check_every_ms.clamp(1_000, u64::MAX / 2),
        ));
        pieces.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next_repair) => {
                    self.expire_leases().await;
                    match self.sweep_tick().await {
                        Ok(n) => {
                            self.metrics.counters.repairs.inc_by(n as u64);
                        }
                        Err(e) => debug!("background sweep: {e}"),
                    }
                    self.save_sweep(false).await;
                    let wait = self
                        .pacer
                        .lock()
                        .map_or(self.config.repair_every_ms, |p| {
                            p.interval_ms(self.config.repair_every_ms)
                        });
                    next_repair = tokio::time::Instant::now() + Duration::from_millis(wait);
                }
                _ = audit.tick() => {
                    if !self.pacer.lock().is_ok_and(|mut p| p.audit_tick()) {
                        continue;
                    }
                    let started = std::time::Instant::now();
                    match self.audit_once().await {
                        Ok(Some(record)) if !record.answered => self
                            .metrics
                            .counters
                            .audit_unanswered(started.elapsed().as_secs_f64()),
                        Ok(Some(record)) => self
                            .metrics
                            .counters
                            .audit(record.passed, started.elapsed().as_secs_f64()),
                        Ok(None) => {}
                        Err(e) => debug!("audit: {e}"),
                    }
                }
                _ = samples.tick() => self.sample_peers(&mut sampler).await,
                _ = pieces.tick(), if self.config.pieces_check_every_ms > 0 => {
                    self.pieces_tick().await;
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        self.save_sweep(true).await;
                        break;
                    }
                }
            }
        }
    }
}
