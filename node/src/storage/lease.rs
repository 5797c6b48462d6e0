//! Replicas as leases on the network: the tickets this node issues for the files it put, the
//! ones it forwards with repair pushes, renewals before they end, and the release of the
//! replicas whose lease ended. The rules are `warren_storage_mesh::lease`'s.

use libp2p::PeerId;
use tracing::{debug, info, warn};
use warren_protocol::ContentId;
use warren_protocol::block_transfer::{MAX_RF, RenewRequest, Request, Response, StoreResponse};
use warren_protocol::ticket::PlacementTicket;

use crate::clock::{unix_now, unix_now_ms as now_ms};
use crate::storage::Mesh;

impl Mesh {
    /// Whether this node is the origin of `cid`: it put (and pinned) a file with this block.
    pub(crate) fn is_origin(&self, cid: &ContentId) -> bool {
        self.rf.lock().is_ok_and(|m| m.contains_key(cid))
    }

    /// The ticket to push `cid` with: a fresh one signed by this node for a block of a file it
    /// put (at `rf`, for `lease_secs`), else the ticket it holds the block under (a repair
    /// forwards the origin's ticket). `None` when it has neither (the target will refuse).
    pub(crate) async fn ticket_for(&self, cid: ContentId, rf: usize) -> Option<PlacementTicket> {
        // A block this node answers for without holding it under a lease belongs to a file it
        // pinned itself (one put before RFs were recorded, or placed in its store by hand): it
        // is that file's origin too.
        let own_pin = || async {
            self.store_call(move |s| s.held_rf(&cid))
                .await
                .is_ok_and(|held| held.is_none())
        };
        if self.is_origin(&cid) || own_pin().await {
            let rf = u8::try_from(rf).unwrap_or(MAX_RF).min(MAX_RF);
            let expires = unix_now() + self.config.lease_secs;
            return match PlacementTicket::sign(&self.key, cid, rf, expires) {
                Ok(t) => Some(t),
                Err(e) => {
                    warn!(block = %cid, "cannot sign a placement ticket: {e}");
                    None
                }
            };
        }
        self.store_call(move |s| s.lease_ticket(&cid))
            .await
            .ok()
            .flatten()
    }

    /// For a block of a file this node put: when half its lease has passed since the last
    /// renewal, sends every verified holder a fresh ticket; a holder that no longer has the
    /// block gets it pushed again.
    pub(crate) async fn renew_holders(&self, cid: ContentId, holders: &[PeerId], rf: usize) {
        if !self.renewal_due(&cid) {
            return;
        }
        let now = now_ms();
        let Some(ticket) = self.ticket_for(cid, rf).await else {
            return;
        };
        let mut all_ok = true;
        for &peer in holders {
            let request = Request::Renew(RenewRequest {
                block: cid,
                ticket: ticket.clone(),
            });
            match self.client.blocks(peer, request).await {
                Ok(Response::Stored(StoreResponse { accepted: true, .. })) => {
                    debug!(block = %cid, %peer, "lease renewed");
                }
                Ok(Response::NotFound { .. }) => {
                    if let Err(e) = self.push(cid, peer, rf).await {
                        all_ok = false;
                        warn!(block = %cid, %peer, "lease not renewed, push failed: {e}");
                    }
                }
                Ok(other) => {
                    all_ok = false;
                    warn!(block = %cid, %peer, "lease not renewed: {}", other.kind());
                }
                Err(e) => {
                    all_ok = false;
                    debug!(block = %cid, %peer, "lease not renewed: {e}");
                }
            }
        }
        if all_ok && let Ok(mut m) = self.renewed.lock() {
            m.insert(cid, now);
        }
    }

    /// Whether this node placed `cid` and half its lease has passed since the last renewal.
    pub(crate) fn renewal_due(&self, cid: &ContentId) -> bool {
        if !self.is_origin(cid) {
            return false;
        }
        let now = now_ms();
        let half = self.config.lease_secs.saturating_mul(500);
        self.renewed.lock().is_ok_and(|m| {
            m.get(cid)
                .is_none_or(|last| now.saturating_sub(*last) >= half)
        })
    }

    /// Releases the replicas whose lease ended (and removes their blocks unless a pinned file
    /// of this node needs them).
    pub(crate) async fn expire_leases(&self) {
        let now = unix_now();
        match self.store_call(move |s| s.expire_leases(now)).await {
            Ok(released) if !released.is_empty() => {
                info!(
                    blocks = released.len(),
                    "replicas released: their lease ended"
                );
                // No longer announced, unless still here (a pinned file of this node needs it).
                let gone = self
                    .store_call(move |s| {
                        let mut gone = Vec::new();
                        for c in released {
                            if !s.has_block(&c)? {
                                gone.push(c);
                            }
                        }
                        Ok(gone)
                    })
                    .await
                    .unwrap_or_default();
                if let Err(e) = self.client.unprovide(gone).await {
                    debug!("cannot stop providing released replicas: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => warn!("cannot release ended leases: {e}"),
        }
        // Renewal times only for the blocks this node still answers for as origin.
        if let (Ok(mut renewed), Ok(rf)) = (self.renewed.lock(), self.rf.lock()) {
            renewed.retain(|c, _| rf.contains_key(c));
        }
    }
}
