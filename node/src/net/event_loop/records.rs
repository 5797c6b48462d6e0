//! This node's record and the records of others: publishing, inbound puts, lookups, providers.

use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::gossipsub::IdentTopic;
use libp2p::kad::store::RecordStore;
use libp2p::kad::{self, GetRecordOk, QueryId, QueryResult, Quorum};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use tracing::{debug, info, warn};
use warren_protocol::SignedNodeRecord;
use warren_protocol::provider_table::Standing;

use crate::clock::unix_now;
use crate::error::NodeError;
use crate::net::NODES_TOPIC;
use crate::net::event_loop::EventLoop;
use crate::view::RecordView;

/// A load this far (per mille) from the one the current record carries, or one that crosses
/// "full", publishes a new record...
const LOAD_STEP: u16 = 250;
/// ...but not more often than this (seconds).
const LOAD_REPUBLISH_SECS: u64 = 5;

impl EventLoop {
    /// Whether the executor's load moved enough, or the models served changed, since the current
    /// record to publish a new one.
    pub(super) fn load_moved(&self) -> bool {
        let Some((_, own)) = &self.own else {
            return false;
        };
        let (was, now) = (own.load_permille, self.records.load());
        let busy = warren_inference::signals::is_busy;
        let models_moved = own.compute != self.records.compute();
        (was.abs_diff(now) >= LOAD_STEP || busy(was) != busy(now) || models_moved)
            && unix_now() >= own.issued_at + LOAD_REPUBLISH_SECS
    }

    pub(super) fn publish_record(&mut self) {
        let now = unix_now();
        let (bytes, record) = match self.records.build(self.advertised_addrs(), now) {
            Ok(r) => r,
            Err(e) => {
                warn!("cannot build this node's record: {e}");
                self.next_publish = Instant::now() + Duration::from_secs(30);
                return;
            }
        };
        let ttl = Duration::from_secs(record.expires_at.saturating_sub(now));
        let kad_record = kad::Record {
            key: kad::RecordKey::new(&warren_protocol::record_key(&record.peer_id)),
            value: bytes.clone(),
            publisher: None,
            expires: Some(Instant::now() + ttl),
        };
        match self
            .swarm
            .behaviour_mut()
            .kad
            .put_record(kad_record, Quorum::One)
        {
            Ok(id) => self.publish_query = Some(id),
            Err(e) => warn!("cannot store this node's record locally: {e}"),
        }
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(IdentTopic::new(NODES_TOPIC), bytes.clone())
        {
            debug!("record not gossiped yet: {e}");
        }
        debug!(expires_at = record.expires_at, "published node record");
        self.own = Some((bytes, record));
        // Republish at half the lifetime; a failed network publish is retried by the tick.
        self.next_publish = Instant::now() + ttl / 2;
    }

