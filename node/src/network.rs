//! The libp2p swarm and the event loop that owns it.
//!
//! ```text
//!  start ──► EventLoop::run ──owns──► Swarm<Behaviour>
//!              ▲   │                    ├─ kad        /warren/kad/1.0.0 (records validated before storing)
//!   Client ────┘   │ replies (oneshot)  ├─ identify   /ipfs/id/1.0.0 (feeds kad's routing table)
//!   (bounded mpsc  ▼                    ├─ ping       /ipfs/ping/1.0.0
//!    of Command)  API handlers          ├─ gossipsub  warren/nodes/1 (signed node records)
//!                                       ├─ envelope   /warren/envelope/1.0.0
//!                                       ├─ mdns       (with --mdns)
//!                                       ├─ autonat    /libp2p/autonat/1.0.0 (am I reachable?)
//!                                       ├─ relay      /libp2p/circuit/relay/0.2.0/hop (serve circuits)
//!                                       ├─ relay_client (reserve circuits, dial through them)
//!                                       └─ dcutr      /libp2p/dcutr (hole punch a relayed connection)
//! ```
//!
//! Identify carries the network id in the agent version (`warren/VERSION network/ID`): a peer of
//! another network is logged, removed from the routing table and disconnected.
//!
//! The loop only moves bytes: every decision about a record or an envelope is made by the pure code
//! in `warren-protocol` (decode, verify) and by [`crate::service`]. Commands carry a oneshot that
//! the loop answers; queries are keyed by their kad `QueryId`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity};
use libp2p::identity::Keypair;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig, RecordStore};
use libp2p::kad::{self, GetRecordOk, Mode, QueryId, QueryResult, Quorum};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, autonat, dcutr, identify, mdns, noise, ping, relay,
    tcp, yamux,
};

use crate::peer_limit::{Connected, Limits, REDIAL_BACKOFF, to_trim};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};
use warren_protocol::block_transfer::{self, provider_key};
use warren_protocol::onion::path::Candidate as OnionCandidate;
use warren_protocol::reputation::{Rate, RateLimit};
use warren_protocol::{
    ContentId, NodeRecord, REPUTATION_TOPIC, Reputation, Role, SignedNodeRecord, SignedObservation,
};
use warren_storage_mesh::Store;
use warren_storage_mesh::hot::HotTracker;
use warren_storage_mesh::placement::Candidate;

use crate::api::{NatView, PeerInfo, RecordView, StatusInfo};
use crate::blocks;
use crate::config::{Config, FaultInject, KadMode};
use crate::envelope;
use crate::error::NodeError;
use crate::gossip;
use crate::metrics::Metrics;
use crate::record::RecordBuilder;
use crate::service;

mod nat;

use nat::{NatState, count_served, is_relayed};
pub use nat::{agent_version, network_of_agent};

/// The Kademlia protocol name: warren's own DHT, so the public IPFS DHT is never joined by mistake.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/warren/kad/1.0.0");
/// The identify protocol version warren nodes announce.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/warren/1.0.0";
/// The gossipsub topic on which nodes announce their signed records.
pub const NODES_TOPIC: &str = "warren/nodes/1";
/// The version string of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Capacity of the command channel: callers wait when the loop is this far behind.
const COMMAND_QUEUE: usize = 64;
/// Period of housekeeping (peer top-up, republish retries).
const TICK: Duration = Duration::from_secs(2);

/// All behaviours of a warren node.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    kad: kad::Behaviour<MemoryStore>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    gossipsub: gossipsub::Behaviour,
    envelope: request_response::Behaviour<envelope::Codec>,
    blocks: request_response::Behaviour<blocks::Codec>,
    /// Raw streams: one per onion circuit hop (`/warren/onion/1.0.0`), and inference jobs
    /// (`/warren/inference/1.0.0`), which stream results.
    stream: libp2p_stream::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
    autonat: autonat::Behaviour,
    relay: Toggle<relay::Behaviour>,
    relay_client: Toggle<relay::client::Behaviour>,
    dcutr: dcutr::Behaviour,
}

/// A request from the API (or a test) to the event loop.
#[derive(Debug)]
enum Command {
    Status {
        reply: oneshot::Sender<StatusInfo>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    FindRecord {
        peer: PeerId,
        reply: oneshot::Sender<Result<RecordView, NodeError>>,
    },
    SendBlocks {
        peer: PeerId,
        request: blocks::Encoded,
        reply: oneshot::Sender<Result<blocks::Encoded, String>>,
    },
    Respond {
        peer: PeerId,
        channel: request_response::ResponseChannel<blocks::Encoded>,
        response: blocks::Encoded,
        provide: Option<ContentId>,
        /// The request did not decode (counted against the peer).
        invalid: bool,
    },
    Providers {
        block: ContentId,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Provide {
        blocks: Vec<ContentId>,
    },
    Candidates {
        reply: oneshot::Sender<(PeerId, Vec<Candidate>)>,
    },
    Publish {
        topic: &'static str,
        data: Vec<u8>,
    },
    Dial {
        addr: Multiaddr,
        reply: DialReply,
    },
    OnionCandidates {
        reply: oneshot::Sender<(PeerId, Vec<OnionCandidate>)>,
    },
}

/// A cloneable handle that sends commands to the running event loop.
#[derive(Clone)]
pub struct Client {
    tx: mpsc::Sender<Command>,
    control: libp2p_stream::Control,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        rx.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// This node's status.
    pub async fn status(&self) -> Result<StatusInfo, NodeError> {
        self.ask(|reply| Command::Status { reply }).await
    }

    /// The peers this node is connected to.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NodeError> {
        self.ask(|reply| Command::Peers { reply }).await
    }

    /// Sends one `/warren/blocks/2.0.0` request and waits for the answer.
    pub async fn blocks(
        &self,
        peer: PeerId,
        request: block_transfer::Request,
    ) -> Result<block_transfer::Response, String> {
        let request = request.encode().map_err(|e| e.to_string())?;
        let raw = self
            .ask(|reply| Command::SendBlocks {
                peer,
                request,
                reply,
            })
            .await
            .map_err(|e| e.to_string())??;
        // Decoding hashes a carried block against its id: off the runtime's workers.
        tokio::task::spawn_blocking(move || block_transfer::Response::decode(&raw))
            .await
            .map_err(|e| format!("decoding the answer of {peer}: {e}"))?
            .map_err(|e| format!("{peer} answered with a bad message: {e}"))
    }

    /// The peers announcing `block` in the DHT (provider records).
    pub async fn providers(&self, block: ContentId) -> Result<Vec<PeerId>, NodeError> {
        self.ask(|reply| Command::Providers { block, reply }).await
    }

    /// Publishes `data` on the gossipsub `topic`.
    pub async fn publish(&self, topic: &'static str, data: Vec<u8>) -> Result<(), NodeError> {
        self.tx
            .send(Command::Publish { topic, data })
            .await
            .map_err(|_| NodeError::ShuttingDown)
    }

    /// Announces this node as a provider of `blocks`.
    pub async fn provide(&self, blocks: Vec<ContentId>) -> Result<(), NodeError> {
        self.tx
            .send(Command::Provide { blocks })
            .await
            .map_err(|_| NodeError::ShuttingDown)
    }

    /// This node's peer id, and the connected peers offering storage (from their verified
    /// records), as placement candidates.
    pub async fn candidates(&self) -> Result<(PeerId, Vec<Candidate>), NodeError> {
        self.ask(|reply| Command::Candidates { reply }).await
    }

    /// Dials `addr` (ending in `/p2p/PEER_ID`, possibly through a relay's `/p2p-circuit`) and waits
    /// for the connection; answers the peer and the address connected to.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(PeerId, Multiaddr), NodeError> {
        self.ask(|reply| Command::Dial { addr, reply }).await?
    }

