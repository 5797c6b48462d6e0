//! Answering `/warren/blocks/2.0.0` requests from the store: the [`Server`] takes inbound
//! requests from the event loop's bounded queue, [`BLOCK_WORKERS`] at a time, decodes and answers
//! each on the blocking pool (a stored replica is hashed against its id) and sends the answer back
//! through the [`Client`]. While every worker is busy the queue fills, and over it the loop
//! answers "busy" at once.

use std::sync::{Arc, Mutex};

use libp2p::PeerId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::{debug, warn};
use warren_protocol::ContentId;
use warren_protocol::block_transfer::{Request, Response};
use warren_storage_mesh::Store;
use warren_storage_mesh::audit_pace::InFlight;
use warren_storage_mesh::hot::HotTracker;
use warren_storage_mesh::pieces::PieceManifest;
use warren_storage_mesh::pieces_watch::PiecesWatch;
use warren_storage_mesh::serve as answer;

use crate::clock::unix_now;
use crate::config::FaultInject;
use crate::credits::Credits;
use crate::metrics::Metrics;
use crate::net::Client;
use crate::net::InboundBlocks;
use tokio::sync::mpsc;
use warren_protocol::block_transfer;
use warren_protocol::credits::Decision;
use warren_protocol::credits::ledger::LAST;
use warren_protocol::credits::policy::ServiceQueue;

/// Answers one decoded request from `peer` against the local store with the pure
/// [`warren_storage_mesh::serve::answer`], logging what it found. Returns the answer and, for a
/// stored replica, the block to announce as provided. `fault` is [`FaultInject::None`] except in
/// tests that simulate a faulty node; `quota` is what one origin may hold here under its leases.
pub fn serve(
    store: &Store,
    peer: &PeerId,
    request: Request,
    now_secs: u64,
    fault: FaultInject,
    quota: u64,
) -> (Response, Option<ContentId>) {
    let fault = match fault {
        FaultInject::CorruptAudits => answer::Fault::CorruptProofs,
        _ => answer::Fault::None,
    };
    let answered = answer::answer(store, request, now_secs, fault, quota);
    if let Some(bad) = &answered.bad_copy {
        log_bad_copy(bad);
    }
    if let Some((block, e)) = &answered.unreadable {
        warn!(%peer, %block, "cannot read a stored block now (kept, answered failed): {e}");
    }
    match &answered.response {
        Response::Block(b) => tracing::info!(%peer, block = %b.block, "serving a block"),
        Response::Stored(s) if s.accepted => debug!(%peer, block = %s.block, "holding a replica"),
        _ => {}
    }
    (answered.response, answered.provide)
}

/// Logs a bad local copy found (and discarded, so a good copy can take its place).
pub(super) fn log_bad_copy(bad: &answer::BadCopy) {
    warn!(block = %bad.block, "discarding a bad local copy: {}", bad.error);
    if let Err(e) = &bad.discarded {
        warn!(block = %bad.block, "cannot discard the bad copy: {e}");
    }
}

/// [`FaultInject::CorruptBlocks`]: alters one byte of the block `data` inside `encoded`, the
/// encoding of the [`Response::Block`] that carries it. Returns whether it did (not for an empty
/// block, or an encoding that does not end with the data).
///
/// The byte is flipped in the encoded answer, not in the response before encoding, because
/// [`Response::encode`] validates first and refuses a block that does not hash to its id. The
/// answer encodes as `{"block": {"block": <id>, "data": <bytes>}}` (fields in declaration order),
/// so the data is the tail of the encoding: the byte in its middle is altered, never the CBOR
/// framing or the id, and the fetcher sees a well-formed answer whose block fails its hash.
fn corrupt_encoded_block(encoded: &mut [u8], data: &[u8]) -> bool {
    if data.is_empty() || !encoded.ends_with(data) {
        return false;
    }
    let at = encoded.len() - data.len() + data.len() / 2;
    if let Some(byte) = encoded.get_mut(at) {
        *byte ^= 0x01;
        return true;
    }
    false
}

