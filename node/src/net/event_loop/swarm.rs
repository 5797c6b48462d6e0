//! Swarm and behaviour events: connections, identify, ping, mdns, gossip, envelopes, blocks.

use std::time::Instant;

use libp2p::gossipsub::{self, MessageAcceptance};
use libp2p::kad::{self};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{PeerId, identify, mdns, ping};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use warren_protocol::block_transfer::{self};
use warren_protocol::gossip::{Acceptance, Payload, Verdict};

use crate::addr::{ip_of, is_loopback, is_unspecified, split_peer_addr};
use crate::clock::{unix_now, unix_now_ms};
use crate::error::NodeError;
use crate::net::behaviour::BehaviourEvent;
use crate::net::event_loop::{EventLoop, InboundBlocks, PendingRecord};
use crate::net::peer_limit::{Limits, refuse_ip};
use crate::net::peers::PeerEvent;
use crate::net::protocols::{blocks, envelope, envelope_service as service};
use crate::net::{IDENTIFY_PROTOCOL_VERSION, KAD_PROTOCOL};

impl EventLoop {
    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
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
                {
                    self.tell_reputation(PeerEvent::Network {
                        peer: peer_id,
                        prefix,
                    });
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
                } else if endpoint.is_listener()
                    && let Some(ip) = ip_of(endpoint.get_remote_address())
                {
                    let from_ip = self
                        .peers
                        .values()
                        .filter(|s| s.addrs.iter().any(|a| ip_of(a) == Some(ip)))
                        .count();
                    if refuse_ip(ip, from_ip) {
                        debug!(peer = %peer_id, %ip, from_ip, "too many peers from one address, closing");
                        self.swarm.close_connection(connection_id);
                    }
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
                    let _ = reply.send(Err(NodeError::Dial {
                        target: who,
                        reason: error.to_string(),
                    }));
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(peer = ?peer_id, "dial failed: {error}");
                if let Some(peer) = peer_id
                    && !self.swarm.is_connected(&peer)
                {
                    for reply in self.waiting_dials.remove(&peer).unwrap_or_default() {
                        let _ = reply.send(Err(NodeError::Dial {
                            target: peer.to_string(),
                            reason: error.to_string(),
                        }));
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

    pub(super) fn on_behaviour_event(&mut self, event: BehaviourEvent) {
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
                if is_warren
                    && !self.known.contains(&peer_id)
                    && self.record_lookups.allow(peer_id, Instant::now())
                {
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
                let now_ms = unix_now().saturating_mul(1000);
                let scores = self.scores.borrow().clone();
                let seeds = &self.nat.bootstrap;
                let verdict = self.gossip.check_with_standing(
                    message.topic.as_str(),
                    message.source.as_ref(),
                    &propagation_source,
                    &message.data,
                    now_ms,
                    |p| {
                        scores.has_standing(p)
                            || seeds
                                .iter()
                                .any(|a| split_peer_addr(a).is_some_and(|(s, _)| s == *p))
                    },
                );
                match &verdict {
                    Verdict::Accept(Payload::Record(record)) => {
                        self.remember_record((**record).clone());
                    }
                    Verdict::Accept(Payload::Observation(obs)) => {
                        // Its observer has standing here (or is a bootstrap peer, a seed of the
                        // trust walk); others are ignored, never forwarded.
                        self.tell_reputation(PeerEvent::Observation((**obs).clone()));
                    }
                    Verdict::Accept(Payload::Fraud(proof)) => {
                        if let Some(tx) = &self.fraud_proofs
                            && tx.try_send((**proof).clone()).is_err()
                        {
                            debug!("credit fraud proof dropped: the queue is full");
                        }
                    }
                    Verdict::Ignore(_) => {
                        debug!(peer = %propagation_source, origin = ?message.source, "gossip ignored: {verdict}");
                    }
                    Verdict::Reject(_) => {
                        warn!(peer = %propagation_source, origin = ?message.source, "gossip refused: {verdict}");
                    }
                }
                let acceptance = match verdict.acceptance() {
                    Acceptance::Accept => MessageAcceptance::Accept,
                    Acceptance::Ignore => MessageAcceptance::Ignore,
                    Acceptance::Reject => MessageAcceptance::Reject,
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
                        self.hand_over_blocks(peer, request, channel);
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
                peer: _,
                request_id,
                error,
                ..
            }) => {
                if let Some(reply) = self.pending_blocks.remove(&request_id) {
                    let _ = reply.send(Err(error));
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

    /// Hands an inbound block request to the storage service, or answers at once when none takes
    /// them or its queue is full.
    pub(super) fn hand_over_blocks(
        &mut self,
        peer: PeerId,
        request: blocks::Encoded,
        channel: request_response::ResponseChannel<blocks::Encoded>,
    ) {
        let inbound = InboundBlocks {
            peer,
            request,
            channel,
        };
        let refused = match &self.block_requests {
            Some(tx) => match tx.try_send(inbound) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(i)) => {
                    (i, "busy: too many block requests queued")
                }
                Err(mpsc::error::TrySendError::Closed(i)) => (i, "this node does not serve blocks"),
            },
            None => (inbound, "this node does not serve blocks"),
        };
        let (inbound, reason) = refused;
        debug!(%peer, "block request refused: {reason}");
        let answer = block_transfer::Response::Failed {
            reason: reason.to_owned(),
        }
        .encode()
        .unwrap_or_default();
        if self
            .swarm
            .behaviour_mut()
            .blocks
            .send_response(inbound.channel, answer)
            .is_err()
        {
            debug!(%peer, "block answer not sent: the stream closed");
        }
    }
}
