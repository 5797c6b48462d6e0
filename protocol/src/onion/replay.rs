//! The hop's replay cache of Noise NK first messages.
//!
//! NK's first message can be replayed (Noise's own caveat). A hop therefore refuses a message 1
//! whose timestamp is more than [`ReplayCache::WINDOW_SECS`] away from its clock, and remembers the
//! ephemeral key of every message 1 it accepted until that message's timestamp leaves the window.
//! The cache is bounded: when full it refuses new handshakes (fails closed) instead of forgetting.

use std::collections::{BTreeMap, HashMap};

use super::OnionError;

/// Ephemeral keys of accepted handshakes, each kept until its timestamp leaves the window.
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: HashMap<[u8; 32], u64>,
    by_expiry: BTreeMap<u64, Vec<[u8; 32]>>,
}

impl ReplayCache {
    /// How far a handshake's timestamp may be from the hop's clock, in seconds.
    pub const WINDOW_SECS: u64 = 300;
    /// Most handshakes remembered at once.
    pub const MAX_ENTRIES: usize = 200_000;

    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Accepts the handshake with ephemeral key `eph` and timestamp `ts` at `now` (seconds), or
    /// refuses it as stale or replayed.
    pub fn check_and_insert(&mut self, eph: [u8; 32], ts: u64, now: u64) -> Result<(), OnionError> {
        self.prune(now);
        if ts.abs_diff(now) > Self::WINDOW_SECS {
            return Err(OnionError::Replay {
                detail: format!(
                    "handshake timestamp {ts} is more than {}s from the hop's clock {now}",
                    Self::WINDOW_SECS
                ),
            });
        }
        if self.seen.contains_key(&eph) {
            return Err(OnionError::Replay {
                detail: format!(
                    "handshake with ephemeral key {} seen before",
                    hex::encode(eph)
                ),
            });
        }
        if self.seen.len() >= Self::MAX_ENTRIES {
            return Err(OnionError::Limit {
                detail: format!("replay cache full ({} handshakes)", Self::MAX_ENTRIES),
            });
        }
        let expiry = ts + Self::WINDOW_SECS;
        self.seen.insert(eph, expiry);
        self.by_expiry.entry(expiry).or_default().push(eph);
        Ok(())
    }

    fn prune(&mut self, now: u64) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if *entry.key() >= now {
                break;
            }
            for k in entry.remove() {
                self.seen.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_replays_and_stale_timestamps_and_forgets_after_the_window() {
        let mut c = ReplayCache::new();
        c.check_and_insert([1; 32], 1000, 1000).unwrap();
        assert!(matches!(
            c.check_and_insert([1; 32], 1000, 1001),
            Err(OnionError::Replay { .. })
        ));
        assert!(c.check_and_insert([2; 32], 1000, 1000 + 301).is_err());
        assert!(c.check_and_insert([2; 32], 2000, 1000).is_err());
        // After the window the old timestamp is refused anyway, so the entry can go.
        c.check_and_insert([3; 32], 1400, 1400).unwrap();
        assert_eq!(c.len(), 1);
    }
}
