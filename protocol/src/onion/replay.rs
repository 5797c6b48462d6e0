//! The hop's replay cache of Noise NK first messages.
//!
//! NK's first message can be replayed (Noise's own caveat). The client puts its clock, rounded
//! down to [`ReplayCache::CLOCK_GRANULE_SECS`], in message 1; a hop refuses a message 1 whose
//! timestamp is outside `[now - GRANULE - MAX_SKEW, now + MAX_SKEW]` by its own clock, and
//! remembers the ephemeral key of every message 1 it accepted for [`ReplayCache::REMEMBER_SECS`]
//! by its own clock: the longest a replay of it could still fall inside that window. The client's
//! clock never sets how long an entry stays.
//!
//! The cache is bounded in all ([`ReplayCache::MAX_ENTRIES`]) and per source (the neighbour that
//! sent the `CREATE`: [`ReplayCache::MAX_PER_SOURCE`]). A source over its share is refused; the
//! others are not, so no single source can fill the cache and shut the hop.

use std::collections::{HashMap, VecDeque};

use super::OnionError;

struct Entry {
    eph: [u8; 32],
    source: Vec<u8>,
    expiry: u64,
}

/// Ephemeral keys of accepted handshakes, each kept [`ReplayCache::REMEMBER_SECS`] by the hop's
/// clock.
#[derive(Default)]
pub struct ReplayCache {
    seen: HashMap<[u8; 32], u64>,
    per_source: HashMap<Vec<u8>, usize>,
    /// Accepted handshakes in expiry order (the hop's clock only moves forward here: an entry
    /// inserted with an earlier clock than the last one gets the last one's expiry).
    queue: VecDeque<Entry>,
}

impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCache")
            .field("entries", &self.seen.len())
            .field("sources", &self.per_source.len())
            .finish()
    }
}

impl ReplayCache {
    /// The client rounds its clock down to a multiple of this before sending it (seconds), so
    /// the timestamp tells the hops little about the client's clock.
    pub const CLOCK_GRANULE_SECS: u64 = 60;
    /// How far a client's clock may be from the hop's, either way (seconds).
    pub const MAX_SKEW_SECS: u64 = 60;
    /// How long an accepted handshake is remembered, by the hop's clock (seconds): a message 1
    /// accepted at `t` carries a timestamp of at most `t + MAX_SKEW`, which falls out of the
    /// window at `t + MAX_SKEW + GRANULE + MAX_SKEW` at the latest.
    pub const REMEMBER_SECS: u64 = Self::CLOCK_GRANULE_SECS + 2 * Self::MAX_SKEW_SECS;
    /// Most handshakes remembered at once.
    pub const MAX_ENTRIES: usize = 200_000;
    /// Most handshakes remembered at once from one source (about 5.7 a second sustained).
    pub const MAX_PER_SOURCE: usize = 1024;

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

    /// Entries held for `source`.
    pub fn of(&self, source: &[u8]) -> usize {
        self.per_source.get(source).copied().unwrap_or(0)
    }

    /// Whether a handshake from `source` could be taken at `now` (cheap: checked before the
    /// handshake's Diffie-Hellman).
    pub fn admits(&mut self, source: &[u8], now: u64) -> Result<(), OnionError> {
        self.prune(now);
        if self.of(source) >= Self::MAX_PER_SOURCE {
            return Err(OnionError::Limit {
                detail: format!(
                    "replay cache: {} handshakes from one source in {} s",
                    Self::MAX_PER_SOURCE,
                    Self::REMEMBER_SECS
                ),
            });
        }
        if self.seen.len() >= Self::MAX_ENTRIES {
            return Err(OnionError::Limit {
                detail: format!("replay cache full ({} handshakes)", Self::MAX_ENTRIES),
            });
        }
        Ok(())
    }

