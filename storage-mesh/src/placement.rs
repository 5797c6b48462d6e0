//! Placement: which peers should hold a block.
//!
//! A block goes to the peers offering storage that are closest to it in Kademlia's XOR metric,
//! measured exactly as libp2p-kad measures it, so the holders of a block are the peers a DHT
//! lookup for the block's provider records walks towards:
//!
//! - the block's key is `sha256(provider_key(hash))`, where
//!   [`provider_key`] is the key holders announce
//!   provider records under (libp2p-kad 0.49: `kbucket::Key::new(record::Key)` hashes the key
//!   bytes with SHA-256);
//! - a peer's key is `sha256(peer_id.to_bytes())` (libp2p-kad 0.49:
//!   `kbucket::Key::from(PeerId)`);
//! - the distance is the XOR of the two keys read as a big-endian 256-bit number.
//!
//! [`place`] picks, among the [`Candidate`]s with room for the block and a good enough
//! reputation, `rf` *base* copies preferring cold-tier peers (the closest cold peers, then the
//! closest hot peers if there are not enough cold ones) and `hot_extra` *hot* copies preferring
//! hot-tier peers (extra copies for content fetched often, see [`crate::hot`]). Everything is
//! deterministic: the same inputs give the same peers in the same order.
//!
//! Goals: one metric shared by placement, repair ([`crate::repair`]) and the DHT; capacity and
//! reputation respected; bounded work (`O(n log n)` in the number of candidates, which is normally
//! the `k = 20` peers a DHT lookup returned).
//!
//! **Diversity**: every candidate carries its network [`NetGroup`] (an IPv4 /16 or IPv6 /48, from
//! the address it connects from or its signed record's addresses, see
//! [`warren_protocol::netgroup`]). [`place`] puts no two copies of a block in one group while an
//! eligible peer of another group is left: each choice above first takes the closest peer whose
//! group holds no copy yet, and only when there is none the closest peer whatever its group. So
//! many identities on one network (Sybils) get at most one copy of a block as long as honest
//! peers elsewhere have room. Peers without a known group count as one shared group.
//! [`place_around`] also counts the groups of the block's present holders (repair).
//!
//! Non-goals: finding candidates (a DHT walk and node records, in the node), balancing load
//! beyond the capacity check, or spreading copies across operators (one operator may hold
//! addresses in many groups; reputation is the defence there).

use std::collections::HashSet;

use sha2::{Digest, Sha256};
use warren_protocol::block_transfer::provider_key;
pub use warren_protocol::netgroup::NetGroup;
use warren_protocol::{PeerId, Tier};

/// The default replication factor.
pub const DEFAULT_RF: usize = 3;

/// The most copies [`place`] picks for one block (`rf + hot_extra` is clamped to this).
pub const MAX_RF: usize = warren_protocol::block_transfer::MAX_RF as usize;

/// The default reputation floor, on the reputation system's 0–1 scale: peers scored below it get
/// no new copies. Peers without a score yet are not held to it (a new peer must be able to earn
/// one).
pub const DEFAULT_SCORE_FLOOR: f64 = 0.25;

/// A point in Kademlia's key space: a SHA-256 output.
pub type Key = [u8; 32];

fn sha256(bytes: &[u8]) -> Key {
    Sha256::digest(bytes).into()
}

/// The Kademlia key of the block with BLAKE3 hash `block`: `sha256` of its provider key.
pub fn block_key(block: &[u8; 32]) -> Key {
    sha256(&provider_key(block))
}

/// The Kademlia key of a peer: `sha256` of its peer id bytes.
pub fn peer_key(peer: &PeerId) -> Key {
    sha256(&peer.to_bytes())
}

/// The XOR distance of two keys. Arrays compare lexicographically, which is the big-endian
/// numeric order libp2p-kad's `Distance` uses.
pub fn distance(a: &Key, b: &Key) -> Key {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// `peers` sorted by distance to `block` (closest first), duplicates removed.
pub fn rank<'a>(block: &[u8; 32], peers: impl IntoIterator<Item = &'a PeerId>) -> Vec<PeerId> {
    let target = block_key(block);
    let mut ranked: Vec<(Key, PeerId)> = peers
        .into_iter()
        .map(|p| (distance(&target, &peer_key(p)), *p))
        .collect();
    ranked.sort_unstable();
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().map(|(_, p)| p).collect()
}

