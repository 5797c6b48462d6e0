//! Hot content: blocks fetched often get extra copies, and lose them when they cool.
//!
//! A [`HotTracker`] counts the fetches of each block this peer serves in a sliding window
//! ([`HotConfig::window_ms`], kept as [`HotConfig::buckets`] sub-windows), and turns the count
//! into a *heat level* `0..=`[`MAX_HOT_EXTRA`] with hysteresis: a block climbs to level `l` when
//! its count reaches `heat_up[l - 1]` and falls back from level `l` only when the count drops
//! below `cool_down[l - 1]` (lower than `heat_up[l - 1]`), so a block near a threshold does not
//! flap. [`HotTracker::desired_rf`] is `base_rf + level`: with the defaults, 32 fetches in
//! 10 minutes add one copy, 128 add two; below 8 (resp. 64) a level is dropped.
//!
//! Counts are local: each holder sees the fetches it serves, about `1 / rf` of all fetches since
//! fetchers spread their requests over the holders, so the thresholds are per holder. The
//! repairing holder ([`crate::repair`]) uses its own level as `hot_extra`; the extra copies go to
//! hot-tier peers ([`crate::placement`]).
//!
//! Memory is bounded: at most [`HotConfig::max_tracked`] blocks are tracked, the least recently
//! fetched one is forgotten first (and with it its level: the surplus copies simply stop being
//! repaired). Time comes from the caller (`now_ms`, Unix milliseconds); a clock that steps back
//! counts into the newest sub-window.
//!
//! Non-goals: network-wide popularity (no gossip of counts), removing the surplus copies of a
//! cooled block (they are no longer repaired and go when their holders drop them), and
//! per-requester fairness (a single peer fetching in a loop heats a block; the node's rate limits
//! on serving bound that).

use std::collections::{BTreeMap, HashMap};

/// Most copies heat adds to a block's base RF.
pub const MAX_HOT_EXTRA: usize = 2;

/// Most sub-windows a window is split into.
pub const MAX_BUCKETS: usize = 16;

/// Thresholds and limits of a [`HotTracker`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HotConfig {
    /// Length of the sliding window, milliseconds.
    pub window_ms: u64,
    /// Sub-windows per window, `1..=`[`MAX_BUCKETS`] (clamped): the window slides in steps of
    /// `window_ms / buckets`.
    pub buckets: usize,
    /// Fetches per window that raise a block to level 1 and 2.
    pub heat_up: [u32; MAX_HOT_EXTRA],
    /// Below this many fetches per window a block at level 1 (resp. 2) drops a level. Each must
    /// be lower than the matching `heat_up` for hysteresis (a value above it is lowered to it).
    pub cool_down: [u32; MAX_HOT_EXTRA],
    /// Most blocks tracked.
    pub max_tracked: usize,
}

