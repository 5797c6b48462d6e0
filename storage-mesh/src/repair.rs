//! Self-healing: the repair plan one holder makes for one block from what it knows.
//!
//! When a block's live holders fall below its target replication, exactly one of them — the
//! live holder closest to the block in the [placement](crate::placement) metric — copies the
//! block to the next peers placement would pick. Every holder runs the same pure function on
//! its own view ([`Repairer::plan`]); the others find they are not the closest and do nothing.
//!
//! Inputs: the block (BLAKE3 hash and length), this peer, the live holders it knows of (provider
//! records, liveness checks; this peer counts as a live holder whether listed or not), the
//! candidate peers, the target ([`PlacementPolicy`]: base RF, extra hot copies, reputation floor)
//! and `now_ms` (Unix milliseconds, from the caller). Output: a [`RepairPlan`] of [`Replicate`]
//! actions and a [`PlanStatus`] saying why there are that many.
//!
//! Guarantees, each unit-tested:
//! - only the closest live holder plans; it never targets a peer that already holds the block
//!   and never plans more copies than are missing;
//! - rate limit: token buckets of [`RepairConfig::max_blocks`] blocks and
//!   [`RepairConfig::max_bytes`] bytes per [`RepairConfig::window_ms`] (default 64 blocks and
//!   64 MiB per 10 s, refilled continuously); a plan takes what the buckets allow and the block
//!   is re-planned for the rest later;
//! - no loops: a block with a plan is not planned again for [`RepairConfig::cooldown_ms`]
//!   (default 30 s: time for the copies to land and be announced), and a target that failed is
//!   not chosen again for [`RepairConfig::target_backoff_ms`] (default 5 min);
//! - bounded memory: at most [`RepairConfig::max_tracked`] cooldowns and as many back-offs (the
//!   soonest to expire is forgotten first when full; the rate limit still holds).
//!
//! Non-goals: detecting that holders died (the node's liveness checks and provider-record
//! lookups), moving the bytes (the node sends [`StoreRequest`s]), removing surplus copies when
//! content cools (they expire with their holders' provider records being dropped; a later
//! garbage-collection pass), and agreement between holders with different views (two holders that
//! each believe they are closest both repair: bounded over-replication, never a loop).
//!
//! [`StoreRequest`s]: warren_protocol::block_transfer::StoreRequest

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use warren_protocol::PeerId;

use crate::placement::{Candidate, PlacementPolicy, closest, place_around};

/// Limits of a [`Repairer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepairConfig {
    /// Length of the rate-limit window, milliseconds (at least 1).
    pub window_ms: u64,
    /// Copies that may be planned per window.
    pub max_blocks: u64,
    /// Bytes that may be planned per window. A block larger than this may still be copied when
    /// the bucket is full.
    pub max_bytes: u64,
    /// After a plan, the block is not planned again for this long, milliseconds.
    pub cooldown_ms: u64,
    /// A target reported failed is not chosen again for this long, milliseconds.
    pub target_backoff_ms: u64,
    /// Most cooldowns (and, separately, most back-offs) remembered.
    pub max_tracked: usize,
    /// A holder that is not the closest steps in when it has seen copies missing for this long,
    /// milliseconds: the closer holders did not restore them (they may not know the block's
    /// holders yet, or be gone without this peer knowing).
    pub stand_in_ms: u64,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            window_ms: 10_000,
            max_blocks: 64,
            max_bytes: 64 << 20,
            cooldown_ms: 30_000,
            target_backoff_ms: 300_000,
            max_tracked: 65_536,
            stand_in_ms: 120_000,
        }
    }
}

/// What a block's holder knows about it.
#[derive(Clone, Copy, Debug)]
pub struct RepairInput<'a> {
    /// The block's BLAKE3 hash.
    pub block: &'a [u8; 32],
    /// Its length in bytes (the room a target needs, and the cost against the byte budget).
    pub block_len: u64,
    /// This peer (a holder of the block).
    pub me: &'a PeerId,
    /// The other holders known to be alive; `me` may be listed or not.
    pub holders: &'a [PeerId],
    /// Peers that may receive a copy.
    pub candidates: &'a [Candidate],
    /// The target: base RF, hot copies (from [`crate::hot`]) and the reputation floor.
    pub policy: PlacementPolicy,
}