/// The peer of `peers` closest to `block`, if any.
pub fn closest<'a>(
    block: &[u8; 32],
    peers: impl IntoIterator<Item = &'a PeerId>,
) -> Option<PeerId> {
    let target = block_key(block);
    peers
        .into_iter()
        .min_by_key(|p| (distance(&target, &peer_key(p)), **p))
        .copied()
}

/// A peer that may receive a copy, as its node record and the local reputation table describe
/// it.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The peer.
    pub peer: PeerId,
    /// The tier it offers.
    pub tier: Tier,
    /// Bytes of its offer still free.
    pub bytes_free: u64,
    /// Its reputation on the 0–1 scale, `None` while unknown.
    pub score: Option<f64>,
    /// Its network group (IPv4 /16, IPv6 /48), `None` while unknown: all unknown peers count
    /// as one group.
    pub group: Option<NetGroup>,
}

/// How many copies [`place`] picks and whom it accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlacementPolicy {
    /// Base copies, preferring cold-tier peers.
    pub rf: usize,
    /// Extra copies for hot content, preferring hot-tier peers ([`crate::hot`] decides how many).
    pub hot_extra: usize,
    /// Peers with a known score below this get no copies. A NaN score is below every floor.
    pub floor: f64,
}

impl Default for PlacementPolicy {
    fn default() -> Self {
        PlacementPolicy {
            rf: DEFAULT_RF,
            hot_extra: 0,
            floor: DEFAULT_SCORE_FLOOR,
        }
    }
}

impl PlacementPolicy {
    /// A policy of `rf` base copies and no hot copies, with the default floor.
    pub fn with_rf(rf: usize) -> Self {
        PlacementPolicy {
            rf,
            ..Self::default()
        }
    }

    /// The copies wanted in all, `rf + hot_extra`, at most [`MAX_RF`].
    pub fn target(&self) -> usize {
        self.rf.saturating_add(self.hot_extra).min(MAX_RF)
    }
}

/// The peers [`place`] picked, closest first within each group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// The base copies (cold peers first).
    pub base: Vec<PeerId>,
    /// The hot copies (hot peers first).
    pub hot: Vec<PeerId>,
}

impl Placement {
    /// All peers picked: base copies, then hot copies.
    pub fn peers(&self) -> impl Iterator<Item = &PeerId> {
        self.base.iter().chain(&self.hot)
    }

    /// All peers picked, as one list.
    pub fn into_peers(self) -> Vec<PeerId> {
        let mut peers = self.base;
        peers.extend(self.hot);
        peers
    }

    /// How many peers were picked.
    pub fn len(&self) -> usize {
        self.base.len() + self.hot.len()
    }

