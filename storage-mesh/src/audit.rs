//! The audit ledger: what this node learned from the proofs of storage it asked for, and the log
//! of its audits (spec: `spec/proof-of-storage.md`).
//!
//! A provider record is only a claim; a holder counts as holding a block once it proved it. The
//! ledger remembers, per (holder, block):
//!
//! - a **failed** audit, for [`LedgerConfig::failed_ms`] (10 min): the holder is not counted as a
//!   holder of that block meanwhile, and not audited again;
//! - a **verified** copy — a passed audit, or a replica the holder accepted (it checked the bytes
//!   against the id before storing them) — for [`LedgerConfig::verified_ms`] (30 s): it counts
//!   without a fresh audit;
//! - **no answer** — the holder was unreachable or its proof missed the audit deadline — for a
//!   back-off that starts at [`LedgerConfig::no_answer_ms`] (30 s) and doubles with each audit
//!   in a row that got no answer, up to `failed_ms`: the holder is not counted as a holder of the
//!   block meanwhile (nothing vouches for it) and not audited again, but this is not a failed
//!   proof: it is not published and does not exclude the holder after the back-off. Load (a slow
//!   link, a busy holder) thus never turns into an accusation.
//!
//! Otherwise the answer is [`Holding::Unknown`]: audit it. The last [`LedgerConfig::log_len`]
//! audits are kept for the API and the dashboard, oldest first.
//!
//! Goals: bounded memory. The holders come from the DHT, that is from remote input, so each map
//! holds at most [`LedgerConfig::max_entries`]: when full, entries past their window are pruned,
//! then the oldest sixteenth is evicted (forgetting an entry costs at most one audit more).
//!
//! Non-goals: running audits (the node sends the challenge; [`crate::proof`] builds and checks
//! it) and scoring holders (the reputation machine, fed by the node).
//!
//! Sans-I/O: the caller passes its clock (Unix ms).

use std::collections::{HashMap, VecDeque};

use warren_protocol::{ContentId, PeerId};

/// Tunables of an [`AuditLedger`]. `Default` gives the node's values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerConfig {
    /// How long a holder that failed an audit is not counted as a holder of that block (10 min).
    pub failed_ms: u64,
    /// How long a passed audit (or an accepted replica) vouches for a holder (30 s).
    pub verified_ms: u64,
    /// The first back-off after an audit that got no answer (30 s); doubled for each such audit
    /// in a row, at most `failed_ms`.
    pub no_answer_ms: u64,
    /// Most (holder, block) entries in each of the failed and verified maps (16384).
    pub max_entries: usize,
    /// Audits kept in the log (1024).
    pub log_len: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            failed_ms: 10 * 60 * 1000,
            verified_ms: 30 * 1000,
            no_answer_ms: 30 * 1000,
            max_entries: 16_384,
            log_len: 1024,
        }
    }
}

/// How an audit ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The proof verified against the block id.
    Passed,
    /// The holder answered in time, but not with a valid proof: a wrong or malformed proof,
    /// `not_found`, another kind of answer. A failed proof: published, and the holder
    /// is excluded for [`LedgerConfig::failed_ms`].
    Failed(String),
    /// No answer within the audit deadline: the holder was unreachable, the connection failed,
    /// the proof came too late, or the holder declined (`failed`, e.g. busy). Not a failed proof (see the module documentation).
    NoAnswer(String),
}

/// One audit this node ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audit {
    /// The holder audited.
    pub subject: PeerId,
    /// The block challenged.
    pub block: ContentId,
    /// How it ended.
    pub outcome: Outcome,
    /// When (Unix ms).
    pub time_ms: u64,
}

impl Audit {
    /// True if the proof verified against the block id.
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Passed
    }

    /// True if the holder answered within the deadline (passed or failed).
    pub fn answered(&self) -> bool {
        !matches!(self.outcome, Outcome::NoAnswer(_))
    }

    /// Why it did not pass; `None` when the proof verified.
    pub fn failure(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Passed => None,
            Outcome::Failed(why) | Outcome::NoAnswer(why) => Some(why),
        }
    }
}

/// What the ledger says about a holder of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holding {
    /// It failed an audit of the block lately: not a holder, do not audit it again yet.
    Failed,
    /// It proved it holds the block lately: a holder, no audit needed.
    Verified,
    /// Its last audits of the block got no answer and the back-off runs: not counted as a
    /// holder, not audited again yet, but not accused either.
    NoAnswer,
    /// Nothing recent: audit it.
    Unknown,
}

type Key = (PeerId, [u8; 32]);

