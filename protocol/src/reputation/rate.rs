//! Per-observer rate limit of gossiped observations (spec: `spec/reputation.md`, "Rate limit").
//!
//! An observer may have at most [`RateConfig::max_per_window`] observations accepted per window
//! of [`RateConfig::window_ms`]; the windows are aligned on the Unix epoch (`window =
//! ⌊now_ms / window_ms⌋`), so peers with roughly synchronised clocks count in the same windows
//! and an honest forwarder never passes on more than the limit. Everything over it, until the
//! window ends, is [`Rate::Limited`]: the caller neither counts nor forwards it.
//!
//! A node applies the same limit to what it publishes itself, so an honest node is never limited
//! by the others.
//!
//! Memory is bounded by [`RateConfig::max_observers`] entries. When it is full, entries of past
//! windows are dropped; if every entry is of the current window, a new observer is
//! [`Rate::Limited`] until the window ends (fail closed: a crowd of identities cannot buy itself
//! an untracked pass by filling the table). Callers count only observers with standing
//! ([`crate::gossip::Filter`]), so filling the table takes that many trusted identities.
//!
//! Sans-I/O: the caller passes its clock.

use std::collections::BTreeMap;

use super::ReputationError;
use crate::PeerId;

/// What [`RateLimit::check`] says about one observation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    /// Within the observer's allowance: count and forward it.
    Allowed,
    /// Over the allowance for this window: neither count nor forward it.
    Limited,
}

/// Tunables of a [`RateLimit`]. `Default` gives the values of the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateConfig {
    /// Observations one observer may have accepted per window (default 600).
    pub max_per_window: u32,
    /// Length of a window, in ms (default 60 s).
    pub window_ms: u64,
    /// Most observers counted at once (default 4096).
    pub max_observers: usize,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            max_per_window: 600,
            window_ms: 60_000,
            max_observers: 4096,
        }
    }
}

/// Counts observations per observer per window. See the module documentation.
#[derive(Clone, Debug)]
pub struct RateLimit {
    config: RateConfig,
    /// observer → (window, observations seen in it).
    counts: BTreeMap<PeerId, (u64, u32)>,
}

impl Default for RateLimit {
    /// A limiter with the default [`RateConfig`].
    fn default() -> Self {
        Self {
            config: RateConfig::default(),
            counts: BTreeMap::new(),
        }
    }
}

impl RateLimit {
    /// A limiter with `config`; refuses a zero window, allowance or table size.
    pub fn new(config: RateConfig) -> Result<Self, ReputationError> {
        let bad = |field: &'static str| {
            Err(ReputationError::InvalidConfig {
                field,
                reason: "must be positive",
            })
        };
        if config.max_per_window == 0 {
            return bad("max_per_window");
        }
        if config.window_ms == 0 {
            return bad("window_ms");
        }
        if config.max_observers == 0 {
            return bad("max_observers");
        }
        Ok(Self {
            config,
            counts: BTreeMap::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RateConfig {
        &self.config
    }

    /// Observers currently counted.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// True if no observer is counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Counts one observation by `observer` at `now_ms` and says whether it is within the
    /// allowance of the current window.
    pub fn check(&mut self, observer: &PeerId, now_ms: u64) -> Rate {
        let window = now_ms / self.config.window_ms;
        if !self.counts.contains_key(observer) && self.counts.len() >= self.config.max_observers {
            self.counts.retain(|_, (w, _)| *w == window);
            if self.counts.len() >= self.config.max_observers {
                return Rate::Limited;
            }
        }
        let entry = self.counts.entry(*observer).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        if entry.1 > self.config.max_per_window {
            Rate::Limited
        } else {
            Rate::Allowed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keypair_from_secret;

    fn peer(i: u8) -> PeerId {
        keypair_from_secret([i + 1; 32]).public().to_peer_id()
    }

    fn limit(max: u32, window_ms: u64, observers: usize) -> RateLimit {
        RateLimit::new(RateConfig {
            max_per_window: max,
            window_ms,
            max_observers: observers,
        })
        .unwrap()
    }

    const T0: u64 = 1_700_000_040_000; // a multiple of 60 s

    #[test]
    fn allows_the_allowance_then_limits_until_the_window_ends() {
        let mut r = limit(3, 60_000, 16);
        let (a, b) = (peer(0), peer(1));
        for i in 0..3 {
            assert_eq!(r.check(&a, T0 + i), Rate::Allowed, "observation {i}");
        }
        assert_eq!(r.check(&a, T0 + 10), Rate::Limited);
        assert_eq!(r.check(&a, T0 + 59_999), Rate::Limited);
        // Another observer has its own allowance.
        assert_eq!(r.check(&b, T0 + 20), Rate::Allowed);
        // The next window starts afresh.
        for i in 0..3 {
            assert_eq!(r.check(&a, T0 + 60_000 + i), Rate::Allowed);
        }
        assert_eq!(r.check(&a, T0 + 60_500), Rate::Limited);
    }

    #[test]
    fn windows_are_aligned_on_the_epoch() {
        let mut r = limit(2, 1000, 16);
        let a = peer(0);
        // 999 and 1000 are in different windows: the allowance renews at the boundary.
        assert_eq!(r.check(&a, 998), Rate::Allowed);
        assert_eq!(r.check(&a, 999), Rate::Allowed);
        assert_eq!(r.check(&a, 999), Rate::Limited);
        assert_eq!(r.check(&a, 1000), Rate::Allowed);
    }

    #[test]
    fn a_full_table_drops_past_windows_then_fails_closed() {
        let mut r = limit(1, 1000, 2);
        let (a, b, c) = (peer(0), peer(1), peer(2));
        assert_eq!(r.check(&a, 0), Rate::Allowed);
        assert_eq!(r.check(&b, 1500), Rate::Allowed);
        // Full; a's entry is of a past window and makes room for c.
        assert_eq!(r.check(&c, 1600), Rate::Allowed);
        assert_eq!(r.len(), 2);
        assert_eq!(r.check(&c, 1700), Rate::Limited);
        // Full with current entries: a newcomer is limited, every time, until the window ends
        // (a crowd of fresh identities buys no untracked pass).
        assert_eq!(r.check(&a, 1800), Rate::Limited);
        assert_eq!(r.check(&a, 1900), Rate::Limited);
        assert_eq!(r.len(), 2);
        for i in 10..200u8 {
            assert_eq!(r.check(&peer(i), 1990), Rate::Limited);
        }
        assert_eq!(r.len(), 2);
        // Tracked observers are still limited.
        assert_eq!(r.check(&b, 1950), Rate::Limited);
        // The next window has room again.
        assert_eq!(r.check(&a, 2000), Rate::Allowed);
    }

    #[test]
    fn refuses_zero_settings() {
        for c in [
            RateConfig {
                max_per_window: 0,
                ..RateConfig::default()
            },
            RateConfig {
                window_ms: 0,
                ..RateConfig::default()
            },
            RateConfig {
                max_observers: 0,
                ..RateConfig::default()
            },
        ] {
            assert!(RateLimit::new(c).is_err());
        }
    }
}
