//! The behaviours of a warren swarm, the DHT store and its provider-key bound.

use std::time::Duration;

use libp2p::gossipsub::{self, MessageAuthenticity};
use libp2p::identity::Keypair;
use libp2p::kad::{self};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    PeerId, autonat, connection_limits, dcutr, identify, mdns, memory_connection_limits, ping,
    relay,
};
use warren_protocol::REPUTATION_TOPIC;

use crate::net::dht_store::DhtStore;
use crate::net::event_loop::nat::agent_version;
use crate::net::peer_limit::{Limits, MAX_CONNECTIONS_PER_PEER, MAX_PENDING_INBOUND};
use crate::net::protocols::{blocks, envelope};
use crate::net::{IDENTIFY_PROTOCOL_VERSION, KAD_PROTOCOL, NODES_TOPIC, gossip};

/// All behaviours of a warren node.

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Connections per peer, pending inbound, established inbound (`peer_limit`).
    pub(crate) limits: connection_limits::Behaviour,
    /// No new connections while the process uses more than `MAX_MEMORY_SHARE` of the machine's
    /// memory.
    pub(crate) memory: memory_connection_limits::Behaviour,
    pub(crate) kad: kad::Behaviour<DhtStore>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) envelope: request_response::Behaviour<envelope::Codec>,
    pub(crate) blocks: request_response::Behaviour<blocks::Codec>,
    /// Raw streams: one per onion circuit hop (`/warren/onion/1.0.0`), and inference jobs
    /// (`/warren/inference/1.0.0`), which stream results.
    pub(crate) stream: libp2p_stream::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) autonat: autonat::Behaviour,
    pub(crate) relay: Toggle<relay::Behaviour>,
    pub(crate) relay_client: Toggle<relay::client::Behaviour>,
    pub(crate) dcutr: dcutr::Behaviour,
}

/// Share of the machine's physical memory the node's process may use before it refuses new
/// connections (libp2p's `memory_connection_limits`).
const MAX_MEMORY_SHARE: f64 = 0.75;

/// Fewest provider keys the DHT store keeps (libp2p's default, 1024, is one GiB of blocks).
const MIN_PROVIDER_KEYS: usize = 65_536;
/// Most provider keys the DHT store keeps (a few hundred bytes each in memory).
const MAX_PROVIDER_KEYS: usize = 4 << 20;

/// How many distinct blocks the DHT store keeps provider records for, this node's own and those
/// other peers stored here: room for twice the blocks that fit in the storage offer, so a full
/// holder can announce every block it holds and still keep its share of everyone else's.
pub(crate) fn provider_key_limit(offer_bytes: u64) -> usize {
    let blocks = offer_bytes / warren_protocol::CHUNK_SIZE as u64;
    usize::try_from(blocks.saturating_mul(2))
        .unwrap_or(MAX_PROVIDER_KEYS)
        .clamp(MIN_PROVIDER_KEYS, MAX_PROVIDER_KEYS)
}

/// The DHT's record and provider store (bounded provider table: `dht_store`).
pub(super) fn dht_store(local: PeerId, provider_keys: usize) -> DhtStore {
    DhtStore::new(local, provider_keys)
}

/// All behaviours of a node with identity `key`.
pub(super) fn behaviour(
    key: &Keypair,
    mdns_on: bool,
    network: &str,
    relay_server: bool,
    relay_client: Option<relay::client::Behaviour>,
    provider_keys: usize,
    max_peers: usize,
) -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
    let local = key.public().to_peer_id();
    let mut kad_cfg = kad::Config::new(KAD_PROTOCOL);
    kad_cfg
        .set_record_filtering(kad::StoreInserts::FilterBoth)
        .disjoint_query_paths(true)
        .set_query_timeout(Duration::from_secs(20))
        // The storage mesh's sweep renews this node's provider records, spread over its recheck
        // period within the background DHT budget; kad's own job would republish every record at
        // once every 12 h (a burst growing with the blocks held).
        .set_provider_publication_interval(None);
    let store = dht_store(local, provider_keys);
    let mut gossipsub = gossipsub::Behaviour::new(
        MessageAuthenticity::Signed(key.clone()),
        gossip::config(2 * warren_protocol::MAX_RECORD_SIZE)?,
    )?;
    let (params, thresholds) = gossip::score_params(&[
        NODES_TOPIC,
        REPUTATION_TOPIC,
        warren_protocol::credits::FRAUD_TOPIC,
    ]);
    gossipsub.with_peer_score(params, thresholds)?;
    let mdns = if mdns_on {
        Some(mdns::tokio::Behaviour::new(mdns::Config::default(), local)?)
    } else {
        None
    };
    let hard_cap = u32::try_from(Limits::new(max_peers).hard_cap).unwrap_or(u32::MAX);
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
        .with_max_pending_incoming(Some(MAX_PENDING_INBOUND))
        .with_max_established_incoming(Some(hard_cap));
    Ok(Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        memory: memory_connection_limits::Behaviour::with_max_percentage(MAX_MEMORY_SHARE),
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
pub(super) fn swarm_config(c: libp2p::swarm::Config) -> libp2p::swarm::Config {
    c.with_idle_connection_timeout(Duration::from_secs(24 * 3600))
}

#[cfg(test)]
mod tests {
    use crate::net::{VERSION, network_of_agent};
    use libp2p::kad::store::RecordStore;

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

    #[test]
    fn a_remote_junk_flood_never_crowds_out_own_provider_records() {
        use libp2p::kad::{ProviderRecord, RecordKey};
        use warren_protocol::provider_table::Standing;
        let me = PeerId::random();
        let junk = PeerId::random();
        let limit = super::provider_key_limit(0);
        let mut store = super::dht_store(me, limit);
        let addrs: Vec<libp2p::Multiaddr> = (0..64u16)
            .map(|i| format!("/ip4/10.0.0.1/tcp/{i}").parse().unwrap())
            .collect();
        let mut kept = 0;
        for i in 0..(limit as u32 + 1000) {
            let key = RecordKey::new(&i.to_be_bytes());
            let mut r = ProviderRecord::new(key, junk, addrs.clone());
            r.expires = Some(std::time::Instant::now() + std::time::Duration::from_secs(3600));
            if store
                .add_remote_provider(r, Some([10, 0]), Standing::Unknown)
                .is_ok()
            {
                kept += 1;
            }
        }
        assert_eq!(store.provider_counts(&junk), (kept, kept));
        assert!(kept <= limit / 16, "{kept}");
        let kept_addrs = store.providers(&RecordKey::new(&0u32.to_be_bytes()));
        assert_eq!(kept_addrs[0].addresses.len(), 8);
        for i in 0..limit as u32 {
            let key = RecordKey::new(&(u32::MAX - i).to_be_bytes());
            store
                .add_provider(ProviderRecord::new(key, me, vec![]))
                .unwrap_or_else(|e| panic!("own key {i} refused: {e}"));
        }
        assert_eq!(store.provided().count(), limit);
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