    /// Whether no peer was picked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Picks the peers that should hold the block with BLAKE3 hash `block` (of `need_bytes` bytes).
///
/// A candidate is eligible if it is not in `exclude`, has at least `need_bytes` free and has no
/// score or a score of at least `policy.floor`; a peer listed twice counts once, as its first
/// entry. Of the eligible peers, ordered by XOR distance to the block:
///
/// 1. the `policy.rf` base copies go to the closest cold peers, then the closest hot peers if
///    there are fewer than `rf` cold ones;
/// 2. the `policy.hot_extra` hot copies go to the closest remaining hot peers, then the closest
///    remaining cold peers;
///
/// except that each copy goes to a peer of a network group without a copy yet while there is
/// one (see the module documentation): diversity comes before tier and distance.
///
/// `rf + hot_extra` is clamped to [`MAX_RF`]. Fewer peers come back when there are not enough
/// eligible candidates.
pub fn place(
    block: &[u8; 32],
    candidates: &[Candidate],
    policy: &PlacementPolicy,
    need_bytes: u64,
    exclude: &[PeerId],
) -> Placement {
    place_around(block, candidates, policy, need_bytes, exclude, &[])
}

/// [`place`] for a block already held by `holders`: the groups of those holders found among
/// `candidates` count as holding a copy. (Holders are not excluded by this; pass them in
/// `exclude` too.)
pub fn place_around(
    block: &[u8; 32],
    candidates: &[Candidate],
    policy: &PlacementPolicy,
    need_bytes: u64,
    exclude: &[PeerId],
    holders: &[PeerId],
) -> Placement {
    let target = block_key(block);
    let excluded: HashSet<&PeerId> = exclude.iter().collect();
    let mut used: HashSet<Option<NetGroup>> = candidates
        .iter()
        .filter(|c| holders.contains(&c.peer))
        .map(|c| c.group)
        .collect();
    let mut seen = HashSet::new();
    let mut cold = Vec::new();
    let mut hot = Vec::new();
    for c in candidates {
        if !seen.insert(c.peer) {
            continue;
        }
        let reputable = c.score.is_none_or(|s| s >= policy.floor);
        if excluded.contains(&c.peer) || c.bytes_free < need_bytes || !reputable {
            continue;
        }
        let ranked = (distance(&target, &peer_key(&c.peer)), c.peer, c.group);
        match c.tier {
            Tier::Cold => cold.push(ranked),
            Tier::Hot => hot.push(ranked),
        }
    }
    cold.sort_unstable();
    hot.sort_unstable();
    let cold: Vec<(PeerId, Option<NetGroup>)> = cold.into_iter().map(|(_, p, g)| (p, g)).collect();
    let hot: Vec<(PeerId, Option<NetGroup>)> = hot.into_iter().map(|(_, p, g)| (p, g)).collect();

    let rf = policy.rf.min(MAX_RF);
    let hot_extra = policy.target() - rf;
    let mut chosen: HashSet<PeerId> = HashSet::new();
    let base_order: Vec<_> = cold.iter().chain(&hot).collect();
    let base = pick_diverse(&base_order, rf, &mut used, &mut chosen);
    let extra_order: Vec<_> = hot.iter().chain(&cold).collect();
    let extra = pick_diverse(&extra_order, hot_extra, &mut used, &mut chosen);
    Placement { base, hot: extra }
}

/// Takes `n` peers of `order` not yet `chosen`: first, in order, those of a group not `used`
/// (one per group), then, in order, any. Marks their groups used.
fn pick_diverse(
    order: &[&(PeerId, Option<NetGroup>)],
    n: usize,
    used: &mut HashSet<Option<NetGroup>>,
    chosen: &mut HashSet<PeerId>,
) -> Vec<PeerId> {
    let mut picked: Vec<PeerId> = Vec::with_capacity(n);
    for (peer, group) in order.iter().copied() {
        if picked.len() == n {
            break;
        }
        if !chosen.contains(peer) && used.insert(*group) {
            chosen.insert(*peer);
            picked.push(*peer);
        }
    }
    for (peer, _) in order.iter().copied() {
        if picked.len() == n {
            break;
        }
        if chosen.insert(*peer) {
            picked.push(*peer);
        }
    }
    // Within the diverse first pass and the second pass the order is the preference order; keep
    // the overall order the preference order too (closest first within a tier).
    let rank: std::collections::HashMap<&PeerId, usize> =
        order.iter().enumerate().map(|(i, (p, _))| (p, i)).collect();
    picked.sort_by_key(|p| rank.get(p).copied().unwrap_or(usize::MAX));
    picked
}

/// How many score bands [`fetch_order`] divides the 0–1 scale into (bands of 0.1): scores within
/// one band are treated as equal, so a holder a hair better than the others does not draw every
/// fetch.
pub const FETCH_SCORE_BANDS: f64 = 10.0;

/// The order in which to ask `holders` of the block with BLAKE3 hash `block` for it: best
/// reputation first, below-floor holders last.
///
/// Each holder comes with its score on the reputation system's 0–1 scale, `None` while unknown
/// (counted as `neutral`, the score of a peer without evidence). Holders whose score is below
/// `floor` (or NaN) come after all others, so they are asked only when every other holder failed
/// (a fetched block is verified against its id, so asking them is safe, just unpromising). The
/// others are sorted by score band ([`FETCH_SCORE_BANDS`]), best first; within a band, and
/// among the below-floor holders, by XOR distance to the block, which spreads the fetches of
/// different blocks over equally good holders. A peer listed twice counts once, as its first
/// entry. Deterministic.
pub fn fetch_order(
    block: &[u8; 32],
    holders: &[(PeerId, Option<f64>)],
    floor: f64,
    neutral: f64,
) -> Vec<PeerId> {
    let target = block_key(block);
    let mut seen = HashSet::new();
    // (below floor, -band, distance, peer): ascending order is the fetch order.
    let mut ranked: Vec<(bool, i64, Key, PeerId)> = Vec::with_capacity(holders.len());
    for (peer, score) in holders {
        if !seen.insert(*peer) {
            continue;
        }
        let s = score.unwrap_or(neutral);
        let below = s.is_nan() || s < floor;
        let band = if below {
            0
        } else {
            // Scores are in [0, 1]; the cast saturates for anything else.
            -((s * FETCH_SCORE_BANDS).floor() as i64)
        };
        ranked.push((below, band, distance(&target, &peer_key(peer)), *peer));
    }
    ranked.sort_unstable();
    ranked.into_iter().map(|(_, _, _, p)| p).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use warren_protocol::keypair_from_secret;

    use super::*;

    /// Peer `i`: the identity made from secret `[i + 1; 32]`.
    pub(crate) fn peer(i: u8) -> PeerId {
        keypair_from_secret([i.wrapping_add(1); 32])
            .public()
            .to_peer_id()
    }

    pub(crate) fn cand(i: u8, tier: Tier) -> Candidate {
        Candidate {
            peer: peer(i),
            tier,
            bytes_free: 1 << 30,
            score: None,
            group: None,
        }
    }

    pub(crate) const BLOCK: [u8; 32] = [0x42; 32];

    #[test]
    fn fetch_order_prefers_good_scores_and_puts_below_floor_holders_last() {
        let (good, ok, unknown, bad, nan) = (peer(0), peer(1), peer(2), peer(3), peer(4));
        let holders = [
            (bad, Some(0.1)),
            (nan, Some(f64::NAN)),
            (unknown, None),
            (ok, Some(0.45)),
            (good, Some(0.9)),
        ];
        let order = fetch_order(&BLOCK, &holders, 0.25, 0.55);
        assert_eq!(&order[..3], &[good, unknown, ok], "{order:?}");
        // The two below-floor holders come last, by distance to the block.
        let mut tail = [bad, nan];
        tail.sort_by_key(|p| distance(&block_key(&BLOCK), &peer_key(p)));
        assert_eq!(&order[3..], &tail[..]);
        // A holder listed twice counts once, as its first entry.
        let twice = fetch_order(&BLOCK, &[(bad, Some(0.9)), (bad, Some(0.0))], 0.25, 0.55);
        assert_eq!(twice, vec![bad]);
        // Below-floor holders are still listed when they are the only ones.
        assert_eq!(
            fetch_order(&BLOCK, &[(bad, Some(0.0))], 0.25, 0.55),
            vec![bad]
        );
    }

    #[test]
    fn fetch_order_spreads_equal_scores_by_distance() {
        let peers: Vec<PeerId> = (0..8).map(peer).collect();
        // Scores within one band (0.6 up to 0.7) count as equal.
        let holders: Vec<(PeerId, Option<f64>)> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, Some(0.61 + i as f64 * 0.01)))
            .collect();
        let a = fetch_order(&[1; 32], &holders, 0.25, 0.55);
        let b = fetch_order(&[2; 32], &holders, 0.25, 0.55);
        assert_eq!(a, rank(&[1; 32], &peers));
        assert_eq!(b, rank(&[2; 32], &peers));
        assert_ne!(a[0], b[0], "different blocks start with different holders");
    }

    #[test]
    fn keys_are_sha256_like_libp2p_kad() {
        // libp2p-kad 0.49 `KeyBytes::new` = SHA-256 of the preimage bytes.
        let p = peer(0);
        assert_eq!(peer_key(&p), sha256(&p.to_bytes()));
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut mh = vec![0x1e, 0x20];
        mh.extend_from_slice(&BLOCK);
        assert_eq!(block_key(&BLOCK), sha256(&mh));
    }

    #[test]
    fn distance_is_xor_and_orders_big_endian() {
        let zero = [0u8; 32];
        let mut one = [0u8; 32];
        one[31] = 1;
        let mut big = [0u8; 32];
        big[0] = 1;
        assert_eq!(distance(&one, &one), zero);
        assert_eq!(distance(&zero, &big), big);
        assert!(distance(&zero, &one) < distance(&zero, &big));
    }

    #[test]
    fn picks_the_closest_cold_peers() {
        let cands: Vec<_> = (0..10).map(|i| cand(i, Tier::Cold)).collect();
        let all = rank(&BLOCK, cands.iter().map(|c| &c.peer));
        let p = place(&BLOCK, &cands, &PlacementPolicy::with_rf(3), 100, &[]);
        assert_eq!(p.base, all[..3]);
        assert!(p.hot.is_empty());
        assert_eq!(closest(&BLOCK, &all), Some(all[0]));
        // Input order does not matter.
        let mut reversed = cands.clone();
        reversed.reverse();
        assert_eq!(
            place(&BLOCK, &reversed, &PlacementPolicy::with_rf(3), 100, &[]),
            p
        );
    }

    #[test]
    fn skips_full_excluded_and_disreputable_peers() {
        let mut cands: Vec<_> = (0..10).map(|i| cand(i, Tier::Cold)).collect();
        let all = rank(&BLOCK, cands.iter().map(|c| &c.peer));
        let idx = |p: &PeerId| cands.iter().position(|c| c.peer == *p).unwrap();
        let (a, b, c) = (idx(&all[0]), idx(&all[1]), idx(&all[2]));
        cands[a].bytes_free = 99;
        cands[b].score = Some(0.1);
        cands[c].score = Some(f64::NAN);
        let p = place(&BLOCK, &cands, &PlacementPolicy::with_rf(3), 100, &[all[3]]);
        assert_eq!(p.base, all[4..7]);
        // Exactly at the floor and exactly enough room are fine.
        cands[a].bytes_free = 100;
        cands[b].score = Some(DEFAULT_SCORE_FLOOR);
        let p = place(&BLOCK, &cands, &PlacementPolicy::with_rf(2), 100, &[]);
        assert_eq!(p.base, all[..2]);
    }

    #[test]
    fn base_copies_prefer_cold_and_fall_back_to_hot() {
        let cands: Vec<_> = (0..8)
            .map(|i| cand(i, if i < 2 { Tier::Cold } else { Tier::Hot }))
            .collect();
        let cold = rank(&BLOCK, cands[..2].iter().map(|c| &c.peer));
        let hot = rank(&BLOCK, cands[2..].iter().map(|c| &c.peer));
        let p = place(&BLOCK, &cands, &PlacementPolicy::with_rf(3), 1, &[]);
        assert_eq!(p.base, [cold[0], cold[1], hot[0]]);
    }

    #[test]
    fn hot_copies_prefer_hot_and_fall_back_to_cold() {
        let cands: Vec<_> = (0..8)
            .map(|i| cand(i, if i < 5 { Tier::Cold } else { Tier::Hot }))
            .collect();
        let cold = rank(&BLOCK, cands[..5].iter().map(|c| &c.peer));
        let hot = rank(&BLOCK, cands[5..].iter().map(|c| &c.peer));
        let policy = PlacementPolicy {
            rf: 3,
            hot_extra: 2,
            ..Default::default()
        };
        let p = place(&BLOCK, &cands, &policy, 1, &[]);
        assert_eq!(p.base, cold[..3]);
        assert_eq!(p.hot, hot[..2]);

        let policy = PlacementPolicy {
            hot_extra: 4,
            ..policy
        };
        let p = place(&BLOCK, &cands, &policy, 1, &[]);
        assert_eq!(p.hot, [hot[0], hot[1], hot[2], cold[3]]);
        assert_eq!(p.len(), 7);
        assert_eq!(
            p.clone().into_peers(),
            p.peers().copied().collect::<Vec<_>>()
        );
    }

    #[test]
    fn returns_what_there_is_and_clamps_rf() {
        let cands: Vec<_> = (0..2).map(|i| cand(i, Tier::Cold)).collect();
        let p = place(&BLOCK, &cands, &PlacementPolicy::with_rf(5), 1, &[]);
        assert_eq!(p.len(), 2);
        let p = place(&BLOCK, &[], &PlacementPolicy::with_rf(5), 1, &[]);
        assert!(p.is_empty());

        let many: Vec<_> = (0..40).map(|i| cand(i, Tier::Cold)).collect();
        let policy = PlacementPolicy {
            rf: 10,
            hot_extra: 10,
            ..Default::default()
        };
        let p = place(&BLOCK, &many, &policy, 1, &[]);
        assert_eq!((p.base.len(), p.hot.len()), (10, MAX_RF - 10));
        let policy = PlacementPolicy::with_rf(usize::MAX);
        assert_eq!(place(&BLOCK, &many, &policy, 1, &[]).len(), MAX_RF);
    }

    #[test]
    fn duplicates_count_once_as_their_first_entry() {
        let mut full = cand(0, Tier::Cold);
        full.bytes_free = 0;
        let cands = vec![full, cand(0, Tier::Cold), cand(1, Tier::Cold)];
        let p = place(&BLOCK, &cands, &PlacementPolicy::with_rf(3), 1, &[]);
        assert_eq!(p.base, [peer(1)]);
        assert_eq!(rank(&BLOCK, &[peer(1), peer(1)]), [peer(1)]);
    }

    #[test]
    fn different_blocks_spread_over_peers() {
        let cands: Vec<_> = (0..20).map(|i| cand(i, Tier::Cold)).collect();
        let mut firsts = HashSet::new();
        for b in 0..64u8 {
            let p = place(&[b; 32], &cands, &PlacementPolicy::with_rf(1), 1, &[]);
            firsts.insert(p.base[0]);
        }
        assert!(firsts.len() >= 10, "{}", firsts.len());
    }

    fn grouped(i: u8, tier: Tier, group: u8) -> Candidate {
        Candidate {
            group: Some(NetGroup::V4([10, group])),
            ..cand(i, tier)
        }
    }

    #[test]
    fn no_two_copies_in_one_group_while_another_group_has_room() {
        // Eight Sybils in one /16 and two honest peers elsewhere.
        let mut cands: Vec<_> = (0..8).map(|i| grouped(i, Tier::Cold, 66)).collect();
        cands.push(grouped(8, Tier::Cold, 1));
        cands.push(grouped(9, Tier::Cold, 2));
        for b in 0..32u8 {
            let p = place(&[b; 32], &cands, &PlacementPolicy::with_rf(3), 1, &[]);
            assert_eq!(p.len(), 3);
            let sybils = p
                .peers()
                .filter(|x| cands[..8].iter().any(|c| c.peer == **x));
            assert_eq!(sybils.count(), 1, "block {b}: {p:?}");
            // Within the diverse choice the closest of each group wins.
            let closest_sybil = rank(&[b; 32], cands[..8].iter().map(|c| &c.peer))[0];
            assert!(p.base.contains(&closest_sybil));
        }
        // More copies than groups: the rest go to the closest remaining peers, in any group.
        let p = place(&BLOCK, &cands, &PlacementPolicy::with_rf(5), 1, &[]);
        assert_eq!(p.len(), 5);
        assert!(p.base.contains(&peer(8)) && p.base.contains(&peer(9)));
        // A full or disreputable honest peer has no room: its group does not count.
        cands[8].bytes_free = 0;
        cands[9].score = Some(0.0);
        let p = place(&BLOCK, &cands, &PlacementPolicy::with_rf(3), 1, &[]);
        assert_eq!(p.len(), 3);
        assert!(p.peers().all(|x| cands[..8].iter().any(|c| c.peer == *x)));
    }

    #[test]
    fn diversity_comes_before_tier_and_hot_copies_respect_it_too() {
        // Cold peers all in one group, hot peers in two others.
        let mut cands: Vec<_> = (0..4).map(|i| grouped(i, Tier::Cold, 1)).collect();
        cands.push(grouped(4, Tier::Hot, 2));
        cands.push(grouped(5, Tier::Hot, 3));
        cands.push(grouped(6, Tier::Hot, 3));
        let p = place(&BLOCK, &cands, &PlacementPolicy::with_rf(2), 1, &[]);
        let group_of = |x: &PeerId| cands.iter().find(|c| c.peer == *x).unwrap().group;
        let groups: HashSet<_> = p.base.iter().map(group_of).collect();
        assert_eq!(groups.len(), 2, "{p:?}");
        assert_eq!(
            p.base[0],
            rank(&BLOCK, cands[..4].iter().map(|c| &c.peer))[0]
        );
        let policy = PlacementPolicy {
            rf: 2,
            hot_extra: 1,
            ..Default::default()
        };
        let p = place(&BLOCK, &cands, &policy, 1, &[]);
        let groups: HashSet<_> = p.peers().map(group_of).collect();
        assert_eq!(groups.len(), 3, "{p:?}");
    }

    #[test]
    fn repair_counts_the_groups_of_present_holders() {
        let mut cands: Vec<_> = (0..4).map(|i| grouped(i, Tier::Cold, 66)).collect();
        cands.push(grouped(4, Tier::Cold, 1));
        cands.push(grouped(5, Tier::Cold, 2));
        // One Sybil already holds the block: the missing copy goes to another group.
        let holder = peer(0);
        let p = place_around(
            &BLOCK,
            &cands,
            &PlacementPolicy::with_rf(1),
            1,
            &[holder],
            &[holder],
        );
        assert_eq!(p.len(), 1);
        assert!(p.base[0] == peer(4) || p.base[0] == peer(5), "{p:?}");
        // `place` is `place_around` without holders.
        assert_eq!(
            place(&BLOCK, &cands, &PlacementPolicy::with_rf(3), 1, &[]),
            place_around(&BLOCK, &cands, &PlacementPolicy::with_rf(3), 1, &[], &[])
        );
    }

    mod prop {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            /// Whatever the groups, tiers, room and policy: the picks are distinct eligible
            /// peers, as many as there can be, and a group gets a second copy only when every
            /// group with an eligible peer has a copy.
            #[test]
            fn placement_is_diverse(
                block in any::<[u8; 32]>(),
                peers in proptest::collection::vec((0u8..4, any::<bool>(), any::<bool>()), 0..24),
                rf in 0usize..6,
                hot_extra in 0usize..3,
            ) {
                let cands: Vec<Candidate> = peers
                    .iter()
                    .enumerate()
                    .map(|(i, (g, hot, room))| {
                        let tier = if *hot { Tier::Hot } else { Tier::Cold };
                        Candidate {
                            bytes_free: if *room { 10 } else { 0 },
                            ..grouped(i as u8, tier, *g)
                        }
                    })
                    .collect();
                let policy = PlacementPolicy { rf, hot_extra, ..Default::default() };
                let p = place(&block, &cands, &policy, 1, &[]);
                let picked: Vec<PeerId> = p.peers().copied().collect();
                let distinct: HashSet<_> = picked.iter().collect();
                prop_assert_eq!(distinct.len(), picked.len());
                let eligible: Vec<&Candidate> = cands.iter().filter(|c| c.bytes_free >= 1).collect();
                prop_assert_eq!(picked.len(), policy.target().min(eligible.len()));
                let group_of = |x: &PeerId| cands.iter().find(|c| c.peer == *x).unwrap().group;
                prop_assert!(picked.iter().all(|x| eligible.iter().any(|c| c.peer == *x)));
                let eligible_groups: HashSet<_> = eligible.iter().map(|c| c.group).collect();
                let picked_groups: HashSet<_> = picked.iter().map(group_of).collect();
                if picked_groups.len() < picked.len() {
                    // A repeated group: every group with room has a copy.
                    prop_assert_eq!(picked_groups.len(), eligible_groups.len());
                }
            }
        }
    }
}
