//! `warren where`: the holders of every block of a file.

use std::collections::HashMap;

use futures::StreamExt;
use libp2p::PeerId;
use warren_protocol::ContentId;

use crate::clock::unix_now_ms as now_ms;
use crate::error::NodeError;
use crate::storage::FetchSession;
use crate::storage::{Mesh, PARALLEL};
use crate::view::{BlockHolders, HolderView, WhereReport};

impl Mesh {
    /// Where the blocks of the file `root` are: for each block (root first, in the order of the
    /// tree walk), the peers whose provider records claim it and whether each is connected now,
    /// this node included when it stores the block. Fetches the file's manifests if they are not
    /// local (not its chunks).
    pub async fn where_is(&self, root: ContentId) -> Result<WhereReport, NodeError> {
        let dag = self
            .dag_fetching_manifests(root, &FetchSession::default())
            .await?;
        let (me, candidates) = self.client.candidates().await?;
        let tiers: HashMap<PeerId, warren_protocol::Tier> =
            candidates.iter().map(|c| (c.peer, c.tier)).collect();
        let rows: Vec<Result<BlockHolders, NodeError>> = futures::stream::iter(dag)
            .map(|(cid, len)| {
                let tiers = &tiers;
                async move {
                    let here = self.store_call(move |s| s.has_block(&cid)).await?;
                    let mut claimed = self.client.providers(cid).await?;
                    claimed.retain(|p| *p != me);
                    claimed.sort();
                    claimed.dedup();
                    let mut holders: Vec<HolderView> = Vec::new();
                    if here {
                        holders.push(HolderView {
                            peer: me.to_string(),
                            live: true,
                            this_node: true,
                            tier: None,
                        });
                    }
                    holders.extend(claimed.iter().map(|p| HolderView {
                        peer: p.to_string(),
                        live: tiers.contains_key(p),
                        this_node: false,
                        tier: tiers.get(p).copied(),
                    }));
                    let rf_held = holders.iter().filter(|h| h.live).count();
                    let hot_extra = self
                        .hot
                        .lock()
                        .map(|mut h| h.extra_rf(&cid.hash(), now_ms()))
                        .unwrap_or(0);
                    Ok(BlockHolders {
                        block: cid.to_string(),
                        len,
                        holders,
                        rf_held,
                        hot_extra,
                    })
                }
            })
            .buffered(PARALLEL)
            .collect()
            .await;
        let blocks = rows.into_iter().collect::<Result<Vec<_>, _>>()?;
        let wanted_rf = self.rf.lock().ok().and_then(|m| m.get(&root).copied());
        Ok(WhereReport {
            cid: root.to_string(),
            min_rf_held: blocks.iter().map(|b| b.rf_held).min().unwrap_or(0),
            wanted_rf,
            blocks,
        })
    }
}
