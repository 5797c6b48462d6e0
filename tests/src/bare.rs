//! A bare warren swarm in the caller's process: the network layer of a node (transport, Noise,
//! Yamux, Kademlia, gossipsub, identify, its signed node record) without the node's services, so
//! that the caller answers its `/warren/blocks/2.0.0` requests itself: a hostile holder that
//! answers audits as it likes (issue 19, attack 1). Shared by `tests/hostile_audit.rs` and the
//! soak's outsourcer.

use std::time::Duration;

use anyhow::Context;
use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use tokio::sync::{mpsc, watch};
use warren_inference::hardware::Hardware;
use warren_node::config::{Config, KadMode};
use warren_node::net::{self, Client, InboundBlocks};
use warren_node::record::RecordBuilder;
use warren_protocol::PeerId;
use warren_protocol::block_transfer::Response;

/// A running bare swarm; it stops when dropped.
pub struct Bare {
    /// Its command handle.
    pub client: Client,
    /// Its peer id.
    pub peer: PeerId,
    /// The block requests it receives (taken by the caller).
    pub requests: Option<mpsc::Receiver<InboundBlocks>>,
    _stop: watch::Sender<bool>,
}

impl Bare {
    /// Starts a swarm on loopback on `network`, whose node record offers `offer_bytes` of storage
    /// (0: none), bootstrapped from `bootstrap`.
    pub async fn start(
        network: &str,
        offer_bytes: u64,
        bootstrap: Vec<Multiaddr>,
    ) -> anyhow::Result<Self> {
        let mut config = Config {
            network: network.into(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
            bootstrap,
            kad_mode: KadMode::Server,
            ..Config::default()
        };
        config.storage.offer_bytes = offer_bytes;
        let key = Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        let hardware = Hardware {
            cpu_cores: 1,
            ram_bytes: 1 << 30,
            gpus: Vec::new(),
        };
        let records = RecordBuilder::new(&config, key.clone(), [7; 32], &hardware);
        let (client, mut event_loop) = net::build(&config, key, records)?;
        let requests = event_loop.block_requests(64);
        let ready = event_loop.on_ready();
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(event_loop.run(stop_rx));
        tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .context("the swarm did not come up in 30 s")??;
        Ok(Self {
            client,
            peer,
            requests: Some(requests),
            _stop: stop,
        })
    }
}

/// Answers one inbound block request with `response` (encoded), from a blocking thread.
pub fn respond(
    client: &Client,
    peer: PeerId,
    channel: libp2p::request_response::ResponseChannel<Vec<u8>>,
    response: &Response,
) {
    let client = client.clone();
    let Ok(encoded) = response.encode() else {
        return;
    };
    tokio::task::spawn_blocking(move || {
        client.respond_blocks_blocking(peer, channel, encoded, None, false);
    });
}