    /// Accepts the handshake with ephemeral key `eph` and timestamp `ts` from `source` at `now`
    /// (the hop's clock, seconds), or refuses it as stale, replayed or over a limit.
    pub fn check_and_insert(
        &mut self,
        source: &[u8],
        eph: [u8; 32],
        ts: u64,
        now: u64,
    ) -> Result<(), OnionError> {
        self.admits(source, now)?;
        let earliest = now.saturating_sub(Self::CLOCK_GRANULE_SECS + Self::MAX_SKEW_SECS);
        if ts < earliest || ts > now + Self::MAX_SKEW_SECS {
            return Err(OnionError::Replay {
                detail: "handshake timestamp outside the hop's window".into(),
            });
        }
        if self.seen.contains_key(&eph) {
            return Err(OnionError::Replay {
                detail: "handshake seen before".into(),
            });
        }
        let floor = self.queue.back().map_or(0, |e| e.expiry);
        let expiry = (now + Self::REMEMBER_SECS).max(floor);
        self.seen.insert(eph, expiry);
        *self.per_source.entry(source.to_vec()).or_default() += 1;
        self.queue.push_back(Entry {
            eph,
            source: source.to_vec(),
            expiry,
        });
        Ok(())
    }

    fn prune(&mut self, now: u64) {
        while let Some(e) = self.queue.front() {
            // Kept through its expiry second: a replay is refused as stale only after it.
            if e.expiry >= now {
                break;
            }
            let Some(e) = self.queue.pop_front() else {
                break;
            };
            self.seen.remove(&e.eph);
            if let Some(n) = self.per_source.get_mut(&e.source) {
                *n -= 1;
                if *n == 0 {
                    self.per_source.remove(&e.source);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_700_000_000;

    #[test]
    fn refuses_replays_and_timestamps_outside_the_narrow_window() {
        let mut c = ReplayCache::new();
        c.check_and_insert(b"a", [1; 32], T, T).unwrap();
        assert!(matches!(
            c.check_and_insert(b"a", [1; 32], T, T + 1),
            Err(OnionError::Replay { .. })
        ));
        // From another source too.
        assert!(c.check_and_insert(b"b", [1; 32], T, T + 1).is_err());
        // A rounded clock up to a granule plus the skew behind, or the skew ahead, passes.
        c.check_and_insert(b"a", [2; 32], T - 120, T).unwrap();
        c.check_and_insert(b"a", [3; 32], T + 60, T).unwrap();
        for ts in [T - 121, T + 61, T + 250, 0, u64::MAX] {
            assert!(
                matches!(
                    c.check_and_insert(b"a", [4; 32], ts, T),
                    Err(OnionError::Replay { .. })
                ),
                "{ts}"
            );
        }
    }

    #[test]
    fn entries_expire_by_the_hops_clock_not_the_clients() {
        let mut c = ReplayCache::new();
        // A timestamp as far ahead as allowed: still forgotten REMEMBER_SECS after acceptance.
        c.check_and_insert(b"a", [1; 32], T + 60, T).unwrap();
        c.check_and_insert(b"a", [2; 32], T - 120, T).unwrap();
        // Until then a replay is refused, and once forgotten it is stale anyway.
        let end = T + ReplayCache::REMEMBER_SECS;
        for now in [T + 1, end] {
            assert!(matches!(
                c.check_and_insert(b"a", [1; 32], T + 60, now),
                Err(OnionError::Replay { .. })
            ));
        }
        assert_eq!(c.len(), 2);
        c.check_and_insert(b"a", [9; 32], end, end + 1).unwrap();
        assert_eq!(c.len(), 1);
        assert!(c.check_and_insert(b"a", [1; 32], T + 60, end + 1).is_err());
    }

    #[test]
    fn one_source_cannot_fill_the_cache() {
        let mut c = ReplayCache::new();
        let key = |i: usize| {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_be_bytes());
            k
        };
        for i in 0..ReplayCache::MAX_PER_SOURCE {
            c.check_and_insert(b"mallory", key(i), T, T).unwrap();
        }
        let e = c
            .check_and_insert(b"mallory", key(usize::MAX), T, T)
            .unwrap_err();
        assert!(matches!(e, OnionError::Limit { .. }), "{e}");
        assert!(c.admits(b"mallory", T).is_err());
        c.admits(b"alice", T).unwrap();
        c.check_and_insert(b"alice", key(usize::MAX), T, T).unwrap();
        // Mallory's share comes back as its entries expire.
        c.admits(b"mallory", T + ReplayCache::REMEMBER_SECS + 1)
            .unwrap();
        assert_eq!(c.len(), 0);
        assert_eq!(c.of(b"mallory"), 0);
    }
}
