//! The client's guard set: the few gates every circuit of this node starts at.
//!
//! A client that picks a fresh gate for each circuit eventually picks a hostile one; with a
//! hostile relay too, the two can match timing and link the client to what it fetches. Like Tor,
//! a client keeps a small, long-lived set of guards and starts every circuit at one of them. The
//! set is chosen from peers that are **long-lived** (seen by this node as gate candidates for at
//! least [`MIN_AGE_SECS`]; younger ones only while no older one is left, oldest first),
//! **well scored** (a known reputation score below [`SCORE_FLOOR`] is never chosen, and drops a
//! guard), and **diverse** (at most one guard per network group, IPv4 /16 or IPv6 /48, while a
//! candidate of another group is left). The set is state on disk ([`GuardFile`]), so a restart
//! keeps it: a stranger who connects many fresh identities after a restart gains nothing.
//!
//! A guard is kept while it is offline (it is only skipped; [`GuardSet::pick`] takes the first
//! guard that is usable now) and dropped after [`GUARD_LIFETIME_SECS`] in the set, after
//! [`UNSEEN_DROP_SECS`] without being seen, or when its score falls below the floor.
//!
//! Sans-I/O: `now` (Unix seconds) and a random seed are passed in; the node persists
//! [`GuardSet::to_file`] whenever [`GuardSet::update`] reports a change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::PeerId;
use crate::netgroup::NetGroup;

/// Guards kept.
pub const GUARDS: usize = 3;

/// How long a candidate must have been seen before it counts as long-lived.
pub const MIN_AGE_SECS: u64 = 24 * 3600;

/// How long a guard stays in the set (then it is rotated out).
pub const GUARD_LIFETIME_SECS: u64 = 60 * 24 * 3600;

/// A guard not seen as a candidate for this long is dropped.
pub const UNSEEN_DROP_SECS: u64 = 30 * 24 * 3600;

/// Candidates below this known score (0–1) are not chosen; guards below it are dropped.
pub const SCORE_FLOOR: f64 = 0.25;

/// Most candidates whose first sighting is remembered (the least recently seen is forgotten).
pub const MAX_SIGHTINGS: usize = 1024;

/// The granularity of "last seen" updates (a sighting refreshed more often is not a change).
const SEEN_GRANULARITY_SECS: u64 = 3600;

/// A gate candidate as the node sees it now.
#[derive(Clone, Debug, PartialEq)]
pub struct GuardCandidate {
    /// The peer (its record offers `gate`).
    pub peer: PeerId,
    /// Its network group, if known.
    pub group: Option<NetGroup>,
    /// Its reputation score (0–1), if known.
    pub score: Option<f64>,
}

/// One guard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Guard {
    /// The peer.
    pub peer: PeerId,
    /// Its network group when chosen.
    pub group: Option<NetGroup>,
    /// When it was added (Unix seconds).
    pub added: u64,
}

/// When a candidate was first and last seen (Unix seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    /// First seen.
    pub first: u64,
    /// Last seen (to [`SEEN_GRANULARITY_SECS`]).
    pub last: u64,
}

/// The guard set's file (JSON in the data directory).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardFile {
    /// Format version, 1.
    pub version: u32,
    /// The guards, in order of preference.
    pub guards: Vec<Guard>,
    /// Sightings of gate candidates.
    pub seen: Vec<(PeerId, Sighting)>,
}

/// The guard set and the sightings it is chosen from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GuardSet {
    guards: Vec<Guard>,
    seen: BTreeMap<PeerId, Sighting>,
}

fn mix(seed: u64, peer: &PeerId) -> u64 {
    // FNV-1a of the peer id, then SplitMix64 finalisation with the seed: a per-draw order.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in peer.to_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h ^ seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn below_floor(score: Option<f64>) -> bool {
    score.is_some_and(|s| s.is_nan() || s < SCORE_FLOOR)
}

