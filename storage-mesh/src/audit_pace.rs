//! When audits run and what they change meanwhile (spec: `spec/proof-of-storage.md`, "Threats"):
//!
//! - [`InFlight`]: the audits this node is running, each until its deadline. While the audit of
//!   holder H on block B runs, this node neither serves B to H nor answers H's audit of B
//!   ([`InFlight::withholds`]): a holder that stores nothing cannot answer the audit by fetching
//!   the block from its auditor, or by reflecting the challenge to it.
//! - [`Pacer`]: how many holders the background repair pass may audit per pass, how long it
//!   waits between passes, and how often the periodic audit runs. Audits that get no answer
//!   (timeouts, unreachable holders) are a sign of load, here or there: the budget halves and the
//!   interval doubles; passes whose audits are answered win them back. Load thus slows the audits
//!   down instead of turning into failures.
//!
//! Non-goals: sending the challenges (the node), judging the proofs ([`crate::proof`]),
//! remembering the results ([`crate::audit`]).
//!
//! Sans-I/O: the caller passes its clock (Unix ms).

use std::collections::HashMap;

use warren_protocol::PeerId;

/// Challenges sent to one holder at once, under one deadline, by `warren audit` and the
/// background audit: a holder that outsources its storage must fetch all of them within the
/// deadline, not one.
pub const AUDIT_BATCH: usize = 4;

/// Most audits in flight at once; more are refused by [`InFlight::begin`] (the caller skips them).
pub const MAX_IN_FLIGHT: usize = 4096;

/// The audits running now: (holder, block hash) → (latest deadline (Unix ms), audits of that
/// pair running). Bounded by [`MAX_IN_FLIGHT`]; entries past their deadline count for nothing and
/// are dropped when room is needed.
#[derive(Clone, Debug, Default)]
pub struct InFlight {
    running: HashMap<(PeerId, [u8; 32]), (u64, u32)>,
}

impl InFlight {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes that the audit of `holder` on `block` runs until `deadline_ms`. False when the set is
    /// full of running audits: the caller does not run this one (it stays unverified).
    pub fn begin(
        &mut self,
        holder: PeerId,
        block: [u8; 32],
        now_ms: u64,
        deadline_ms: u64,
    ) -> bool {
        if self.running.len() >= MAX_IN_FLIGHT {
            self.running.retain(|_, (d, _)| *d > now_ms);
        }
        if self.running.len() >= MAX_IN_FLIGHT && !self.running.contains_key(&(holder, block)) {
            return false;
        }
        let (deadline, count) = self.running.entry((holder, block)).or_insert((0, 0));
        *deadline = (*deadline).max(deadline_ms);
        *count = count.saturating_add(1);
        true
    }

    /// One audit of `holder` on `block` begun with [`InFlight::begin`] is over (answered, failed
    /// or timed out); the block is served again once no other audit of the pair runs.
    pub fn end(&mut self, holder: &PeerId, block: &[u8; 32]) {
        let key = (*holder, *block);
        if let Some((_, count)) = self.running.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.running.remove(&key);
            }
        }
    }

    /// Whether a request from `peer` for `block` must not be served at `now_ms`: this node is
    /// auditing `peer` on `block` and the deadline has not passed.
    pub fn withholds(&self, peer: &PeerId, block: &[u8; 32], now_ms: u64) -> bool {
        self.running
            .get(&(*peer, *block))
            .is_some_and(|(deadline, _)| *deadline > now_ms)
    }

    /// Audits noted (some may be past their deadline).
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// True if none is noted.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }
}

/// Tunables of a [`Pacer`]. `Default` gives the node's values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacerConfig {
    /// Most audits per repair pass, the budget when nothing times out (256).
    pub max_budget: u32,
    /// Fewest audits per pass, however loaded (4).
    pub min_budget: u32,
    /// Longest interval between passes, as a multiple of the configured one (8).
    pub max_widening: u32,
    /// Share of a pass's audits (per mille) that may go unanswered before the pass counts as
    /// loaded (125: one in eight).
    pub loaded_permille: u32,
}

impl Default for PacerConfig {
    fn default() -> Self {
        Self {
            max_budget: 256,
            min_budget: 4,
            max_widening: 8,
            loaded_permille: 125,
        }
    }
}

/// The background audits' pace, adapted pass by pass (see the module documentation).
#[derive(Clone, Debug)]
pub struct Pacer {
    config: PacerConfig,
    budget: u32,
    widening: u32,
    /// This pass: audits allowed so far, audits answered, audits without an answer.
    spent: u32,
    answered: u32,
    unanswered: u32,
    /// Ticks of the periodic audit seen (one in `widening` runs).
    ticks: u64,
}

impl Default for Pacer {
    fn default() -> Self {
        Self::new(PacerConfig::default())
    }
}

impl Pacer {
    /// A pacer at full budget and the configured interval (a `min_budget` of 0 counts as 1, a
    /// `max_budget` below it as `min_budget`, a `max_widening` of 0 as 1).
    pub fn new(mut config: PacerConfig) -> Self {
        config.min_budget = config.min_budget.max(1);
        config.max_budget = config.max_budget.max(config.min_budget);
        config.max_widening = config.max_widening.max(1);
        Self {
            budget: config.max_budget,
            config,
            widening: 1,
            spent: 0,
            answered: 0,
            unanswered: 0,
            ticks: 0,
        }
    }

    /// Whether the periodic audit (one holder every `audit_every_ms`) runs at this tick: every
    /// tick unloaded, one in `widening` under load.
    pub fn audit_tick(&mut self) -> bool {
        self.ticks = self.ticks.wrapping_add(1);
        self.ticks.is_multiple_of(u64::from(self.widening))
    }

