//! Commands from the [`Client`](crate::net::Client) and the views they answer.

use std::collections::HashSet;

use libp2p::gossipsub::IdentTopic;
use libp2p::kad::{self};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use tracing::debug;
use warren_protocol::block_transfer::provider_key;
use warren_protocol::onion::path::Candidate as OnionCandidate;
use warren_protocol::{Role, SignedNodeRecord};
use warren_storage_mesh::placement::Candidate;

use crate::addr::{ip_of, split_peer_addr};
use crate::clock::unix_now;
use crate::error::NodeError;
use crate::net::VERSION;
use crate::net::client::Command;
use crate::net::event_loop::{EventLoop, PendingRecord};
use crate::view::{NatView, PeerInfo, RecordView, StatusInfo};

impl EventLoop {
    pub(super) fn on_command(&mut self, command: Command) {
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
            Command::PutName { name, bytes, reply } => self.put_name(name, bytes, reply),
            Command::GetName { name, reply } => self.get_name(name, reply),
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
            Command::Unprovide { blocks } => {
                for block in blocks {
                    let key = kad::RecordKey::new(&provider_key(&block.hash()));
                    self.swarm.behaviour_mut().kad.stop_providing(&key);
                }
            }
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
                        let _ = reply.send(Err(NodeError::Dial {
                            target: addr.to_string(),
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::OnionCandidates { reply } => {
                let scores = self.scores.borrow().clone();
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
                        ip: self.group_ip(peer, &record.addrs),
                        score: scores.weight(peer),
                    })
                    .collect();
                let _ = reply.send((*self.swarm.local_peer_id(), candidates));
            }
            Command::KnownRecords { peers, reply } => {
                let records = peers
                    .iter()
                    .filter_map(|p| self.known.get(p).cloned())
                    .collect();
                let _ = reply.send(records);
            }
            Command::MeshModels { reply } => {
                let models = warren_protocol::mesh_models::merge(
                    self.known.iter().map(|(_, r)| r),
                    |p| self.swarm.is_connected(p),
                    unix_now(),
                    warren_protocol::mesh_models::MAX_MESH_MODELS,
                );
                let _ = reply.send(models);
            }
            Command::Candidates { reply } => {
                let scores = self.scores.borrow().clone();
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
                            score: scores.weight(peer),
                            group: self
                                .group_ip(peer, &record.addrs)
                                .map(warren_protocol::netgroup::NetGroup::of),
                        })
                    })
                    .collect();
                let _ = reply.send((self.local_peer_id(), candidates));
            }
        }
    }

    /// The address that defines `peer`'s network group: a public address it is connected from,
    /// else what its record announces (`warren_protocol::netgroup::peer_ip`).
    fn group_ip(
        &self,
        peer: &libp2p::PeerId,
        announced: &[libp2p::Multiaddr],
    ) -> Option<std::net::IpAddr> {
        let observed = self
            .peers
            .get(peer)
            .and_then(|s| s.addrs.iter().find_map(ip_of));
        warren_protocol::netgroup::peer_ip(observed, announced)
    }

    pub(super) fn status(&mut self) -> StatusInfo {
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
            dht_size_estimate: crate::net::dht::dht_size_estimate(&bucket_sizes),
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

    pub(super) fn peer_list(&self) -> Vec<PeerInfo> {
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
}
