//! Kademlia routing state, sans-I/O: node ids, the XOR metric and a table of k-buckets.
//!
//! Ids are 64-bit here. A lookup among 10⁵ nodes only ever compares the top ~20 bits of a
//! distance, so 64-bit ids order nodes exactly as libp2p-kad's 256-bit keys would (a tie would
//! need two nodes sharing 64 bits); they keep 10⁵ routing tables in memory.

/// A node id, and a point in the key space.
pub type NodeId = u64;

/// The XOR distance of two ids.
pub fn distance(a: NodeId, b: NodeId) -> u64 {
    a ^ b
}

/// The bucket `other` belongs in from `local`'s point of view: `i` such that the distance lies
/// in `[2^i, 2^(i+1))`; `None` for `local` itself.
pub fn bucket_index(local: NodeId, other: NodeId) -> Option<usize> {
    let d = distance(local, other);
    (d != 0).then(|| 63 - d.leading_zeros() as usize)
}

/// A routing table of 64 k-buckets.
///
/// Kademlia keeps the oldest live contacts of a full bucket (they are the likeliest to stay), so
/// [`RoutingTable::insert`] refuses a contact when its bucket is full; a node makes room with
/// [`RoutingTable::remove`] when a contact stops answering.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    local: NodeId,
    k: usize,
    buckets: Vec<Vec<NodeId>>,
}

impl RoutingTable {
    /// An empty table for `local` with buckets of `k`.
    pub fn new(local: NodeId, k: usize) -> Self {
        Self {
            local,
            k: k.max(1),
            buckets: vec![Vec::new(); 64],
        }
    }

    /// The table's owner.
    pub fn local(&self) -> NodeId {
        self.local
    }

    /// Adds `id` unless it is the owner, already present, or its bucket is full.
    pub fn insert(&mut self, id: NodeId) -> bool {
        let Some(i) = bucket_index(self.local, id) else {
            return false;
        };
        let bucket = &mut self.buckets[i];
        if bucket.len() >= self.k || bucket.contains(&id) {
            return false;
        }
        bucket.push(id);
        true
    }

    /// Removes `id`; whether it was there.
    pub fn remove(&mut self, id: NodeId) -> bool {
        let Some(i) = bucket_index(self.local, id) else {
            return false;
        };
        let bucket = &mut self.buckets[i];
        let before = bucket.len();
        bucket.retain(|&x| x != id);
        bucket.len() != before
    }

    /// The contacts in bucket `i` (empty for `i >= 64`).
    pub fn bucket(&self, i: usize) -> &[NodeId] {
        self.buckets.get(i).map_or(&[], Vec::as_slice)
    }

    /// Contacts in all.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.buckets.iter().all(Vec::is_empty)
    }

    /// The `n` contacts closest to `target`, closest first.
    pub fn closest(&self, target: NodeId, n: usize) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self.buckets.iter().flatten().copied().collect();
        if all.len() > n && n > 0 {
            all.select_nth_unstable_by_key(n - 1, |&id| distance(id, target));
            all.truncate(n);
        } else if n == 0 {
            all.clear();
        }
        all.sort_unstable_by_key(|&id| distance(id, target));
        all
    }
}

/// The `n` ids of `sorted` (ascending, distinct) closest to `target`, closest first.
///
/// Ids sharing a prefix of `L` bits with `target` form one contiguous run of `sorted`, closer
/// than everything outside it; the shortest such run holding `n` ids holds the answer.
pub fn closest_sorted(sorted: &[NodeId], target: NodeId, n: usize) -> Vec<NodeId> {
    let mut bits = 64u32;
    loop {
        let mask = if bits == 0 { 0 } else { !0u64 << (64 - bits) };
        let lo = target & mask;
        let hi = lo | !mask;
        let start = sorted.partition_point(|&x| x < lo);
        let end = sorted.partition_point(|&x| x <= hi);
        if end - start >= n || bits == 0 {
            let mut run = sorted[start..end].to_vec();
            run.sort_unstable_by_key(|&id| distance(id, target));
            run.truncate(n);
            return run;
        }
        bits -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_by_highest_differing_bit() {
        assert_eq!(bucket_index(0, 0), None);
        assert_eq!(bucket_index(0, 1), Some(0));
        assert_eq!(bucket_index(0b1000, 0b1111), Some(2));
        assert_eq!(bucket_index(0, 1 << 63), Some(63));
    }

    #[test]
    fn full_buckets_keep_old_contacts() {
        let mut t = RoutingTable::new(0, 2);
        assert!(t.insert(1 << 40));
        assert!(t.insert((1 << 40) + 1));
        assert!(!t.insert((1 << 40) + 2));
        assert!(!t.insert(1 << 40));
        assert!(!t.insert(0));
        assert_eq!(t.bucket(40).len(), 2);
        assert!(t.remove(1 << 40));
        assert!(t.insert((1 << 40) + 2));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn closest_is_sorted_by_xor() {
        let mut t = RoutingTable::new(0, 20);
        for x in [1u64, 2, 3, 8, 9, 1 << 20, 1 << 50] {
            t.insert(x);
        }
        assert_eq!(t.closest(9, 3), vec![9, 8, 1]);
        assert_eq!(t.closest(9, 0), Vec::<u64>::new());
        assert_eq!(t.closest(1 << 50, 100).len(), 7);
        let sorted = vec![1u64, 2, 3, 8, 9, 1 << 20, 1 << 50];
        for target in [0u64, 9, 1 << 20, u64::MAX] {
            assert_eq!(
                closest_sorted(&sorted, target, 4),
                t.closest(target, 4),
                "{target}"
            );
        }
    }
}
