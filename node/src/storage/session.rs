//! One fetch's session: the holders that served it, the slow ones, and the hedge delay.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use libp2p::PeerId;

/// One fetch's memory of the holders that served it: they are asked first for the next blocks
/// (like a Bitswap session); the DHT is asked only when none of them has a block.
#[derive(Default)]
pub struct FetchSession {
    pub(super) holders: Mutex<Vec<PeerId>>,
    /// Holders another one outran: asked last for the rest of the session.
    slow: Mutex<BTreeSet<PeerId>>,
    /// The last block times (ms), for the hedge delay.
    times: Mutex<VecDeque<u64>>,
}

/// Block times a session remembers.
const SESSION_TIMES: usize = 32;
/// Hedge delay before a session has timed any block.
const HEDGE_FIRST: Duration = Duration::from_secs(3);
/// Bounds of the hedge delay: four times the session's median block time, within these.
const HEDGE_MIN: Duration = Duration::from_secs(1);
const HEDGE_MAX: Duration = Duration::from_secs(10);

impl FetchSession {
    /// How long requests may run before another holder is asked as well.
    pub(super) fn hedge_after(&self) -> Duration {
        let Ok(times) = self.times.lock() else {
            return HEDGE_FIRST;
        };
        if times.is_empty() {
            return HEDGE_FIRST;
        }
        let mut sorted: Vec<u64> = times.iter().copied().collect();
        sorted.sort_unstable();
        let median = Duration::from_millis(sorted[sorted.len() / 2]);
        (median * 4).clamp(HEDGE_MIN, HEDGE_MAX)
    }

    pub(super) fn record_time(&self, took: Duration) {
        if let Ok(mut times) = self.times.lock() {
            if times.len() == SESSION_TIMES {
                times.pop_front();
            }
            times.push_back(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
        }
    }

    pub(super) fn mark_slow(&self, peer: PeerId) {
        if let Ok(mut slow) = self.slow.lock() {
            slow.insert(peer);
        }
    }

    /// `order` with the holders marked slow moved to the end (otherwise unchanged).
    pub(super) fn slow_last(&self, order: Vec<PeerId>) -> Vec<PeerId> {
        let Ok(slow) = self.slow.lock() else {
            return order;
        };
        let (mut fast, late): (Vec<PeerId>, Vec<PeerId>) =
            order.into_iter().partition(|p| !slow.contains(p));
        fast.extend(late);
        fast
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_hedges_at_four_times_its_median_block_time_within_bounds() {
        let s = FetchSession::default();
        assert_eq!(s.hedge_after(), HEDGE_FIRST);
        for ms in [100, 120, 400, 90, 110] {
            s.record_time(Duration::from_millis(ms));
        }
        // Median 110 ms → 440 ms, raised to the floor.
        assert_eq!(s.hedge_after(), HEDGE_MIN);
        for _ in 0..SESSION_TIMES {
            s.record_time(Duration::from_millis(700));
        }
        assert_eq!(s.hedge_after(), Duration::from_millis(2800));
        for _ in 0..SESSION_TIMES {
            s.record_time(Duration::from_secs(30));
        }
        assert_eq!(s.hedge_after(), HEDGE_MAX);
        assert_eq!(s.times.lock().unwrap().len(), SESSION_TIMES);
    }

    #[test]
    fn slow_holders_are_asked_last_in_their_given_order() {
        let s = FetchSession::default();
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        assert_eq!(s.slow_last(peers.clone()), peers);
        s.mark_slow(peers[0]);
        s.mark_slow(peers[2]);
        assert_eq!(
            s.slow_last(peers.clone()),
            vec![peers[1], peers[3], peers[0], peers[2]]
        );
    }
}