    /// A handle that opens and accepts raw streams (onion links, inference jobs) without the loop.
    pub fn stream_control(&self) -> libp2p_stream::Control {
        self.control.clone()
    }

    /// This node's peer id, and the connected peers whose verified records offer an onion role,
    /// as path candidates.
    pub async fn onion_candidates(&self) -> Result<(PeerId, Vec<OnionCandidate>), NodeError> {
        self.ask(|reply| Command::OnionCandidates { reply }).await
    }

    /// Finds `peer`'s node record in the DHT and verifies it.
    pub async fn find_record(&self, peer: PeerId) -> Result<RecordView, NodeError> {
        self.ask(|reply| Command::FindRecord { peer, reply })
            .await?
    }
}

/// What the loop knows about a connected peer.
#[derive(Debug, Default)]
struct PeerState {
    addrs: Vec<Multiaddr>,
    agent: Option<String>,
    protocol_version: Option<String>,
    rtt: Option<Duration>,
    connected_at: Option<Instant>,
    invalid_messages: u32,
}

/// A DHT lookup waiting for its answer.
struct PendingRecord {
    peer: PeerId,
    /// None for lookups the loop starts itself (to learn a new peer's offers).
    reply: Option<oneshot::Sender<Result<RecordView, NodeError>>>,
}

/// Seconds since the Unix epoch, the clock the protocol crate is driven with.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Splits `/…/p2p/PEER` into the peer id and the address before it.
pub fn split_peer_addr(addr: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut base = addr.clone();
    match base.pop() {
        Some(Protocol::P2p(peer)) => Some((peer, base)),
        _ => None,
    }
}

fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

fn ip_of(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    })
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// Which transports a node's swarm runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// TCP and QUIC, with DNS: a node on a real network.
    #[default]
    Network,
    /// libp2p's in-process memory transport (`/memory/N` addresses) with noise and yamux: many
    /// nodes in one process (simulations, tests). Every behaviour is the same as on `Network`.
    Memory,
}

/// Builds the swarm and its event loop on TCP and QUIC; nothing runs until [`EventLoop::run`].
pub fn build(
    config: &Config,
    key: Keypair,
    records: RecordBuilder,
    store: Arc<Store>,
    hot: Arc<std::sync::Mutex<HotTracker>>,
    reputation: Arc<std::sync::Mutex<Reputation>>,
) -> Result<(Client, EventLoop), NodeError> {
    build_on(
        Transport::Network,
        config,
        key,
        records,
        store,
        hot,
        reputation,
    )
}

/// Fewest provider keys the DHT store keeps (libp2p's default, 1024, is one GiB of blocks).
const MIN_PROVIDER_KEYS: usize = 65_536;
/// Most provider keys the DHT store keeps (a few hundred bytes each in memory).
const MAX_PROVIDER_KEYS: usize = 4 << 20;

/// How many distinct blocks the DHT store keeps provider records for, this node's own and those
/// other peers stored here: room for twice the blocks that fit in the storage offer, so a full
/// holder can announce every block it holds and still keep its share of everyone else's.
pub fn provider_key_limit(offer_bytes: u64) -> usize {
    let blocks = offer_bytes / warren_protocol::CHUNK_SIZE as u64;
    usize::try_from(blocks.saturating_mul(2))
        .unwrap_or(MAX_PROVIDER_KEYS)
        .clamp(MIN_PROVIDER_KEYS, MAX_PROVIDER_KEYS)
}

/// The DHT's record and provider store.
fn dht_store(local: PeerId, provider_keys: usize) -> MemoryStore {
    MemoryStore::with_config(
        local,
        MemoryStoreConfig {
            max_records: 65_536,
            max_value_bytes: warren_protocol::MAX_RECORD_SIZE,
            max_provided_keys: provider_keys,
            ..MemoryStoreConfig::default()
        },
    )
}

