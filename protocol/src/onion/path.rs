//! Path selection: which peers a client's circuit goes through.
//!
//! Rules: distinct peers; the first hop offers `gate`, inner hops `middle`, the last hop `relay`;
//! the gate is the caller's long-lived guard when it is still usable; no two hops share a /16
//! (IPv4) or /32 (IPv6) unless every candidate is on loopback (a devnet); the relay is drawn with
//! probability proportional to its reputation score (plus a small floor, so new peers are tried),
//! the other hops uniformly. Randomness comes from the caller's seed.

use std::net::IpAddr;

use super::{MAX_HOPS, OnionError};
use crate::{PeerId, Role};

/// A peer that may carry a hop, from its verified node record.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The peer.
    pub peer: PeerId,
    /// Its onion key.
    pub onion_key: [u8; 32],
    /// The roles it offers.
    pub roles: Vec<Role>,
    /// An address it is reachable on, if known.
    pub ip: Option<IpAddr>,
    /// Its reputation score in [0, 1], if known.
    pub score: Option<f64>,
}

/// Weight floor of a relay without a score.
const SCORE_FLOOR: f64 = 0.05;

fn family(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets()[..2].to_vec(),
        IpAddr::V6(v6) => v6.octets()[..4].to_vec(),
    }
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Picks a path of `hops` peers (gate first) from `candidates`, never `own`.
pub fn select(
    candidates: &[Candidate],
    hops: usize,
    own: &PeerId,
    guard: Option<&PeerId>,
    seed: [u8; 32],
) -> Result<Vec<Candidate>, OnionError> {
    if hops == 0 || hops > MAX_HOPS {
        return Err(OnionError::Limit {
            detail: format!("a path of {hops} hops (1 to {MAX_HOPS})"),
        });
    }
    let mut rng = SplitMix(u64::from_le_bytes(seed[..8].try_into().unwrap_or([0; 8])));
    let loopback_only = candidates
        .iter()
        .all(|c| c.ip.is_none_or(|ip| ip.is_loopback()));
    let mut chosen: Vec<Candidate> = Vec::new();
    // The gate first (the guard), then the relay, then the middles.
    let order: Vec<usize> = std::iter::once(0)
        .chain((hops > 1).then_some(hops - 1))
        .chain(1..hops.saturating_sub(1))
        .collect();
    let mut slots: Vec<Option<Candidate>> = vec![None; hops];
    for &slot in &order {
        let role = if slot == 0 {
            Role::Gate
        } else if slot == hops - 1 {
            Role::Relay
        } else {
            Role::Middle
        };
        let usable = |c: &&Candidate| {
            c.peer != *own
                && c.roles.contains(&role)
                && !chosen.iter().any(|o| o.peer == c.peer)
                && (loopback_only
                    || c.ip.is_none_or(|ip| {
                        !chosen
                            .iter()
                            .any(|o| o.ip.is_some_and(|oip| family(&oip) == family(&ip)))
                    }))
        };
        let pool: Vec<&Candidate> = candidates.iter().filter(usable).collect();
        let pick = if slot == 0 {
            guard
                .and_then(|g| pool.iter().find(|c| c.peer == *g).copied())
                .or_else(|| pick_uniform(&pool, &mut rng))
        } else if role == Role::Relay {
            pick_weighted(&pool, &mut rng)
        } else {
            pick_uniform(&pool, &mut rng)
        };
        let Some(c) = pick else {
            return Err(OnionError::Limit {
                detail: format!(
                    "no usable peer for hop {slot} ({role:?}) among {} candidates",
                    candidates.len()
                ),
            });
        };
        chosen.push(c.clone());
        slots[slot] = Some(c.clone());
    }
    Ok(slots.into_iter().flatten().collect())
}

fn pick_uniform<'a>(pool: &[&'a Candidate], rng: &mut SplitMix) -> Option<&'a Candidate> {
    if pool.is_empty() {
        return None;
    }
    Some(pool[(rng.next() % pool.len() as u64) as usize])
}

fn pick_weighted<'a>(pool: &[&'a Candidate], rng: &mut SplitMix) -> Option<&'a Candidate> {
    let w = |c: &Candidate| c.score.unwrap_or(0.0).clamp(0.0, 1.0) + SCORE_FLOOR;
    let total: f64 = pool.iter().map(|c| w(c)).sum();
    let mut x = rng.unit() * total;
    for c in pool {
        x -= w(c);
        if x <= 0.0 {
            return Some(c);
        }
    }
    pool.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(i: u8) -> PeerId {
        crate::keypair_from_secret([i; 32]).public().to_peer_id()
    }

    fn cand(i: u8, ip: [u8; 4], score: Option<f64>) -> Candidate {
        Candidate {
            peer: peer(i + 1),
            onion_key: [i; 32],
            roles: vec![Role::Gate, Role::Middle, Role::Relay],
            ip: Some(IpAddr::from(ip)),
            score,
        }
    }

    #[test]
    fn keeps_hops_in_distinct_sixteens_and_uses_the_guard() {
        let own = peer(200);
        let cs = vec![
            cand(1, [10, 0, 0, 1], None),
            cand(2, [10, 0, 0, 2], None),
            cand(3, [10, 1, 0, 1], None),
            cand(4, [10, 2, 0, 1], None),
        ];
        for s in 0..50u8 {
            let p = select(&cs, 3, &own, Some(&cs[3].peer), [s; 32]).unwrap();
            assert_eq!(p[0].peer, cs[3].peer);
            let fams: std::collections::HashSet<_> =
                p.iter().map(|c| family(&c.ip.unwrap())).collect();
            assert_eq!(fams.len(), 3);
        }
        // Only two /16s among the rest: a 4-hop path is impossible.
        assert!(select(&cs, 4, &own, None, [0; 32]).is_err());
    }

    #[test]
    fn loopback_devnets_ignore_the_sixteen_rule_and_relays_follow_reputation() {
        let own = peer(200);
        let mut cs: Vec<Candidate> = (0..5).map(|i| cand(i, [127, 0, 0, 1], None)).collect();
        cs[4].score = Some(1.0);
        let mut top = 0;
        for s in 0..200u8 {
            let p = select(&cs, 3, &own, None, [s; 32]).unwrap();
            assert_eq!(p.len(), 3);
            if p[2].peer == cs[4].peer {
                top += 1;
            }
        }
        // Weight 1.05 against 4 × 0.05: about 84 % of draws.
        assert!(top > 120, "{top}");
    }
}
