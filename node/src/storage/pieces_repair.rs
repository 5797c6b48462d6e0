//! Lazy repair of files kept as pieces (spec/storage.md, "Pieces"): each piece's holder is
//! audited against the piece's id; the pure `stripe::assess` decides per stripe whether enough
//! pieces count; below the threshold this node, the one repairer, fetches `k` pieces, rebuilds
//! only the pieces that no longer count and places each on a peer that holds no piece of the
//! stripe.

use std::collections::BTreeSet;

use libp2p::PeerId;
use rand::RngCore;
use tracing::{info, warn};
use warren_protocol::ContentId;
use warren_storage_mesh::pieces::PieceManifest;
use warren_storage_mesh::placement::rank;
use warren_storage_mesh::stripe::{PieceState, StripePolicy, StripeVerdict, assess};

use crate::clock::unix_now_ms as now_ms;
use crate::error::NodeError;
use crate::storage::Mesh;
use crate::storage::pieces::PIECE_RF;
use crate::view::{PiecesHealth, StripeHealth};

/// Most pieces whose first-missed time is remembered (a bound on remote-driven state).
const MISSING_MAX: usize = 1 << 16;

impl Mesh {
    /// Checks every stripe of the piece manifest `id`: audits a holder of each piece (the
    /// DHT's providers of it) against the piece's id; a piece whose holders do not pass is
    /// offline since the first check that missed it, and gone when a holder answered without
    /// it. With `repair`, rebuilds the stripes that fall below the threshold.
    pub async fn check_pieces(
        &self,
        id: ContentId,
        repair: bool,
    ) -> Result<PiecesHealth, NodeError> {
        let m = self.piece_manifest(id).await?;
        let policy = StripePolicy {
            lazy_ms: self.config.pieces_lazy_ms,
            ..m.code.policy()
        };
        let (me, candidates) = self.client.candidates().await?;
        let mut view = PiecesHealth {
            manifest: id.to_string(),
            data: m.code.data,
            parity: m.code.parity,
            repair_at: policy.repair_at,
            ..PiecesHealth::default()
        };
        for (s, span) in m.stripes().iter().enumerate() {
            let ids = m.stripe_pieces(s);
            let mut states = Vec::with_capacity(ids.len());
            let mut holders: Vec<Option<PeerId>> = Vec::with_capacity(ids.len());
            let mut seen: BTreeSet<PeerId> = BTreeSet::new();
            let checks = ids
                .iter()
                .map(|cid| self.piece_state(*cid, span.piece_size as u64, me));
            for check in futures::future::join_all(checks).await {
                let (state, holder, asked) = check?;
                seen.extend(asked);
                states.push(state);
                holders.push(holder);
            }
            self.renew_pieces(&ids, &holders, me).await;
            let now = now_ms();
            let online = states.iter().filter(|p| **p == PieceState::Online).count();
            let verdict = assess(&policy, &states, now);
            let counted = match &verdict {
                StripeVerdict::Healthy { counted } => *counted,
                _ => states
                    .iter()
                    .filter(|p| match p {
                        PieceState::Online => true,
                        PieceState::Offline { since_ms } => {
                            now.saturating_sub(*since_ms) < policy.lazy_ms
                        }
                        PieceState::Gone => false,
                    })
                    .count(),
            };
            let mut restored = 0;
            if let (true, StripeVerdict::Repair { rebuild, sources }) = (repair, &verdict) {
                // Peers that hold a piece of this stripe, or were asked for one and failed, get
                // none of the rebuilt pieces.
                let mut exclude: Vec<PeerId> = seen.into_iter().collect();
                exclude.push(me);
                let order: Vec<PeerId> = rank(
                    &m.stripe_key(s),
                    candidates
                        .iter()
                        .map(|c| &c.peer)
                        .filter(|p| !exclude.contains(p)),
                );
                restored = self
                    .rebuild_stripe(&m, s, sources, rebuild, &holders, &order)
                    .await?;
            }
            view.stripes.push(StripeHealth {
                stripe: s,
                online,
                counted,
                verdict: match verdict {
                    StripeVerdict::Healthy { .. } => "healthy".into(),
                    StripeVerdict::Repair { rebuild, .. } => {
                        format!("repair {} pieces", rebuild.len())
                    }
                    StripeVerdict::Wait { .. } | StripeVerdict::Gather { .. } => {
                        "below the threshold, fewer than k pieces online: wait".into()
                    }
                },
                restored,
            });
            view.restored += restored;
        }
        if view.restored > 0 {
            info!(pieces = %id, restored = view.restored, "pieces repaired");
        }
        Ok(view)
    }