/// All behaviours of a node with identity `key`.
fn behaviour(
    key: &Keypair,
    mdns_on: bool,
    network: &str,
    relay_server: bool,
    relay_client: Option<relay::client::Behaviour>,
    provider_keys: usize,
) -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
    let local = key.public().to_peer_id();
    let mut kad_cfg = kad::Config::new(KAD_PROTOCOL);
    kad_cfg
        .set_record_filtering(kad::StoreInserts::FilterBoth)
        .disjoint_query_paths(true)
        .set_query_timeout(Duration::from_secs(20));
    let store = dht_store(local, provider_keys);
    let mut gossipsub = gossipsub::Behaviour::new(
        MessageAuthenticity::Signed(key.clone()),
        gossip::config(2 * warren_protocol::MAX_RECORD_SIZE)?,
    )?;
    let (params, thresholds) = gossip::score_params(&[NODES_TOPIC, REPUTATION_TOPIC]);
    gossipsub.with_peer_score(params, thresholds)?;
    let mdns = if mdns_on {
        Some(mdns::tokio::Behaviour::new(mdns::Config::default(), local)?)
    } else {
        None
    };
    Ok(Behaviour {
        kad: kad::Behaviour::with_config(local, store, kad_cfg),
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL_VERSION.to_owned(), key.public())
                .with_agent_version(agent_version(network))
                .with_push_listen_addr_updates(true),
        ),
        ping: ping::Behaviour::new(ping::Config::new()),
        gossipsub,
        envelope: request_response::Behaviour::with_codec(
            envelope::Codec,
            [(envelope::PROTOCOL_NAME, ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(10))
                .with_max_concurrent_streams(64),
        ),
        blocks: request_response::Behaviour::with_codec(
            blocks::Codec,
            [(blocks::PROTOCOL_NAME, ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(30))
                .with_max_concurrent_streams(32),
        ),
        stream: libp2p_stream::Behaviour::new(),
        mdns: Toggle::from(mdns),
        autonat: autonat::Behaviour::new(local, autonat::Config::default()),
        relay: Toggle::from(
            relay_server.then(|| relay::Behaviour::new(local, relay::Config::default())),
        ),
        relay_client: Toggle::from(relay_client),
        dcutr: dcutr::Behaviour::new(local),
    })
}

/// Connections are closed by the peer manager (max_peers), not by idleness: "peers" are the
/// connections this node keeps.
fn swarm_config(c: libp2p::swarm::Config) -> libp2p::swarm::Config {
    c.with_idle_connection_timeout(Duration::from_secs(24 * 3600))
}

/// Builds the swarm and its event loop on `transport`; nothing runs until [`EventLoop::run`].
pub fn build_on(
    transport: Transport,
    config: &Config,
    key: Keypair,
    records: RecordBuilder,
    store: Arc<Store>,
    hot: Arc<std::sync::Mutex<HotTracker>>,
    reputation: Arc<std::sync::Mutex<Reputation>>,
) -> Result<(Client, EventLoop), NodeError> {
    let net = |e: &dyn std::fmt::Display| NodeError::Network(e.to_string());
    let local = key.public().to_peer_id();
    let mdns_on = config.mdns && transport == Transport::Network;
    let network = config.network.clone();
    let relay_server = config.nat.relay_server;
    let provider_keys = provider_key_limit(config.storage.offer_bytes);
    let mut swarm = match transport {
        Transport::Network => libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| net(&e))?
            .with_quic()
            .with_dns()
            .map_err(|e| net(&e))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| net(&e))?
            .with_behaviour(|key, relay_client| {
                behaviour(
                    key,
                    mdns_on,
                    &network,
                    relay_server,
                    Some(relay_client),
                    provider_keys,
                )
            })
            .map_err(|e| net(&e))?
            .with_swarm_config(swarm_config)
            .build(),
        Transport::Memory => libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_other_transport(|key| {
                use libp2p::Transport as _;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    libp2p::core::transport::MemoryTransport::default()
                        .upgrade(libp2p::core::upgrade::Version::V1)
                        .authenticate(noise::Config::new(key)?)
                        .multiplex(yamux::Config::default())
                        .boxed(),
                )
            })
            .map_err(|e| net(&e))?
            .with_behaviour(|key| {
                behaviour(key, mdns_on, &network, relay_server, None, provider_keys)
            })
            .map_err(|e| net(&e))?
            .with_swarm_config(swarm_config)
            .build(),
    };

    let mode = match config.kad_mode {
        KadMode::Server => Some(Mode::Server),
        KadMode::Client => Some(Mode::Client),
        KadMode::Auto if config.loopback_only() => Some(Mode::Server),
        KadMode::Auto => None,
    };
    swarm.behaviour_mut().kad.set_mode(mode);
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&IdentTopic::new(NODES_TOPIC))
        .and_then(|_| {
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&IdentTopic::new(REPUTATION_TOPIC))
        })
        .map_err(|e| net(&e))?;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NodeError::Network(format!("listen on {addr}: {e}")))?;
    }
    for addr in &config.nat.external_addrs {
        swarm.add_external_address(addr.clone());
    }
    // Listening through a relay starts once connected to it (`EventLoop::listen_via_relays`):
    // a relay listener asked for while another dial to the relay is under way would be dropped.
    let relays: Vec<(PeerId, Multiaddr)> = config
        .nat
        .relays
        .iter()
        .filter_map(|a| split_peer_addr(a).map(|(p, _)| (p, a.clone())))
        .filter(|(p, _)| *p != local)
        .collect();
    for addr in &config.bootstrap {
        if let Some((peer, base)) = split_peer_addr(addr) {
            if peer == local {
                continue;
            }
            swarm.behaviour_mut().kad.add_address(&peer, base);
            if let Err(e) = swarm.dial(addr.clone()) {
                warn!(%addr, "cannot dial bootstrap peer: {e}");
            }
        }
    }

    let control = swarm.behaviour().stream.new_control();
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let event_loop = EventLoop {
        swarm,
        commands: rx,
        self_tx: tx.clone(),
        store,
        hot,
        reputation,
        observation_rate: RateLimit::default(),
        pending_blocks: HashMap::new(),
        pending_providers: HashMap::new(),
        records,
        max_peers: config.max_peers,
        fault: config.mesh.fault_inject,
        listeners_expected: config.listen.len(),
        listeners_ready: 0,
        ready: None,
        peers: HashMap::new(),
        closed_at: HashMap::new(),
        known: HashMap::new(),
        pending_records: HashMap::new(),
        own: None,
        publish_query: None,
        next_publish: Instant::now(),
        published_to_network: false,
        started: Instant::now(),
        bootstrapped: config.bootstrap.is_empty(),
        metrics: None,
        nat: NatState {
            status: "unknown".into(),
            auto_relay: config.nat.auto_relay,
            bootstrap: config.bootstrap.clone(),
            relays,
            kad_auto: mode.is_none(),
            ..NatState::default()
        },
        pending_dials: HashMap::new(),
        waiting_dials: HashMap::new(),
    };
    Ok((Client { tx, control }, event_loop))
}

