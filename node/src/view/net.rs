//! The network views: status, peers, NAT and node records.

use serde::{Deserialize, Serialize};

use super::StorageUsage;
use warren_protocol::{ComputeOffer, NodeRecord, Price, Role, StorageOffer};

/// `GET /v1/status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusInfo {
    /// This node's peer id.
    pub peer_id: String,
    /// warren version.
    pub version: String,
    /// Network id.
    pub network: String,
    /// Full listen multiaddrs, each ending in `/p2p/PEER_ID`.
    pub listen_addrs: Vec<String>,
    /// Addresses others confirmed reaching this node at.
    pub external_addrs: Vec<String>,
    /// Connected peers.
    pub peers: usize,
    /// Peers in the Kademlia routing table.
    pub routing_table: usize,
    /// Kademlia mode (server or client).
    pub kad_mode: String,
    /// Whether this node's record is stored on at least one other peer.
    pub record_published: bool,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// The local block store (filled by the API from the store, not by the network loop).
    #[serde(default)]
    pub storage: Option<StorageUsage>,
    /// Estimated number of peers in the DHT, from the density of this node's routing table.
    #[serde(default)]
    pub dht_size_estimate: u64,
    /// Reachability: AutoNAT, relays, hole punching, peers refused for another network id.
    #[serde(default)]
    pub nat: Option<NatView>,
}

/// Reachability of a node, in `GET /v1/status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NatView {
    /// AutoNAT's verdict: unknown, public or private.
    pub status: String,
    /// Relays this node listens through.
    pub relayed_via: Vec<String>,
    /// Relays that accepted a reservation.
    pub reservations: Vec<String>,
    /// Relayed connections upgraded to direct ones by hole punching (DCUtR).
    pub hole_punches_ok: u64,
    /// Hole punches that failed (the relayed connection stays).
    pub hole_punches_failed: u64,
    /// Peers refused because they are on another network.
    pub network_refusals: u64,
    /// The last such refusal, as logged.
    pub last_network_refusal: Option<String>,
}

/// One entry of `GET /v1/peers`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer.
    pub peer_id: String,
    /// Addresses of the connections to it.
    pub addrs: Vec<String>,
    /// Its identify agent version.
    pub agent: Option<String>,
    /// Its identify protocol version.
    pub protocol_version: Option<String>,
    /// Last ping round trip, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Seconds since the first connection.
    pub connected_secs: u64,
    /// Roles from its verified node record, when known.
    pub roles: Vec<Role>,
    /// Messages from it that were refused (bad records, malformed envelopes).
    pub invalid_messages: u32,
}

/// A verified node record, as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordView {
    /// Always true: only verified records are ever shown.
    pub verified: bool,
    /// Where it came from: a peer id, "local store" or "local".
    pub source: String,
    /// Encoded size of the signed record.
    pub size_bytes: usize,
    /// Record format version.
    pub version: u16,
    /// Network id.
    pub network: String,
    /// The peer the record describes.
    pub peer_id: String,
    /// Roles offered.
    pub roles: Vec<Role>,
    /// Onion static X25519 public key, hex.
    pub onion_key: String,
    /// Storage offer.
    pub storage: Option<StorageOffer>,
    /// Compute offer.
    pub compute: Option<ComputeOffer>,
    /// Prices.
    pub price: Price,
    /// Load, per mille.
    pub load_permille: u16,
    /// Advertised addresses.
    pub addrs: Vec<String>,
    /// Issued at (Unix seconds).
    pub issued_at: u64,
    /// Expires at (Unix seconds).
    pub expires_at: u64,
}

impl RecordView {
    /// The view of a record that has been verified.
    pub fn new(r: &NodeRecord, size_bytes: usize, source: &str) -> Self {
        Self {
            verified: true,
            source: source.to_owned(),
            size_bytes,
            version: r.version,
            network: r.network.clone(),
            peer_id: r.peer_id.to_string(),
            roles: r.roles.clone(),
            onion_key: hex::encode(r.onion_key),
            storage: r.storage.clone(),
            compute: r.compute.clone(),
            price: r.price.clone(),
            load_permille: r.load_permille,
            addrs: r.addrs.iter().map(|a| a.to_string()).collect(),
            issued_at: r.issued_at,
            expires_at: r.expires_at,
        }
    }
}
