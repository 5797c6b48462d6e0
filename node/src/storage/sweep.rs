//! The background sweep on the network: gathers the evidence (peers gone, hot blocks, the store's
//! blocks), asks the pure [`Sweep`](warren_storage_mesh::sweep::Sweep) which blocks to check
//! within the [`Budget`](warren_storage_mesh::background::Budget), checks them, and reports the
//! figures (`warren_background_*`, the dashboard).

use std::collections::{BTreeSet, HashMap};

use futures::StreamExt;
use libp2p::PeerId;
use rand::RngCore;
use tracing::{debug, info, warn};
use warren_protocol::ContentId;
use warren_storage_mesh::background::{Spent, Work};

use crate::clock::{process_cpu_ms, unix_now_ms as now_ms};
use crate::error::NodeError;
use crate::storage::{Mesh, PARALLEL};
use crate::view::BackgroundView;

/// A resync of the sweep with the store (one pass over its blocks) runs at most once per this
/// many times its own duration, so that it stays under 1 % of a core however large the store.
const SYNC_COST_FACTOR: u32 = 100;
/// Blocks arriving after the first sync are first checked within this long (their holders are
/// not known to this node yet), milliseconds.
const ARRIVAL_SPREAD_MS: u64 = 600_000;

/// The sweep's snapshot (spec/sweep-snapshot.md) is saved at most this often while checks run,
/// and when the node stops.
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Evidence and pacing state of the sweep (the node side).
#[derive(Debug, Default)]
pub(crate) struct SweepState {
    /// The live peers at the last tick.
    live: BTreeSet<PeerId>,
    /// The store's block count at the last sync, and when the next sync may run.
    synced_blocks: Option<u64>,
    next_sync: Option<std::time::Instant>,
    /// Hot blocks and their extra copies at the last tick.
    hot: HashMap<[u8; 32], usize>,
    /// The budget's figures at the last report.
    reported: Spent,
    /// Blocks checked since the last report, and since the start.
    checks: u64,
    checks_total: u64,
    /// When the snapshot was last saved (or restored), and the checks made by then.
    saved_at: Option<std::time::Instant>,
    checks_at_save: u64,
}

