//! The dashboard: what it shows, the feed other services fill, and the DHT size estimate.
//!
//! `GET /dashboard` (public, no data in it) serves one static HTML page; the page reads the API
//! token from its URL fragment (`/dashboard#token=…`, printed by `warren dashboard`) and polls
//! `GET /v1/dashboard` (token required, like every `/v1` call) every two seconds. A fragment is
//! never sent to the server, never logged, and stays out of `Referer` headers, so the token is
//! only ever sent as the `Authorization` header, exactly as the CLI sends it.
//!
//! Jobs and circuits are read from the inference and onion services each time `/v1/dashboard`
//! answers (`api::activity`); storage refusals come from [`Activity`], the feed the mesh and the
//! API fill. The page shows "none yet" for an empty list.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::api::{NatView, PeerInfo, StatusInfo};
use crate::mesh::AuditRecord;

/// The page, served as is.
pub const PAGE_HTML: &str = include_str!("dashboard.html");

/// How many recent storage refusals are kept for the dashboard.
const REFUSALS_KEPT: usize = 10;

/// One inference job, as the dashboard lists it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JobView {
    /// Job id.
    pub id: String,
    /// Model name or id.
    pub model: String,
    /// The other side: the operator (for a job this node asked for) or the requester.
    pub peer: String,
    /// queued, running, done, failed.
    pub state: String,
    /// Seconds since it started.
    pub age_secs: u64,
}

/// One onion circuit, as the dashboard lists it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CircuitView {
    /// Circuit id.
    pub id: String,
    /// This node's position: origin, gate, middle or relay.
    pub role: String,
    /// Hop peers, as far as this node knows them.
    pub hops: Vec<String>,
    /// building, open, closed.
    pub state: String,
    /// Seconds since it was built.
    pub age_secs: u64,
}

/// What other services report for the dashboard.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ActivityView {
    /// Inference jobs: filled by the API from the inference service's job log when it answers,
    /// not kept in the feed.
    pub jobs: Vec<JobView>,
    /// Onion circuits: filled by the API from the onion service's registry when it answers, not
    /// kept in the feed.
    pub circuits: Vec<CircuitView>,
    /// Blocks or puts refused because the storage offer was full, in total.
    pub storage_refusals: u64,
    /// The latest refusals, newest last, as logged.
    pub recent_refusals: Vec<String>,
}

/// The dashboard feed; services update it, the API reads a snapshot.
#[derive(Debug, Default)]
pub struct Activity {
    inner: Mutex<ActivityView>,
}

impl Activity {
    /// Changes the feed under its lock.
    pub fn update(&self, f: impl FnOnce(&mut ActivityView)) {
        if let Ok(mut v) = self.inner.lock() {
            f(&mut v);
        }
    }

    /// A copy of the feed.
    pub fn snapshot(&self) -> ActivityView {
        self.inner.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Notes one refusal for lack of space (a replica or a put).
    pub fn storage_refused(&self, message: String) {
        self.update(|v| {
            v.storage_refusals += 1;
            v.recent_refusals.push(message);
            if v.recent_refusals.len() > REFUSALS_KEPT {
                v.recent_refusals.remove(0);
            }
        });
    }
}

/// One block this node holds, with the replication factor wanted for it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeldBlock {
    /// Block id.
    pub cid: String,
    /// Copies the mesh keeps of it (the file's RF; the default when unknown).
    pub target_rf: usize,
    /// Copies the last repair pass verified, this node's included (`None` before the first).
    pub copies: Option<usize>,
}

/// Storage at a glance.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StorageView {
    /// Blocks stored.
    pub blocks: u64,
    /// Bytes stored.
    pub used_bytes: u64,
    /// Bytes offered.
    pub offered_bytes: u64,
    /// hot or cold.
    pub tier: String,
    /// Replicas held for other peers.
    pub held_blocks: usize,
}

/// `GET /v1/dashboard`: everything the page shows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DashboardView {
    /// The node's status.
    pub status: StatusInfo,
    /// Connected peers.
    pub peers: Vec<PeerInfo>,
    /// Storage used and offered.
    pub storage: StorageView,
    /// Replicas held (at most 50 listed).
    pub held: Vec<HeldBlock>,
    /// The latest audits this node ran (at most 20, newest first).
    pub audits: Vec<AuditRecord>,
    /// The reputation table, as `GET /v1/reputation`.
    pub reputation: serde_json::Value,
    /// Reachability.
    pub nat: NatView,
    /// Jobs, circuits and storage refusals.
    pub activity: ActivityView,
}

/// Estimates how many peers the DHT has from this node's routing table.
///
/// `buckets` are `(i, n)`: `n` peers at XOR distance in `[2^i, 2^(i+1))`. Buckets near this
/// node are complete (they hold every peer that close), far ones are capped at k = 20, so the
/// estimate uses the closest buckets that together hold k peers: they cover `2^(i+1)` of the
/// `2^256` keys, so the network has about `count · 2^256 / 2^(i+1)` peers. With fewer than k peers
/// known in all, the table is the whole network: the answer is their number plus this node.
pub fn dht_size_estimate(buckets: &[(u32, usize)]) -> u64 {
    const K: usize = 20;
    let mut sorted = buckets.to_vec();
    sorted.sort_unstable();
    let total: usize = sorted.iter().map(|(_, n)| n).sum();
    if total < K {
        return total as u64 + 1;
    }
    let mut count = 0usize;
    for (i, n) in sorted {
        count += n;
        if count >= K {
            let estimate = count as f64 * 2f64.powi(256 - (i as i32 + 1));
            return if estimate >= u64::MAX as f64 {
                u64::MAX
            } else {
                (estimate as u64).max(total as u64 + 1)
            };
        }
    }
    total as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_tables_are_the_whole_network() {
        assert_eq!(dht_size_estimate(&[]), 1);
        assert_eq!(dht_size_estimate(&[(255, 3), (254, 2)]), 6);
    }

    #[test]
    fn density_of_close_buckets_scales_up() {
        // A network of 2^12 peers: about 2^(12-256+i+1) peers per bucket i near this node.
        // Buckets 244..=255 hold 1, 2, 4, … peers (256-i-… halving toward this node).
        let mut buckets = Vec::new();
        for i in 244u32..=255 {
            let n = 1usize << (i - 244);
            buckets.push((i, n.min(20)));
        }
        let e = dht_size_estimate(&buckets);
        // The closest 1+2+4+8+16 = 31 peers lie within 2^249 of this node: 31 · 2^7 = 3968.
        assert_eq!(e, 3968);
        assert!((2048..=8192).contains(&e), "{e}");
    }

    #[test]
    fn refusals_keep_the_latest() {
        let a = Activity::default();
        for i in 0..15 {
            a.storage_refused(format!("r{i}"));
        }
        let v = a.snapshot();
        assert_eq!(v.storage_refusals, 15);
        assert_eq!(v.recent_refusals.len(), REFUSALS_KEPT);
        assert_eq!(v.recent_refusals.last().unwrap(), "r14");
        assert!(v.jobs.is_empty() && v.circuits.is_empty());
    }
}