/// Counts (and logs refusals of) one answer to a block request.
fn count_served(
    metrics: Option<&Metrics>,
    peer: &PeerId,
    response: &block_transfer::Response,
    stored_len: u64,
) {
    use block_transfer::Response;
    match response {
        Response::Stored(s) if !s.accepted => {
            let reason = s.reason.as_deref().unwrap_or("no reason");
            warn!(%peer, block = %s.block, "refused to hold a replica: {reason}");
            if let Some(m) = metrics {
                m.counters.blocks_refused.inc();
                m.activity
                    .storage_refused(format!("replica {} from {peer}: {reason}", s.block));
            }
        }
        Response::Stored(_) => {
            if let Some(m) = metrics {
                m.counters.blocks_stored.inc();
                m.counters.bytes_received.inc_by(stored_len);
            }
        }
        Response::Block(b) => {
            if let Some(m) = metrics {
                m.counters.blocks_served.inc();
                m.counters.bytes_sent.inc_by(b.data.len() as u64);
            }
        }
        _ => {}
    }
}

/// The service that answers inbound block requests.
#[derive(Clone)]
pub struct Server {
    /// Sends the answers back to the swarm.
    pub client: Client,
    /// Where blocks are read and replicas stored.
    pub store: Arc<Store>,
    /// Fetch counts of the blocks served (hot content gets a higher RF).
    pub hot: Arc<Mutex<HotTracker>>,
    /// Simulated fault (tests only).
    pub fault: FaultInject,
    /// Counters and the dashboard feed.
    pub metrics: Arc<Metrics>,
    /// The audits this node runs now ([`crate::storage::Mesh::audits_in_flight`]): a block under
    /// audit is not served to the holder being audited until the audit ends.
    pub in_flight: Arc<Mutex<InFlight>>,
    /// The files kept as pieces this node watches ([`crate::storage::Mesh::pieces_watch`]): a
    /// piece manifest stored here is watched.
    pub pieces_watch: Arc<Mutex<PiecesWatch>>,
    /// Bytes one origin may hold here under its leases, before its credit raises it.
    pub quota: u64,
    /// Bytes offered to others: no origin's quota passes it.
    pub offer: u64,
    /// The credit ledger: who is served first when every worker is busy, and who not at all.
    pub credits: Credits,
}

/// Requests waiting for a worker, ordered by the requester's credit; over this the lowest is
/// answered "busy".
pub const SERVICE_QUEUE: usize = 256;

/// A request waiting for a worker, with the credit decision taken when it arrived.
struct Waiting {
    inbound: InboundBlocks,
    decision: Decision,
}

/// Inbound block requests answered at once, each on a thread of the blocking pool; the rest wait
/// in the event loop's bounded queue, and over that are answered "busy" at once.
pub const BLOCK_WORKERS: usize = 8;

impl Server {
    /// Answers requests from `requests` until `shutdown` turns true or the loop is gone, at most
    /// [`BLOCK_WORKERS`] at a time: the next request is taken only when a worker is free.
    pub async fn run(
        self,
        mut requests: mpsc::Receiver<InboundBlocks>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let free = match self.fault {
            FaultInject::BusyBlocks => crate::config::BUSY_BLOCKS_WORKERS,
            _ => BLOCK_WORKERS,
        };
        let workers = Arc::new(Semaphore::new(free));
        let mut queue: ServiceQueue<Waiting> = ServiceQueue::new(SERVICE_QUEUE);
        loop {
            while let Ok(r) = requests.try_recv() {
                self.enqueue(&mut queue, &workers, r);
            }
            if queue.is_empty() {
                tokio::select! {
                    request = requests.recv() => match request {
                        Some(r) => self.enqueue(&mut queue, &workers, r),
                        None => break,
                    },
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            break;
                        }
                    }
                }
                continue;
            }
            tokio::select! {
                permit = workers.clone().acquire_owned() => {
                    let Ok(permit) = permit else { break };
                    while let Ok(r) = requests.try_recv() {
                        self.enqueue(&mut queue, &workers, r);
                    }
                    if let Some(w) = queue.pop() {
                        self.answer(w.inbound, w.decision, permit);
                    }
                }
                request = requests.recv() => match request {
                    Some(r) => self.enqueue(&mut queue, &workers, r),
                    None => break,
                },
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
    }

