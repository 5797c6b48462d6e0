//! NAT traversal and network-id checks of the event loop: AutoNAT verdicts, circuit relay v2
//! reservations (listening through relays once connected to them), DCUtR results, the network id
//! carried in identify, and the counters of served blocks.
//!
//! A child of [`super`] so it can drive the loop's swarm; the behaviours themselves are built in
//! [`super::build_on`].

use std::collections::{HashMap, HashSet};

use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, autonat, dcutr, relay};
use tracing::{debug, info, warn};

use super::EventLoop;
use crate::addr::split_peer_addr;
use crate::net::VERSION;
use crate::net::behaviour::BehaviourEvent;

/// The identify agent version: the build and the network id.
pub fn agent_version(network: &str) -> String {
    format!("warren/{VERSION} network/{network}")
}

/// The network id in a warren peer's agent version, if it says one.
pub fn network_of_agent(agent: &str) -> Option<&str> {
    agent
        .strip_prefix("warren/")?
        .split_whitespace()
        .find_map(|w| w.strip_prefix("network/"))
}

pub(super) fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

/// What the loop knows about its own reachability.
#[derive(Debug, Default)]
pub(crate) struct NatState {
    /// AutoNAT's verdict: unknown, public or private.
    pub(crate) status: String,
    pub(crate) auto_relay: bool,
    pub(crate) bootstrap: Vec<Multiaddr>,
    /// Relays to listen through (configured, or bootstrap peers once AutoNAT says private).
    pub(crate) relays: Vec<(PeerId, Multiaddr)>,
    /// Relay listeners open, by listener.
    pub(crate) relay_listeners: HashMap<libp2p::core::transport::ListenerId, PeerId>,
    /// Relays this node listens through.
    pub(crate) relayed_via: HashSet<PeerId>,
    /// Relays that accepted a reservation.
    pub(crate) reservations: HashSet<PeerId>,
    pub(crate) hole_punches_ok: u64,
    pub(crate) hole_punches_failed: u64,
    /// Peers refused for being on another network.
    pub(crate) network_refusals: u64,
    pub(crate) last_network_refusal: Option<String>,
    /// Kademlia's mode is left to libp2p (config `auto` on a non-loopback node).
    pub(crate) kad_auto: bool,
    /// Peers refused for being on another network: kept out of the routing table and never
    /// dialled from it (they may still dial in, and are judged again by their identify).
    pub(crate) refused: HashSet<PeerId>,
    /// Refused peers still connected, and when they were refused: closed a moment later, so
    /// their own identify of this node completes and they log the refusal too.
    pub(crate) closing: Vec<(PeerId, std::time::Instant)>,
}

/// How long a refused peer stays connected: enough for its identify exchange to finish.
const CLOSE_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// Refused peers remembered, at most; the set starts over when full.
const REFUSED_KEPT: usize = 1024;

impl EventLoop {
    /// Keeps a node that is reachable only through relays a DHT client: relayed circuits are
    /// short and small, no place to answer other peers' DHT queries. Once a direct external
    /// address is confirmed, libp2p decides again (server).
    pub(super) fn on_external_addrs_changed(&mut self) {
        if !self.nat.kad_auto {
            return;
        }
        let external: Vec<&Multiaddr> = self.swarm.external_addresses().collect();
        let relayed_only = !external.is_empty() && external.iter().all(|a| is_relayed(a));
        let mode = relayed_only.then_some(libp2p::kad::Mode::Client);
        self.swarm.behaviour_mut().kad.set_mode(mode);
        if relayed_only {
            debug!("reachable only through relays: staying a DHT client");
        }
    }

    pub(super) fn record_metrics(&self, event: &BehaviourEvent) {
        let Some(m) = &self.metrics else { return };
        match event {
            BehaviourEvent::Kad(e) => m.record(e),
            BehaviourEvent::Identify(e) => m.record(e),
            BehaviourEvent::Ping(e) => m.record(e),
            BehaviourEvent::Gossipsub(e) => m.record(e),
            BehaviourEvent::Relay(e) => m.record(e),
            BehaviourEvent::Dcutr(e) => m.record(e),
            _ => {}
        }
    }

