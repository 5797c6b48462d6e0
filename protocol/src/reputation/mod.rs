//! Local, Sybil-weighted reputation scores (spec: `spec/reputation.md`).
//!
//! One [`Reputation`] machine per node scores every peer it hears about from signed
//! [`Observation`]s: its own audits and cross-checks (first-hand) and the observations other peers
//! publish on [`REPUTATION_TOPIC`](crate::observation::REPUTATION_TOPIC) (second-hand). A
//! [`Score`] has the six CipherOcto components — performance .35, speed .20, uptime .15,
//! security .15, peer review .10, longevity .05 — each in `[0, 1]` (formulas in [`score`]).
//!
//! Goals:
//! - **First-hand counts most.** A second-hand observation counts at most
//!   [`Config::second_hand_weight`] (½) of a first-hand one, and one reporter's evidence about one
//!   peer at most [`Config::report_cap`] observations.
//! - **No stake, still Sybil-resistant.** A reporter's weight is its *standing*: its trust
//!   ([`trust`]: a bounded EigenTrust walk from this node and its bootstrap peers) relative to the
//!   mass-weighted median trust, capped at 1. A new identity has no standing, so its reports weigh
//!   nothing (and are not even stored) until this node or a trusted peer has seen it pass an audit
//!   ([`Config::vetting_threshold`]); a peer whose pooled evidence falls below that threshold
//!   receives no trust and passes none on; trust travels at most [`Config::max_depth`] hops; all
//!   reporters in one /16 count as one.
//! - **Forgetting.** Every piece of evidence halves in weight every [`Config::half_life_ms`]
//!   (24 h), so a peer that changes behaviour changes score.
//! - **Bounded and deterministic.** At most [`Config::max_peers`] peers, each with at most
//!   [`Config::max_reporters_per_peer`] reports and [`Config::evidence_per_peer`] stored
//!   observations; ordered maps only, so the same inputs give the same outputs everywhere.
//!
//! Non-goals: verifying observations (callers pass verified ones: [`SignedObservation::verify`])
//! and global consensus on scores — every node has its own view. Publishers are rate-limited
//! before their observations get here, by a separate [`RateLimit`] per node.
//!
//! Call order: [`Reputation::new`] (or [`Reputation::from_bytes`] after a restart), then any
//! interleaving of `observe_first_hand` / `observe_second_hand` / `set_network` / `score` /
//! `table`, all with the caller's clock `now_ms`. The trust vector is recomputed by `observe_*`
//! once it is [`Config::trust_refresh_ms`] old, or at once by [`Reputation::refresh_trust`];
//! `score` reads the last one computed. Persist with [`Reputation::to_bytes`] now and then.
//!
//! [`SignedObservation::verify`]: crate::observation::SignedObservation::verify

mod config;
mod error;
mod ledger;
pub mod rate;
pub mod sampling;
pub mod score;
mod state;
mod tally;
pub mod trust;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

pub use config::{Config, DAY_MS, FAILURE_PENALTY, FLOOR, HOUR_MS, NEUTRAL_SCORE, WEIGHTS};
pub use error::ReputationError;
pub use rate::{Rate, RateConfig, RateLimit};
pub use score::{Components, EvidenceCounts, Score};
pub use state::{MAX_STATE_SIZE, STATE_VERSION};
pub use tally::Tally;

use ledger::Ledger;
use trust::TrustVector;

use crate::{Multiaddr, PeerId, multiaddr::Protocol, observation::Observation};

/// What became of an observation passed to `observe_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ingest {
    /// It was counted.
    Counted,
    /// Second-hand, from an observer without standing here (yet): dropped, not stored.
    Untrusted,
    /// Second-hand, but observed by this node itself: pass it to `observe_first_hand`.
    FromMe,
    /// First-hand, but the observer is not this node.
    NotMine,
    /// About this node: a node does not score itself.
    AboutMe,
    /// It breaks a content rule of [`Observation::validate_content`].
    Invalid,
    /// No room: every tracked peer is a bootstrap peer, every report slot of the subject is held by
    /// reporters of higher standing, or `max_reporters_per_peer` is 0.
    NoRoom,
}