    pub(super) fn on_kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => {
                self.on_inbound_record(source, record);
            }
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::AddProvider {
                        record: Some(record),
                    },
            } => {
                // Keys are content ids, bounded here; the table bounds the rest (per peer, per
                // /16, own keys reserved: `dht_store`).
                if record.key.as_ref().len() > 128 {
                    return;
                }
                let prefix = self
                    .peers
                    .get(&record.provider)
                    .and_then(|s| s.addrs.first())
                    .and_then(warren_protocol::reputation::ipv4_prefix);
                let standing = self.standing_of(&record.provider);
                let provider = record.provider;
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .store_mut()
                    .add_remote_provider(record, prefix, standing)
                {
                    debug!(%provider, "provider record not stored: {e}");
                }
            }
            kad::Event::RoutingUpdated {
                peer,
                is_new_peer: true,
                ..
            } if self.swarm.connected_peers().count() < self.max_peers
                && !self.swarm.is_connected(&peer) =>
            {
                let opts = DialOpts::peer_id(peer)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                let _ = self.swarm.dial(opts);
            }
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } if self.on_name_query(id, &result, step.last) => {}
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => match result {
                QueryResult::PutRecord(res) if Some(id) == self.publish_query => {
                    self.publish_query = None;
                    match res {
                        Ok(_) => {
                            if !self.published_to_network {
                                info!("node record published in the DHT");
                            }
                            self.published_to_network = true;
                        }
                        Err(e) => {
                            debug!("node record not yet stored remotely: {e}");
                            self.published_to_network = false;
                        }
                    }
                }
                QueryResult::GetRecord(res) => self.on_get_record(id, res, step.last),
                QueryResult::GetProviders(res) => {
                    if let Some((found, _)) = self.pending_providers.get_mut(&id)
                        && let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = res
                    {
                        found.extend(providers);
                    }
                    if step.last
                        && let Some((found, reply)) = self.pending_providers.remove(&id)
                    {
                        let _ = reply.send(found.into_iter().collect());
                    }
                }
                QueryResult::Bootstrap(Ok(ok)) => {
                    debug!(remaining = ok.num_remaining, "kad bootstrap step");
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// What this node knows of `peer` for its provider records: verified if its signed record
    /// is known, trusted if its reputation here is positive too.
    fn standing_of(&self, peer: &PeerId) -> Standing {
        if !self.known.contains(peer) {
            Standing::Unknown
        } else if self.scores.borrow().application(peer) > 0.0 {
            Standing::Trusted
        } else {
            Standing::Verified
        }
    }

    pub(super) fn on_inbound_record(&mut self, source: PeerId, record: kad::Record) {
        let now = unix_now();
        if let Some(name) = warren_protocol::name::name_from_key(record.key.as_ref()) {
            return self.on_inbound_name(source, name, record);
        }
        let Some(subject) = warren_protocol::peer_from_record_key(record.key.as_ref()) else {
            warn!(peer = %source, "refused DHT record: key is not in the /warren/node/ namespace");
            self.note_invalid(source);
            return;
        };
        let verified = match SignedNodeRecord::decode_verified(&record.value, Some(&subject), now) {
            Ok(r) => r,
            Err(e) => {
                warn!(peer = %source, subject = %subject, "refused DHT record: {e}");
                self.note_invalid(source);
                return;
            }
        };
        let store = self.swarm.behaviour_mut().kad.store_mut();
        if let Some(existing) = store.get(&record.key)
            && !warren_protocol::record_book::supersedes_stored(&verified, &existing.value, now)
        {
            debug!(peer = %source, subject = %subject, "kept the newer record already stored");
            return;
        }
        let ttl = Duration::from_secs(verified.expires_at.saturating_sub(now));
        let mut record = record;
        record.expires = Some(Instant::now() + ttl);
        if let Err(e) = store.put(record) {
            warn!(subject = %subject, "record store full: {e}");
            return;
        }
        self.remember_record(verified);
    }

    pub(super) fn on_get_record(
        &mut self,
        id: QueryId,
        res: Result<GetRecordOk, kad::GetRecordError>,
        last: bool,
    ) {
        if let Ok(GetRecordOk::FoundRecord(found)) = &res
            && let Some(pending) = self.pending_records.get(&id)
        {
            let subject = pending.peer;
            let from = found
                .peer
                .map(|p| p.to_string())
                .unwrap_or_else(|| "local store".into());
            match SignedNodeRecord::decode_verified(&found.record.value, Some(&subject), unix_now())
            {
                Ok(record) => {
                    let view = RecordView::new(&record, found.record.value.len(), &from);
                    self.remember_record(record);
                    if let Some(pending) = self.pending_records.remove(&id)
                        && let Some(reply) = pending.reply
                    {
                        let _ = reply.send(Ok(view));
                    }
                    if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                        q.finish();
                    }
                    return;
                }
                Err(e) => {
                    warn!(%subject, from = %from, "DHT returned an invalid record: {e}");
                    if let Some(p) = found.peer {
                        self.note_invalid(p);
                    }
                }
            }
        }
        if (last || res.is_err())
            && let Some(pending) = self.pending_records.remove(&id)
            && let Some(reply) = pending.reply
        {
            let _ = reply.send(Err(NodeError::RecordNotFound { peer: pending.peer }));
        }
    }
}