    /// Refuses a peer whose identify says it is on another network; true if refused.
    pub(super) fn refuse_other_network(&mut self, peer: PeerId, agent: &str) -> bool {
        let ours = self.records.network();
        let Some(theirs) = network_of_agent(agent) else {
            return false;
        };
        if theirs == ours {
            // Moved to this network since it was refused, perhaps: welcome again.
            self.nat.refused.remove(&peer);
            return false;
        }
        if self.nat.closing.iter().any(|(p, _)| *p == peer) {
            // Refused already (a second identify, e.g. a push); its connection closes soon.
            return true;
        }
        let message = format!(
            "refusing peer {peer}: it is on network {theirs:?}, this node is on network {ours:?}"
        );
        warn!("{message}");
        self.nat.network_refusals += 1;
        self.nat.last_network_refusal = Some(message);
        if self.nat.refused.len() >= REFUSED_KEPT {
            self.nat.refused.clear();
        }
        self.nat.refused.insert(peer);
        self.swarm.behaviour_mut().kad.remove_peer(&peer);
        self.known.remove(&peer);
        self.nat.closing.push((peer, std::time::Instant::now()));
        true
    }

    /// Closes the connections of peers refused at least [`CLOSE_AFTER`] ago (run every tick).
    pub(super) fn close_refused(&mut self) {
        let now = std::time::Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self
            .nat
            .closing
            .drain(..)
            .partition(|(_, at)| now.duration_since(*at) >= CLOSE_AFTER);
        self.nat.closing = later;
        for (peer, _) in due {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Listens through every relay this node is connected to and not yet listening through;
    /// dials the others.
    pub(super) fn listen_via_relays(&mut self) {
        for (relay, addr) in self.nat.relays.clone() {
            if self.nat.relayed_via.contains(&relay) {
                continue;
            }
            if self.swarm.is_connected(&relay) {
                let circuit = addr.with(Protocol::P2pCircuit);
                match self.swarm.listen_on(circuit.clone()) {
                    Ok(id) => {
                        debug!(%circuit, "asking the relay for a reservation");
                        self.nat.relayed_via.insert(relay);
                        self.nat.relay_listeners.insert(id, relay);
                    }
                    Err(e) => warn!(%circuit, "cannot listen through the relay: {e}"),
                }
            } else {
                let opts = DialOpts::peer_id(relay)
                    .addresses(vec![addr])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                let _ = self.swarm.dial(opts);
            }
        }
    }

    /// AutoNAT, relay and hole-punching events.
    pub(super) fn on_nat_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { old, new }) => {
                info!(?old, ?new, "AutoNAT: reachability changed");
                self.nat.status = match &new {
                    autonat::NatStatus::Public(_) => "public",
                    autonat::NatStatus::Private => "private",
                    autonat::NatStatus::Unknown => "unknown",
                }
                .into();
                if new == autonat::NatStatus::Private && self.nat.auto_relay {
                    for addr in self.nat.bootstrap.clone() {
                        if let Some((relay, _)) = split_peer_addr(&addr)
                            && !self.nat.relays.iter().any(|(p, _)| *p == relay)
                        {
                            info!(%relay, "not reachable directly: will listen through a relay");
                            self.nat.relays.push((relay, addr));
                        }
                    }
                    self.listen_via_relays();
                }
            }
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            }) => {
                if !renewal {
                    info!(relay = %relay_peer_id, "relay reservation accepted: reachable through it");
                }
                self.nat.reservations.insert(relay_peer_id);
            }
            BehaviourEvent::RelayClient(relay::client::Event::InboundCircuitEstablished {
                src_peer_id,
                ..
            }) => {
                info!(peer = %src_peer_id, "inbound connection through a relay");
            }
            BehaviourEvent::RelayClient(relay::client::Event::OutboundCircuitEstablished {
                relay_peer_id,
                ..
            }) => {
                info!(relay = %relay_peer_id, "outbound connection through a relay");
            }
            BehaviourEvent::Relay(relay::Event::ReservationReqAccepted { src_peer_id, .. }) => {
                debug!(peer = %src_peer_id, "serving a relay reservation");
            }
            BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => match result {
                Ok(_) => {
                    self.nat.hole_punches_ok += 1;
                    info!(peer = %remote_peer_id, "hole punch succeeded: direct connection");
                }
                Err(e) => {
                    self.nat.hole_punches_failed += 1;
                    warn!(peer = %remote_peer_id, "hole punch failed: {e}");
                }
            },
            _ => {}
        }
    }
}
