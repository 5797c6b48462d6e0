//! The churning population of the `churn` scenario: peers with real warren identities, their
//! online/offline sessions, and an index by Kademlia key that answers "the live peers closest to
//! this key" the way a DHT lookup would.

use std::collections::BTreeMap;

use warren_protocol::{PeerId, keypair_from_secret};
use warren_storage_mesh::placement::{Key, distance, peer_key};

use crate::events::Micros;
use crate::rng::Rng;

/// Microseconds per hour.
pub const HOUR: Micros = 3_600_000_000;

/// One peer (a slot; a peer that departs for good keeps its slot, its replacement gets a new one).
#[derive(Debug)]
pub struct Peer {
    /// Its identity (made from a seeded secret, so it is a real warren peer id).
    pub id: PeerId,
    /// `sha256(peer id)`, its Kademlia key ([`peer_key`]), cached.
    pub key: Key,
    /// Online now.
    pub online: bool,
    /// Gone for good (its disk with it).
    pub departed: bool,
    /// When it last went offline (or departed).
    pub offline_since: Micros,
    /// Counts its offline periods, so a stale "suspect" event can be told apart.
    pub offline_epoch: u32,
    /// Blocks it holds (indices into the scenario's blocks).
    pub stored: Vec<u32>,
    /// Its own random stream: sessions depend on nothing else, so every repair setting sees the
    /// same churn.
    pub rng: Rng,
}

/// Session-length model: online and offline periods drawn from Weibull distributions, and an
/// exponential lifetime after which a peer leaves for good.
#[derive(Clone, Copy, Debug)]
pub struct Sessions {
    /// Median online session, hours.
    pub online_median_h: f64,
    /// Weibull shape of online sessions.
    pub online_shape: f64,
    /// Median offline period, hours.
    pub offline_median_h: f64,
    /// Weibull shape of offline periods.
    pub offline_shape: f64,
    /// Permanent departures per peer per day (the lifetime is exponential with mean `1 / rate`).
    pub departures_per_day: f64,
}

impl Sessions {
    /// A fresh online session length.
    pub fn online(&self, rng: &mut Rng) -> Micros {
        hours(rng.weibull_median(self.online_median_h, self.online_shape))
    }

    /// A fresh offline period.
    pub fn offline(&self, rng: &mut Rng) -> Micros {
        hours(rng.weibull_median(self.offline_median_h, self.offline_shape))
    }

    /// A lifetime until permanent departure.
    pub fn lifetime(&self, rng: &mut Rng) -> Micros {
        if self.departures_per_day <= 0.0 {
            return Micros::MAX / 4;
        }
        hours(rng.exponential(24.0 / self.departures_per_day))
    }

    /// The long-run share of time a peer is online (by the Weibull means: `scale · Γ(1 + 1/k)`).
    pub fn availability(&self) -> f64 {
        let mean = |median: f64, shape: f64| {
            median / std::f64::consts::LN_2.powf(1.0 / shape) * gamma(1.0 + 1.0 / shape)
        };
        let on = mean(self.online_median_h, self.online_shape);
        let off = mean(self.offline_median_h, self.offline_shape);
        on / (on + off)
    }
}

/// Hours to microseconds, saturating, at least 1 µs.
fn hours(h: f64) -> Micros {
    let us = h * HOUR as f64;
    if us >= (Micros::MAX / 4) as f64 {
        Micros::MAX / 4
    } else {
        (us as Micros).max(1)
    }
}

/// Γ(x) for x ≥ 1 by the Lanczos approximation (g = 7), enough for availability figures.
fn gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    (2.0 * std::f64::consts::PI).sqrt() * t.powf(x + 0.5) * (-t).exp() * a
}

/// All peers ever seen, and the index of those not departed.
#[derive(Debug)]
pub struct Population {
    /// Every slot, departed ones included.
    pub peers: Vec<Peer>,
    /// Peers not departed, by Kademlia key.
    index: BTreeMap<Key, u32>,
    /// Slot of each peer id (lookups only; never iterated).
    by_id: std::collections::HashMap<PeerId, u32>,
    root: Rng,
}

impl Population {
    /// An empty population whose identities and sessions derive from `root`.
    pub fn new(root: Rng) -> Self {
        Self {
            peers: Vec::new(),
            index: BTreeMap::new(),
            by_id: std::collections::HashMap::new(),
            root,
        }
    }

