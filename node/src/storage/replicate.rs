//! Placing a file's blocks on other peers at its RF, and announcing them.

use std::collections::BTreeSet;

use futures::StreamExt;
use libp2p::PeerId;
use tracing::{debug, info, warn};
use warren_protocol::ContentId;
use warren_protocol::block_transfer::{Request, Response, StoreRequest, StoreResponse};
use warren_storage_mesh::placement::{MAX_RF, PlacementPolicy, place};

use crate::clock::unix_now_ms as now_ms;
use crate::error::NodeError;
use crate::storage::serve::log_bad_copy;
use crate::storage::{Mesh, PARALLEL};
use crate::view::ReplicationReport;

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PushError {
    /// This node has no good copy to send.
    #[error("{0}")]
    Local(String),
    /// The target refused or could not be reached.
    #[error("{0}")]
    Remote(String),
}

impl Mesh {
    /// Places every block of the file `root` on the `rf` peers XOR-closest to it (other than
    /// this node), and announces this node as a provider of all of them.
    pub async fn replicate(
        &self,
        root: ContentId,
        rf: usize,
    ) -> Result<ReplicationReport, NodeError> {
        let dag = self.announce(root).await?;
        let (me, candidates) = self.client.candidates().await?;
        self.want_rf(root, &dag, rf).await?;
        let policy = PlacementPolicy::with_rf(rf);
        let mut jobs = Vec::new();
        for (cid, len) in &dag {
            for to in place(&cid.hash(), &candidates, &policy, *len, &[me]).into_peers() {
                jobs.push((*cid, to));
            }
        }
        let results: Vec<(PeerId, Result<(), PushError>)> = futures::stream::iter(jobs)
            .map(|(cid, to)| async move { (to, self.push(cid, to, rf).await) })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let mut report = ReplicationReport {
            rf,
            blocks: dag.len(),
            ..Default::default()
        };
        let mut holders = BTreeSet::new();
        for (to, r) in results {
            match r {
                Ok(()) => {
                    report.copies += 1;
                    holders.insert(to.to_string());
                }
                Err(e) => {
                    report.failed += 1;
                    warn!(peer = %to, "replica not stored: {e}");
                }
            }
        }
        report.holders = holders.into_iter().collect();
        info!(%root, rf, copies = report.copies, holders = report.holders.len(), "replicated");
        Ok(report)
    }

    /// Keeps the file `root` on this node only (RF 0): announces it, so others can fetch it from
    /// here, and tells the repair pass to place no copies of it (unless it gets hot).
    pub async fn keep_here(&self, root: ContentId) -> Result<(), NodeError> {
        let dag = self.announce(root).await?;
        self.want_rf(root, &dag, 0).await
    }

    /// Remembers (durably, in the store) that the file `root`, of blocks `dag`, is kept at `rf`.
    pub(crate) async fn want_rf(
        &self,
        root: ContentId,
        dag: &[(ContentId, u64)],
        rf: usize,
    ) -> Result<(), NodeError> {
        let rf = rf.min(MAX_RF);
        self.remember_rf(dag, rf);
        let rf = u8::try_from(rf).unwrap_or(u8::MAX);
        self.store_call(move |s| s.set_file_rf(&root, rf)).await
    }

    /// Notes in memory that every block of `dag` is kept at `rf`.
    pub(crate) fn remember_rf(&self, dag: &[(ContentId, u64)], rf: usize) {
        if let Ok(mut wanted) = self.rf.lock() {
            for (cid, _) in dag {
                wanted.insert(*cid, rf);
            }
        }
    }

    /// Loads the RF of every file this node put (after a restart), so repair keeps each at its
    /// own RF rather than the default.
    pub(crate) async fn restore_file_rfs(&self) -> Result<usize, NodeError> {
        let files = self.store_call(|s| s.file_rfs()).await?;
        let mut restored = 0;
        for (root, rf) in files {
            match self.store_call(move |s| s.dag(&root)).await {
                Ok(dag) => {
                    self.remember_rf(&dag, usize::from(rf));
                    restored += 1;
                }
                Err(e) => debug!(%root, "RF of a file not restored: {e}"),
            }
        }
        Ok(restored)
    }

    /// Announces this node as a provider of every block of the file `root`; returns its blocks.
    pub async fn announce(&self, root: ContentId) -> Result<Vec<(ContentId, u64)>, NodeError> {
        let dag = self.store_call(move |s| s.dag(&root)).await?;
        self.client
            .provide(dag.iter().map(|(c, _)| *c).collect())
            .await?;
        Ok(dag)
    }

    /// Sends this node's copy of `cid` to `to`. A bad local copy (wrong hash, bytes gone) is
    /// discarded; one that cannot be read now is kept (a transient I/O error deletes nothing).
    /// Either way it is this node's fault, not the target's.
    pub(crate) async fn push(
        &self,
        cid: ContentId,
        to: PeerId,
        rf: usize,
    ) -> Result<(), PushError> {
        let store = self.store.clone();
        let data = tokio::task::spawn_blocking(move || match store.get_block(&cid) {
            Ok(data) => Ok(data),
            Err(e) => {
                let shown = e.to_string();
                match warren_storage_mesh::serve::check_bad_copy(&store, &cid, e) {
                    Some(bad) => log_bad_copy(&bad),
                    None => tracing::debug!(block = %cid, "local copy not read (kept): {shown}"),
                }
                Err(PushError::Local(format!(
                    "no readable local copy of {cid}: {shown}"
                )))
            }
        })
        .await
        .map_err(|e| PushError::Local(e.to_string()))??;
        self.push_data(cid, data, to, rf)
            .await
            .map_err(PushError::Remote)
    }

    pub(crate) async fn push_data(
        &self,
        cid: ContentId,
        data: Vec<u8>,
        to: PeerId,
        rf: usize,
    ) -> Result<(), String> {
        let ticket = self.ticket_for(cid, rf).await;
        let rf = u8::try_from(rf.min(MAX_RF)).unwrap_or(u8::MAX);
        let data_len = data.len() as u64;
        let request = Request::Store(StoreRequest {
            block: cid,
            data,
            rf,
            ticket,
        });
        match self
            .client
            .blocks(to, request)
            .await
            .map_err(|e| e.to_string())?
        {
            Response::Stored(StoreResponse { accepted: true, .. }) => {
                // It verified the bytes against the id before storing: a good copy now.
                let now = now_ms();
                if let Ok(mut ledger) = self.ledger.lock() {
                    ledger.stored(to, &cid, now);
                }
                // The sweep tracks the block from now on with `to` as a verified holder (a
                // holder that goes away makes it urgent); its first check is a period away.
                if let Ok(mut sweep) = self.sweep.lock() {
                    let due = now.saturating_add(self.config.recheck_period_ms());
                    sweep.add(cid, data_len, due, now);
                    sweep.verified(&cid.hash(), &to, now);
                }
                Ok(())
            }
            Response::Stored(StoreResponse { reason, .. }) => {
                Err(reason.unwrap_or_else(|| "refused".into()))
            }
            other => Err(format!("unexpected answer {}", other.kind())),
        }
    }
}