impl Mesh {
    /// One tick of background work: evidence in, due blocks checked within the budget. Returns
    /// the copies the checks restored.
    pub(crate) async fn sweep_tick(&self) -> Result<usize, NodeError> {
        let now = now_ms();
        if let (Some(cpu), Ok(mut b)) = (process_cpu_ms(), self.budget.lock()) {
            b.observe_cpu(now, cpu);
        }
        self.sync_sweep(now).await;
        let (me, candidates) = self.client.candidates().await?;
        let live: BTreeSet<PeerId> = candidates.iter().map(|c| c.peer).collect();
        self.gather_evidence(&live, now);
        // At most one DHT query per check (the provider lookup, or the renewal). Checks on
        // evidence are held by the rates only, the routine ones also by the CPU cap; over it,
        // they keep the pace of the period.
        let (urgent_room, routine_room) = match self.budget.lock() {
            Ok(mut b) => {
                if let Ok(s) = self.sweep.lock() {
                    let period = s.config().period_ms.max(1);
                    b.set_pace(
                        (s.len() as u64).saturating_mul(60_000).div_ceil(period),
                        now,
                    );
                }
                (
                    b.dht_available(now, Work::Urgent) as usize,
                    b.dht_available(now, Work::Routine) as usize,
                )
            }
            Err(_) => (0, 0),
        };
        let due: Vec<(ContentId, u64, Work)> = match self.sweep.lock() {
            Ok(mut s) => {
                let urgent = s.next_urgent(now, urgent_room);
                let room = routine_room.min(urgent_room.saturating_sub(urgent.len()));
                let routine = s.next_due(now, room);
                let tag = |w: Work| move |(c, l): (ContentId, u64)| (c, l, w);
                urgent
                    .into_iter()
                    .map(tag(Work::Urgent))
                    .chain(routine.into_iter().map(tag(Work::Routine)))
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        let checked = due.len() as u64;
        if let Ok(mut p) = self.pacer.lock() {
            p.start_pass();
        }
        let pushed: Vec<usize> = futures::stream::iter(due)
            .map(|(cid, len, work)| self.repair_block(cid, len, work, me, &candidates, &live))
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        if let Ok(mut p) = self.pacer.lock() {
            p.end_pass();
        }
        if let Ok(mut st) = self.sweep_state.lock() {
            st.checks += checked;
        }
        self.report_background();
        Ok(pushed.into_iter().sum())
    }

    /// Takes back what the sweep knew before the last stop (its holders and renewals), from the
    /// snapshot in the store. A snapshot that cannot be read is logged and ignored.
    async fn restore_sweep(&self) {
        if let Ok(mut st) = self.sweep_state.lock() {
            st.saved_at = Some(std::time::Instant::now());
        }
        match self.store_call(|s| s.load_sweep()).await {
            Ok(Some(bytes)) => match self.sweep.lock().map(|mut s| s.restore(&bytes)) {
                Ok(Ok(n)) => info!(
                    blocks = n,
                    "sweep: holders and renewals of the last run restored"
                ),
                Ok(Err(e)) => warn!("sweep: the saved snapshot is not used: {e}"),
                Err(_) => {}
            },
            Ok(None) => {}
            Err(e) => warn!("sweep: cannot read the saved snapshot: {e}"),
        }
    }

    /// Saves the sweep's snapshot when checks ran since the last save and [`SAVE_EVERY`] has
    /// passed, or always with `force` (when the node stops).
    pub(crate) async fn save_sweep(&self, force: bool) {
        let due = self.sweep_state.lock().is_ok_and(|st| {
            st.checks_total != st.checks_at_save
                && (force || st.saved_at.is_none_or(|t| t.elapsed() >= SAVE_EVERY))
        });
        if !due {
            return;
        }
        let Ok(bytes) = self.sweep.lock().map(|s| s.snapshot()) else {
            return;
        };
        if let Ok(mut st) = self.sweep_state.lock() {
            st.saved_at = Some(std::time::Instant::now());
            st.checks_at_save = st.checks_total;
        }
        let len = bytes.len();
        match self.store_call(move |s| s.save_sweep(&bytes)).await {
            Ok(()) => debug!(bytes = len, "sweep: snapshot saved"),
            Err(e) => warn!("sweep: cannot save the snapshot: {e}"),
        }
    }

    /// Makes the sweep's blocks the store's when the store's block count changed, at most once
    /// per [`SYNC_COST_FACTOR`] times the last sync's duration.
    async fn sync_sweep(&self, now: u64) {
        let count = match self.store_call(|s| s.usage()).await {
            Ok(u) => u.blocks,
            Err(e) => {
                debug!("sweep: cannot read the store's usage: {e}");
                return;
            }
        };
        let (first, wait) = match self.sweep_state.lock() {
            Ok(st) => (
                st.synced_blocks.is_none(),
                st.synced_blocks == Some(count)
                    || st.next_sync.is_some_and(|t| std::time::Instant::now() < t),
            ),
            Err(_) => return,
        };
        // The pins change the blocks answered for without changing the count (a pin of blocks
        // already held): the file RFs restored at start and replicate's own additions cover
        // those.
        if wait {
            return;
        }
        let started = std::time::Instant::now();
        let (blocks, own) = match self.responsibilities_with_own().await {
            Ok(b) => b,
            Err(e) => {
                debug!("sweep: cannot list the blocks answered for: {e}");
                return;
            }
        };
        let period = self.config.recheck_period_ms();
        let spread = if first {
            period
        } else {
            period.min(ARRIVAL_SPREAD_MS)
        };
        let report = self
            .sweep
            .lock()
            .map(|mut s| {
                let mut rng = rand::rngs::OsRng;
                // New blocks are due within `spread`: the whole period at start (the store's blocks
                // spread over it), soon for arrivals.
                let r = s.sync(&blocks, now, || rng.next_u64() % spread.max(1));
                (r, s.len())
            })
            .ok();
        if first {
            self.restore_sweep().await;
            // The blocks of this node's own files are checked at once after a start (the
            // budget spreads a large number): their copies may have gone while it was off.
            if let Ok(mut s) = self.sweep.lock() {
                for c in &own {
                    s.retry(&c.hash(), now);
                }
            }
        }
        let took = started.elapsed();
        if let Ok(mut st) = self.sweep_state.lock() {
            st.synced_blocks = Some(count);
            st.next_sync = Some(std::time::Instant::now() + took * SYNC_COST_FACTOR);
        }
        if let Some((r, len)) = report
            && (r.added > 0 || r.removed > 0)
        {
            info!(
                added = r.added,
                removed = r.removed,
                blocks = len,
                took_ms = took.as_millis() as u64,
                "background sweep: blocks answered for updated"
            );
        }
    }

    /// Peers gone since the last tick make the blocks they held urgent; so do blocks whose hot
    /// level changed (their wanted RF did).
    fn gather_evidence(&self, live: &BTreeSet<PeerId>, now: u64) {
        let Ok(mut st) = self.sweep_state.lock() else {
            return;
        };
        let lost: Vec<PeerId> = st.live.difference(live).copied().collect();
        st.live = live.clone();
        let hot: HashMap<[u8; 32], usize> = self
            .hot
            .lock()
            .map(|mut h| h.hot_blocks(now).into_iter().collect())
            .unwrap_or_default();
        let changed: Vec<[u8; 32]> = hot
            .iter()
            .filter(|(b, level)| st.hot.get(*b) != Some(level))
            .map(|(b, _)| *b)
            .chain(st.hot.keys().filter(|b| !hot.contains_key(*b)).copied())
            .collect();
        st.hot = hot;
        drop(st);
        let Ok(mut sweep) = self.sweep.lock() else {
            return;
        };
        if !lost.is_empty() {
            let n = sweep.peers_lost(&lost);
            if n > 0 {
                info!(
                    peers = lost.len(),
                    blocks = n,
                    "holders gone: their blocks are checked now"
                );
            }
        }
        for b in changed {
            sweep.urgent(&b);
        }
    }

    /// Sets the `warren_background_*` metrics and the dashboard's view.
    fn report_background(&self) {
        let (Ok(budget), Ok(sweep), Ok(mut st)) = (
            self.budget.lock(),
            self.sweep.lock(),
            self.sweep_state.lock(),
        ) else {
            return;
        };
        let spent = budget.spent();
        let m = &self.metrics.counters.background;
        m.dht_queries
            .inc_by(spent.dht.saturating_sub(st.reported.dht));
        m.audits
            .inc_by(spent.audits.saturating_sub(st.reported.audits));
        let deferred = |s: &Spent| s.dht_deferred + s.audits_deferred;
        m.deferred
            .inc_by(deferred(&spent).saturating_sub(deferred(&st.reported)));
        let new_checks = st.checks;
        m.checks.inc_by(new_checks);
        st.checks_total += new_checks;
        st.checks = 0;
        st.reported = spent;
        if let Some(c) = spent.cpu_permille {
            m.cpu_permille.set(u64::from(c));
        }
        let blocks = sweep.len() as u64;
        // Each block's holders besides this node: the default RF.
        let holders = self.config.rf as u64;
        let period_ms = self
            .config
            .recheck_period_ms()
            .max(budget.shortest_period_ms(blocks, holders));
        m.blocks.set(blocks);
        m.urgent.set(sweep.urgent_len() as u64);
        m.period_seconds.set(period_ms / 1000);
        let cfg = *budget.config();
        let view = BackgroundView {
            blocks,
            urgent: sweep.urgent_len() as u64,
            period_secs: period_ms / 1000,
            cpu_permille: spent.cpu_permille,
            cpu_cap_permille: cfg.cpu_permille,
            dht_queries: spent.dht,
            dht_per_min: cfg.dht_per_min,
            audits: spent.audits,
            audits_per_min: cfg.audits_per_min,
            deferred: deferred(&spent),
            checks: st.checks_total,
        };
        self.metrics.activity.update(|a| a.background = view);
    }
}
