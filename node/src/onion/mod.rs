//! Onion circuits on libp2p: the link protocol `/warren/onion/1.0.0`, the hop service (gate,
//! middle, relay), the client side used by `get --anon` / `put --anon`, and the relay's runner.
//!
//! ```text
//!  Onion::serve (task: accepts onion streams)
//!     └─ per circuit: hop task ── owns protocol::onion::Hop
//!            ├─ reader task (prev link) ─┐ bounded mpsc of cells
//!            ├─ reader task (next link) ─┘
//!            └─ runner tasks (relay only), each bounded by runner::Limits; each request
//!               decoded (and an upload encoded) by a sandboxed `warren __worker relay`
//!  Onion::request (per anonymous request): client task ── owns protocol::onion::Client
//!            └─ reader task (gate link)
//! ```
//!
//! Every decision (handshakes, layers, flow control, tear-down) is made by the sans-I/O machines in
//! `warren_protocol::onion`; these tasks only move cells between them and libp2p streams. One
//! stream carries one circuit hop, for the life of the circuit.

mod client_task;
mod guards;
mod hop_task;
mod limits;
mod link;
mod relay_get;
pub mod runner;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::io::AsyncReadExt;
use libp2p::{PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use warren_protocol::credits::policy::{CircuitAnswer, RelayLimits, admit_circuit};
use warren_protocol::onion::limits::{CircuitSlots, CircuitTimer};
use warren_protocol::onion::request::Request;
use warren_protocol::onion::{
    self, Cell, Client as CircuitClient, ClientEvent, DestroyReason, Direction, Hop, HopEvent,
    HopTarget, OnionError, ReplayCache, path,
};
use warren_protocol::{OnionSecret, Role};

use crate::error::NodeError;
use crate::net::Client;
use client_task::ClientTask;
use hop_task::HopTask;
use runner::{Out, Runner};

/// The onion link protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new(onion::PROTOCOL_NAME);

/// Longest wait for a hop to answer a `CREATE` (or for the first cell of an inbound link).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the client side waits with no cell from its circuit.
const IDLE_TIMEOUT: Duration =
    Duration::from_millis(warren_protocol::onion::limits::CIRCUIT_IDLE_MS);
/// Cells queued from a link's reader to its circuit task.
const CELL_QUEUE: usize = 256;
/// Cells taken from a link queue at once before the answers go out.
const BATCH: usize = 255;
/// Refused links being told why at once (more are only dropped).
const REFUSALS: usize = 32;
/// Longest a refused link is kept to tell it why.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Answer bytes buffered per relay circuit before its runners are paused.
const PENDING_LIMIT: usize = 4 << 20;

/// One circuit this node takes part in, as `warren circuits` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CircuitView {
    /// Local id (not sent anywhere).
    pub id: u64,
    /// `client`, `gate`, `middle` or `relay`.
    pub role: String,
    /// The neighbour towards the client (none at the client).
    pub prev: Option<String>,
    /// The neighbour towards the relay (none at the relay).
    pub next: Option<String>,
    /// Hops (known at the client only).
    pub hops: Option<usize>,
    /// Milliseconds since the circuit was opened here.
    pub age_ms: u64,
    /// Milliseconds the build took (client only).
    pub build_ms: Option<u64>,
    /// `open` or `closed: REASON`.
    pub state: String,
}

struct Entry {
    view: CircuitView,
    started: Instant,
}

/// What the client side of a request reports.
#[derive(Debug)]
pub enum Answer {
    /// The circuit is built; the request is on its way.
    Built {
        /// The build time.
        took: Duration,
        /// The path (gate first).
        path: Vec<PeerId>,
    },
    /// Answer bytes.
    Data(Vec<u8>),
    /// The end: the runner's status message, or why it failed.
    End(Result<String, String>),
}

/// Settings of the onion service.
#[derive(Clone, Debug)]
pub struct OnionConfig {
    /// Hops per circuit this node builds.
    pub hops: usize,
    /// Roles this node offers (a hop refuses `BEGIN` without `relay`, and links without any
    /// onion role).
    pub roles: Vec<Role>,
    /// The data directory, where the guard set is kept (`None`: kept in memory only).
    pub data_dir: Option<std::path::PathBuf>,
}

