//! A peer's score: six components in `[0, 1]` and their CipherOcto-weighted total.
//!
//! Every component is computed from one *pooled* tally: this node's first-hand tally of the peer
//! plus the tallies of trusted reporters, each scaled by `second_hand_weight × weight × cap`, where
//! a reporter's weight is its standing divided by the number of weighted reporters of the peer
//! in its /16. The formulas (`spec/reputation.md` "Components"):
//!
//! | component | formula |
//! |---|---|
//! | performance | `(1 + good) / (2 + good + bad)`, good = proofs passed + results matched, bad = proofs failed + results mismatched |
//! | speed | `(1 + n·s) / (2 + n)`, `s = h / (h + mean latency)`, n = latency samples, h = `latency_half_ms` |
//! | uptime | `(1 + hours online) / (2 + samples)` (each sample covers one hour) |
//! | security | `1 / (1 + invalid + mismatched)` |
//! | peer review | `(1 + Σ wᵢ·oᵢ) / (2 + Σ wᵢ)`, oᵢ = reporter i's opinion, wᵢ its weight |
//! | longevity | `known / (known + longevity_half_ms)`, known = time since first tracked |

use super::{
    Config,
    config::{FLOOR, WEIGHTS},
    tally::Tally,
};
use crate::observation::UPTIME_WINDOW_SECS;

/// The six components of a score, each in `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Components {
    /// Storage proofs and inference cross-checks passed, as a Beta posterior mean (weight 0.35).
    pub performance: f64,
    /// Latency mapped through `h / (h + latency)` and shrunk toward ½ (weight 0.20).
    pub speed: f64,
    /// Share of sampled hours online, shrunk toward ½ (weight 0.15).
    pub uptime: f64,
    /// `1 / (1 + invalid messages + mismatched results)` (weight 0.15).
    pub security: f64,
    /// Trust-weighted opinion of the peer's reporters, shrunk toward ½ (weight 0.10).
    pub peer_review: f64,
    /// Saturating function of how long the peer has been known (weight 0.05).
    pub longevity: f64,
}

impl Components {
    /// The components in the order of [`WEIGHTS`].
    pub fn as_array(&self) -> [f64; 6] {
        [
            self.performance,
            self.speed,
            self.uptime,
            self.security,
            self.peer_review,
            self.longevity,
        ]
    }

    /// The weighted sum with [`WEIGHTS`].
    pub fn total(&self) -> f64 {
        self.as_array()
            .iter()
            .zip(WEIGHTS)
            .map(|(c, w)| c * w)
            .sum::<f64>()
            .clamp(0.0, 1.0)
    }
}

/// How much evidence a score rests on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvidenceCounts {
    /// This node's own observations of the peer, decayed to now.
    pub first_hand: f64,
    /// Second-hand observations, decayed, capped and weighted as they enter the pooled tally.
    pub second_hand: f64,
    /// Reporters whose evidence counted (standing above zero).
    pub reporters: u32,
}

/// A peer's score as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    /// The weighted sum of the components, in `[0, 1]`.
    pub total: f64,
    /// The components.
    pub components: Components,
    /// The evidence behind them.
    pub evidence: EvidenceCounts,
    /// The peer's standing as a reporter, in `[0, 1]`: how much its own reports count here.
    pub standing: f64,
}

impl Score {
    /// True if the total, the performance or the security is below [`FLOOR`]. Performance and
    /// security are checked on their own so that a peer that fails every audit, or lies, is not
    /// kept above the floor by answering pings quickly.
    pub fn is_below_floor(&self) -> bool {
        self.total < FLOOR
            || self.components.performance < FLOOR
            || self.components.security < FLOOR
    }

    /// A value for gossipsub's `set_application_score`: `total − FLOOR` (in `(0, 0.75]`) for a peer
    /// above the floor, `total − 1` (in `[−1, 0)`) for one below it, so that every peer below the
    /// floor scores lower than every peer above it.
    pub fn application_score(&self) -> f64 {
        if self.is_below_floor() {
            self.total - 1.0
        } else {
            self.total - FLOOR
        }
    }

    /// The weight of the peer when this node chooses among peers (placement candidates, fetch
    /// order, onion paths), on the 0–1 scale: its `total`, or 0 when it
    /// [is below the floor](Score::is_below_floor), so a peer that fails its audits or lies ranks
    /// with the worst whatever its other components say.
    pub fn weight(&self) -> f64 {
        if self.is_below_floor() {
            0.0
        } else {
            self.total
        }
    }
}

/// A peer's pooled evidence: this node's first-hand tally plus each weighted reporter's tally,
/// scaled by `second_hand_weight × weight × min(1, report_cap / count)`, the count and the cap
/// taken apart for its verdicts (proofs, results, invalid messages) and its samples (latency,
/// uptime), with what peer review and the evidence counts need.
#[derive(Clone, Debug, Default)]
pub(crate) struct Pool {
    /// The pooled tally.
    pub(crate) tally: Tally,
    first_hand: f64,
    second_hand: f64,
    reporters: u32,
    review_sum: f64,
    review_weight: f64,
}

impl Pool {
    /// A pool holding only the first-hand tally (already decayed to now).
    pub(crate) fn new(first_hand: Tally) -> Self {
        Self {
            first_hand: first_hand.count(),
            tally: first_hand,
            ..Self::default()
        }
    }