/// Copy `block` to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replicate {
    /// The block's BLAKE3 hash.
    pub block: [u8; 32],
    /// The peer to push it to.
    pub to: PeerId,
}

/// Why a [`RepairPlan`] has the actions it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanStatus {
    /// At least `target` live holders: nothing to do.
    Healthy {
        /// Live holders, this peer included.
        holders: usize,
        /// Copies wanted.
        target: usize,
    },
    /// Another live holder is closer to the block: repairing is its job.
    NotClosest {
        /// The closest live holder.
        closest: PeerId,
    },
    /// This block was planned recently.
    CoolingDown {
        /// When it may be planned again, Unix milliseconds.
        until_ms: u64,
    },
    /// Copies are missing but no eligible peer is left to take one.
    NoCandidates {
        /// Copies missing.
        missing: usize,
    },
    /// Copies are missing but the rate limit allows none now.
    RateLimited {
        /// Copies missing.
        missing: usize,
    },
    /// The actions are planned: `missing` of them, or fewer where the candidates or the rate
    /// limit ran short.
    Planned {
        /// Copies missing.
        missing: usize,
    },
}

/// The outcome of [`Repairer::plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairPlan {
    /// The copies to make now, closest target first.
    pub actions: Vec<Replicate>,
    /// Why.
    pub status: PlanStatus,
}

impl RepairPlan {
    fn nothing(status: PlanStatus) -> Self {
        RepairPlan {
            actions: Vec::new(),
            status,
        }
    }
}

/// A token bucket in integer arithmetic: the level is kept in units of `1 / window_ms` tokens,
/// so refilling `capacity` tokens per window is exact.
#[derive(Clone, Debug)]
pub(crate) struct Bucket {
    capacity: u64,
    window_ms: u64,
    level: u128,
    last_ms: u64,
}