impl GuardSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The set stored in `file` (entries past the bounds are dropped).
    pub fn from_file(file: GuardFile) -> Self {
        let mut seen: BTreeMap<PeerId, Sighting> = file.seen.into_iter().collect();
        while seen.len() > MAX_SIGHTINGS {
            if let Some(p) = seen
                .iter()
                .min_by_key(|(p, s)| (s.last, **p))
                .map(|(p, _)| *p)
            {
                seen.remove(&p);
            }
        }
        let mut guards = file.guards;
        guards.truncate(GUARDS);
        Self { guards, seen }
    }

    /// What to store.
    pub fn to_file(&self) -> GuardFile {
        GuardFile {
            version: 1,
            guards: self.guards.clone(),
            seen: self.seen.iter().map(|(p, s)| (*p, *s)).collect(),
        }
    }

    /// The guards, in order of preference.
    pub fn guards(&self) -> Vec<PeerId> {
        self.guards.iter().map(|g| g.peer).collect()
    }

    /// Records the `candidates` seen at `now`, drops guards that expired, went unseen or fell
    /// below the score floor, and fills the set up to [`GUARDS`] (see the module documentation);
    /// `seed` breaks ties among equally good long-lived candidates. Answers whether anything
    /// worth storing changed.
    pub fn update(&mut self, now: u64, candidates: &[GuardCandidate], seed: u64) -> bool {
        let mut changed = false;
        for c in candidates {
            match self.seen.get_mut(&c.peer) {
                Some(s) => {
                    if now.saturating_sub(s.last) >= SEEN_GRANULARITY_SECS {
                        s.last = now;
                        changed = true;
                    }
                }
                None => {
                    if self.seen.len() >= MAX_SIGHTINGS {
                        let guards = self.guards();
                        let oldest = self
                            .seen
                            .iter()
                            .filter(|(p, _)| !guards.contains(p))
                            .min_by_key(|(p, s)| (s.last, **p))
                            .map(|(p, _)| *p);
                        match oldest {
                            Some(p) => {
                                self.seen.remove(&p);
                            }
                            None => continue,
                        }
                    }
                    self.seen.insert(
                        c.peer,
                        Sighting {
                            first: now,
                            last: now,
                        },
                    );
                    changed = true;
                }
            }
        }

        let before = self.guards.len();
        let seen = &self.seen;
        self.guards.retain(|g| {
            let score = candidates
                .iter()
                .find(|c| c.peer == g.peer)
                .and_then(|c| c.score);
            let last = seen.get(&g.peer).map_or(g.added, |s| s.last);
            now.saturating_sub(g.added) < GUARD_LIFETIME_SECS
                && now.saturating_sub(last) < UNSEEN_DROP_SECS
                && !below_floor(score)
        });
        changed |= self.guards.len() != before;

        while self.guards.len() < GUARDS {
            let Some(next) = self.next_guard(now, candidates, seed) else {
                break;
            };
            self.guards.push(Guard {
                peer: next.peer,
                group: next.group,
                added: now,
            });
            changed = true;
        }
        changed
    }

    fn next_guard<'a>(
        &self,
        now: u64,
        candidates: &'a [GuardCandidate],
        seed: u64,
    ) -> Option<&'a GuardCandidate> {
        let eligible: Vec<&GuardCandidate> = candidates
            .iter()
            .filter(|c| !below_floor(c.score) && !self.guards.iter().any(|g| g.peer == c.peer))
            .collect();
        let used: Vec<Option<NetGroup>> = self.guards.iter().map(|g| g.group).collect();
        let fresh_group: Vec<&GuardCandidate> = eligible
            .iter()
            .copied()
            .filter(|c| !used.contains(&c.group))
            .collect();
        // At most one guard per group while a candidate of another group is left.
        let pool = if fresh_group.is_empty() {
            eligible
        } else {
            fresh_group
        };
        pool.into_iter().min_by_key(|c| {
            let first = self.seen.get(&c.peer).map_or(now, |s| s.first);
            let old = now.saturating_sub(first) >= MIN_AGE_SECS;
            let band = match c.score {
                Some(s) => (s.clamp(0.0, 1.0) * 10.0).floor() as u64,
                None => 5,
            };
            // Long-lived first; among them the best score band, then a random order; among the
            // young (only while no long-lived one is left) the oldest first.
            (
                !old,
                std::cmp::Reverse(band),
                if old { 0 } else { first },
                mix(seed, &c.peer),
                c.peer,
            )
        })
    }

    /// The guard to start a circuit at now: the first guard for which `usable` holds.
    pub fn pick(&self, usable: impl Fn(&PeerId) -> bool) -> Option<PeerId> {
        self.guards.iter().map(|g| g.peer).find(|p| usable(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600;
    const T0: u64 = 1_800_000_000;

    fn peer(i: u8) -> PeerId {
        crate::keypair_from_secret([i.wrapping_add(1); 32])
            .public()
            .to_peer_id()
    }

    fn cand(i: u8, group: u8, score: Option<f64>) -> GuardCandidate {
        GuardCandidate {
            peer: peer(i),
            group: Some(NetGroup::V4([10, group])),
            score,
        }
    }

    #[test]
    fn guards_are_diverse_and_sybils_arriving_later_do_not_displace_them() {
        let honest = vec![cand(0, 1, None), cand(1, 2, None), cand(2, 2, None)];
        let mut set = GuardSet::new();
        assert!(set.update(T0, &honest, 7));
        let g = set.guards();
        // Two groups among the honest peers: two guards from distinct groups, then the third
        // from a used group only because no other group is left.
        assert_eq!(g.len(), 3);
        let groups: std::collections::HashSet<_> =
            set.guards.iter().take(2).map(|g| g.group).collect();
        assert_eq!(groups.len(), 2);
        // Twenty Sybils in one /16 arrive; the set does not change.
        let mut all = honest.clone();
        all.extend((10..30).map(|i| cand(i, 66, Some(1.0))));
        assert!(!set.update(T0 + 60, &all, 8) || set.guards() == g);
        assert_eq!(set.guards(), g);
        // Restart: the file round-trips.
        let back = GuardSet::from_file(
            serde_json::from_str(&serde_json::to_string(&set.to_file()).unwrap()).unwrap(),
        );
        assert_eq!(back, set);
        assert_eq!(back.pick(|p| *p != g[0]), Some(g[1]));
    }

    #[test]
    fn long_lived_and_well_scored_peers_are_preferred() {
        let mut set = GuardSet::new();
        // Peers 0..3 seen since T0; a fresh well-scored peer 9 on day 2.
        let old: Vec<_> = (0..3).map(|i| cand(i, i + 1, Some(0.5))).collect();
        set.seen.extend(old.iter().map(|c| {
            (
                c.peer,
                Sighting {
                    first: T0,
                    last: T0,
                },
            )
        }));
        let mut now_cands = old.clone();
        now_cands.push(cand(9, 9, Some(1.0)));
        now_cands.push(cand(8, 8, Some(0.1))); // below the floor
        set.update(T0 + 2 * DAY, &now_cands, 1);
        let g = set.guards();
        assert!(!g.contains(&peer(9)) && !g.contains(&peer(8)), "{g:?}");
        // A guard whose score falls below the floor is replaced, by a long-lived one if any.
        now_cands[0].score = Some(0.0);
        assert!(set.update(T0 + 2 * DAY + 10, &now_cands, 1));
        assert!(!set.guards().contains(&peer(0)));
        assert!(
            set.guards().contains(&peer(9)),
            "only the young one is left"
        );
    }

    #[test]
    fn guards_expire_and_unseen_ones_are_dropped() {
        let mut set = GuardSet::new();
        let cands: Vec<_> = (0..3).map(|i| cand(i, i, None)).collect();
        set.update(T0, &cands, 1);
        assert_eq!(set.guards().len(), 3);
        // Peer 0 vanishes for longer than UNSEEN_DROP_SECS while the others stay.
        let mut t = T0;
        while t < T0 + UNSEEN_DROP_SECS + DAY {
            t += DAY;
            set.update(t, &cands[1..], 1);
        }
        assert!(!set.guards().contains(&peer(0)));
        // Past the lifetime every guard is replaced (by the same peers if nothing better).
        set.update(T0 + GUARD_LIFETIME_SECS + 1, &cands[1..], 1);
        assert!(
            set.guards
                .iter()
                .all(|g| g.added == T0 + GUARD_LIFETIME_SECS + 1)
        );
    }

    #[test]
    fn sightings_are_bounded() {
        let mut set = GuardSet::new();
        for round in 0..5u8 {
            let cands: Vec<_> = (0..=255u8)
                .map(|i| {
                    let mut s = [1u8; 32];
                    s[0] = i;
                    s[1] = round;
                    GuardCandidate {
                        peer: crate::keypair_from_secret(s).public().to_peer_id(),
                        group: None,
                        score: None,
                    }
                })
                .collect();
            set.update(T0 + u64::from(round), &cands, 1);
        }
        assert!(set.seen.len() <= MAX_SIGHTINGS);
        let many = GuardFile {
            version: 1,
            guards: Vec::new(),
            seen: (0..(MAX_SIGHTINGS + 5) as u64)
                .map(|i| {
                    let mut s = [1u8; 32];
                    s[..8].copy_from_slice(&i.to_le_bytes());
                    (
                        crate::keypair_from_secret(s).public().to_peer_id(),
                        Sighting { first: i, last: i },
                    )
                })
                .collect(),
        };
        assert_eq!(GuardSet::from_file(many).seen.len(), MAX_SIGHTINGS);
    }
}