/// One node's reputation state machine. See the module documentation.
#[derive(Clone, Debug)]
pub struct Reputation {
    me: PeerId,
    seeds: BTreeSet<PeerId>,
    config: Config,
    ledgers: BTreeMap<PeerId, Ledger>,
    networks: BTreeMap<PeerId, [u8; 2]>,
    trust: TrustVector,
    refreshed_at_ms: Option<u64>,
}

impl Reputation {
    /// A machine for node `me` with the bootstrap peers `seeds` as its pre-trusted set (`me` among
    /// them is ignored). Refuses a [`Config`] that fails [`Config::validate`].
    pub fn new(me: PeerId, seeds: &[PeerId], config: Config) -> Result<Self, ReputationError> {
        config.validate()?;
        let seeds: BTreeSet<PeerId> = seeds.iter().filter(|s| **s != me).copied().collect();
        let mut r = Self {
            me,
            seeds,
            config,
            ledgers: BTreeMap::new(),
            networks: BTreeMap::new(),
            trust: TrustVector::default(),
            refreshed_at_ms: None,
        };
        r.recompute_trust(0);
        r.refreshed_at_ms = None;
        Ok(r)
    }

    /// This node.
    pub fn me(&self) -> &PeerId {
        &self.me
    }

    /// The bootstrap peers (pre-trusted set).
    pub fn seeds(&self) -> impl Iterator<Item = &PeerId> {
        self.seeds.iter()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Peers tracked.
    pub fn len(&self) -> usize {
        self.ledgers.len()
    }

    /// True if no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.ledgers.is_empty()
    }

    /// The lowest acceptable score, [`FLOOR`].
    pub const fn floor() -> f64 {
        FLOOR
    }

    /// Counts one of this node's own observations (an audit it ran, a result it cross-checked, a
    /// latency or uptime it measured, an invalid message it received). `obs.observer` must be
    /// this node. Weight 1, decayed from `min(obs.time_ms, now_ms)`.
    pub fn observe_first_hand(&mut self, obs: &Observation, now_ms: u64) -> Ingest {
        if obs.validate_content().is_err() {
            return Ingest::Invalid;
        }
        if obs.observer != self.me {
            return Ingest::NotMine;
        }
        if obs.subject == self.me {
            return Ingest::AboutMe;
        }
        self.maybe_refresh(now_ms);
        let (hl, keep) = (self.config.half_life_ms, self.config.evidence_per_peer);
        let Some(ledger) = self.ledger_mut(&obs.subject, now_ms) else {
            return Ingest::NoRoom;
        };
        ledger.first_hand.add(obs, obs.time_ms.min(now_ms), hl);
        ledger.remember(obs, keep);
        Ingest::Counted
    }

    /// Counts an observation another peer published (already verified with
    /// [`SignedObservation::verify`](crate::observation::SignedObservation::verify)). It is kept
    /// only if its observer has standing here; it then counts with the observer's standing as of
    /// the latest trust computation.
    pub fn observe_second_hand(&mut self, obs: &Observation, now_ms: u64) -> Ingest {
        if obs.validate_content().is_err() {
            return Ingest::Invalid;
        }
        if obs.observer == self.me {
            return Ingest::FromMe;
        }
        if obs.subject == self.me {
            return Ingest::AboutMe;
        }
        self.maybe_refresh(now_ms);
        let standing = self.standing(&obs.observer);
        if standing <= 0.0 {
            return Ingest::Untrusted;
        }
        let group = self.group_of(&obs.observer);
        let (hl, keep, max) = (
            self.config.half_life_ms,
            self.config.evidence_per_peer,
            self.config.max_reporters_per_peer,
        );
        let Some(ledger) = self.ledger_mut(&obs.subject, now_ms) else {
            return Ingest::NoRoom;
        };
        let Some(report) = ledger.report_mut(&obs.observer, standing, max) else {
            return Ingest::NoRoom;
        };
        report.tally.add(obs, obs.time_ms.min(now_ms), hl);
        report.standing = standing;
        report.group = group;
        ledger.remember(obs, keep);
        Ingest::Counted
    }

