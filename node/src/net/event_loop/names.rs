//! Name records in the DHT (`spec/names.md`): publishing signed bytes, collecting every record a
//! lookup finds, and refusing to store an invalid, expired or older record of a name.

use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::kad::store::RecordStore;
use libp2p::kad::{self, GetRecordOk, PutRecordOk, QueryId, Quorum};
use tokio::sync::oneshot;
use tracing::{debug, warn};
use warren_protocol::name;

use crate::clock::unix_now;
use crate::error::NodeError;
use crate::net::event_loop::EventLoop;

/// One record of a name as a lookup found it: from which peer (`None`: this node's store).
#[derive(Clone, Debug)]
pub struct NameAnswer {
    /// The peer that answered; `None` for this node's own store.
    pub from: Option<PeerId>,
    /// The record's bytes, not yet verified.
    pub bytes: Vec<u8>,
}

/// How long a store keeps a name record past its expiry, so that a lookup can say the name
/// expired rather than that it was never published (the record is never served as valid).
const EXPIRED_KEPT_SECS: u64 = 600;

/// Most answers kept per lookup (a lookup asks the closest peers, about 20).
const MAX_ANSWERS: usize = 64;

/// A name lookup collecting answers until the query ends.
pub(crate) type PendingName = (Vec<NameAnswer>, oneshot::Sender<Vec<NameAnswer>>);

/// How long a store keeps a record that expires at `expires_at`.
fn kept_for(expires_at: u64, now: u64) -> Duration {
    Duration::from_secs(expires_at.saturating_sub(now) + EXPIRED_KEPT_SECS)
}

impl EventLoop {
    /// Stores `bytes` (a signed record of `name`, checked by the caller) here and on the peers
    /// closest to the name; answers with how many peers took it.
    pub(super) fn put_name(
        &mut self,
        name: PeerId,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<usize, NodeError>>,
    ) {
        let now = unix_now();
        let expires_at = match name::decode_verified(&bytes, &name, now) {
            Ok(r) => r.expires_at,
            Err(e) => {
                let _ = reply.send(Err(NodeError::Protocol(e)));
                return;
            }
        };
        let record = kad::Record {
            key: kad::RecordKey::new(&name::name_key(&name)),
            value: bytes,
            publisher: None,
            expires: Some(Instant::now() + kept_for(expires_at, now)),
        };
        match self
            .swarm
            .behaviour_mut()
            .kad
            .put_record(record, Quorum::One)
        {
            Ok(id) => {
                self.pending_name_puts.insert(id, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(NodeError::Network(format!(
                    "cannot store the record of name {name} here: {e}"
                ))));
            }
        }
    }

    /// Starts a lookup of `name` that gathers every record found, here and on peers.
    pub(super) fn get_name(&mut self, name: PeerId, reply: oneshot::Sender<Vec<NameAnswer>>) {
        let key = kad::RecordKey::new(&name::name_key(&name));
        let id = self.swarm.behaviour_mut().kad.get_record(key);
        self.pending_names.insert(id, (Vec::new(), reply));
    }

    /// Whether the query `id` is a name lookup or publication (handled here).
    pub(super) fn on_name_query(
        &mut self,
        id: QueryId,
        result: &kad::QueryResult,
        last: bool,
    ) -> bool {
        match result {
            kad::QueryResult::GetRecord(res) if self.pending_names.contains_key(&id) => {
                if let Ok(GetRecordOk::FoundRecord(found)) = res
                    && let Some((answers, _)) = self.pending_names.get_mut(&id)
                    && answers.len() < MAX_ANSWERS
                {
                    answers.push(NameAnswer {
                        from: found.peer,
                        bytes: found.record.value.clone(),
                    });
                }
                if (last || res.is_err())
                    && let Some((answers, reply)) = self.pending_names.remove(&id)
                {
                    let _ = reply.send(answers);
                }
                true
            }
            kad::QueryResult::PutRecord(res) if self.pending_name_puts.contains_key(&id) => {
                if let Some(reply) = self.pending_name_puts.remove(&id) {
                    let _ = reply.send(match res {
                        Ok(PutRecordOk { .. }) => Ok(1),
                        Err(kad::PutRecordError::QuorumFailed { success, .. }) => Ok(success.len()),
                        Err(e) => Err(NodeError::Network(format!("name record not stored: {e}"))),
                    });
                }
                true
            }
            _ => false,
        }
    }

    /// A peer asks this node to store a record of `name` (key checked by the caller): kept only
    /// if it verifies and supersedes the record held.
    pub(super) fn on_inbound_name(&mut self, source: PeerId, name: PeerId, record: kad::Record) {
        let now = unix_now();
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let held = store.get(&record.key).map(|r| r.value.clone());
        let verified = match name::accept_for_store(&record.value, held.as_deref(), &name, now) {
            Ok(r) => r,
            Err(e @ warren_protocol::Error::NameNotNewer { .. }) => {
                warn!(peer = %source, %name, "refused name record: {e}");
                return;
            }
            Err(e) => {
                warn!(peer = %source, %name, "refused name record: {e}");
                self.note_invalid(source);
                return;
            }
        };
        let mut record = record;
        record.expires = Some(Instant::now() + kept_for(verified.expires_at, now));
        let store = self.swarm.behaviour_mut().kad.store_mut();
        if let Err(e) = store.put(record) {
            warn!(%name, "record store full: {e}");
            return;
        }
        debug!(%name, sequence = verified.sequence, "stored name record");
    }
}
