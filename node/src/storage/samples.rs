//! This node's own latency and uptime samples of its connected peers, counted here and published
//! signed on the reputation topic, paced by `warren_protocol::reputation::sampling` (at most one
//! latency sample per peer a minute, one uptime sample per peer an hour).

use std::time::Duration;

use libp2p::PeerId;
use tracing::debug;
use warren_protocol::reputation::sampling::{Sampler, Seen};

use crate::clock::unix_now_ms as now_ms;
use crate::storage::Mesh;

/// How often the connected peers are looked at.
pub(crate) const SAMPLE_TICK: Duration = Duration::from_secs(5);

impl Mesh {
    /// One tick: the samples `sampler` says are due, observed and published.
    pub(crate) async fn sample_peers(&self, sampler: &mut Sampler<PeerId>) {
        let peers = match self.client.peers().await {
            Ok(p) => p,
            Err(e) => {
                debug!("no peer list for samples: {e}");
                return;
            }
        };
        let seen: Vec<Seen<PeerId>> = peers
            .iter()
            .filter_map(|p| {
                Some(Seen {
                    peer: p.peer_id.parse().ok()?,
                    rtt_ms: p.rtt_ms.map(|ms| ms.max(0.0).round() as u64),
                    connected_secs: p.connected_secs,
                })
            })
            .collect();
        let now = now_ms();
        for s in sampler.tick(now, &seen) {
            self.observe_value(s.peer, s.kind, s.value, None, now).await;
        }
    }
}