impl Bucket {
    pub(crate) fn full(capacity: u64, window_ms: u64, now_ms: u64) -> Self {
        let window_ms = window_ms.max(1);
        Bucket {
            capacity,
            window_ms,
            level: u128::from(capacity) * u128::from(window_ms),
            last_ms: now_ms,
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(crate) fn refill(&mut self, now_ms: u64) {
        // A clock that steps back refills nothing and does not move `last_ms` back.
        if now_ms > self.last_ms {
            let add = u128::from(now_ms - self.last_ms) * u128::from(self.capacity);
            let max = u128::from(self.capacity) * u128::from(self.window_ms);
            self.level = self.level.saturating_add(add).min(max);
            self.last_ms = now_ms;
        }
    }

    /// The level needed for `cost` tokens (a cost above the capacity needs a full bucket).
    fn need(&self, cost: u64) -> u128 {
        u128::from(cost.min(self.capacity)) * u128::from(self.window_ms)
    }

    pub(crate) fn can_take(&self, cost: u64) -> bool {
        self.level >= self.need(cost)
    }

    /// Whole tokens in the bucket.
    pub(crate) fn available(&self) -> u64 {
        u64::try_from(self.level / u128::from(self.window_ms)).unwrap_or(u64::MAX)
    }

    pub(crate) fn take(&mut self, cost: u64) {
        self.level = self.level.saturating_sub(self.need(cost));
    }
}

/// Keys that expire, at most `cap` of them: the soonest to expire is dropped when full.
#[derive(Clone, Debug)]
struct Expiring<K> {
    until: HashMap<K, u64>,
    by_time: BTreeSet<(u64, K)>,
    cap: usize,
}

impl<K: Copy + Ord + Hash> Expiring<K> {
    fn new(cap: usize) -> Self {
        Expiring {
            until: HashMap::new(),
            by_time: BTreeSet::new(),
            cap: cap.max(1),
        }
    }

    fn purge(&mut self, now_ms: u64) {
        while let Some(&(t, k)) = self.by_time.first() {
            if t > now_ms {
                break;
            }
            self.by_time.pop_first();
            self.until.remove(&k);
        }
    }

    fn insert(&mut self, key: K, until_ms: u64) {
        if let Some(old) = self.until.insert(key, until_ms) {
            self.by_time.remove(&(old, key));
        }
        self.by_time.insert((until_ms, key));
        while self.until.len() > self.cap {
            if let Some((_, k)) = self.by_time.pop_first() {
                self.until.remove(&k);
            }
        }
    }

    fn remove(&mut self, key: &K) {
        if let Some(t) = self.until.remove(key) {
            self.by_time.remove(&(t, *key));
        }
    }

    /// The expiry of `key` if it is still active at `now_ms`.
    fn active(&self, key: &K, now_ms: u64) -> Option<u64> {
        self.until.get(key).copied().filter(|&t| t > now_ms)
    }

    fn keys(&self) -> impl Iterator<Item = &K> {
        self.until.keys()
    }

    fn len(&self) -> usize {
        self.until.len()
    }
}

/// The repair state of one peer: rate-limit buckets, block cooldowns and target back-offs.
///
/// Call order: [`Repairer::plan`] for each block this peer holds whose holder set changed (or
/// on a timer); send the planned copies; report each one that failed with
/// [`Repairer::target_failed`]. All methods take the caller's clock; nothing here reads one.
#[derive(Clone, Debug)]
pub struct Repairer {
    config: RepairConfig,
    blocks: Bucket,
    bytes: Bucket,
    cooldown: Expiring<[u8; 32]>,
    backoff: Expiring<PeerId>,
    /// Blocks this peer saw copies missing of while another holder was closer: since when.
    missing_since: HashMap<[u8; 32], u64>,
}

impl Repairer {
    /// A repairer with full buckets at `now_ms`.
    pub fn new(config: RepairConfig, now_ms: u64) -> Self {
        Repairer {
            config,
            blocks: Bucket::full(config.max_blocks, config.window_ms, now_ms),
            bytes: Bucket::full(config.max_bytes, config.window_ms, now_ms),
            cooldown: Expiring::new(config.max_tracked),
            backoff: Expiring::new(config.max_tracked),
            missing_since: HashMap::new(),
        }
    }

    /// Whether this peer, not the closest holder of `block`, stands in for it at `now_ms`: it
    /// has seen copies missing for [`RepairConfig::stand_in_ms`]. Bounded: when
    /// [`RepairConfig::max_tracked`] blocks are remembered, the stale ones go, and a block that
    /// still finds no room waits (no stand-in).
    fn stands_in(&mut self, block: &[u8; 32], now_ms: u64) -> bool {
        let stale = 2 * self.config.stand_in_ms.max(1);
        if !self.missing_since.contains_key(block) {
            if self.missing_since.len() >= self.config.max_tracked {
                self.missing_since
                    .retain(|_, t| now_ms.saturating_sub(*t) < stale);
            }
            if self.missing_since.len() >= self.config.max_tracked {
                return false;
            }
        }
        let since = *self.missing_since.entry(*block).or_insert(now_ms);
        if now_ms.saturating_sub(since) >= stale {
            // Seen long ago, then not for a while: a new episode.
            self.missing_since.insert(*block, now_ms);
            return false;
        }
        now_ms.saturating_sub(since) >= self.config.stand_in_ms
    }

    /// Its limits.
    pub fn config(&self) -> &RepairConfig {
        &self.config
    }

    /// Plans the repair of one block and books what it plans against the rate limit and the
    /// block's cooldown.
    ///
    /// With `H` the live holders (`input.holders` plus `input.me`, duplicates removed) and
    /// `target = policy.rf + policy.hot_extra`: nothing if `|H| >= target`, or if another holder
    /// in `H` is closer to the block, or during the block's cooldown. Otherwise the missing
    /// copies fill the base RF first, then the hot extra, and go to the peers
    /// [`place`] picks outside `H` and the backed-off targets, as many as the rate limit allows
    /// now.
    pub fn plan(&mut self, input: &RepairInput<'_>, now_ms: u64) -> RepairPlan {
        self.blocks.refill(now_ms);
        self.bytes.refill(now_ms);
        self.cooldown.purge(now_ms);
        self.backoff.purge(now_ms);

        let mut holders: Vec<PeerId> = input.holders.to_vec();
        holders.push(*input.me);
        holders.sort_unstable();
        holders.dedup();
        let target = input.policy.target();
        if holders.len() >= target {
            self.missing_since.remove(input.block);
            return RepairPlan::nothing(PlanStatus::Healthy {
                holders: holders.len(),
                target,
            });
        }
        match closest(input.block, &holders) {
            Some(c) if c != *input.me && !self.stands_in(input.block, now_ms) => {
                return RepairPlan::nothing(PlanStatus::NotClosest { closest: c });
            }
            _ => {}
        }
        if let Some(until_ms) = self.cooldown.active(input.block, now_ms) {
            return RepairPlan::nothing(PlanStatus::CoolingDown { until_ms });
        }

        let missing = target - holders.len();
        let base_missing = input.policy.rf.saturating_sub(holders.len()).min(missing);
        let policy = PlacementPolicy {
            rf: base_missing,
            hot_extra: missing - base_missing,
            floor: input.policy.floor,
        };
        let mut exclude = holders.clone();
        exclude.extend(self.backoff.keys().copied());
        let targets = place_around(
            input.block,
            input.candidates,
            &policy,
            input.block_len,
            &exclude,
            &holders,
        );
        if targets.is_empty() {
            return RepairPlan::nothing(PlanStatus::NoCandidates { missing });
        }

        let mut actions = Vec::new();
        for to in targets.into_peers() {
            if !(self.blocks.can_take(1) && self.bytes.can_take(input.block_len)) {
                break;
            }
            self.blocks.take(1);
            self.bytes.take(input.block_len);
            actions.push(Replicate {
                block: *input.block,
                to,
            });
        }
        if actions.is_empty() {
            return RepairPlan::nothing(PlanStatus::RateLimited { missing });
        }
        self.missing_since.remove(input.block);
        self.cooldown
            .insert(*input.block, now_ms.saturating_add(self.config.cooldown_ms));
        RepairPlan {
            actions,
            status: PlanStatus::Planned { missing },
        }
    }

    /// Reports that copying `block` to `to` failed (refused, timed out, unreachable): `to` is not
    /// chosen again for [`RepairConfig::target_backoff_ms`], and the block's cooldown is lifted so
    /// the next [`Repairer::plan`] picks another target (still within the rate limit).
    pub fn target_failed(&mut self, block: &[u8; 32], to: &PeerId, now_ms: u64) {
        self.backoff
            .insert(*to, now_ms.saturating_add(self.config.target_backoff_ms));
        self.cooldown.remove(block);
    }

    /// Whether `peer` is backed off at `now_ms`.
    pub fn is_backed_off(&self, peer: &PeerId, now_ms: u64) -> bool {
        self.backoff.active(peer, now_ms).is_some()
    }

    /// How many blocks are in their cooldown and peers in their back-off (expired entries may be
    /// counted until the next [`Repairer::plan`]).
    pub fn tracked(&self) -> (usize, usize) {
        (self.cooldown.len(), self.backoff.len())
    }
}

#[cfg(test)]
mod tests {
    use warren_protocol::Tier;

    use super::*;
    use crate::placement::rank;
    use crate::placement::tests::{BLOCK, cand, peer};

    const MIB: u64 = 1 << 20;
    const T0: u64 = 1_700_000_000_000;

    /// Ten cold peers ranked by distance to BLOCK, and their candidates.
    fn world() -> (Vec<PeerId>, Vec<Candidate>) {
        let cands: Vec<_> = (0..10).map(|i| cand(i, Tier::Cold)).collect();
        let ranked = rank(&BLOCK, cands.iter().map(|c| &c.peer));
        (ranked, cands)
    }

    fn input<'a>(
        me: &'a PeerId,
        holders: &'a [PeerId],
        candidates: &'a [Candidate],
    ) -> RepairInput<'a> {
        RepairInput {
            block: &BLOCK,
            block_len: MIB,
            me,
            holders,
            candidates,
            policy: PlacementPolicy::with_rf(3),
        }
    }