    /// Records that `peer` is reached at an address in the IPv4 /16 `prefix` (its first two
    /// octets; see [`ipv4_prefix`]). Reporters in one /16 share one weight; the change applies
    /// from the next trust refresh. At most `2 × max_peers` networks are remembered.
    pub fn set_network(&mut self, peer: PeerId, prefix: [u8; 2]) {
        if peer == self.me {
            return;
        }
        let cap = self.config.max_peers.saturating_mul(2);
        if self.networks.len() >= cap && !self.networks.contains_key(&peer) {
            let (ledgers, seeds) = (&self.ledgers, &self.seeds);
            self.networks
                .retain(|p, _| ledgers.contains_key(p) || seeds.contains(p));
            if self.networks.len() >= cap {
                return;
            }
        }
        self.networks.insert(peer, prefix);
    }

    /// Recomputes the trust vector now (see [`trust`]) and the cached standing of every stored
    /// report.
    pub fn refresh_trust(&mut self, now_ms: u64) {
        self.recompute_trust(now_ms);
    }

    /// `peer`'s standing as a reporter, in `[0, 1]`: 1 for this node and its bootstrap peers;
    /// otherwise its trust divided by the reference trust `t*`, capped at 1 (0 for a peer without
    /// trust). `t*` is the mass-weighted median of the non-bootstrap peers' trust: the peers at or
    /// above it hold half of their trust. Weighting by mass means that a crowd of identities that
    /// each got a sliver of trust keeps a sliver of standing each, instead of lowering the bar.
    pub fn standing(&self, peer: &PeerId) -> f64 {
        // One lookup in the common case: bootstrap peers always hold trust (they start the walk).
        match self.trust.values.get(peer) {
            Some(_) if self.seeds.contains(peer) => 1.0,
            Some(&t) if self.trust.reference > 0.0 => (t / self.trust.reference).min(1.0),
            Some(_) => 0.0,
            None if *peer == self.me || self.seeds.contains(peer) => 1.0,
            None => 0.0,
        }
    }

    /// `peer`'s EigenTrust value at the last refresh (they sum to 1 over all peers and this node).
    pub fn trust(&self, peer: &PeerId) -> f64 {
        if *peer == self.me {
            return self.trust.me;
        }
        self.trust.values.get(peer).copied().unwrap_or(0.0)
    }

    /// `peer`'s score at `now_ms`, or `None` if it is not tracked.
    pub fn score(&self, peer: &PeerId, now_ms: u64) -> Option<Score> {
        let ledger = self.ledgers.get(peer)?;
        Some(self.score_ledger(peer, ledger, now_ms))
    }

    /// `peer`'s [weight](Score::weight) at `now_ms` (its total, 0 below the floor), or `None` if
    /// it is not tracked: what placement candidates, the fetch order and onion paths take as a
    /// peer's score.
    pub fn weight(&self, peer: &PeerId, now_ms: u64) -> Option<f64> {
        self.score(peer, now_ms).map(|s| s.weight())
    }

    /// `peer`'s [application score](Score::application_score) at `now_ms` for gossipsub, 0 while
    /// it is not tracked.
    pub fn application_score(&self, peer: &PeerId, now_ms: u64) -> f64 {
        self.score(peer, now_ms)
            .map_or(0.0, |s| s.application_score())
    }

    /// True if `peer` is tracked and its score [is below the floor](Score::is_below_floor).
    pub fn is_below_floor(&self, peer: &PeerId, now_ms: u64) -> bool {
        self.score(peer, now_ms).is_some_and(|s| s.is_below_floor())
    }

    /// Every tracked peer with its score, best first (ties by peer id).
    pub fn table(&self, now_ms: u64) -> Vec<(PeerId, Score)> {
        let mut rows: Vec<(PeerId, Score)> = self
            .ledgers
            .iter()
            .map(|(p, l)| (*p, self.score_ledger(p, l, now_ms)))
            .collect();
        rows.sort_by(|a, b| b.1.total.total_cmp(&a.1.total).then(a.0.cmp(&b.0)));
        rows
    }

