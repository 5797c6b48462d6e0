//! Credits on the network (spec: `spec/credits.md`): the node's side of the pure
//! [`warren_protocol::credits`] ledger. This module only moves bytes and keeps them: it feeds the
//! ledger what the block server delivered and what the fetcher and the auditor verified, sends
//! receipts on `/warren/credits/1.0.0` (when half a window is owed, and every
//! [`CreditsConfig::receipt_every_ms`](crate::config::CreditsConfig)), answers the peers'
//! receipts, and keeps the latest receipts in `credits.redb`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use libp2p::PeerId;
use libp2p::identity::Keypair;
use serde::{Deserialize, Serialize};
use tracing::warn;
use warren_protocol::credits::{CreditPolicy, Decision, FraudProof, Ledger, Standing};

use crate::clock::unix_now_ms as now_ms;
use crate::error::NodeError;
use crate::metrics::Metrics;

mod exchange;
mod store;

pub use store::{CREDITS_DB, CreditStore, Loaded};

/// Samples of the total balance kept for the dashboard's chart.
const HISTORY: usize = 240;

/// One peer's credit as the API shows it (nc).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCredit {
    /// The peer.
    pub peer: String,
    /// Its standing in this node's ledger.
    #[serde(flatten)]
    pub standing: Standing,
    /// Sequence number of its latest receipt to this node.
    pub their_seq: u64,
    /// Sequence number of this node's latest receipt to it.
    pub my_seq: u64,
}

/// Everything `GET /v1/credits` answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditsView {
    /// The sum of the balances.
    pub total_balance: i64,
    /// Receipts accepted from peers since start.
    pub receipts_accepted: u64,
    /// Receipts refused since start.
    pub receipts_refused: u64,
    /// Requests refused for credit since start.
    pub requests_refused: u64,
    /// Per peer, highest balance first.
    pub peers: Vec<PeerCredit>,
    /// (Unix ms, total balance) samples, oldest first.
    pub history: Vec<(u64, i64)>,
}

#[derive(Default)]
struct Counts {
    accepted: u64,
    refused: u64,
    requests_refused: u64,
}

struct Inner {
    ledger: Mutex<Ledger>,
    key: Keypair,
    store: Option<CreditStore>,
    control: Mutex<libp2p_stream::Control>,
    metrics: Arc<Metrics>,
    counts: Mutex<Counts>,
    history: Mutex<VecDeque<(u64, i64)>>,
    /// Peers a receipt is being sent to now (one exchange per peer at a time).
    sending: Mutex<std::collections::HashSet<PeerId>>,
    /// Told of every refused receipt (the node makes it a reputation observation).
    on_refused: std::sync::OnceLock<RefusedHook>,
    /// Told of every fraud proof this node finds, encoded (the node gossips it).
    on_fraud: std::sync::OnceLock<FraudHook>,
}

/// What [`Credits::on_fraud`] calls: an encoded fraud proof to publish.
pub type FraudHook = Box<dyn Fn(Vec<u8>) + Send + Sync>;

/// What [`Credits::on_refused`] calls: the peer and the refused bytes.
pub type RefusedHook = Box<dyn Fn(PeerId, Vec<u8>) + Send + Sync>;