    fn targets(plan: &RepairPlan) -> Vec<PeerId> {
        plan.actions.iter().map(|a| a.to).collect()
    }

    #[test]
    fn one_of_three_dies_closest_survivor_plans_one_copy() {
        let (r, cands) = world();
        // Holders r0, r1, r2; r0 died. Survivors r1 (closest) and r2.
        let live = [r[1], r[2]];
        let live_cands: Vec<_> = cands.iter().filter(|c| c.peer != r[0]).cloned().collect();

        let mut closest = Repairer::new(RepairConfig::default(), T0);
        let plan = closest.plan(&input(&r[1], &live, &live_cands), T0);
        assert_eq!(plan.status, PlanStatus::Planned { missing: 1 });
        assert_eq!(targets(&plan), [r[3]]);
        assert!(plan.actions.iter().all(|a| a.block == BLOCK));

        let mut other = Repairer::new(RepairConfig::default(), T0);
        let plan = other.plan(&input(&r[2], &live, &live_cands), T0);
        assert_eq!(plan.status, PlanStatus::NotClosest { closest: r[1] });
        assert!(plan.actions.is_empty());
    }

    #[test]
    fn two_of_three_die_the_survivor_plans_two_copies() {
        let (r, cands) = world();
        // Holders r0, r1, r2; r0 and r2 died; r1 survives alone.
        let live_cands: Vec<_> = cands
            .iter()
            .filter(|c| c.peer != r[0] && c.peer != r[2])
            .cloned()
            .collect();
        let mut me = Repairer::new(RepairConfig::default(), T0);
        let plan = me.plan(&input(&r[1], &[], &live_cands), T0);
        assert_eq!(plan.status, PlanStatus::Planned { missing: 2 });
        assert_eq!(targets(&plan), [r[3], r[4]]);
    }