    /// Queues one request at its requester's credit. Charge only under contention: while a worker
    /// is free and nobody waits, every peer is served as it comes, whatever its credit.
    fn enqueue(
        &self,
        queue: &mut ServiceQueue<Waiting>,
        workers: &Semaphore,
        inbound: InboundBlocks,
    ) {
        let busy = workers.available_permits() == 0 || !queue.is_empty();
        let (priority, decision) = if busy {
            match self.credits.admit(inbound.peer) {
                Decision::Serve { priority } => (priority, Decision::Serve { priority }),
                other => (LAST, other),
            }
        } else {
            (0, Decision::Serve { priority: 0 })
        };
        if let Some(dropped) = queue.push(priority, Waiting { inbound, decision }) {
            let this = self.clone();
            tokio::task::spawn_blocking(move || {
                let InboundBlocks { peer, channel, .. } = dropped.inbound;
                debug!(%peer, "block request dropped: the service queue is full");
                let busy = Response::Failed {
                    reason: "busy: the service queue is full".into(),
                }
                .encode()
                .unwrap_or_default();
                this.client
                    .respond_blocks_blocking(peer, channel, busy, None, false);
            });
        }
    }

    /// The quota of the origin whose ticket a `store` or `renew` carries: the base quota grown
    /// with that origin's credit here (spec/credits.md, "Order of service").
    fn origin_quota(&self, request: &Request) -> u64 {
        let ticket = match request {
            Request::Store(s) => s.ticket.as_ref(),
            Request::Renew(r) => Some(&r.ticket),
            Request::Get(_) | Request::Audit(_) => None,
        };
        match ticket.and_then(|t| t.origin_peer()) {
            Some(origin) => self.credits.replica_quota(&origin, self.quota, self.offer),
            None => self.quota,
        }
    }

    /// Whether `block` is under audit at `peer` now: neither served nor proven to it (else a
    /// holder that stores nothing could fetch the block from its auditor, or reflect the
    /// challenge to it, to answer the audit).
    fn withheld(&self, peer: &PeerId, block: &ContentId) -> bool {
        let now_ms = crate::clock::unix_now_ms();
        self.in_flight
            .lock()
            .is_ok_and(|f| f.withholds(peer, &block.hash(), now_ms))
    }

