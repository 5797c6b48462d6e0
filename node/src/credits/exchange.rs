//! `/warren/credits/1.0.0` on libp2p streams: sending this node's receipts and answering the
//! peers' (spec: `spec/credits.md`, "Exchange").

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::{PeerId, StreamProtocol};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, info, warn};
use warren_protocol::credits::receipt::MAX_RECEIPT_SIZE;
use warren_protocol::credits::wire::{MAX_REPLY_SIZE, PROTOCOL_NAME, Reply};
use warren_protocol::credits::{CreditError, Receipt};

use super::{Credits, lock, peer_key};
use crate::clock::unix_now_ms as now_ms;
use crate::error::NodeError;
use crate::net::protocols::framing::{read_limited, write_close};

/// The protocol name.
pub(super) const PROTOCOL: StreamProtocol = StreamProtocol::new(PROTOCOL_NAME);
/// Inbound receipt exchanges answered at once; more are dropped.
const MAX_INBOUND: usize = 32;
/// Longest exchange, either side.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

fn credit_err(peer: PeerId, detail: impl std::fmt::Display) -> NodeError {
    NodeError::Credits {
        peer,
        detail: detail.to_string(),
    }
}

impl Credits {
    /// Issues a receipt to `peer` for everything owed, keeps it on disk, sends it and keeps the
    /// countersigned copy it gets back. Nothing owed: nothing sent.
    pub async fn settle(&self, peer: PeerId) -> Result<(), NodeError> {
        let payee = peer_key(&peer).ok_or_else(|| credit_err(peer, "not an Ed25519 peer id"))?;
        let receipt = {
            let mut l = lock(&self.inner.ledger);
            if !l.receipt_due(&peer, true) {
                return Ok(());
            }
            l.issue(&self.inner.key, peer, payee, now_ms())
                .map_err(|e| credit_err(peer, e))?
        };
        self.persist(peer, true, receipt.clone()).await?;
        let bytes = receipt.encode().map_err(|e| credit_err(peer, e))?;
        let mut control = lock(&self.inner.control).clone();
        let exchange = async {
            let mut stream = control
                .open_stream(peer, PROTOCOL)
                .await
                .map_err(|e| credit_err(peer, format!("cannot open a credits stream: {e}")))?;
            write_close(&mut stream, &bytes)
                .await
                .map_err(|e| credit_err(peer, e))?;
            read_limited(&mut stream, MAX_REPLY_SIZE, "credit reply")
                .await
                .map_err(|e| credit_err(peer, e))
        };
        let answer = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
            .await
            .map_err(|_| credit_err(peer, "no reply in time"))??;
        match Reply::decode(&answer).map_err(|e| credit_err(peer, e))? {
            Reply::Accepted(signed) => {
                let signed = *signed;
                lock(&self.inner.ledger)
                    .countersigned(peer, signed.clone())
                    .map_err(|e| credit_err(peer, e))?;
                debug!(%peer, seq = signed.seq, "credit receipt countersigned");
                self.persist(peer, true, signed).await
            }
            Reply::Refused { reason } => Err(credit_err(
                peer,
                format!("receipt #{} refused: {reason}", receipt.seq),
            )),
        }
    }

    async fn persist(&self, peer: PeerId, mine: bool, r: Receipt) -> Result<(), NodeError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || match &this.inner.store {
            Some(s) => s.save(&peer, mine, &r),
            None => Ok(()),
        })
        .await
        .map_err(|source| NodeError::Task {
            what: "credit store",
            source,
        })?
    }

    /// Answers one receipt `bytes` from `peer`: accepted (countersigned, kept) or refused (a
    /// strike against the peer).
    pub async fn answer(&self, peer: PeerId, bytes: &[u8]) -> Reply {
        let now = now_ms();
        let outcome = match Receipt::decode(bytes) {
            Ok(r) => lock(&self.inner.ledger).accept(&self.inner.key, peer, r, now),
            Err(e) => {
                lock(&self.inner.ledger).receipt_refused(peer, &e, now);
                Err(e)
            }
        };
        match outcome {
            Ok(signed) => {
                lock(&self.inner.counts).accepted += 1;
                self.inner.metrics.counters.credits.receipts_accepted.inc();
                debug!(%peer, seq = signed.seq, bytes = signed.work.bytes, "credit receipt accepted");
                if let Err(e) = self.persist(peer, false, signed.clone()).await {
                    warn!(%peer, "credit receipt not kept: {e}");
                }
                Reply::Accepted(Box::new(signed))
            }
            Err(e) => {
                lock(&self.inner.counts).refused += 1;
                self.inner.metrics.counters.credits.receipts_refused.inc();
                warn!(%peer, "refused a credit receipt: {e}");
                if let Some(hook) = self.inner.on_refused.get() {
                    hook(peer, bytes.to_vec());
                }
                if matches!(e, CreditError::Conflicting { .. }) {
                    self.publish_fraud(&peer);
                }
                Reply::refused(&e.to_string())
            }
        }
    }

    /// Answers inbound receipts and sends this node's every `every` until `shutdown`.
    pub async fn run(
        self,
        mut incoming: libp2p_stream::IncomingStreams,
        every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let slots = Arc::new(Semaphore::new(MAX_INBOUND));
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                next = incoming.next() => {
                    let Some((peer, mut stream)) = next else { break };
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        debug!(%peer, "credits stream dropped: too many at once");
                        continue;
                    };
                    let this = self.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        let run = async {
                            let bytes = read_limited(&mut stream, MAX_RECEIPT_SIZE, "credit receipt").await;
                            let reply = match bytes {
                                Ok(b) => this.answer(peer, &b).await,
                                Err(e) => Reply::refused(&e.to_string()),
                            };
                            if let Ok(out) = reply.encode() {
                                let _ = write_close(&mut stream, &out).await;
                            }
                        };
                        let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, run).await;
                    });
                }
                _ = tick.tick() => {
                    let owing = lock(&self.inner.ledger).owing();
                    for peer in owing {
                        self.settle_later(peer);
                    }
                    let view = self.view(None);
                    self.sample(&view);
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        info!("credits service stopped");
    }
}
