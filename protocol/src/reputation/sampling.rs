//! When a node publishes its own latency and uptime samples of the peers it is connected to
//! (`spec/reputation.md`, "A peer publishes what it observes itself"): at most one latency sample
//! per peer per [`LATENCY_EVERY_MS`], and one uptime sample per peer per
//! [`UPTIME_WINDOW_SECS`](crate::observation::UPTIME_WINDOW_SECS) that it kept track of the
//! peer, whose value is the seconds of that window the peer was seen connected.
//!
//! Sans-I/O: the node passes in what it sees (`now_ms`, each connected peer's measured round
//! trip and how long it has been connected) and gets back the samples to publish. The table is
//! bounded ([`MAX_TRACKED`]): a new peer past the bound evicts the one seen least recently.

use std::collections::BTreeMap;

use crate::observation::{Kind, MAX_LATENCY_MS, UPTIME_WINDOW_SECS};

/// Minimum time between two latency samples of one peer.
pub const LATENCY_EVERY_MS: u64 = 60_000;
/// Peers tracked at most.
pub const MAX_TRACKED: usize = 1024;

/// What the node sees of one connected peer at one tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Seen<P> {
    /// The peer.
    pub peer: P,
    /// Its measured round trip (ping), if measured yet, in ms.
    pub rtt_ms: Option<u64>,
    /// How long the current connection has lasted, in seconds.
    pub connected_secs: u64,
}

/// One sample to publish: the observation kind and its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample<P> {
    /// Its subject.
    pub peer: P,
    /// [`Kind::LatencySample`] or [`Kind::UptimeSample`].
    pub kind: Kind,
    /// Milliseconds, or seconds online in the window.
    pub value: u32,
}

#[derive(Clone, Copy, Debug, Default)]
struct Tracked {
    last_latency_ms: Option<u64>,
    /// Start of the current uptime window.
    window_start_ms: u64,
    /// Seconds seen connected in the current window.
    online_secs: u64,
    /// `now_ms` of the last tick the peer was seen connected.
    last_seen_ms: u64,
}

/// The pacing state (see the module doc).
#[derive(Clone, Debug)]
pub struct Sampler<P> {
    tracked: BTreeMap<P, Tracked>,
    cap: usize,
    latency_every_ms: u64,
    window_ms: u64,
}

impl<P: Ord + Clone> Default for Sampler<P> {
    fn default() -> Self {
        Self::new(
            LATENCY_EVERY_MS,
            u64::from(UPTIME_WINDOW_SECS) * 1000,
            MAX_TRACKED,
        )
    }
}

impl<P: Ord + Clone> Sampler<P> {
    /// A sampler publishing latency at most every `latency_every_ms` and uptime every `window_ms`
    /// (capped at the observation's window), tracking at most `cap` peers.
    pub fn new(latency_every_ms: u64, window_ms: u64, cap: usize) -> Self {
        Self {
            tracked: BTreeMap::new(),
            cap: cap.max(1),
            latency_every_ms: latency_every_ms.max(1),
            window_ms: window_ms.clamp(1, u64::from(UPTIME_WINDOW_SECS) * 1000),
        }
    }

    /// Peers tracked.
    pub fn len(&self) -> usize {
        self.tracked.len()
    }

    /// Whether none is tracked.
    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }

    /// One tick at `now_ms`, seeing the connected peers `seen`; returns the samples due.
    pub fn tick(&mut self, now_ms: u64, seen: &[Seen<P>]) -> Vec<Sample<P>> {
        let mut out = Vec::new();
        for s in seen {
            if !self.tracked.contains_key(&s.peer) && self.tracked.len() >= self.cap {
                let oldest = self
                    .tracked
                    .iter()
                    .min_by_key(|(_, t)| t.last_seen_ms)
                    .map(|(p, _)| p.clone());
                if let Some(oldest) = oldest {
                    self.tracked.remove(&oldest);
                }
            }
            let t = self.tracked.entry(s.peer.clone()).or_insert(Tracked {
                window_start_ms: now_ms,
                last_seen_ms: now_ms,
                ..Tracked::default()
            });
            // Online since the last tick, as far as the connection's age vouches for it.
            let since_last = now_ms.saturating_sub(t.last_seen_ms) / 1000;
            t.online_secs = t
                .online_secs
                .saturating_add(since_last.min(s.connected_secs));
            t.last_seen_ms = now_ms;
            if let Some(rtt) = s.rtt_ms
                && t.last_latency_ms
                    .is_none_or(|at| now_ms.saturating_sub(at) >= self.latency_every_ms)
            {
                t.last_latency_ms = Some(now_ms);
                out.push(Sample {
                    peer: s.peer.clone(),
                    kind: Kind::LatencySample,
                    value: rtt.min(u64::from(MAX_LATENCY_MS)) as u32,
                });
            }
            if now_ms.saturating_sub(t.window_start_ms) >= self.window_ms {
                let secs = t.online_secs.min(u64::from(UPTIME_WINDOW_SECS)) as u32;
                out.push(Sample {
                    peer: s.peer.clone(),
                    kind: Kind::UptimeSample,
                    value: secs,
                });
                t.window_start_ms = now_ms;
                t.online_secs = 0;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(peer: u32, rtt: Option<u64>, connected_secs: u64) -> Seen<u32> {
        Seen {
            peer,
            rtt_ms: rtt,
            connected_secs,
        }
    }

    #[test]
    fn latency_at_most_once_a_minute_per_peer() {
        let mut s = Sampler::default();
        assert!(s.tick(0, &[seen(1, None, 0)]).is_empty(), "no RTT yet");
        let out = s.tick(1_000, &[seen(1, Some(42), 1), seen(2, Some(70_000), 1)]);
        assert_eq!(
            out,
            vec![
                Sample {
                    peer: 1,
                    kind: Kind::LatencySample,
                    value: 42
                },
                Sample {
                    peer: 2,
                    kind: Kind::LatencySample,
                    value: MAX_LATENCY_MS
                },
            ]
        );
        assert!(s.tick(30_000, &[seen(1, Some(40), 30)]).is_empty());
        assert_eq!(s.tick(61_000, &[seen(1, Some(40), 61)]).len(), 1);
    }

    #[test]
    fn uptime_once_a_window_counts_the_seconds_seen_online() {
        let mut s = Sampler::new(LATENCY_EVERY_MS, 3_600_000, 16);
        let mut at: u64 = 0;
        let mut samples = Vec::new();
        // Connected for the first half hour (ticks every 10 s), then gone, then back for 10 min.
        while at <= 3_600_000 {
            let minute = at / 60_000;
            let up = !(30..50).contains(&minute);
            let connected = if minute < 30 {
                at / 1000
            } else {
                at.saturating_sub(50 * 60_000) / 1000
            };
            let list = if up {
                vec![seen(7, None, connected)]
            } else {
                vec![]
            };
            samples.extend(s.tick(at, &list));
            at += 10_000;
        }
        assert_eq!(samples.len(), 1, "{samples:?}");
        let v = samples[0].value;
        // 30 min + 10 min online; the reconnection's first tick vouches only for its own age.
        assert!((2390..=2410).contains(&v), "{v}");
        assert_eq!(samples[0].kind, Kind::UptimeSample);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut s = Sampler::new(1, 1_000_000, 4);
        for p in 0..1000u32 {
            s.tick(u64::from(p), &[seen(p, Some(1), 1)]);
        }
        assert_eq!(s.len(), 4);
    }
}