/// The onion service of one node.
pub struct Onion {
    /// Counts the circuits this node takes part in (`warren_circuits_total`).
    metrics: Arc<crate::metrics::Metrics>,
    network: Client,
    secret: OnionSecret,
    config: OnionConfig,
    replay: Mutex<ReplayCache>,
    runner: Runner,
    circuits: Mutex<BTreeMap<u64, Entry>>,
    next_id: AtomicU64,
    guards: Mutex<guards::Guards>,
    /// Circuits carried as a hop, per neighbour (`warren_protocol::onion::limits`).
    hop_slots: Mutex<CircuitSlots>,
    /// The monotonic origin of the circuits' timers.
    epoch: Instant,
    /// The credit ledger and the limits by which a busy hop takes circuits by standing.
    credits: std::sync::OnceLock<(crate::credits::Credits, RelayLimits)>,
    /// Permits to tell a refused link why ([`REFUSALS`]).
    refusals: Arc<tokio::sync::Semaphore>,
}

/// A hop circuit's slot, given back when the circuit's task ends.
struct Slot {
    onion: Arc<Onion>,
    peer: Vec<u8>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut s) = self.onion.hop_slots.lock() {
            s.release(&self.peer);
        }
    }
}

fn now_secs() -> u64 {
    crate::clock::unix_now()
}

fn random_seed() -> [u8; 32] {
    rand::random()
}

impl Onion {
    /// The service for a node with onion key `secret`; `runner` serves relay requests.
    pub fn new(
        network: Client,
        secret: OnionSecret,
        config: OnionConfig,
        runner: Runner,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Self> {
        let guards = Mutex::new(guards::Guards::load(config.data_dir.as_deref()));
        Arc::new(Self {
            network,
            secret,
            config,
            metrics,
            replay: Mutex::new(ReplayCache::new()),
            runner,
            circuits: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            guards,
            hop_slots: Mutex::new(CircuitSlots::new()),
            epoch: Instant::now(),
            credits: std::sync::OnceLock::new(),
            refusals: Arc::new(tokio::sync::Semaphore::new(REFUSALS)),
        })
    }

    /// Takes circuits by the previous hop's standing in `credits` when busy (once).
    pub fn set_credits(&self, credits: crate::credits::Credits, limits: RelayLimits) {
        let _ = self.credits.set((credits, limits));
    }

    /// Whether a circuit from `peer` is carried: always while this hop is idle, by `peer`'s
    /// standing when busy (spec/credits.md, "Relay work"); when not, what the previous hop is
    /// told (`DESTROY` credit or busy) and the reason for the log.
    fn admit_circuit(&self, peer: PeerId) -> Result<(), (DestroyReason, &'static str)> {
        let Some((credits, limits)) = self.credits.get() else {
            return Ok(());
        };
        let carried = self.hop_slots.lock().map(|s| s.total()).unwrap_or(0);
        match admit_circuit(limits, carried, crate::clock::unix_now_ms(), || {
            credits.judge(peer)
        }) {
            CircuitAnswer::Carry => Ok(()),
            CircuitAnswer::Refused { reason, credit, .. } => Err((
                if credit {
                    DestroyReason::Credit
                } else {
                    DestroyReason::Busy
                },
                reason,
            )),
        }
    }

    /// Tells the previous hop on a link this hop will not carry why (one `DESTROY` of `reason`,
    /// busy or credit: nothing that names the circuit or the peer), then closes it. At most
    /// [`REFUSALS`] at once; past that the link is only dropped.
    fn refuse_link(&self, stream: libp2p::Stream, reason: DestroyReason) {
        let Ok(permit) = self.refusals.clone().try_acquire_owned() else {
            return;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let (_, mut w) = stream.split();
            let tell = async {
                let _ = link::write_cells(&mut w, &[Cell::Destroy { reason }]).await;
                let _ = futures::io::AsyncWriteExt::close(&mut w).await;
            };
            let _ = tokio::time::timeout(REFUSAL_TIMEOUT, tell).await;
        });
    }

