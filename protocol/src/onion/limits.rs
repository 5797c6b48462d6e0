//! A hop's admission limits: circuit slots per neighbour and in all, and how long a circuit may
//! live and idle. Sans-I/O: the node keeps one [`CircuitSlots`] and one [`CircuitTimer`] per
//! circuit, passes its monotonic clock in, and acts on the answers.

use std::collections::HashMap;

use super::OnionError;

/// Circuits a hop carries at once, from all neighbours together.
pub const MAX_HOP_CIRCUITS: usize = 512;
/// Circuits a hop carries at once from one neighbour (a client at the gate, the previous hop
/// further on), counted from the moment its link is accepted, before any `CREATE`: one peer
/// can take at most this share of [`MAX_HOP_CIRCUITS`].
pub const MAX_CIRCUITS_PER_PEER: usize = 32;
/// A circuit with no cell either way for this long is torn down (milliseconds).
pub const CIRCUIT_IDLE_MS: u64 = 120_000;
/// A circuit is torn down this long after it was created, busy or not (milliseconds); the client
/// builds a new one.
pub const CIRCUIT_LIFETIME_MS: u64 = 30 * 60 * 1000;

/// The circuit slots of one hop, per neighbour. Keyed by the neighbour's peer id bytes; the map
/// holds at most [`MAX_HOP_CIRCUITS`] keys, as every key holds a slot.
#[derive(Debug, Default)]
pub struct CircuitSlots {
    per_peer: HashMap<Vec<u8>, usize>,
    total: usize,
}

impl CircuitSlots {
    /// No circuit carried.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a slot for a link from `peer`, or refuses it: [`MAX_CIRCUITS_PER_PEER`] from that
    /// peer or [`MAX_HOP_CIRCUITS`] in all. Each `Ok` must be matched by one [`Self::release`].
    pub fn acquire(&mut self, peer: &[u8]) -> Result<(), OnionError> {
        if self.total >= MAX_HOP_CIRCUITS {
            return Err(OnionError::Limit {
                detail: format!("{MAX_HOP_CIRCUITS} circuits carried"),
            });
        }
        let n = self.per_peer.get(peer).copied().unwrap_or(0);
        if n >= MAX_CIRCUITS_PER_PEER {
            return Err(OnionError::Limit {
                detail: format!("{MAX_CIRCUITS_PER_PEER} circuits carried for one neighbour"),
            });
        }
        self.per_peer.insert(peer.to_vec(), n + 1);
        self.total += 1;
        Ok(())
    }

    /// Gives back a slot taken by [`Self::acquire`] for `peer`.
    pub fn release(&mut self, peer: &[u8]) {
        if let Some(n) = self.per_peer.get_mut(peer) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.per_peer.remove(peer);
            }
        }
    }

    /// Circuits carried (or being accepted) now.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Circuits carried now for `peer`.
    pub fn of(&self, peer: &[u8]) -> usize {
        self.per_peer.get(peer).copied().unwrap_or(0)
    }
}

/// When one circuit must go: [`CIRCUIT_IDLE_MS`] after its last cell, and
/// [`CIRCUIT_LIFETIME_MS`] after it was created, whichever comes first. Times are milliseconds
/// of any monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitTimer {
    created: u64,
    last: u64,
}

impl CircuitTimer {
    /// A circuit created at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self {
            created: now_ms,
            last: now_ms,
        }
    }

    /// A cell passed at `now_ms`.
    pub fn touch(&mut self, now_ms: u64) {
        self.last = self.last.max(now_ms);
    }

    /// The time at which the circuit must be torn down unless touched before (the lifetime's
    /// end is never moved).
    pub fn deadline(&self) -> u64 {
        (self.last + CIRCUIT_IDLE_MS).min(self.created + CIRCUIT_LIFETIME_MS)
    }

    /// Why the circuit must go at `now_ms`, if it must.
    pub fn expired(&self, now_ms: u64) -> Option<OnionError> {
        if now_ms >= self.created + CIRCUIT_LIFETIME_MS {
            return Some(OnionError::Limit {
                detail: format!("circuit older than {} s", CIRCUIT_LIFETIME_MS / 1000),
            });
        }
        (now_ms >= self.last + CIRCUIT_IDLE_MS).then(|| OnionError::Limit {
            detail: format!("circuit idle for {} s", CIRCUIT_IDLE_MS / 1000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_peer_gets_its_share_and_no_more_while_others_still_get_in() {
        let mut s = CircuitSlots::new();
        for _ in 0..MAX_CIRCUITS_PER_PEER {
            s.acquire(b"mallory").unwrap();
        }
        assert!(matches!(
            s.acquire(b"mallory"),
            Err(OnionError::Limit { .. })
        ));
        s.acquire(b"alice").unwrap();
        assert_eq!(s.total(), MAX_CIRCUITS_PER_PEER + 1);
        s.release(b"mallory");
        s.acquire(b"mallory").unwrap();
        for _ in 0..MAX_CIRCUITS_PER_PEER {
            s.release(b"mallory");
        }
        s.release(b"alice");
        assert_eq!(s.total(), 0);
        assert_eq!(s.of(b"mallory"), 0);
        // A release without a slot changes nothing.
        s.release(b"nobody");
        assert_eq!(s.total(), 0);
    }

    #[test]
    fn the_global_cap_holds_across_peers() {
        let mut s = CircuitSlots::new();
        let peers = MAX_HOP_CIRCUITS / MAX_CIRCUITS_PER_PEER;
        for p in 0..peers {
            for _ in 0..MAX_CIRCUITS_PER_PEER {
                s.acquire(&[p as u8]).unwrap();
            }
        }
        assert!(s.acquire(b"late").is_err());
        s.release(&[0]);
        s.acquire(b"late").unwrap();
    }

    #[test]
    fn idle_and_lifetime_end_a_circuit_and_cells_only_postpone_the_idle_end() {
        let mut t = CircuitTimer::new(1_000);
        assert_eq!(t.deadline(), 1_000 + CIRCUIT_IDLE_MS);
        assert!(t.expired(1_000 + CIRCUIT_IDLE_MS - 1).is_none());
        assert!(t.expired(1_000 + CIRCUIT_IDLE_MS).is_some());
        // A cell every minute keeps it from idling, but not past its lifetime.
        let mut now = 1_000;
        while now < 1_000 + CIRCUIT_LIFETIME_MS {
            assert!(t.expired(now).is_none(), "{now}");
            t.touch(now);
            now += 60_000;
        }
        assert_eq!(t.deadline(), 1_000 + CIRCUIT_LIFETIME_MS);
        let e = t.expired(1_000 + CIRCUIT_LIFETIME_MS).unwrap();
        assert!(e.to_string().contains("older than"), "{e}");
        // A clock that goes back does not move anything.
        t.touch(0);
        assert_eq!(t.deadline(), 1_000 + CIRCUIT_LIFETIME_MS);
    }
}