    /// A pass starts: its budget is the current one.
    pub fn start_pass(&mut self) {
        self.spent = 0;
        self.answered = 0;
        self.unanswered = 0;
    }

    /// Whether one more audit fits in this pass's budget (and spends it if so). A holder not
    /// audited for want of budget stays unverified: the caller does not act on it this pass.
    pub fn try_audit(&mut self) -> bool {
        if self.spent >= self.budget {
            return false;
        }
        self.spent += 1;
        true
    }

    /// The outcome of one audit of this pass: answered in time (passed or failed) or not.
    pub fn audited(&mut self, answered: bool) {
        if answered {
            self.answered = self.answered.saturating_add(1);
        } else {
            self.unanswered = self.unanswered.saturating_add(1);
        }
    }

    /// The pass is over: a loaded pass (too many audits unanswered) halves the budget and doubles
    /// the interval; an unloaded one with audits raises the budget by an eighth of the maximum and
    /// halves the widening.
    pub fn end_pass(&mut self) {
        let total = u64::from(self.answered) + u64::from(self.unanswered);
        if total == 0 {
            return;
        }
        let loaded =
            u64::from(self.unanswered) * 1000 > total * u64::from(self.config.loaded_permille);
        if loaded {
            self.budget = (self.budget / 2).max(self.config.min_budget);
            self.widening = (self.widening * 2).min(self.config.max_widening);
        } else {
            let step = (self.config.max_budget / 8).max(1);
            self.budget = self.budget.saturating_add(step).min(self.config.max_budget);
            self.widening = (self.widening / 2).max(1);
        }
    }

    /// Audits allowed per pass now.
    pub fn budget(&self) -> u32 {
        self.budget
    }

    /// The wait before the next pass, for a configured interval of `every_ms`.
    pub fn interval_ms(&self, every_ms: u64) -> u64 {
        every_ms.saturating_mul(u64::from(self.widening))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::tests::peer;

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn a_block_under_audit_is_withheld_from_that_holder_only_until_the_deadline() {
        let mut f = InFlight::new();
        let (h, other, b, c) = (peer(1), peer(2), [1u8; 32], [2u8; 32]);
        assert!(!f.withholds(&h, &b, T0));
        assert!(f.begin(h, b, T0, T0 + 10_000));
        assert!(f.withholds(&h, &b, T0 + 9_999));
        assert!(!f.withholds(&h, &b, T0 + 10_000), "past the deadline");
        assert!(!f.withholds(&other, &b, T0), "another peer is served");
        assert!(!f.withholds(&h, &c, T0), "another block is served");
        // Two audits of the same pair: the later deadline holds.
        assert!(f.begin(h, b, T0 + 5_000, T0 + 15_000));
        assert!(f.withholds(&h, &b, T0 + 14_999));
        // Withheld until both are over.
        f.end(&h, &b);
        assert!(f.withholds(&h, &b, T0 + 14_999));
        f.end(&h, &b);
        assert!(!f.withholds(&h, &b, T0));
        f.end(&h, &b);
        assert!(f.is_empty());
    }

    #[test]
    fn the_in_flight_set_is_bounded_and_makes_room_from_expired_audits() {
        let mut f = InFlight::new();
        for i in 0..MAX_IN_FLIGHT {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            assert!(f.begin(peer(1), b, T0, T0 + 10_000));
        }
        assert!(
            !f.begin(peer(2), [9; 32], T0, T0 + 10_000),
            "full of live audits"
        );
        assert_eq!(f.len(), MAX_IN_FLIGHT);
        // Once those are past their deadline they make room.
        assert!(f.begin(peer(2), [9; 32], T0 + 10_000, T0 + 20_000));
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn timeouts_halve_the_budget_and_widen_the_interval_answers_win_them_back() {
        let mut p = Pacer::default();
        assert_eq!((p.budget(), p.interval_ms(5_000)), (256, 5_000));
        // A pass within budget: every audit allowed, then refused past it.
        p.start_pass();
        assert_eq!((0..300).filter(|_| p.try_audit()).count(), 256);
        // A loaded pass: one audit in four unanswered.
        for i in 0..8 {
            p.audited(i % 4 != 0);
        }
        p.end_pass();
        assert_eq!((p.budget(), p.interval_ms(5_000)), (128, 10_000));
        // Load that persists: down to the floor, the interval at most 8×.
        for _ in 0..10 {
            p.start_pass();
            p.audited(false);
            p.end_pass();
        }
        assert_eq!((p.budget(), p.interval_ms(5_000)), (4, 40_000));
        assert_eq!((0..80).filter(|_| p.audit_tick()).count(), 10);
        p.start_pass();
        assert_eq!((0..10).filter(|_| p.try_audit()).count(), 4);
        // A pass without audits changes nothing; answered passes recover step by step.
        p.start_pass();
        p.end_pass();
        assert_eq!(p.budget(), 4);
        p.start_pass();
        for _ in 0..8 {
            p.audited(true);
        }
        p.audited(false); // one in nine: under the one-in-eight threshold
        p.end_pass();
        assert_eq!((p.budget(), p.interval_ms(5_000)), (36, 20_000));
        for _ in 0..10 {
            p.start_pass();
            p.audited(true);
            p.end_pass();
        }
        assert_eq!((p.budget(), p.interval_ms(5_000)), (256, 5_000));
        assert!((0..5).all(|_| p.audit_tick()));
    }
}
