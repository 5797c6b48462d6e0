//! The event loop: owns the swarm and nothing else; answers commands and hands inbound requests
//! to the services that own them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::kad::{self, QueryId};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};
use warren_protocol::block_transfer::provider_key;
use warren_protocol::{ContentId, NodeRecord};

use crate::addr::is_unspecified;
use crate::clock::unix_now;
use crate::error::NodeError;
use crate::metrics::Metrics;
use crate::net::behaviour::Behaviour;
use crate::net::client::{Command, DialReply};
use crate::net::peer_limit::{Connected, Limits, LookupLimiter, REDIAL_BACKOFF, to_trim};
use crate::net::peers::{PeerEvent, PeerScores};
use crate::net::protocols::blocks;
use crate::record::RecordBuilder;
use crate::view::RecordView;
use warren_protocol::record_book::RecordBook;

mod commands;
pub(crate) mod names;
pub(crate) mod nat;
mod records;
mod swarm;

use nat::{NatState, is_relayed};

/// Period of housekeeping (peer top-up, republish retries).
const TICK: Duration = Duration::from_secs(2);

/// An inbound `/warren/blocks/2.0.0` request, handed to the service that answers it; the answer
/// goes back through [`Client::respond_blocks_blocking`](crate::net::Client::respond_blocks_blocking).
#[derive(Debug)]
pub struct InboundBlocks {
    /// Who asked.
    pub peer: PeerId,
    /// The request as it came (decoded by the service, off the loop).
    pub request: blocks::Encoded,
    /// Where the answer goes.
    pub channel: request_response::ResponseChannel<blocks::Encoded>,
}

/// What the loop knows about a connected peer.
#[derive(Debug, Default)]
pub(crate) struct PeerState {
    addrs: Vec<Multiaddr>,
    agent: Option<String>,
    protocol_version: Option<String>,
    rtt: Option<Duration>,
    connected_at: Option<Instant>,
    invalid_messages: u32,
}

/// A DHT lookup waiting for its answer.
pub(crate) struct PendingRecord {
    peer: PeerId,
    /// None for lookups the loop starts itself (to learn a new peer's offers).
    reply: Option<oneshot::Sender<Result<RecordView, NodeError>>>,
}

/// Owns the swarm; see the module doc for what it drives.
pub struct EventLoop {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) commands: mpsc::Receiver<Command>,
    /// Where inbound block requests go (the storage service); none: refused as not served.
    pub(super) block_requests: Option<mpsc::Sender<InboundBlocks>>,
    /// Where accepted observations and connection prefixes go (the reputation service); none:
    /// dropped.
    pub(super) peer_events: Option<mpsc::Sender<PeerEvent>>,
    /// Where checked credit fraud proofs from gossip go (the credits service); none: dropped.
    pub(super) fraud_proofs: Option<mpsc::Sender<warren_protocol::credits::FraudProof>>,
    /// The reputation service's latest scores (empty without one: every peer neutral).
    pub(super) scores: watch::Receiver<Arc<PeerScores>>,
    /// Which gossip is accepted (signatures, network, the observers' rate limit).
    pub(super) gossip: warren_protocol::gossip::Filter,
    pub(super) pending_blocks: HashMap<
        request_response::OutboundRequestId,
        oneshot::Sender<Result<blocks::Encoded, request_response::OutboundFailure>>,
    >,
    pub(super) pending_providers: HashMap<QueryId, (HashSet<PeerId>, oneshot::Sender<Vec<PeerId>>)>,
    pub(super) records: RecordBuilder,
    pub(super) max_peers: usize,
    pub(super) listeners_expected: usize,
    pub(super) listeners_ready: usize,
    pub(super) ready: Option<oneshot::Sender<()>>,
    pub(super) peers: HashMap<PeerId, PeerState>,
    /// When the last connection to a peer closed (not redialed for `REDIAL_BACKOFF`).
    pub(super) closed_at: HashMap<PeerId, Instant>,
    /// Verified records learned from gossip and lookups.
    pub(super) known: RecordBook,
    pub(super) pending_records: HashMap<QueryId, PendingRecord>,
    /// Name lookups gathering answers, and name publications awaiting theirs.
    pub(super) pending_names: HashMap<QueryId, names::PendingName>,
    pub(super) pending_name_puts: HashMap<QueryId, oneshot::Sender<Result<usize, NodeError>>>,
    /// When the record of a peer that identified itself was last looked up (one per minute).
    pub(super) record_lookups: LookupLimiter,
    pub(super) own: Option<(Vec<u8>, NodeRecord)>,
    pub(super) publish_query: Option<QueryId>,
    pub(super) next_publish: Instant,
    pub(super) published_to_network: bool,
    pub(super) started: Instant,
    pub(super) bootstrapped: bool,
    /// Prometheus recorders ([`EventLoop::with_metrics`]); none in simulations.
    pub(super) metrics: Option<Arc<Metrics>>,
    pub(super) nat: NatState,
    /// `warren connect` dials waiting for their connection.
    pub(super) pending_dials: HashMap<libp2p::swarm::ConnectionId, DialReply>,
    /// `warren connect` calls for a peer another dial was already under way to.
    pub(super) waiting_dials: HashMap<PeerId, Vec<DialReply>>,
}

