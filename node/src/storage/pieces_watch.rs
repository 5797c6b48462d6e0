//! The background repairer of files kept as pieces (spec/storage.md, "Pieces: repair"): every
//! node that stores a piece manifest watches its file; on each tick the files due (a few, the
//! pure [`PiecesWatch`](warren_storage_mesh::pieces_watch::PiecesWatch) says which) are checked
//! by this node only when it is their one repairer, the live manifest holder XOR-closest to the
//! manifest id (`pieces_watch::is_repairer`). The check is `warren pieces ID --repair`'s: a holder
//! of every piece audited, `stripe::assess` per stripe, only the missing pieces rebuilt, and the
//! leases of the pieces found renewed.

use std::collections::BTreeSet;

use libp2p::PeerId;
use tracing::{debug, info};
use warren_protocol::ContentId;
use warren_storage_mesh::pieces_watch::is_repairer;

use crate::clock::unix_now_ms as now_ms;
use crate::error::NodeError;
use crate::storage::Mesh;

/// Files checked per tick, at most (bounded work: each check audits a holder of every piece).
pub(super) const FILES_PER_TICK: usize = 4;

impl Mesh {
    /// One tick of the background repairer: the watched files due, each checked and repaired
    /// when this node is its repairer. Answers the pieces restored.
    pub(crate) async fn pieces_tick(&self) -> usize {
        let due = self
            .pieces_watch
            .lock()
            .map(|mut w| w.next_due(now_ms()))
            .unwrap_or_default();
        let mut restored = 0;
        for id in due {
            match self.pieces_duty(id).await {
                Ok(n) => restored += n,
                Err(e) => debug!(pieces = %id, "background pieces check: {e}"),
            }
        }
        restored
    }

    /// Checks (and repairs) the file of piece manifest `id` when this node is its repairer;
    /// forgets it when its manifest is no longer stored here.
    async fn pieces_duty(&self, id: ContentId) -> Result<usize, NodeError> {
        if !self.store_call(move |s| s.has_block(&id)).await? {
            if let Ok(mut w) = self.pieces_watch.lock() {
                w.forget(&id);
            }
            return Ok(0);
        }
        let me = self.key.public().to_peer_id();
        let connected: BTreeSet<PeerId> = self
            .client
            .peers()
            .await?
            .iter()
            .filter_map(|p| p.peer_id.parse().ok())
            .collect();
        let live: Vec<PeerId> = self
            .client
            .providers(id)
            .await?
            .into_iter()
            .filter(|p| connected.contains(p))
            .collect();
        let repairer = is_repairer(&id, me, &live);
        // A node that placed pieces of the file checks it too when their leases are due for
        // renewal (only the node that signed a lease renews it), without repairing.
        if !repairer && !self.piece_renewals_due(&self.piece_manifest(id).await?) {
            debug!(pieces = %id, holders = live.len(), "pieces: a closer manifest holder repairs");
            return Ok(0);
        }
        let view = self.check_pieces(id, repairer).await?;
        if view.restored > 0 {
            info!(pieces = %id, restored = view.restored, "pieces restored in the background");
            self.metrics.counters.repairs.inc_by(view.restored as u64);
        }
        Ok(view.restored)
    }

    /// Watches the piece manifest `id` (put here).
    pub(super) fn watch_pieces(&self, id: ContentId) {
        if let Ok(mut w) = self.pieces_watch.lock() {
            w.watch(id, now_ms());
        }
    }
}
