//! The dashboard views and the activity feed other services fill.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{AuditRecord, NatView, PeerInfo, StatusInfo};

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
    /// The storage mesh's background work against its budget.
    pub background: BackgroundView,
}

/// The storage mesh's background work, as the dashboard shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BackgroundView {
    /// Blocks the sweep checks.
    pub blocks: u64,
    /// Blocks waiting for an urgent check.
    pub urgent: u64,
    /// The period in which every block is checked, seconds.
    pub period_secs: u64,
    /// CPU share of the process over the last 10 s, per mille of one core.
    pub cpu_permille: Option<u32>,
    /// The CPU cap, per mille.
    pub cpu_cap_permille: u32,
    /// DHT queries and audits spent since the start, and their limits per minute.
    pub dht_queries: u64,
    /// See `dht_queries`.
    pub dht_per_min: u32,
    /// Audits spent since the start.
    pub audits: u64,
    /// See `audits`.
    pub audits_per_min: u32,
    /// Work the budget left for later, since the start.
    pub deferred: u64,
    /// Blocks checked since the start.
    pub checks: u64,
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

#[cfg(test)]
mod tests {
    use super::*;

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
