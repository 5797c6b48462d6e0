//! The cache of blocks a node fetched for reads (its own, or a relay's for others): which of them
//! to drop so that they stay within a share of the offer, least recently used first.
//!
//! A *cached* block is one no pin reaches, no lease holds and no running put uses: what
//! [`crate::Store::gc`] would remove. [`crate::Store::trim_cache`] keeps them within
//! [`budget`] of the offer, removing the least recently used first ([`evictions`]). Recency is
//! an order, not a time: the store numbers each use of a block (a verified read, a cached
//! write); a block whose use it does not know (read before a restart) counts as the oldest.

use warren_protocol::ContentId;

/// The share of the offer that cached blocks may use: a quarter.
pub const CACHE_SHARE: u64 = 4;

/// The bytes cached blocks may use on a node offering `offered` bytes.
pub fn budget(offered: u64) -> u64 {
    offered / CACHE_SHARE
}

/// One cached block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cached {
    /// The block.
    pub cid: ContentId,
    /// Its stored length.
    pub len: u64,
    /// When it was last used, as the store's use counter (`None`: not known, the oldest).
    pub last_use: Option<u64>,
}

/// The cached blocks to remove so the rest fit `budget` bytes: least recently used first
/// (unknown first, then by use; ties by id, so the answer is deterministic).
pub fn evictions(cached: &[Cached], budget: u64) -> Vec<ContentId> {
    let mut total: u64 = cached.iter().map(|c| c.len).fold(0, u64::saturating_add);
    if total <= budget {
        return Vec::new();
    }
    let mut order: Vec<&Cached> = cached.iter().collect();
    order.sort_by(|a, b| a.last_use.cmp(&b.last_use).then(a.cid.cmp(&b.cid)));
    let mut out = Vec::new();
    for c in order {
        if total <= budget {
            break;
        }
        out.push(c.cid);
        total = total.saturating_sub(c.len);
    }
    out
}

#[cfg(test)]
mod tests {
    use warren_protocol::Codec;

    use super::*;

    fn block(i: u8, len: u64, last_use: Option<u64>) -> Cached {
        Cached {
            cid: ContentId::of_block(Codec::Raw, &[i]),
            len,
            last_use,
        }
    }

    #[test]
    fn nothing_goes_while_the_cache_fits() {
        let cached = [block(1, 10, Some(1)), block(2, 10, None)];
        assert!(evictions(&cached, 20).is_empty());
        assert!(evictions(&[], 0).is_empty());
    }

    #[test]
    fn the_least_recently_used_go_first_unknown_before_all() {
        let cached = [
            block(1, 10, Some(5)),
            block(2, 10, Some(1)),
            block(3, 10, None),
            block(4, 10, Some(9)),
        ];
        // 40 bytes, budget 15: three go, the most recent stays.
        assert_eq!(
            evictions(&cached, 15),
            vec![cached[2].cid, cached[1].cid, cached[0].cid]
        );
        assert_eq!(evictions(&cached, 30), vec![cached[2].cid]);
        assert_eq!(evictions(&cached, 0).len(), 4);
    }

    #[test]
    fn the_budget_is_a_quarter_of_the_offer() {
        assert_eq!(budget(64 << 20), 16 << 20);
        assert_eq!(budget(0), 0);
    }
}
