//! What this node keeps about one peer: its first-hand tally, the tallies of the trusted peers that
//! reported on it, and the last few observations for display.

use std::collections::VecDeque;

use super::{Config, score::Pool, tally::Tally};
use crate::{PeerId, observation::Observation};

/// One reporter's evidence about a peer.
#[derive(Clone, Debug)]
pub(crate) struct Report {
    /// Who reported.
    pub(crate) observer: PeerId,
    /// What it reported, decayed as of its newest report.
    pub(crate) tally: Tally,
    /// The reporter's standing at the last trust refresh (or when its last report arrived).
    pub(crate) standing: f64,
    /// The reporter's /16 group: `None` for bootstrap peers and peers of unknown network.
    pub(crate) group: Option<[u8; 2]>,
}

/// Everything tracked about one peer.
#[derive(Clone, Debug)]
pub(crate) struct Ledger {
    /// When this node started tracking the peer, Unix ms (for longevity).
    pub(crate) first_seen_ms: u64,
    /// This node's own observations of the peer.
    pub(crate) first_hand: Tally,
    /// Trusted reporters' observations of the peer, sorted by observer, one entry per observer.
    pub(crate) reports: Vec<Report>,
    /// The most recent observations of the peer that were counted, oldest first.
    pub(crate) recent: VecDeque<Observation>,
}

impl Ledger {
    pub(crate) fn new(first_seen_ms: u64) -> Self {
        Self {
            first_seen_ms,
            first_hand: Tally::default(),
            reports: Vec::new(),
            recent: VecDeque::new(),
        }
    }

    /// All the (decayed) evidence held about the peer: what eviction compares.
    pub(crate) fn weight(&self, now_ms: u64, half_life_ms: u64) -> f64 {
        self.first_hand.decayed(now_ms, half_life_ms).count()
            + self
                .reports
                .iter()
                .map(|r| r.tally.decayed(now_ms, half_life_ms).count())
                .sum::<f64>()
    }

    /// The pooled evidence about the peer as of `now_ms`: the first-hand tally plus every report
    /// whose cached standing is above 0, weighted by that standing divided by the number of such
    /// reporters in its /16 (bootstrap peers and unknown networks are alone).
    pub(crate) fn pool(&self, config: &Config, now_ms: u64) -> Pool {
        let hl = config.half_life_ms;
        let mut pool = Pool::new(self.first_hand.decayed(now_ms, hl));
        let mut sizes: Vec<([u8; 2], u32)> = Vec::new();
        for r in self.reports.iter().filter(|r| r.standing > 0.0) {
            if let Some(g) = r.group {
                match sizes.iter_mut().find(|(k, _)| *k == g) {
                    Some((_, n)) => *n += 1,
                    None => sizes.push((g, 1)),
                }
            }
        }
        for r in self.reports.iter().filter(|r| r.standing > 0.0) {
            let size = r
                .group
                .and_then(|g| sizes.iter().find(|(k, _)| *k == g))
                .map_or(1, |(_, n)| *n);
            pool.add(
                config,
                &r.tally.decayed(now_ms, hl),
                r.standing / f64::from(size),
            );
        }
        pool
    }

    /// The report of `observer` (whose standing is `standing`), inserted if missing. When `max`
    /// reports are already held, the one with the lowest cached standing (then heard from least
    /// recently, then smallest observer) makes room — unless the newcomer's standing is lower
    /// still. `None` when there is no room.
    pub(crate) fn report_mut(
        &mut self,
        observer: &PeerId,
        standing: f64,
        max: usize,
    ) -> Option<&mut Report> {
        let at = match self.reports.binary_search_by(|r| r.observer.cmp(observer)) {
            Ok(at) => at,
            Err(_) if max == 0 => return None,
            Err(mut at) => {
                while self.reports.len() >= max {
                    let (weakest, w) =
                        self.reports.iter().enumerate().min_by(|(_, a), (_, b)| {
                            a.standing
                                .total_cmp(&b.standing)
                                .then(a.tally.as_of_ms.cmp(&b.tally.as_of_ms))
                                .then(a.observer.cmp(&b.observer))
                        })?;
                    if standing < w.standing {
                        return None;
                    }
                    self.reports.remove(weakest);
                    if weakest < at {
                        at -= 1;
                    }
                }
                self.reports.insert(
                    at,
                    Report {
                        observer: *observer,
                        tally: Tally::default(),
                        standing: 0.0,
                        group: None,
                    },
                );
                at
            }
        };
        self.reports.get_mut(at)
    }

    /// Keeps `obs` among the last `max` observations.
    pub(crate) fn remember(&mut self, obs: &Observation, max: usize) {
        if max == 0 {
            return;
        }
        while self.recent.len() >= max {
            self.recent.pop_front();
        }
        self.recent.push_back(obs.clone());
    }
}
