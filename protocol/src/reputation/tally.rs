//! Decaying tallies of evidence: what one observer has seen of one subject.
//!
//! A [`Tally`] holds sums of observations, each weighted by `2^(−age / half_life)`: a count that
//! halves every half-life unless new observations arrive. It is kept "as of" the time of its newest
//! observation and decayed to `now` when read, so storing it costs nothing per tick and reading it
//! is exact.

use serde::{Deserialize, Serialize};

use super::config::FAILURE_PENALTY;
use crate::observation::{Kind, Observation, UPTIME_WINDOW_SECS};

/// `2^(−dt / half_life)`: the weight left of evidence `dt_ms` old.
pub(crate) fn decay(dt_ms: u64, half_life_ms: u64) -> f64 {
    if dt_ms == 0 {
        return 1.0;
    }
    (-(dt_ms as f64) / (half_life_ms as f64)).exp2()
}

/// Decayed sums of one observer's observations of one subject, as of `as_of_ms`.
///
/// Every field but `as_of_ms` is a non-negative, finite weighted sum.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tally {
    /// The time the sums are valid at, Unix ms.
    pub as_of_ms: u64,
    /// Storage proofs passed.
    pub passed: f64,
    /// Storage proofs failed.
    pub failed: f64,
    /// Inference results that matched.
    pub matched: f64,
    /// Inference results that did not match.
    pub mismatched: f64,
    /// Invalid messages.
    pub invalid: f64,
    /// Latency samples.
    pub latency_samples: f64,
    /// Sum of the latency samples' values, ms.
    pub latency_ms: f64,
    /// Uptime samples.
    pub uptime_samples: f64,
    /// Sum of the uptime samples' values, seconds online.
    pub uptime_secs: f64,
}

impl Tally {
    fn fields_mut(&mut self) -> [&mut f64; 9] {
        [
            &mut self.passed,
            &mut self.failed,
            &mut self.matched,
            &mut self.mismatched,
            &mut self.invalid,
            &mut self.latency_samples,
            &mut self.latency_ms,
            &mut self.uptime_samples,
            &mut self.uptime_secs,
        ]
    }

    fn fields(&self) -> [f64; 9] {
        [
            self.passed,
            self.failed,
            self.matched,
            self.mismatched,
            self.invalid,
            self.latency_samples,
            self.latency_ms,
            self.uptime_samples,
            self.uptime_secs,
        ]
    }

    /// Every sum finite and non-negative.
    pub(crate) fn is_valid(&self) -> bool {
        self.fields().iter().all(|v| v.is_finite() && *v >= 0.0)
    }

    /// Multiplies every sum by `k`.
    pub(crate) fn scale(&mut self, k: f64) {
        for v in self.fields_mut() {
            *v *= k;
        }
    }

    /// Adds `other`'s verdicts (proofs, results, invalid messages) times `k_verdicts` and its
    /// samples (latency, uptime) times `k_samples`.
    pub(crate) fn add_scaled_parts(&mut self, other: &Tally, k_verdicts: f64, k_samples: f64) {
        self.passed += k_verdicts * other.passed;
        self.failed += k_verdicts * other.failed;
        self.matched += k_verdicts * other.matched;
        self.mismatched += k_verdicts * other.mismatched;
        self.invalid += k_verdicts * other.invalid;
        self.latency_samples += k_samples * other.latency_samples;
        self.latency_ms += k_samples * other.latency_ms;
        self.uptime_samples += k_samples * other.uptime_samples;
        self.uptime_secs += k_samples * other.uptime_secs;
    }

    /// Verdicts counted: proofs, results and invalid messages.
    pub(crate) fn verdicts(&self) -> f64 {
        self.passed + self.failed + self.matched + self.mismatched + self.invalid
    }

    /// Samples counted: latency and uptime.
    pub(crate) fn samples(&self) -> f64 {
        self.latency_samples + self.uptime_samples
    }

    /// The tally as of `now_ms` (unchanged if `now_ms` is not after `as_of_ms`).
    pub(crate) fn decayed(&self, now_ms: u64, half_life_ms: u64) -> Tally {
        let mut t = self.clone();
        t.advance(now_ms, half_life_ms);
        t
    }

    /// Decays the sums to `now_ms` in place, if that is later than `as_of_ms`.
    fn advance(&mut self, now_ms: u64, half_life_ms: u64) {
        if now_ms > self.as_of_ms {
            self.scale(decay(now_ms - self.as_of_ms, half_life_ms));
            self.as_of_ms = now_ms;
        }
    }

    /// Adds one observation made at `at_ms`: moves the tally forward to `at_ms` if that is later,
    /// else adds the observation with the weight its age has as of `as_of_ms`.
    pub(crate) fn add(&mut self, obs: &Observation, at_ms: u64, half_life_ms: u64) {
        self.advance(at_ms, half_life_ms);
        let w = decay(self.as_of_ms.saturating_sub(at_ms), half_life_ms);
        let value = f64::from(obs.value);
        match obs.kind {
            Kind::StorageProofPassed => self.passed += w,
            Kind::StorageProofFailed => self.failed += w,
            Kind::InferenceMatched => self.matched += w,
            Kind::InferenceMismatched => self.mismatched += w,
            Kind::InvalidMessage => self.invalid += w,
            Kind::LatencySample => {
                self.latency_samples += w;
                self.latency_ms += w * value;
            }
            Kind::UptimeSample => {
                self.uptime_samples += w;
                self.uptime_secs += w * value.min(f64::from(UPTIME_WINDOW_SECS));
            }
        }
    }

    /// Observations counted (every kind, one each).
    pub(crate) fn count(&self) -> f64 {
        self.passed
            + self.failed
            + self.matched
            + self.mismatched
            + self.invalid
            + self.latency_samples
            + self.uptime_samples
    }

    /// Audits and cross-checks passed.
    pub(crate) fn good(&self) -> f64 {
        self.passed + self.matched
    }

    /// Audits and cross-checks failed.
    pub(crate) fn bad(&self) -> f64 {
        self.failed + self.mismatched
    }

    /// The local trust this tally gives its observer in its subject:
    /// `max(0, good − 2·(failed + mismatched + invalid))`.
    pub(crate) fn local_trust(&self) -> f64 {
        (self.good() - FAILURE_PENALTY * (self.bad() + self.invalid)).max(0.0)
    }

    /// The observer's opinion of the subject: the Beta(1, 1) posterior mean of good against
    /// bad-or-invalid, `(1 + good) / (2 + good + bad + invalid)`.
    pub(crate) fn opinion(&self) -> f64 {
        (1.0 + self.good()) / (2.0 + self.good() + self.bad() + self.invalid)
    }
}