    /// How piece `cid` looks now: `Online` when one of its providers passes an audit of it
    /// (answers that provider), `Gone` when they answered without it, else offline since the
    /// first check that missed it. Also answers every provider asked.
    async fn piece_state(
        &self,
        cid: ContentId,
        len: u64,
        me: PeerId,
    ) -> Result<(PieceState, Option<PeerId>, Vec<PeerId>), NodeError> {
        if self.store_call(move |s| s.has_block(&cid)).await? {
            self.seen_piece(&cid);
            return Ok((PieceState::Online, Some(me), vec![me]));
        }
        let providers: Vec<PeerId> = self
            .client
            .providers(cid)
            .await?
            .into_iter()
            .filter(|p| *p != me)
            .collect();
        let mut answered_without = false;
        for p in &providers {
            let mut seed = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut seed);
            let record = self.audit(cid, len, *p, seed).await;
            if record.passed {
                self.seen_piece(&cid);
                return Ok((PieceState::Online, Some(*p), providers));
            }
            answered_without |= record.answered;
        }
        let state = if answered_without {
            PieceState::Gone
        } else {
            PieceState::Offline {
                since_ms: self.missed_piece(&cid),
            }
        };
        Ok((state, None, providers))
    }

    /// Renews the leases of the pieces `ids` that this node placed (put, or rebuilt) at the
    /// `holders` found (other than this node) when half of the last lease has passed: a holder
    /// keeps a lease under the origin that signed it, so only that node renews it. The origin's
    /// sweep renews only the blocks it holds or pinned, and it holds no piece: before this, a
    /// piece's lease ended `lease_secs` after its put.
    async fn renew_pieces(&self, ids: &[ContentId], holders: &[Option<PeerId>], me: PeerId) {
        for (cid, holder) in ids.iter().zip(holders) {
            if let Some(peer) = holder.filter(|p| *p != me) {
                self.renew_holders(*cid, &[peer], PIECE_RF).await;
            }
        }
    }

    /// Whether this node placed (put, or rebuilt) a piece of `m` whose lease is due for renewal
    /// (half of it passed since the last).
    pub(super) fn piece_renewals_due(&self, m: &PieceManifest) -> bool {
        (0..m.stripes().len()).any(|s| m.stripe_pieces(s).iter().any(|c| self.renewal_due(c)))
    }

    /// Forgets that `cid` was missed.
    fn seen_piece(&self, cid: &ContentId) {
        if let Ok(mut m) = self.piece_missing.lock() {
            m.remove(cid);
        }
    }

    /// When `cid` was first missed (now, if this is the first time).
    fn missed_piece(&self, cid: &ContentId) -> u64 {
        let now = now_ms();
        let Ok(mut m) = self.piece_missing.lock() else {
            return now;
        };
        if m.len() >= MISSING_MAX && !m.contains_key(cid) {
            m.clear();
        }
        *m.entry(*cid).or_insert(now)
    }

    /// Fetches `k` of the pieces at `sources` (from their `holders`), rebuilds the pieces at
    /// `rebuild` and pushes each to the next peer of `order` that takes it. Answers the pieces
    /// placed.
    async fn rebuild_stripe(
        &self,
        m: &PieceManifest,
        s: usize,
        sources: &[usize],
        rebuild: &[usize],
        holders: &[Option<PeerId>],
        order: &[PeerId],
    ) -> Result<usize, NodeError> {
        let ids = m.stripe_pieces(s);
        let k = usize::from(m.code.data);
        let mut got: Vec<(usize, Vec<u8>)> = Vec::with_capacity(k);
        for &i in sources {
            if got.len() == k {
                break;
            }
            let hint = holders.get(i).copied().flatten();
            match self.fetch_piece(ids[i], hint).await {
                Ok(b) => got.push((i, b)),
                Err(e) => warn!(stripe = s, piece = i, "repair source failed: {e}"),
            }
        }
        let rebuilt = m.rebuild_pieces(s, &got, rebuild)?;
        let mut placed = 0;
        let mut next = 0usize;
        for (i, bytes) in rebuilt {
            let cid = ids[i];
            self.remember_rf(&[(cid, bytes.len() as u64)], PIECE_RF);
            // Each piece to a new peer while there are enough, then round again.
            for attempt in 0..order.len() {
                let to = order[(next + attempt) % order.len()];
                match self.push_data(cid, bytes.clone(), to, PIECE_RF).await {
                    Ok(()) => {
                        info!(stripe = s, piece = i, peer = %to, "piece rebuilt and placed");
                        placed += 1;
                        next += attempt + 1;
                        break;
                    }
                    Err(e) => {
                        warn!(stripe = s, piece = i, peer = %to, "rebuilt piece not stored: {e}")
                    }
                }
            }
        }
        Ok(placed)
    }
}