    #[test]
    fn no_plan_when_rf_holds() {
        let (r, cands) = world();
        let mut me = Repairer::new(RepairConfig::default(), T0);
        let plan = me.plan(&input(&r[0], &[r[0], r[1], r[2]], &cands), T0);
        assert_eq!(
            plan.status,
            PlanStatus::Healthy {
                holders: 3,
                target: 3
            }
        );
        // Holders other than the ideal ones count too, and surplus is fine.
        let plan = me.plan(&input(&r[9], &[r[5], r[7], r[8]], &cands), T0);
        assert!(plan.actions.is_empty());
        assert!(matches!(
            plan.status,
            PlanStatus::Healthy { holders: 4, .. }
        ));
    }

    #[test]
    fn never_targets_a_holder_or_a_backed_off_peer() {
        let (r, cands) = world();
        let mut me = Repairer::new(RepairConfig::default(), T0);
        // r3 holds already (not among the ideal three); r0 is me.
        let policy = PlacementPolicy::with_rf(5);
        let holders = [r[3]];
        let inp = RepairInput {
            policy,
            ..input(&r[0], &holders, &cands)
        };
        let plan = me.plan(&inp, T0);
        assert_eq!(targets(&plan), [r[1], r[2], r[4]]);

        me.target_failed(&BLOCK, &r[2], T0 + 1);
        assert!(me.is_backed_off(&r[2], T0 + 1));
        // The failure lifts the cooldown; the holders are now me, r3, r1, r4.
        let holders = [r[3], r[1], r[4]];
        let inp = RepairInput {
            holders: &holders,
            ..inp
        };
        let plan = me.plan(&inp, T0 + 2);
        assert_eq!(targets(&plan), [r[5]]);
        // After the back-off r2 is a target again.
        let backoff = RepairConfig::default().target_backoff_ms;
        me.target_failed(&BLOCK, &r[5], T0 + 3);
        let later = T0 + 1 + backoff;
        assert!(!me.is_backed_off(&r[2], later));
        let plan = me.plan(&inp, later);
        assert_eq!(targets(&plan), [r[2]]);
    }

    #[test]
    fn cooldown_stops_replanning() {
        let (r, cands) = world();
        let config = RepairConfig::default();
        let mut me = Repairer::new(config, T0);
        let plan = me.plan(&input(&r[0], &[], &cands), T0);
        assert_eq!(plan.actions.len(), 2);
        // The copies have not shown up yet: same view, no new plan.
        let plan = me.plan(&input(&r[0], &[], &cands), T0 + 1_000);
        assert_eq!(
            plan.status,
            PlanStatus::CoolingDown {
                until_ms: T0 + config.cooldown_ms
            }
        );
        assert!(plan.actions.is_empty());
        // After the cooldown it plans again (the copies evidently failed).
        let plan = me.plan(&input(&r[0], &[], &cands), T0 + config.cooldown_ms);
        assert_eq!(plan.actions.len(), 2);
    }

