//! Answering `/warren/blocks/2.0.0` requests from the store: the [`Server`] takes inbound
//! requests from the event loop's queue, decodes and answers each on the blocking pool (a stored
//! replica is hashed against its id) and sends the answer back through the [`Client`].

use std::sync::{Arc, Mutex};

use libp2p::PeerId;
use tokio::sync::watch;
use tracing::{debug, warn};
use warren_protocol::ContentId;
use warren_protocol::block_transfer::{
    BlockRequest, Request, Response, StoreRequest, StoreResponse,
};
use warren_storage_mesh::hot::HotTracker;
use warren_storage_mesh::proof::{self, Challenge};
use warren_storage_mesh::{Error as StoreError, Store};

use crate::clock::unix_now;
use crate::config::FaultInject;
use crate::metrics::Metrics;
use crate::net::Client;
use crate::net::InboundBlocks;
use tokio::sync::mpsc;
use warren_protocol::block_transfer;

/// Answers one inbound block request from `peer` against the local store. Returns the answer
/// and, for a stored replica, the block to announce as provided. `fault` is
/// [`FaultInject::None`] except in tests that simulate a faulty node.
pub fn serve(
    store: &Store,
    peer: &PeerId,
    request: Request,
    now_secs: u64,
    fault: FaultInject,
) -> (Response, Option<ContentId>) {
    match request {
        Request::Get(BlockRequest { block }) => match store.get_block(&block) {
            Ok(data) => {
                tracing::info!(%peer, %block, "serving a block");
                (
                    Response::Block(warren_protocol::block_transfer::BlockResponse { block, data }),
                    None,
                )
            }
            Err(e) => (not_served(store, &block, e), None),
        },
        Request::Store(StoreRequest { block, data, rf }) => {
            let result = store
                .put_block(&block, &data)
                .and_then(|()| store.hold(&block, now_secs, rf));
            match result {
                Ok(()) => {
                    debug!(%peer, %block, "holding a replica");
                    (
                        Response::Stored(StoreResponse {
                            block,
                            accepted: true,
                            reason: None,
                        }),
                        Some(block),
                    )
                }
                Err(e) => {
                    let reason = e.to_string().chars().take(200).collect();
                    (
                        Response::Stored(StoreResponse {
                            block,
                            accepted: false,
                            reason: Some(reason),
                        }),
                        None,
                    )
                }
            }
        }
        Request::Audit(req) => {
            let block = req.block;
            match store.get_block(&block) {
                Ok(data) => {
                    let challenge = Challenge::from_request(&req);
                    match proof::prove(&data, &challenge) {
                        Ok(p) => {
                            let mut proof = p.to_bytes();
                            if fault == FaultInject::CorruptAudits
                                && let Some(b) = proof.first_mut()
                            {
                                // A faulty disk: the tag no longer matches the slice.
                                *b ^= 0xff;
                            }
                            (
                                Response::Proof(warren_protocol::block_transfer::AuditResponse {
                                    block,
                                    proof,
                                }),
                                None,
                            )
                        }
                        Err(e) => (
                            Response::Failed {
                                reason: e.to_string().chars().take(200).collect(),
                            },
                            None,
                        ),
                    }
                }
                Err(e) => (not_served(store, &block, e), None),
            }
        }
    }
}

/// The answer for a block this node cannot serve. A corrupt copy is discarded so that a good one
/// can replace it, and is never sent.
pub(super) fn not_served(store: &Store, block: &ContentId, e: StoreError) -> Response {
    let listed = store.has_block(block).unwrap_or(false);
    let bad = matches!(e, StoreError::Corrupt { .. } | StoreError::Io { .. })
        || (matches!(e, StoreError::Missing { .. }) && listed);
    if bad {
        // Listed but unreadable or altered: drop it so a good copy can take its place.
        warn!(%block, "discarding a bad local copy: {e}");
        if let Err(e) = store.discard_block(block) {
            warn!(%block, "cannot discard the bad copy: {e}");
        }
    }
    Response::NotFound { block: *block }
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

/// Cuts a refusal reason to what a block message may carry.
fn truncate(reason: &str) -> String {
    let max = block_transfer::MAX_REASON_LEN;
    if reason.len() <= max {
        return reason.to_owned();
    }
    let mut end = max;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
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
}

impl Server {
    /// Answers requests from `requests` until `shutdown` turns true or the loop is gone.
    pub async fn run(
        self,
        mut requests: mpsc::Receiver<InboundBlocks>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                request = requests.recv() => match request {
                    Some(r) => self.answer(r),
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

    /// Answers one request on the blocking pool.
    fn answer(&self, inbound: InboundBlocks) {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
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
                    if this.fault == FaultInject::SlowBlocks && matches!(request, Request::Get(_)) {
                        std::thread::sleep(crate::config::SLOW_BLOCKS_DELAY);
                    }
                    let (response, provide) =
                        serve(&this.store, &peer, request, unix_now(), this.fault);
                    count_served(Some(&this.metrics), &peer, &response, stored_len);
                    (response, provide, false)
                }
                Err(e) => {
                    let reason = e.to_string();
                    warn!(%peer, "refused block request: {reason}");
                    let response = Response::Failed {
                        reason: truncate(&reason),
                    };
                    (response, None, true)
                }
            };
            let response = response.encode().unwrap_or_else(|e| {
                warn!(%peer, "block answer not encoded: {e}");
                Response::Failed {
                    reason: "the answer could not be encoded".into(),
                }
                .encode()
                .unwrap_or_default()
            });
            this.client
                .respond_blocks_blocking(peer, channel, response, provide, invalid);
        });
    }
}