    /// The credit service relay work is counted in, if any.
    fn relay_credits(&self) -> Option<&crate::credits::Credits> {
        self.credits.get().map(|(c, _)| c)
    }

    /// Milliseconds on the monotonic clock of the circuits' timers.
    fn clock_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn offers_hop(&self) -> bool {
        self.config
            .roles
            .iter()
            .any(|r| matches!(r, Role::Gate | Role::Middle | Role::Relay))
    }

    /// This node's circuits, newest last (closed ones are kept for a minute).
    pub fn circuits(&self) -> Vec<CircuitView> {
        let Ok(mut map) = self.circuits.lock() else {
            return Vec::new();
        };
        map.retain(|_, e| e.view.state == "open" || e.started.elapsed() < Duration::from_secs(60));
        map.values()
            .map(|e| {
                let mut v = e.view.clone();
                v.age_ms = e.started.elapsed().as_millis() as u64;
                v
            })
            .collect()
    }

    fn register(&self, view: CircuitView) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.metrics.counters.circuits.inc();
        if let Ok(mut map) = self.circuits.lock() {
            map.insert(
                id,
                Entry {
                    view: CircuitView { id, ..view },
                    started: Instant::now(),
                },
            );
        }
        id
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut CircuitView)) {
        if let Ok(mut map) = self.circuits.lock()
            && let Some(e) = map.get_mut(&id)
        {
            f(&mut e.view);
        }
    }

    /// Accepts onion links until `shutdown`; each carries one circuit hop.
    pub async fn serve(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if !self.offers_hop() {
            return;
        }
        let mut control = self.network.stream_control();
        let mut incoming = match control.accept(PROTOCOL) {
            Ok(i) => i,
            Err(e) => return warn!("cannot accept {PROTOCOL}: {e}"),
        };
        use futures::StreamExt;
        loop {
            tokio::select! {
                next = incoming.next() => {
                    let Some((peer, stream)) = next else { break };
                    // Busy: by credit (no peer id at info: the hop's log must not link circuits).
                    if let Err((destroy, reason)) = self.admit_circuit(peer) {
                        if destroy == DestroyReason::Credit {
                            info!("refusing a circuit for credit: {reason}");
                        } else {
                            info!("refusing a circuit: {reason}");
                        }
                        self.refuse_link(stream, destroy);
                        continue;
                    }
                    // A slot per neighbour, taken before the CREATE is read.
                    let key = peer.to_bytes();
                    let taken = match self.hop_slots.lock() {
                        Ok(mut s) => s.acquire(&key),
                        Err(_) => Err(OnionError::Closed),
                    };
                    if let Err(e) = taken {
                        debug!(%peer, "refusing a circuit: {e}");
                        self.refuse_link(stream, DestroyReason::Busy);
                        continue;
                    }
                    let slot = Slot { onion: self.clone(), peer: key };
                    let me = self.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        me.run_hop(peer, stream).await;
                    });
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
    }

    async fn run_hop(self: Arc<Self>, prev: PeerId, stream: libp2p::Stream) {
        let (mut prev_r, mut prev_w) = stream.split();
        let create =
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, link::read_cell(&mut prev_r)).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return debug!(%prev, "onion link before CREATE: {e}"),
                Err(_) => return debug!(%prev, "onion link: no CREATE in time"),
            };
        let accepted = match self.replay.lock() {
            Ok(mut replay) => Hop::accept(
                now_secs(),
                &self.secret,
                &create,
                random_seed(),
                &mut replay,
                self.config.roles.contains(&Role::Relay),
                &prev.to_bytes(),
            ),
            Err(_) => Err(OnionError::Closed),
        };
        let hop = match accepted {
            Ok(h) => h,
            Err(e) => {
                // No peer id nor the client's clock at info: the hop's log must not link circuits.
                let reason = DestroyReason::for_error(&e);
                info!("refusing a circuit: {reason}");
                debug!(%prev, "refusing a circuit: {e}");
                let _ = link::write_cells(&mut prev_w, &[Cell::Destroy { reason }]).await;
                return;
            }
        };
        let id = self.register(CircuitView {
            id: 0,
            role: hop.position().to_string(),
            prev: Some(prev.to_string()),
            next: None,
            hops: None,
            age_ms: 0,
            build_ms: None,
            state: "open".into(),
        });
        let (tx, rx) = mpsc::channel(CELL_QUEUE);
        let reader = tokio::spawn(link::read_cells(prev_r, Direction::Prev, tx.clone()));
        let (out_tx, out_rx) = mpsc::channel(64);
        let mut task = HopTask {
            limits: self.runner.circuit(&prev),
            prev,
            next: None,
            relay_in: 0,
            onion: self.clone(),
            id,
            hop,
            prev_w,
            next_w: None,
            readers: vec![reader],
            cells_tx: tx,
            cells: rx,
            out_tx,
            out_rx,
            inputs: HashMap::new(),
            pending: BTreeMap::new(),
            pending_bytes: 0,
            timer: CircuitTimer::new(self.clock_ms()),
        };
        let end = task.run().await;
        for r in &task.readers {
            r.abort();
        }
        info!(role = %task.hop.position(), "circuit closed: {end}");
        self.update(id, |v| {
            v.role = task.hop.position().to_string();
            v.state = format!("closed: {end}");
        });
    }

    /// Builds a circuit and runs `request` at its relay. `upload` feeds a PUT's bytes (closed
    /// channel = end). Answers arrive on the returned channel; the last is [`Answer::End`].
    pub async fn request(
        self: &Arc<Self>,
        request: Request,
        upload: Option<mpsc::Receiver<Vec<u8>>>,
    ) -> Result<mpsc::Receiver<Answer>, NodeError> {
        let started = Instant::now();
        let (own, candidates) = self.network.onion_candidates().await?;
        let guard = self
            .guards
            .lock()
            .ok()
            .and_then(|mut g| g.choose(&own, &candidates, now_secs(), rand::random()));
        let chosen = path::select(
            &candidates,
            self.config.hops,
            &own,
            guard.as_ref(),
            random_seed(),
        )
        .map_err(|e| NodeError::Network(format!("no onion path: {e}")))?;
        let peers: Vec<PeerId> = chosen.iter().map(|c| c.peer).collect();
        let targets: Vec<HopTarget> = chosen
            .iter()
            .map(|c| HopTarget {
                peer: c.peer.to_bytes(),
                onion_key: c.onion_key,
            })
            .collect();
        let seeds = (0..targets.len()).map(|_| random_seed()).collect();
        let mut machine = CircuitClient::new(targets, seeds, now_secs())?;
        let stream = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            self.network
                .stream_control()
                .open_stream(peers[0], PROTOCOL),
        )
        .await
        .map_err(|_| NodeError::Network(format!("gate {} did not answer in time", peers[0])))?
        .map_err(|e| NodeError::Network(format!("gate {}: {e}", peers[0])))?;
        let (gate_r, mut gate_w) = stream.split();
        let create: Vec<Cell> = std::iter::from_fn(|| machine.poll_transmit()).collect();
        link::write_cells(&mut gate_w, &create)
            .await
            .map_err(NodeError::Network)?;
        let id = self.register(CircuitView {
            id: 0,
            role: "client".into(),
            prev: None,
            next: Some(peers[0].to_string()),
            hops: Some(peers.len()),
            age_ms: 0,
            build_ms: None,
            state: "open".into(),
        });
        let (answers_tx, answers_rx) = mpsc::channel(16);
        let me = self.clone();
        tokio::spawn(async move {
            let (tx, rx) = mpsc::channel(CELL_QUEUE);
            let reader = tokio::spawn(link::read_cells(gate_r, Direction::Next, tx));
            let mut task = ClientTask {
                machine,
                gate_w,
                cells: rx,
                answers: answers_tx,
                request: Some(request),
                upload,
                up_buf: Vec::new(),
                stream: None,
                started,
                credits: me.relay_credits().cloned(),
                path: peers,
                built: None,
                finished: false,
            };
            let end = task.run().await;
            reader.abort();
            me.update(id, |v| {
                v.build_ms = task.built.map(|d| d.as_millis() as u64);
                v.state = format!("closed: {end}");
            });
        });
        Ok(answers_rx)
    }
}