    #[test]
    fn rate_limit_on_blocks() {
        let cands: Vec<_> = (0..10).map(|i| cand(i, Tier::Cold)).collect();
        let config = RepairConfig {
            max_blocks: 3,
            window_ms: 3_000,
            ..Default::default()
        };
        let mut me = Repairer::new(config, T0);
        let mut planned = 0;
        // Many blocks, each held by me alone (RF 2 → one copy each), all closest to me.
        let mut blocks_seen = 0;
        for b in 0..=255u8 {
            let block = [b; 32];
            let ranked = rank(&block, cands.iter().map(|c| &c.peer));
            let inp = RepairInput {
                block: &block,
                policy: PlacementPolicy::with_rf(2),
                ..input(&ranked[0], &[], &cands)
            };
            let plan = me.plan(&inp, T0);
            planned += plan.actions.len();
            if plan.status == (PlanStatus::RateLimited { missing: 1 }) {
                blocks_seen += 1;
            }
        }
        assert_eq!(planned, 3);
        assert_eq!(blocks_seen, 253);
        // One token per second comes back.
        let block = [7u8; 32];
        let ranked = rank(&block, cands.iter().map(|c| &c.peer));
        let inp = RepairInput {
            block: &block,
            policy: PlacementPolicy::with_rf(2),
            ..input(&ranked[0], &[], &cands)
        };
        assert!(me.plan(&inp, T0 + 999).actions.is_empty());
        assert_eq!(me.plan(&inp, T0 + 1_000).actions.len(), 1);
    }

    #[test]
    fn rate_limit_on_bytes_allows_partial_plans() {
        let (r, cands) = world();
        let config = RepairConfig {
            max_bytes: 3 * MIB,
            window_ms: 3_000,
            ..Default::default()
        };
        let mut me = Repairer::new(config, T0);
        let inp = RepairInput {
            policy: PlacementPolicy::with_rf(6),
            ..input(&r[0], &[], &cands)
        };
        let plan = me.plan(&inp, T0);
        assert_eq!(plan.status, PlanStatus::Planned { missing: 5 });
        assert_eq!(targets(&plan), [r[1], r[2], r[3]]);

        // Another block needing copies is refused until the bytes come back: 1 MiB per second.
        let block = [9u8; 32];
        let ranked = rank(&block, cands.iter().map(|c| &c.peer));
        let other = RepairInput {
            block: &block,
            ..input(&ranked[0], &[], &cands)
        };
        assert_eq!(
            me.plan(&other, T0 + 500).status,
            PlanStatus::RateLimited { missing: 2 }
        );
        assert_eq!(me.plan(&other, T0 + 1_000).actions.len(), 1);
    }

    #[test]
    fn a_block_larger_than_the_byte_budget_still_moves_when_the_bucket_is_full() {
        let (r, cands) = world();
        let config = RepairConfig {
            max_bytes: MIB / 2,
            ..Default::default()
        };
        let mut me = Repairer::new(config, T0);
        let plan = me.plan(&input(&r[0], &[], &cands), T0);
        assert_eq!(plan.actions.len(), 1);
    }

    #[test]
    fn clock_stepping_back_does_not_refill() {
        let (r, cands) = world();
        let config = RepairConfig {
            max_blocks: 1,
            ..Default::default()
        };
        let mut me = Repairer::new(config, T0);
        assert_eq!(me.plan(&input(&r[0], &[], &cands), T0).actions.len(), 1);
        let block = [1u8; 32];
        let ranked = rank(&block, cands.iter().map(|c| &c.peer));
        let other = RepairInput {
            block: &block,
            ..input(&ranked[0], &[], &cands)
        };
        assert!(me.plan(&other, T0 - 60_000).actions.is_empty());
        assert!(me.plan(&other, T0).actions.is_empty());
    }

    #[test]
    fn hot_copies_go_to_hot_peers() {
        let cands: Vec<_> = (0..10)
            .map(|i| cand(i, if i % 2 == 0 { Tier::Cold } else { Tier::Hot }))
            .collect();
        let cold = rank(
            &BLOCK,
            cands
                .iter()
                .filter(|c| c.tier == Tier::Cold)
                .map(|c| &c.peer),
        );
        let hot = rank(
            &BLOCK,
            cands
                .iter()
                .filter(|c| c.tier == Tier::Hot)
                .map(|c| &c.peer),
        );
        let holders = [cold[0], cold[1], cold[2]];
        let all = rank(&BLOCK, &holders);
        let mut me = Repairer::new(RepairConfig::default(), T0);
        let inp = RepairInput {
            policy: PlacementPolicy {
                rf: 3,
                hot_extra: 2,
                ..Default::default()
            },
            ..input(&all[0], &holders, &cands)
        };
        let plan = me.plan(&inp, T0);
        assert_eq!(plan.status, PlanStatus::Planned { missing: 2 });
        assert_eq!(targets(&plan), [hot[0], hot[1]]);
    }

