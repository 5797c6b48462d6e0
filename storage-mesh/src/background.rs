//! The budget of a node's background work (spec: `spec/proof-of-storage.md`, "Pace of the
//! background work"): DHT queries per minute, audits per minute and a share of one CPU core that
//! repair checks, audits and provider-record renewals together never exceed, however much the
//! node holds.
//!
//! - DHT queries and audits each draw from a token bucket holding one minute of its rate
//!   (refilled continuously): work past the rate waits, it is not dropped (the
//!   [`crate::sweep::Sweep`] keeps the blocks due).
//! - CPU: the caller reports the process's CPU time now and then ([`Budget::observe_cpu`]); while
//!   the share used over the last window is above the cap, routine work is held to a trickle: the
//!   pace that still checks every block once per period ([`Budget::set_pace`]), and at least
//!   [`Budget::TRICKLE_PER_MIN`] of each kind per minute. It yields to the user's own work (the
//!   share is the whole process's) but never falls behind its period: a lease or a provider
//!   record is never left to lapse because the node was busy.
//! - Urgent work (a check on evidence that copies are gone) is held to the rates, not to the CPU
//!   cap: repair does not wait for the node to be idle ([`Work::Urgent`]).
//!
//! Counters of what was spent and refused feed the node's `warren_background_*` metrics.
//!
//! Sans-I/O: the caller passes its clock (Unix ms) and the CPU time it measured.

use crate::repair::Bucket;

/// Limits of the background work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetConfig {
    /// DHT queries per minute (provider lookups of repair checks and audits, and renewals of
    /// this node's provider records).
    pub dht_per_min: u32,
    /// Proof-of-storage audits per minute (repair checks and the periodic audit).
    pub audits_per_min: u32,
    /// Share of one core, per mille, above which background work slows to a trickle.
    pub cpu_permille: u32,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            dht_per_min: 240,
            audits_per_min: 360,
            cpu_permille: 10,
        }
    }
}

/// What the budget spent and refused since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spent {
    /// DHT queries allowed.
    pub dht: u64,
    /// DHT queries refused (left for later).
    pub dht_deferred: u64,
    /// Audits allowed.
    pub audits: u64,
    /// Audits refused (left for later).
    pub audits_deferred: u64,
    /// CPU share (per mille of one core) over the last full window, when measured.
    pub cpu_permille: Option<u32>,
}

/// What a piece of background work is for, which decides whether the CPU cap holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// A periodic check or renewal: over the CPU cap it trickles.
    Routine,
    /// A check on evidence that copies are gone: only the rates hold it.
    Urgent,
}

/// Milliseconds over which the CPU share is measured.
const CPU_WINDOW_MS: u64 = 10_000;

/// The budget of the background work. See the module documentation.
#[derive(Clone, Debug)]
pub struct Budget {
    config: BudgetConfig,
    dht: Bucket,
    audits: Bucket,
    trickle_dht: Bucket,
    trickle_audits: Bucket,
    /// (wall ms, CPU ms) at the start of the current window.
    window: Option<(u64, u64)>,
    over: bool,
    spent: Spent,
}

impl Budget {
    /// Work of each kind allowed per minute while the CPU share is over the cap.
    pub const TRICKLE_PER_MIN: u64 = 6;

    /// A full budget at `now_ms` (a rate of 0 counts as 1).
    pub fn new(mut config: BudgetConfig, now_ms: u64) -> Self {
        config.dht_per_min = config.dht_per_min.max(1);
        config.audits_per_min = config.audits_per_min.max(1);
        Self {
            dht: Bucket::full(u64::from(config.dht_per_min), 60_000, now_ms),
            audits: Bucket::full(u64::from(config.audits_per_min), 60_000, now_ms),
            trickle_dht: Bucket::full(Self::TRICKLE_PER_MIN, 60_000, now_ms),
            trickle_audits: Bucket::full(Self::TRICKLE_PER_MIN, 60_000, now_ms),
            config,
            window: None,
            over: false,
            spent: Spent::default(),
        }
    }

    /// The limits.
    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    /// What was spent and refused so far.
    pub fn spent(&self) -> Spent {
        self.spent
    }

    /// Whether the CPU share is over the cap (background work trickles).
    pub fn over_cpu(&self) -> bool {
        self.over
    }

    /// The process has used `cpu_ms` of CPU time in all at `now_ms`. Each window of
    /// [`CPU_WINDOW_MS`] decides whether the next one runs at full rate or trickles.
    pub fn observe_cpu(&mut self, now_ms: u64, cpu_ms: u64) {
        match self.window {
            None => self.window = Some((now_ms, cpu_ms)),
            Some((t0, c0)) if now_ms.saturating_sub(t0) >= CPU_WINDOW_MS => {
                let wall = now_ms - t0;
                let used = cpu_ms.saturating_sub(c0);
                let permille = u32::try_from(used.saturating_mul(1000) / wall).unwrap_or(u32::MAX);
                self.spent.cpu_permille = Some(permille);
                self.over = permille > self.config.cpu_permille;
                self.window = Some((now_ms, cpu_ms));
            }
            Some(_) => {}
        }
    }