    /// The most recent observations counted for `peer` (first- and second-hand), oldest first; at
    /// most [`Config::evidence_per_peer`].
    pub fn evidence(&self, peer: &PeerId) -> Vec<Observation> {
        self.ledgers
            .get(peer)
            .map(|l| l.recent.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// This node's first-hand tally of `peer`, decayed to `now_ms`.
    pub fn first_hand(&self, peer: &PeerId, now_ms: u64) -> Option<Tally> {
        self.ledgers
            .get(peer)
            .map(|l| l.first_hand.decayed(now_ms, self.config.half_life_ms))
    }

    // -----------------------------------------------------------------------------------------

    fn group_of(&self, peer: &PeerId) -> Option<[u8; 2]> {
        if self.seeds.contains(peer) {
            None
        } else {
            self.networks.get(peer).copied()
        }
    }

    fn maybe_refresh(&mut self, now_ms: u64) {
        let due = match self.refreshed_at_ms {
            None => true,
            Some(at) => now_ms < at || now_ms - at >= self.config.trust_refresh_ms,
        };
        if due {
            self.recompute_trust(now_ms);
        }
    }

    fn recompute_trust(&mut self, now_ms: u64) {
        self.trust = trust::compute(
            &self.me,
            &self.seeds,
            &self.ledgers,
            &self.networks,
            &self.config,
            now_ms,
        );
        self.refreshed_at_ms = Some(now_ms);
        let mut ledgers = std::mem::take(&mut self.ledgers);
        for ledger in ledgers.values_mut() {
            for r in &mut ledger.reports {
                r.standing = self.standing(&r.observer);
                r.group = self.group_of(&r.observer);
            }
        }
        self.ledgers = ledgers;
    }

    /// The ledger of `peer`, created if missing (making room first). `None` if there is no room.
    fn ledger_mut(&mut self, peer: &PeerId, now_ms: u64) -> Option<&mut Ledger> {
        if !self.ledgers.contains_key(peer) {
            if !self.make_room(now_ms) {
                return None;
            }
            self.ledgers.insert(*peer, Ledger::new(now_ms));
        }
        self.ledgers.get_mut(peer)
    }

    /// Ensures there is room for one more ledger: at `max_peers`, forgets the `max_peers / 16`
    /// (at least one) non-bootstrap peers with the least evidence (ties: smallest peer id).
    fn make_room(&mut self, now_ms: u64) -> bool {
        if self.ledgers.len() < self.config.max_peers {
            return true;
        }
        let hl = self.config.half_life_ms;
        let mut candidates: Vec<(f64, PeerId)> = self
            .ledgers
            .iter()
            .filter(|(p, _)| !self.seeds.contains(*p))
            .map(|(p, l)| (l.weight(now_ms, hl), *p))
            .collect();
        if candidates.is_empty() {
            return false;
        }
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let excess = self.ledgers.len() + 1 - self.config.max_peers;
        let evict = excess.max(self.config.max_peers / 16).max(1);
        for (_, p) in candidates.into_iter().take(evict) {
            self.ledgers.remove(&p);
        }
        self.ledgers.len() < self.config.max_peers
    }

    fn score_ledger(&self, peer: &PeerId, ledger: &Ledger, now_ms: u64) -> Score {
        score::compute(
            &self.config,
            &ledger.pool(&self.config, now_ms),
            now_ms.saturating_sub(ledger.first_seen_ms),
            self.standing(peer),
        )
    }
}

/// The IPv4 /16 of an address (its first two octets), for [`Reputation::set_network`]; `None` for
/// an address that does not start with `/ip4`.
pub fn ipv4_prefix(addr: &Multiaddr) -> Option<[u8; 2]> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => {
            let [a, b, _, _] = ip.octets();
            Some([a, b])
        }
        _ => None,
    }
}
