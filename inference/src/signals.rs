//! Routing signals a requester measures about operators, and the load an operator advertises.
//!
//! [`Signals`] keeps, per operator, an exponentially weighted moving average (EWMA) of its
//! latency — job round trips (request sent → first answer) and pings (the transport's RTT) — and
//! of its throughput (items per second of whole jobs). It is sans-I/O: every observation carries
//! the time `now_ms` it was made, and the table is bounded ([`MAX_OPERATORS`]): a new operator
//! past the bound evicts the one heard from least recently, so a flood of strangers cannot grow
//! it. [`load_permille`] turns an operator's job queue into the figure of its node record.

use std::collections::BTreeMap;

/// Operators remembered at most.
pub const MAX_OPERATORS: usize = 512;
/// Weight of a new sample in the averages.
pub const ALPHA: f64 = 0.3;
/// A latency sample above this (ms) is counted as this: one stalled job must not bury an
/// operator for ever.
pub const MAX_LATENCY_MS: u32 = 120_000;

/// What is known of one operator.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Measured {
    /// EWMA of job round trips and pings, in milliseconds.
    pub latency_ms: Option<u32>,
    /// EWMA of items (tokens, texts) per second of whole jobs.
    pub throughput: Option<f64>,
    /// Samples folded into the averages.
    pub samples: u32,
    /// When it was last heard from (`now_ms` of the last observation).
    pub last_ms: u64,
}

fn ewma(old: Option<f64>, sample: f64) -> f64 {
    match old {
        Some(old) => (1.0 - ALPHA) * old + ALPHA * sample,
        None => sample,
    }
}

/// The measurements, per operator `P` (see the module doc).
#[derive(Clone, Debug)]
pub struct Signals<P> {
    table: BTreeMap<P, Measured>,
    cap: usize,
}

impl<P: Ord + Clone> Default for Signals<P> {
    fn default() -> Self {
        Self::with_capacity(MAX_OPERATORS)
    }
}

impl<P: Ord + Clone> Signals<P> {
    /// An empty table holding at most `cap` operators (at least one).
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            table: BTreeMap::new(),
            cap: cap.max(1),
        }
    }

    fn entry(&mut self, peer: &P, now_ms: u64) -> &mut Measured {
        if !self.table.contains_key(peer) && self.table.len() >= self.cap {
            let oldest = self
                .table
                .iter()
                .min_by_key(|(_, m)| m.last_ms)
                .map(|(p, _)| p.clone());
            if let Some(oldest) = oldest {
                self.table.remove(&oldest);
            }
        }
        let m = self.table.entry(peer.clone()).or_default();
        m.last_ms = m.last_ms.max(now_ms);
        m
    }

    fn latency(&mut self, peer: &P, now_ms: u64, ms: u64) {
        let sample = ms.min(u64::from(MAX_LATENCY_MS)) as f64;
        let m = self.entry(peer, now_ms);
        let avg = ewma(m.latency_ms.map(f64::from), sample);
        m.latency_ms = Some(avg.round() as u32);
        m.samples = m.samples.saturating_add(1);
    }

    /// A whole job of `items` items took `total_ms`; its first answer came after
    /// `round_trip_ms`.
    pub fn observe_job(
        &mut self,
        peer: &P,
        now_ms: u64,
        round_trip_ms: u64,
        total_ms: u64,
        items: usize,
    ) {
        self.latency(peer, now_ms, round_trip_ms);
        if items > 0 {
            let tput = items as f64 / (total_ms.max(1) as f64 / 1000.0);
            let m = self.entry(peer, now_ms);
            m.throughput = Some(ewma(m.throughput, tput));
        }
    }

    /// A ping (the connection's round trip) to `peer` took `rtt_ms`.
    pub fn observe_ping(&mut self, peer: &P, now_ms: u64, rtt_ms: u64) {
        self.latency(peer, now_ms, rtt_ms);
    }

    /// What is known of `peer`.
    pub fn get(&self, peer: &P) -> Measured {
        self.table.get(peer).copied().unwrap_or_default()
    }

    /// Forgets `peer`'s throughput (a result that did not count measures nothing).
    pub fn forget_throughput(&mut self, peer: &P) {
        if let Some(m) = self.table.get_mut(peer) {
            m.throughput = None;
        }
    }

    /// Operators known.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether none is known.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// An operator's load for its node record: job streams open (each one job, running or waiting
/// for a slot) over its job slots, in per mille, at most 1000 (full: the next job waits).
pub fn load_permille(open_jobs: usize, slots: usize) -> u16 {
    let permille = open_jobs.saturating_mul(1000) / slots.max(1);
    permille.min(1000) as u16
}

/// Whether an operator with this advertised load is at capacity.
pub fn is_busy(load_permille: u16) -> bool {
    load_permille >= 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_an_ewma_of_jobs_and_pings() {
        let mut s = Signals::default();
        s.observe_ping(&1, 10, 100);
        assert_eq!(s.get(&1).latency_ms, Some(100));
        s.observe_job(&1, 20, 200, 1000, 10);
        // 0.7 · 100 + 0.3 · 200
        assert_eq!(s.get(&1).latency_ms, Some(130));
        assert_eq!(s.get(&1).throughput, Some(10.0));
        s.observe_job(&1, 30, 130, 500, 10);
        let t = s.get(&1).throughput.unwrap();
        assert!((t - (0.7 * 10.0 + 0.3 * 20.0)).abs() < 1e-9, "{t}");
        assert_eq!(s.get(&1).samples, 3);
        assert_eq!(s.get(&1).last_ms, 30);
        assert_eq!(s.get(&2), Measured::default());
    }

    #[test]
    fn a_stalled_job_is_capped() {
        let mut s = Signals::default();
        s.observe_ping(&1, 0, u64::MAX);
        assert_eq!(s.get(&1).latency_ms, Some(MAX_LATENCY_MS));
        s.observe_job(&1, 0, 0, 0, 5);
        assert!(s.get(&1).throughput.unwrap().is_finite());
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_least_recently_heard() {
        let mut s = Signals::with_capacity(3);
        for (peer, now) in [(1, 10), (2, 5), (3, 20)] {
            s.observe_ping(&peer, now, 50);
        }
        s.observe_ping(&4, 30, 50);
        assert_eq!(s.len(), 3);
        assert_eq!(s.get(&2), Measured::default(), "2 was heard from last at 5");
        assert!(s.get(&1).latency_ms.is_some());
        // A flood of strangers never grows it.
        for p in 100..10_000 {
            s.observe_ping(&p, 40 + p, 1);
        }
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn forgetting_throughput_keeps_latency() {
        let mut s = Signals::default();
        s.observe_job(&1, 0, 40, 100, 4);
        s.forget_throughput(&1);
        assert_eq!(s.get(&1).throughput, None);
        assert_eq!(s.get(&1).latency_ms, Some(40));
    }

    #[test]
    fn load_is_open_jobs_over_slots() {
        assert_eq!(load_permille(0, 2), 0);
        assert_eq!(load_permille(1, 2), 500);
        assert_eq!(load_permille(2, 2), 1000);
        assert_eq!(load_permille(9, 2), 1000);
        assert_eq!(load_permille(1, 0), 1000);
        assert_eq!(load_permille(usize::MAX, 3), 1000);
        assert!(!is_busy(999));
        assert!(is_busy(1000));
    }
}