    /// Adds a peer (online or not) and returns its slot.
    pub fn join(&mut self, online: bool, now: Micros) -> u32 {
        let slot = self.peers.len() as u32;
        let mut rng = self.root.fork(u64::from(slot));
        let id = keypair_from_secret(rng.bytes32()).public().to_peer_id();
        let key = peer_key(&id);
        self.index.insert(key, slot);
        self.by_id.insert(id, slot);
        self.peers.push(Peer {
            id,
            key,
            online,
            departed: false,
            offline_since: now,
            offline_epoch: 0,
            stored: Vec::new(),
            rng,
        });
        slot
    }

    /// Marks `slot` departed and drops it from the index.
    pub fn depart(&mut self, slot: u32, now: Micros) {
        let p = &mut self.peers[slot as usize];
        p.departed = true;
        p.online = false;
        p.offline_since = now;
        p.offline_epoch += 1;
        let key = p.key;
        self.index.remove(&key);
    }

    /// The slot of `id`, if it ever joined.
    pub fn slot(&self, id: &PeerId) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// Peers not departed.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no peer is left.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The `k` online peers closest to `target` in XOR distance, closest first: what a DHT
    /// lookup for `target` returns.
    ///
    /// Exact: the peers sharing a prefix of `L` bits with `target` are one contiguous range of
    /// the index, and every one of them is closer than any peer outside it, so the smallest
    /// such range holding `k` online peers holds the `k` closest.
    pub fn closest_online(&self, target: &Key, k: usize) -> Vec<u32> {
        let n = self.index.len().max(1);
        // Start where the range holds about 4k peers and widen until it has k online ones.
        let mut bits = (n / (4 * k.max(1))).max(1).ilog2() as usize;
        loop {
            let (lo, hi) = prefix_range(target, bits);
            let mut found: Vec<(Key, u32)> = self
                .index
                .range(lo..=hi)
                .filter(|(_, s)| self.peers[**s as usize].online)
                .map(|(key, s)| (distance(target, key), *s))
                .collect();
            if found.len() >= k || bits == 0 {
                found.sort_unstable();
                found.truncate(k);
                return found.into_iter().map(|(_, s)| s).collect();
            }
            bits -= 1;
        }
    }
}

/// The smallest and largest keys sharing the first `bits` bits of `key`.
fn prefix_range(key: &Key, bits: usize) -> (Key, Key) {
    let mut lo = *key;
    let mut hi = *key;
    for i in 0..32 {
        let keep = bits.saturating_sub(8 * i).min(8);
        let mask = if keep == 8 { 0xff } else { !(0xffu8 >> keep) };
        lo[i] &= mask;
        hi[i] |= !mask;
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_online_is_exact() {
        let mut pop = Population::new(Rng::new(3));
        for i in 0..500 {
            pop.join(i % 3 != 0, 0);
        }
        let mut rng = Rng::new(9);
        for _ in 0..50 {
            let target = rng.bytes32();
            let mut all: Vec<(Key, u32)> = pop
                .peers
                .iter()
                .enumerate()
                .filter(|(_, p)| p.online)
                .map(|(i, p)| (distance(&target, &p.key), i as u32))
                .collect();
            all.sort_unstable();
            let want: Vec<u32> = all.iter().take(20).map(|x| x.1).collect();
            assert_eq!(pop.closest_online(&target, 20), want);
        }
    }

    #[test]
    fn prefix_ranges() {
        let key = [0b1010_1010u8; 32];
        let (lo, hi) = prefix_range(&key, 3);
        assert_eq!(lo[0], 0b1010_0000);
        assert_eq!(hi[0], 0b1011_1111);
        assert_eq!((lo[1], hi[1]), (0, 0xff));
        let (lo, hi) = prefix_range(&key, 256);
        assert_eq!((lo, hi), (key, key));
    }

    #[test]
    fn availability_of_equal_sessions_is_half() {
        let s = Sessions {
            online_median_h: 3.0,
            online_shape: 0.5,
            offline_median_h: 3.0,
            offline_shape: 0.5,
            departures_per_day: 0.05,
        };
        assert!((s.availability() - 0.5).abs() < 1e-9);
        assert!((gamma(3.0) - 2.0).abs() < 1e-9);
    }
}