/// Owns the swarm; see the module doc for what it drives.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    /// For blocking tasks that answer inbound block requests.
    self_tx: mpsc::Sender<Command>,
    store: Arc<Store>,
    /// Fetch counts of the blocks this node serves (hot content gets a higher RF).
    hot: Arc<std::sync::Mutex<HotTracker>>,
    /// Local scores of other peers, fed by gossiped observations.
    reputation: Arc<std::sync::Mutex<Reputation>>,
    /// Observations accepted per observer and window (spam limit on `warren/reputation/1`).
    observation_rate: RateLimit,
    pending_blocks: HashMap<
        request_response::OutboundRequestId,
        oneshot::Sender<Result<blocks::Encoded, String>>,
    >,
    pending_providers: HashMap<QueryId, (HashSet<PeerId>, oneshot::Sender<Vec<PeerId>>)>,
    records: RecordBuilder,
    max_peers: usize,
    /// Simulated fault (tests only).
    fault: FaultInject,
    listeners_expected: usize,
    listeners_ready: usize,
    ready: Option<oneshot::Sender<()>>,
    peers: HashMap<PeerId, PeerState>,
    /// When the last connection to a peer closed (not redialed for `REDIAL_BACKOFF`).
    closed_at: HashMap<PeerId, Instant>,
    /// Verified records learned from gossip and lookups.
    known: HashMap<PeerId, NodeRecord>,
    pending_records: HashMap<QueryId, PendingRecord>,
    own: Option<(Vec<u8>, NodeRecord)>,
    publish_query: Option<QueryId>,
    next_publish: Instant,
    published_to_network: bool,
    started: Instant,
    bootstrapped: bool,
    /// Prometheus recorders ([`EventLoop::with_metrics`]); none in simulations.
    metrics: Option<Arc<Metrics>>,
    nat: NatState,
    /// `warren connect` dials waiting for their connection.
    pending_dials: HashMap<libp2p::swarm::ConnectionId, DialReply>,
    /// `warren connect` calls for a peer another dial was already under way to.
    waiting_dials: HashMap<PeerId, Vec<DialReply>>,
}