    #[test]
    fn no_candidates_left() {
        let (r, _) = world();
        let mut me = Repairer::new(RepairConfig::default(), T0);
        let plan = me.plan(&input(&r[0], &[r[1]], &[]), T0);
        assert_eq!(plan.status, PlanStatus::NoCandidates { missing: 1 });
        // Full and disreputable peers are no candidates either.
        let mut full = cand(5, Tier::Cold);
        full.bytes_free = MIB - 1;
        let mut bad = cand(6, Tier::Cold);
        bad.score = Some(0.0);
        let plan = me.plan(&input(&r[0], &[r[1]], &[full, bad]), T0);
        assert_eq!(plan.status, PlanStatus::NoCandidates { missing: 1 });
    }

    #[test]
    fn memory_is_bounded() {
        let cands: Vec<_> = (0..10).map(|i| cand(i, Tier::Cold)).collect();
        let config = RepairConfig {
            max_tracked: 8,
            max_blocks: 1_000,
            max_bytes: u64::MAX,
            ..Default::default()
        };
        let mut me = Repairer::new(config, T0);
        for b in 0..100u8 {
            let block = [b; 32];
            let ranked = rank(&block, cands.iter().map(|c| &c.peer));
            let inp = RepairInput {
                block: &block,
                ..input(&ranked[0], &[], &cands)
            };
            assert!(!me.plan(&inp, T0 + u64::from(b)).actions.is_empty());
            me.target_failed(&[b.wrapping_add(1); 32], &peer(b % 10), T0);
        }
        assert!(
            me.tracked().0 <= 8 && me.tracked().1 <= 8,
            "{:?}",
            me.tracked()
        );
    }

    #[test]
    fn every_holder_view_agrees_on_one_actor() {
        // Whatever subset of the ten peers holds the block, exactly one holder plans.
        let (r, cands) = world();
        for mask in 1u32..(1 << 10) {
            let holders: Vec<PeerId> = (0..10)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| r[i])
                .collect();
            let mut actors = 0;
            for me in &holders {
                let mut rep = Repairer::new(RepairConfig::default(), T0);
                let plan = rep.plan(&input(me, &holders, &cands), T0);
                if !plan.actions.is_empty() {
                    actors += 1;
                    assert_eq!(*me, holders[0]);
                    assert_eq!(plan.actions.len(), 3 - holders.len());
                    assert!(plan.actions.iter().all(|a| !holders.contains(&a.to)));
                }
            }
            assert_eq!(actors, usize::from(holders.len() < 3), "{mask:b}");
        }
    }
    #[test]
    fn a_holder_that_is_not_the_closest_stands_in_when_copies_stay_missing() {
        let (r, cands) = world();
        // Holders r1 (closest) and r2; one copy missing; r1 does nothing (it does not know).
        let live = [r[1], r[2]];
        let mut far = Repairer::new(RepairConfig::default(), T0);
        let stand_in = RepairConfig::default().stand_in_ms;
        let inp = input(&r[2], &live, &cands);
        let not_closest = PlanStatus::NotClosest { closest: r[1] };
        assert_eq!(far.plan(&inp, T0).status, not_closest);
        assert_eq!(far.plan(&inp, T0 + stand_in - 1).status, not_closest);
        let plan = far.plan(&inp, T0 + stand_in);
        assert_eq!(plan.status, PlanStatus::Planned { missing: 1 });
        // After its plan, a new episode waits again.
        let later = T0 + stand_in + RepairConfig::default().cooldown_ms + 1;
        assert_eq!(far.plan(&inp, later).status, not_closest);
        // Copies back: forgotten.
        let full = [r[1], r[3], r[4]];
        let healthy = far.plan(&input(&r[2], &full, &cands), later + 1);
        assert!(matches!(healthy.status, PlanStatus::Healthy { .. }));
        assert!(far.missing_since.is_empty());
    }
}
