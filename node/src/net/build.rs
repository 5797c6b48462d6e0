//! Building a swarm and its event loop on a transport.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use libp2p::gossipsub::IdentTopic;
use libp2p::identity::Keypair;
use libp2p::kad::Mode;
use libp2p::{Multiaddr, PeerId, noise, tcp, yamux};
use tokio::sync::mpsc;
use tracing::warn;
use warren_protocol::REPUTATION_TOPIC;
use warren_protocol::record_book::RecordBook;

use crate::addr::split_peer_addr;
use crate::config::{Config, KadMode};
use crate::error::NodeError;
use crate::net::NODES_TOPIC;
use crate::net::behaviour::{behaviour, provider_key_limit, swarm_config};
use crate::net::client::{COMMAND_QUEUE, Client};
use crate::net::event_loop::EventLoop;
use crate::net::event_loop::nat::NatState;
use crate::net::peers::PeerScores;
use crate::record::RecordBuilder;

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
) -> Result<(Client, EventLoop), NodeError> {
    build_on(Transport::Network, config, key, records)
}

/// Builds the swarm and its event loop on `transport`; nothing runs until [`EventLoop::run`].
pub fn build_on(
    transport: Transport,
    config: &Config,
    key: Keypair,
    records: RecordBuilder,
) -> Result<(Client, EventLoop), NodeError> {
    let net = |e: &dyn std::fmt::Display| NodeError::Network(e.to_string());
    let local = key.public().to_peer_id();
    let mdns_on = config.mdns && transport == Transport::Network;
    let network = config.network.clone();
    let relay_server = config.nat.relay_server;
    let provider_keys = provider_key_limit(config.storage.offer_bytes);
    let max_peers = config.max_peers;
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
                    max_peers,
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
                behaviour(
                    key,
                    mdns_on,
                    &network,
                    relay_server,
                    None,
                    provider_keys,
                    max_peers,
                )
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
        .and_then(|_| {
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&IdentTopic::new(warren_protocol::credits::FRAUD_TOPIC))
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
        block_requests: None,
        peer_events: None,
        fraud_proofs: None,
        scores: tokio::sync::watch::channel(Arc::new(PeerScores::default())).1,
        gossip: warren_protocol::gossip::Filter::new(config.network.clone()),
        pending_blocks: HashMap::new(),
        pending_providers: HashMap::new(),
        records,
        max_peers: config.max_peers,
        listeners_expected: config.listen.len(),
        listeners_ready: 0,
        ready: None,
        peers: HashMap::new(),
        closed_at: HashMap::new(),
        known: RecordBook::default(),
        pending_records: HashMap::new(),
        pending_names: HashMap::new(),
        pending_name_puts: HashMap::new(),
        record_lookups: Default::default(),
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