/// Answers a [`Command::Dial`]: the peer and the address connected to.
type DialReply = oneshot::Sender<Result<(PeerId, Multiaddr), NodeError>>;

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

    /// Returns a receiver that fires once every configured listener has an address.
    pub fn on_ready(&mut self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.ready = Some(tx);
        rx
    }

    /// Runs until `shutdown` turns true or every [`Client`] is gone.
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

    fn listen_addrs(&self) -> Vec<Multiaddr> {
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

    fn advertised_addrs(&self) -> Vec<Multiaddr> {
        let mut addrs: Vec<Multiaddr> = self.swarm.external_addresses().cloned().collect();
        for a in self.swarm.listeners() {
            if !is_unspecified(a) && !addrs.contains(a) {
                addrs.push(a.clone());
            }
        }
        addrs.truncate(warren_protocol::record::MAX_ADDRS);
        addrs
    }

    fn publish_record(&mut self) {
        let now = unix_now();
        let (bytes, record) = match self.records.build(self.advertised_addrs(), now) {
            Ok(r) => r,
            Err(e) => {
                warn!("cannot build this node's record: {e}");
                self.next_publish = Instant::now() + Duration::from_secs(30);
                return;
            }
        };
        let ttl = Duration::from_secs(record.expires_at.saturating_sub(now));
        let kad_record = kad::Record {
            key: kad::RecordKey::new(&warren_protocol::record_key(&record.peer_id)),
            value: bytes.clone(),
            publisher: None,
            expires: Some(Instant::now() + ttl),
        };
        match self
            .swarm
            .behaviour_mut()
            .kad
            .put_record(kad_record, Quorum::One)
        {
            Ok(id) => self.publish_query = Some(id),
            Err(e) => warn!("cannot store this node's record locally: {e}"),
        }
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(IdentTopic::new(NODES_TOPIC), bytes.clone())
        {
            debug!("record not gossiped yet: {e}");
        }
        debug!(expires_at = record.expires_at, "published node record");
        self.own = Some((bytes, record));
        // Republish at half the lifetime; a failed network publish is retried by the tick.
        self.next_publish = Instant::now() + ttl / 2;
    }

    /// Closes the least useful old connections when over the high-water mark (`peer_limit`).
    fn trim_connections(&mut self) {
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
    fn update_application_scores(&mut self) {
        let now_ms = unix_now_ms();
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let scores: Vec<(PeerId, f64)> = match self.reputation.lock() {
            Ok(rep) => peers
                .into_iter()
                .map(|p| {
                    let s = rep.score(&p, now_ms).map(|s| s.application_score());
                    (p, s.unwrap_or(0.0))
                })
                .collect(),
            Err(_) => return,
        };
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        for (peer, score) in scores {
            gossipsub.set_application_score(&peer, score);
        }
    }

    fn on_tick(&mut self) {
        self.close_refused();
        if self.listeners_ready == 0 {
            return;
        }
        self.listen_via_relays();
        self.update_application_scores();
        self.trim_connections();
        let connected = self.swarm.connected_peers().count();
        if Instant::now() >= self.next_publish
            || (!self.published_to_network && connected > 0 && self.publish_query.is_none())
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

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peer_list());
            }
            Command::FindRecord { peer, reply } => {
                if peer == self.local_peer_id() {
                    let result = match &self.own {
                        Some((bytes, _)) => {
                            SignedNodeRecord::decode_verified(bytes, Some(&peer), unix_now())
                                .map(|r| RecordView::new(&r, bytes.len(), "local"))
                                .map_err(NodeError::from)
                        }
                        None => Err(NodeError::RecordNotFound { peer }),
                    };
                    let _ = reply.send(result);
                    return;
                }
                let key = kad::RecordKey::new(&warren_protocol::record_key(&peer));
                let id = self.swarm.behaviour_mut().kad.get_record(key);
                self.pending_records.insert(
                    id,
                    PendingRecord {
                        peer,
                        reply: Some(reply),
                    },
                );
            }
            Command::SendBlocks {
                peer,
                request,
                reply,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .blocks
                    .send_request(&peer, request);
                self.pending_blocks.insert(id, reply);
            }
            Command::Respond {
                peer,
                channel,
                response,
                provide,
                invalid,
            } => {
                if invalid {
                    self.note_invalid(peer);
                }
                if self
                    .swarm
                    .behaviour_mut()
                    .blocks
                    .send_response(channel, response)
                    .is_err()
                {
                    debug!("block answer not sent: the stream closed");
                }
                if let Some(block) = provide {
                    self.start_providing(&[block]);
                }
            }
            Command::Providers { block, reply } => {
                let key = kad::RecordKey::new(&provider_key(&block.hash()));
                let id = self.swarm.behaviour_mut().kad.get_providers(key);
                self.pending_providers.insert(id, (HashSet::new(), reply));
            }
            Command::Provide { blocks } => self.start_providing(&blocks),
            Command::Publish { topic, data } => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(IdentTopic::new(topic), data)
                {
                    debug!(topic, "not published: {e}");
                }
            }
            Command::Dial { addr, reply } => {
                let Some((peer, _)) = split_peer_addr(&addr) else {
                    let _ = reply.send(Err(NodeError::Network(format!(
                        "{addr} does not end in /p2p/PEER_ID"
                    ))));
                    return;
                };
                // One connection per peer: a second one (say, a second relayed circuit) would
                // only race the first, e.g. two hole punches on the same ports.
                if self.swarm.is_connected(&peer) {
                    let via = self
                        .peers
                        .get(&peer)
                        .and_then(|s| s.addrs.first().cloned())
                        .unwrap_or(addr);
                    let _ = reply.send(Ok((peer, via)));
                    return;
                }
                let opts = DialOpts::peer_id(peer)
                    .addresses(vec![addr.clone()])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(id, reply);
                    }
                    Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => {
                        // Already being dialled: answer when that dial ends.
                        self.waiting_dials.entry(peer).or_default().push(reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NodeError::Network(format!("dial {addr}: {e}"))));
                    }
                }
            }
            Command::OnionCandidates { reply } => {
                let now = unix_now().saturating_mul(1000);
                let candidates = self
                    .known
                    .iter()
                    .filter(|(peer, _)| self.swarm.is_connected(peer))
                    .filter(|(_, r)| {
                        r.roles
                            .iter()
                            .any(|x| matches!(x, Role::Gate | Role::Middle | Role::Relay))
                    })
                    .map(|(peer, record)| OnionCandidate {
                        peer: *peer,
                        onion_key: record.onion_key,
                        roles: record.roles.clone(),
                        ip: self
                            .peers
                            .get(peer)
                            .and_then(|s| s.addrs.iter().find_map(ip_of))
                            .or_else(|| record.addrs.iter().find_map(ip_of)),
                        score: self
                            .reputation
                            .lock()
                            .ok()
                            .and_then(|r| r.score(peer, now))
                            .map(|s| if s.is_below_floor() { 0.0 } else { s.total }),
                    })
                    .collect();
                let _ = reply.send((*self.swarm.local_peer_id(), candidates));
            }
            Command::Candidates { reply } => {
                let candidates = self
                    .known
                    .iter()
                    .filter(|(peer, _)| self.swarm.is_connected(peer))
                    .filter_map(|(peer, record)| {
                        let offer = record.storage.as_ref()?;
                        Some(Candidate {
                            peer: *peer,
                            tier: offer.tier,
                            bytes_free: offer.bytes_free,
                            score: self
                                .reputation
                                .lock()
                                .ok()
                                .and_then(|r| r.score(peer, unix_now().saturating_mul(1000)))
                                .map(|s| if s.is_below_floor() { 0.0 } else { s.total }),
                        })
                    })
                    .collect();
                let _ = reply.send((self.local_peer_id(), candidates));
            }
        }
    }

    fn start_providing(&mut self, blocks: &[ContentId]) {
        for block in blocks {
            let key = kad::RecordKey::new(&provider_key(&block.hash()));
            if let Err(e) = self.swarm.behaviour_mut().kad.start_providing(key) {
                warn!(%block, "cannot announce as provider: {e}");
            }
        }
    }

    /// Answers an inbound block request on the blocking pool; the answer comes back as a
    /// [`Command::Respond`].
    fn serve_blocks(
        &mut self,
        peer: PeerId,
        request: blocks::Encoded,
        channel: request_response::ResponseChannel<blocks::Encoded>,
    ) {
        let store = self.store.clone();
        let tx = self.self_tx.clone();
        let fault = self.fault;
        let metrics = self.metrics.clone();
        let hot = self.hot.clone();
        // Decoding (a stored replica is hashed against its id), the store and encoding the
        // answer all run on a blocking thread.
        tokio::task::spawn_blocking(move || {
            let (response, provide, invalid) = match block_transfer::Request::decode(&request) {
                Ok(request) => {
                    if let block_transfer::Request::Get(get) = &request
                        && let Ok(mut hot) = hot.lock()
                    {
                        hot.record_fetch(&get.block.hash(), unix_now().saturating_mul(1000));
                    }
                    let stored_len = match &request {
                        block_transfer::Request::Store(s) => s.data.len() as u64,
                        _ => 0,
                    };
                    if fault == crate::config::FaultInject::SlowBlocks
                        && matches!(request, block_transfer::Request::Get(_))
                    {
                        std::thread::sleep(crate::config::SLOW_BLOCKS_DELAY);
                    }
                    let (response, provide) =
                        crate::mesh::serve(&store, &peer, request, unix_now(), fault);
                    count_served(metrics.as_deref(), &peer, &response, stored_len);
                    (response, provide, false)
                }
                Err(e) => {
                    let reason = e.to_string();
                    warn!(%peer, "refused block request: {reason}");
                    let response = block_transfer::Response::Failed {
                        reason: truncate(&reason),
                    };
                    (response, None, true)
                }
            };
            let response = response.encode().unwrap_or_else(|e| {
                warn!(%peer, "block answer not encoded: {e}");
                block_transfer::Response::Failed {
                    reason: "the answer could not be encoded".into(),
                }
                .encode()
                .unwrap_or_default()
            });
            let _ = tx.blocking_send(Command::Respond {
                peer,
                channel,
                response,
                provide,
                invalid,
            });
        });
    }

    fn status(&mut self) -> StatusInfo {
        let mut bucket_sizes = Vec::new();
        let local_key = kad::KBucketKey::from(self.local_peer_id());
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            if let Some(first) = bucket.iter().next() {
                // Every entry of a bucket shares the bucket's distance exponent.
                let exp = first.node.key.distance(&local_key).ilog2();
                if let Some(exp) = exp {
                    bucket_sizes.push((exp, bucket.num_entries()));
                }
            }
        }
        let routing_table = bucket_sizes.iter().map(|(_, n)| n).sum();
        StatusInfo {
            peer_id: self.local_peer_id().to_string(),
            version: VERSION.to_owned(),
            network: self.records.network().to_owned(),
            listen_addrs: self.listen_addrs().iter().map(|a| a.to_string()).collect(),
            external_addrs: self
                .swarm
                .external_addresses()
                .map(|a| a.to_string())
                .collect(),
            peers: self.swarm.connected_peers().count(),
            routing_table,
            kad_mode: self.swarm.behaviour_mut().kad.mode().to_string(),
            record_published: self.published_to_network,
            uptime_secs: self.started.elapsed().as_secs(),
            storage: None,
            dht_size_estimate: crate::dashboard::dht_size_estimate(&bucket_sizes),
            nat: Some(NatView {
                status: self.nat.status.clone(),
                relayed_via: self
                    .nat
                    .relayed_via
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                reservations: self
                    .nat
                    .reservations
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                hole_punches_ok: self.nat.hole_punches_ok,
                hole_punches_failed: self.nat.hole_punches_failed,
                network_refusals: self.nat.network_refusals,
                last_network_refusal: self.nat.last_network_refusal.clone(),
            }),
        }
    }

    fn peer_list(&self) -> Vec<PeerInfo> {
        let mut out: Vec<PeerInfo> = self
            .swarm
            .connected_peers()
            .map(|peer| {
                let state = self.peers.get(peer);
                PeerInfo {
                    peer_id: peer.to_string(),
                    addrs: state
                        .map(|s| s.addrs.iter().map(|a| a.to_string()).collect())
                        .unwrap_or_default(),
                    agent: state.and_then(|s| s.agent.clone()),
                    protocol_version: state.and_then(|s| s.protocol_version.clone()),
                    rtt_ms: state.and_then(|s| s.rtt).map(|d| d.as_secs_f64() * 1000.0),
                    connected_secs: state
                        .and_then(|s| s.connected_at)
                        .map(|t| t.elapsed().as_secs())
                        .unwrap_or(0),
                    roles: self
                        .known
                        .get(peer)
                        .map(|r| r.roles.clone())
                        .unwrap_or_default(),
                    invalid_messages: state.map(|s| s.invalid_messages).unwrap_or(0),
                }
            })
            .collect();
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        out
    }

    fn note_invalid(&mut self, peer: PeerId) {
        self.peers.entry(peer).or_default().invalid_messages += 1;
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        if let Some(m) = &self.metrics {
            m.record(&event);
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(address = %address.clone().with(Protocol::P2p(self.local_peer_id())), "listening");
                self.listeners_ready += 1;
                if self.listeners_ready >= self.listeners_expected
                    && let Some(ready) = self.ready.take()
                {
                    let _ = ready.send(());
                }
                // Addresses changed: publish the record with them.
                self.next_publish = Instant::now();
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                connection_id,
                ..
            } => {
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok((peer_id, endpoint.get_remote_address().clone())));
                }
                for reply in self.waiting_dials.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok((peer_id, endpoint.get_remote_address().clone())));
                }
                if self.nat.relays.iter().any(|(p, _)| *p == peer_id)
                    && !self.nat.relayed_via.contains(&peer_id)
                {
                    self.listen_via_relays();
                }
                if let Some(prefix) =
                    warren_protocol::reputation::ipv4_prefix(endpoint.get_remote_address())
                    && let Ok(mut rep) = self.reputation.lock()
                {
                    rep.set_network(peer_id, prefix);
                }
                let state = self.peers.entry(peer_id).or_default();
                if state.connected_at.is_none() {
                    state.connected_at = Some(Instant::now());
                }
                let addr = endpoint.get_remote_address().clone();
                if !state.addrs.contains(&addr) {
                    state.addrs.push(addr);
                }
                if num_established.get() == 1 {
                    debug!(peer = %peer_id, "connected");
                }
                let connected = self.swarm.connected_peers().count();
                // Over the limit the tick trims old connections (peer_limit); only a flood far
                // over it is turned away at once, so a newcomer's Kademlia requests are answered.
                if endpoint.is_listener() && Limits::new(self.max_peers).refuse_inbound(connected) {
                    debug!(peer = %peer_id, connected, "over the hard peer cap, closing");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                }
                if !self.bootstrapped {
                    self.bootstrapped = true;
                    if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
                        debug!("kad bootstrap: {e}");
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                debug!(peer = %peer_id, "disconnected");
                self.peers.remove(&peer_id);
                self.closed_at.insert(peer_id, Instant::now());
                if self.nat.refused.contains(&peer_id) {
                    // Kademlia may have added it while the connection was up.
                    self.swarm.behaviour_mut().kad.remove_peer(&peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                error,
                connection_id,
            } if self.pending_dials.contains_key(&connection_id) => {
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let who = peer_id.map(|p| p.to_string()).unwrap_or_default();
                    let _ = reply.send(Err(NodeError::Network(format!("dial {who}: {error}"))));
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(peer = ?peer_id, "dial failed: {error}");
                if let Some(peer) = peer_id
                    && !self.swarm.is_connected(&peer)
                {
                    for reply in self.waiting_dials.remove(&peer).unwrap_or_default() {
                        let _ =
                            reply.send(Err(NodeError::Network(format!("dial {peer}: {error}"))));
                    }
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                if let Some(relay) = self.nat.relay_listeners.remove(&listener_id) {
                    // Lost the reservation (relay gone, refused, expired): the tick asks again.
                    info!(%relay, "relay listener closed; will ask again");
                    self.nat.relayed_via.remove(&relay);
                    self.nat.reservations.remove(&relay);
                }
                if let Err(e) = reason {
                    warn!(?addresses, "listener closed: {e}");
                }
            }
            SwarmEvent::ListenerError { error, .. } => warn!("listener error: {error}"),
            SwarmEvent::ExternalAddrConfirmed { address } => {
                info!(%address, "external address confirmed");
                self.on_external_addrs_changed();
            }
            SwarmEvent::ExternalAddrExpired { .. } => self.on_external_addrs_changed(),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        self.record_metrics(&event);
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })
                if self.refuse_other_network(peer_id, &info.agent_version) => {}
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let remote_is_loopback = self
                    .peers
                    .get(&peer_id)
                    .map(|s| s.addrs.iter().any(is_loopback))
                    .unwrap_or(false);
                if info.protocols.contains(&KAD_PROTOCOL) {
                    for addr in &info.listen_addrs {
                        // A remote peer's loopback address is only reachable from its own host.
                        if is_unspecified(addr) || (is_loopback(addr) && !remote_is_loopback) {
                            continue;
                        }
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer_id, addr.clone());
                    }
                }
                let is_warren = info.protocol_version == IDENTIFY_PROTOCOL_VERSION;
                if is_warren && !self.known.contains_key(&peer_id) {
                    // Learn its offers (roles, storage) so it can be a placement candidate.
                    let key = kad::RecordKey::new(&warren_protocol::record_key(&peer_id));
                    let id = self.swarm.behaviour_mut().kad.get_record(key);
                    self.pending_records.insert(
                        id,
                        PendingRecord {
                            peer: peer_id,
                            reply: None,
                        },
                    );
                }
                let state = self.peers.entry(peer_id).or_default();
                state.agent = Some(info.agent_version);
                state.protocol_version = Some(info.protocol_version);
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.rtt = Some(rtt);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    if !self.swarm.is_connected(&peer) {
                        let _ = self
                            .swarm
                            .dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
                    }
                }
            }
            BehaviourEvent::Kad(event) => self.on_kad_event(event),
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                let acceptance = match message.source {
                    Some(source) if message.topic == IdentTopic::new(NODES_TOPIC).hash() => {
                        match SignedNodeRecord::decode_verified(
                            &message.data,
                            Some(&source),
                            unix_now(),
                        ) {
                            Ok(record) if record.network != self.records.network() => {
                                debug!(origin = %source, network = %record.network, "ignored a record of another network");
                                MessageAcceptance::Ignore
                            }
                            Ok(record) => {
                                self.known.insert(source, record);
                                MessageAcceptance::Accept
                            }
                            Err(e) => {
                                warn!(peer = %propagation_source, origin = %source, "refused gossiped node record: {e}");
                                MessageAcceptance::Reject
                            }
                        }
                    }
                    Some(source) if message.topic == IdentTopic::new(REPUTATION_TOPIC).hash() => {
                        let now_ms = unix_now().saturating_mul(1000);
                        match SignedObservation::decode_verified(&message.data, now_ms) {
                            Ok(obs)
                                if obs.observer == source
                                    && self.observation_rate.check(&source, now_ms)
                                        == Rate::Limited =>
                            {
                                // Over its allowance: spam from the observer itself is penalised;
                                // a forwarder may just count in a slightly different window.
                                debug!(peer = %propagation_source, origin = %source, "observation over the rate limit");
                                if propagation_source == source {
                                    MessageAcceptance::Reject
                                } else {
                                    MessageAcceptance::Ignore
                                }
                            }
                            Ok(obs) if obs.observer == source => {
                                // Forwarded even when its observer has no standing here: other
                                // peers may trust it.
                                if let Ok(mut rep) = self.reputation.lock() {
                                    rep.observe_second_hand(&obs, now_ms);
                                }
                                MessageAcceptance::Accept
                            }
                            Ok(_) => {
                                warn!(origin = %source, "refused observation signed by someone else");
                                MessageAcceptance::Reject
                            }
                            Err(e) => {
                                warn!(peer = %propagation_source, origin = %source, "refused observation: {e}");
                                MessageAcceptance::Reject
                            }
                        }
                    }
                    _ => MessageAcceptance::Reject,
                };
                if acceptance == MessageAcceptance::Reject {
                    self.note_invalid(propagation_source);
                }
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            BehaviourEvent::Envelope(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) => {
                let now_ms = unix_now_ms();
                let reply = match request {
                    Ok(env) => {
                        service::handle(&env, self.own.as_ref().map(|(b, _)| b.as_slice()), now_ms)
                    }
                    Err(reason) => {
                        warn!(%peer, "refused envelope: {reason}");
                        self.note_invalid(peer);
                        envelope::decode_error_reply(&reason, now_ms)
                    }
                };
                if self
                    .swarm
                    .behaviour_mut()
                    .envelope
                    .send_response(channel, reply)
                    .is_err()
                {
                    debug!(%peer, "envelope reply not sent: the stream closed");
                }
            }
            BehaviourEvent::Blocks(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        self.serve_blocks(peer, request, channel);
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some(reply) = self.pending_blocks.remove(&request_id) {
                            let _ = reply.send(Ok(response));
                        }
                    }
                }
            }
            BehaviourEvent::Blocks(request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            }) => {
                if let Some(reply) = self.pending_blocks.remove(&request_id) {
                    let _ = reply.send(Err(format!("{peer}: {error}")));
                }
            }
            BehaviourEvent::Envelope(request_response::Event::InboundFailure {
                peer,
                error,
                ..
            }) => {
                warn!(%peer, "envelope request failed: {error}");
                self.note_invalid(peer);
            }
            e @ (BehaviourEvent::Autonat(_)
            | BehaviourEvent::Relay(_)
            | BehaviourEvent::RelayClient(_)
            | BehaviourEvent::Dcutr(_)) => self.on_nat_event(e),
            _ => {}
        }
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => {
                self.on_inbound_record(source, record);
            }
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::AddProvider {
                        record: Some(record),
                    },
            } => {
                // Provider records are kept as they come; their keys are content ids, bounded here.
                if record.key.as_ref().len() <= 128
                    && let Err(e) = self
                        .swarm
                        .behaviour_mut()
                        .kad
                        .store_mut()
                        .add_provider(record)
                {
                    debug!("provider record not stored: {e}");
                }
            }
            kad::Event::RoutingUpdated {
                peer,
                is_new_peer: true,
                ..
            } if self.swarm.connected_peers().count() < self.max_peers
                && !self.swarm.is_connected(&peer) =>
            {
                let opts = DialOpts::peer_id(peer)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                let _ = self.swarm.dial(opts);
            }
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => match result {
                QueryResult::PutRecord(res) if Some(id) == self.publish_query => {
                    self.publish_query = None;
                    match res {
                        Ok(_) => {
                            if !self.published_to_network {
                                info!("node record published in the DHT");
                            }
                            self.published_to_network = true;
                        }
                        Err(e) => {
                            debug!("node record not yet stored remotely: {e}");
                            self.published_to_network = false;
                        }
                    }
                }
                QueryResult::GetRecord(res) => self.on_get_record(id, res, step.last),
                QueryResult::GetProviders(res) => {
                    if let Some((found, _)) = self.pending_providers.get_mut(&id)
                        && let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = res
                    {
                        found.extend(providers);
                    }
                    if step.last
                        && let Some((found, reply)) = self.pending_providers.remove(&id)
                    {
                        let _ = reply.send(found.into_iter().collect());
                    }
                }
                QueryResult::Bootstrap(Ok(ok)) => {
                    debug!(remaining = ok.num_remaining, "kad bootstrap step");
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn on_inbound_record(&mut self, source: PeerId, record: kad::Record) {
        let now = unix_now();
        let Some(subject) = warren_protocol::peer_from_record_key(record.key.as_ref()) else {
            warn!(peer = %source, "refused DHT record: key is not in the /warren/node/ namespace");
            self.note_invalid(source);
            return;
        };
        let verified = match SignedNodeRecord::decode_verified(&record.value, Some(&subject), now) {
            Ok(r) => r,
            Err(e) => {
                warn!(peer = %source, subject = %subject, "refused DHT record: {e}");
                self.note_invalid(source);
                return;
            }
        };
        let store = self.swarm.behaviour_mut().kad.store_mut();
        if let Some(existing) = store.get(&record.key) {
            let newer = SignedNodeRecord::decode_verified(&existing.value, Some(&subject), now)
                .map(|old| old.issued_at > verified.issued_at)
                .unwrap_or(false);
            if newer {
                debug!(peer = %source, subject = %subject, "kept the newer record already stored");
                return;
            }
        }
        let ttl = Duration::from_secs(verified.expires_at.saturating_sub(now));
        let mut record = record;
        record.expires = Some(Instant::now() + ttl);
        if let Err(e) = store.put(record) {
            warn!(subject = %subject, "record store full: {e}");
            return;
        }
        self.known.insert(subject, verified);
    }

    fn on_get_record(
        &mut self,
        id: QueryId,
        res: Result<GetRecordOk, kad::GetRecordError>,
        last: bool,
    ) {
        if let Ok(GetRecordOk::FoundRecord(found)) = &res
            && let Some(pending) = self.pending_records.get(&id)
        {
            let subject = pending.peer;
            let from = found
                .peer
                .map(|p| p.to_string())
                .unwrap_or_else(|| "local store".into());
            match SignedNodeRecord::decode_verified(&found.record.value, Some(&subject), unix_now())
            {
                Ok(record) => {
                    let view = RecordView::new(&record, found.record.value.len(), &from);
                    self.known.insert(subject, record);
                    if let Some(pending) = self.pending_records.remove(&id)
                        && let Some(reply) = pending.reply
                    {
                        let _ = reply.send(Ok(view));
                    }
                    if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                        q.finish();
                    }
                    return;
                }
                Err(e) => {
                    warn!(%subject, from = %from, "DHT returned an invalid record: {e}");
                    if let Some(p) = found.peer {
                        self.note_invalid(p);
                    }
                }
            }
        }
        if (last || res.is_err())
            && let Some(pending) = self.pending_records.remove(&id)
            && let Some(reply) = pending.reply
        {
            let _ = reply.send(Err(NodeError::RecordNotFound { peer: pending.peer }));
        }
    }
}