/// Recent audit results per (holder, block) and the audit log. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct AuditLedger {
    config: LedgerConfig,
    /// (holder, block hash) → when it failed an audit.
    failed: HashMap<Key, u64>,
    /// (holder, block hash) → when it last proved it holds the block.
    verified: HashMap<Key, u64>,
    /// (holder, block hash) → (when its last audit got no answer, audits in a row without one).
    unanswered: HashMap<Key, (u64, u32)>,
    log: VecDeque<Audit>,
}

impl AuditLedger {
    /// An empty ledger with `config` (a `max_entries` or `log_len` of 0 counts as 1).
    pub fn new(mut config: LedgerConfig) -> Self {
        config.max_entries = config.max_entries.max(1);
        config.log_len = config.log_len.max(1);
        Self {
            config,
            ..Self::default()
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    /// What is known at `now_ms` about `holder` holding `block`. A failure in its window wins
    /// over a verification (a holder that lost the block since is not counted), a verification
    /// over a running no-answer back-off.
    pub fn holding(&self, holder: &PeerId, block: &ContentId, now_ms: u64) -> Holding {
        let key = (*holder, block.hash());
        let recent =
            |at: Option<&u64>, window: u64| at.is_some_and(|t| now_ms.saturating_sub(*t) < window);
        if recent(self.failed.get(&key), self.config.failed_ms) {
            Holding::Failed
        } else if recent(self.verified.get(&key), self.config.verified_ms) {
            Holding::Verified
        } else if let Some(&(at, streak)) = self.unanswered.get(&key)
            && now_ms.saturating_sub(at) < self.backoff(streak)
        {
            Holding::NoAnswer
        } else {
            Holding::Unknown
        }
    }

    /// The back-off after `streak` audits in a row without an answer.
    fn backoff(&self, streak: u32) -> u64 {
        let doublings = streak.saturating_sub(1).min(20);
        self.config
            .no_answer_ms
            .saturating_mul(1 << doublings)
            .min(self.config.failed_ms)
    }

    /// Records one audit: a pass verifies the holder and clears a failure, a failure does the
    /// reverse, no answer starts (or doubles) the back-off and leaves a failure as it is; the
    /// audit goes to the log (the oldest drops out past `log_len`).
    pub fn record(&mut self, audit: Audit) {
        let key = (audit.subject, audit.block.hash());
        match &audit.outcome {
            Outcome::Passed => self.verify(key, audit.time_ms),
            Outcome::Failed(_) => {
                self.verified.remove(&key);
                self.unanswered.remove(&key);
                insert_bounded(
                    &mut self.failed,
                    key,
                    audit.time_ms,
                    self.config.failed_ms,
                    self.config.max_entries,
                );
            }
            Outcome::NoAnswer(_) => {
                self.verified.remove(&key);
                let streak = self.unanswered.get(&key).map_or(0, |(_, s)| *s);
                let (max, window) = (self.config.max_entries, self.config.failed_ms);
                if self.unanswered.len() >= max && !self.unanswered.contains_key(&key) {
                    let at = audit.time_ms;
                    self.unanswered
                        .retain(|_, (t, _)| at.saturating_sub(*t) < window);
                    evict_oldest(&mut self.unanswered, max, |(t, _)| *t);
                }
                self.unanswered
                    .insert(key, (audit.time_ms, streak.saturating_add(1)));
            }
        }
        if self.log.len() >= self.config.log_len {
            self.log.pop_front();
        }
        self.log.push_back(audit);
    }

    /// `holder` accepted a replica of `block` at `now_ms`: it checked the bytes against the id
    /// before storing them, so it holds a good copy now (as after a passed audit, but not
    /// logged).
    pub fn stored(&mut self, holder: PeerId, block: &ContentId, now_ms: u64) {
        self.verify((holder, block.hash()), now_ms);
    }

    /// The audits logged, oldest first.
    pub fn log(&self) -> impl ExactSizeIterator<Item = &Audit> {
        self.log.iter()
    }

    /// Entries in the failed and verified maps.
    pub fn entries(&self) -> (usize, usize) {
        (self.failed.len(), self.verified.len())
    }

    /// Entries in the no-answer map.
    pub fn unanswered_entries(&self) -> usize {
        self.unanswered.len()
    }

    /// Drops the entries past their window at `now_ms` (they no longer change any answer).
    pub fn prune(&mut self, now_ms: u64) {
        prune(&mut self.failed, now_ms, self.config.failed_ms);
        prune(&mut self.verified, now_ms, self.config.verified_ms);
        let window = self.config.failed_ms;
        self.unanswered
            .retain(|_, (t, _)| now_ms.saturating_sub(*t) < window);
    }

    fn verify(&mut self, key: Key, at_ms: u64) {
        self.failed.remove(&key);
        self.unanswered.remove(&key);
        insert_bounded(
            &mut self.verified,
            key,
            at_ms,
            self.config.verified_ms,
            self.config.max_entries,
        );
    }
}

fn prune(map: &mut HashMap<Key, u64>, now_ms: u64, window: u64) {
    map.retain(|_, t| now_ms.saturating_sub(*t) < window);
}

/// Inserts `key → at_ms`; at `max` entries first prunes those past `window` as of `at_ms`, then
/// evicts the oldest sixteenth (at least one).
fn insert_bounded(map: &mut HashMap<Key, u64>, key: Key, at_ms: u64, window: u64, max: usize) {
    if map.len() >= max && !map.contains_key(&key) {
        prune(map, at_ms, window);
        evict_oldest(map, max, |t| *t);
    }
    map.insert(key, at_ms);
}

/// At `max` entries or more, evicts the oldest sixteenth of `map` (at least enough to make room
/// for one), by the time `at` gives.
fn evict_oldest<V>(map: &mut HashMap<Key, V>, max: usize, at: impl Fn(&V) -> u64) {
    if map.len() >= max {
        let mut by_age: Vec<(u64, Key)> = map.iter().map(|(k, v)| (at(v), *k)).collect();
        let evict = (max / 16).max(map.len() + 1 - max);
        by_age.select_nth_unstable_by_key(evict - 1, |(t, _)| *t);
        for (_, k) in by_age.into_iter().take(evict) {
            map.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::tests::peer;
    use warren_protocol::Codec;

    const T0: u64 = 1_700_000_000_000;

    fn block(i: u8) -> ContentId {
        ContentId::of_block(Codec::Raw, &[i; 10])
    }

    fn audit(subject: PeerId, block: ContentId, passed: bool, time_ms: u64) -> Audit {
        Audit {
            subject,
            block,
            outcome: if passed {
                Outcome::Passed
            } else {
                Outcome::Failed("the proof does not verify".to_owned())
            },
            time_ms,
        }
    }

    fn unanswered(subject: PeerId, block: ContentId, time_ms: u64) -> Audit {
        Audit {
            subject,
            block,
            outcome: Outcome::NoAnswer("no proof within the audit deadline".to_owned()),
            time_ms,
        }
    }

    #[test]
    fn no_answer_is_not_a_failure_it_backs_off_and_doubles() {
        let mut l = AuditLedger::default();
        let (p, b) = (peer(1), block(1));
        l.record(audit(p, b, true, T0));
        // A timeout: not counted (nothing vouches for it), not audited again for 30 s, not failed.
        l.record(unanswered(p, b, T0 + 40_000));
        assert!(!l.log().last().unwrap().answered());
        assert_eq!(l.holding(&p, &b, T0 + 40_000), Holding::NoAnswer);
        assert_eq!(l.holding(&p, &b, T0 + 69_999), Holding::NoAnswer);
        assert_eq!(l.holding(&p, &b, T0 + 70_000), Holding::Unknown);
        assert_eq!(l.entries().0, 0, "no failure recorded");
        // Again: 60 s, then 120 s, ... capped at the failure window.
        l.record(unanswered(p, b, T0 + 70_000));
        assert_eq!(l.holding(&p, &b, T0 + 129_999), Holding::NoAnswer);
        assert_eq!(l.holding(&p, &b, T0 + 130_000), Holding::Unknown);
        for i in 0..30 {
            l.record(unanswered(p, b, T0 + 200_000 + i));
        }
        assert_eq!(l.holding(&p, &b, T0 + 200_029 + 599_999), Holding::NoAnswer);
        assert_eq!(l.holding(&p, &b, T0 + 200_029 + 600_000), Holding::Unknown);
        // A pass ends the back-off and its streak.
        l.record(audit(p, b, true, T0 + 900_000));
        assert_eq!(l.holding(&p, &b, T0 + 900_000), Holding::Verified);
        l.record(unanswered(p, b, T0 + 1_000_000));
        assert_eq!(l.holding(&p, &b, T0 + 1_030_000), Holding::Unknown);
        // A failure stays a failure when a later audit gets no answer.
        l.record(audit(p, b, false, T0 + 2_000_000));
        l.record(unanswered(p, b, T0 + 2_000_001));
        assert_eq!(l.holding(&p, &b, T0 + 2_100_000), Holding::Failed);
        // Bounded like the others.
        let mut l = AuditLedger::new(LedgerConfig {
            max_entries: 8,
            ..LedgerConfig::default()
        });
        for i in 0..100u8 {
            l.record(unanswered(peer(i), b, T0 + u64::from(i)));
            assert!(l.unanswered_entries() <= 8);
        }
        assert_eq!(l.holding(&peer(99), &b, T0 + 100), Holding::NoAnswer);
        l.prune(T0 + 10 * 60 * 1000 + 100);
        assert_eq!(l.unanswered_entries(), 0);
    }

    #[test]
    fn a_passed_audit_vouches_for_thirty_seconds() {
        let mut l = AuditLedger::default();
        let (p, b) = (peer(1), block(1));
        assert_eq!(l.holding(&p, &b, T0), Holding::Unknown);
        l.record(audit(p, b, true, T0));
        assert_eq!(l.holding(&p, &b, T0 + 29_999), Holding::Verified);
        assert_eq!(l.holding(&p, &b, T0 + 30_000), Holding::Unknown);
        // Per block and per holder.
        assert_eq!(l.holding(&p, &block(2), T0), Holding::Unknown);
        assert_eq!(l.holding(&peer(2), &b, T0), Holding::Unknown);
        // The raw and the cbor id of the same bytes are one block.
        let as_cbor = ContentId::from_parts(Codec::Cbor, b.hash());
        assert_eq!(l.holding(&p, &as_cbor, T0), Holding::Verified);
    }

    #[test]
    fn a_failed_audit_excludes_the_holder_for_ten_minutes_until_it_stores_a_good_copy() {
        let mut l = AuditLedger::default();
        let (p, b) = (peer(1), block(1));
        l.record(audit(p, b, true, T0));
        l.record(audit(p, b, false, T0 + 1000));
        assert_eq!(l.holding(&p, &b, T0 + 1000), Holding::Failed);
        assert_eq!(l.holding(&p, &b, T0 + 1000 + 599_999), Holding::Failed);
        assert_eq!(l.holding(&p, &b, T0 + 1000 + 600_000), Holding::Unknown);
        // A replica it accepted clears the failure.
        l.record(audit(p, b, false, T0 + 2000));
        l.stored(p, &b, T0 + 3000);
        assert_eq!(l.holding(&p, &b, T0 + 3000), Holding::Verified);
        // So does a passed audit.
        l.record(audit(p, b, false, T0 + 4000));
        l.record(audit(p, b, true, T0 + 5000));
        assert_eq!(l.holding(&p, &b, T0 + 5000), Holding::Verified);
        // A clock that went back: the entry still counts as recent.
        assert_eq!(l.holding(&p, &b, T0), Holding::Verified);
    }

    #[test]
    fn the_log_keeps_the_last_audits_oldest_first() {
        let mut l = AuditLedger::new(LedgerConfig {
            log_len: 3,
            ..LedgerConfig::default()
        });
        for i in 0..5u8 {
            l.record(audit(peer(i), block(i), i % 2 == 0, T0 + u64::from(i)));
        }
        let times: Vec<u64> = l.log().map(|a| a.time_ms - T0).collect();
        assert_eq!(times, [2, 3, 4]);
        let passed: Vec<bool> = l.log().map(Audit::passed).collect();
        assert_eq!(passed, [true, false, true]);
        // Accepted replicas are not audits.
        l.stored(peer(9), &block(9), T0 + 10);
        assert_eq!(l.log().len(), 3);
    }

    #[test]
    fn the_maps_are_bounded_pruned_then_oldest_evicted() {
        let max = 32;
        let mut l = AuditLedger::new(LedgerConfig {
            max_entries: max,
            ..LedgerConfig::default()
        });
        // A flood of holders: never more than `max` entries in either map.
        for i in 0..200u64 {
            let p = peer((i % 250) as u8);
            let b = block((i / 250) as u8);
            l.record(audit(p, b, i % 2 == 0, T0 + i));
            let (failed, verified) = l.entries();
            assert!(failed <= max && verified <= max, "{failed} {verified}");
        }
        // The newest entries survive eviction, the oldest went.
        assert_eq!(l.holding(&peer(199), &block(0), T0 + 200), Holding::Failed);
        assert_eq!(
            l.holding(&peer(198), &block(0), T0 + 200),
            Holding::Verified
        );
        assert_eq!(l.holding(&peer(1), &block(0), T0 + 200), Holding::Unknown);
        // When full, entries past their window make room before anything recent is evicted.
        let mut l = AuditLedger::new(LedgerConfig {
            max_entries: 4,
            ..LedgerConfig::default()
        });
        for i in 0..3u8 {
            l.stored(peer(i), &block(0), T0);
        }
        l.stored(peer(3), &block(0), T0 + 40_000);
        l.stored(peer(4), &block(0), T0 + 40_001);
        assert_eq!(l.entries().1, 2, "the three stale entries were pruned");
        // An explicit prune empties what has aged out.
        l.record(audit(peer(5), block(0), false, T0));
        l.prune(T0 + 10 * 60 * 1000);
        assert_eq!(l.entries(), (0, 0));
    }
}