/// The node's credit service: a cheap handle.
#[derive(Clone)]
pub struct Credits {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Ed25519 key inside an Ed25519 peer id (identity multihash), if it is one.
pub fn peer_key(peer: &PeerId) -> Option<[u8; 32]> {
    let mh: &libp2p::multihash::Multihash<64> = peer.as_ref();
    if mh.code() != 0 {
        return None;
    }
    let key = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    Some(key.try_into_ed25519().ok()?.to_bytes())
}

/// Opens the credit store of `dir` (none: in memory only), restores the ledger and starts
/// accepting `/warren/credits/1.0.0` streams on `control`.
pub async fn start(
    mut control: libp2p_stream::Control,
    key: Keypair,
    policy: CreditPolicy,
    dir: Option<&std::path::Path>,
    metrics: Arc<Metrics>,
) -> Result<(Credits, libp2p_stream::IncomingStreams), NodeError> {
    let store = match dir {
        Some(dir) => {
            let dir = dir.to_owned();
            let store = tokio::task::spawn_blocking(move || CreditStore::open(&dir))
                .await
                .map_err(|source| NodeError::Task {
                    what: "credit store",
                    source,
                })??;
            Some(store)
        }
        None => None,
    };
    let incoming = control
        .accept(exchange::PROTOCOL)
        .map_err(|e| NodeError::Network(format!("credits protocol: {e}")))?;
    let credits = Credits::new(key, policy, store, control, metrics)?;
    Ok((credits, incoming))
}

impl Credits {
    /// The service of the node with `key`, its receipts restored from `store`.
    pub fn new(
        key: Keypair,
        policy: CreditPolicy,
        store: Option<CreditStore>,
        control: libp2p_stream::Control,
        metrics: Arc<Metrics>,
    ) -> Result<Self, NodeError> {
        let me = peer_key(&key.public().to_peer_id())
            .ok_or_else(|| NodeError::Config("credits need an Ed25519 node identity".into()))?;
        let mut ledger = Ledger::new(me, policy);
        if let Some(s) = &store {
            let (saved, bad) = s.load()?;
            for b in bad {
                warn!("credits: skipping a saved receipt: {b}");
            }
            let now = now_ms();
            for (peer, r) in saved {
                ledger.restore(peer, r, now);
            }
        }
        Ok(Credits {
            inner: Arc::new(Inner {
                ledger: Mutex::new(ledger),
                key,
                store,
                control: Mutex::new(control),
                metrics,
                counts: Mutex::new(Counts::default()),
                history: Mutex::new(VecDeque::new()),
                sending: Mutex::new(Default::default()),
                on_refused: std::sync::OnceLock::new(),
                on_fraud: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Sets what is told of every refused receipt (once; later calls are ignored).
    pub fn on_refused(&self, hook: RefusedHook) {
        let _ = self.inner.on_refused.set(hook);
    }

    /// Sets what is told of every fraud proof this node finds (once; later calls are ignored).
    pub fn on_fraud(&self, hook: FraudHook) {
        let _ = self.inner.on_fraud.set(hook);
    }

    /// A checked fraud proof arrived from gossip: the culprit's standing here drops (once per
    /// culprit; a proof against this node itself counts nothing).
    pub fn fraud_proven(&self, proof: &FraudProof) {
        let culprit = lock(&self.inner.ledger).fraud_proven(proof, now_ms());
        if let Some(peer) = culprit {
            warn!(%peer, seq = proof.first.seq, "a gossiped fraud proof: the peer signed two receipts with one number");
        }
    }

    /// Gossips the fraud proof this node holds against `peer`, if any.
    fn publish_fraud(&self, peer: &PeerId) {
        let proof = lock(&self.inner.ledger)
            .account(peer)
            .and_then(|a| a.fraud.clone());
        if let (Some(p), Some(hook)) = (proof, self.inner.on_fraud.get()) {
            match p.encode() {
                Ok(bytes) => hook(bytes),
                Err(e) => warn!(%peer, "fraud proof not encoded: {e}"),
            }
        }
    }

    /// How to serve a block request of `peer` now.
    pub fn admit(&self, peer: PeerId) -> Decision {
        let d = lock(&self.inner.ledger).admit(peer, now_ms());
        if matches!(d, Decision::Refuse { .. }) {
            lock(&self.inner.counts).requests_refused += 1;
            self.inner.metrics.counters.credits.requests_refused.inc();
        }
        d
    }

    /// How a busy onion hop takes a circuit of `peer` now ([`Ledger::judge`]: a refusal does
    /// not set the peer's refusal deadline).
    pub fn judge(&self, peer: PeerId) -> Decision {
        lock(&self.inner.ledger).judge(peer, now_ms())
    }

    /// The balance of `peer` with this node now, nc (0 without an account).
    pub fn balance(&self, peer: &PeerId) -> i64 {
        lock(&self.inner.ledger).balance(peer)
    }

    /// What the origin `peer` may hold here under its leases: `base` grown with its credit
    /// ([`replica_quota`](warren_protocol::credits::policy::replica_quota)), within `offer`.
    pub fn replica_quota(&self, peer: &PeerId, base: u64, offer: u64) -> u64 {
        let l = lock(&self.inner.ledger);
        let balance = l.balance(peer);
        warren_protocol::credits::policy::replica_quota(base, offer, balance, &l.policy().rates)
    }

    /// This node delivered `bytes` of blocks to `peer`.
    pub fn served(&self, peer: PeerId, bytes: u64) {
        lock(&self.inner.ledger).served(peer, bytes, now_ms());
    }

    /// This node received `bytes` of blocks from `peer` and verified them: a receipt follows
    /// at once when half the window is owed.
    pub fn received(&self, peer: PeerId, bytes: u64) {
        let due = {
            let mut l = lock(&self.inner.ledger);
            l.received(peer, bytes, now_ms());
            l.receipt_due(&peer, false)
        };
        if due {
            self.settle_later(peer);
        }
    }

    /// This node, a hop of a circuit whose previous hop is `peer`, delivered `bytes` of cells
    /// back to it: in its open relay window until `peer` receipts them.
    pub fn relay_served(&self, peer: PeerId, bytes: u64) {
        lock(&self.inner.ledger).relay_served(peer, bytes, now_ms());
    }

    /// This node received `bytes` of cells from `peer`, the next hop of a circuit: owed to
    /// `peer` as relay work, and receipted at once when half its relay window is owed.
    pub fn relay_received(&self, peer: PeerId, bytes: u64) {
        let due = {
            let mut l = lock(&self.inner.ledger);
            l.relay_received(peer, bytes, now_ms());
            l.receipt_due(&peer, false)
        };
        if due {
            self.settle_later(peer);
        }
    }

    /// An audit of `peer` on `block` (`size` bytes) passed: the interval it closes is owed, and
    /// a receipt for it sent.
    pub fn audit_passed(&self, peer: PeerId, block: [u8; 32], size: u64) {
        let earned = lock(&self.inner.ledger).audit_passed(peer, block, size, now_ms());
        if earned > 0 {
            self.settle_later(peer);
        }
    }

    /// A generation job `peer` ran for this node passed its check (a comparable re-run gave the
    /// same tokens): its work on `model` (`params` parameters, priced at 2 × `params` FLOPs a
    /// token) is owed, and a receipt for it sent.
    pub fn inference_verified(
        &self,
        peer: PeerId,
        model: &str,
        params: u64,
        prefill: u64,
        generated: u64,
    ) {
        let params_m = params.div_ceil(1_000_000);
        lock(&self.inner.ledger).inference_verified(
            peer,
            model,
            params_m,
            prefill,
            generated,
            now_ms(),
        );
        self.settle_later(peer);
    }

    /// An embedding job `peer` ran for this node was confirmed by a comparable run: its
    /// `embedded` tokens of `model` (`params` parameters, 2 × `params` FLOPs a token) are owed,
    /// and a receipt for them sent.
    pub fn embedding_verified(&self, peer: PeerId, model: &str, params: u64, embedded: u64) {
        let params_m = params.div_ceil(1_000_000);
        lock(&self.inner.ledger).embedding_verified(peer, model, params_m, embedded, now_ms());
        self.settle_later(peer);
    }

    /// An audit of `peer` on `block` failed: its open interval earns nothing.
    pub fn audit_failed(&self, peer: PeerId, block: [u8; 32]) {
        lock(&self.inner.ledger).audit_failed(peer, block);
    }

    fn settle_later(&self, peer: PeerId) {
        if !lock(&self.inner.sending).insert(peer) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.settle(peer).await {
                warn!(%peer, "credit receipt not delivered: {e}");
            }
            lock(&this.inner.sending).remove(&peer);
        });
    }

    /// Records one sample of the total balance (for the dashboard's chart) and the gauges.
    fn sample(&self, view: &CreditsView) {
        let mut h = lock(&self.inner.history);
        if h.len() >= HISTORY {
            h.pop_front();
        }
        h.push_back((now_ms(), view.total_balance));
        let c = &self.inner.metrics.counters.credits;
        c.balance.set(view.total_balance);
        c.peers
            .set(i64::try_from(view.peers.len()).unwrap_or(i64::MAX));
    }

    /// The credit of every peer with an account, or of `only`.
    pub fn view(&self, only: Option<PeerId>) -> CreditsView {
        let now = now_ms();
        let mut l = lock(&self.inner.ledger);
        let peers: Vec<PeerId> = match only {
            Some(p) => vec![p],
            None => l.peers().copied().collect(),
        };
        let mut out: Vec<PeerCredit> = peers
            .into_iter()
            .filter_map(|p| {
                let standing = l.standing(&p, now)?;
                let a = l.account(&p)?;
                Some(PeerCredit {
                    peer: p.to_string(),
                    their_seq: a.theirs.as_ref().map_or(0, |r| r.seq),
                    my_seq: a.mine.as_ref().map_or(0, |r| r.seq),
                    standing,
                })
            })
            .collect();
        drop(l);
        out.sort_by_key(|p| std::cmp::Reverse(p.standing.balance));
        let c = lock(&self.inner.counts);
        CreditsView {
            total_balance: out.iter().map(|p| p.standing.balance).sum(),
            receipts_accepted: c.accepted,
            receipts_refused: c.refused,
            requests_refused: c.requests_refused,
            peers: out,
            history: lock(&self.inner.history).iter().copied().collect(),
        }
    }
}