/// Cuts a refusal reason to what a block message may carry.
fn truncate(reason: &str) -> String {
    let max = block_transfer::MAX_REASON_LEN;
    if reason.len() <= max {
        return reason.to_owned();
    }
    let mut end = max;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_dht_store_keeps_a_provider_record_for_every_block_a_full_offer_holds() {
        use libp2p::kad::{ProviderRecord, RecordKey};
        let offer = 4u64 << 30; // 4096 one-MiB blocks: four times libp2p's default limit
        let limit = super::provider_key_limit(offer);
        assert!(limit >= 2 * 4096, "{limit}");
        assert_eq!(super::provider_key_limit(0), super::MIN_PROVIDER_KEYS);
        assert_eq!(
            super::provider_key_limit(u64::MAX),
            super::MAX_PROVIDER_KEYS
        );
        let me = PeerId::random();
        let mut store = super::dht_store(me, super::provider_key_limit(1 << 30));
        for i in 0..5000u32 {
            let key = RecordKey::new(&i.to_be_bytes());
            store
                .add_provider(ProviderRecord::new(key, me, Vec::new()))
                .unwrap_or_else(|e| panic!("provider record {i} refused: {e}"));
        }
        assert_eq!(store.provided().count(), 5000);
        // The bound still holds.
        let mut small = super::dht_store(me, 10);
        for i in 0..10u32 {
            small
                .add_provider(ProviderRecord::new(
                    RecordKey::new(&i.to_be_bytes()),
                    me,
                    vec![],
                ))
                .unwrap();
        }
        let over = ProviderRecord::new(RecordKey::new(&99u32.to_be_bytes()), me, vec![]);
        assert!(small.add_provider(over).is_err());
    }

    use super::*;

    #[test]
    fn network_id_rides_in_the_agent_version() {
        assert_eq!(
            agent_version("local"),
            format!("warren/{VERSION} network/local")
        );
        assert_eq!(network_of_agent(&agent_version("local")), Some("local"));
        // The examples of spec/network.md.
        assert_eq!(
            network_of_agent("warren/0.1.0 network/local"),
            Some("local")
        );
        assert_eq!(network_of_agent("warren/0.1.0"), None);
        assert_eq!(network_of_agent("rust-libp2p/0.57"), None);
        assert_eq!(network_of_agent("other/1 network/local"), None);
    }
}
