//! The tunables of the reputation machine and the constants of the scoring formula.
//!
//! The weights and the floor are part of the protocol's meaning (every warren peer ranks the same
//! way), so they are constants; the rest is local policy with defaults that `spec/reputation.md`
//! justifies.

use super::ReputationError;

/// The CipherOcto weights of the six components, in the order performance, speed, uptime,
/// security, peer review, longevity. They sum to 1.
pub const WEIGHTS: [f64; 6] = [0.35, 0.20, 0.15, 0.15, 0.10, 0.05];

/// A peer whose total, performance or security is below this is not chosen as a provider, hop or
/// operator (see [`Score::is_below_floor`](super::Score::is_below_floor)).
pub const FLOOR: f64 = 0.25;

/// The total of a peer without any evidence (0.5, 0.5, 0.5, 1, 0.5, 0 weighted): where an
/// unknown peer ranks among scored ones.
pub const NEUTRAL_SCORE: f64 = 0.55;

/// How much more a failed audit, mismatched result or invalid message counts against a peer's
/// local trust than a passed audit counts for it (`l = max(0, good − 2·bad)`).
pub const FAILURE_PENALTY: f64 = 2.0;

/// One hour, in milliseconds.
pub const HOUR_MS: u64 = 3600 * 1000;
/// One day, in milliseconds.
pub const DAY_MS: u64 = 24 * HOUR_MS;

/// Local policy of a [`Reputation`](super::Reputation) machine. `Default` gives the values of
/// `spec/reputation.md`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Every piece of evidence loses half its weight in this time, in ms (default 24 h).
    pub half_life_ms: u64,
    /// How much one second-hand observation from a peer of full standing counts, relative to one
    /// first-hand observation (default 0.5).
    pub second_hand_weight: f64,
    /// Most (decayed) observations one reporter's evidence about one subject counts as; more is
    /// scaled down to this (default 8).
    pub report_cap: f64,
    /// How much pooled local trust (`good − 2·(bad + invalid)` of the pooled tally) a peer needs
    /// before it receives any trust, i.e. before its own reports count (default 0.5: one audit
    /// passed first-hand, or one reported by a peer of full standing, net of failures).
    pub vetting_threshold: f64,
    /// Probability that the trust walk stops at each step (EigenTrust's damping; default 0.15).
    pub damping: f64,
    /// Steps of the trust walk: trust travels at most this many hops from this node and its
    /// bootstrap peers (default 5).
    pub max_depth: u32,
    /// Most peers tracked (default 8192); beyond it the peers with the least evidence are
    /// forgotten.
    pub max_peers: usize,
    /// Most reporters whose evidence about one peer is kept (default 16); beyond it the one heard
    /// from least recently is dropped.
    pub max_reporters_per_peer: usize,
    /// Most observations kept per peer for [`Reputation::evidence`](super::Reputation::evidence)
    /// (default 8; 0 keeps none). They explain a score; they do not change it.
    pub evidence_per_peer: usize,
    /// The trust vector is recomputed by `observe_*` when it is older than this, in ms (default
    /// 60 s); [`Reputation::refresh_trust`](super::Reputation::refresh_trust) recomputes it now.
    pub trust_refresh_ms: u64,
    /// The mean latency, in ms, at which the speed component is ½ before shrinkage (default 250).
    pub latency_half_ms: f64,
    /// How long a peer must be known for the longevity component to reach ½, in ms (default 30 d).
    pub longevity_half_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            half_life_ms: DAY_MS,
            second_hand_weight: 0.5,
            report_cap: 8.0,
            vetting_threshold: 0.5,
            damping: 0.15,
            max_depth: 5,
            max_peers: 8192,
            max_reporters_per_peer: 16,
            evidence_per_peer: 8,
            trust_refresh_ms: 60_000,
            latency_half_ms: 250.0,
            longevity_half_ms: 30 * DAY_MS,
        }
    }
}

impl Config {
    /// Checks that every value is in its range.
    pub fn validate(&self) -> Result<(), ReputationError> {
        let bad = |field: &'static str, reason: &'static str| {
            Err(ReputationError::InvalidConfig { field, reason })
        };
        if self.half_life_ms == 0 {
            return bad("half_life_ms", "must be positive");
        }
        if !(0.0..=1.0).contains(&self.second_hand_weight) {
            return bad("second_hand_weight", "must be in 0..=1");
        }
        if !(self.report_cap.is_finite() && self.report_cap > 0.0) {
            return bad("report_cap", "must be positive");
        }
        if !(self.vetting_threshold.is_finite() && self.vetting_threshold > 0.0) {
            return bad("vetting_threshold", "must be positive");
        }
        if !(self.damping > 0.0 && self.damping <= 1.0) {
            return bad("damping", "must be in (0, 1]");
        }
        if self.max_depth == 0 || self.max_depth > 64 {
            return bad("max_depth", "must be in 1..=64");
        }
        if self.max_peers == 0 || self.max_peers > 1 << 20 {
            return bad("max_peers", "must be in 1..=1048576");
        }
        if self.max_reporters_per_peer > 1024 {
            return bad("max_reporters_per_peer", "must be at most 1024");
        }
        if self.evidence_per_peer > 1024 {
            return bad("evidence_per_peer", "must be at most 1024");
        }
        if !(self.latency_half_ms.is_finite() && self.latency_half_ms > 0.0) {
            return bad("latency_half_ms", "must be positive");
        }
        if self.longevity_half_ms == 0 {
            return bad("longevity_half_ms", "must be positive");
        }
        Ok(())
    }
}