impl Default for HotConfig {
    fn default() -> Self {
        HotConfig {
            window_ms: 600_000,
            buckets: 10,
            heat_up: [32, 128],
            cool_down: [8, 64],
            max_tracked: 4096,
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    /// Fetches per sub-window, a ring indexed by `epoch % buckets`.
    counts: [u32; MAX_BUCKETS],
    /// The newest sub-window counted (`now_ms / bucket_ms`).
    head: u64,
    level: u8,
    /// Position in the LRU order.
    seq: u64,
}

/// Fetch counts and heat levels of recently fetched blocks. See the module documentation.
///
/// Call order: [`HotTracker::record_fetch`] for every block fetch served;
/// [`HotTracker::desired_rf`] when placing or repairing a block; [`HotTracker::hot_blocks`]
/// now and then to find blocks whose RF should change.
#[derive(Clone, Debug)]
pub struct HotTracker {
    config: HotConfig,
    buckets: usize,
    bucket_ms: u64,
    entries: HashMap<[u8; 32], Entry>,
    /// LRU order: sequence number of the last fetch → block.
    lru: BTreeMap<u64, [u8; 32]>,
    next_seq: u64,
}

impl HotTracker {
    /// An empty tracker.
    pub fn new(config: HotConfig) -> Self {
        let buckets = config.buckets.clamp(1, MAX_BUCKETS);
        let mut config = config;
        for (down, up) in config.cool_down.iter_mut().zip(config.heat_up) {
            *down = (*down).min(up);
        }
        HotTracker {
            config,
            buckets,
            bucket_ms: (config.window_ms / buckets as u64).max(1),
            entries: HashMap::new(),
            lru: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// Its thresholds.
    pub fn config(&self) -> &HotConfig {
        &self.config
    }

    /// Counts one fetch of `block` at `now_ms`.
    pub fn record_fetch(&mut self, block: &[u8; 32], now_ms: u64) {
        let epoch = now_ms / self.bucket_ms;
        let seq = self.next_seq;
        self.next_seq += 1;
        let (buckets, config) = (self.buckets, self.config);
        if let Some(e) = self.entries.get(block) {
            self.lru.remove(&e.seq);
        } else {
            while self.entries.len() >= config.max_tracked.max(1) {
                match self.lru.pop_first() {
                    Some((_, old)) => {
                        self.entries.remove(&old);
                    }
                    None => break,
                }
            }
        }
        let entry = self.entries.entry(*block).or_insert(Entry {
            counts: [0; MAX_BUCKETS],
            head: epoch,
            level: 0,
            seq,
        });
        entry.seq = seq;
        self.lru.insert(seq, *block);
        advance(entry, epoch, buckets);
        let slot = (entry.head % buckets as u64) as usize;
        entry.counts[slot] = entry.counts[slot].saturating_add(1);
        update_level(entry, &config, buckets);
    }

    /// Fetches of `block` counted in the window ending at `now_ms`.
    pub fn fetches(&self, block: &[u8; 32], now_ms: u64) -> u32 {
        self.entries.get(block).map_or(0, |e| {
            let mut e = e.clone();
            advance(&mut e, now_ms / self.bucket_ms, self.buckets);
            window_count(&e, self.buckets)
        })
    }

    /// The heat level of `block` at `now_ms`: the copies to add to its base RF,
    /// `0..=`[`MAX_HOT_EXTRA`].
    pub fn extra_rf(&mut self, block: &[u8; 32], now_ms: u64) -> usize {
        let (buckets, config) = (self.buckets, self.config);
        let epoch = now_ms / self.bucket_ms;
        self.entries.get_mut(block).map_or(0, |e| {
            advance(e, epoch, buckets);
            update_level(e, &config, buckets);
            usize::from(e.level)
        })
    }

    /// The RF `block` should have at `now_ms`: `base_rf` plus its heat level.
    pub fn desired_rf(&mut self, block: &[u8; 32], base_rf: usize, now_ms: u64) -> usize {
        base_rf.saturating_add(self.extra_rf(block, now_ms))
    }

    /// Updates every tracked block to `now_ms`, forgets those with no fetch left in the window
    /// and at level 0, and returns the hot ones with their levels, ordered by block.
    pub fn hot_blocks(&mut self, now_ms: u64) -> Vec<([u8; 32], usize)> {
        let (buckets, config) = (self.buckets, self.config);
        let epoch = now_ms / self.bucket_ms;
        let mut hot = Vec::new();
        let mut dead = Vec::new();
        for (block, e) in &mut self.entries {
            advance(e, epoch, buckets);
            update_level(e, &config, buckets);
            if e.level > 0 {
                hot.push((*block, usize::from(e.level)));
            } else if window_count(e, buckets) == 0 {
                dead.push((*block, e.seq));
            }
        }
        for (block, seq) in dead {
            self.entries.remove(&block);
            self.lru.remove(&seq);
        }
        hot.sort_unstable();
        hot
    }

    /// How many blocks are tracked.
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }
}

/// Moves the window's head to `epoch`, clearing the sub-windows that fell out of it.
fn advance(e: &mut Entry, epoch: u64, buckets: usize) {
    if epoch <= e.head {
        return;
    }
    let steps = epoch - e.head;
    if steps >= buckets as u64 {
        e.counts = [0; MAX_BUCKETS];
    } else {
        for i in 1..=steps {
            e.counts[((e.head + i) % buckets as u64) as usize] = 0;
        }
    }
    e.head = epoch;
}

fn window_count(e: &Entry, buckets: usize) -> u32 {
    e.counts[..buckets]
        .iter()
        .fold(0u32, |a, &c| a.saturating_add(c))
}

fn update_level(e: &mut Entry, config: &HotConfig, buckets: usize) {
    let count = window_count(e, buckets);
    while usize::from(e.level) < MAX_HOT_EXTRA && count >= config.heat_up[usize::from(e.level)] {
        e.level += 1;
    }
    while e.level > 0 && count < config.cool_down[usize::from(e.level) - 1] {
        e.level -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;
    const MIN: u64 = 60_000;
    const B: [u8; 32] = [1; 32];

    fn fetch(t: &mut HotTracker, block: &[u8; 32], n: u32, now_ms: u64) {
        for _ in 0..n {
            t.record_fetch(block, now_ms);
        }
    }

    #[test]
    fn cold_block_keeps_base_rf() {
        let mut t = HotTracker::new(HotConfig::default());
        assert_eq!(t.desired_rf(&B, 3, T0), 3);
        fetch(&mut t, &B, 31, T0);
        assert_eq!(t.desired_rf(&B, 3, T0), 3);
        assert_eq!(t.fetches(&B, T0), 31);
    }

    #[test]
    fn thresholds_raise_rf_bounded() {
        let mut t = HotTracker::new(HotConfig::default());
        fetch(&mut t, &B, 32, T0);
        assert_eq!(t.desired_rf(&B, 3, T0), 4);
        fetch(&mut t, &B, 96, T0);
        assert_eq!(t.desired_rf(&B, 3, T0), 5);
        fetch(&mut t, &B, 10_000, T0);
        assert_eq!(t.desired_rf(&B, 3, T0), 3 + MAX_HOT_EXTRA);
    }

    #[test]
    fn hysteresis_holds_then_drops_when_cool() {
        let mut t = HotTracker::new(HotConfig::default());
        // 40 fetches in the first minute: level 1.
        fetch(&mut t, &B, 40, T0);
        assert_eq!(t.extra_rf(&B, T0), 1);
        // A trickle of 1 per minute: the early 40 leave the window after 10 minutes.
        for m in 1..10 {
            fetch(&mut t, &B, 1, T0 + m * MIN);
            assert_eq!(t.extra_rf(&B, T0 + m * MIN), 1, "minute {m}");
        }
        // Window (T0+1min, T0+11min]: 9 fetches, still ≥ 8: stays hot although < 32.
        assert_eq!(t.fetches(&B, T0 + 10 * MIN), 9);
        assert_eq!(t.extra_rf(&B, T0 + 10 * MIN), 1);
        // Two minutes later only 7 remain: cools.
        assert_eq!(t.extra_rf(&B, T0 + 12 * MIN), 0);
        // And climbing back needs the full 32 again.
        fetch(&mut t, &B, 20, T0 + 12 * MIN);
        assert_eq!(t.extra_rf(&B, T0 + 12 * MIN), 0);
        fetch(&mut t, &B, 5, T0 + 12 * MIN);
        assert_eq!(t.extra_rf(&B, T0 + 12 * MIN), 1);
    }

    #[test]
    fn level_two_drops_to_one_then_zero() {
        let mut t = HotTracker::new(HotConfig::default());
        fetch(&mut t, &B, 130, T0);
        assert_eq!(t.extra_rf(&B, T0), 2);
        // 70 more spread over the next minutes keep it at 2 after the burst leaves.
        fetch(&mut t, &B, 70, T0 + 5 * MIN);
        assert_eq!(t.extra_rf(&B, T0 + 10 * MIN), 2);
        fetch(&mut t, &B, 20, T0 + 11 * MIN);
        // Window (T0+6, T0+16]: 20 fetches: below 64 → level 1, not below 8 → stays 1.
        assert_eq!(t.extra_rf(&B, T0 + 16 * MIN), 1);
        assert_eq!(t.extra_rf(&B, T0 + 30 * MIN), 0);
    }

    #[test]
    fn a_cooled_level_is_not_raised_by_stale_counts() {
        let mut t = HotTracker::new(HotConfig::default());
        fetch(&mut t, &B, 40, T0);
        // Never asked in between: long afterwards it is cold.
        assert_eq!(t.desired_rf(&B, 3, T0 + 60 * MIN), 3);
        assert_eq!(t.fetches(&B, T0 + 60 * MIN), 0);
    }

    #[test]
    fn clock_stepping_back_counts_in_newest_window() {
        let mut t = HotTracker::new(HotConfig::default());
        fetch(&mut t, &B, 10, T0);
        fetch(&mut t, &B, 30, T0 - 5 * MIN);
        assert_eq!(t.fetches(&B, T0), 40);
        assert_eq!(t.extra_rf(&B, T0), 1);
    }

    #[test]
    fn memory_is_bounded_lru() {
        let config = HotConfig {
            max_tracked: 4,
            ..Default::default()
        };
        let mut t = HotTracker::new(config);
        fetch(&mut t, &[0; 32], 40, T0);
        for b in 1..4u8 {
            fetch(&mut t, &[b; 32], 1, T0);
        }
        // Touch block 0 again so block 1 is the least recently fetched.
        fetch(&mut t, &[0; 32], 1, T0);
        fetch(&mut t, &[9; 32], 1, T0);
        assert_eq!(t.tracked(), 4);
        assert_eq!(t.fetches(&[1; 32], T0), 0);
        assert_eq!(t.fetches(&[2; 32], T0), 1);
        assert_eq!(t.extra_rf(&[0; 32], T0), 1);
        for b in 10..=255u8 {
            fetch(&mut t, &[b; 32], 1, T0);
        }
        assert_eq!(t.tracked(), 4);
        assert_eq!(t.lru.len(), 4);
    }

    #[test]
    fn hot_blocks_lists_levels_and_forgets_cold_entries() {
        let mut t = HotTracker::new(HotConfig::default());
        fetch(&mut t, &[5; 32], 200, T0);
        fetch(&mut t, &[3; 32], 40, T0);
        fetch(&mut t, &[4; 32], 1, T0);
        assert_eq!(t.hot_blocks(T0), [([3; 32], 1), ([5; 32], 2)]);
        assert_eq!(t.tracked(), 3);
        assert!(t.hot_blocks(T0 + 60 * MIN).is_empty());
        assert_eq!(t.tracked(), 0);
        assert!(t.lru.is_empty());
    }

    #[test]
    fn config_is_sanitised() {
        let t = HotTracker::new(HotConfig {
            buckets: 100,
            cool_down: [50, 500],
            window_ms: 0,
            ..Default::default()
        });
        assert_eq!(t.buckets, MAX_BUCKETS);
        assert_eq!(t.bucket_ms, 1);
        assert_eq!(t.config().cool_down, [32, 128]);
        let t = HotTracker::new(HotConfig {
            buckets: 0,
            ..Default::default()
        });
        assert_eq!(t.buckets, 1);
    }
}
