//! Self-healing: the blocks this node answers for, their live holders, and the copies to add.

use std::collections::BTreeSet;

use futures::StreamExt;
use libp2p::PeerId;
use rand::RngCore;
use tracing::{debug, info, warn};
use warren_protocol::ContentId;
use warren_storage_mesh::placement::{Candidate, PlacementPolicy};
use warren_storage_mesh::repair::RepairInput;

use crate::clock::unix_now_ms as now_ms;
use crate::error::NodeError;
use crate::storage::replicate::PushError;
use crate::storage::{Mesh, PARALLEL};
use warren_storage_mesh::audit::Holding;

impl Mesh {
    /// Blocks this node is responsible for: held replicas and the blocks of its pinned files.
    /// A pinned file whose manifests cannot be read is logged and left out; the others are
    /// still listed (one lost manifest never stops repair node-wide).
    pub(crate) async fn responsibilities(&self) -> Result<Vec<(ContentId, u64)>, NodeError> {
        let r = self.store_call(|s| s.responsibilities()).await?;
        for (root, e) in &r.unreadable {
            warn!(file = %root, "pinned file not repaired: its manifests cannot be read: {e}");
        }
        Ok(r.blocks)
    }

    /// One pass of self-healing over every block this node is responsible for.
    pub async fn repair_pass(&self) -> Result<usize, NodeError> {
        let (me, candidates) = self.client.candidates().await?;
        let live: BTreeSet<PeerId> = candidates.iter().map(|c| c.peer).collect();
        let mut blocks = self.responsibilities().await?;
        // Random order: when the audit budget runs out, the blocks left for the next pass are
        // different ones each time (none is starved).
        rand::seq::SliceRandom::shuffle(blocks.as_mut_slice(), &mut rand::rngs::OsRng);
        // The dashboard's copy counts follow what this node still answers for.
        if let Ok(mut copies) = self.copies.lock() {
            let current: std::collections::HashSet<ContentId> =
                blocks.iter().map(|(c, _)| *c).collect();
            copies.retain(|c, _| current.contains(c));
        }
        if let Ok(mut p) = self.pacer.lock() {
            p.start_pass();
        }
        let pushed: Vec<usize> = futures::stream::iter(blocks)
            .map(|(cid, len)| self.repair_block(cid, len, me, &candidates, &live))
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        if let Ok(mut p) = self.pacer.lock() {
            p.end_pass();
            debug!(
                budget = p.budget(),
                every_ms = p.interval_ms(self.config.repair_every_ms),
                "audit pace"
            );
        }
        Ok(pushed.into_iter().sum())
    }

    /// The RF `cid`'s file was placed with: as this node put it, else as the peer that pushed
    /// it here said, else the default.
    pub(crate) async fn base_rf(&self, cid: ContentId) -> usize {
        if let Some(rf) = self.rf.lock().ok().and_then(|m| m.get(&cid).copied()) {
            return rf;
        }
        match self.store_call(move |s| s.held_rf(&cid)).await {
            Ok(Some(rf)) => usize::from(rf),
            _ => self.config.rf,
        }
    }

    /// Checks one block's holders and, if this node is the closest good holder, restores RF.
    pub(crate) async fn repair_block(
        &self,
        cid: ContentId,
        len: u64,
        me: PeerId,
        candidates: &[Candidate],
        live: &BTreeSet<PeerId>,
    ) -> usize {
        let now = now_ms();
        let Ok(providers) = self.client.providers(cid).await else {
            return 0;
        };
        // A provider record is a claim; a holder counts once it proved it has the block. A
        // holder left unaudited for want of budget leaves the count unknown: no plan this pass.
        let mut holders = vec![me];
        for p in providers
            .into_iter()
            .filter(|p| *p != me && live.contains(p))
        {
            match self.holds(cid, len, p, now).await {
                Some(true) => holders.push(p),
                Some(false) => {}
                None => return 0,
            }
        }
        let base_rf = self.base_rf(cid).await;
        self.renew_holders(cid, &holders[1..], base_rf).await;
        let hot_extra = self
            .hot
            .lock()
            .map(|mut h| h.extra_rf(&cid.hash(), now))
            .unwrap_or(0);
        let rf = base_rf + hot_extra;
        if let Ok(mut copies) = self.copies.lock() {
            copies.insert(cid, (holders.len(), rf));
        }
        // The origin's pinned copy is one of the RF + 1 copies of a file it put. The base copies
        // prefer cold-tier peers, the extra copies of hot content hot-tier peers.
        let policy = PlacementPolicy {
            rf: base_rf + 1,
            hot_extra,
            ..PlacementPolicy::default()
        };
        let hash = cid.hash();
        let plan = match self.repairer.lock() {
            Ok(mut r) => r.plan(
                &RepairInput {
                    block: &hash,
                    block_len: len,
                    me: &me,
                    holders: &holders,
                    candidates,
                    policy,
                },
                now,
            ),
            Err(_) => return 0,
        };
        let mut pushed = 0;
        for action in plan.actions {
            match self.push(cid, action.to, base_rf).await {
                Ok(()) => {
                    pushed += 1;
                    info!(block = %cid, to = %action.to, "repaired: copy restored");
                }
                Err(PushError::Local(e)) => {
                    warn!(block = %cid, "cannot repair from here: {e}");
                    break;
                }
                Err(PushError::Remote(e)) => {
                    warn!(block = %cid, to = %action.to, "repair push failed: {e}");
                    if let Ok(mut r) = self.repairer.lock() {
                        r.target_failed(&hash, &action.to, now_ms());
                    }
                }
            }
        }
        pushed
    }

    /// Whether `peer` holds a good copy of `cid`: a recent audit result, or a fresh audit within
    /// the pass's budget. A holder that failed, or whose audits go unanswered (its back-off
    /// runs), is not counted; `None` when it would need an audit the budget has no room for.
    pub(crate) async fn holds(
        &self,
        cid: ContentId,
        len: u64,
        peer: PeerId,
        now: u64,
    ) -> Option<bool> {
        let holding = self
            .ledger
            .lock()
            .map_or(Holding::Unknown, |l| l.holding(&peer, &cid, now));
        match holding {
            Holding::Failed | Holding::NoAnswer => return Some(false),
            Holding::Verified => return Some(true),
            Holding::Unknown => {}
        }
        if !self.pacer.lock().is_ok_and(|mut p| p.try_audit()) {
            return None;
        }
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let record = self.audit(cid, len, peer, seed).await;
        if let Ok(mut p) = self.pacer.lock() {
            p.audited(record.answered);
        }
        Some(record.passed)
    }
}