    /// The checks per minute that check every block once per period: over the CPU cap, routine
    /// work still runs at this pace (two DHT queries and four audits per check, at most the
    /// configured rates), so that it slows down but does not fall behind.
    pub fn set_pace(&mut self, checks_per_min: u64, now_ms: u64) {
        let dht = checks_per_min
            .saturating_mul(2)
            .clamp(Self::TRICKLE_PER_MIN, u64::from(self.config.dht_per_min));
        let audits = checks_per_min
            .saturating_mul(4)
            .clamp(Self::TRICKLE_PER_MIN, u64::from(self.config.audits_per_min));
        if self.trickle_dht.capacity() != dht {
            self.trickle_dht = Bucket::full(dht, 60_000, now_ms);
        }
        if self.trickle_audits.capacity() != audits {
            self.trickle_audits = Bucket::full(audits, 60_000, now_ms);
        }
    }

    /// Takes one DHT query from the budget, if there is one at `now_ms`.
    pub fn try_dht(&mut self, now_ms: u64, work: Work) -> bool {
        let over = self.over && work == Work::Routine;
        let ok = take(&mut self.dht, &mut self.trickle_dht, over, now_ms);
        if ok {
            self.spent.dht += 1;
        } else {
            self.spent.dht_deferred += 1;
        }
        ok
    }

    /// Takes one audit from the budget, if there is one at `now_ms`.
    pub fn try_audit(&mut self, now_ms: u64, work: Work) -> bool {
        let over = self.over && work == Work::Routine;
        let ok = take(&mut self.audits, &mut self.trickle_audits, over, now_ms);
        if ok {
            self.spent.audits += 1;
        } else {
            self.spent.audits_deferred += 1;
        }
        ok
    }

    /// Takes one audit for work that may wait (the periodic sampling audit), only while more
    /// than half of the audit bucket is left: the other half is kept for the checks of the
    /// sweep, which repair depends on.
    pub fn try_spare_audit(&mut self, now_ms: u64) -> bool {
        self.audits.refill(now_ms);
        if self.audits.available() * 2 <= u64::from(self.config.audits_per_min) {
            self.spent.audits_deferred += 1;
            return false;
        }
        self.try_audit(now_ms, Work::Routine)
    }

    /// [`Budget::try_spare_audit`] for DHT queries.
    pub fn try_spare_dht(&mut self, now_ms: u64) -> bool {
        self.dht.refill(now_ms);
        if self.dht.available() * 2 <= u64::from(self.config.dht_per_min) {
            self.spent.dht_deferred += 1;
            return false;
        }
        self.try_dht(now_ms, Work::Routine)
    }

    /// DHT queries available now for `work` (at most a minute's worth), without taking them.
    pub fn dht_available(&mut self, now_ms: u64, work: Work) -> u64 {
        self.dht.refill(now_ms);
        self.trickle_dht.refill(now_ms);
        if self.over && work == Work::Routine {
            self.dht.available().min(self.trickle_dht.available())
        } else {
            self.dht.available()
        }
    }

    /// The period in which `blocks` blocks with `holders` other holders each can all be checked
    /// within this budget, milliseconds: one DHT query per block and one audit per holder.
    pub fn shortest_period_ms(&self, blocks: u64, holders: u64) -> u64 {
        let by_dht = blocks.saturating_mul(60_000) / u64::from(self.config.dht_per_min);
        let by_audits = blocks.saturating_mul(holders).saturating_mul(60_000)
            / u64::from(self.config.audits_per_min);
        by_dht.max(by_audits)
    }
}