impl EventLoop {
    /// Records libp2p's metrics (and counts warren's) into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// The inbound block requests, for the service that answers them; at most `capacity` wait
    /// (more are answered "busy" at once). Without a taker, requests are refused.
    pub fn block_requests(&mut self, capacity: usize) -> mpsc::Receiver<InboundBlocks> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.block_requests = Some(tx);
        rx
    }

    /// The facts about peers the reputation service needs (accepted observations, connection
    /// prefixes); at most `capacity` wait, more are dropped (and logged).
    pub fn peer_events(&mut self, capacity: usize) -> mpsc::Receiver<PeerEvent> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.peer_events = Some(tx);
        rx
    }

    /// The credit fraud proofs accepted from gossip (checked); at most `capacity` wait, more are
    /// dropped.
    pub fn fraud_proofs(
        &mut self,
        capacity: usize,
    ) -> mpsc::Receiver<warren_protocol::credits::FraudProof> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.fraud_proofs = Some(tx);
        rx
    }

    /// Reads peer scores from `scores` (the reputation service's snapshots).
    pub fn use_scores(&mut self, scores: watch::Receiver<Arc<PeerScores>>) {
        self.scores = scores;
    }

    /// Hands `event` to the reputation service, if one listens and has room.
    pub(super) fn tell_reputation(&self, event: PeerEvent) {
        if let Some(tx) = &self.peer_events
            && let Err(e) = tx.try_send(event)
        {
            debug!("peer event dropped: {e}");
        }
    }

    /// Keeps a verified `record` unless the one already kept was issued later
    /// ([`RecordBook::offer`]: bounded, expired and soonest-expiring records go first).
    pub(crate) fn remember_record(&mut self, record: NodeRecord) {
        let peer = record.peer_id;
        let offered = self.known.offer(record, unix_now());
        if !offered.kept() {
            debug!(%peer, "record not kept: {offered:?}");
        }
    }

    /// Returns a receiver that fires once every configured listener has an address.
    pub fn on_ready(&mut self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.ready = Some(tx);
        rx
    }

    /// Runs until `shutdown` turns true or every [`Client`](crate::net::Client) is gone.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => break,
                },
                _ = tick.tick() => self.on_tick(),
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        info!("network event loop stopped");
    }

    pub(super) fn listen_addrs(&self) -> Vec<Multiaddr> {
        let local = self.local_peer_id();
        let mut addrs: Vec<Multiaddr> = self
            .swarm
            .listeners()
            .filter(|a| !is_unspecified(a))
            .map(|a| a.clone().with(Protocol::P2p(local)))
            .collect();
        // Direct addresses first, relayed ones after.
        addrs.sort_by_key(is_relayed);
        addrs
    }

    pub(super) fn advertised_addrs(&self) -> Vec<Multiaddr> {
        let mut addrs: Vec<Multiaddr> = self.swarm.external_addresses().cloned().collect();
        for a in self.swarm.listeners() {
            if !is_unspecified(a) && !addrs.contains(a) {
                addrs.push(a.clone());
            }
        }
        addrs.truncate(warren_protocol::record::MAX_ADDRS);
        addrs
    }

    /// Closes the least useful old connections when over the high-water mark (`peer_limit`).
    pub(super) fn trim_connections(&mut self) {
        let limits = Limits::new(self.max_peers);
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        if peers.len() <= limits.high_water {
            return;
        }
        let mut in_table = HashSet::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for entry in bucket.iter() {
                in_table.insert(*entry.node.key.preimage());
            }
        }
        let now = Instant::now();
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let connected: Vec<Connected> = peers
            .iter()
            .map(|p| Connected {
                peer: *p,
                age: self
                    .peers
                    .get(p)
                    .and_then(|s| s.connected_at)
                    .map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
                in_routing_table: in_table.contains(p),
                score: gossipsub.peer_score(p).unwrap_or(0.0),
                protected: self.nat.relays.iter().any(|(r, _)| r == p),
            })
            .collect();
        for peer in to_trim(&connected, &limits) {
            debug!(%peer, connected = peers.len(), "over the peer limit, trimming");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Feeds every connected peer's warren score to gossipsub as its application score.
    pub(super) fn update_application_scores(&mut self) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let snapshot = self.scores.borrow().clone();
        let scores: Vec<(PeerId, f64)> = peers
            .into_iter()
            .map(|p| (p, snapshot.application(&p)))
            .collect();
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        for (peer, score) in scores {
            gossipsub.set_application_score(&peer, score);
        }
    }

    pub(super) fn on_tick(&mut self) {
        self.close_refused();
        if self.listeners_ready == 0 {
            return;
        }
        self.listen_via_relays();
        if self.started.elapsed().as_secs() % 60 < TICK.as_secs() {
            self.known.prune(unix_now());
            self.swarm.behaviour_mut().kad.store_mut().prune();
        }
        self.update_application_scores();
        self.trim_connections();
        let connected = self.swarm.connected_peers().count();
        if Instant::now() >= self.next_publish
            || (!self.published_to_network && connected > 0 && self.publish_query.is_none())
            || self.load_moved()
        {
            self.publish_record();
        }
        // Top up connections from the routing table, up to the low-water mark, skipping peers
        // lost recently (peer_limit).
        let now = Instant::now();
        self.closed_at
            .retain(|_, at| now.saturating_duration_since(*at) < REDIAL_BACKOFF);
        let mut budget = Limits::new(self.max_peers).to_dial(connected);
        if budget > 0 {
            let mut candidates = Vec::new();
            for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
                for entry in bucket.iter() {
                    let peer = *entry.node.key.preimage();
                    if !self.closed_at.contains_key(&peer) {
                        candidates.push(peer);
                    }
                }
            }
            for peer in candidates {
                if budget == 0 {
                    break;
                }
                if self.nat.refused.contains(&peer) {
                    // Of another network: never dialled again from the routing table.
                    self.swarm.behaviour_mut().kad.remove_peer(&peer);
                    continue;
                }
                if !self.swarm.is_connected(&peer) {
                    let opts = DialOpts::peer_id(peer)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    if self.swarm.dial(opts).is_ok() {
                        budget -= 1;
                    }
                }
            }
        }
    }

    pub(super) fn start_providing(&mut self, blocks: &[ContentId]) {
        for block in blocks {
            let key = kad::RecordKey::new(&provider_key(&block.hash()));
            if let Err(e) = self.swarm.behaviour_mut().kad.start_providing(key) {
                warn!(%block, "cannot announce as provider: {e}");
            }
        }
    }

    /// Counts an invalid message against `peer` (shown by `warren peers`). Only connected peers
    /// are counted: their state goes when the connection does, so the map stays bounded by the
    /// peer limit whoever a DHT answer names.
    pub(super) fn note_invalid(&mut self, peer: PeerId) {
        if self.swarm.is_connected(&peer) {
            self.peers.entry(peer).or_default().invalid_messages += 1;
        }
    }
}
