//! Self-healing: the blocks this node answers for, their live holders, and the copies to add.

use std::collections::BTreeSet;

use libp2p::PeerId;
use rand::RngCore;
use tracing::{debug, info, warn};
use warren_protocol::ContentId;
use warren_storage_mesh::placement::{Candidate, PlacementPolicy};
use warren_storage_mesh::repair::{PlanStatus, RepairInput};

use crate::clock::unix_now_ms as now_ms;
use crate::error::NodeError;
use crate::storage::Mesh;
use crate::storage::replicate::PushError;
use warren_storage_mesh::audit::Holding;
use warren_storage_mesh::background::Work;

impl Mesh {
    /// Blocks this node is responsible for: held replicas and the blocks of its pinned files.
    /// A pinned file whose manifests cannot be read is logged and left out; the others are
    /// still listed (one lost manifest never stops repair node-wide).
    pub(crate) async fn responsibilities(&self) -> Result<Vec<(ContentId, u64)>, NodeError> {
        Ok(self.responsibilities_with_own().await?.0)
    }

    /// [`Mesh::responsibilities`], and the blocks of this node's own (pinned) files among them.
    pub(crate) async fn responsibilities_with_own(
        &self,
    ) -> Result<(Vec<(ContentId, u64)>, Vec<ContentId>), NodeError> {
        let r = self.store_call(|s| s.responsibilities()).await?;
        for (root, e) in &r.unreadable {
            warn!(file = %root, "pinned file not repaired: its manifests cannot be read: {e}");
        }
        Ok((r.blocks, r.own))
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

    /// Checks one block's holders and, if this node is the closest good holder, restores RF. A
    /// check that cannot finish (no DHT or audit budget left, copies missing but not restored)
    /// is retried soon; the holders found are remembered by the sweep (a holder that goes away
    /// makes the block urgent). This node's provider record for the block is renewed when due.
    ///
    /// The holders the last check found are audited first: when they still make the full count
    /// of copies, the check needs no provider lookup (a steady block costs its audits, and a
    /// renewal every other period). Otherwise the providers are looked up (one DHT query).
    pub(crate) async fn repair_block(
        &self,
        cid: ContentId,
        len: u64,
        work: Work,
        me: PeerId,
        candidates: &[Candidate],
        live: &BTreeSet<PeerId>,
    ) -> usize {
        let now = now_ms();
        let hash = cid.hash();
        let retry = || {
            if let Ok(mut s) = self.sweep.lock() {
                let at = s.retry_at(now_ms());
                s.retry(&hash, at);
            }
        };
        let base_rf = self.base_rf(cid).await;
        let hot_extra = self
            .hot
            .lock()
            .map(|mut h| h.extra_rf(&cid.hash(), now))
            .unwrap_or(0);
        let rf = base_rf + hot_extra;
        // A provider record is a claim; a holder counts once it proved it has the block. A
        // holder left unaudited for want of budget leaves the count unknown: no plan this pass.
        let mut holders = vec![me];
        let mut asked = vec![me];
        // Every check audits the remembered holder proven longest ago, so the block is audited at
        // every check and its holders in turn; the others count on their proofs' trust.
        let (remembered, stalest) = self
            .sweep
            .lock()
            .map(|s| (s.holders(&hash), s.stalest(&hash, |p| live.contains(p))))
            .unwrap_or_default();
        for p in remembered.into_iter().filter(|p| live.contains(p)) {
            asked.push(p);
            match self.holds(cid, len, p, now, work, Some(p) == stalest).await {
                Some(true) => holders.push(p),
                Some(false) => {}
                None => {
                    retry();
                    return 0;
                }
            }
        }
        if holders.len() < rf + 1 {
            if !self.budget.lock().is_ok_and(|mut b| b.try_dht(now, work)) {
                retry();
                return 0;
            }
            let Ok(providers) = self.client.providers(cid).await else {
                retry();
                return 0;
            };
            let new: Vec<PeerId> = providers
                .into_iter()
                .filter(|p| !asked.contains(p) && live.contains(p))
                .collect();
            for p in new {
                match self.holds(cid, len, p, now, work, false).await {
                    Some(true) => holders.push(p),
                    Some(false) => {}
                    None => {
                        retry();
                        return 0;
                    }
                }
            }
        }
        if let Ok(mut s) = self.sweep.lock() {
            s.holders_found(&hash, &holders[1..]);
        }
        self.renew_provider_record(cid, now).await;
        self.renew_holders(cid, &holders[1..], base_rf).await;
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
        // Anything but healthy is looked at again soon: a closer holder that does not restore
        // the copies is stood in for (the repairer's stand-in delay).
        let settled = matches!(plan.status, PlanStatus::Healthy { .. });
        let mut pushed = 0;
        for action in plan.actions {
            match self.push(cid, action.to, base_rf).await {
                Ok(()) => {
                    pushed += 1;
                    holders.push(action.to);
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
        // The copies pushed are holders the next check audits without a lookup.
        if pushed > 0
            && let Ok(mut s) = self.sweep.lock()
        {
            s.holders_found(&hash, &holders[1..]);
        }
        // Copies missing and not (all) restored: look again soon rather than in a period.
        if !settled && holders.len() < rf + 1 {
            retry();
        }
        pushed
    }

    /// Renews this node's provider record for `cid` when it was not announced within half a
    /// recheck period (kad's own republishing is off: the sweep spreads the renewals over the
    /// period, within the DHT budget). Skipped, not retried, when the budget has no room: the
    /// record lives 48 h, three default periods.
    async fn renew_provider_record(&self, cid: ContentId, now: u64) {
        let hash = cid.hash();
        if !self.sweep.lock().is_ok_and(|s| s.renewal_due(&hash, now)) {
            return;
        }
        if !self
            .budget
            .lock()
            .is_ok_and(|mut b| b.try_dht(now, Work::Routine))
        {
            return;
        }
        if let Ok(mut s) = self.sweep.lock() {
            s.renewed(&hash, now);
        }
        if let Err(e) = self.client.provide(vec![cid]).await {
            debug!(block = %cid, "cannot renew the provider record: {e}");
        }
    }

    /// Whether `peer` holds a good copy of `cid`: a recent audit result (the ledger's, or, unless
    /// `stalest`, the sweep's proof within its trust), or a fresh audit within the pass's and the
    /// background budget. A holder that failed, or whose audits go unanswered (its back-off
    /// runs), is not counted; `None` when it would need an audit the budget has no room for.
    pub(crate) async fn holds(
        &self,
        cid: ContentId,
        len: u64,
        peer: PeerId,
        now: u64,
        work: Work,
        stalest: bool,
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
        if !stalest
            && self
                .sweep
                .lock()
                .is_ok_and(|s| s.verified_recently(&cid.hash(), &peer, now))
        {
            return Some(true);
        }
        if !self.pacer.lock().is_ok_and(|mut p| p.try_audit()) {
            return None;
        }
        if !self.budget.lock().is_ok_and(|mut b| b.try_audit(now, work)) {
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