fn take(full: &mut Bucket, trickle: &mut Bucket, over: bool, now_ms: u64) -> bool {
    // Both buckets refill all the time; over the CPU cap, the trickle bucket must allow too.
    full.refill(now_ms);
    trickle.refill(now_ms);
    if !full.can_take(1) || (over && !trickle.can_take(1)) {
        return false;
    }
    full.take(1);
    if over {
        trickle.take(1);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn a_minute_allows_the_rate_and_no_more() {
        let mut b = Budget::new(
            BudgetConfig {
                dht_per_min: 60,
                audits_per_min: 30,
                cpu_permille: 10,
            },
            T0,
        );
        let mut dht = 0;
        let mut audits = 0;
        // Ten minutes, asking every 100 ms for more than the budget.
        for step in 0..6000u64 {
            let now = T0 + step * 100;
            for _ in 0..3 {
                dht += u64::from(b.try_dht(now, Work::Routine));
                audits += u64::from(b.try_audit(now, Work::Routine));
            }
        }
        // The first minute's full bucket plus ten minutes of refill.
        assert!((600..=660).contains(&dht), "{dht}");
        assert!((300..=330).contains(&audits), "{audits}");
        assert_eq!(b.spent().dht, dht);
        assert!(b.spent().dht_deferred > 0);
    }

    #[test]
    fn over_the_cpu_cap_the_work_trickles_and_recovers() {
        let mut b = Budget::new(BudgetConfig::default(), T0);
        b.observe_cpu(T0, 0);
        // 50 ms of CPU per 10 s = 5 per mille: under the 10 cap.
        b.observe_cpu(T0 + 10_000, 50);
        assert!(!b.over_cpu());
        // 500 ms per 10 s = 50 per mille: over.
        b.observe_cpu(T0 + 20_000, 550);
        assert!(b.over_cpu());
        assert_eq!(b.spent().cpu_permille, Some(50));
        let mut got = 0;
        let mut urgent = 0;
        for step in 0..600u64 {
            got += u64::from(b.try_dht(T0 + 20_000 + step * 100, Work::Routine));
        }
        // One minute: the trickle's full bucket and one refill at most.
        assert!(got <= 2 * Budget::TRICKLE_PER_MIN, "{got}");
        assert!(got >= Budget::TRICKLE_PER_MIN, "never starved: {got}");
        // Checks on evidence are not held by the CPU cap, only by the rate.
        for _ in 0..50 {
            urgent += u64::from(b.try_dht(T0 + 80_000, Work::Urgent));
        }
        assert_eq!(urgent, 50);
        assert!(
            b.dht_available(T0 + 80_000, Work::Routine) <= 1,
            "routine work still trickles"
        );
        b.observe_cpu(T0 + 90_000, 560);
        assert!(!b.over_cpu());
        assert!(b.try_dht(T0 + 150_000, Work::Routine));
    }

    #[test]
    fn over_the_cpu_cap_routine_work_keeps_the_pace_of_its_period() {
        // 10⁵ blocks over 16 h: 104 checks a minute. Over the cap, the routine work slows to
        // that pace (not to the bare trickle), so leases and provider records never lapse.
        let mut b = Budget::new(BudgetConfig::default(), T0);
        let pace = 100_000 * 60_000 / (16 * 3600 * 1000);
        b.set_pace(pace, T0);
        b.observe_cpu(T0, 0);
        b.observe_cpu(T0 + 10_000, 5_000);
        assert!(b.over_cpu());
        let mut dht = 0;
        let mut audits = 0;
        for step in 0..6000u64 {
            let now = T0 + 10_000 + step * 100;
            dht += u64::from(b.try_dht(now, Work::Routine));
            audits += u64::from(b.try_audit(now, Work::Routine));
        }
        // Ten minutes at the pace, within the configured rates (240 and 360 a minute).
        assert!((10 * 2 * pace..=11 * 2 * pace + 2).contains(&dht), "{dht}");
        assert!((10 * 360..=11 * 360).contains(&audits), "{audits}");
        // Few blocks: the floor of the trickle.
        b.set_pace(0, T0 + 700_000);
        assert_eq!(
            b.dht_available(T0 + 700_000, Work::Routine),
            Budget::TRICKLE_PER_MIN
        );
    }

    #[test]
    fn spare_work_leaves_half_the_bucket_to_the_checks() {
        let mut b = Budget::new(
            BudgetConfig {
                dht_per_min: 100,
                audits_per_min: 100,
                cpu_permille: 10,
            },
            T0,
        );
        let spare = (0..200).filter(|_| b.try_spare_audit(T0)).count();
        assert_eq!(spare, 50);
        let checks = (0..200).filter(|_| b.try_audit(T0, Work::Routine)).count();
        assert_eq!(checks, 50, "the checks still have their half");
        let spare_dht = (0..200).filter(|_| b.try_spare_dht(T0)).count();
        assert_eq!(spare_dht, 50);
    }

    #[test]
    fn the_shortest_period_follows_the_slower_of_the_two_rates() {
        let b = Budget::new(BudgetConfig::default(), T0);
        // 10⁵ blocks, 3 other holders each: 10⁵ / 240 min vs 3·10⁵ / 360 min.
        let p = b.shortest_period_ms(100_000, 3);
        assert_eq!(p, 300_000 * 60_000 / 360);
        assert!(
            p < 24 * 3600 * 1000,
            "the default budget keeps a day's period at 10⁵ blocks"
        );
    }
}