    /// Adds a reporter's tally (decayed to now) with `weight` (its standing over its /16 group
    /// size); nothing if the weight is not positive.
    pub(crate) fn add(&mut self, config: &Config, tally: &Tally, weight: f64) {
        if weight <= 0.0 {
            return;
        }
        // The cap applies to a reporter's verdicts and to its samples apart: a reporter's
        // routine latency and uptime samples must not dilute the audits it saw fail.
        let cap = |n: f64| {
            if n > config.report_cap {
                config.report_cap / n
            } else {
                1.0
            }
        };
        let (verdicts, samples) = (tally.verdicts(), tally.samples());
        let k = config.second_hand_weight * weight;
        let (kv, ks) = (k * cap(verdicts), k * cap(samples));
        self.tally.add_scaled_parts(tally, kv, ks);
        self.second_hand += kv * verdicts + ks * samples;
        self.reporters += 1;
        self.review_sum += weight * tally.opinion();
        self.review_weight += weight;
    }
}

/// `(1 + n·x) / (2 + n)`: the mean `x` of `n` samples shrunk toward ½ by two pseudo-samples.
fn shrink(x: f64, n: f64) -> f64 {
    (1.0 + n * x) / (2.0 + n)
}

/// Scores a peer from its pooled evidence; `known_ms` is how long it has been tracked and
/// `standing` its standing as a reporter.
pub(crate) fn compute(config: &Config, pool: &Pool, known_ms: u64, standing: f64) -> Score {
    let pooled = &pool.tally;
    let performance = (1.0 + pooled.good()) / (2.0 + pooled.good() + pooled.bad());
    let speed = if pooled.latency_samples > 0.0 {
        let mean = pooled.latency_ms / pooled.latency_samples;
        let s = config.latency_half_ms / (config.latency_half_ms + mean);
        shrink(s, pooled.latency_samples)
    } else {
        0.5
    };
    let hours_online = pooled.uptime_secs / f64::from(UPTIME_WINDOW_SECS);
    let uptime = (1.0 + hours_online) / (2.0 + pooled.uptime_samples);
    let security = 1.0 / (1.0 + pooled.invalid + pooled.mismatched);
    let peer_review = (1.0 + pool.review_sum) / (2.0 + pool.review_weight);
    let known = known_ms as f64;
    let longevity = known / (known + config.longevity_half_ms as f64);

    let components = Components {
        performance,
        speed,
        uptime,
        security,
        peer_review,
        longevity,
    };
    Score {
        total: components.total(),
        components,
        evidence: EvidenceCounts {
            first_hand: pool.first_hand,
            second_hand: pool.second_hand,
            reporters: pool.reporters,
        },
        standing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one() {
        assert!((WEIGHTS.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn no_evidence_gives_the_neutral_score() {
        let s = compute(&Config::default(), &Pool::new(Tally::default()), 0, 0.0);
        let c = s.components;
        assert_eq!(c.as_array(), [0.5, 0.5, 0.5, 1.0, 0.5, 0.0]);
        // .35·.5 + .2·.5 + .15·.5 + .15·1 + .1·.5 + .05·0
        assert!(
            (s.total - super::super::NEUTRAL_SCORE).abs() < 1e-12,
            "{}",
            s.total
        );
        assert!(!s.is_below_floor());
        assert!((s.application_score() - 0.30).abs() < 1e-12);
    }

    #[test]
    fn floor_checks_performance_and_security_alone() {
        let mut t = Tally {
            failed: 3.0,
            latency_samples: 10.0,
            latency_ms: 10.0 * 20.0,
            uptime_samples: 10.0,
            uptime_secs: 10.0 * 3600.0,
            ..Tally::default()
        };
        let s = compute(&Config::default(), &Pool::new(t.clone()), 0, 0.0);
        // performance 1/5 = 0.2 < 0.25 though the total is well above the floor.
        assert!((s.components.performance - 0.2).abs() < 1e-12);
        assert!(s.total > FLOOR);
        assert!(s.is_below_floor());
        assert!(s.application_score() < 0.0);
        t.failed = 0.0;
        t.invalid = 4.0;
        let s = compute(&Config::default(), &Pool::new(t.clone()), 0, 0.0);
        assert!((s.components.security - 0.2).abs() < 1e-12);
        assert!(s.is_below_floor());
        assert_eq!(s.weight(), 0.0);
    }

    #[test]
    fn weight_is_the_total_above_the_floor_and_zero_below_it() {
        let neutral = compute(&Config::default(), &Pool::new(Tally::default()), 0, 0.0);
        assert_eq!(neutral.weight(), neutral.total);
        // A peer that failed its audits: above the floor in total, below it in performance.
        let failing = Tally {
            failed: 3.0,
            latency_samples: 10.0,
            latency_ms: 200.0,
            uptime_samples: 10.0,
            uptime_secs: 36_000.0,
            ..Tally::default()
        };
        let s = compute(&Config::default(), &Pool::new(failing), 0, 0.0);
        assert!(s.total > FLOOR && s.is_below_floor());
        assert_eq!(s.weight(), 0.0);
        // Weight orders like the application score: every peer below the floor under every
        // peer above it.
        assert!(s.application_score() < neutral.application_score());
        assert!(s.weight() < neutral.weight());
    }
}
