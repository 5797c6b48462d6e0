//! The libp2p swarm and the event loop that owns it.
//!
//! ```text
//!  node ──► EventLoop::run ──owns──► Swarm<Behaviour>
//!              ▲   │                    ├─ kad        /warren/kad/1.0.0 (records validated before storing)
//!   Client ────┘   │ replies (oneshot)  ├─ identify   /ipfs/id/1.0.0 (feeds kad's routing table)
//!   (bounded mpsc  ▼                    ├─ ping       /ipfs/ping/1.0.0
//!    of Command)  services              ├─ gossipsub  warren/nodes/1 (signed node records)
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
//! The loop only moves bytes. Every decision is pure code: records and observations are
//! verified and accepted by `warren-protocol` (`gossip::Filter`, `record_book`), envelopes are
//! answered by [`protocols::envelope_service`]. What belongs to a service leaves the loop on a
//! bounded channel: inbound block requests ([`InboundBlocks`]) to the storage service, accepted
//! observations and connection prefixes ([`PeerEvent`]) to the reputation service, which sends
//! [`PeerScores`] back on a watch channel. Commands from a [`Client`] carry a oneshot that the loop
//! answers; queries are keyed by their kad `QueryId`.
//!
//! | module | holds |
//! |---|---|
//! | [`client`] | the cloneable [`Client`], its bounded commands, the typed [`BlockError`] |
//! | `build` | [`build`] / [`build_on`]: the swarm on TCP+QUIC or the memory transport |
//! | `behaviour` | every behaviour of the swarm, the DHT store and its provider-key bound |
//! | `dht_store` | kad's store: records, and the bounded provider table (per peer, per /16, own keys reserved) |
//! | [`event_loop`] | the loop: commands, swarm events, records, NAT |
//! | [`peers`], [`peer_limit`], [`gossip`], [`dht`] | peer facts and scores, connection limits, gossipsub scoring, DHT size |
//! | [`protocols`] | `/warren/blocks/2.0.0` and `/warren/envelope/1.0.0` codecs |

pub(crate) mod behaviour;
mod build;
pub mod client;
pub mod dht;
pub(crate) mod dht_store;
pub mod event_loop;
pub mod gossip;
pub mod peer_limit;
pub mod peers;
pub mod protocols;

use libp2p::StreamProtocol;

pub use build::{Transport, build, build_on};
pub use client::{BlockError, Client};
pub use event_loop::names::NameAnswer;
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