    /// Answers one request on the blocking pool (a `get` refused for credit is answered
    /// `failed`; audits, pushes and renewals are never refused for credit).
    fn answer(&self, inbound: InboundBlocks, decision: Decision, worker: OwnedSemaphorePermit) {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _worker = worker;
            let InboundBlocks {
                peer,
                request,
                channel,
            } = inbound;
            let (response, provide, invalid) = match Request::decode(&request) {
                Ok(request) => {
                    if let Request::Get(get) = &request
                        && let Ok(mut hot) = this.hot.lock()
                    {
                        hot.record_fetch(&get.block.hash(), unix_now().saturating_mul(1000));
                    }
                    let stored_len = match &request {
                        Request::Store(s) => s.data.len() as u64,
                        _ => 0,
                    };
                    // A whole copy of a piece manifest: this node watches that file too.
                    let piece_manifest = match &request {
                        Request::Store(s) if PieceManifest::is_piece_manifest(&s.data) => {
                            Some(s.block)
                        }
                        _ => None,
                    };
                    let quota = this.origin_quota(&request);
                    if let (Request::Get(_), Decision::Refuse { reason, .. }) =
                        (&request, &decision)
                    {
                        debug!(%peer, "block request refused for credit: {reason}");
                        let response = Response::Failed {
                            reason: format!("credit: {reason}"),
                        };
                        let encoded = response.encode().unwrap_or_default();
                        this.client
                            .respond_blocks_blocking(peer, channel, encoded, None, false);
                        return;
                    }
                    if this.fault == FaultInject::SlowBlocks && matches!(request, Request::Get(_)) {
                        std::thread::sleep(crate::config::SLOW_BLOCKS_DELAY);
                    }
                    if this.fault == FaultInject::BusyBlocks && matches!(request, Request::Get(_)) {
                        std::thread::sleep(crate::config::BUSY_BLOCKS_DELAY);
                    }
                    // A `get` of the block, or an `audit` of it (whose proof carries the slice,
                    // and would answer the very challenge if reflected), is withheld.
                    let under_audit = match &request {
                        Request::Get(r) => Some(r.block),
                        Request::Audit(r) => Some(r.block),
                        Request::Store(_) | Request::Renew(_) => None,
                    }
                    .filter(|block| this.withheld(&peer, block));
                    let (response, provide) = if let Some(block) = under_audit {
                        warn!(%peer, %block, "not serving a block to the peer this node is auditing on it");
                        (Response::NotFound { block }, None)
                    } else {
                        serve(&this.store, &peer, request, unix_now(), this.fault, quota)
                    };
                    count_served(Some(&this.metrics), &peer, &response, stored_len);
                    if let (Some(id), Response::Stored(s)) = (piece_manifest, &response)
                        && s.accepted
                        && let Ok(mut w) = this.pieces_watch.lock()
                    {
                        w.watch(id, crate::clock::unix_now_ms());
                    }
                    if let Response::Block(b) = &response {
                        this.credits.served(peer, b.data.len() as u64);
                    }
                    (response, provide, false)
                }
                Err(e) => {
                    let reason = e.to_string();
                    warn!(%peer, "refused block request: {reason}");
                    let response = answer::undecodable(&reason);
                    (response, None, true)
                }
            };
            let mut encoded = response.encode().unwrap_or_else(|e| {
                warn!(%peer, "block answer not encoded: {e}");
                Response::Failed {
                    reason: "the answer could not be encoded".into(),
                }
                .encode()
                .unwrap_or_default()
            });
            if this.fault == FaultInject::CorruptBlocks
                && let Response::Block(b) = &response
            {
                if corrupt_encoded_block(&mut encoded, &b.data) {
                    warn!(%peer, block = %b.block, "serving an altered block (fault injection)");
                } else {
                    warn!(%peer, block = %b.block, "block data not found in the answer: served unaltered");
                }
            }
            let response = encoded;
            this.client
                .respond_blocks_blocking(peer, channel, response, provide, invalid);
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use warren_protocol::block_transfer::{BlockResponse, Response, TransferError};
    use warren_protocol::{Codec, ContentId};

    use super::corrupt_encoded_block;

    #[test]
    fn a_corrupted_answer_still_decodes_as_a_message_but_fails_the_hash() {
        for len in [1usize, 2, 33, 1000, 1 << 20] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let block = ContentId::of_block(Codec::Raw, &data);
            let mut encoded = Response::Block(BlockResponse {
                block,
                data: data.clone(),
            })
            .encode()
            .unwrap();
            assert!(corrupt_encoded_block(&mut encoded, &data), "len {len}");
            let err = Response::decode(&encoded).unwrap_err();
            assert!(
                matches!(
                    err,
                    TransferError::Protocol(warren_protocol::Error::HashMismatch { .. })
                ),
                "len {len}: {err:?}"
            );
        }
        assert!(!corrupt_encoded_block(&mut [1, 2, 3], &[]));
    }
}
