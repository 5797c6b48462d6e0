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
//! in `warren-protocol` (decode, verify) and by the envelope service ([`protocols::envelope_service`]); inbound block requests leave the loop
//! for the storage service ([`InboundBlocks`]). Commands carry a oneshot that
//! the loop answers; queries are keyed by their kad `QueryId`.

pub(crate) mod behaviour;
mod build;
pub mod client;
pub mod dht;
pub mod event_loop;
pub mod gossip;
pub mod peer_limit;
pub mod peers;
pub mod protocols;

use libp2p::StreamProtocol;

pub use build::{Transport, build, build_on};
pub use client::{BlockError, Client};
pub use event_loop::nat::{agent_version, network_of_agent};
pub use event_loop::{EventLoop, InboundBlocks};
pub use peers::{PeerEvent, PeerScore, PeerScores};

/// The Kademlia protocol name: warren's own DHT, so the public IPFS DHT is never joined by mistake.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/warren/kad/1.0.0");
/// The identify protocol version warren nodes announce.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/warren/1.0.0";
/// The gossipsub topic on which nodes announce their signed records.
pub const NODES_TOPIC: &str = warren_protocol::gossip::NODES_TOPIC;
/// The version string of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
