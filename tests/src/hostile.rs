//! A hostile peer for adversarial tests, built from warren's own libp2p stack.
//!
//! [`Hostile::start`] runs a real warren node in the test's process (same transport, Noise, Yamux,
//! identify, Kademlia and gossipsub as every other node) and hands out its [`Client`], with which a
//! test sends whatever an attacker would: any `/warren/blocks/2.0.0` request to any peer, gossip
//! messages, provider announcements, dials. The attack itself is written in the test (or in a
//! module beside this one when several tests share it), so that it runs unchanged against the
//! node binary of an older commit: point `WARREN_TEST_NODE_BIN` at it ([`node_bin`]).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use libp2p::Multiaddr;
use warren_node::config::{Config, KadMode};
use warren_node::net::Client;
use warren_node::node::{Node, NodeBuilder};
use warren_protocol::{Keypair, PeerId};

/// The `warren` binary the e2e tests run as the nodes under attack: `WARREN_TEST_NODE_BIN` when
/// set (e.g. a build of an older commit, to show that an attack succeeds there), else `default`
/// (the test's own `env!("CARGO_BIN_EXE_warren-e2e-node")`).
pub fn node_bin(default: &'static str) -> String {
    std::env::var("WARREN_TEST_NODE_BIN").unwrap_or_else(|_| default.to_owned())
}

/// A hostile node running in this process.
pub struct Hostile {
    /// The node (its store, mesh and services run as on any honest node).
    pub node: Node,
}

impl Hostile {
    /// Starts a node on `dir` listening on loopback, on the network id `network`, offering
    /// `offer_bytes` of storage, dialling `bootstrap` (full multiaddrs ending in `/p2p/ID`).
    /// `tweak` may change anything else in the configuration before the node starts.
    pub async fn start(
        dir: &Path,
        network: &str,
        bootstrap: Vec<Multiaddr>,
        offer_bytes: u64,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        Self::start_with_key(
            dir,
            network,
            bootstrap,
            offer_bytes,
            Keypair::generate_ed25519(),
            tweak,
        )
        .await
    }

    /// [`Hostile::start`] with the identity `key` (which the caller keeps, e.g. to sign what the
    /// node publishes).
    pub async fn start_with_key(
        dir: &Path,
        network: &str,
        bootstrap: Vec<Multiaddr>,
        offer_bytes: u64,
        key: Keypair,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let mut config = Config {
            network: network.to_owned(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
            bootstrap,
            kad_mode: KadMode::Server,
            ..Config::default()
        };
        config.storage.offer_bytes = offer_bytes;
        tweak(&mut config);
        let node = NodeBuilder::new(config)
            .data_dir(dir)
            .identity(key)
            .without_inference()
            .start()
            .await
            .context("starting the hostile node")?;
        Ok(Self { node })
    }

    /// The swarm's command handle: the attacker's hands.
    pub fn client(&self) -> &Client {
        &self.node.client
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.node.peer_id
    }

    /// Dials `addr` and waits up to `timeout` for the connection.
    pub async fn connect(&self, addr: Multiaddr, timeout: Duration) -> anyhow::Result<PeerId> {
        let (peer, _) = tokio::time::timeout(timeout, self.node.client.dial(addr))
            .await
            .context("dial timed out")??;
        Ok(peer)
    }

    /// Stops the node.
    pub async fn stop(self) {
        self.node.stop().await;
    }
}
